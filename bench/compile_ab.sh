#!/bin/sh
# Compile time of two karpc builds side by side: `karpc MODEL --stats -O2`
# (the JIT as karp_compile runs it) with build A, then build B, ROUNDS
# times, after one untimed run of each (a cold start is no measure).  The
# machine's speed swings within minutes; runs alternated see the same
# swings, so the medians compare.  docs/compile-time.md, docs/bench.md.
#   bench/compile_ab.sh A_BUILD_DIR B_BUILD_DIR MODEL [ROUNDS]
# e.g. bench/compile_ab.sh /tmp/before/build build examples/resnet_cifar.json 10
set -eu
if [ $# -lt 3 ]; then
    echo "usage: bench/compile_ab.sh A_BUILD_DIR B_BUILD_DIR MODEL [ROUNDS]" >&2
    exit 2
fi
a=$1 b=$2 model=$3 rounds=${4:-10}
for d in "$a" "$b"; do
    [ -x "$d/karpc" ] || { echo "compile_ab: no karpc in $d" >&2; exit 2; }
done
[ -r "$model" ] || { echo "compile_ab: cannot read $model" >&2; exit 2; }

# the time: line's total, in ms
total() {
    LD_LIBRARY_PATH="$1" "$1/karpc" "$model" --stats -O2 |
        sed -n 's/^time: .*(total \([0-9.]*\) ms.*/\1/p'
}
median() {
    sort -n | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]}'
}

total "$a" >/dev/null
total "$b" >/dev/null
ta="" tb="" ratios=""
i=0
while [ "$i" -lt "$rounds" ]; do
    x=$(total "$a") y=$(total "$b")
    [ -n "$x" ] && [ -n "$y" ] || { echo "compile_ab: no time: line from karpc" >&2; exit 1; }
    ta="$ta $x" tb="$tb $y"
    ratios="$ratios $(awk -v a="$x" -v b="$y" 'BEGIN {printf "%.4f", b / a}')"
    i=$((i + 1))
done
ma=$(printf '%s\n' $ta | median) mb=$(printf '%s\n' $tb | median)
echo "A $a: median $ma ms (runs:$ta)"
echo "B $b: median $mb ms (runs:$tb)"
awk -v a="$ma" -v b="$mb" 'BEGIN {printf "B / A: %.2f\n", b / a}'
# a slow spell of the host moves both builds' runs of a round together:
# the ratio within each round sees less of it than the medians do
printf 'B / A within a round: median %.2f\n' "$(printf '%s\n' $ratios | median)"
