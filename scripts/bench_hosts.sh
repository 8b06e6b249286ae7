#!/usr/bin/env bash
# moe_ep's hosts transport against an MPI_Alltoallv dispatcher (bench/hosts_bench) on simulated hosts (root):
# 2 hosts x 4 ranks and 4 hosts x 2 ranks, each with links as fast as the machine and shaped to RATE, and
# each over moe_ep's flat and two-level paths between hosts; one table per configuration. Extra arguments go
# to hosts_bench (e.g. --repeats 5 --tokens 128; see --help), except --seed: the script passes
# MOE_EP_BENCH_SEED to every run.
#
#   MOE_EP_BENCH_RATE=2gbit   the shaped links' rate (a tc rate)
#   MOE_EP_BENCH_RELAY="0 1"  moe_ep's paths between hosts to run, each as MOE_EP_HOSTS_RELAY: 0 flat, 1 two-level
#   MOE_EP_BENCH_SEED=S       routing seed (default: drawn, printed; the same for every run of this script)
#   MOE_EP_BENCH_BUILD=DIR    build folder (default build-bench, Release)
#   MOE_EP_HOSTS_LIMIT_S=S    each job's time limit (default 3600); MOE_EP_TIMEOUT_MS defaults to 120000 here
set -euo pipefail
for arg in "$@"; do
  if [[ $arg == --seed || $arg == --seed=* ]]; then
    echo "bench_hosts.sh: give the seed as MOE_EP_BENCH_SEED=S, not $arg (every run gets the same one)" >&2
    exit 2
  fi
done
cd "$(dirname "$0")/.."
bash scripts/deps.sh iproute2 util-linux
build=${MOE_EP_BENCH_BUILD:-build-bench}
rate=${MOE_EP_BENCH_RATE:-2gbit}
relay_paths=${MOE_EP_BENCH_RELAY:-0 1}
seed=${MOE_EP_BENCH_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_EP_BUILD_BENCH=ON >/dev/null
cmake --build "$build" --target hosts_bench || { echo "building hosts_bench failed (above; without MPI there is no such target)"; exit 1; }

echo "hosts_bench on simulated hosts: seed $seed, shaped links $rate, moe_ep paths (MOE_EP_HOSTS_RELAY) $relay_paths"
failed=()
for relay in $relay_paths; do
  for shape in "2 4" "4 2"; do
    read -r hosts per_host <<<"$shape"
    for link_rate in "" "$rate"; do
      job="$hosts hosts x $per_host ranks, links ${link_rate:-unshaped}, MOE_EP_HOSTS_RELAY=$relay"
      echo
      echo "######## $job ########"
      # Generous limits: 8 ranks share the machine's cores, and a slow link stretches every round.
      # A failed job does not stop the others; the script fails at the end, naming it.
      MOE_EP_HOSTS_RELAY=$relay MOE_EP_HOSTS_RATE=$link_rate MOE_EP_HOSTS_LIMIT_S=${MOE_EP_HOSTS_LIMIT_S:-3600} \
        MOE_EP_TIMEOUT_MS=${MOE_EP_TIMEOUT_MS:-120000} \
        bash tests/hosts/simulated_hosts.sh "$hosts" "$per_host" "$build/bench/hosts_bench" --seed "$seed" "$@" |
        grep -v -e ': hosts_bench done, baseline verified OK$' -e '^\[moe_ep test\] seed ' || failed+=("$job")
    done
  done
done
if ((${#failed[@]})); then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
