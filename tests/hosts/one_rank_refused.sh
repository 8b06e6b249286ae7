#!/usr/bin/env bash
# A setting only one rank refuses must fail every rank, never leave the others waiting in MPI for it:
# one_rank_refused.sh NP VAR VALUE PROGRAM ARGS... runs PROGRAM on NP ranks (hosts of 2) with VAR=VALUE on rank 1
# alone, with mpirun told not to end the job when a rank fails (as README's main job runs it). Passes when the job
# ends within the deadline, rank 1's error names VAR and VALUE, and every other rank's error names VAR.
set -euo pipefail
np=$1 var=$2 value=$3
shift 3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
timeout -k 5 90 mpirun -np "$np" --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 \
  --mca btl tcp,vader,self --mca orte_tmpdir_base "$tmp" --mca orte_abort_on_non_zero_status 0 \
  -x MOE_EP_HOSTS_SPLIT=2 -x ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" \
  bash -c "if [[ \$OMPI_COMM_WORLD_RANK == 1 ]]; then export $var=$value; fi; exec \"\$@\"" rank "$@" \
  >"$tmp/out" 2>&1 || status=$?
cat "$tmp/out"
if [[ $status -eq 124 || $status -eq 137 ]]; then
  echo "FAIL: the job was still running after 90 s: ranks waited for the one that refused its $var"
  exit 1
fi
named=$(grep -c "$var.*$value\|$value.*$var" "$tmp/out" || true)
others=$(grep -c "another rank refused its $var" "$tmp/out" || true)
if [[ $named -lt 1 || $others -ne $((np - 1)) ]]; then
  echo "FAIL: mpirun exited $status; $named errors name $var = $value, $others of $((np - 1)) ranks say another refused it"
  exit 1
fi
echo "every rank failed: rank 1 naming $var = $value, the $((np - 1)) others naming the rank's refusal"
