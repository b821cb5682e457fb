#include "bench.h"
void kp_bench_peers_open(BenchRun *run, int threads) { (void)run; (void)threads; }
void kp_bench_peers_run(const BenchRun *run, BenchKernel *bk, int64_t n, long repeats) {}
