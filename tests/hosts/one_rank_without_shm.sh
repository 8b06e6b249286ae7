#!/usr/bin/env bash
# A join that fails on one host alone must never leave the other hosts' ranks waiting for it:
# one_rank_without_shm.sh NP PROGRAM ARGS... runs PROGRAM on NP ranks, each a host of its own, with rank 1 in a mount
# namespace of its own whose /dev/shm is read-only (its shared-memory segment cannot be made; the others' can), and
# mpirun told not to end the job when a rank fails (as README's main job runs it). It passes when the job ends
# within the deadline, rank 1's error says why it could not join, and every other rank says that another rank's
# join failed. Needs root (a mount namespace); MPI's own shared memory lives in a temporary folder, which rank 1
# sees as the others do.
set -euo pipefail
np=$1
shift
if ! unshare -m true 2>/dev/null; then
  echo "FAIL: cannot make a mount namespace (this test needs root)"
  exit 1
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
timeout -k 5 90 mpirun -np "$np" --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 \
  --mca btl vader,self --mca btl_vader_backing_directory "$tmp" --mca orte_tmpdir_base "$tmp" \
  --mca orte_abort_on_non_zero_status 0 \
  -x MOE_EP_HOSTS_SPLIT=1 -x ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" \
  bash -c 'if [[ $OMPI_COMM_WORLD_RANK == 1 ]]; then
             exec unshare -m --propagation private bash -c "mount -t tmpfs -o ro,size=1m tmpfs /dev/shm && exec \"\$@\"" rank "$@"
           fi
           exec "$@"' rank "$@" >"$tmp/out" 2>&1 || status=$?
cat "$tmp/out"
if [[ $status -eq 124 || $status -eq 137 ]]; then
  echo "FAIL: the job was still running after 90 s: the ranks that joined waited for the one that could not"
  exit 1
fi
if ! grep -q "error.*Read-only file system" "$tmp/out"; then
  echo "FAIL: rank 1 did not fail its join for its read-only /dev/shm (mpirun exited $status)"
  exit 1
fi
others=$(grep -c "another rank's join failed" "$tmp/out" || true)
if [[ $others -ne $((np - 1)) ]]; then
  echo "FAIL: $others of the $((np - 1)) ranks that joined said that another rank's join failed"
  exit 1
fi
echo "rank 1 failed its join alone, and the $others others returned (mpirun exited $status)"
