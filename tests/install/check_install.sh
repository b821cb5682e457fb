#!/bin/sh
# cmake --install into a temporary prefix, then build a host project
# against it through find_package(karpc) and through pkg-config, run
# both, and compile a model with the installed karpc.
#   check_install.sh BUILD_DIR SOURCE_DIR
set -eu
build="$1"
src="$2"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/karp-install-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir="$(dirname "$(find "$tmp/prefix" -name 'libkarprt.a' | head -n1)")"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
export LD_LIBRARY_PATH="$libdir"
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
"$tmp/consumer/consumer_cmake" "$src/examples/fashion_mlp.json"
"$tmp/consumer/consumer_pkgconfig" "$src/examples/fashion_mlp.json"
# The installed karpc finds the installed static runtime for linking model.so.
"$tmp/prefix/bin/karpc" "$src/examples/fashion_mlp.json" -o "$tmp/m.so"
test -s "$tmp/m.so"
test -f "$tmp/prefix/include/karp.h"
echo "install ok"
