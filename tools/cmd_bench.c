/*
 * karpc bench model.json — how fast the generated code is, kernel by
 * kernel, against the reference kernels and the machine's measured peak
 * (docs/bench.md):
 *
 *   compile with the kernels kept callable (kernels.h), JIT
 *   measure the FP32 peak (FMA loop, the generated code's vector width)
 *   and the memory bandwidth (copy, triad), at the chosen thread count,
 *   the best of five tries (of N with --repeats N < 5)
 *   infer:      3 calls; each kernel of the entry timed in place; the entry whole
 *   train_step: 3 steps; each kernel timed in place; the entry whole
 *   --peers:    the gemm and convolution shapes through OpenBLAS, oneDNN
 *   the tables (or --json)
 *
 * The inputs are seeded uniform [0,1) samples (labels uniform over the
 * classes); timing does not depend on the values, but the replay keeps
 * them realistic anyway (bench_kernels.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../backend/core_latency.h"
#include "../runtime/checkpoint.h"
#include "../runtime/fpmode.h"
#include "../runtime/model.h"
#include "bench.h"
#include "cli.h"

typedef struct BenchArgs {
    const char *model;
    long batch, threads;
    int json;
    bool no_group;              /* --no-group: every node its own kernel, timed alone */
    BenchPlan plan;
} BenchArgs;

static int parse_args(int argc, char **argv, BenchArgs *a)
{
    memset(a, 0, sizeof *a);
    a->plan.kernels = true;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        int missing = 0;
        if ((v = kp_cli_take(argc, argv, &i, "--batch", &missing))) {
            if (kp_cli_int("--batch", v, 1, 65536, &a->batch))
                return 1;
        } else if (!missing && (v = kp_cli_take(argc, argv, &i, "--threads", &missing))) {
            if (kp_cli_int("--threads", v, 1, 1024, &a->threads))
                return 1;
        } else if (!missing && (v = kp_cli_take(argc, argv, &i, "--repeats", &missing))) {
            if (kp_cli_int("--repeats", v, 1, 1000000, &a->plan.repeats))
                return 1;
        } else if (missing) {
            return 1;
        } else if (strcmp(s, "--json") == 0) {
            a->json = 1;
        } else if (strcmp(s, "--peers") == 0) {
            a->plan.peers = true;
        } else if (strcmp(s, "--no-kernels") == 0) {
            a->plan.kernels = false;
        } else if (strcmp(s, "--no-group") == 0) {
            a->no_group = true;
        } else if (s[0] == '-' && s[1] != '\0') {
            return kp_cli_fail("bench: unknown option '%s' (karpc --help lists them)", s);
        } else if (a->model) {
            return kp_cli_fail("bench: one model at a time: '%s' and '%s'", a->model, s);
        } else {
            a->model = s;
        }
    }
    if (!a->model)
        return kp_cli_fail("bench: no model given (model.json)");
    size_t len = strlen(a->model);
    if (len < 5 || strcmp(a->model + len - 5, ".json") != 0)
        return kp_cli_fail("bench: '%s' is not a model file: karpc bench compiles model.json "
                           "itself, to reach each kernel",
                           a->model);
    return 0;
}

static void read_machine(BenchMachine *mc)
{
    snprintf(mc->cpu, sizeof mc->cpu, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(mc->cpu, sizeof mc->cpu, "%s", colon + 2);
            mc->cpu[strcspn(mc->cpu, "\n")] = '\0';
            break;
        }
    }
    if (f)
        fclose(f);
    mc->cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
}

/* The first three fields of /proc/loadavg. */
static void read_load(char *buf, size_t cap)
{
    double l[3] = {0, 0, 0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f || fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]) != 3)
        l[0] = l[1] = l[2] = NAN;
    if (f)
        fclose(f);
    snprintf(buf, cap, "%.2f %.2f %.2f", l[0], l[1], l[2]);
}

/* The peak and the bandwidth, the best of tries measurements each: on a
 * shared machine a single one may be taken while another process has a
 * core (an underestimate then makes kernels look above 100%). */
static void measure_machine(BenchMachine *mc, int threads, int lanes, int tries)
{
    for (int i = 0; i < tries; i++) {
        KpPeak p = kp_measure_peak(threads, lanes);
        KpBandwidth b = kp_measure_bandwidth(threads);
        if (p.gflops > mc->peak.gflops)
            mc->peak = p;
        if (b.triad_gbs > mc->bw.triad_gbs)
            mc->bw.triad_gbs = b.triad_gbs, mc->bw.threads = b.threads;
        if (b.copy_gbs > mc->bw.copy_gbs)
            mc->bw.copy_gbs = b.copy_gbs;
    }
}

/* Build both graphs, generate code with the kernels kept, JIT it. */
static int compile(const BenchArgs *a, KpProgram *p, KpKernelList **l, int *vw, karp_model **m)
{
    KpDiag d;
    kp_diag_init(&d);
    KpPassOpts po;
    kp_pass_opts_init(&po);
    po.group = !a->no_group;
    if (kp_build_program(a->model, &po, a->batch, p, &d) < 0)
        return kp_cli_fail("%s", d.msg);
    KpTargetOpts t = {.opt_level = 3, .keep_kernels = true};
    KpCodegen *cg = NULL;
    int rc = kp_llvm_codegen(p, &t, &cg, &d);
    if (rc == 0) {
        *l = kp_llvm_take_kernels(cg);
        *vw = kp_llvm_vector_width(cg);
        rc = kp_llvm_jit(cg, m, &d);
    }
    kp_llvm_free(cg);
    return rc < 0 ? kp_cli_fail("%s", d.msg) : 0;
}

float *kp_bench_uniform(float *v, int64_t count, uint64_t seed)
{
    KpRng r;
    kp_rng_seed(&r, seed);
    for (int64_t i = 0; v && i < count; i++)
        v[i] = kp_rng_uniform(&r);
    return v;
}

typedef struct EntryCall {
    karp_model *m;
    const float *x;
    const void *target;
    float *y;
    int64_t n;
    float loss;
    int rc;
} EntryCall;

static double timed_infer(void *arg)
{
    EntryCall *c = arg;
    double t0 = kp_cli_now();
    c->rc = karp_infer(c->m, c->x, c->n, c->y);
    double dt = kp_cli_now() - t0;
    return c->rc ? -1 : dt;
}

static double timed_train(void *arg)
{
    EntryCall *c = arg;
    double t0 = kp_cli_now();
    c->rc = karp_train_step(c->m, c->x, c->target, c->n, &c->loss);
    double dt = kp_cli_now() - t0;
    return c->rc ? -1 : dt;
}

/* Calls of the entry so far on one thread (the runtime's adaptive choice) and in all. */
static void thread_counts(karp_model *m, bool train, int64_t *one, int64_t *all)
{
    if (train)
        *one = m->adapt.calls_one, *all = m->adapt.calls_all;
    else
        kp_rt_infer_thread_counts(m, one, all);
}

/* One entry: warm-up calls, its kernels in place, its kernels inside whole
 * replays of it, then the entry whole. */
static int bench_entry(BenchRun *run, karp_model *m, const KpKernelList *l, BenchGraph *bg,
                       EntryCall *c)
{
    int train = strcmp(bg->entry, "train_step") == 0;
    double (*fn)(void *) = train ? timed_train : timed_infer;
    for (int i = 0; i < 3; i++)
        if (fn(c) < 0)
            return kp_cli_fail("bench: %s", karp_last_error());
    if (run->plan.kernels) {
        karp_info info;
        karp_model_info(m, &info);
        KpEntryBufs b;
        kp_entry_bufs(m, train, &b);
        b.x = c->x, b.y = c->y, b.target = c->target, b.n = c->n;
        b.step = info.step + 1;
        b.seed = 1;
        /* the kernels called alone run in the mode the entries run in */
        unsigned mode = kp_rt_fp_enter();
        int rc = kp_bench_kernels(m, l, bg->g, &b, &run->plan, bg);
        kp_rt_fp_adopt(mode);
        if (rc)
            return 1;
        bg->replay_crc = kp_rt_crc32c(0, b.params, (size_t)b.param_floats * 4);
        if (b.grads)
            bg->replay_crc = kp_rt_crc32c(bg->replay_crc, b.grads, (size_t)b.param_floats * 4);
        if (b.opt_floats)
            bg->replay_crc = kp_rt_crc32c(bg->replay_crc, b.opt, (size_t)b.opt_floats * 4);
        bg->replay_crc = kp_rt_crc32c(bg->replay_crc, c->y, (size_t)(c->n * info.output_size) * 4);
        if (train)
            karp_zero_gradients(m);     /* as the entry does after its update */
        mode = kp_rt_fp_enter();
        rc = kp_bench_in_step(m, l, bg->g, &b, &run->plan, bg);
        kp_rt_fp_adopt(mode);
        if (rc)
            return 1;
    }
    for (int i = 0; i < 10; i++)
        fn(c);
    int64_t one, all, one2, all2;
    thread_counts(m, train, &one, &all);
    bg->whole = kp_bench_time(fn, c, run->plan.repeats, 2.0, 20, 5000);
    thread_counts(m, train, &one2, &all2);
    bg->one_thread = all2 > all ? one2 - one : -1;
    bg->loss = train ? c->loss : NAN;
    if (c->rc)
        return kp_cli_fail("bench: %s", karp_last_error());
    return 0;
}

static int run_graphs(BenchRun *run, karp_model *m, const KpProgram *p, const KpKernelList *l)
{
    karp_info info;
    karp_model_info(m, &info);
    int64_t n = run->batch;
    float *x = malloc((size_t)(n * info.input_size) * sizeof *x);
    float *y = malloc((size_t)(n * info.output_size) * sizeof *y);
    float *target = malloc((size_t)(n * info.output_size) * sizeof *target);
    if (!x || !y || !target) {
        free(x), free(y), free(target);
        return kp_cli_fail("bench: out of memory");
    }
    kp_bench_uniform(x, n * info.input_size, 1);
    kp_bench_uniform(target, n * info.output_size, 2);
    if (info.target_labels)
        for (int64_t i = 0; i < n; i++)
            ((int32_t *)target)[i] = (int32_t)(target[i] * (float)info.output_size) %
                                     (int32_t)info.output_size;
    EntryCall c = {.m = m, .x = x, .y = y, .target = target, .n = n};
    run->graph[0] = (BenchGraph){.entry = "infer", .g = p->infer, .n = n};
    run->ngraphs = 1;
    int rc = bench_entry(run, m, l, &run->graph[0], &c);
    if (rc == 0 && info.has_train && p->train) {
        run->graph[1] = (BenchGraph){.entry = "train_step", .g = p->train, .n = n};
        run->ngraphs = 2;
        rc = bench_entry(run, m, l, &run->graph[1], &c);
    }
    free(x), free(y), free(target);
    return rc;
}

int kp_cmd_bench(int argc, char **argv)
{
    BenchArgs a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;
    if (a.threads)
        karp_set_threads((int)a.threads);
    BenchRun run = {.model = a.model, .plan = a.plan};
    read_machine(&run.machine);
    read_load(run.machine.load_start, sizeof run.machine.load_start);
    run.machine.round_trip_ns[0] = kp_measure_core_round_trip();

    KpProgram p = {0};
    KpKernelList *l = NULL;
    karp_model *m = NULL;
    int vw = 0;
    double t0 = kp_cli_now();
    rc = compile(&a, &p, &l, &vw, &m);
    run.compile_s = kp_cli_now() - t0;
    if (rc == 0) {
        run.name = p.infer->name;
        run.batch = a.batch ? a.batch : p.infer->max_batch;
        int tries = a.plan.repeats > 0 && a.plan.repeats < 5 ? (int)a.plan.repeats : 5;
        measure_machine(&run.machine, (int)a.threads, vw, tries);
        rc = run_graphs(&run, m, &p, l);
    }
    if (rc == 0 && a.plan.peers) {
        kp_bench_peers_open(&run, run.machine.peak.threads);
        for (int g = 0; a.plan.kernels && g < run.ngraphs; g++)
            for (int k = 0; k < run.graph[g].nk; k++)
                kp_bench_peers_run(&run, &run.graph[g].k[k], run.batch, a.plan.repeats);
    }
    if (rc == 0) {
        run.machine.round_trip_ns[1] = kp_measure_core_round_trip();
        read_load(run.machine.load_end, sizeof run.machine.load_end);
        if (a.json)
            rc = kp_bench_print_json(&run);
        else
            kp_bench_print_text(&run);
    }
    for (int g = 0; g < run.ngraphs; g++)
        kp_bench_graph_free(&run.graph[g]);
    karp_close(m);
    kp_kernel_list_free(l);
    kp_program_free(&p);
    return rc ? 1 : 0;
}
