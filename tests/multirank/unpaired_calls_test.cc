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
  moe_ref::Config Config() const {
    moe_ref::Config c;
    c.ep_world_size = kRanks;
    c.moe_expert_num = static_cast<int>(experts);
    c.top_k = static_cast<int>(top_k);
    c.hidden = static_cast<int>(kHidden);
    return c;
  }
};

// Every rank's inputs of a round, drawn from `rng`, and the reference's dispatch and combine outputs for them
// (the experts return their rows unchanged).
struct Drawn {
  std::vector<moe_ref::RankInput> in;
  std::vector<moe_ref::CombineInput> combine_in;
  std::vector<moe_ref::DispatchOut> dispatched;
  std::vector<moe_ref::CombineOut> combined;
};
Drawn Draw(const Round& round, std::mt19937_64& rng) {
  Drawn d;
  std::uniform_real_distribution<float> weight(0.25f, 1.0f);
  for (int r = 0; r < kRanks; ++r) {
    moe_ref::RankInput in;
    in.bs = round.bs;
    for (int64_t i = 0; i < round.bs * kHidden; ++i) in.x.push_back(static_cast<uint16_t>(0x3C00 + rng() % 0x0800));
    moe_ref::CombineInput combine;
    for (int64_t t = 0; t < round.bs; ++t) {
      for (int64_t k = 0; k < round.top_k; ++k) {
        in.expert_ids.push_back(round.ids_of(r, t, k));
        combine.expert_scales.push_back(weight(rng));
      }
    }
    d.in.push_back(std::move(in));
    d.combine_in.push_back(std::move(combine));
  }
  d.dispatched = moe_ref::Dispatch(round.Config(), d.in);
  for (int r = 0; r < kRanks; ++r) d.combine_in[r].expert_out = d.dispatched[r].expand_x;
  d.combined = moe_ref::Combine(round.Config(), d.in, d.combine_in);
  return d;
}

DispatchOptions Options(const Round& round) {
  DispatchOptions options;
  options.experts.moe_expert_num = round.experts;
  return options;
}

DispatchResult RunDispatch(Group& group, const Round& round, Drawn& d, int r) {
  return Dispatch(group, TensorView(d.in[r].x.data(), DType::kBf16, {round.bs, kHidden}),
                  TensorView(d.in[r].expert_ids.data(), DType::kInt32, {round.bs, round.top_k}), Options(round));
}

// Combine's output on rank r, compared with the reference's (the experts return the rows dispatch gave them).
void ExpectCombined(Group& group, const Round& round, Drawn& d, int r, const DispatchResult& res,
                    const std::string& what) {
  const Tensor x = Combine(group, res.handle, res.expand_x.view(),
                           TensorView(d.combine_in[r].expert_scales.data(), DType::kFloat32, {round.bs, round.top_k}));
  const auto* got = x.data_as<uint16_t>();
  const std::vector<uint16_t>& want = d.combined[r].x;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i], want[i]) << what << ", rank " << r << ": token " << i / kHidden << " element " << i % kHidden;
  }
}

// The reference's outputs of `round` run by two EP groups of kRanks joined in TP pairs (world rank g = TP rank * kRanks
// + EP rank), both groups with `d`'s inputs (each EP rank's on both of its TP sides).
Drawn WithTpPair(const Round& round, const Drawn& d) {
  moe_ref::Config config = round.Config();
  config.tp_world_size = 2;
  Drawn paired;
  for (int g = 0; g < 2 * kRanks; ++g) {
    paired.in.push_back(d.in[g % kRanks]);
    paired.combine_in.push_back(d.combine_in[g % kRanks]);
  }
  paired.dispatched = moe_ref::Dispatch(config, paired.in);
  for (int g = 0; g < 2 * kRanks; ++g) paired.combine_in[g].expert_out = paired.dispatched[g].expand_x;
  paired.combined = moe_ref::Combine(config, paired.in, paired.combine_in);
  return paired;
}

constexpr uint16_t kPoison = 0xFFC1;  // a NaN no combine writes

// 60 rounds of random configurations on rank g's groups, each after one extra call drawn from `seed` (alike on every
// rank): none, a dispatch refused for a disagreement, a dispatch whose result is dropped, or a combine run twice, each
// compared with the reference (poisoned first with a TP pair).
void UnpairedRounds(RankGroups& groups, int g, uint64_t seed) {
  Group& ep = groups.ep;
  Group* tp = groups.tp ? &*groups.tp : nullptr;
  const int r = ep.rank();
  std::mt19937_64 rng(seed);
  const Round own{1, 1, 2, [](int rank, int64_t, int64_t) { return static_cast<int32_t>(rank); }};
  Drawn drawn = Draw(own, rng);
  const Drawn paired = WithTpPair(own, drawn);
  const TensorView x(drawn.in[r].x.data(), DType::kBf16, {1, kHidden});
  const TensorView ids(drawn.in[r].expert_ids.data(), DType::kInt32, {1, 1});
  const TensorView weights(drawn.combine_in[r].expert_scales.data(), DType::kFloat32, {1, 1});
  for (int round = 0; round < 60; ++round) {
    const int extra = static_cast<int>(rng() % 4);
    if (extra == 1) {
      try {  // EP rank 1 quantizes, EP rank 0 does not: every rank refuses
        DispatchOptions quantized_on_one = Options(own);
        if (r == 1) quantized_on_one.quant = Quant::kDynamicInt8;
        Dispatch(ep, x, ids, quantized_on_one, tp);
        ADD_FAILURE() << "rank " << g << ": a dispatch with attributes that differ was accepted";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig) << e.what();
      }
    } else if (extra == 2) {
      Dispatch(ep, x, ids, Options(own), tp);
    } else if (extra == 3 && tp) {
      const DispatchResult res = Dispatch(ep, x, ids, Options(own), tp);
      const std::vector<uint16_t>& want = paired.combined[g].x;
      for (const char* what : {"first combine", "the same combine again"}) {
        std::vector<uint16_t> out(want.size(), kPoison);
        CombineInto(ep, res.handle, res.expand_x.view(), weights, {},
                    TensorView(out.data(), DType::kBf16, {1, kHidden}), tp);
        EXPECT_EQ(out, want) << what << " with a TP pair, rank " << g;
      }
    } else if (extra == 3) {
      const DispatchResult res = RunDispatch(ep, own, drawn, r);
      ExpectCombined(ep, own, drawn, r, res, "first combine");
      ExpectCombined(ep, own, drawn, r, res, "the same combine again");
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
  Drawn drawn_a = Draw(a, rng), drawn_b = Draw(b, rng), skew = Draw(b, rng);
  GroupOptions options;
  options.data_path = DataPath::kPush;
  options.timeout = std::chrono::milliseconds(10000);
  options.name = "unpaired";
  auto groups = CreateThreadGroups(kRanks, options);
  RunRanks(kRanks, [&](int r) {
    RunDispatch(groups[r], b, skew, r);  // dropped: no combine follows
    const DispatchResult res_a = RunDispatch(groups[r], a, drawn_a, r);
    if (r == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ExpectCombined(groups[r], a, drawn_a, r, res_a, "round A");
    const DispatchResult res_b = RunDispatch(groups[r], b, drawn_b, r);
    ExpectCombined(groups[r], b, drawn_b, r, res_b, "round B");
  });
}

// A rank that refuses a combine alone, before it takes the call's slot (a handle naming a rank outside the group), is
// a call behind its peer: its next dispatch meets the peer's combine. Both say the calls are out of step, naming each
// other (500002: the group needs a reset), instead of the peer taking the dispatch's start for its combine's; after a
// synced reset a round matches the reference.
TEST(UnpairedCalls, ARankThatRefusesACombineAloneIsOutOfStepUntilAReset) {
  const Round own{4, 1, 2, [](int rank, int64_t, int64_t) { return static_cast<int32_t>(rank); }};
  std::mt19937_64 rng(BaseSeed() + 3);
  Drawn drawn = Draw(own, rng), next = Draw(own, rng);
  GroupOptions options;
  options.timeout = std::chrono::milliseconds(10000);
  options.name = "out-of-step";
  auto groups = CreateThreadGroups(kRanks, options);
  std::vector<std::string> errors(kRanks);
  RunRanks(kRanks, [&](int r) {
    DispatchResult res = RunDispatch(groups[r], own, drawn, r);
    try {
      if (r == 1) {
        res.handle.assist_info.data_as<int32_t>()[0] = 7;  // the first row's owner: rank 7 of 2
        EXPECT_THROW(ExpectCombined(groups[r], own, drawn, r, res, "refused"), Error);
        RunDispatch(groups[r], own, next, r);
      } else {
        ExpectCombined(groups[r], own, drawn, r, res, "the peer's combine");
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
