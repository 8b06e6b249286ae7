#!/usr/bin/env bash
# Runs one MPI job of the hosts transport on this machine and judges it: mpi_job.sh NP PER_HOST PROGRAM ARGS...
# PER_HOST > 0 simulates hosts of PER_HOST ranks (MOE_EP_HOSTS_SPLIT: peers on other "hosts" go over MPI
# even here); 0 groups ranks by the host they really run on. A SEED argument of "random" is replaced by a
# fresh seed, printed first (replay with MOE_EP_TEST_SEED). Passes when every rank prints "OK" or
# "equal to the reference"; mpirun is ended by the script, whatever happens. MOE_EP_HOSTS_RELAY (1: two-level;
# unset here: 0, flat) and MOE_EP_HOSTS_MESSAGE_BYTES reach the ranks.
set -euo pipefail
np=$1 per_host=$2
shift 2
seed=${MOE_EP_TEST_SEED:-$(($(od -An -N4 -tu4 /dev/urandom | tr -d ' ') % 4294967295 + 1))}  # never 0
args=()
for a in "$@"; do args+=("${a/random/$seed}"); done
echo "[moe_ep test] seed $seed (replay with MOE_EP_TEST_SEED=$seed)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# --bind-to none and yield: many ranks on few cores must share them; orte_tmpdir_base: nothing left behind.
# No leak check in sanitizer builds: Open MPI leaves allocations of plugins it has unloaded, which no
# suppression can name (the rest of the suite checks moe_ep's own leaks).
status=0
timeout -k 5 120 mpirun -np "$np" --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 \
  --mca btl tcp,vader,self --mca orte_tmpdir_base "$tmp" \
  -x MOE_EP_HOSTS_SPLIT="$per_host" -x MOE_EP_HOSTS_RELAY="${MOE_EP_HOSTS_RELAY:-0}" \
  -x MOE_EP_TIMEOUT_MS="${MOE_EP_TIMEOUT_MS:-20000}" -x MOE_EP_HOSTS_MESSAGE_BYTES="${MOE_EP_HOSTS_MESSAGE_BYTES:-}" \
  -x ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" \
  "${args[@]}" >"$tmp/out" 2>&1 || status=$?
cat "$tmp/out"
good=$(grep -cE "OK$|equal to the reference" "$tmp/out" || true)
if [[ $status -ne 0 || $good -ne $np ]]; then
  echo "FAIL: mpirun exited $status; $good of $np ranks reported success"
  exit 1
fi
