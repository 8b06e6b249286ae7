#!/usr/bin/env bash
# A join that fails on one host alone must never leave the other hosts' ranks waiting for it:
# one_rank_without_shm.sh NP PROGRAM ARGS... runs PROGRAM on NP ranks, each a host of its own, with rank 1 in a mount
# namespace of its own whose /dev/shm is read-only (its shared-memory segment cannot be made; the others' can), and
# mpirun told not to end the job when a rank fails (as README's main job runs it). It passes when the job ends
# within the deadline, rank 1's error says why it could not join, and every other rank says that another rank's
# join failed. Needs root (a mount namespace).
set -euo pipefail
np=$1
shift
if ! unshare -m true 2>/dev/null; then
  echo "FAIL: cannot make a mount namespace (this test needs root)"
  exit 1
fi
source "$(dirname "$0")/rank_one_apart.sh"
run_rank_one_apart "$np" 1 \
  'exec unshare -m --propagation private bash -c "mount -t tmpfs -o ro,size=1m tmpfs /dev/shm && exec \"\$@\"" rank "$@"' \
  "$@"
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
