// Property tests on thread ranks: random configurations (E 2..32, K 1..16, odd H, Bs 1..512, shared
// experts, both masks, unequal Bs, TP 2, both quant modes, both token-count types, strided inputs),
// every output element bit-identical to the reference, untouched rows still poisoned; and 1,000
// consecutive rounds with fresh routing.
#include <gtest/gtest.h>

#include <random>

#include "verify/scenario.h"
#include "support/test_seed.h"

namespace moe_ep::testing {
namespace {

using namespace ::moe_ep::verify;  // the scenario runner of tools/verify

#ifdef MOE_EP_SANITIZED
constexpr int kScale = 4;  // sanitizer builds: a quarter of the sweeps
#else
constexpr int kScale = 1;
#endif

void RunRandomScenarios(uint64_t salt, int count, int max_ranks, int64_t max_hidden, int64_t max_bs, int rounds) {
  for (int i = 0; i < count; ++i) {
    const uint64_t seed = BaseSeed() ^ (salt * 1000003 + i);
    std::mt19937_64 rng(seed);
    const ScenarioSpec spec = RandomSpec(rng, max_ranks, max_hidden, max_bs);
    SCOPED_TRACE("scenario seed " + std::to_string(seed) + ": " + Describe(spec));
    ScenarioInputs inputs = MakeInputs(spec, rng);
    RunOptions options;
    options.rounds = rounds;
    options.seed = seed + 1;
    const std::string mismatch = RunAndCompare(spec, inputs, options);
    ASSERT_EQ(mismatch, "") << Describe(spec);
  }
}

TEST(Property, SmallConfigurationsMatchReference) { RunRandomScenarios(1, 120 / kScale, 16, 80, 24, 2); }

TEST(Property, WideRanksAndBatchesMatchReference) { RunRandomScenarios(2, 12 / kScale, 32, 300, 96, 1); }

TEST(Property, LargeHiddenAndBatchMatchReference) { RunRandomScenarios(3, 4 / kScale, 8, 8192, 512, 1); }

TEST(Property, ThousandRoundsOnEightRanksStayExact) {
  const uint64_t seed = BaseSeed() ^ 0x5EED;
  std::mt19937_64 rng(seed);
  ScenarioSpec spec;
  spec.config.ep_world_size = 8;
  spec.config.moe_expert_num = 16;
  spec.config.top_k = 4;
  spec.config.hidden = 40;
  spec.bs = 12;
  spec.mask = moe_ref::MaskKind::kPairs;
  SCOPED_TRACE("seed " + std::to_string(seed));
  ScenarioInputs inputs = MakeInputs(spec, rng);
  RunOptions options;
  options.rounds = 1000 / kScale;
  options.seed = seed + 1;
  ASSERT_EQ(RunAndCompare(spec, inputs, options), "");
}

}  // namespace
}  // namespace moe_ep::testing
