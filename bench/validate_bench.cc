// What a call costs before any row moves: validating a dispatch and a combine of the decode configuration
// (8 ranks, 1 token per rank, H 7168, top-8 of 64 experts, bf16, Atlas A3's rules). Every call pays it, so it
// must stay far below a barrier round trip (tens of microseconds); messages are built only on failure.
// Run: build/bench/validate_bench.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "plan/config.h"
#include "plan/layout.h"
#include "plan/op_tensors.h"
#include "plan/validate.h"

namespace {

using moe_ep::DType;
using moe_ep::TensorView;
namespace plan = moe_ep::plan;

constexpr int64_t kRanks = 8, kBs = 1, kH = 7168, kK = 8, kExperts = 64;
constexpr plan::WindowCapacity kWindow{uint64_t{1} << 30, uint64_t{1} << 30};

plan::MoeConfig Attributes() {
  plan::MoeConfig c;
  c.ep_world_size = kRanks;
  c.ep_rank = 3;
  c.moe_expert_num = kExperts;
  return c;
}

// Validation reads shapes and dtypes only: every tensor may point at the same bytes.
alignas(64) char storage[64];

void BM_ValidateDispatch(benchmark::State& state) {
  plan::MoeConfig shaped = Attributes();
  shaped.bs = kBs, shaped.hidden = kH, shaped.top_k = kK, shaped.x_dtype = DType::kBf16;
  const plan::DispatchOutputSizes sizes = plan::OutputSizesOf(shaped);
  // Value-initialized, then assigned field by field: a designated initializer that leaves fields out trips
  // -Wmissing-field-initializers.
  plan::DispatchTensors t{};
  t.x = TensorView(storage, DType::kBf16, {kBs, kH});
  t.expert_ids = TensorView(storage, DType::kInt32, {kBs, kK});
  t.expand_x = TensorView(storage, DType::kBf16, {sizes.rows, kH});
  t.assist_info = TensorView(storage, DType::kInt32, {sizes.assist_entries});
  t.expert_token_nums = TensorView(storage, DType::kInt64, {sizes.token_num_entries});
  t.ep_recv_counts = TensorView(storage, DType::kInt32, {sizes.recv_count_entries});
  t.tp_recv_counts = TensorView(storage, DType::kInt32, {0});
  for (auto _ : state) {
    plan::MoeConfig c = Attributes();
    plan::ValidateDispatch(c, t, plan::Profile::kA3, kWindow, "MoeDistributeDispatchV2");
    benchmark::DoNotOptimize(c);
  }
}
BENCHMARK(BM_ValidateDispatch);

void BM_ValidateCombine(benchmark::State& state) {
  plan::MoeConfig shaped = Attributes();
  shaped.bs = kBs, shaped.hidden = kH, shaped.top_k = kK, shaped.x_dtype = DType::kBf16;
  const plan::DispatchOutputSizes sizes = plan::OutputSizesOf(shaped);
  plan::CombineTensors t{};
  t.expand_x = TensorView(storage, DType::kBf16, {sizes.rows, kH});
  t.expert_ids = TensorView(storage, DType::kInt32, {kBs, kK});
  // Atlas A3's combine asks for 128 entries per row of expandX (docs/validation.md).
  t.assist_info = TensorView(storage, DType::kInt32, {plan::WindowLayout(shaped).a * 128});
  t.ep_send_counts = TensorView(storage, DType::kInt32, {sizes.recv_count_entries});
  t.expert_scales = TensorView(storage, DType::kFloat32, {kBs, kK});
  t.x = TensorView(storage, DType::kBf16, {kBs, kH});
  for (auto _ : state) {
    plan::MoeConfig c = Attributes();
    plan::ValidateCombine(c, t, plan::Profile::kA3, kWindow, "MoeDistributeCombineV2");
    benchmark::DoNotOptimize(c);
  }
}
BENCHMARK(BM_ValidateCombine);

}  // namespace

BENCHMARK_MAIN();
