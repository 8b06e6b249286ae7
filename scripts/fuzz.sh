#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang 14, ASan + UBSan, in build-fuzz/) and runs them side by side,
# each for a bounded time from a copy of its seed corpus; fails on any crash, leak, timeout or OOM. `--replay` runs
# each target once over its checked-in corpus instead (quick). MOE_EP_FUZZ_SECONDS sets the time (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=fuzz
case "${1:-}" in
  "") ;;
  --replay) mode=replay ;;
  *)
    echo "usage: $0 [--replay]   (MOE_EP_FUZZ_SECONDS=N: seconds per target, default 60)" >&2
    exit 2
    ;;
esac
seconds=${MOE_EP_FUZZ_SECONDS:-60}
# libFuzzer reads 0 (and anything not a number) as no time limit at all: a fuzzer would then run until it crashed.
if ! [[ $seconds =~ ^[1-9][0-9]{0,5}$ ]]; then
  echo "$0: MOE_EP_FUZZ_SECONDS=$seconds violates rule: seconds per target, an integer in [1, 999999]" >&2
  exit 2
fi
jobs=$(nproc)

# The build's packages, and the compiler with its libFuzzer / sanitizer runtimes.
bash scripts/deps.sh clang-14 libclang-rt-14-dev

# A fresh build-fuzz/ is made without the tests (and through ccache when there is one); an existing one keeps its
# settings: scripts/test.sh builds its sanitized suite here too, and this reuses those objects.
fresh=()
if [[ ! -f build-fuzz/CMakeCache.txt ]]; then
  fresh=(-DMOE_EP_BUILD_TESTS=OFF)
  command -v ccache >/dev/null && fresh+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMOE_EP_BUILD_FUZZERS=ON "-DMOE_EP_SANITIZE=address;undefined" -DMOE_EP_BUILD_EXAMPLES=OFF \
  -DMOE_EP_BUILD_BENCH=OFF "${fresh[@]}" >/dev/null

# Every fuzz target this configuration defines (cli_fuzz only once tools/ provides moe_ep_cli).
# (The list is read whole first: grep -q stopping early would fail the listing's pipe, and drop the target.)
defined=$(cmake --build build-fuzz --target help)
targets=()
for t in capi_fuzz native_fuzz cli_fuzz; do
  if grep -q "^$t:" <<<"$defined"; then targets+=("$t"); fi
done
cmake --build build-fuzz -j "$jobs" --target "${targets[@]}"

# Fatal UBSan reports with their stacks; leaks checked after every input that allocated more than it freed.
export ASAN_OPTIONS="detect_leaks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

# Inputs run in a scratch copy: libFuzzer writes what it finds into its first corpus directory, and the
# checked-in corpus stays as committed. Reproducers of failures are kept in build-fuzz/fuzz-artifacts/<target>/.
work=$(mktemp -d /tmp/moe_ep_fuzz.XXXXXX)
declare -A pid  # of each target's run
# On any exit: fuzzers still running (the script itself failed, or was signalled) stop with it, then the scratch goes.
stop_fuzzers() {
  if ((${#pid[@]})); then
    kill "${pid[@]}" 2>/dev/null || true
    wait "${pid[@]}" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap stop_fuzzers EXIT
mkdir -p build-fuzz/fuzz-artifacts
failed=()
summary=()
line_failed=()
common_of() {  # common_of TARGET: the flags every run of TARGET takes
  common=(-timeout=30 -rss_limit_mb=4096 -detect_leaks=1 -max_len=1024 -print_final_stats=1
    "-artifact_prefix=$work/$1/artifacts/")
}
# The targets run side by side: the C API's and the native API's mostly wait (their ranks' deadlines are short
# waits by design) and use a fraction of a core each, so together the three take about one target's time.
for t in "${targets[@]}"; do
  seeds=tests/fuzz/corpus/${t%_fuzz}
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  if [[ -d $seeds ]]; then cp "$seeds"/* "$work/$t/corpus/" 2>/dev/null || true; fi
  common_of "$t"
  if [[ $mode == replay ]]; then
    echo "== $t: replaying $(find "$work/$t/corpus" -type f | wc -l) inputs of $seeds"
    run=("build-fuzz/tests/fuzz/$t" "${common[@]}" -runs=0 "$work/$t/corpus")
  else
    echo "== $t: fuzzing for $seconds s from $(find "$work/$t/corpus" -type f | wc -l) seeds of $seeds"
    run=("build-fuzz/tests/fuzz/$t" "${common[@]}" "-max_total_time=$seconds" "$work/$t/corpus")
  fi
  "${run[@]}" >"$work/$t/log" 2>&1 &
  pid[$t]=$!
done
for t in "${targets[@]}"; do
  seeds=tests/fuzz/corpus/${t%_fuzz}
  common_of "$t"
  rc=0
  wait "${pid[$t]}" || rc=$?
  unset "pid[$t]"
  # libFuzzer's last status line ("#N DONE cov: C ft: F corp: ...") and its final stats.
  status=$(grep -E '^#[0-9]+[[:space:]]+(INITED|DONE|pulse|NEW|REDUCE)' "$work/$t/log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t/log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1, ft \2/p' <<<"$status")
  line="$t: ${execs:-?} execs, ${rate:-?}/s, ${cov:-no coverage line}"
  if ((rc != 0)) || [[ -n $(ls -A "$work/$t/artifacts") ]]; then
    echo "---- $t FAILED (exit $rc); the end of its log:"
    grep -v '^#[0-9]' "$work/$t/log" | tail -60
    if [[ $mode == replay ]]; then
      # libFuzzer stops at the first failing input: run each one alone to name all of them.
      for f in "$work/$t/corpus"/*; do
        "build-fuzz/tests/fuzz/$t" "${common[@]}" "$f" >/dev/null 2>&1 || line_failed+=("$(basename "$f")")
      done
      echo "---- failing inputs of $seeds: ${line_failed[*]:-none alone (only in sequence)}"
      line_failed=()
    fi
    rm -rf "build-fuzz/fuzz-artifacts/$t"
    cp -r "$work/$t/artifacts" "build-fuzz/fuzz-artifacts/$t"
    echo "---- reproducers: build-fuzz/fuzz-artifacts/$t/ (replay: build-fuzz/tests/fuzz/$t FILE)"
    failed+=("$t")
    line="$line  FAILED"
  fi
  echo "$line"
  summary+=("$line")
done

echo "== fuzz summary ($mode)"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzzing failed: ${failed[*]}" >&2
  exit 1
fi
