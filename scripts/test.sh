#!/usr/bin/env bash
# Every test: the format check, the release build's full suite, the same suite under ASan+UBSan (clang, in the
# fuzzers' build), the fuzzers for a bounded time (scripts/fuzz.sh), and the threaded paths (transports, thread
# ranks, C API streams) under ThreadSanitizer. Set MOE_EP_TEST_SEED to replay a printed seed; MOE_EP_SKIP_SANITIZERS=1
# runs the release suite only.
set -euo pipefail
cd "$(dirname "$0")/.."
# + the Python package's; git lists the files the format check reads; ip and tc (iproute2) and unshare
# (util-linux) make the network-namespace hosts of the HostsNet tests.
# clang-14 and its runtimes build the sanitized suite with the fuzzers.
bash scripts/deps.sh python3-dev pybind11-dev python3-numpy python3-torch python3-pytest git iproute2 util-linux \
  clang-14 libclang-rt-14-dev
jobs=$(nproc)

# Each phase's time, printed at its end and summed up at the end of the run (where CI's minutes go).
timings=()
current="" started=$SECONDS
phase() {  # phase "NAME": ends the running phase and begins NAME ("" ends the last)
  if [[ -n $current ]]; then
    timings+=("$(printf '%5d s  %s' $((SECONDS - started)) "$current")")
    echo "== $current: $((SECONDS - started)) s"
  fi
  current=$1 started=$SECONDS
  [[ -z $current ]] || echo "== $current"
}

build_and_test() {  # build_and_test DIR "TARGETS" CTEST_REGEX CMAKE_ARGS...  (empty TARGETS / REGEX: all)
  local dir=$1 targets=$2 regex=$3
  shift 3
  # The libraries as a unity build, as scripts/run.sh builds them: the release suite then reuses the main job's
  # objects in build/, and each build parses the libraries' headers a few times instead of once a file. The tests
  # themselves build file by file (tests/CMakeLists.txt); the sanitized build (with the fuzzers) compiles every
  # library file on its own, so that a file missing an include still fails somewhere.
  cmake -S . -B "$dir" -G Ninja -DCMAKE_UNITY_BUILD=ON "$@" >/dev/null
  local build_started=$SECONDS
  # shellcheck disable=SC2086
  cmake --build "$dir" -j "$jobs" ${targets:+--target $targets}
  echo "== $dir built in $((SECONDS - build_started)) s"
  # Two slots more than the cores when the hosts transport's MPI jobs are among the tests: they run two at a time
  # (tests/hosts/, a lock for the joins that mostly wait and one for the rest) and spend most of their time waiting
  # on deadlines and sleeps, beside the rest.
  local slots=$jobs
  [[ -n $regex ]] || slots=$((jobs + 2))
  (cd "$dir" && ctest --output-on-failure -j "$slots" ${regex:+-R "$regex"}) | tee "$dir/ctest.log"
  # A test that skipped itself (GTEST_SKIP: a kernel that refuses namespaces or ptrace here) passes ctest: name it.
  local name
  while read -r name; do skipped+=("$dir: $name"); done < <(sed -n 's/.*Test *#[0-9]*: \([^ ]*\) .*\*\*\*Skipped.*/\1/p' "$dir/ctest.log")
}
skipped=()

phase "format"
bash scripts/check_format.sh
phase "release build: all tests"
# With the benchmarks (bench/): built, so that they keep compiling, and hosts_bench run once small, where its
# MPI_Alltoallv baseline is checked bit for bit against moe_ep (the timings of so small a run mean nothing).
build_and_test build "" "" -DCMAKE_BUILD_TYPE=Release -DMOE_EP_BUILD_TESTS=ON -DMOE_EP_BUILD_EXAMPLES=ON \
  -DMOE_EP_BUILD_PYTHON=ON -DMOE_EP_BUILD_BENCH=ON
# The Python suite is never skipped here: a release build without the package is a failure.
compgen -G "build/python/moe_ep/_moe_ep*.so" >/dev/null || { echo "the Python package was not built (see cmake's output)"; exit 1; }
# Nor the hosts tier: without MPI it is left out of the build, which then passes without it.
(cd build && ctest -N -R '^Hosts' | grep -q "Total Tests: [1-9]") || { echo "the hosts tests were not built (MPI not found?)"; exit 1; }
if [[ "${MOE_EP_SKIP_SANITIZERS:-0}" != 1 ]]; then
  # One clang build for both: the suite runs in the fuzzers' build (optimized, ASan + UBSan, with libFuzzer's
  # coverage counters, which cost the tests little), so the libraries are built once for both and the suite runs
  # optimized code (a third faster than gcc's -O0 build, which it replaced). The release and TSan builds are gcc's.
  phase "ASan + UBSan (clang, the fuzzers' build): all tests"
  CC=clang-14 CXX=clang++-14 build_and_test build-fuzz "" "" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DMOE_EP_SANITIZE=address;undefined" -DMOE_EP_BUILD_FUZZERS=ON -DMOE_EP_BUILD_EXAMPLES=OFF -DCMAKE_UNITY_BUILD=OFF \
    -DMOE_EP_BUILD_BENCH=OFF
  phase "fuzzers (clang, ASan + UBSan): C API, native API, moe-ep command line"
  bash scripts/fuzz.sh
  phase "TSan: thread transport, C API runtime, streams, events and communicators"
  TSAN_OPTIONS="halt_on_error=1" build_and_test build-tsan \
    "property_test back_to_back_test unpaired_calls_test workers_test conformance_test missing_rank_test reset_retry_test pull_test held_claims_test tp_refusal_test runtime_test capi_stream_test capi_property_test capi_event_test capi_hccl_config_test" \
    "^(Transports/Property|BackToBackDispatch|UnpairedCalls|Workers|Transports/Conformance|MissingRank|ResetRetry|PullHandOver|HeldClaims|TpRefusal|Acl|Kinds/AclStreams|CapiStream|CapiProperty|TwoStreams|CapiEvents|CapiCommConfig|CapiRankTable)" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMOE_EP_SANITIZE=thread -DMOE_EP_BUILD_EXAMPLES=OFF -DMOE_EP_BUILD_BENCH=OFF
fi
phase ""
if [[ ${#skipped[@]} -gt 0 ]]; then
  echo "== ${#skipped[@]} test(s) skipped themselves (they did not run here; see their output above):"
  printf '   %s\n' "${skipped[@]}"
fi
[[ "${MOE_EP_SKIP_SANITIZERS:-0}" != 1 ]] || echo "== MOE_EP_SKIP_SANITIZERS=1: the sanitizer and fuzzer phases did not run"
echo "== every test that ran passed; time by phase:"
printf '%s\n' "${timings[@]}"
