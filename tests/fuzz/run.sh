#!/bin/sh
# Build the libFuzzer harnesses (build-fuzz/, clang-19, ASan + UBSan) and
# run each for N seconds on a copy of its seed corpus.
#   tests/fuzz/run.sh N [harness...]     (default: every tests/fuzz/fuzz_*.c)
# Prints per harness the runs, the coverage and whether it found a crash;
# exits 1 if any did.  Crash inputs are left in build-fuzz/fuzz-out/<harness>/
# and the grown corpus in build-fuzz/fuzz-out/<harness>/corpus (never in
# the source tree).  FUZZ_JOBS=2 runs two harnesses at once.
set -eu
cd "$(dirname "$0")/../.."
secs="${1:-10}"
[ $# -gt 0 ] && shift
src=$(pwd)
bdir="$src/build-fuzz"
cc="${FUZZ_CC:-clang-19}"
command -v "$cc" >/dev/null || { echo "fuzz: $cc not found (scripts/setup.sh installs it)" >&2; exit 2; }
mkdir -p "$bdir"
# (clang warns where gcc does not: the gcc builds keep -Werror)
cmake -S . -B "$bdir" -DCMAKE_C_COMPILER="$cc" -DKARP_FUZZ=ON -DKARP_BUILD_TESTS=OFF \
      -DKARP_WERROR=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$bdir/configure.log" 2>&1 ||
    { cat "$bdir/configure.log" >&2; exit 2; }
cmake --build "$bdir" --target fuzzers -j2 >"$bdir/build.log" 2>&1 ||
    { grep -E "error|Error" "$bdir/build.log" >&2; exit 2; }

if [ $# -gt 0 ]; then
    harnesses="$*"
else
    harnesses=$(cd tests/fuzz && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')
fi
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:detect_odr_violation=0:allocator_may_return_null=1"
export LSAN_OPTIONS="suppressions=$src/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

run_one() {
    h="$1"
    out="$bdir/fuzz-out/$h"
    rm -rf "$out"
    mkdir -p "$out/corpus"
    cp -r "$src/tests/fuzz/corpus/$h/." "$out/corpus/"
    dict=""
    [ -f "$src/tests/fuzz/$h.dict" ] && dict="-dict=$src/tests/fuzz/$h.dict"
    # -timeout: a single input taking 10 s is a hang; -rss_limit_mb: more
    # than 2 GB is unbounded memory (also the limit of one malloc)
    rc=0
    (cd "$out" && "$bdir/tests/fuzz/fuzz_$h" $dict -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/" corpus \
        >"$out/log" 2>&1) || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -1)
    cov=$(grep -E "^#[0-9]+" "$out/log" | tail -1 | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1 ft \2/p')
    crashes=$(ls "$out" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' || true)
    if [ "$rc" -ne 0 ] || [ -n "$crashes" ]; then
        echo "fuzz_$h: ${secs}s, ${runs:-?} runs, ${cov:-?}: FOUND (exit $rc): $crashes — see $out/log"
        grep -E "^(==[0-9]+==ERROR|SUMMARY|.*runtime error)" "$out/log" | head -5
        return 1
    fi
    echo "fuzz_$h: ${secs}s, ${runs:-?} runs, ${cov:-?}: nothing found"
}

status=0
jobs="${FUZZ_JOBS:-1}"
if [ "$jobs" -gt 1 ]; then
    # batches of $jobs harnesses at once
    set -- $harnesses
    while [ $# -gt 0 ]; do
        batch=""
        i=0
        while [ $# -gt 0 ] && [ $i -lt "$jobs" ]; do
            batch="$batch $1"
            (run_one "$1" >"$bdir/fuzz-out.$1.summary" 2>&1; echo $? >"$bdir/fuzz-out.$1.rc") &
            shift
            i=$((i + 1))
        done
        wait
        for h in $batch; do
            cat "$bdir/fuzz-out.$h.summary"
            [ "$(cat "$bdir/fuzz-out.$h.rc")" = 0 ] || status=1
            rm -f "$bdir/fuzz-out.$h.summary" "$bdir/fuzz-out.$h.rc"
        done
    done
else
    for h in $harnesses; do
        run_one "$h" || status=1
    done
fi
exit $status
