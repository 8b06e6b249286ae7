// Bad data through the native API never crashes or writes out of bounds: a 1-D mask that is not a prefix, corrupted
// expert ids in a combine handle, corrupted expandIdx and counts in an Atlas A2-layout handle (on every rank, or on
// one, which its peer then names), a repeated expert in a token, a huge global_bs, malformed views, survivors that keep
// the special experts' ids or drop a shared-expert replica, absurd allocations, TP pairs whose ranks disagree or whose
// handles count other rows, a peer's attributes from before a reset, combines whose ranks disagree, a combine routed
// otherwise than its dispatch, outputs that share memory with an input or another output, a refused call's staged copy.
// Each fails with its code and a message naming the field, and the group stays usable: the next good round, of a random
// configuration, matches the reference bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <latch>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "api/group_impl.h"
#include "moe_ep/error.h"
#include "moe_ep/ops.h"
#include "reference/numerics.h"
#include "support/test_seed.h"
#include "support/thrown_error.h"
#include "verify/run_ranks.h"
#include "verify/scenario.h"

namespace moe_ep::testing {
namespace {

using namespace ::moe_ep::verify;  // the rank and scenario runners of tools/verify

constexpr int kRanks = 2;
constexpr int64_t kBs = 8, kHidden = 64, kTopK = 2, kMoe = 4;

// Rank r's token t holds the bf16 bits 0x3F80 + 16r + t + 0x80 (j % 5) in column j (1 to 16 times a power of two,
// so a shifted column shows); it goes to experts (t + r) % 4 and (t + r + 1) % 4 with weights 0.5 and 0.5, so a
// good round returns x exactly.
struct RankData {
  std::vector<uint16_t> x;
  std::vector<int32_t> ids;
  std::vector<float> weights = std::vector<float>(kBs * kTopK, 0.5f);
  explicit RankData(int rank, int64_t moe = kMoe) : x(kBs * kHidden) {
    for (int64_t t = 0; t < kBs; ++t) {
      for (int64_t j = 0; j < kHidden; ++j)
        x[t * kHidden + j] = static_cast<uint16_t>(0x3F80 + 16 * rank + t + 0x80 * (j % 5));
      for (int64_t k = 0; k < kTopK; ++k) ids.push_back(static_cast<int32_t>((t + rank + k) % moe));
    }
  }
  TensorView XView() { return TensorView(x.data(), DType::kBf16, {kBs, kHidden}); }
  TensorView IdsView() { return TensorView(ids.data(), DType::kInt32, {kBs, kTopK}); }
  TensorView WeightsView() { return TensorView(weights.data(), DType::kFloat32, {kBs, kTopK}); }
};

// Routed experts, nothing else.
ExpertLayout Moe(int64_t experts, int64_t global_bs = 0) {
  ExpertLayout layout;
  layout.moe_expert_num = experts;
  layout.global_bs = global_bs;
  return layout;
}

DispatchOptions Options(ExpertLayout experts = Moe(kMoe)) {
  DispatchOptions options;
  options.experts = std::move(experts);
  return options;
}

std::vector<Group> Groups(int ranks = kRanks, const char* name = "bad-data", DataPath path = DataPath::kAuto) {
  GroupOptions options;
  options.data_path = path;
  options.timeout = std::chrono::milliseconds(4000);
  options.window_bytes = 16 << 20;
  options.name = name;
  return CreateThreadGroups(ranks, options);
}

// Two EP groups (sides A and B, indexed [side][rank]) for ranks that also form TP pairs across them.
std::vector<std::vector<Group>> TwoEpGroups() {
  std::vector<std::vector<Group>> sides;
  for (const char* name : {"bad-data-a", "bad-data-b"}) sides.push_back(Groups(kRanks, name));
  return sides;
}

// kRanks TP pairs, indexed [pair][TP rank].
std::vector<std::vector<Group>> TpPairs() {
  std::vector<std::vector<Group>> pairs;
  for (int r = 0; r < kRanks; ++r) pairs.push_back(CreateThreadGroups(2));
  return pairs;
}

// A round after an error: a random configuration for kRanks ranks, drawn from the run's seed, the test and how many
// good rounds this rank's thread has run (each RunRanks runs on fresh threads, so every rank draws the same).
void ExpectGoodRound(Group& group, int rank) {
  thread_local int rounds = 0;
  const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  EXPECT_EQ(RandomRoundOnRank(group, nullptr, rank, BaseSeed() + std::hash<std::string>{}(test) + rounds++), "")
      << "rank " << rank << ": the group is not usable after the error";
}

// Calls f, which must throw moe_ep::Error with `code` and a message holding every one of `parts`.
template <typename F>
void ExpectError(F&& f, ErrorCode code, const std::vector<std::string>& parts) {
  EXPECT_TRUE(moe_ep::testing::ThrowsError(std::forward<F>(f), code, parts));
}

constexpr uint16_t kPoison = 0xA7A7;

// A dispatch that must fail, run into poisoned outputs of the sizes the library asks for: it fails with `code` and
// every part of the message, and before a byte of any output is written.
void ExpectDispatchRefused(Group& group, const TensorView& x, const TensorView& ids, const DispatchOptions& options,
                           ErrorCode code, const std::vector<std::string>& parts, Group* tp = nullptr) {
  const DispatchSizes n = DispatchOutputSizes(group, x, ids, options, tp);
  std::vector<uint16_t> expand_x(n.rows * kHidden, kPoison), assist(2 * n.assist_entries, kPoison),
      token_nums(4 * n.token_num_entries, kPoison), counts(2 * n.recv_count_entries, kPoison), tp_counts(4, kPoison);
  const DispatchOutputs out{TensorView(expand_x.data(), DType::kBf16, {n.rows, kHidden}),
                            {},
                            TensorView(assist.data(), DType::kInt32, {n.assist_entries}),
                            TensorView(token_nums.data(), DType::kInt64, {n.token_num_entries}),
                            TensorView(counts.data(), DType::kInt32, {n.recv_count_entries}),
                            TensorView(tp_counts.data(), DType::kInt32, {tp ? 2 : 1})};
  ExpectError([&] { DispatchInto(group, x, ids, options, out, tp); }, code, parts);
  for (const auto* v : {&expand_x, &assist, &token_nums, &counts, &tp_counts}) {
    EXPECT_TRUE(std::all_of(v->begin(), v->end(), [](uint16_t e) { return e == kPoison; }))
        << "a refused dispatch wrote its outputs";
  }
}

// A combine that must fail, run into a poisoned x: it fails with `code` and every part of the message, before a
// row of x is written.
void ExpectCombineRefused(Group& group, const DispatchResult& res, const TensorView& weights,
                          const CombineOptions& options, ErrorCode code, const std::vector<std::string>& parts,
                          Group* tp = nullptr) {
  std::vector<uint16_t> x(kBs * kHidden, kPoison);
  ExpectError(
      [&] {
        CombineInto(group, res.handle, res.expand_x.view(), weights, options,
                    TensorView(x.data(), DType::kBf16, {kBs, kHidden}), tp);
      },
      code, parts);
  EXPECT_TRUE(std::all_of(x.begin(), x.end(), [](uint16_t e) { return e == kPoison; }))
      << "a refused combine wrote its output";
}

// A combine handle whose routing was overwritten: ids past moe_expert_num (once read as special experts
// through absent tensors) and negative ids (once waited for until the deadline) fail before a row moves.
TEST(BadData, CombineRejectsCorruptedExpertIdsInTheHandle) {
  auto groups = Groups();
  for (const int32_t bad : {1000, -3, static_cast<int32_t>(kMoe)}) {
    SCOPED_TRACE("expert id " + std::to_string(bad));
    RunRanks(kRanks, [&](int r) {
      RankData d(r);
      DispatchResult res = Dispatch(groups[r], d.XView(), d.IdsView(), Options());
      res.handle.expert_ids.data_as<int32_t>()[kTopK + 1] = bad;  // token 1, k 1
      ExpectCombineRefused(groups[r], res, d.WeightsView(), {}, ErrorCode::kInvalidParam,
                           {"expert_ids", "value " + std::to_string(bad), "at [1, 1]"});
      ExpectGoodRound(groups[r], r);
    });
  }
}

// Atlas A2's layout (expand_idx_layout): a handle whose expandIdx leaves its block or repeats, or whose counts
// decrease or return a rank a different number of rows than its routing sent, fails on the rank that holds it
// before a row moves (every rank corrupts its own, so none waits for another).
TEST(BadData, CombineRejectsCorruptedExpandIdxAndCountsInTheHandle) {
  auto groups = Groups();
  const struct {
    const char* what;
    std::function<void(DispatchHandle&)> corrupt;
    std::vector<std::string> parts;
  } cases[] = {
      {"expandIdx outside its block",
       [](DispatchHandle& h) { h.assist_info.data_as<int32_t>()[0] = 100; },
       {"DispatchHandle::assist_info", "100 at [0]", "distinct and in [0, 4)"}},
      // Pair (3, 1) goes to the same expert as pair (0, 0): both would read one row.
      {"expandIdx repeated",
       [](DispatchHandle& h) { h.assist_info.data_as<int32_t>()[3 * kTopK + 1] = 0; },
       {"DispatchHandle::assist_info", "0 at [7]", "distinct"}},
      {"decreasing counts",
       [](DispatchHandle& h) {
         auto* counts = h.ep_recv_counts.data_as<int32_t>();
         counts[1] = counts[0] - 1;
       },
       {"DispatchHandle::ep_recv_counts", "at [1]", "never decrease"}},
      // The last row of (local expert 0, owner 0) returned to owner 1 instead.
      {"a row moved to another owner",
       [](DispatchHandle& h) { h.ep_recv_counts.data_as<int32_t>()[0] -= 1; },
       {"DispatchHandle::ep_recv_counts", "they return rank 1 more rows than its expert_ids and active_mask sent"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    RunRanks(kRanks, [&](int r) {
      RankData d(r);
      DispatchOptions options = Options();
      options.expand_idx_layout = true;
      DispatchResult res = Dispatch(groups[r], d.XView(), d.IdsView(), options);
      c.corrupt(res.handle);
      ExpectCombineRefused(groups[r], res, d.WeightsView(), {}, ErrorCode::kInvalidParam, c.parts);
      ExpectGoodRound(groups[r], r);
    });
  }
}

// Atlas A2's layout: combine reads each pair's row where its handle's expandIdx says, as the kernel does, not where
// its own routing would put it. Tokens 0 and 4 of every rank go to the same two experts; with the expandIdx of their
// k = 0 pairs exchanged (still a valid handle), each token's first half comes from the other's row.
TEST(BadData, CombineReadsTheRowsTheHandlesExpandIdxNames) {
  auto groups = Groups();
  RunRanks(kRanks, [&](int r) {
    RankData d(r);
    DispatchOptions options = Options();
    options.expand_idx_layout = true;
    DispatchResult res = Dispatch(groups[r], d.XView(), d.IdsView(), options);
    int32_t* expand_idx = res.handle.assist_info.data_as<int32_t>();
    ASSERT_EQ(d.ids[0], d.ids[4 * kTopK]) << "tokens 0 and 4 share their first expert";
    ASSERT_NE(expand_idx[0], expand_idx[4 * kTopK]);
    std::swap(expand_idx[0], expand_idx[4 * kTopK]);
    const Tensor out = Combine(groups[r], res.handle, res.expand_x.view(), d.WeightsView());
    const auto* got = out.data_as<uint16_t>();
    for (int64_t t = 0; t < kBs; ++t) {
      const int64_t first_half_from = t == 0 ? 4 : t == 4 ? 0 : t;  // the row its k = 0 pair now reads
      for (int64_t j = 0; j < kHidden; ++j) {
        using moe_ref::numerics::Bf16ToFloat;
        const float sum =
            0.0f + 0.5f * Bf16ToFloat(d.x[first_half_from * kHidden + j]) + 0.5f * Bf16ToFloat(d.x[t * kHidden + j]);
        ASSERT_EQ(got[t * kHidden + j], moe_ref::numerics::FloatToBf16(sum))
            << "rank " << r << " token " << t << " column " << j;
      }
    }
    ExpectGoodRound(groups[r], r);
  });
}

// Atlas A2's layout, one rank's handle corrupted: that rank refuses it before the call communicates (its slots are
// its own routing), so a peer returning rows to it waits for where they go and fails naming it, instead of handing
// its rows over and waiting for a reader that never comes (once until the deadline, then with no error). Rank 1's
// tokens stay on its own experts, so only rank 0 is waited for. A synced reset brings the group back.
TEST(BadData, AnAtlasA2RankRefusingItsHandleAloneIsNamedByItsPeer) {
  GroupOptions quick;
  quick.timeout = std::chrono::milliseconds(2000);
  quick.window_bytes = 16 << 20;
  quick.name = "bad-data-a2-alone";
  auto groups = CreateThreadGroups(kRanks, quick);
  std::latch combined(kRanks);  // rank 0 refuses at once: its reset must not time out before rank 1 has given up
  RunRanks(kRanks, [&](int r) {
    RankData d(r);
    if (r == 1) {
      for (int64_t t = 0; t < kBs; ++t) {  // experts 2 and 3, rank 1's own
        for (int64_t k = 0; k < kTopK; ++k) d.ids[t * kTopK + k] = static_cast<int32_t>(kMoe / 2 + k);
      }
    }
    DispatchOptions options = Options();
    options.expand_idx_layout = true;
    DispatchResult res = Dispatch(groups[r], d.XView(), d.IdsView(), options);
    if (r == 0) {
      res.handle.assist_info.data_as<int32_t>()[0] = 100;
      ExpectCombineRefused(groups[r], res, d.WeightsView(), {}, ErrorCode::kInvalidParam,
                           {"DispatchHandle::assist_info", "100 at [0]"});
    } else {
      try {
        Combine(groups[r], res.handle, res.expand_x.view(), d.WeightsView());
        ADD_FAILURE() << "rank 1's combine returned without rank 0's";
      } catch (const TimeoutError& e) {
        EXPECT_EQ(e.missing_ranks(), std::vector<int>{0}) << e.what();
      } catch (const Error& e) {  // not thrown past the latch, which rank 0 waits at
        ADD_FAILURE() << "rank 1: " << e.what();
      }
    }
    combined.arrive_and_wait();
    BufferReset(groups[r]);
    ExpectGoodRound(groups[r], r);
  });
}

// What Atlas A2 lacks is refused in its layout, naming the native field, on every rank alike (no rank waits):
// a 2-D mask and const experts in dispatch, sharedExpertX in combine. A round of random tokens in that layout, around
// the refused combine, matches the reference.
TEST(BadData, ExpandIdxLayoutRefusesWhatAtlasA2Lacks) {
  auto groups = Groups();
  ScenarioSpec a2 = RoutedSpec(kRanks, kMoe, kTopK, kHidden, kBs);
  a2.config.a2 = true;
  std::mt19937_64 rng(BaseSeed());
  ScenarioInputs inputs = MakeInputs(a2, rng);
  const Expected expected = ExpectedRound(a2, inputs);
  RunRanks(kRanks, [&](int r) {
    RankData d(r);
    DispatchOptions options = Options();
    options.expand_idx_layout = true;
    std::vector<uint8_t> pairs(kBs * kTopK, 1);
    DispatchOptions masked = options;
    masked.active_mask = TensorView(pairs.data(), DType::kBool, {kBs, kTopK});
    ExpectError([&] { Dispatch(groups[r], d.XView(), d.IdsView(), masked); }, ErrorCode::kInvalidConfig,
                {"active_mask", "must be 1-D with Atlas A2's expandIdx layout (DispatchOptions::expand_idx_layout)"});
    DispatchOptions constant = options;
    constant.experts.const_expert_num = 1;
    ExpectError([&] { Dispatch(groups[r], d.XView(), d.IdsView(), constant); }, ErrorCode::kInvalidConfig,
                {"ExpertLayout::const_expert_num", "must be 0 with Atlas A2's expandIdx layout"});
    RankCalls calls(a2, inputs, r, groups[r], nullptr);
    const DispatchHandle& handle = calls.Dispatch();
    EXPECT_EQ(CompareScenarioRank(a2, r, expected.dispatch[r], {}, calls.Result()), "") << "the dispatch";
    const TensorView rows(calls.Result().expand_x.data(), DType::kBf16,
                          {DispatchReceiveRows(groups[r], kBs, kTopK, options.experts), kHidden});
    CombineOptions shared_x;
    shared_x.shared_expert_x = d.XView();
    ExpectError([&] { Combine(groups[r], handle, rows, d.WeightsView(), shared_x); }, ErrorCode::kInvalidConfig,
                {"CombineOptions::shared_expert_x", "must be absent"});
    calls.Combine();
    EXPECT_EQ(CompareScenarioRank(a2, r, expected.dispatch[r], expected.combine[r], calls.Result()), "")
        << "the combine after the refused one";
  });
}

// Ranks that disagree on an attribute (here moeExpertNum) fail together, naming the rule and their own values, on
// both layouts, and no output is written first (Atlas A2's expandIdx is this rank's own routing, known before any peer
// is heard).
TEST(BadData, RanksThatDisagreeWriteNoOutput) {
  for (const bool a2 : {false, true}) {
    SCOPED_TRACE(a2 ? "Atlas A2 layout" : "Atlas A3 layout");
    auto groups = Groups();
    RunRanks(kRanks, [&](int r) {
      RankData d(r);
      DispatchOptions options = Options(Moe(r == 0 ? kMoe : 2 * kMoe));
      options.expand_idx_layout = a2;
      ExpectDispatchRefused(groups[r], d.XView(), d.IdsView(), options, ErrorCode::kInvalidConfig,
                            {"called with attributes that differ",
                             "(the group's size " + std::to_string(kRanks) + ", ExpertLayout::moe_expert_num " +
                                 std::to_string(r == 0 ? kMoe : 2 * kMoe) + ",",
                             std::string("layout ") + (a2 ? "Atlas A2" : "Atlas A3") + ");",
                             "; rule: the group's size, ExpertLayout::moe_expert_num,"});
    });
  }
}

// Ranks whose combines disagree (here commQuantMode: rows of another size, quantized or not) fail together, naming
// the rule and their own values, on both data paths and both layouts, before any row is read or any output written
// (Atlas A3: the rows were pushed, or announced for pulling, into the call's own half of the windows; Atlas A2: before
// any owner's slots are read, so before any row moves).
TEST(BadData, CombinesThatDisagreeWriteNoOutput) {
  for (const auto& path_and_layout : {std::pair{DataPath::kPush, false},
                                      {DataPath::kPull, false},
                                      {DataPath::kPush, true},
                                      {DataPath::kPull, true}}) {
    const DataPath path = path_and_layout.first;  // not bindings: clang 14's lambdas cannot capture those
    const bool a2 = path_and_layout.second;
    SCOPED_TRACE(std::string(path == DataPath::kPush ? "push" : "pull") + (a2 ? ", Atlas A2 layout" : ""));
    auto groups = Groups(kRanks, "bad-data", path);
    RunRanks(kRanks, [&](int r) {
      RankData d(r);
      DispatchOptions dispatch = Options();
      dispatch.expand_idx_layout = a2;
      const DispatchResult res = Dispatch(groups[r], d.XView(), d.IdsView(), dispatch);
      CombineOptions options;
      options.comm_quant = r == 0 ? Quant::kDynamicInt8 : Quant::kNone;
      ExpectCombineRefused(groups[r], res, d.WeightsView(), options, ErrorCode::kInvalidConfig,
                           {"Combine: rank " + std::to_string(1 - r), "called with attributes that differ",
                            "CombineOptions::comm_quant " + std::to_string(r == 0 ? 2 : 0) + ",",
                            "; rule: the group's size, ExpertLayout::moe_expert_num,"});
      ExpectGoodRound(groups[r], r);
    });
  }
}

// Atlas A3: a combine whose expert ids or mask are not its dispatch's (here rank 0 sends token 0 to another rank's
// expert, or masks every pair to rank 1's experts: it would then read none of the rows rank 1 returns it) is refused
// by that rank alone, naming the first rank whose returned rows it did not expect, before x is written; rank 1's call,
// whose rows rank 0 declines and whose reads of rank 0's rows it waits for, finishes at once with exact results
// (before, rank 0 summed rows of other tokens, and rank 1 waited for it until its deadline).
TEST(BadData, ACombineRoutedOtherwiseThanItsDispatchIsRefusedAlone) {
  for (const DataPath path : {DataPath::kPush, DataPath::kPull}) {
    for (const bool masked : {false, true}) {
      SCOPED_TRACE(std::string(path == DataPath::kPush ? "push" : "pull") + (masked ? ", masked" : ", expert id"));
      auto groups = Groups(kRanks, "bad-data", path);
      RunRanks(kRanks, [&](int r) {
        RankData d(r);
        std::vector<uint8_t> pairs(kBs * kTopK, 1);
        DispatchOptions options = Options();
        options.active_mask = TensorView(pairs.data(), DType::kBool, {kBs, kTopK});
        DispatchResult res = Dispatch(groups[r], d.XView(), d.IdsView(), options);
        if (r == 0) {
          int32_t* ids = res.handle.expert_ids.data_as<int32_t>();
          auto* mask = res.handle.active_mask.data_as<uint8_t>();
          if (!masked) ids[0] = 2;  // token 0 went to experts 0 and 1, both rank 0's; expert 2 is rank 1's
          for (int64_t i = 0; masked && i < kBs * kTopK; ++i) mask[i] = ids[i] < kMoe / 2;
          ExpectCombineRefused(groups[r], res, d.WeightsView(), {}, ErrorCode::kInvalidParam,
                               masked ? std::vector<std::string>{"expert_ids", "= 0 rows from rank 1",
                                                                 "equals the rows rank 1 returns (8,"}
                                      : std::vector<std::string>{"expert_ids", "= 7 rows from rank 0",
                                                                 "equals the rows rank 0 returns (8,"});
        } else {
          std::vector<uint16_t> x(kBs * kHidden, kPoison);
          const auto start = std::chrono::steady_clock::now();
          CombineInto(groups[r], res.handle, res.expand_x.view(), d.WeightsView(), {},
                      TensorView(x.data(), DType::kBf16, {kBs, kHidden}));
          EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2000))
              << "rank 1 waited for the refusing rank (deadline 4000 ms)";
          EXPECT_EQ(x, d.x) << "rank 1's tokens come back as they went (experts return them, weights 0.5 and 0.5)";
        }
        ExpectGoodRound(groups[r], r);
      });
    }
  }
}

// A dispatch refused for a disagreement, on the pull path with x staged (a copy in the shared heap that its readers
// say they are done with): no rank reads it, so its buffer is taken again two calls later instead of being given up
// (kept for the life of the process: 64 KiB or more per refused call).
TEST(BadData, ARefusedDispatchLeavesNoStagedCopyBehind) {
  GroupOptions pulling;
  pulling.timeout = std::chrono::milliseconds(4000);
  pulling.window_bytes = 16 << 20;
  pulling.data_path = DataPath::kPull;
  pulling.name = "bad-data-staged";
  auto groups = CreateThreadGroups(kRanks, pulling);
  RunRanks(kRanks, [&](int r) {
    RankData d(r);
    ExpectDispatchRefused(groups[r], d.XView(), d.IdsView(), Options(Moe(r == 0 ? kMoe : 2 * kMoe)),
                          ErrorCode::kInvalidConfig, {"called with attributes that differ"});
    for (int round = 0; round < 3; ++round) ExpectGoodRound(groups[r], r);
    EXPECT_EQ(GroupAccess::Comm(groups[r]).state().dispatch_stage.abandoned(), 0) << "rank " << r;
  });
}

// Expert outputs of another H or dtype than the dispatch's are refused naming them and both sizes (dtypes), before x
// is written.
TEST(BadData, ExpertOutputsOfAnotherHiddenSizeOrDtypeAreNamed) {
  auto groups = Groups();
  RunRanks(kRanks, [&](int r) {
    RankData d(r);
    DispatchResult res = Dispatch(groups[r], d.XView(), d.IdsView(), Options());
    std::vector<uint16_t> wide(res.handle.num_rows * 2 * kHidden, 0x3F80);
    const TensorView wide_out(wide.data(), DType::kBf16, {res.handle.num_rows, 2 * kHidden});
    ExpectError([&] { Combine(groups[r], res.handle, wide_out, d.WeightsView()); }, ErrorCode::kInvalidConfig,
                {"'expert_out'", std::to_string(2 * kHidden), "the dispatch's H = " + std::to_string(kHidden)});
    // fp16 rows of a bf16 dispatch have its row size: only the handle's dtype tells them apart. Rank 1 alone: its
    // rows would have been summed by rank 0 as bf16.
    if (r == 1) {
      const TensorView half_out(res.expand_x.data(), DType::kFp16, res.expand_x.view().shape);
      ExpectError([&] { Combine(groups[r], res.handle, half_out, d.WeightsView()); }, ErrorCode::kInvalidParam,
                  {"Combine: parameter 'expert_out' = (", ") fp16", "dtype must be the dispatch's x dtype, bf16"});
      ExpectError(
          [&] { CombineAddRmsNormInto(groups[r], res.handle, half_out, d.WeightsView(), {}, {}, 1e-6f, {}, {}); },
          ErrorCode::kInvalidParam, {"CombineAddRmsNorm: parameter 'expert_out' = (", ") fp16"});
    }
    ExpectGoodRound(groups[r], r);
  });
}

// Outputs that share memory with an input (peers read it in place while this rank writes) or with another output
// (one would overwrite the other) are refused naming both, before anything is written: expand_x over x, assist_info
// over ep_recv_counts, combine's x_out over the expert outputs.
TEST(BadData, OutputsSharingMemoryAreRefusedNamingBoth) {
  auto groups = Groups();
  RunRanks(kRanks, [&](int r) {
    RankData d(r);
    const DispatchSizes n = DispatchOutputSizes(groups[r], d.XView(), d.IdsView(), Options());
    // x at the start of the buffer expand_x covers; the rest poisoned.
    std::vector<uint16_t> shared(n.rows * kHidden, kPoison);
    std::copy(d.x.begin(), d.x.end(), shared.begin());
    std::vector<int32_t> assist(n.assist_entries + n.recv_count_entries, kPoison), token_nums(2 * n.token_num_entries);
    std::vector<int32_t> tp_counts(1);
    const TensorView x_in_shared(shared.data(), DType::kBf16, {kBs, kHidden});
    const TensorView counts(assist.data(), DType::kInt32, {n.recv_count_entries});  // over assist_info's start
    const auto outputs = [&](const TensorView& expand_x, const TensorView& recv_counts) {
      return DispatchOutputs{expand_x,
                             {},
                             TensorView(assist.data(), DType::kInt32, {n.assist_entries}),
                             TensorView(token_nums.data(), DType::kInt64, {n.token_num_entries}),
                             recv_counts,
                             TensorView(tp_counts.data(), DType::kInt32, {1})};
    };
    const TensorView expand_x(shared.data(), DType::kBf16, {n.rows, kHidden});
    std::vector<int32_t> own_counts(n.recv_count_entries);
    const TensorView separate_counts(own_counts.data(), DType::kInt32, {n.recv_count_entries});
    ExpectError(
        [&] { DispatchInto(groups[r], x_in_shared, d.IdsView(), Options(), outputs(expand_x, separate_counts)); },
        ErrorCode::kInvalidParam,
        {"Dispatch: parameter 'DispatchOutputs::expand_x' = (" + std::to_string(n.rows) + ", 64) bf16",
         "must not share memory with 'x' = (8, 64) bf16"});
    std::vector<uint16_t> apart(n.rows * kHidden, kPoison);
    const TensorView expand_x_apart(apart.data(), DType::kBf16, {n.rows, kHidden});
    ExpectError([&] { DispatchInto(groups[r], d.XView(), d.IdsView(), Options(), outputs(expand_x_apart, counts)); },
                ErrorCode::kInvalidParam,
                {"parameter 'DispatchOutputs::assist_info'",
                 "must not share memory with 'DispatchOutputs::ep_recv_counts'", "an output written over another"});
    EXPECT_TRUE(std::all_of(shared.begin() + d.x.size(), shared.end(), [](uint16_t e) { return e == kPoison; }));
    EXPECT_TRUE(std::all_of(apart.begin(), apart.end(), [](uint16_t e) { return e == kPoison; }));
    EXPECT_TRUE(std::all_of(assist.begin(), assist.end(), [](int32_t e) { return e == kPoison; }));
    DispatchResult res = Dispatch(groups[r], d.XView(), d.IdsView(), Options());
    const std::vector<uint16_t> rows(res.expand_x.data_as<uint16_t>(),
                                     res.expand_x.data_as<uint16_t>() + res.expand_x.numel());
    const TensorView x_over_rows(res.expand_x.data(), DType::kBf16, {kBs, kHidden});
    ExpectError([&] { CombineInto(groups[r], res.handle, res.expand_x.view(), d.WeightsView(), {}, x_over_rows); },
                ErrorCode::kInvalidParam, {"Combine: parameter 'x_out'", "must not share memory with 'expert_out'"});
    EXPECT_TRUE(std::equal(rows.begin(), rows.end(), res.expand_x.data_as<uint16_t>())) << "expert_out was written";
    ExpectGoodRound(groups[r], r);
  });
}

TEST(BadData, DispatchRejectsARepeatedExpertInAToken) {
  auto groups = Groups();
  RunRanks(kRanks, [&](int r) {
    RankData d(r, 2);
    const ExpertLayout two = Moe(2);
    d.ids.assign(kBs * kTopK, 0);
    ExpectDispatchRefused(groups[r], d.XView(), d.IdsView(), Options(two), ErrorCode::kInvalidParam,
                          {"expert_ids", "value 0", "at [0, 1]", "distinct"});
    ExpectGoodRound(groups[r], r);
  });
}

// A 1-D mask marks a prefix of active tokens: one with a true after a false is refused naming both places, in
// dispatch and (through a handle whose copy of the mask was overwritten) in combine, on both layouts, before a row
// moves.
TEST(BadData, TokenMaskThatIsNotAPrefixIsRefused) {
  auto groups = Groups();
  for (const bool a2 : {false, true}) {
    SCOPED_TRACE(a2 ? "Atlas A2 layout" : "Atlas A3 layout");
    RunRanks(kRanks, [&](int r) {
      RankData d(r);
      DispatchOptions options = Options();
      options.expand_idx_layout = a2;
      std::vector<uint8_t> mask(kBs, 0);
      mask[0] = mask[1] = 1;
      mask[5] = 1;
      options.active_mask = TensorView(mask.data(), DType::kBool, {kBs});
      ExpectDispatchRefused(groups[r], d.XView(), d.IdsView(), options, ErrorCode::kInvalidParam,
                            {"active_mask", "true at [5] after false at [2]", "trues before its falses"});
      mask[5] = 0;
      DispatchResult res = Dispatch(groups[r], d.XView(), d.IdsView(), options);
      res.handle.active_mask.data_as<uint8_t>()[3] = 1;
      ExpectCombineRefused(groups[r], res, d.WeightsView(), {}, ErrorCode::kInvalidParam,
                           {"active_mask", "true at [3] after false at [2]"});
      ExpectGoodRound(groups[r], r);
    });
  }
}

// One group passed as both the EP group and the TP pair is refused (the operation would wait on itself, holding its
// lock), in dispatch and in combine; so is a "pair" of 3 ranks.
TEST(BadData, TpPairThatIsTheEpGroupIsRefused) {
  auto groups = Groups();
  auto three = CreateThreadGroups(3);
  RunRanks(kRanks, [&](int r) {
    RankData d(r);
    ExpectError([&] { Dispatch(groups[r], d.XView(), d.IdsView(), Options(), &three[r]); }, ErrorCode::kInvalidConfig,
                {"Dispatch: parameter 'tp' = tp group 'moe_ep", "of 3 ranks violates rule: a TP pair is a group of 2"});
    ExpectError(
        [&] { Dispatch(groups[r], d.XView(), d.IdsView(), Options(), &groups[r]); }, ErrorCode::kInvalidConfig,
        {"Dispatch: parameter 'tp' = tp group", "violates rule: the TP pair is a group of its own, not the ep group"});
    DispatchResult res = Dispatch(groups[r], d.XView(), d.IdsView(), Options());
    ExpectError(
        [&] { Combine(groups[r], res.handle, res.expand_x.view(), d.WeightsView(), {}, &groups[r]); },
        ErrorCode::kInvalidConfig,
        {"Combine: parameter 'tp' = tp group", "violates rule: the TP pair is a group of its own, not the ep group"});
    ExpectGoodRound(groups[r], r);
  });
}

// A combine must be given the TP pair its dispatch ran with, and none when it ran without: otherwise it would skip
// the pair's reduction (a wrong sum, silently), wait for rows never sent, or add another pair's (a pair of the same
// ranks, with the same counts, passed every other check). Refused naming 'tp', before any output.
TEST(BadData, CombineWithAnotherTpSettingThanItsDispatchIsRefused) {
  auto groups = Groups();
  auto pairs = moe_ep::CreateThreadGroups(2);  // EP rank r is TP rank r: its pair's peer is the other EP rank
  auto other_pairs = moe_ep::CreateThreadGroups(2);
  RunRanks(kRanks, [&](int r) {
    RankData d(r);
    DispatchResult alone = Dispatch(groups[r], d.XView(), d.IdsView(), Options());
    ExpectError([&] { Combine(groups[r], alone.handle, alone.expand_x.view(), d.WeightsView(), {}, &pairs[r]); },
                ErrorCode::kInvalidConfig, {"'tp' = group", "ran without a TP pair; pass none"});
    RankData one_each(r, 2);  // under a TP pair, one expert per MoE rank
    DispatchResult paired = Dispatch(groups[r], one_each.XView(), one_each.IdsView(), Options(Moe(2)), &pairs[r]);
    ExpectError([&] { Combine(groups[r], paired.handle, paired.expand_x.view(), one_each.WeightsView()); },
                ErrorCode::kInvalidConfig, {"'tp' = nullptr", "ran with a TP pair; pass that pair"});
    ExpectError(
        [&] { Combine(groups[r], paired.handle, paired.expand_x.view(), one_each.WeightsView(), {}, &other_pairs[r]); },
        ErrorCode::kInvalidConfig, {"'tp' = group", "ran with another TP pair; pass that pair"});
    ExpectGoodRound(groups[r], r);
  });
}

// The two ranks of a TP pair append each other's rows: ranks whose EP groups each agree, but not with each other
// (another globalBs, so another maxBs: other window slots), or that differ in role (a shared-expert rank paired with
// a MoE-expert rank: other counts), are refused on both sides, naming the TP pair, before any output is written.
// Each pair's TP ranks r and r + 2 sit in EP groups A and B; the pairs of the second case swap the EP ranks.
TEST(BadData, TpPairsThatDisagreeAreRefusedBeforeAnyOutput) {
  std::vector<std::vector<Group>> ep = TwoEpGroups(), same_rank = TpPairs(), swapped = TpPairs();
  const std::vector<std::string> named = {"Dispatch: TP rank", "called with attributes that differ",
                                          "the two ranks of a TP pair must"};
  RunRanks(2 * kRanks, [&](int w) {
    const int side = w / kRanks, r = w % kRanks;
    RankData d(r, 2);  // under a TP pair, one expert per MoE rank
    ExpertLayout layout = Moe(2, side == 0 ? 0 : 2 * kBs * kRanks);
    ExpectDispatchRefused(ep[side][r], d.XView(), d.IdsView(), Options(layout), ErrorCode::kInvalidConfig, named,
                          &same_rank[r][side]);
    // Rank 0 of each EP group hosts the shared expert, rank 1 the one MoE expert (top-1): pairing EP rank 0 with EP
    // rank 1 pairs the two roles.
    ExpertLayout shared = Moe(1);
    shared.shared_expert_num = shared.shared_expert_rank_num = 1;
    std::vector<int32_t> to_expert_0(kBs, 0);
    const int pair = side == 0 ? r : 1 - r;
    ExpectDispatchRefused(ep[side][r], d.XView(), TensorView(to_expert_0.data(), DType::kInt32, {kBs, 1}),
                          Options(shared), ErrorCode::kInvalidConfig, named, &swapped[pair][side]);
  });
  RunRanks(kRanks, [&](int r) { ExpectGoodRound(ep[0][r], r); });
}

// In a TP combine each rank adds the partial rows its peer returns to its own: a peer whose handle says it returns
// fewer (here every rank of EP group A holds one row fewer for its peer than dispatch counted) would have this rank
// sum whatever its window slots held. The ranks of group B are refused naming tpSendCounts, before x is written;
// group A's ranks get all they need and finish.
TEST(BadData, TpPeerReturningOtherRowsThanItsDispatchCountedIsRefused) {
  std::vector<std::vector<Group>> ep = TwoEpGroups(), pairs = TpPairs();
  RunRanks(2 * kRanks, [&](int w) {
    const int side = w / kRanks, r = w % kRanks;
    RankData d(r, 2);  // under a TP pair, one expert per MoE rank
    DispatchResult res = Dispatch(ep[side][r], d.XView(), d.IdsView(), Options(Moe(2)), &pairs[r][side]);
    auto* tp_counts = res.handle.tp_recv_counts.data_as<int32_t>();
    ASSERT_GT(tp_counts[1], 0) << "the peer received no rows: nothing to take away";
    if (side == 1) {
      ExpectCombineRefused(
          ep[side][r], res, d.WeightsView(), {}, ErrorCode::kInvalidParam,
          {"'DispatchHandle::tp_recv_counts' = [1] = " + std::to_string(tp_counts[1] - 1) + " on TP rank 0",
           "own rows (DispatchHandle::ep_recv_counts' last entry = " + std::to_string(tp_counts[1]) + ")"},
          &pairs[r][side]);
      return;
    }
    --tp_counts[1];
    Combine(ep[side][r], res.handle, res.expand_x.view(), d.WeightsView(), {}, &pairs[r][side]);
  });
  RunRanks(kRanks, [&](int r) { ExpectGoodRound(ep[1][r], r); });
}

// A handle counting more of the TP peer's rows than A: the peer's TP window holds A partial rows, and the sender would
// write past them into the half of the other call parity. Every token goes to expert 0 (top-1), so EP rank 1 holds no
// rows (nor does its TP peer) and its count may pass A within expandX (2A rows); EP rank 0 holds A of its own and A of
// its peer's, where one more passes expandX. Every rank is refused before anything moves, and the groups go on.
TEST(BadData, TpPeerRowsPastAAreRefusedBeforeAnythingMoves) {
  std::vector<std::vector<Group>> ep = TwoEpGroups(), pairs = TpPairs();
  RunRanks(2 * kRanks, [&](int w) {
    const int side = w / kRanks, r = w % kRanks;
    RankData d(r, 2);
    std::vector<int32_t> to_expert_0(kBs, 0);
    std::vector<float> weights(kBs, 1.0f);
    DispatchResult res = Dispatch(ep[side][r], d.XView(), TensorView(to_expert_0.data(), DType::kInt32, {kBs, 1}),
                                  Options(Moe(2)), &pairs[r][side]);
    const int64_t a = res.expand_x.view().shape[0] / 2;
    ASSERT_EQ(res.handle.num_rows, r == 0 ? 2 * a : 0) << "rank " << r;  // its own A and its peer's
    res.handle.tp_recv_counts.data_as<int32_t>()[1 - side] = static_cast<int32_t>(a + 1);
    ExpectCombineRefused(ep[side][r], res, TensorView(weights.data(), DType::kFloat32, {kBs, 1}), {},
                         ErrorCode::kInvalidParam,
                         {r == 0 ? "'DispatchHandle::ep_recv_counts'"
                                 : "'DispatchHandle::tp_recv_counts' = " + std::to_string(a + 1) +
                                       " rows of the TP peer violates rule: at most A = " + std::to_string(a)},
                         &pairs[r][side]);
  });
  RunRanks(kRanks, [&](int r) { ExpectGoodRound(ep[0][r], r); });
}

// A reset without sync starts the call epochs again at 1: a peer's attribute fingerprint from the calls before it
// (here with another globalBs) must be gone with them, or a rank checking its peers before they announce again
// compares with that one, and refuses a call on which every rank agrees.
TEST(BadData, AResetWithoutSyncForgetsThePeersAttributesOfTheCallsBefore) {
  auto groups = Groups();
  RunRanks(kRanks, [&](int r) {
    RankData d(r);
    Dispatch(groups[r], d.XView(), d.IdsView(), Options(Moe(kMoe, 2 * kBs * kRanks)));
    Barrier(groups[r]);
    BufferReset(groups[r], {}, /*need_sync=*/false);
    Barrier(groups[r]);  // without sync, the caller sees to it that every rank has reset before any calls again
    if (r == 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));  // rank 0 checks its peer first
    ExpectGoodRound(groups[r], r);
  });
}

TEST(BadData, HugeGlobalBsIsRejectedBeforeAnythingIsAllocated) {
  auto groups = Groups();
  RunRanks(kRanks, [&](int r) {
    RankData d(r);
    for (const int64_t global_bs : {int64_t{1} << 61, int64_t{1} << 62, INT64_MAX - 1}) {
      ExpectError([&] { Dispatch(groups[r], d.XView(), d.IdsView(), Options(Moe(kMoe, global_bs))); },
                  ErrorCode::kInvalidConfig, {"global_bs", std::to_string(global_bs)});
      ExpectError([&] { DispatchReceiveRows(groups[r], kBs, kTopK, Moe(kMoe, global_bs)); }, ErrorCode::kInvalidConfig,
                  {"global_bs", std::to_string(global_bs)});
    }
    ExpectGoodRound(groups[r], r);
  });
}

// A handle goes back to the group its dispatch ran on: on another group of as many ranks, its rows would go to that
// group's ranks of the same numbers. Refused before anything is sent; both groups go on.
TEST(BadData, ACombineOnAnotherGroupThanItsDispatchIsRefused) {
  auto groups = Groups(kRanks, "bad-data");
  auto others = Groups(kRanks, "bad-data-other");
  RunRanks(kRanks, [&](int r) {
    RankData d(r);
    DispatchResult res = Dispatch(groups[r], d.XView(), d.IdsView(), Options());
    ExpectError([&] { Combine(others[r], res.handle, res.expand_x.view(), d.WeightsView()); },
                ErrorCode::kInvalidConfig, {"'ep' = group 'bad-data-other'", "the handle's dispatch ran on another"});
    Combine(groups[r], res.handle, res.expand_x.view(), d.WeightsView());
    ExpectGoodRound(groups[r], r);
    ExpectGoodRound(others[r], r);
  });
}

// Views are built by hand in the native API: too few strides, negative strides, element counts, spans or byte
// sizes past int64 are refused by name instead of read.
TEST(BadData, MalformedViewsAreRejectedByName) {
  auto groups = Groups();
  RunRanks(kRanks, [&](int r) {
    RankData d(r);
    const TensorView few_strides(d.ids.data(), DType::kInt32, {kBs, kTopK}, {1});
    const TensorView negative_stride(d.ids.data(), DType::kInt32, {kBs, kTopK}, {-2, 1});
    // Its furthest element is INT64_MAX elements on: one past it is not an int64 (it wrapped, and the view passed).
    const TensorView furthest_at_int64_max(d.ids.data(), DType::kInt32, {kBs, kTopK}, {1, INT64_MAX - (kBs - 1)});
    const TensorView endless_x(d.x.data(), DType::kBf16, {kBs, int64_t{1} << 62}, {0, 0});
    for (const TensorView& ids : {few_strides, negative_stride, furthest_at_int64_max}) {
      ExpectError([&] { Dispatch(groups[r], d.XView(), ids, Options()); }, ErrorCode::kInvalidConfig,
                  {"expert_ids", "non-negative dimensions and strides"});
    }
    ExpectError([&] { Dispatch(groups[r], endless_x, d.IdsView(), Options()); }, ErrorCode::kInvalidConfig,
                {"H (x.dim1)", "INT32_MAX"});
    // Elements off their type's alignment (a numpy array made from a buffer at an odd offset): every input and
    // output read or written as its type is refused, naming its element size.
    std::vector<int32_t> storage(d.ids.size() + 4 * kBs * kHidden + 1);
    std::byte* const odd = reinterpret_cast<std::byte*>(storage.data()) + 1;
    const TensorView odd_ids(odd + 1, DType::kInt32, {kBs, kTopK}), odd_x(odd, DType::kBf16, {kBs, kHidden});
    ExpectError([&] { Dispatch(groups[r], d.XView(), odd_ids, Options()); }, ErrorCode::kInvalidConfig,
                {"expert_ids", "a multiple of its element size (4 bytes)"});
    ExpectError([&] { Dispatch(groups[r], odd_x, d.IdsView(), Options()); }, ErrorCode::kInvalidConfig,
                {"x", "a multiple of its element size (2 bytes)"});
    ExpectError(
        [] {
          Tensor(DType::kFloat32, {int64_t{1} << 40, int64_t{1} << 40});
        },
        ErrorCode::kInvalidParam, {"larger than 2^48 bytes"});
    // An optional input of elements but no address (memory never allocated) is refused, not taken for absent.
    DispatchOptions unallocated_mask = Options();
    unallocated_mask.active_mask = TensorView(static_cast<void*>(nullptr), DType::kBool, {kBs});
    ExpectError([&] { Dispatch(groups[r], d.XView(), d.IdsView(), unallocated_mask); }, ErrorCode::kNullPointer,
                {"active_mask", "a tensor of elements needs their address"});
    DispatchResult res = Dispatch(groups[r], d.XView(), d.IdsView(), Options());
    CombineOptions unallocated_shared;
    unallocated_shared.shared_expert_x = TensorView(static_cast<void*>(nullptr), DType::kBf16, {kBs, kHidden});
    ExpectError([&] { Combine(groups[r], res.handle, res.expand_x.view(), d.WeightsView(), unallocated_shared); },
                ErrorCode::kNullPointer, {"shared_expert_x", "a tensor of elements needs their address"});
    const TensorView odd_weights(odd + 1, DType::kFloat32, {kBs, kTopK});
    ExpectError([&] { Combine(groups[r], res.handle, res.expand_x.view(), odd_weights); }, ErrorCode::kInvalidConfig,
                {"expert_scales", "a multiple of its element size (4 bytes)"});
    Combine(groups[r], res.handle, res.expand_x.view(), d.WeightsView());
    ExpectGoodRound(groups[r], r);
  });
}

// Survivors that leave one replica of the shared expert: the remaining replica receives maxBs * 3 rows,
// more than its role's A (maxBs * ceil(4 / 2)). Outputs are sized for either role under survivors, so the
// round of random tokens is exact: every output matches the reference's for the scaled-down job.
TEST(BadData, SurvivorsDroppingASharedReplicaRunExactly) {
  auto groups = Groups(4);
  const ExpertLayout experts{2, 1, 2, 0, 0, 0, 0, {1, 0, 1, 1}};  // ranks 0 and 1 replicate the shared expert
  ScenarioSpec full = RoutedSpec(4, static_cast<int>(experts.moe_expert_num), kTopK, kHidden, kBs);
  full.config.shared_expert_num = static_cast<int>(experts.shared_expert_num);
  full.config.shared_expert_rank_num = static_cast<int>(experts.shared_expert_rank_num);
  const ElasticRun elastic{full.config, experts.survivors};
  const ScenarioSpec scaled = ScaledDown(full, experts.survivors);
  std::mt19937_64 rng(BaseSeed());
  ScenarioInputs inputs = MakeInputs(scaled, rng);
  const Expected expected = ExpectedRound(scaled, inputs);
  RunRanks(4, [&](int r) {
    if (r == 1) return;  // the dead replica
    BufferReset(groups[r], experts.survivors);
    EXPECT_GE(DispatchReceiveRows(groups[r], kBs, kTopK, experts), kBs * 3) << "sized for the shared role's rows";
    const int s = SurvivorRank(experts.survivors, r);
    EXPECT_EQ(CompareScenarioRank(scaled, s, expected.dispatch[s], expected.combine[s],
                                  RunScenarioRank(scaled, inputs, s, groups[r], nullptr, &elastic)),
              "")
        << "rank " << r << ", survivor " << s;
  });
}

// A scale-down leaves the special experts their ids, counted from the group's moeExpertNum as the combine kernels
// count them: with 8 experts on 4 ranks and rank 2 gone, experts 4 and 5 left with it, the survivors' 6 routed
// experts are numbered 0 to 5 (elasticInfo[3] = 6), ids 6 and 7 route nowhere (refused), and 8, 9 and 10 stay the
// zero, copy and const experts. A round of random tokens routed to all of them then matches the reference's.
TEST(BadData, SurvivorsKeepTheSpecialExpertsIds) {
  auto groups = Groups(4);
  const ExpertLayout experts{8, 0, 0, 0, 1, 1, 1, {1, 1, 0, 1}};
  ScenarioSpec full = RoutedSpec(4, static_cast<int>(experts.moe_expert_num), kTopK, kHidden, kBs);
  full.config.zero_expert_num = full.config.copy_expert_num = full.config.const_expert_num = 1;
  full.config.quant_mode = 2;  // with smooth scales: row n_s + the survivors' id of each expert
  full.smooth_scales = true;
  const ElasticRun elastic{full.config, experts.survivors};
  const ScenarioSpec scaled = ScaledDown(full, experts.survivors);
  ASSERT_EQ(scaled.config.moe_expert_num, 6);
  std::mt19937_64 rng(BaseSeed());
  ScenarioInputs inputs = MakeInputs(scaled, rng);
  for (auto& d : inputs.dispatch) {  // tokens 0 to 2 meet every special expert (ids 6 to 8 of the scaled-down job)
    for (int32_t t = 0; t < 3; ++t) d.expert_ids[t * kTopK] = 6 + t;
  }
  const Expected expected = ExpectedRound(scaled, inputs);
  RunRanks(4, [&](int r) {
    if (r == 2) return;  // the rank that left
    BufferReset(groups[r], experts.survivors);
    RankData d(r, 6);
    d.ids[3] = 6 + r % 2;  // token 1, k 1
    ExpectDispatchRefused(groups[r], d.XView(), d.IdsView(), Options(experts), ErrorCode::kInvalidParam,
                          {"expert_ids", "value " + std::to_string(6 + r % 2), "at [1, 1]", "left with their ranks"});
    const int s = SurvivorRank(experts.survivors, r);
    EXPECT_EQ(CompareScenarioRank(scaled, s, expected.dispatch[s], expected.combine[s],
                                  RunScenarioRank(scaled, inputs, s, groups[r], nullptr, &elastic)),
              "")
        << "rank " << r << ", survivor " << s;
  });
}

// Tables that let a shared expert lose every rank, or let a rank that left act as a survivor, are refused.
TEST(BadData, SurvivorsMustKeepEverySharedExpert) {
  auto groups = Groups(4);
  const ExpertLayout experts{2, 1, 2, 0, 0, 0, 0, {0, 0, 1, 1}};
  RunRanks(4, [&](int r) {
    if (r < 2) return;
    RankData d(r, 2);
    ExpectError([&] { Dispatch(groups[r], d.XView(), d.IdsView(), Options(experts)); }, ErrorCode::kInvalidConfig,
                {"ExpertLayout::survivors (as elasticInfo[2])", "every shared expert keeps at least one rank"});
  });
}

}  // namespace
}  // namespace moe_ep::testing
