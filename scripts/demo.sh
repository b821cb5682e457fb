#!/bin/sh
# The main job: install what is missing, build, compile the example model,
# train it on Fashion-MNIST and print its test accuracy.
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build
echo "== karpc examples/fashion_mlp.json -o build/fashion_mlp.so --header build/fashion_mlp.h"
build/karpc examples/fashion_mlp.json -o build/fashion_mlp.so --header build/fashion_mlp.h --stats
echo "== karpc train build/fashion_mlp.so --data fashion-mnist --epochs 5"
build/karpc train build/fashion_mlp.so --data fashion-mnist --epochs 5 \
    --save build/fashion_mlp.safetensors --log build/fashion_mlp.csv --plot build/fashion_mlp.svg
echo "== karpc eval build/fashion_mlp.so --data fashion-mnist --load build/fashion_mlp.safetensors"
build/karpc eval build/fashion_mlp.so --data fashion-mnist --load build/fashion_mlp.safetensors
