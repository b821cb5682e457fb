#!/bin/sh
# The main job: install what is missing, build, compile the example model
# and run it on the Fashion-MNIST test images.
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build
echo "== karpc examples/fashion_mlp.json -o build/fashion_mlp.so"
time -p build/karpc examples/fashion_mlp.json -o build/fashion_mlp.so --header build/fashion_mlp.h
echo "== karpc eval build/fashion_mlp.so --data fashion-mnist"
build/karpc eval build/fashion_mlp.so --data fashion-mnist
