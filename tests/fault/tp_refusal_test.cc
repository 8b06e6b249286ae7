// TP pairs that disagree while their EP groups agree: the ranks of the pairs that disagree are refused, after they
// sent their rows and counts to their EP groups, and the EP ranks whose pair agrees finish the call at once, with
// every output equal to the reference's. (A refused rank withdrew its x from under the ranks reading it, failing them,
// and never said it was done with the rows it would not read, holding their senders to their deadline.)
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "moe_ep/error.h"
#include "support/test_seed.h"
#include "verify/run_ranks.h"
#include "verify/scenario.h"

namespace moe_ep::testing {
namespace {

using namespace ::moe_ep::verify;  // the rank runner and the scenario's inputs of tools/verify
using Clock = std::chrono::steady_clock;

constexpr int kEp = 3;
constexpr int64_t kBs = 8, kTopK = 2, kHidden = 8192;  // x of 128 KiB: read in place, not staged
constexpr auto kTimeout = std::chrono::seconds(20);

TEST(TpRefusal, EpRanksWhosePairAgreesFinishWhenOtherPairsDisagree) {
  // EP rank 0 hosts the shared expert, ranks 1 and 2 one MoE expert each (a TP pair needs one): pairing EP rank 0
  // with EP rank 1 pairs the two roles, which the pair refuses.
  ScenarioSpec spec = RoutedSpec(kEp, kEp - 1, kTopK, kHidden, kBs);
  spec.config.tp_world_size = 2;
  spec.config.shared_expert_num = spec.config.shared_expert_rank_num = 1;
  const uint64_t seed = BaseSeed() + 0x7B2;
  std::mt19937_64 rng(seed);
  ScenarioInputs inputs = MakeInputs(spec, rng);
  const Expected expected = ExpectedRound(spec, inputs);

  GroupOptions options;
  options.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(kTimeout);
  options.window_bytes = 64 << 20;
  options.data_path = DataPath::kPull;
  options.threads = 1;
  std::vector<std::vector<Group>> ep;  // [TP rank][EP rank]
  for (const char* name : {"tp refusal a", "tp refusal b"}) {
    options.name = name;
    ep.push_back(CreateThreadGroups(kEp, options));
  }
  std::vector<std::vector<Group>> pairs;  // [pair][TP rank]
  for (int p = 0; p < kEp; ++p) pairs.push_back(CreateThreadGroups(2));
  // EP ranks 0 and 1 of side A pair with EP ranks 1 and 0 of side B; EP rank 2 pairs with EP rank 2.
  const auto pair_of = [](int tp, int e) { return tp == 0 || e == kEp - 1 ? e : 1 - e; };
  std::vector<std::string> failures(2 * kEp);
  std::vector<Clock::duration> took(2 * kEp);
  RunRanks(2 * kEp, [&](int g) {
    const int tp = g / kEp, e = g % kEp;
    RankCalls calls(spec, inputs, g, ep[tp][e], &pairs[pair_of(tp, e)][tp]);
    const auto start = Clock::now();
    try {
      calls.Dispatch();
      took[g] = Clock::now() - start;
      failures[g] = e == kEp - 1 ? CompareScenarioRank(spec, g, expected.dispatch[g], {}, calls.Result())
                                 : "a pair that disagrees was not refused";
    } catch (const Error& err) {
      took[g] = Clock::now() - start;
      const std::string what = err.what();
      const bool refused = err.code() == ErrorCode::kInvalidConfig && what.find("TP rank") != std::string::npos;
      if (e == kEp - 1 || !refused) failures[g] = what;
    }
  });
  for (int g = 0; g < 2 * kEp; ++g) {
    EXPECT_EQ(failures[g], "") << "TP rank " << g / kEp << ", EP rank " << g % kEp << " (seed " << seed << ")";
    // Every rank's part ends once its peers are in: none waits out its deadline for a rank that was refused.
    EXPECT_LT(took[g], kTimeout / 2) << "TP rank " << g / kEp << ", EP rank " << g % kEp
                                     << " waited for a refused rank";
  }
}

}  // namespace
}  // namespace moe_ep::testing
