// What an operation leaves in a rank's state, seen through a window that watches it (so below the native API): after
// an internal error (500002: the transport's, the system's) part-way, the next operation is refused until a
// BufferReset, as after a timeout; and the numbers the operations end with (Window::EndOperation, what a relay
// matches its senders' end marks against) grow within a generation, and every reset, with sync or without, begins one
// no operation before it had, whose call epochs meet no neighbouring generation's; a deadline seen through a
// scaled-down view keeps what the transport says of the missing ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "moe_ep/error.h"
#include "ops/communicator.h"
#include "ops/op_common.h"
#include "ops/operations.h"
#include "plan/layout.h"
#include "reference/reference.h"
#include "support/test_seed.h"
#include "transport/remapped_window.h"
#include "transport/thread/thread_window.h"
#include "verify/run_ranks.h"
#include "verify/scenario.h"

namespace moe_ep::testing {
namespace {

constexpr int kRanks = 4, kFaulty = 1;
constexpr int64_t kBs = 4, kHidden = 32, kTopK = 2, kExperts = 8;

// Owns a thread window and forwards to it (a renumbering that changes nothing), recording the sequences the operations
// end with and the reset rounds begun (BeginRound), and counting sync flags signalled with a tag whose round had not
// begun; with `fail_second_signal` its second signal fails once, as a transport fault would: after the first went out,
// so the operation failed part-way.
struct OwnedWindow {
  std::unique_ptr<transport::Window> inner;
};
class WatchedWindow : private OwnedWindow, public transport::RemappedWindow {
 public:
  WatchedWindow(std::unique_ptr<transport::Window> window, bool fail_second_signal, std::vector<uint64_t>& ended)
      : OwnedWindow{std::move(window)},
        RemappedWindow(*inner, inner->rank(), Identity(inner->size())),
        fail_second_signal_(fail_second_signal),
        ended_(ended) {}
  void Signal(int peer, uint64_t index, uint64_t value) override {
    if (++signals_ == 2 && fail_second_signal_) throw Error(ErrorCode::kInternal, "injected transport fault");
    const bool sync_flag = index >= plan::kSyncFlagBase && index < plan::kSyncFlagBase + plan::kMaxSyncFlags;
    if (sync_flag && (rounds.empty() || rounds.back() != value)) ++syncs_before_their_round;
    RemappedWindow::Signal(peer, index, value);
  }
  void BeginRound(uint64_t round) override {
    rounds.push_back(round);
    RemappedWindow::BeginRound(round);
  }
  std::vector<uint64_t> rounds;
  int syncs_before_their_round = 0;
  void EndOperation(uint64_t sequence) override {
    ended_.push_back(sequence);
    RemappedWindow::EndOperation(sequence);
  }

 private:
  static std::vector<int> Identity(int size) {
    std::vector<int> ranks(size);
    for (int r = 0; r < size; ++r) ranks[r] = r;
    return ranks;
  }
  bool fail_second_signal_;
  std::vector<uint64_t>& ended_;
  int signals_ = 0;
};

// Communicators over thread windows, each watched: `faulty`'s fails its second signal; ended[r] gets rank r's
// sequences.
std::vector<std::unique_ptr<ops::Communicator>> WatchedGroup(int faulty, std::vector<std::vector<uint64_t>>& ended) {
  auto windows = transport::CreateThreadWindows(kRanks, 64 << 20, ops::kWindowFlagCount, "watched");
  std::vector<std::unique_ptr<ops::Communicator>> comms;
  for (int r = 0; r < kRanks; ++r) {
    auto window = std::make_unique<WatchedWindow>(std::move(windows[r]), r == faulty, ended[r]);
    comms.push_back(std::make_unique<ops::Communicator>(std::move(window), std::chrono::milliseconds(2000), "watched"));
  }
  return comms;
}

// A watched window whose transport gives an account of missing ranks, as the hosts transport does (its messages under
// way, a missing relay), naming them as it numbers them.
struct ExplainingWindow : WatchedWindow {
  using WatchedWindow::WatchedWindow;
  std::string ExplainMissing(std::span<const int> missing) const override {
    return "; messages under way from " + transport::RanksNamed(missing);
  }
};

// The configuration RankCall runs, for verify's inputs and the reference.
verify::ScenarioSpec Spec() { return verify::RoutedSpec(kRanks, kExperts, kTopK, kHidden, kBs); }

// Rank r's tokens all bf16 1.0, token t to experts (r + t + 3k) % 8: what the calls whose rows nobody reads send.
moe_ref::RankInput Pinned(int rank) {
  moe_ref::RankInput input;
  input.bs = kBs;
  input.x.assign(kBs * kHidden, 0x3F80);
  for (int64_t t = 0; t < kBs; ++t) {
    for (int64_t k = 0; k < kTopK; ++k) input.expert_ids.push_back(static_cast<int32_t>((rank + t + 3 * k) % kExperts));
  }
  return input;
}

// One rank's dispatch of `input` into outputs sized as the rules ask and poisoned, which `out` holds as
// verify::CompareScenarioRank reads them.
struct RankCall {
  plan::MoeConfig config;
  moe_ref::RankInput input;
  verify::RankResult out;

  explicit RankCall(int rank) : RankCall(rank, Pinned(rank)) {}
  RankCall(int rank, moe_ref::RankInput drawn) : input(std::move(drawn)) {
    config.ep_world_size = kRanks;
    config.ep_rank = rank;
    config.tp_world_size = 1;
    config.op = "Dispatch";
    config.moe_expert_num = kExperts;
    config.bs = kBs;
    config.hidden = kHidden;
    config.top_k = kTopK;
    const int64_t rows = plan::ReceiveRows(config);
    out.expand_x = verify::Poisoned<uint8_t>(rows * kHidden * sizeof(uint16_t));
    out.assist_info = verify::Poisoned<int32_t>(rows * 128);
    out.expert_token_nums = verify::Poisoned<int64_t>(kExperts / kRanks);
    out.ep_recv_counts = verify::Poisoned<int32_t>(kExperts);
    out.tp_recv_counts = verify::Poisoned<int32_t>(1);
  }
  void Run(ops::Communicator& comm) {
    plan::DispatchTensors t;
    t.x = TensorView(input.x.data(), DType::kBf16, {kBs, kHidden});
    t.expert_ids = TensorView(input.expert_ids.data(), DType::kInt32, {kBs, kTopK});
    const int64_t rows = static_cast<int64_t>(out.expand_x.size() / sizeof(uint16_t)) / kHidden;
    t.expand_x = TensorView(out.expand_x.data(), DType::kBf16, {rows, kHidden});
    const auto whole = [](auto& v, DType dtype) {
      return TensorView(v.data(), dtype, {static_cast<int64_t>(v.size())});
    };
    t.assist_info = whole(out.assist_info, DType::kInt32);
    t.expert_token_nums = whole(out.expert_token_nums, DType::kInt64);
    t.ep_recv_counts = whole(out.ep_recv_counts, DType::kInt32);
    t.tp_recv_counts = whole(out.tp_recv_counts, DType::kInt32);
    ops::RunDispatch(comm, nullptr, config, t, {});
  }
};

TEST(OpState, AfterAnInternalErrorOperationsAreRefusedUntilAReset) {
  std::vector<std::vector<uint64_t>> ended(kRanks);
  auto comms = WatchedGroup(kFaulty, ended);
  const auto failed = verify::RunRanksCollect(kRanks, [&](int r) { RankCall(r).Run(*comms[r]); });
  ASSERT_TRUE(failed[kFaulty]) << "the injected fault did not fail the dispatch";
  const auto next = verify::RunRanksCollect(kRanks, [&](int r) {
    if (r == kFaulty) RankCall(r).Run(*comms[r]);
  });
  ASSERT_TRUE(next[kFaulty]) << "rank " << kFaulty << " ran an operation after an internal error, without a reset";
  try {
    std::rethrow_exception(next[kFaulty]);
  } catch (const TimeoutError& e) {
    ADD_FAILURE() << "waited instead of refusing: " << e.what();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig) << e.what();
    for (const std::string part : {"refused on rank 1", "(Dispatch failed: injected transport fault)", "BufferReset"}) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  }
  // Reset, then every rank's dispatch of fresh random tokens and routing runs: every output equals the reference's.
  const std::vector<int32_t> everyone(kRanks, 1);
  verify::RunRanks(kRanks, [&](int r) { ops::RunBufferReset(*comms[r], everyone, true, "BufferReset"); });
  const verify::ScenarioSpec spec = Spec();
  std::mt19937_64 rng(BaseSeed());
  const verify::ScenarioInputs inputs = verify::MakeInputs(spec, rng);
  const std::vector<moe_ref::DispatchOut> expected = moe_ref::Dispatch(spec.config, inputs.dispatch);
  verify::RunRanks(kRanks, [&](int r) {
    RankCall call(r, inputs.dispatch[r]);
    call.Run(*comms[r]);
    EXPECT_EQ(verify::CompareScenarioRank(spec, r, expected[r], {}, call.out), "") << "after the reset";
  });
}

// Two dispatches, a reset without sync, two more, a synced reset, one more, a reset without sync, one more: each reset
// begins a generation (the high 32 bits) no operation before it had, the same on every rank (a reset without sync its
// own: UnsyncedGeneration, whose calls' epochs a late flag of a call that failed before it never matches), and within
// one every rank's sequences grow.
TEST(OpState, SequencesGrowAcrossResetsWithoutSync) {
  std::vector<std::vector<uint64_t>> ended(kRanks);
  auto comms = WatchedGroup(/*faulty=*/-1, ended);
  const std::vector<int32_t> everyone(kRanks, 1);
  verify::RunRanks(kRanks, [&](int r) {
    for (int round = 0; round < 2; ++round) RankCall(r).Run(*comms[r]);
    ops::RunBufferReset(*comms[r], everyone, false, "BufferReset");
    ops::RunBarrier(*comms[r]);  // without sync, a rank still clearing would wipe what a faster one sends next
    for (int round = 0; round < 2; ++round) RankCall(r).Run(*comms[r]);
    ops::RunBufferReset(*comms[r], everyone, true, "BufferReset");
    RankCall(r).Run(*comms[r]);
    ops::RunBufferReset(*comms[r], everyone, false, "BufferReset");
    ops::RunBarrier(*comms[r]);
    RankCall(r).Run(*comms[r]);
  });
  // The operations that end: dispatches 0 and 1, the reset without sync 2, dispatches 3 and 4, the synced reset 5, and
  // dispatch 6, the reset without sync 7, dispatch 8; each reset ends in its new generation; the barriers are none.
  const std::vector<size_t> resets = {2, 5, 7};
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_EQ(ended[r].size(), 9u) << "rank " << r;
    EXPECT_EQ(ended[r], ended[0]) << "rank " << r << " numbered its operations unlike rank 0";
    std::vector<uint64_t> generations = {ended[r][0] >> 32};
    for (size_t i = 1; i < ended[r].size(); ++i) {
      const uint64_t generation = ended[r][i] >> 32;
      if (std::find(resets.begin(), resets.end(), i) != resets.end()) {
        EXPECT_EQ(std::find(generations.begin(), generations.end(), generation), generations.end())
            << "rank " << r << ": the reset that ended as operation " << i << " began no new generation";
        generations.push_back(generation);
        continue;
      }
      EXPECT_EQ(generation, ended[r][i - 1] >> 32)
          << "rank " << r << ": operation " << i << " began a generation, with no reset before it";
      EXPECT_GT(ended[r][i], ended[r][i - 1]) << "rank " << r << ": operation " << i << " ended with a number "
                                              << "not above the one before it, in the same generation";
    }
    // The synced reset told the transport its round (the generation it ended in) before any peer its tag; the resets
    // without sync begin no round.
    const auto& window = dynamic_cast<const WatchedWindow&>(comms[r]->window());
    EXPECT_EQ(window.syncs_before_their_round, 0) << "rank " << r << " signalled a sync tag before its round began";
    ASSERT_FALSE(window.rounds.empty()) << "rank " << r << ": the synced reset began no round";
    EXPECT_EQ(window.rounds.front(), ended[r][5] >> 32) << "rank " << r;
    EXPECT_TRUE(
        std::all_of(window.rounds.begin(), window.rounds.end(), [&](uint64_t g) { return g == ended[r][5] >> 32; }))
        << "rank " << r << ": a round began other than the synced reset's";
  }
}

// The generations of resets without sync (the 1st to the 128th after a synced generation g) and the synced ones up to 8
// from g: no two share a tag among their first 2^16 calls (2^16 calls of 128 + 17 generations, sorted), for a few g.
TEST(OpState, UnsyncedGenerationsMeetNoNeighbour) {
#ifdef MOE_EP_SANITIZED
  constexpr uint64_t kCalls = uint64_t{1} << 13;  // arithmetic, here for memory errors: the release build checks 2^16
#else
  constexpr uint64_t kCalls = uint64_t{1} << 16;
#endif
  for (const uint64_t synced : {uint64_t{0}, uint64_t{1}, uint64_t{9}, uint64_t{254}, uint64_t{1} << 31}) {
    std::vector<uint64_t> generations;
    for (uint64_t n = 1; n <= 128; ++n) generations.push_back(ops::UnsyncedGeneration(synced, n));
    for (uint64_t g = synced < 8 ? 0 : synced - 8; g <= synced + 8; ++g) generations.push_back(g);
    std::vector<uint32_t> epochs;
    for (const uint64_t g : generations) {
      for (uint64_t call = 0; call < kCalls; ++call) epochs.push_back(ops::CallEpoch(g, call));
    }
    std::sort(epochs.begin(), epochs.end());
    EXPECT_NE(epochs.front(), 0u) << "synced generation " << synced;
    EXPECT_EQ(std::adjacent_find(epochs.begin(), epochs.end()), epochs.end()) << "synced generation " << synced;
  }
}

// The epochs calls tag their flags with: never 0; a generation's first 2^16 calls all differ; and neither the call
// 2^24 + k of a generation (where generation << 24 + call met the next generation's call k) nor any of its first 2^16
// calls shares a tag with the first 2^16 calls of any of the next 8 generations, for a few generations.
TEST(OpState, CallEpochsOfNeighbouringGenerationsNeverMeet) {
  constexpr uint64_t kCalls = uint64_t{1} << 16;
  for (const uint64_t generation : {uint64_t{0}, uint64_t{1}, uint64_t{254}, uint64_t{1} << 31}) {
    std::vector<uint32_t> older;
    for (uint64_t call = 0; call < kCalls; ++call) older.push_back(ops::CallEpoch(generation, call));
    for (uint64_t k = 0; k < 16; ++k) older.push_back(ops::CallEpoch(generation, (uint64_t{1} << 24) + k));
    std::sort(older.begin(), older.end());
    ASSERT_EQ(older.front() == 0, false) << "generation " << generation;
    EXPECT_EQ(std::adjacent_find(older.begin(), older.end()), older.end()) << "generation " << generation;
    for (uint64_t later = generation + 1; later <= generation + 8; ++later) {
      uint64_t zero = 0, shared = 0, first_shared = 0;
      for (uint64_t call = 0; call < kCalls; ++call) {
        const uint32_t epoch = ops::CallEpoch(later, call);
        zero += epoch == 0;
        if (std::binary_search(older.begin(), older.end(), epoch) && shared++ == 0) first_shared = call;
      }
      EXPECT_EQ(zero, 0u) << "generation " << later;
      EXPECT_EQ(shared, 0u) << "generation " << later << " call " << first_shared << " (and " << shared - 1
                            << " more) has a tag of generation " << generation;
    }
  }
}

// A deadline through a scaled-down view of the window (the survivors numbered 0..n-1) keeps the transport's account of
// the missing ranks, which names the original ranks, and says so.
TEST(OpState, AScaledDownViewKeepsTheTransportsAccountOfMissingRanks) {
  auto windows = transport::CreateThreadWindows(kRanks, 1 << 20, 16, "explained");
  std::vector<uint64_t> ended;
  ExplainingWindow window(std::move(windows[0]), false, ended);
  const transport::RemappedWindow survivors(window, 0, {0, 2, 3});  // rank 1 left out
  EXPECT_EQ(survivors.ExplainMissing(std::vector<int>{1, 2}),
            "; in the original numbering, messages under way from ranks 2, 3");
  const uint64_t flag = 0;
  try {
    transport::WaitFlags(
        survivors, std::span(&flag, 1), 1, transport::Clock::now() + std::chrono::milliseconds(10),
        [](uint64_t) { return 1; }, "Dispatch", "a flag no one sends");
    ADD_FAILURE() << "a flag no one sends arrived";
  } catch (const TimeoutError& e) {
    EXPECT_EQ(e.missing_ranks(), std::vector<int>{1});
    EXPECT_NE(std::string(e.what()).find("from rank 1; they did not arrive"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("; in the original numbering, messages under way from rank 2"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace moe_ep::testing
