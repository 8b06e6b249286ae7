#!/usr/bin/env bash
# A setting given to one rank only must never leave the others waiting in MPI for it:
# one_rank_setting.sh EXPECT NP VAR VALUE PROGRAM ARGS... runs PROGRAM on NP ranks (hosts of 2) with VAR=VALUE on
# rank 1 alone, with mpirun told not to end the job when a rank fails (as README's main job runs it). It passes
# when the job ends within the deadline and
#   EXPECT = every-rank-fails: every rank's error (a line with "error" or "FAIL") names VAR, and some names VALUE as
#            rank 1's: "VAR = 'VALUE'" (a value rank 1 refuses) or "VAR ... rank 1 has VALUE" (one that differs from
#            the others'; a bare VALUE would match an error code or a rank number);
#   EXPECT = job-ends:         the job fails, ended by a rank that reported a timeout (MPI_Abort after its error).
# (mpirun exits 0 when ranks fail on their own under orte_abort_on_non_zero_status 0, and not 0 when one aborts the
# job.) HOSTS_SPLIT (default 2) sets MOE_EP_HOSTS_SPLIT for every rank; RANK_ONE_LATE=S starts rank 1 S seconds late.
set -euo pipefail
expect=$1 np=$2 var=$3 value=$4
shift 4
source "$(dirname "$0")/rank_one_apart.sh"
run_rank_one_apart "$np" "${HOSTS_SPLIT:-2}" "sleep ${RANK_ONE_LATE:-0}; export $var=$value" "$@"
case $expect in
  every-rank-fails)
    errors=$(grep -cE "(error|FAIL).*$var" "$tmp/out" || true)
    named=$(grep -cE "(error|FAIL).*$var( = '$value'|.*rank 1 has $value([^0-9]|\$))" "$tmp/out" || true)
    if [[ $errors -ne $np || $named -lt 1 ]]; then
      echo "FAIL: mpirun exited $status; $errors of $np ranks' errors name $var, $named name $value too"
      exit 1
    fi
    echo "every rank failed naming $var, and $named errors name $value" ;;
  job-ends)
    if [[ $status -eq 0 ]]; then
      echo "FAIL: the job passed: rank 1 never failed with $var=$value, so this run checked nothing"
      exit 1
    fi
    # Ended by the failing rank's own abort, after its error: not by a rank that crashed, nor a job that never ran.
    if ! grep -qE "timed out.*ending the job" "$tmp/out"; then
      echo "FAIL: mpirun exited $status, but no rank reported a timeout and ended the job"
      exit 1
    fi
    echo "the job ended (mpirun exited $status) once rank 1 failed with $var=$value" ;;
  *) echo "one_rank_setting.sh: EXPECT '$expect' is neither every-rank-fails nor job-ends" >&2; exit 2 ;;
esac
