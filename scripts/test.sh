#!/bin/sh
# Install dependencies, build, and run the whole test suite twice: the
# normal build (build/) and an AddressSanitizer + UBSan build (build-asan/).
# Tests labelled "slow" (minutes-long accuracy runs on real data) are left
# out; run them with `cd build && ctest -L slow`.
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh
status=0

echo "== tests (RelWithDebInfo, build/)"
scripts/build.sh build
(cd build && ctest --output-on-failure -j2 -LE slow) || status=1

echo "== tests (AddressSanitizer + UndefinedBehaviorSanitizer, build-asan/)"
scripts/build.sh build-asan -DKARP_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
# LLVM's own libraries are not instrumented; leaks are checked in our code
# through the suppressions file.  A freed block waits in a quarantine of
# 64 MB instead of the default 256 before it is reused: every fresh page
# costs a page fault, 38% of test_pass_matrix's time under ASan on a VM
# (docs/reliability.md, "Sanitizers").
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:detect_odr_violation=0:quarantine_size_mb=64"
export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(cd build-asan && ctest --output-on-failure -j2 -LE slow) || status=1

# A smoke run of every libFuzzer harness (docs/fuzzing.md): 10 s each.
echo "== fuzz smoke run (clang-19, libFuzzer + ASan + UBSan, build-fuzz/)"
tests/fuzz/run.sh 10 || status=1

exit $status
