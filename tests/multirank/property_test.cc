// Property tests on in-process ranks, one body per test run on every transport and data path: thread
// groups pushing and pulling rows, and shared-memory groups whose ranks are threads of this process
// (tools/verify's GroupMaker) pushing, pulling from the shared heap, and asked to pull from memory
// outside it (pushed). Random
// configurations (E 2..32, K 1..16, odd H, Bs 1..512, shared experts, both masks, unequal Bs, TP 2,
// both quant modes, both token-count types, strided inputs and outputs, rows of zeros, infinities, NaNs and
// subnormals), every output element bit-identical to the reference (two NaNs of a combine output are equal:
// docs/numerics.md), untouched rows still poisoned, with 1 or 3 worker threads per rank (splitting every loop);
// and 1,000 consecutive
// rounds with fresh routing on 3 threads per rank; and a configuration whose rows are streamed into expandX; and
// ranks whose threads set another floating-point environment (flush-to-zero, rounding upwards) change no bit.
// A new transport adds one entry to Transports() below (and one factory to tests/transport/).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "base/copy.h"
#include "support/hostile_floating_point.h"
#include "support/scoped_env.h"
#include "support/test_seed.h"
#include "verify/scenario.h"

namespace moe_ep::testing {
namespace {

using namespace ::moe_ep::verify;  // the scenario runner of tools/verify

#ifdef MOE_EP_SANITIZED
constexpr int kScale = 4;  // sanitizer builds: a quarter of the sweeps
#else
constexpr int kScale = 1;
#endif

struct Transport {
  const char* name;
  GroupMaker (*groups)();
  DataPath data_path;
  bool peer_visible;  // inputs in the shared heap
  int share;          // runs 1/share of the sweeps (shm joins cost more; the thread paths split the sweeps)
  uint64_t salt;      // configurations of its own: seeds differ from the other transports'
};
void PrintTo(const Transport& t, std::ostream* os) { *os << t.name; }

std::vector<Transport> Transports() {
  // shm_fallback: pull asked for, inputs in ordinary memory, which peers cannot read in place: pushed (a
  // dispatch's x of at most 64 KiB is staged in the shared heap and pulled from there).
  return {{"thread_push", ThreadGroupMaker, DataPath::kPush, false, 2, 0},
          {"thread_pull", ThreadGroupMaker, DataPath::kPull, false, 2, 200},
          {"shm_push", ShmGroupMaker, DataPath::kPush, false, 4, 100},
          {"shm_pull", ShmGroupMaker, DataPath::kPull, true, 4, 300},
          {"shm_fallback", ShmGroupMaker, DataPath::kPull, false, 8, 400}};
}

class Property : public ::testing::TestWithParam<Transport> {
 protected:
  // Ranks on 3 threads split every loop, however few rows it has (by default a helper is woken only for
  // kMinPartBytes of rows, more than most configurations here move).
  moe_ep::testing::ScopedEnv split_every_loop_{"MOE_EP_THREAD_MIN_BYTES", "0"};

  // At least one of `count`, scaled down for sanitizers and for this transport's share.
  static int Count(int count) { return std::max(1, count / kScale / GetParam().share); }

  // `threads` per rank: 1 or 3, drawn from the seed by the sweeps (results must not depend on it).
  static RunOptions Options(int rounds, uint64_t seed, int threads) {
    RunOptions options;
    options.threads = threads;
    options.rounds = rounds;
    options.seed = seed;
    options.groups = GetParam().groups();
    options.data_path = GetParam().data_path;
    options.peer_visible = GetParam().peer_visible;
    // A lost rank (or a failed join) fails the test after a minute instead of the default 5 (sanitizers: 5).
    options.timeout = std::chrono::minutes(kScale == 1 ? 1 : 5);
    return options;
  }

  void SetUp() override {
#ifdef __SANITIZE_THREAD__
    // A rank reads a peer's rows in the heap at the address the peer writes them, but the flags that
    // order those accesses through different mappings of one segment: ThreadSanitizer sees no order.
    if (GetParam().peer_visible) GTEST_SKIP() << "pulls across shm mappings are invisible to ThreadSanitizer";
#endif
  }

  // A fixed configuration (E ranks, moe experts, top-K, H, Bs) run for `rounds` with `threads` per rank
  // (0: 1 or 3 from the seed), every round compared with the reference.
  static void RunFixed(uint64_t salt, ScenarioSpec spec, int rounds, int threads) {
    const uint64_t seed = BaseSeed() ^ (salt + GetParam().salt);
    std::mt19937_64 rng(seed);
    SCOPED_TRACE("seed " + std::to_string(seed) + ": " + Describe(spec));
    ScenarioInputs inputs = MakeInputs(spec, rng);
    ASSERT_EQ(RunAndCompare(spec, inputs, Options(rounds, seed + 1, threads ? threads : seed % 2 ? 3 : 1)), "");
  }

  static void RunRandomScenarios(uint64_t salt, int count, int max_ranks, int64_t max_hidden, int64_t max_bs,
                                 int rounds) {
    salt += GetParam().salt;
    for (int i = 0; i < count; ++i) {
      const uint64_t seed = BaseSeed() ^ (salt * 1000003 + i);
      std::mt19937_64 rng(seed);
      const ScenarioSpec spec = RandomSpec(rng, max_ranks, max_hidden, max_bs);
      const int threads = seed % 2 ? 3 : 1;
      SCOPED_TRACE("scenario seed " + std::to_string(seed) + ", " + std::to_string(threads) +
                   " threads per rank: " + Describe(spec));
      ScenarioInputs inputs = MakeInputs(spec, rng);
      const std::string mismatch = RunAndCompare(spec, inputs, Options(rounds, seed + 1, threads));
      ASSERT_EQ(mismatch, "") << Describe(spec);
    }
  }
};

INSTANTIATE_TEST_SUITE_P(Transports, Property, ::testing::ValuesIn(Transports()),
                         [](const ::testing::TestParamInfo<Transport>& info) { return info.param.name; });

// The operators compute in the default floating-point environment whatever the caller set: ranks whose threads
// flush subnormals to zero, take them as zero and round upwards (as do the worker threads they start, which inherit
// that, on every transport) give the reference's bits, which it computes in the default one. Both quantizations, rows
// of subnormals among the special values, 3 worker threads per rank splitting every loop.
TEST_P(Property, TheCallersFloatingPointSettingsChangeNoBit) {
  ScenarioSpec spec = RoutedSpec(3, 6, 3, 72, 9);
  spec.config.quant_mode = 2;
  spec.config.comm_quant_mode = 2;
  spec.special_values = true;
  const uint64_t seed = BaseSeed() ^ (0xF10A7 + GetParam().salt);
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed) + ": " + Describe(spec));
  ScenarioInputs inputs = MakeInputs(spec, rng);
  RunOptions options = Options(2, seed + 1, 3);
  options.on_rank_thread = [] { _mm_setcsr(kHostileMxcsr); };  // each rank's thread ends with it
  // Thread groups are made up front on this thread, and start their worker threads there: with the same settings
  // (this thread's own go back before the reference computes).
  const GroupMaker maker = options.groups ? options.groups : ThreadGroupMaker();
  options.groups = [maker](int ep_size, int tp_size, const GroupOptions& group_options) {
    const HostileFloatingPoint hostile;
    return maker(ep_size, tp_size, group_options);
  };
  EXPECT_EQ(RunAndCompare(spec, inputs, options), "");
}

TEST_P(Property, SmallConfigurationsMatchReference) { RunRandomScenarios(1, Count(120), 16, 80, 24, 2); }

#ifdef __SANITIZE_THREAD__
// Up to 96 threads (32 ranks of 3) on CI's 2 cores, each access checked: a minute and a half beside another test.
// 16 ranks take the same paths.
constexpr int kWideRanks = 16;
#else
constexpr int kWideRanks = 32;
#endif
TEST_P(Property, WideRanksAndBatchesMatchReference) { RunRandomScenarios(2, Count(12), kWideRanks, 300, 96, 1); }

#ifdef __SANITIZE_THREAD__
constexpr int64_t kLargeBs = 64;  // ThreadSanitizer shadows every mapping of every segment: 512 runs out of memory
#else
constexpr int64_t kLargeBs = 512;
#endif
// Sanitizers: batches of at most 128 (one draw of 8 ranks of 512 took two minutes under ASan).
constexpr int64_t kLargeHiddenBs = kScale == 1 ? kLargeBs : std::min<int64_t>(kLargeBs, 128);
TEST_P(Property, LargeHiddenAndBatchMatchReference) { RunRandomScenarios(3, Count(4), 8, 8192, kLargeHiddenBs, 1); }

// Each rank receives 2 ranks x 512 tokens x 2 of its experts of 8190-byte rows (16 MiB): past
// kStreamMinBytes, so its 3 worker threads stream its rows into expandX, each row at a different offset
// modulo 16 (H odd).
TEST_P(Property, RowsPastTheStreamingThresholdMatchReference) {
  const ScenarioSpec spec = RoutedSpec(2, 4, 4, 4095, kLargeBs);
  const uint64_t received = uint64_t{2} * spec.bs * 2 * spec.config.hidden * 2;
  if (received <= kStreamMinBytes) GTEST_SKIP() << "batches this small (sanitizer builds) do not stream";
  RunFixed(0x57EA, spec, 2, 3);
}

// Each rank decides alone whether it smooths before quantizing (CANN: whether its own scales are given), and
// rows are quantized with their sender's: half the ranks pass smooth scales, on every data path.
TEST_P(Property, SmoothScalesOnSomeRanksOnlyMatchReference) {
  ScenarioSpec spec = RoutedSpec(4, 8, 3, 256, 96);
  spec.config.quant_mode = 2;
  spec.smooth_scales = spec.smooth_on_even_ranks = true;
  RunFixed(0x5300, spec, 2, 0);
}

#ifdef __SANITIZE_THREAD__
// A round takes 90 to 170 ms under ThreadSanitizer: 100 still cycle both call parities and both staging buffers 50
// times each (the release build runs the thousand).
constexpr int kManyRounds = 100;
#else
constexpr int kManyRounds = 1000 / kScale;
#endif
TEST_P(Property, ThousandRoundsOnEightRanksStayExact) {
  ScenarioSpec spec = RoutedSpec(8, 16, 4, 40, 12);
  spec.mask = moe_ref::MaskKind::kPairs;
  RunFixed(0x5EED, spec, kManyRounds, 3);
}

}  // namespace
}  // namespace moe_ep::testing
