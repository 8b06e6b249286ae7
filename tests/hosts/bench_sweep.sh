#!/usr/bin/env bash
# ctest HostsBench.SweepStartsItsOwnMpirun: `moe-ep bench` starting mpirun itself (on this host) for moe_ep over the
# hosts transport and the MPI_Alltoallv baseline must exit 0 and print, for every (ranks, tokens) of its sweep, a
# row of each system with its dispatch, combine and barrier timings.
# Usage: bench_sweep.sh MOE_EP_TOOL
set -uo pipefail
out=$("$1" bench --ranks 2,4 --experts 8 --topk 3 --bs 1,16 --hidden 256 --transports hosts,alltoallv --repeats 2 \
  --warmup 1 2>&1)
rc=$?
echo "$out"
[[ $rc -eq 0 ]] || { echo "FAIL: moe-ep bench exited with status $rc"; exit 1; }
n='([0-9.]+|inf)'  # a median of 0 makes a ratio inf
timed="\\| +$n +$n +${n}x \\| +$n +$n +${n}x \\| +$n "  # dispatch | combine | barrier
for system in hosts alltoallv; do
  for ranks in 2 4; do
    for bs in 1 16; do
      grep -Eq "^$system +$ranks +$bs +- +[^ ]+ $timed" <<<"$out" ||
        { echo "FAIL: no timed $system row for $ranks ranks and $bs tokens"; exit 1; }
    done
  done
done
echo "every configuration timed on both systems: OK"
