/*
 * bench_report.c — the tables of karpc bench, as text or as one JSON
 * document with the same figures (docs/bench.md describes both).
 *
 * A kernel's percent of peak follows the roofline: its arithmetic
 * intensity (flops per compulsory byte, ir/cost.h) against the machine's
 * balance (peak FLOP/s per byte/s of bandwidth).  Above it the kernel is
 * compute-bound and judged against the FLOP peak ("flop"); below it,
 * memory-bound and judged against the triad bandwidth ("mem").
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "cli.h"

static const char *const peer_names[BENCH_NPEERS] = {"openblas", "onednn"};

typedef struct Rate {
    double gflops, gbs;     /* achieved, from the median time */
    bool compute_bound;
    double pct;             /* of the peak that bounds it */
} Rate;

static Rate rate(const BenchRun *run, const BenchKernel *bk)
{
    Rate r = {0};
    double t = bk->gen.median;
    if (t <= 0)
        return r;
    r.gflops = bk->cost.flops / t * 1e-9;
    r.gbs = bk->cost.bytes / t * 1e-9;
    const BenchMachine *mc = &run->machine;
    double balance = mc->bw.triad_gbs > 0 ? mc->peak.gflops / mc->bw.triad_gbs : INFINITY;
    r.compute_bound = bk->cost.bytes > 0 && bk->cost.flops / bk->cost.bytes >= balance;
    if (r.compute_bound)
        r.pct = mc->peak.gflops > 0 ? 100 * r.gflops / mc->peak.gflops : 0;
    else
        r.pct = mc->bw.triad_gbs > 0 ? 100 * r.gbs / mc->bw.triad_gbs : 0;
    return r;
}

static const char *layer_of(const BenchKernel *bk)
{
    return bk->node[0]->name ? bk->node[0]->name : "-";
}

static void print_header(const BenchRun *run)
{
    const BenchMachine *mc = &run->machine;
    printf("karpc bench %s: model %s, batch %lld, %d threads\n", run->model, run->name,
           (long long)run->batch, mc->peak.threads);
    printf("machine: %s, %d cores; load %s (start), %s (end)\n", mc->cpu, mc->cores,
           mc->load_start, mc->load_end);
    printf("peak: %.1f GFLOP/s fp32 (FMA loop, %d lanes, %d threads); memory: %.1f GB/s triad, "
           "%.1f GB/s copy (%d threads)\n",
           mc->peak.gflops, mc->peak.lanes, mc->peak.threads, mc->bw.triad_gbs, mc->bw.copy_gbs,
           mc->bw.threads);
    printf("cores: a cache line's round trip between the first two, %.0f ns (start), %.0f ns (end); "
           "past ~150 ns they share no L3 (docs/abi.md, \"Adaptive thread count\")\n",
           mc->round_trip_ns[0], mc->round_trip_ns[1]);
    printf("compile: %.3f s (parse, passes, LLVM -O3, JIT; kernels exported)\n", run->compile_s);
}

static void print_kernels(const BenchRun *run, const BenchGraph *bg)
{
    printf("\n%s (n = %lld): %d kernels, each timed in place (median of its calls, warm cache); "
           "ref: the reference kernel (plain C, one thread)\n",
           bg->entry, (long long)bg->n, bg->nk);
    printf("%3s %-14s %-36s %-14s %10s %10s %8s %8s %8s %5s %6s %10s", "#", "layer", "op(s)", "shape",
           "gen us", "ref us", "speed-up", "GFLOP/s", "GB/s", "bound", "% peak", "in step us");
    if (run->plan.peers)
        for (int p = 0; p < BENCH_NPEERS; p++)
            printf(" %11s %6s", peer_names[p], "ratio");
    printf("\n");
    double gen = 0, ref = 0, step = 0;
    for (int i = 0; i < bg->nk; i++) {
        const BenchKernel *bk = &bg->k[i];
        Rate r = rate(run, bk);
        gen += bk->gen.median;
        ref += bk->ref.median;
        step += bk->step.median;
        printf("%3d %-14.14s %-36.36s %-14.14s %10.2f %10.2f %7.1fx %8.2f %8.2f %5s %6.1f %10.2f",
               i + 1, layer_of(bk), bk->ops, bk->shape, bk->gen.median * 1e6, bk->ref.median * 1e6,
               bk->ref.median / bk->gen.median, r.gflops, r.gbs, r.compute_bound ? "flop" : "mem",
               r.pct, bk->step.median * 1e6);
        for (int p = 0; run->plan.peers && p < BENCH_NPEERS; p++) {
            const BenchPeer *pe = &bk->peer[p];
            if (pe->ran)
                printf(" %11.2f %5.2fx", pe->t.median * 1e6, pe->t.median / bk->gen.median);
            else
                printf(" %11s %6s", "-", "-");
        }
        printf("\n");
    }
    printf("%3s %-14s %-36s %-14s %10.2f %10.2f %7.1fx %8s %8s %5s %6s %10.2f\n", "", "all kernels", "",
           "", gen * 1e6, ref * 1e6, gen > 0 ? ref / gen : 0, "", "", "", "", step * 1e6);
    printf("    in step us: each kernel inside whole replays of the entry, its kernels called in order "
           "with nothing put back (median of %d); a replay's kernels together %.2f us\n",
           bg->step_total.calls, bg->step_total.median * 1e6);
}

void kp_bench_print_text(const BenchRun *run)
{
    print_header(run);
    if (run->plan.peers)
        for (int p = 0; p < BENCH_NPEERS; p++)
            printf("peer %s: %s\n", peer_names[p],
                   run->peer_lib[p] ? run->peer_lib[p] : "not installed");
    for (int g = 0; run->plan.kernels && g < run->ngraphs; g++)
        print_kernels(run, &run->graph[g]);
    printf("\nwhole entries (median of the calls after 13 warm-up calls):\n");
    for (int g = 0; g < run->ngraphs; g++) {
        const BenchGraph *bg = &run->graph[g];
        printf("  %-10s n = %-5lld median %10.2f us, best %10.2f us, %5d calls, %12.0f samples/s",
               bg->entry, (long long)bg->n, bg->whole.median * 1e6, bg->whole.best * 1e6,
               bg->whole.calls, (double)bg->n / bg->whole.median);
        if (bg->one_thread >= 0)
            printf(", %lld on 1 thread", (long long)bg->one_thread);
        printf("\n");
    }
    if (run->ngraphs < 2)
        printf("  train_step: none (the model has no loss, no optimizer, or no training code)\n");
}

static cJSON *times_json(const BenchTimes *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "median_s", t->median);
    cJSON_AddNumberToObject(o, "best_s", t->best);
    cJSON_AddNumberToObject(o, "calls", t->calls);
    return o;
}

static cJSON *kernel_json(const BenchRun *run, const BenchKernel *bk)
{
    cJSON *o = cJSON_CreateObject();
    Rate r = rate(run, bk);
    cJSON_AddStringToObject(o, "kernel", bk->k->symbol);
    cJSON_AddStringToObject(o, "layer", layer_of(bk));
    cJSON_AddStringToObject(o, "ops", bk->ops);
    cJSON *nodes = cJSON_AddArrayToObject(o, "nodes");
    for (int i = 0; i < bk->k->nnodes; i++)
        cJSON_AddItemToArray(nodes, cJSON_CreateNumber(bk->k->node[i]));
    cJSON_AddStringToObject(o, "shape", bk->shape);
    cJSON_AddNumberToObject(o, "flops", bk->cost.flops);
    cJSON_AddNumberToObject(o, "bytes", bk->cost.bytes);
    cJSON_AddItemToObject(o, "gen", times_json(&bk->gen));
    cJSON_AddItemToObject(o, "ref", times_json(&bk->ref));
    cJSON_AddItemToObject(o, "in_step", times_json(&bk->step));
    cJSON_AddNumberToObject(o, "speedup", bk->ref.median / bk->gen.median);
    cJSON_AddNumberToObject(o, "gflops", r.gflops);
    cJSON_AddNumberToObject(o, "gbs", r.gbs);
    cJSON_AddStringToObject(o, "bound", r.compute_bound ? "flop" : "mem");
    cJSON_AddNumberToObject(o, "pct_peak", r.pct);
    if (run->plan.peers) {
        cJSON *peers = cJSON_AddObjectToObject(o, "peers");
        for (int p = 0; p < BENCH_NPEERS; p++) {
            const BenchPeer *pe = &bk->peer[p];
            if (!pe->ran) {
                cJSON_AddNullToObject(peers, peer_names[p]);
                continue;
            }
            cJSON *po = times_json(&pe->t);
            cJSON_AddStringToObject(po, "how", pe->how);
            cJSON_AddNumberToObject(po, "ratio", pe->t.median / bk->gen.median);
            cJSON_AddItemToObject(peers, peer_names[p], po);
        }
    }
    return o;
}

static cJSON *machine_json(const BenchRun *run)
{
    const BenchMachine *mc = &run->machine;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "cpu", mc->cpu);
    cJSON_AddNumberToObject(o, "cores", mc->cores);
    cJSON_AddNumberToObject(o, "threads", mc->peak.threads);
    cJSON_AddNumberToObject(o, "peak_gflops", mc->peak.gflops);
    cJSON_AddNumberToObject(o, "peak_lanes", mc->peak.lanes);
    cJSON_AddNumberToObject(o, "triad_gbs", mc->bw.triad_gbs);
    cJSON_AddNumberToObject(o, "copy_gbs", mc->bw.copy_gbs);
    cJSON_AddStringToObject(o, "load_start", mc->load_start);
    cJSON_AddStringToObject(o, "load_end", mc->load_end);
    for (int i = 0; i < 2; i++)
        if (!isnan(mc->round_trip_ns[i]))
            cJSON_AddNumberToObject(o, i ? "round_trip_ns_end" : "round_trip_ns_start", mc->round_trip_ns[i]);
    return o;
}

int kp_bench_print_json(const BenchRun *run)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", run->model);
    cJSON_AddStringToObject(root, "name", run->name);
    cJSON_AddNumberToObject(root, "batch", (double)run->batch);
    cJSON_AddItemToObject(root, "machine", machine_json(run));
    cJSON_AddNumberToObject(root, "compile_s", run->compile_s);
    if (run->plan.peers) {
        cJSON *libs = cJSON_AddObjectToObject(root, "peer_libs");
        for (int p = 0; p < BENCH_NPEERS; p++)
            if (run->peer_lib[p])
                cJSON_AddStringToObject(libs, peer_names[p], run->peer_lib[p]);
            else
                cJSON_AddNullToObject(libs, peer_names[p]);
    }
    cJSON *graphs = cJSON_AddArrayToObject(root, "graphs");
    for (int g = 0; g < run->ngraphs; g++) {
        const BenchGraph *bg = &run->graph[g];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "entry", bg->entry);
        cJSON_AddNumberToObject(o, "n", (double)bg->n);
        cJSON *ks = cJSON_AddArrayToObject(o, "kernels");
        for (int i = 0; run->plan.kernels && i < bg->nk; i++)
            cJSON_AddItemToArray(ks, kernel_json(run, &bg->k[i]));
        cJSON *w = times_json(&bg->whole);
        cJSON_AddNumberToObject(w, "samples_per_s", (double)bg->n / bg->whole.median);
        if (bg->one_thread >= 0)
            cJSON_AddNumberToObject(w, "one_thread_calls", (double)bg->one_thread);
        if (!isnan(bg->loss))
            cJSON_AddNumberToObject(w, "loss", bg->loss);
        cJSON_AddItemToObject(o, "whole", w);
        if (run->plan.kernels) {
            char crc[16];
            snprintf(crc, sizeof crc, "%08x", (unsigned)bg->replay_crc);
            cJSON_AddStringToObject(o, "replay_state_crc32c", crc);
            cJSON_AddItemToObject(o, "in_step_total", times_json(&bg->step_total));
        }
        cJSON_AddItemToArray(graphs, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return kp_cli_fail("bench: out of memory");
    puts(text);
    free(text);
    return 0;
}
