#!/usr/bin/env bash
# The benchmark behind the README's picture: builds moe-ep (Release, in build-bench), runs `moe-ep bench` over a
# sweep of 1 to 4096 tokens per rank on 8 ranks (threads, processes, the hosts transport and the MPI_Alltoallv
# dispatcher), writes docs/bench.json and draws docs/bench.png. Arguments replace the sweep's flags (see
# `moe-ep help`), e.g. `scripts/bench.sh --bs 1,128 --transports threads`; with `--json FILE` among them (FILE
# relative to the repository) the results go to FILE and the picture next to it (FILE.json's name ending .png, any
# other name's with .png added). A sweep where a measurement failed still writes and draws what it measured, then
# exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh python3-matplotlib
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_EP_BUILD_TESTS=OFF -DMOE_EP_BUILD_EXAMPLES=OFF \
  >/dev/null
cmake --build build-bench --target moe-ep
if (($#)); then
  flags=("$@")
else
  flags=(--bs 1,2,4,8,16,32,64,128,256,512,1024,2048,4096 --transports threads,processes,hosts,alltoallv)
fi
json=docs/bench.json
for ((i = 0; i + 1 < ${#flags[@]}; ++i)); do
  if [[ ${flags[i]} == --json ]]; then json=${flags[i + 1]}; fi
done
[[ " ${flags[*]} " == *" --json "* ]] || flags+=(--json "$json")
status=0
started=$(mktemp)  # the JSON is drawn only if this sweep wrote it (one a signal or an error ended leaves the old one)
trap 'rm -f "$started"' EXIT
./build-bench/tools/moe-ep bench "${flags[@]}" || status=$?
if [[ -s $json && $json -nt $started ]]; then
  /usr/bin/python3 scripts/plot_bench.py "$json" "${json%.json}.png"
fi
exit "$status"
