// The main job: verify one round against the reference, then time dispatch and combine (medians over
// repeats, slowest rank per round) next to a memcpy of the same bytes by the same threads.
#include "moe-ep/run_job.h"

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "kernels/kernels.h"
#include "moe_ep/ops.h"
#include "verify/scenario.h"

namespace moe_ep::tools {
namespace {

using Clock = std::chrono::steady_clock;
using moe_ep::verify::ScenarioInputs;
using moe_ep::verify::ScenarioSpec;

ScenarioSpec SpecOf(const JobOptions& o) {
  ScenarioSpec s;
  auto& c = s.config;
  c.ep_world_size = o.ranks;
  c.moe_expert_num = static_cast<int>(o.experts);
  c.top_k = static_cast<int>(o.top_k);
  c.hidden = static_cast<int>(o.hidden);
  c.dtype = o.fp16 ? moe_ref::DType::kFp16 : moe_ref::DType::kBf16;
  c.quant_mode = o.quant_int8 ? 2 : 0;
  c.comm_quant_mode = o.comm_quant_int8 ? 2 : 0;
  if (o.shared_expert_ranks > 0) {
    c.shared_expert_num = 1;
    c.shared_expert_rank_num = static_cast<int>(o.shared_expert_ranks);
  }
  s.bs = o.bs;
  return s;
}

// Bytes one received dispatch row carries: the token (int8 plus its fp32 scale when quantized).
int64_t DispatchRowBytes(const JobOptions& o) { return o.quant_int8 ? o.hidden + 4 : 2 * o.hidden; }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Per-round durations of a phase: from the moment all ranks leave the barrier to the last one's end.
class PhaseClock {
 public:
  explicit PhaseClock(int ranks) : starts_(ranks), ends_(ranks) {}
  void Start(int r) { starts_[r] = Clock::now(); }
  void End(int r) { ends_[r] = Clock::now(); }
  // Called by one thread while the others wait at a barrier.
  void Record() {
    const auto start = *std::min_element(starts_.begin(), starts_.end());
    const auto end = *std::max_element(ends_.begin(), ends_.end());
    seconds_.push_back(std::chrono::duration<double>(end - start).count());
  }
  double MedianSeconds() const { return Median(seconds_); }

 private:
  std::vector<Clock::time_point> starts_, ends_;
  std::vector<double> seconds_;
};

struct Timings {
  double dispatch = 0, combine = 0, memcpy_dispatch = 0, memcpy_combine = 0;
  uint64_t dispatch_bytes = 0, combine_bytes = 0;  // summed over ranks
};

// Runs warmup + repeats rounds on every rank; rounds are separated by barriers so phases don't overlap.
Timings Measure(const JobOptions& o, const ScenarioSpec& s, const ScenarioInputs& in,
                const std::vector<moe_ref::DispatchOut>& expected) {
  const auto& c = s.config;
  const int ranks = o.ranks;
  const int64_t h = c.hidden;
  const DType dtype = o.fp16 ? DType::kFp16 : DType::kBf16;
  ExpertLayout experts;
  experts.moe_expert_num = c.moe_expert_num;
  experts.shared_expert_num = c.shared_expert_num;
  experts.shared_expert_rank_num = c.shared_expert_rank_num;
  std::vector<Group> groups = CreateThreadGroups(ranks, GroupOptions{{}, 0, "moe-ep run"});
  PhaseClock dispatch_clock(ranks), combine_clock(ranks), copy_d_clock(ranks), copy_c_clock(ranks);
  std::vector<PhaseClock*> clocks{&dispatch_clock, &combine_clock, &copy_d_clock, &copy_c_clock};
  int phase = 0;
  const int rounds = o.warmup + o.repeats;
  int round = 0;
  std::barrier sync(ranks, [&]() noexcept {
    if (phase > 0 && round >= o.warmup) clocks[phase - 1]->Record();
    if (++phase == 5) phase = 1, ++round;
  });

  Timings t;
  for (int r = 0; r < ranks; ++r) {
    const int64_t rows = expected[r].rows;
    t.dispatch_bytes += rows * DispatchRowBytes(o);
    t.combine_bytes += rows * 2 * h;
  }
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      const auto& d = in.dispatch[r];
      const int64_t a = DispatchReceiveRows(groups[r], d.bs, c.top_k, experts);
      const int64_t l = c.moe_expert_num / (c.ep_world_size - c.shared_expert_rank_num);
      const bool shared_rank = r < c.shared_expert_rank_num;
      std::vector<uint8_t> expand_x(a * h * 2);
      std::vector<float> scales(a);
      std::vector<int32_t> assist(3 * a), recv(ranks * l), tp_recv(1);
      std::vector<int64_t> token_nums(shared_rank ? 1 : l);
      std::vector<uint16_t> expert_out(a * h), x_out(d.bs * h);
      std::copy(in.combine[r].expert_out.begin(), in.combine[r].expert_out.end(), expert_out.begin());
      DispatchOptions options;
      options.experts = experts;
      options.quant = o.quant_int8 ? Quant::kDynamicInt8 : Quant::kNone;
      const DispatchOutputs outs{
          TensorView(expand_x.data(), o.quant_int8 ? DType::kInt8 : dtype, {a, h}),
          o.quant_int8 ? TensorView(scales.data(), DType::kFloat32, {a}) : TensorView{},
          TensorView(assist.data(), DType::kInt32, {3 * a}),
          TensorView(token_nums.data(), DType::kInt64, {static_cast<int64_t>(token_nums.size())}),
          TensorView(recv.data(), DType::kInt32, {static_cast<int64_t>(recv.size())}),
          TensorView(tp_recv.data(), DType::kInt32, {1})};
      CombineOptions combine;
      combine.comm_quant = o.comm_quant_int8 ? Quant::kDynamicInt8 : Quant::kNone;
      // memcpy baselines: the bytes this rank receives in dispatch / sends in combine.
      const int64_t rows = expected[r].rows;
      const size_t copy_d = rows * DispatchRowBytes(o), copy_c = rows * 2 * h;
      // A quantized row (H + 4 bytes) outgrows a 16-bit one (2H) when H < 4: size for the larger. At least one
      // byte, so that a rank receiving no rows still passes memcpy valid pointers.
      const size_t copy_bytes = std::max<size_t>({copy_d, copy_c, 1});
      std::vector<uint8_t> copy_src(copy_bytes, 1), copy_dst(copy_bytes, 2);
      sync.arrive_and_wait();
      for (int i = 0; i < rounds; ++i) {
        dispatch_clock.Start(r);
        const DispatchHandle handle =
            DispatchInto(groups[r], TensorView(d.x.data(), dtype, {d.bs, h}),
                         TensorView(d.expert_ids.data(), DType::kInt32, {d.bs, c.top_k}), options, outs);
        dispatch_clock.End(r);
        sync.arrive_and_wait();
        combine_clock.Start(r);
        CombineInto(groups[r], handle, TensorView(expert_out.data(), dtype, {a, h}),
                    TensorView(in.combine[r].expert_scales.data(), DType::kFloat32, {d.bs, c.top_k}), combine,
                    TensorView(x_out.data(), dtype, {d.bs, h}));
        combine_clock.End(r);
        sync.arrive_and_wait();
        copy_d_clock.Start(r);
        std::memcpy(copy_dst.data(), copy_src.data(), copy_d);
        copy_d_clock.End(r);
        sync.arrive_and_wait();
        copy_c_clock.Start(r);
        std::memcpy(copy_dst.data(), copy_src.data(), copy_c);
        copy_c_clock.End(r);
        sync.arrive_and_wait();
      }
    });
  }
  for (auto& th : threads) th.join();
  t.dispatch = dispatch_clock.MedianSeconds();
  t.combine = combine_clock.MedianSeconds();
  t.memcpy_dispatch = copy_d_clock.MedianSeconds();
  t.memcpy_combine = copy_c_clock.MedianSeconds();
  return t;
}

void PrintRow(const char* name, double seconds, uint64_t bytes, double memcpy_seconds) {
  std::printf("  %-10s median %9.1f us   %7.2f GB/s   memcpy of the same bytes %9.1f us   ratio %.2fx\n", name,
              seconds * 1e6, bytes / seconds / 1e9, memcpy_seconds * 1e6, seconds / memcpy_seconds);
}

}  // namespace

int RunJob(const JobOptions& o) {
  const uint64_t seed =
      o.seed ? o.seed : (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  const ScenarioSpec spec = SpecOf(o);
  std::printf("moe-ep run: %s\n", moe_ep::verify::Describe(spec).c_str());
  std::printf("  transport: threads (%d ranks in one process), kernels: %s, seed %llu\n", o.ranks,
              kernels::IsaName(kernels::ActiveIsa()), static_cast<unsigned long long>(seed));

  std::mt19937_64 rng(seed);
  ScenarioInputs inputs = moe_ep::verify::MakeInputs(spec, rng);
  moe_ep::verify::RunOptions verify;
  verify.seed = seed + 1;
  const std::string mismatch = moe_ep::verify::RunAndCompare(spec, inputs, verify);
  if (!mismatch.empty()) {
    std::printf("VERIFY FAILED: %s\n", mismatch.c_str());
    return 1;
  }
  std::printf("  verified: dispatch outputs and combine results bit-identical to the reference on every rank\n");

  const auto expected = moe_ref::Dispatch(spec.config, inputs.dispatch);
  const Timings t = Measure(o, spec, inputs, expected);
  std::printf(
      "timings (%d rounds after %d warm-up; slowest rank per round; bytes = rows received x row bytes, "
      "all ranks):\n",
      o.repeats, o.warmup);
  PrintRow("dispatch", t.dispatch, t.dispatch_bytes, t.memcpy_dispatch);
  PrintRow("combine", t.combine, t.combine_bytes, t.memcpy_combine);
  return 0;
}

}  // namespace moe_ep::tools
