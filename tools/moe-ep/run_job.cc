// The main job: verify one round against the reference, then time dispatch and combine (medians over
// repeats, slowest rank per round) next to a memcpy of the same bytes by the same threads.
#include "moe-ep/run_job.h"

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/env.h"
#include "kernels/kernels.h"
#include "moe-ep/rank_job.h"
#include "moe_ep/ops.h"
#include "ops/workers.h"
#include "verify/scenario.h"

namespace moe_ep::tools {
namespace {

using Clock = std::chrono::steady_clock;
using moe_ep::verify::ScenarioInputs;
using moe_ep::verify::ScenarioSpec;

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
  const int ranks = o.ranks;
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
    t.dispatch_bytes += expected[r].rows * DispatchRowBytes(o);
    t.combine_bytes += expected[r].rows * 2 * s.config.hidden;
  }
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      RankJob job(o, s, in, r, expected[r].rows, groups[r]);
      sync.arrive_and_wait();
      for (int i = 0; i < rounds; ++i) {
        dispatch_clock.Start(r);
        job.Dispatch();
        dispatch_clock.End(r);
        sync.arrive_and_wait();
        combine_clock.Start(r);
        job.Combine();
        combine_clock.End(r);
        sync.arrive_and_wait();
        copy_d_clock.Start(r);
        job.CopyDispatchBytes();
        copy_d_clock.End(r);
        sync.arrive_and_wait();
        copy_c_clock.Start(r);
        job.CopyCombineBytes();
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

// How many of the ranks, each sending `sent_bytes[r]` of rows in a call, pull them rather than push.
int PullingRanks(const std::vector<uint64_t>& sent_bytes) {
  const DataPath path = env::DataPathChoice();
  if (path != DataPath::kAuto) return path == DataPath::kPull ? static_cast<int>(sent_bytes.size()) : 0;
  return static_cast<int>(
      std::count_if(sent_bytes.begin(), sent_bytes.end(), [](uint64_t bytes) { return bytes >= kPullMinBytes; }));
}

// Which data path each operation takes on how many ranks, and why.
void PrintDataPath(const JobOptions& o, const ScenarioSpec& s, const std::vector<moe_ref::DispatchOut>& expected) {
  std::vector<uint64_t> dispatch_sent, combine_sent;
  const uint64_t shared = o.shared_expert_ranks > 0 ? 1 : 0;
  for (const auto& rank : expected) {
    dispatch_sent.push_back(o.bs * (o.top_k + shared) * (o.quant_int8 ? o.hidden : 2 * o.hidden));
    const uint64_t h = s.config.hidden;  // a combine row as it travels (commQuantMode 2: int8 + half scales)
    combine_sent.push_back(rank.rows * (o.comm_quant_int8 ? (h + 31) / 32 * 32 + 2 * ((h + 7) / 8) : 2 * h));
  }
  const char* chosen = env::DataPathChoice() == DataPath::kAuto ? "auto, by size: a rank pulls from " : "forced by ";
  std::printf(
      "  data path: dispatch pulls on %d of %d ranks, combine on %d (%s%s)\n", PullingRanks(dispatch_sent), o.ranks,
      PullingRanks(combine_sent), chosen,
      env::DataPathChoice() == DataPath::kAuto
          ? (std::to_string(kPullMinBytes >> 10) + " KiB of rows per call; MOE_EP_DATA_PATH=push|pull forces one")
                .c_str()
          : "MOE_EP_DATA_PATH");
}

}  // namespace

int RunJob(const JobOptions& o) {
  const uint64_t seed =
      o.seed ? o.seed : (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  const ScenarioSpec spec = SpecOf(o);
  std::printf("moe-ep run: %s\n", moe_ep::verify::Describe(spec).c_str());
  std::printf("  transport: threads (%d ranks in one process, %d worker thread%s each), kernels: %s, seed %llu\n",
              o.ranks, ops::DefaultThreads(o.ranks), ops::DefaultThreads(o.ranks) == 1 ? "" : "s",
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
  PrintDataPath(o, spec, expected);
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
