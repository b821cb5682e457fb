/*
 * bench.h — what the parts of `karpc bench` share (tools/cmd_bench.c):
 *
 *   cmd_bench.c      arguments, the machine, the compile, the order of the work
 *   bench_kernels.c  each kernel of an entry replayed in order and timed in
 *                    place, its reference kernel beside it
 *   bench_peers.c    the same gemm and convolution shapes through OpenBLAS
 *                    and oneDNN, when installed (dlopen)
 *   bench_report.c   the text tables and the JSON document
 *
 * Times are in seconds; a BenchTimes is the best and the median of calls,
 * each call timed alone.
 */
#ifndef KP_BENCH_H
#define KP_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../backend/bandwidth.h"
#include "../backend/kernels.h"
#include "../backend/peak.h"
#include "../ir/cost.h"

typedef struct BenchTimes {
    double best, median;
    int calls;
} BenchTimes;

/* How long to time: repeats > 0 is exactly that many timed calls of each
 * kernel and entry (tests); 0 is adaptive (bench_kernels.c). */
typedef struct BenchPlan {
    long repeats;
    bool kernels;           /* the per-kernel tables (--no-kernels clears it) */
    bool peers;             /* --peers */
} BenchPlan;

enum { BENCH_OPENBLAS, BENCH_ONEDNN, BENCH_NPEERS };

typedef struct BenchPeer {
    bool ran;               /* this kernel has a peer of that library, and it ran */
    BenchTimes t;
    char how[96];           /* "sgemm NT 64x128x784", "im2col+sgemm"; members of a group
                               joined by '+', those without a peer named after "without" */
} BenchPeer;

typedef struct BenchKernel {
    const KpKernel *k;
    const KpNode **node;    /* its k->nnodes nodes (malloc'd) */
    char ops[96];           /* "dense_packed+relu": ops, fused epilogues after '+' */
    char shape[48];         /* the (first) node's output at n: "64x128" */
    KpCost cost;
    BenchTimes gen, ref;
    BenchTimes step;        /* inside whole replays of the entry (kp_bench_in_step) */
    BenchPeer peer[BENCH_NPEERS];
} BenchKernel;

/* One entry point's kernels and the entry timed whole. */
typedef struct BenchGraph {
    const char *entry;      /* "infer", "train_step" */
    const KpGraph *g;
    int64_t n;
    int nk;
    BenchKernel *k;         /* malloc'd */
    BenchTimes whole;       /* the entry through karp_infer / karp_train_step */
    int64_t one_thread;     /* train_step: of whole.calls, those the runtime ran on one
                               thread (runtime/adapt.h); -1: not adaptive */
    double loss;            /* train_step: the last loss (NAN for infer) */
    BenchTimes step_total;  /* the kernels of one whole replay, summed (kp_bench_in_step) */
    uint32_t replay_crc;    /* with the kernel tables: the CRC-32C of the parameter,
                               gradient and optimizer slabs and of y right after the
                               replay: one call's state, whatever the calls per kernel */
} BenchGraph;

typedef struct BenchMachine {
    char cpu[96];           /* /proc/cpuinfo's model name */
    int cores;
    KpPeak peak;
    KpBandwidth bw;
    char load_start[64], load_end[64];  /* /proc/loadavg */
    double round_trip_ns[2];            /* a cache line between two cores and back, at the
                                           start and at the end (backend/core_latency.h) */
} BenchMachine;

typedef struct BenchRun {
    const char *model;      /* the file */
    const char *name;       /* the model's name */
    int64_t batch;
    BenchPlan plan;
    BenchMachine machine;
    double compile_s;       /* build + codegen + JIT, with the kernels kept */
    int ngraphs;
    BenchGraph graph[2];
    const char *peer_lib[BENCH_NPEERS];  /* the library loaded, or NULL: not installed */
} BenchRun;

/* The kernels entry calls (in l, for graph g), replayed in the entry's
 * order on b's buffers and each timed in place, its reference kernel on
 * copies of its inputs; bg->k filled.  m is the model l was compiled
 * into, just run through the entry so b holds realistic values.  0, or 1
 * reported. */
int kp_bench_kernels(karp_model *m, const KpKernelList *l, const KpGraph *g, KpEntryBufs *b,
                     const BenchPlan *plan, BenchGraph *bg);
/* After kp_bench_kernels: the entry replayed whole, its kernels called in
 * order with nothing put back, as many times as plan says; each kernel's
 * call timed, so that its time is what it takes inside the entry, with
 * the caches as the kernels before it leave them (bk->step,
 * bg->step_total).  For train_step every replay is a training step: the
 * gradients that the update does not zero are zeroed after it, as the
 * entry does.  0, or 1 reported. */
int kp_bench_in_step(karp_model *m, const KpKernelList *l, const KpGraph *g, const KpEntryBufs *b,
                     const BenchPlan *plan, BenchGraph *bg);
/* Free what kp_bench_kernels allocated in bg. */
void kp_bench_graph_free(BenchGraph *bg);
/* Call fn(arg), which returns the seconds of the part it timed (< 0: stop),
 * repeats times; or, for repeats 0, until at least min_calls calls have
 * added up to budget_s, or max_calls calls. */
BenchTimes kp_bench_time(double (*fn)(void *arg), void *arg, long repeats, double budget_s,
                         int min_calls, int max_calls);

/* Load the peers (BENCH_OPENBLAS, BENCH_ONEDNN) that are installed;
 * run->peer_lib[i] NULL for the others.  Set their thread counts. */
void kp_bench_peers_open(BenchRun *run, int threads);
/* Time kernel bk's shapes through each loaded peer: its gemm-like and
 * convolution nodes, one after the other (a group's other members are
 * named in how, untimed); nothing for a kernel without such a node. */
void kp_bench_peers_run(const BenchRun *run, BenchKernel *bk, int64_t n, long repeats);

/* Append s to the string buf (capacity cap), after sep unless buf is empty. */
void kp_bench_append(char *buf, size_t cap, const char *sep, const char *s);
/* v[0, count) seeded uniform [0,1) (the runtime's generator); returns v
 * (NULL accepted: nothing done). */
float *kp_bench_uniform(float *v, int64_t count, uint64_t seed);

/* The report: text on stdout, or one JSON document. */
void kp_bench_print_text(const BenchRun *run);
int kp_bench_print_json(const BenchRun *run);

#endif
