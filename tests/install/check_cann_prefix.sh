#!/usr/bin/env bash
# ctest install_cann_prefix: installs the build into a temporary prefix P, checks the CANN-shaped layout,
# that the C headers compile as C99, and P/latest/bin/setenv.bash, builds examples/cann/*.cpp and the documentation's two samples
# (seed_samples/) with the documented g++ line after `source P/latest/bin/setenv.bash`, runs them (each
# must exit 0; the samples, which exit 0 regardless, must also print their success lines), and builds
# and runs examples/native_dispatch_combine.cc through find_package(moe_ep) (consumer/), and the Python
# package from the prefix when the build has one.
# Usage: check_cann_prefix.sh BUILD_DIR SOURCE_DIR mpi|no-mpi [PYTHON PACKAGE_DIR default|chosen] (the last three
# when the build has the Python package: its interpreter, the package's install dir and whether that is the default).
# The prefix is removed on success, kept on failure.
set -euo pipefail
build=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)
mpi=$3 python=${4:-} python_dir=${5:-} python_place=${6:-}
here="${source_dir}/tests/install"
work=$(mktemp -d "${TMPDIR:-/tmp}/moe_ep_install.XXXXXX")
prefix="${work}/prefix"
finish() {
  local status=$?
  if [[ $status -eq 0 ]]; then rm -rf "$work"; else echo "FAILED (status $status); kept $work"; fi
}
trap finish EXIT
export MOE_EP_TIMEOUT_MS=60000  # a failing program ends within a minute instead of hanging

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $* ($SECONDS s)"; }

step "cmake --install ${build} --prefix ${prefix}"
cmake --install "$build" --prefix "$prefix" >"${work}/install.log"

step "layout"
latest="${prefix}/latest"
for f in include/acl/acl.h include/acl/acl_base.h include/acl/acl_rt.h include/aclnn/acl_meta.h \
         include/aclnn/aclnn_base.h include/hccl/hccl.h include/hccl/hccl_types.h \
         include/op_host/op_api/aclnn_moe_distribute_dispatch_v2.h \
         moe_distribute_combine_v2/op_host/op_api/aclnn_moe_distribute_combine_v2.h bin/setenv.bash; do
  [[ -f "${latest}/$f" ]] || fail "missing latest/$f"
done
for h in "${source_dir}"/include/aclnnop/*.h; do
  cmp -s "$h" "${latest}/include/aclnnop/$(basename "$h")" || fail "latest/include/aclnnop/$(basename "$h") differs"
done
real_lib=$(readlink -f "${latest}/lib64/libmoe_ep_cann.so")
[[ -f "$real_lib" && ! -L "${latest}/lib64/libmoe_ep_cann.so.0.1.0" ]] || fail "latest/lib64 holds no real libmoe_ep_cann"
for lib in ascendcl hccl nnopbase opapi op_common opapi_math opapi_transformer hccl_fwk c_sec; do
  [[ "$(readlink -f "${latest}/lib64/lib${lib}.so")" == "$real_lib" ]] || fail "lib${lib}.so does not resolve to libmoe_ep_cann"
done
# The C API library exports the C entry points and nothing of the engine inside it, but the Python package's bridge
# for its interrupt check (src/cann/interrupt_bridge.cc).
symbols=$(nm -D --defined-only "$real_lib")  # on its own: a failing nm fails the test, not an empty list
leaked=$(awk '{print $3}' <<<"$symbols" | grep -v -E '^(acl|Hccl)' |
  grep -v -E '^(_init|_fini|_edata|_end|__bss_start|moe_ep_cann_set_interrupt_check)$' || true)
[[ -n "$symbols" ]] || fail "nm lists no symbols of $real_lib"
[[ -z "$leaked" ]] || fail "libmoe_ep_cann exports more than the C API: $(echo $leaked | head -c 300)"
[[ -f "${prefix}/lib/libmoe_ep.so" || -f "${prefix}/lib64/libmoe_ep.so" ]] || fail "the native lib/ install is missing"

step "the C headers compile as C99, each on its own (included twice: its guard)"
for h in acl/acl.h hccl/hccl.h "${latest}"/include/aclnnop/*.h; do
  h=${h#"${latest}/include/aclnnop/"}
  printf '#include "%s"\n#include "%s"\nint main(void) { return 0; }\n' "$h" "${h}" >"${work}/header.c"
  gcc -std=c99 -Wall -Wextra -pedantic -Werror -I"${latest}/include" -I"${latest}/include/aclnnop" \
      -c "${work}/header.c" -o "${work}/header.o" || fail "$h does not compile as C99 on its own"
done
printf '#include "hccl/hccl.h"\nint main(void) { HcclCommConfig c; HcclCommConfigInit(&c); aclrtStream s = 0; (void)s;\n  return c.hcclBufferSize == HCCL_COMM_BUFFSIZE_CONFIG_NOT_SET ? 0 : 1; }\n' >"${work}/hccl.c"
gcc -std=c99 -Wall -Wextra -pedantic -Werror -I"${latest}/include" -c "${work}/hccl.c" -o "${work}/hccl.o" ||
  fail "hccl/hccl.h with HcclCommConfigInit and an acl type does not compile as C99"

step "setenv.bash: from any directory, idempotent, under set -u"
(
  cd /
  unset LD_LIBRARY_PATH ASCEND_TOOLKIT_HOME ASCEND_HOME_PATH
  # shellcheck source=/dev/null
  source "${latest}/bin/setenv.bash"
  [[ "$LD_LIBRARY_PATH" == "${latest}/lib64" ]] || fail "LD_LIBRARY_PATH = '$LD_LIBRARY_PATH'"
  LD_LIBRARY_PATH="${LD_LIBRARY_PATH}:/other"
  # shellcheck source=/dev/null
  source "${prefix}/latest/bin/../bin/setenv.bash"
  [[ "$LD_LIBRARY_PATH" == "${latest}/lib64:/other" ]] || fail "not idempotent: LD_LIBRARY_PATH = '$LD_LIBRARY_PATH'"
  [[ "$ASCEND_TOOLKIT_HOME" == "$latest" && "$ASCEND_HOME_PATH" == "$latest" ]] || fail "ASCEND_TOOLKIT_HOME / ASCEND_HOME_PATH"
)

cd "$work"
# shellcheck source=/dev/null
source "${prefix}/latest/bin/setenv.bash"

# The documented build lines: the issue's, and the BufferReset page's build script (quoted paths with
# trailing slashes, -L=). Each g++ runs in the background; $work/NAME.build holds its output.
build_example() {  # build_example SOURCE NAME; rank_table.cpp with the libraries the vendor's samples link
  local libs=(-lascendcl -lnnopbase -lopapi -lop_common -lpthread -lhccl)
  [[ "$2" == *rank_table ]] && libs=(-lopapi_math -lopapi_transformer -lascendcl -lnnopbase -lpthread -lhccl -lhccl_fwk -lc_sec)
  g++ "$1" -o "$2" -I"$latest"/include -I"$latest"/include/aclnnop -L"$latest"/lib64 "${libs[@]}" >"$2.build" 2>&1
}
build_sample() {  # build_sample SOURCE NAME, as the documentation's build script writes it
  local cann_path="$prefix"
  g++ "$1" -o "$2" -I"$cann_path/latest/include/" -I"$cann_path/latest/include/aclnnop/" \
      -L="$cann_path/latest/lib64/" -lascendcl -lnnopbase -lopapi -lop_common -lpthread -lhccl >"$2.build" 2>&1
}

step "g++ with the documented line: examples/cann and seed_samples"
names=()
pids=()
for src in "${source_dir}"/examples/cann/*.cpp; do
  name="example_$(basename "$src" .cpp)"
  build_example "$src" "$name" &
  names+=("$name") pids+=($!)
done
for src in "${here}"/seed_samples/*.cpp; do
  name="sample_$(basename "$src" .cpp)"
  build_sample "$src" "$name" &
  names+=("$name") pids+=($!)
done

step "native find_package(moe_ep) consumer"
cmake -S "${here}/consumer" -B consumer -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
      -DMOE_EP_EXAMPLE_SOURCE="${source_dir}/examples/native_dispatch_combine.cc" >consumer.log 2>&1 ||
  { cat consumer.log; fail "configuring the find_package consumer"; }
cmake --build consumer >>consumer.log 2>&1 || { cat consumer.log; fail "building the find_package consumer"; }
# The native install must work on its own: no setenv, and the library it loads is lib/'s.
env -u LD_LIBRARY_PATH ./consumer/native_dispatch_combine >consumer.run 2>&1 || { cat consumer.run; fail "native consumer"; }
lib_used=$(env -u LD_LIBRARY_PATH ldd ./consumer/native_dispatch_combine | awk '/libmoe_ep/ {print $3}')
[[ "$lib_used" == "${prefix}"/lib*/libmoe_ep.so.0 ]] || fail "native consumer loads '$lib_used'"
if [[ "$mpi" == mpi ]]; then
  [[ -x consumer/mpi_join ]] || fail "the consumer of moe_ep/mpi.h was not built (the package says it has no MPI)"
  env -u LD_LIBRARY_PATH ./consumer/mpi_join || fail "the consumer of moe_ep/mpi.h does not start"
else
  [[ ! -e "${prefix}/include/moe_ep/mpi.h" ]] || fail "moe_ep/mpi.h installed by a build without MPI"
fi
step "the installed moe-ep command, without LD_LIBRARY_PATH"
env -u LD_LIBRARY_PATH "${prefix}/bin/moe-ep" help >moe-ep.help 2>&1 || { cat moe-ep.help; fail "installed moe-ep help"; }
grep -q "usage: moe-ep" moe-ep.help || { cat moe-ep.help; fail "installed moe-ep help printed no usage"; }

for i in "${!names[@]}"; do
  wait "${pids[$i]}" || { cat "${names[$i]}.build"; fail "g++ ${names[$i]}"; }
done

step "run"
for name in "${names[@]}"; do
  lib_used=$(ldd "./$name" | awk '/libmoe_ep/ {print $3}')
  [[ "$lib_used" == "${latest}/lib64/libmoe_ep_cann.so.0" ]] || fail "$name loads '$lib_used', not latest/lib64's"
  start=$SECONDS
  rc=0
  soc=""
  [[ "$name" == *atlas_a2 ]] && soc=Ascend910B3  # an Atlas A2 program
  MOE_EP_SOC_NAME=$soc timeout 180 "./$name" >"$name.out" 2>&1 || rc=$?
  [[ $rc -eq 0 ]] || { tail -n 30 "$name.out"; fail "$name exited with $rc"; }
  echo "   $name: exit 0 in $((SECONDS - start)) s"
done
# The samples exit 0 whatever happens: check that every device reported success.
[[ $(grep -c "execute successfully" sample_dispatch_v2_sample.out) -eq 16 ]] ||
  { cat sample_dispatch_v2_sample.out; fail "dispatch_v2_sample: not all 16 devices succeeded"; }
[[ $(grep -c "finished reset" sample_buffer_reset_sample.out) -eq 16 ]] ||
  { cat sample_buffer_reset_sample.out; fail "buffer_reset_sample: not all 16 devices finished"; }
# The Python package, when this build made it: the installed copy imports from the prefix alone (its
# libraries found relative to it) and runs the native example; its default place is one the interpreter reads
# under /usr/local.
if [[ -n "$python" ]]; then
  step "python package from the prefix"
  package="${prefix}/${python_dir}"
  [[ "$python_dir" == /* ]] && package="$python_dir"
  [[ -f "${package}/moe_ep/torch_npu.py" ]] || fail "the python package is not in ${package}"
  if [[ "$python_place" == default ]]; then
    "$python" -c 'import site, sys; sys.exit("/usr/local/'"$python_dir"'" not in site.getsitepackages())' ||
      fail "$python does not read /usr/local/$python_dir, the package's default place"
  fi
  (cd "$work" && PYTHONPATH="$package" timeout 180 "$python" -c \
    'import moe_ep, moe_ep.torch_npu; assert moe_ep.__file__.startswith("'"$package"'"), moe_ep.__file__') ||
    fail "moe_ep does not import from ${package}"
  (cd "$work" && PYTHONPATH="$package" timeout 180 "$python" "${source_dir}/examples/python/native_threads.py") ||
    fail "examples/python/native_threads.py failed with the installed package"
fi
step "all OK"
