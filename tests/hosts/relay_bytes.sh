#!/usr/bin/env bash
# Two-level sends fewer bytes between hosts than flat: runs the same `moe-ep run` job (same seed) on
# simulated hosts twice, MOE_EP_HOSTS_RELAY=1 then 0, and requires the links' byte count of the first to
# be at most MAX_PERCENT of the second's. Both runs must verify bit-exact.
#
#   relay_bytes.sh HOSTS RANKS MAX_PERCENT MOE_EP ARGS...     ("random" in ARGS: a fresh seed, printed)
set -euo pipefail
hosts=$1 per_host=$2 max_percent=$3
shift 3
here=$(dirname "$0")
seed=${MOE_EP_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
export MOE_EP_TEST_SEED=$seed
echo "[moe_ep test] seed $seed (replay with MOE_EP_TEST_SEED=$seed)"
crossed() {  # crossed RELAY PROGRAM ARGS...: runs the job, prints its summary, leaves the byte count in $bytes
  local relay=$1 out
  shift
  out=$(MOE_EP_HOSTS_RELAY=$relay "$here/simulated_hosts.sh" "$hosts" "$per_host" "$@" 2>&1) || {
    echo "$out"
    echo "FAIL: the job with MOE_EP_HOSTS_RELAY=$relay failed"
    exit 1
  }
  echo "$out" | grep -E "transport|timings|median|hosts:"
  bytes=$(echo "$out" | sed -n 's/.* \([0-9]*\) bytes crossed the links.*/\1/p')
}
crossed 1 "$@"
two_level=$bytes
crossed 0 "$@"
flat=$bytes
percent=$((100 * two_level / flat))
echo "two-level: $two_level bytes; flat: $flat bytes; $percent% (at most $max_percent% expected)"
((percent <= max_percent)) || { echo "FAIL: two-level did not save the bytes it should"; exit 1; }
