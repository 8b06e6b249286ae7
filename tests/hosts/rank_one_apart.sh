#!/usr/bin/env bash
# Sourced by the hosts tests that run rank 1 apart from the others: run_rank_one_apart NP SPLIT RANK1 PROGRAM ARGS...
# runs PROGRAM on NP ranks in hosts of SPLIT ranks (MOE_EP_HOSTS_SPLIT), rank 1 after the shell snippet RANK1 (which
# may set its environment, or exec its own wrapper of "$@"), under mpirun told not to end the job when a rank fails
# (as README's main job runs it). It prints what the ranks printed, leaves it in "$tmp/out" and mpirun's exit status
# in $status, and fails the test where the job was still running after 90 s: the others waited for rank 1. MPI's own
# shared memory lives in a temporary folder, so a rank 1 whose /dev/shm differs still reaches the others.
run_rank_one_apart() {
  local np=$1 split=$2 rank1=$3
  shift 3
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  status=0
  timeout -k 5 90 mpirun -np "$np" --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 \
    --mca btl tcp,vader,self --mca btl_vader_backing_directory "$tmp" --mca orte_tmpdir_base "$tmp" \
    --mca orte_abort_on_non_zero_status 0 \
    -x MOE_EP_HOSTS_SPLIT="$split" -x ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" \
    bash -c "if [[ \$OMPI_COMM_WORLD_RANK == 1 ]]; then $rank1; fi; exec \"\$@\"" rank "$@" \
    >"$tmp/out" 2>&1 || status=$?
  cat "$tmp/out"
  if [[ $status -eq 124 || $status -eq 137 ]]; then
    echo "FAIL: the job was still running after 90 s: the other ranks waited for rank 1"
    exit 1
  fi
}
