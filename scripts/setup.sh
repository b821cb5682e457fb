#!/bin/sh
# Install what karpc needs on Debian/Ubuntu; installs only what is missing,
# so running it again is quick and changes nothing.
#   scripts/setup.sh --peers   also the peers of the benchmarks, never needed to
#                              build or test: PyTorch (bench/compare.sh), the OpenMP
#                              OpenBLAS and oneDNN (karpc bench --peers; oneDNN's
#                              header for bench/conv_bench's convolution peer)
set -eu

PKGS="gcc make cmake pkg-config libcjson-dev check zlib1g-dev dataset-fashion-mnist"
# LLVM: 19 preferred; 17 and 18 are accepted.
LLVM=""
for v in 19 18 17; do
    if dpkg-query -W -f='${Status}' "llvm-$v-dev" 2>/dev/null | grep -q "ok installed"; then
        LLVM="llvm-$v-dev"
        break
    fi
done
[ -n "$LLVM" ] || LLVM="llvm-19-dev"
PKGS="$PKGS $LLVM"
# The fuzz build (tests/fuzz/run.sh): clang 19 with libFuzzer and the
# sanitizer runtimes, and its OpenMP (the runtime uses OpenMP).
PKGS="$PKGS clang-19 libclang-rt-19-dev libomp-19-dev"
if [ "${1:-}" = "--peers" ]; then
    PKGS="$PKGS python3-torch python3-numpy libopenblas0-openmp libdnnl2 libdnnl-dev"
fi

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "setup: all dependencies present"
    exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
