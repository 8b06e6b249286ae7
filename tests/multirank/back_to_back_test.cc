// Dispatches back to back, no combine between them, with x overwritten as soon as each returns: a rank may
// run calls ahead of a peer still reading its rows (a small x is read from a staged copy, one per call
// parity: ops/stage.h), so every received row must still be the one its source sent in that call. Every round draws
// fresh tokens and routing, and every output, poisoned first, is compared bit for bit with the reference.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/ops.h"
#include "reference/reference.h"
#include "support/test_seed.h"
#include "verify/scenario.h"

namespace {

using moe_ep::DataPath;
using moe_ep::Group;
using moe_ep::verify::ScenarioInputs;
using moe_ep::verify::ScenarioSpec;

constexpr int kRanks = 8, kExperts = 16, kTopK = 4;
#ifdef MOE_EP_SANITIZED
// 45 times slower under ThreadSanitizer, 10 under ASan: still 50 rounds of each call parity (the release build runs
// 300)
constexpr int kRounds = 100;
#else
constexpr int kRounds = 300;
#endif

ScenarioSpec Spec(int64_t bs, int64_t hidden) {
  ScenarioSpec spec;
  spec.config.ep_world_size = kRanks;
  spec.config.moe_expert_num = kExperts;
  spec.config.top_k = kTopK;
  spec.config.hidden = static_cast<int>(hidden);
  spec.bs = bs;
  return spec;
}

// One rank's kRounds dispatches; `failure` gets its first mismatch. Every rank draws every rank's inputs of a round
// from the same seed, so each computes the reference for the whole group and checks its own part.
void Rank(Group& group, int r, const ScenarioSpec& spec, uint64_t seed, std::string& failure) {
  std::mt19937_64 rng(seed);
  for (int round = 0; round < kRounds; ++round) {  // every round, even after a mismatch: the peers wait for it
    const ScenarioInputs inputs = moe_ep::verify::MakeInputs(spec, rng);
    const std::vector<moe_ref::DispatchOut> expected = moe_ref::Dispatch(spec.config, inputs.dispatch);
    moe_ep::verify::RankCalls calls(spec, inputs, r, group, nullptr);
    calls.Dispatch();  // x is overwritten with 0xFF as soon as it returns: the caller's to reuse at once
    const std::string m = moe_ep::verify::CompareScenarioRank(spec, r, expected[r], {}, calls.Result());
    if (!m.empty() && failure.empty()) failure = "round " + std::to_string(round) + ": " + m;
  }
}

// Runs kRounds dispatches on every rank; returns the first mismatch ("" when none).
std::string RunRounds(std::vector<Group>& groups, int64_t bs, int64_t hidden, uint64_t seed) {
  const ScenarioSpec spec = Spec(bs, hidden);
  std::vector<std::string> failures(kRanks);
  std::vector<std::thread> ranks;
  for (int r = 0; r < kRanks; ++r) {
    ranks.emplace_back([&, r] {
      try {
        Rank(groups[r], r, spec, seed, failures[r]);
      } catch (const std::exception& e) {
        failures[r] = "rank " + std::to_string(r) + ": " + e.what();
      }
    });
  }
  for (auto& t : ranks) t.join();
  for (const std::string& f : failures) {
    if (!f.empty()) return f;
  }
  return "";
}

// Pulled (staged, as x is 8 KiB or less here), and pushed for comparison.
TEST(BackToBackDispatch, RowsAreThoseOfTheirRoundOnEveryPath) {
  const uint64_t seed = moe_ep::testing::BaseSeed();
  for (const DataPath path : {DataPath::kPull, DataPath::kPush}) {
    moe_ep::GroupOptions options;
    options.data_path = path;
    options.window_bytes = uint64_t{64} << 20;
    options.timeout = std::chrono::seconds(60);  // a rank that throws fails the others within a minute
    std::vector<Group> groups = moe_ep::CreateThreadGroups(kRanks, options);
    EXPECT_EQ(RunRounds(groups, /*bs=*/4, /*hidden=*/1024, seed), "")
        << (path == DataPath::kPull ? "pulled" : "pushed") << ", seed " << seed;
  }
}

}  // namespace
