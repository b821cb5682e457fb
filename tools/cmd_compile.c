/*
 * karpc model.json -o model.so — the compile command.
 *
 *   parse + lower + passes, both graphs (kp_build_program) -> --emit=ir|dot stops here
 *                                          (the inference graph, then the train graph;
 *                                          with --dump-after=PASS, the graphs after PASS
 *                                          instead, as IR text or with --emit=dot as DOT)
 *   LLVM codegen + optimization             -> --emit=llvm|asm|obj stops here
 *   object -> shared library linked with libkarprt.a, plus --header
 *   (--stats alone: JIT-compiled in-process as karp_compile does, for the
 *   compile time a host program sees)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../backend/backend.h"
#include "../passes/passes.h"
#include "cli.h"

typedef struct CompileArgs {
    const char *model;
    const char *out;
    const char *header;
    const char *emit;        /* NULL: a shared library */
    const char *runtime_lib;
    long batch;              /* 0: the model's */
    int stats;
    KpTargetOpts target;
    KpPassOpts passes;
} CompileArgs;

static const char *opt_value(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && arg[n] == '=' ? arg + n + 1 : NULL;
}

/* Options taking a value accept "--opt=v" and "--opt v". */
static const char *take(int argc, char **argv, int *i, const char *name)
{
    const char *v = opt_value(argv[*i], name);
    if (v)
        return v;
    if (strcmp(argv[*i], name) == 0 && *i + 1 < argc)
        return argv[++*i];
    if (strcmp(argv[*i], name) == 0)
        kp_cli_fail("%s needs a value", name);
    return NULL;
}

static int parse_args(int argc, char **argv, CompileArgs *a)
{
    memset(a, 0, sizeof *a);
    kp_pass_opts_init(&a->passes);
    a->target.opt_level = 3;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        if (strcmp(s, "-o") == 0) {
            if (++i == argc)
                return kp_cli_fail("-o needs a file name");
            a->out = argv[i];
        } else if ((v = take(argc, argv, &i, "--header"))) {
            a->header = v;
        } else if ((v = take(argc, argv, &i, "--emit"))) {
            if (strcmp(v, "ir") && strcmp(v, "dot") && strcmp(v, "llvm") && strcmp(v, "asm") &&
                strcmp(v, "obj"))
                return kp_cli_fail("--emit expects ir, dot, llvm, asm or obj, got '%s'", v);
            a->emit = v;
        } else if ((v = take(argc, argv, &i, "--dump-after"))) {
            a->passes.dump_after = v;
        } else if ((v = take(argc, argv, &i, "--target-cpu"))) {
            a->target.cpu = v;
        } else if ((v = take(argc, argv, &i, "--target-features"))) {
            a->target.features = v;
        } else if ((v = take(argc, argv, &i, "--runtime-lib"))) {
            a->runtime_lib = v;
        } else if ((v = take(argc, argv, &i, "--batch"))) {
            if (kp_cli_int("--batch", v, 1, 65536, &a->batch))
                return 1;
        } else if ((v = take(argc, argv, &i, "--jobs"))) {
            long jobs;
            if (kp_cli_int("--jobs", v, 1, KP_LLVM_MAX_JOBS, &jobs))
                return 1;
            a->target.jobs = (int)jobs;
        } else if (strlen(s) == 3 && s[0] == '-' && s[1] == 'O' && s[2] >= '0' && s[2] <= '3') {
            a->target.opt_level = s[2] - '0';
        } else if (strcmp(s, "--no-fuse") == 0) {
            a->passes.fuse = false;
        } else if (strcmp(s, "--no-group") == 0) {
            a->passes.group = false;
        } else if (strcmp(s, "--no-layout") == 0) {
            a->passes.layout = false;
        } else if (strcmp(s, "--no-memplan") == 0) {
            a->passes.memplan = false;
        } else if (strcmp(s, "--no-fold") == 0) {
            a->passes.fold = false;
        } else if (strcmp(s, "--stats") == 0) {
            a->stats = 1;
        } else if (s[0] == '-' && s[1] != '\0') {
            return kp_cli_fail("unknown option '%s' (karpc --help lists them)", s);
        } else if (!a->model) {
            a->model = s;
        } else {
            return kp_cli_fail("one model file at a time: '%s' and '%s'", a->model, s);
        }
        if (argv[i] == NULL)
            return 1;
    }
    if (!a->model)
        return kp_cli_fail("no model file given (karpc --help)");
    /* --dump-after with --emit=ir|dot: the dump, in that form, is the output */
    if (a->passes.dump_after && a->emit && strcmp(a->emit, "dot") == 0)
        a->passes.dump_dot = true;
    if (!a->emit && !a->out && !a->passes.dump_after && !a->stats)
        return kp_cli_fail("no output: give -o model.so, or --emit=ir|dot|llvm|asm|obj");
    return 0;
}

static int emit_graph_text(const KpProgram *p, const CompileArgs *a)
{
    FILE *f = stdout;
    KpAtomicFile af = {0};
    if (a->out && strcmp(a->out, "-") != 0) {
        if (kp_cli_atomic_open(&af, a->out) != 0)
            return 1;
        f = af.f;
    }
    const KpGraph *graphs[2] = {p->infer, p->train};
    for (int i = 0; i < 2; i++) {
        if (!graphs[i])
            continue;
        if (strcmp(a->emit, "ir") == 0)
            kp_print_ir(f, graphs[i]);
        else
            kp_print_dot(f, graphs[i]);
    }
    if (f != stdout && kp_cli_atomic_commit(&af) != 0)
        return 1;
    return 0;
}

/* Objects (one per partition) in temporary files next to the output, then
 * the link. */
static int build_shared(KpCodegen *cg, const CompileArgs *a, KpDiag *d, double *t_obj,
                        double *t_link)
{
    size_t n = strlen(a->out) + 32;
    char stem[n], names[KP_LLVM_MAX_PARTS][n];
    const char *objs[KP_LLVM_MAX_PARTS];
    snprintf(stem, n, "%s.%ld", a->out, (long)getpid());
    double t0 = kp_cli_now();
    int nobjs = 0;
    int rc = kp_llvm_write_objects(cg, stem, &nobjs, d);
    double t1 = kp_cli_now();
    for (int i = 0; i < nobjs; i++) {
        snprintf(names[i], n, "%s.%d.o", stem, i);
        objs[i] = names[i];
    }
    if (rc == 0)
        rc = kp_link_shared(objs, nobjs, a->out, a->runtime_lib, d);
    *t_obj = t1 - t0;
    *t_link = kp_cli_now() - t1;
    for (int i = 0; i < nobjs; i++)
        unlink(objs[i]);
    return rc;
}

static void print_params(const KpGraph *g)
{
    int64_t ntensors = 0, nfloats = 0;
    for (int i = 0; i < g->nvalues; i++)
        if (g->values[i]->role == KP_ROLE_PARAM) {
            ntensors++;
            nfloats += kp_value_numel(g->values[i], 1);
        }
    printf("%s: %d nodes, %lld parameters in %lld tensors (slab %lld bytes), "
           "workspace %lld bytes at batch %lld\n",
           g->name, g->nnodes, (long long)nfloats, (long long)ntensors,
           (long long)g->param_floats * 4, (long long)g->workspace_bytes, (long long)g->max_batch);
}

/* One line per pass run, in the order they ran: graph, pass, ms, report. */
static void print_pass_log(const KpPassLog *log)
{
    for (int i = 0; i < log->n; i++)
        printf("pass %s %-8s %8.3f ms  %s\n", log->e[i].graph, log->e[i].pass, log->e[i].ms,
               log->e[i].what[0] ? log->e[i].what : "-");
}

/* kernels and workspace with the passes as given and without the optimizing
 * ones; "unplanned": every transient value its own range */
static void print_graph_figures(const char *which, const KpGraph *with, const KpGraph *without)
{
    printf("%s: kernels %d (without passes %d), workspace %lld bytes (without passes %lld), "
           "unplanned %lld bytes\n",
           which, kp_graph_kernel_count(with), kp_graph_kernel_count(without),
           (long long)with->workspace_bytes, (long long)without->workspace_bytes,
           (long long)kp_graph_transient_bytes(without));
}

/* Compile times by phase, in seconds; jit >= 0 when the code went to the JIT. */
typedef struct PhaseTimes {
    double front, cg, obj, link, jit;
    KpPartTimes parts;          /* the object phase (or the JIT's) by partition */
} PhaseTimes;

/* --stats: the parameters, each pass run with its time and report, then
 * kernels and workspace with the passes as given and with the optimizing
 * passes (fuse, fold, layout, memplan) off, from a second build. */
static int print_stats(const KpProgram *p, const CompileArgs *a, const KpPassLog *log,
                       const PhaseTimes *t)
{
    KpPassOpts off = a->passes;
    off.fuse = off.group = off.layout = off.memplan = off.fold = false;
    off.dump_after = NULL;
    off.log = NULL;
    KpProgram base = {0};
    KpDiag d;
    kp_diag_init(&d);
    if (kp_build_program(a->model, &off, a->batch, &base, &d) < 0) {
        fprintf(stderr, "%s\n", d.msg);
        return -2;
    }
    print_params(p->infer);
    print_pass_log(log);
    print_graph_figures("infer", p->infer, base.infer);
    if (p->train && base.train)
        print_graph_figures("train", p->train, base.train);
    else
        printf("train: none (%s)\n", p->no_train_reason ? p->no_train_reason : "no train graph");
    if (t->jit >= 0)
        printf("time: frontend+passes %.1f ms, codegen+optimize %.1f ms, jit %.1f ms "
               "(total %.1f ms, -O%d)\n",
               t->front * 1e3, t->cg * 1e3, t->jit * 1e3, (t->front + t->cg + t->jit) * 1e3,
               a->target.opt_level);
    else
        printf("time: frontend+passes %.1f ms, codegen+optimize %.1f ms, object %.1f ms, "
               "link %.1f ms\n",
               t->front * 1e3, t->cg * 1e3, t->obj * 1e3, t->link * 1e3);
    if (t->parts.n > 0) {
        printf("partitions: %d for %d thread%s (IR instructions", t->parts.n, t->parts.threads,
               t->parts.threads == 1 ? "" : "s");
        for (int i = 0; i < t->parts.n; i++)
            printf(" %lld", (long long)t->parts.insts[i]);
        printf("), each LLVM pipeline / code generation:");
        for (int i = 0; i < t->parts.n; i++)
            printf("%s %.1f / %.1f ms", i ? "," : "", t->parts.pipeline_ms[i], t->parts.codegen_ms[i]);
        printf("\n");
    }
    kp_program_free(&base);
    return 0;
}

/* Code generation and the JIT, timed, the model then closed. */
static int jit_compile(const KpProgram *p, const CompileArgs *a, PhaseTimes *t, KpDiag *d)
{
    KpCodegen *cg = NULL;
    karp_model *m = NULL;
    double t0 = kp_cli_now();
    int rc = kp_llvm_codegen(p, &a->target, &cg, d);
    double t1 = kp_cli_now();
    if (rc == 0)
        rc = kp_llvm_jit(cg, &m, d) < 0 ? -1 : 0;
    t->cg = t1 - t0;
    t->jit = kp_cli_now() - t1;
    t->parts = kp_llvm_part_times(cg);
    kp_llvm_free(cg);
    karp_close(m);
    return rc;
}

int kp_cmd_compile(int argc, char **argv)
{
    CompileArgs a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;

    KpDiag d;
    kp_diag_init(&d);
    KpProgram p = {0};
    KpCodegen *cg = NULL;
    KpPassLog log = {0};
    if (a.stats)
        a.passes.log = &log;
    PhaseTimes t = {.jit = -1};
    double t0 = kp_cli_now();
    rc = kp_build_program(a.model, &a.passes, a.batch, &p, &d);
    const KpGraph *g = p.infer;
    t.front = kp_cli_now() - t0;
    if (rc == 0 && a.emit && (strcmp(a.emit, "ir") == 0 || strcmp(a.emit, "dot") == 0)) {
        if (!a.passes.dump_after)
            rc = emit_graph_text(&p, &a) ? -2 : 0;
    } else if (rc == 0 && (a.emit || a.out)) {
        double t1 = kp_cli_now();
        rc = kp_llvm_codegen(&p, &a.target, &cg, &d);
        t.cg = kp_cli_now() - t1;
        if (rc == 0 && a.emit) {
            KpEmitKind k = strcmp(a.emit, "llvm") == 0  ? KP_EMIT_LLVM
                           : strcmp(a.emit, "asm") == 0 ? KP_EMIT_ASM
                                                        : KP_EMIT_OBJ;
            if (k == KP_EMIT_OBJ && !a.out)
                rc = kp_error(&d, "--emit=obj needs -o file.o");
            else
                rc = kp_llvm_emit_file(cg, k, a.out ? a.out : "-", &d);
        } else if (rc == 0) {
            rc = build_shared(cg, &a, &d, &t.obj, &t.link);
            t.parts = kp_llvm_part_times(cg);
        }
    } else if (rc == 0 && a.stats && !a.passes.dump_after) {
        rc = jit_compile(&p, &a, &t, &d);
    }
    if (rc == 0 && a.header)
        rc = kp_write_header(g, a.header, &d);
    if (rc == 0 && a.stats)
        rc = print_stats(&p, &a, &log, &t);
    if (rc == -1)
        fprintf(stderr, "%s\n", d.msg);
    kp_llvm_free(cg);
    kp_program_free(&p);
    return rc ? 1 : 0;
}
