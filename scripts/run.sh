#!/usr/bin/env bash
# The main job: build moe_ep, then run dispatch + combine on 8 in-process ranks (128 tokens, hidden 7168,
# top-8, 64 experts, bf16), verified against the reference, with timings. Extra flags go to `moe-ep run`
# (e.g. --shared-experts 1 --experts 56 --quant int8 --bs 512: the routed experts spread over the 7 MoE ranks);
# see `build/tools/moe-ep help`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# A unity build (a few large translation units per library) halves the cold build of the main job (about
# 80 -> 40 s on 2 cores); scripts/test.sh builds the libraries the same way in build/, reusing these objects.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_EP_BUILD_TESTS=OFF -DMOE_EP_BUILD_BENCH=OFF \
  -DMOE_EP_BUILD_EXAMPLES=OFF -DMOE_EP_BUILD_PYTHON=OFF -DCMAKE_UNITY_BUILD=ON >/dev/null
cmake --build build --target moe-ep
./build/tools/moe-ep run "$@"
