// Calls that do not come as dispatch-then-combine pairs (a dispatch whose result is dropped, or refused; a combine
// repeated) between rounds whose configurations differ: a rank may run ahead into its next operation while a peer
// still reads what the last one left in its window, and no operation may write where a peer's unfinished one
// reads. Every output is compared bit for bit with the reference.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "moe_ep/ops.h"
#include "reference/reference.h"
#include "support/test_seed.h"
#include "support/thrown_error.h"
#include "verify/run_ranks.h"
#include "verify/scenario.h"

namespace moe_ep::testing {
namespace {

using namespace ::moe_ep::verify;  // the rank runner and random rounds of tools/verify

constexpr int kRanks = 2;
constexpr int64_t kHidden = 64;

// One configuration of the pinned case: Bs tokens per rank, each sent to top_k experts of `experts`, every token of
// rank r to the experts ids_of(r, t, k) picks.
struct Round {
  int64_t bs, top_k, experts;
  int32_t (*ids_of)(int rank, int64_t t, int64_t k);
  ScenarioSpec Spec() const {
    return RoutedSpec(kRanks, static_cast<int>(experts), static_cast<int>(top_k), static_cast<int>(kHidden), bs);
  }
};

// Every rank's inputs of a round (tokens and weights drawn from `rng`, the round's routing) and the reference's outputs
// for them.
struct Drawn {
  ScenarioSpec spec;
  ScenarioInputs inputs;
  Expected expected;
};
Drawn Draw(const Round& round, std::mt19937_64& rng) {
  Drawn d{round.Spec(), {}, {}};
  d.inputs = MakeInputs(d.spec, rng);
  for (int r = 0; r < kRanks; ++r) {
    for (int64_t t = 0; t < round.bs; ++t) {
      for (int64_t k = 0; k < round.top_k; ++k)
        d.inputs.dispatch[r].expert_ids[t * round.top_k + k] = round.ids_of(r, t, k);
    }
  }
  d.expected = ExpectedRound(d.spec, d.inputs);
  return d;
}

// `d` run by two EP groups of kRanks joined in TP pairs (world rank g = TP rank * kRanks + EP rank), both groups with
// `d`'s inputs (each EP rank's on both of its TP sides), and the reference's outputs for that.
Drawn WithTpPair(const Drawn& d) {
  Drawn paired{d.spec, {}, {}};
  paired.spec.config.tp_world_size = 2;
  for (int g = 0; g < 2 * kRanks; ++g) {
    paired.inputs.dispatch.push_back(d.inputs.dispatch[g % kRanks]);
    paired.inputs.combine.push_back(d.inputs.combine[g % kRanks]);
  }
  paired.expected = ExpectedRound(paired.spec, paired.inputs);
  return paired;
}

// Rank g's outputs of the calls `calls` ran for `d` (combine's too after a combine), compared with the reference's.
void ExpectOutputs(RankCalls& calls, const Drawn& d, int g, bool combined, const std::string& what) {
  EXPECT_EQ(CompareScenarioRank(d.spec, g, d.expected.dispatch[g],
                                combined ? d.expected.combine[g] : moe_ref::CombineOut{}, calls.Result()),
            "")
      << what;
}

// Dispatch then combine of `d` on rank r, each compared with the reference.
void ExpectRound(Group& group, const Drawn& d, int r, const std::string& what) {
  RankCalls calls(d.spec, d.inputs, r, group, nullptr);
  calls.Dispatch();
  ExpectOutputs(calls, d, r, false, what + ", dispatch");
  calls.Combine();
  ExpectOutputs(calls, d, r, true, what);
}

// 60 rounds of random configurations on rank g's groups, each after one extra call drawn from `seed` (alike on every
// rank): none, a dispatch refused for a disagreement, a dispatch whose result is dropped, or a combine run twice, each
// compared with the reference.
void UnpairedRounds(RankGroups& groups, int g, uint64_t seed) {
  Group& ep = groups.ep;
  Group* tp = groups.tp ? &*groups.tp : nullptr;
  const int r = ep.rank();
  std::mt19937_64 rng(seed);
  const Round own{1, 1, 2, [](int rank, int64_t, int64_t) { return static_cast<int32_t>(rank); }};
  const Drawn drawn = Draw(own, rng);
  const Drawn paired = WithTpPair(drawn);
  const Drawn& mine = tp ? paired : drawn;  // rank g's inputs are EP rank r's either way
  for (int round = 0; round < 60; ++round) {
    const int extra = static_cast<int>(rng() % 4);
    if (extra == 1) {
      try {  // EP rank 1 quantizes, EP rank 0 does not: every rank refuses
        DispatchOptions quantized_on_one;
        quantized_on_one.experts.moe_expert_num = own.experts;
        if (r == 1) quantized_on_one.quant = Quant::kDynamicInt8;
        moe_ref::RankInput in = mine.inputs.dispatch[g];
        Dispatch(ep, TensorView(in.x.data(), DType::kBf16, {own.bs, kHidden}),
                 TensorView(in.expert_ids.data(), DType::kInt32, {own.bs, own.top_k}), quantized_on_one, tp);
        ADD_FAILURE() << "rank " << g << ": a dispatch with attributes that differ was accepted";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig) << e.what();
      }
    } else if (extra == 2) {
      RankCalls calls(mine.spec, mine.inputs, g, ep, tp);
      calls.Dispatch();  // no combine follows
      ExpectOutputs(calls, mine, g, false, "a dispatch whose result is dropped");
    } else if (extra == 3) {
      RankCalls calls(mine.spec, mine.inputs, g, ep, tp);
      calls.Dispatch();
      ExpectOutputs(calls, mine, g, false, "the dispatch");
      for (const char* what : {"first combine", "the same combine again"}) {
        calls.Combine();
        ExpectOutputs(calls, mine, g, true, what);
      }
    }
    const uint64_t round_seed = rng();
    EXPECT_EQ(RandomRoundOnRank(ep, tp, g, round_seed), "") << "round " << round << " after extra call " << extra;
  }
}

// Round A: 16 tokens per rank, each to the 4 experts of rank 0 (8 experts), so that rank 0 needs nothing of rank 1 in
// combine, and writes rank 1's combined rows into its window (pushed). Round B: 1 token to 1 of 2 experts, the other
// rank's: its dispatch area begins where round A's combine area holds those rows. A dispatch without its combine
// before them puts the two calls' counters out of step; rank 1 comes to round A's combine late. Were round B's dispatch
// to use the half of the window that round A's combine does, rank 0 would overwrite the rows rank 1 is about to sum.
TEST(UnpairedCalls, ACombineIsNotOverwrittenByTheNextDispatchOfAnotherConfiguration) {
  const Round a{16, 4, 8, [](int, int64_t, int64_t k) { return static_cast<int32_t>(k); }};
  const Round b{1, 1, 2, [](int r, int64_t, int64_t) { return static_cast<int32_t>(1 - r); }};
  std::mt19937_64 rng(BaseSeed());
  const Drawn drawn_a = Draw(a, rng), drawn_b = Draw(b, rng), skew = Draw(b, rng);
  GroupOptions options;
  options.data_path = DataPath::kPush;
  options.timeout = std::chrono::milliseconds(10000);
  options.name = "unpaired";
  auto groups = CreateThreadGroups(kRanks, options);
  RunRanks(kRanks, [&](int r) {
    RankCalls dropped(skew.spec, skew.inputs, r, groups[r], nullptr);
    dropped.Dispatch();  // no combine follows
    ExpectOutputs(dropped, skew, r, false, "the dropped dispatch");
    RankCalls calls_a(drawn_a.spec, drawn_a.inputs, r, groups[r], nullptr);
    calls_a.Dispatch();
    ExpectOutputs(calls_a, drawn_a, r, false, "round A's dispatch");
    if (r == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    calls_a.Combine();
    ExpectOutputs(calls_a, drawn_a, r, true, "round A");
    ExpectRound(groups[r], drawn_b, r, "round B");
  });
}

// A rank that refuses a combine alone, before it takes the call's slot (a handle naming a rank outside the group), is
// a call behind its peer: its next dispatch meets the peer's combine. Both say the calls are out of step, naming each
// other (500002: the group needs a reset), instead of the peer taking the dispatch's start for its combine's; after a
// synced reset a round matches the reference.
TEST(UnpairedCalls, ARankThatRefusesACombineAloneIsOutOfStepUntilAReset) {
  const Round own{4, 1, 2, [](int rank, int64_t, int64_t) { return static_cast<int32_t>(rank); }};
  std::mt19937_64 rng(BaseSeed() + 3);
  const Drawn drawn = Draw(own, rng), next = Draw(own, rng);
  GroupOptions options;
  options.timeout = std::chrono::milliseconds(10000);
  options.name = "out-of-step";
  auto groups = CreateThreadGroups(kRanks, options);
  std::vector<std::string> errors(kRanks);
  RunRanks(kRanks, [&](int r) {
    RankCalls calls(drawn.spec, drawn.inputs, r, groups[r], nullptr);
    DispatchHandle& handle = calls.Dispatch();
    ExpectOutputs(calls, drawn, r, false, "the dispatch");
    try {
      if (r == 1) {
        handle.assist_info.data_as<int32_t>()[0] = 7;  // the first row's owner: rank 7 of 2
        EXPECT_TRUE(moe_ep::testing::ThrowsError([&] { calls.Combine(); }, ErrorCode::kInvalidParam,
                                                 "assist_info' = (7, 0, 0)"));
        EXPECT_EQ(calls.Result().x, Poisoned<uint16_t>(own.bs * kHidden)) << "the refused combine wrote x";
        RankCalls(next.spec, next.inputs, r, groups[r], nullptr).Dispatch();
      } else {
        calls.Combine();  // meets the peer's next dispatch
      }
      ADD_FAILURE() << "rank " << r << ": a call met another operation of its peer and went on";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInternal) << e.what();
      errors[r] = e.what();
    }
    BufferReset(groups[r], {}, true);
    EXPECT_EQ(RandomRoundOnRank(groups[r], nullptr, r, BaseSeed() + 4), "") << "rank " << r << " after the reset";
  });
  EXPECT_NE(errors[0].find("rank 1 of group 'out-of-step' runs a dispatch as call 2, where rank 0 runs a combine"),
            std::string::npos)
      << errors[0];
  EXPECT_NE(errors[1].find("rank 0 of group 'out-of-step' runs a combine as call 2, where rank 1 runs a dispatch"),
            std::string::npos)
      << errors[1];
}

// Random configurations back to back with no pause between ranks, and, drawn alike on every rank, a dispatch
// refused for a disagreement, a dispatch whose result is dropped, or a combine run twice: every round's outputs
// match the reference. Both data paths, on thread ranks and on shared-memory groups, without and with TP pairs (two
// EP groups of 2).
TEST(UnpairedCalls, RandomRoundsBetweenUnpairedCallsMatchTheReference) {
  for (const int tp_size : {1, 2}) {
    for (const bool shared_memory : {false, true}) {
      for (const DataPath path : {DataPath::kPush, DataPath::kPull}) {
        SCOPED_TRACE(std::string(shared_memory ? "shared memory" : "threads") +
                     (path == DataPath::kPush ? ", push" : ", pull") + (tp_size == 2 ? ", TP pairs" : ""));
        GroupOptions options;
        options.data_path = path;
        options.timeout = std::chrono::milliseconds(10000);
        options.window_bytes = 16 << 20;
        const int ranks = kRanks * tp_size;
        const auto join = (shared_memory ? ShmGroupMaker() : ThreadGroupMaker())(kRanks, tp_size, options);
        std::vector<std::optional<RankGroups>> groups(ranks);
        RunRanks(ranks, [&](int g) { groups[g].emplace(join(g)); });
        const uint64_t seed = BaseSeed() + 7 + static_cast<uint64_t>(path) + 10 * shared_memory + 100 * tp_size;
        RunRanks(ranks, [&](int g) { UnpairedRounds(*groups[g], g, seed); });
      }
    }
  }
}

}  // namespace
}  // namespace moe_ep::testing
