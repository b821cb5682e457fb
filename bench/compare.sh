#!/bin/sh
# karpc against PyTorch: the same models, batch sizes and thread counts in
# one run, the ratios printed and written to bench/RESULTS.md (docs/bench.md).
#
#   bench/compare.sh [--karpc build/karpc] [--rounds R] [--models a,b] [--batches 64,1]
#                    [--threads 1,2] [--out FILE]
#
# PyTorch gets its best fair set-up: the OpenMP build of OpenBLAS (the
# pthread one fights PyTorch's OpenMP threads), glibc's malloc keeping large
# activation buffers (no mmap/munmap and page faults every step), and
# torch.set_num_threads (torch_models.py).  karpc runs in the same environment.
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh --peers >&2
[ -x build/karpc ] || scripts/build.sh build >&2
export LD_LIBRARY_PATH="/usr/lib/x86_64-linux-gnu/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GLIBC_TUNABLES="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"
exec /usr/bin/python3 bench/compare.py "$@"
