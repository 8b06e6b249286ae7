// A BufferReset sync that times out on one rank and is retried must end with every rank on the same
// generation (the epochs of every later call depend on it). In the first three the late rank's sync flag is held
// back from rank 1 until rank 1's first attempt has timed out, so rank 1 needs two attempts and ranks 0 and
// 2 need one, deterministically.
//   ResetRetry.RanksThatNeededDifferentAttemptsAgreeOnTheGeneration
//   ResetRetry.ARetryKeepsWhatAPeerSentAfterFinishingTheReset: the retry does not clear again, so a flag and
//     data rank 0 sent between its finished reset and rank 1's retry (its next call's) are still there.
//   ResetRetry.ARetryJoinsTheNewerResetAPeerBegan: rank 0 finished the reset and began another before rank 1
//     retried the first; both must end the newer one (a retry that ended the old one alone left rank 0 waiting
//     for a tag rank 1 never sent, and the two timed out in turn, reset after reset).
//   ResetRetry.AResetWithoutSyncAbandonsASyncThatTimedOut: the next synced reset is a new round, not a retry.
//   ResetRetry.ResetsWithoutSyncAfterARoundThatTimedOutOnOneRankAgree: they count from the round's start alike.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "ops/communicator.h"
#include "ops/op_common.h"
#include "ops/protocol.h"
#include "plan/layout.h"
#include "transport/thread/thread_window.h"
#include "verify/run_ranks.h"

namespace moe_ep {
namespace {

using transport::Clock;

// Forwards to a window, but holds this rank's reset-sync signal to `held_peer` until `release` is set.
class HoldingWindow : public transport::Window {
 public:
  HoldingWindow(transport::Window& inner, int held_peer, const std::atomic<bool>& release)
      : Window(inner.rank(), inner.size(), inner.data_bytes(), inner.flag_count(), inner.name()),
        inner_(inner),
        held_peer_(held_peer),
        release_(release) {}
  void Put(int peer, uint64_t offset, const void* src, uint64_t bytes) override {
    inner_.Put(peer, offset, src, bytes);
  }
  void Signal(int peer, uint64_t index, uint64_t value) override {
    const bool sync_flag = index >= plan::kSyncFlagBase && index < plan::kSyncFlagBase + plan::kMaxSyncFlags;
    while (sync_flag && peer == held_peer_ && !release_.load())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    inner_.Signal(peer, index, value);
  }
  uint64_t ReadFlag(uint64_t index) const override { return inner_.ReadFlag(index); }
  const uint8_t* LocalData() const override { return inner_.LocalData(); }
  void ClearLocal(uint64_t cleared_flags) override { inner_.ClearLocal(cleared_flags); }

 private:
  transport::Window& inner_;
  int held_peer_;
  const std::atomic<bool>& release_;
};

constexpr int kRanks = 3;

// Resets 3 thread ranks over `windows` with rank 2's sync flag held back from rank 1 until rank 1's first attempt
// (200 ms) timed out; rank 1 runs `before_retry` between its attempts, and every rank `after_reset(rank)` once its
// reset finished. Returns the ranks' states.
std::vector<ops::OpState> ResetWithRank1Retrying(std::vector<std::unique_ptr<transport::Window>>& windows,
                                                 const std::function<void()>& before_retry,
                                                 const std::function<void(int)>& after_reset) {
  std::vector<ops::OpState> states(kRanks);
  std::atomic<bool> rank1_timed_out{false};
  HoldingWindow late_rank(*windows[2], /*held_peer=*/1, rank1_timed_out);
  const std::vector<int32_t> everyone(kRanks, 1);
  const auto long_deadline = [] { return Clock::now() + std::chrono::seconds(30); };
  verify::RunRanks(kRanks, [&](int r) {
    if (r == 1) {
      EXPECT_THROW(ops::protocol::BufferReset(*windows[1], states[1], everyone, true,
                                              Clock::now() + std::chrono::milliseconds(200), "BufferReset"),
                   TimeoutError);
      before_retry();
      rank1_timed_out = true;
    }
    ops::protocol::BufferReset(r == 2 ? late_rank : *windows[r], states[r], everyone, true, long_deadline(),
                               "BufferReset");
    after_reset(r);
  });
  return states;
}

TEST(ResetRetry, RanksThatNeededDifferentAttemptsAgreeOnTheGeneration) {
  auto windows = transport::CreateThreadWindows(kRanks, 1 << 16, ops::kWindowFlagCount, "reset retry");
  const std::vector<ops::OpState> states = ResetWithRank1Retrying(
      windows, [] {}, [](int) {});
  EXPECT_EQ(states[0].generation, states[1].generation);
  EXPECT_EQ(states[1].generation, states[2].generation);
  EXPECT_NE(states[0].generation, 0u);
}

TEST(ResetRetry, ARetryKeepsWhatAPeerSentAfterFinishingTheReset) {
  constexpr uint64_t kFlag = 0, kFlagValue = 0x1234, kOffset = 64;
  static_assert(kFlag < plan::kClearedFlagCount, "a flag BufferReset clears");
  const uint64_t payload = 0x0123456789ABCDEF;
  auto windows = transport::CreateThreadWindows(kRanks, 1 << 16, ops::kWindowFlagCount, "reset retry keeps");
  std::atomic<bool> rank0_sent{false};
  const auto wait_for_rank0 = [&] {
    while (!rank0_sent.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  const auto after_reset = [&](int r) {
    if (r == 0) {  // finished with rank 1's first tag and rank 2's: sends what its next call would
      windows[0]->Put(1, kOffset, &payload, sizeof payload);
      windows[0]->Signal(1, kFlag, kFlagValue);
      rank0_sent = true;
    } else if (r == 1) {
      EXPECT_EQ(windows[1]->ReadFlag(kFlag), kFlagValue) << "the retry cleared rank 0's flag";
      uint64_t got = 0;
      std::memcpy(&got, windows[1]->LocalData() + kOffset, sizeof got);
      EXPECT_EQ(got, payload) << "the retry cleared rank 0's data";
    }
  };
  const std::vector<ops::OpState> states = ResetWithRank1Retrying(windows, wait_for_rank0, after_reset);
  EXPECT_EQ(states[0].generation, states[1].generation);
}

TEST(ResetRetry, ARetryJoinsTheNewerResetAPeerBegan) {
  auto windows = transport::CreateThreadWindows(2, 1 << 16, ops::kWindowFlagCount, "reset retry joins");
  std::vector<ops::OpState> states(2);
  std::atomic<bool> rank1_timed_out{false};
  HoldingWindow held(*windows[0], /*held_peer=*/1, rank1_timed_out);
  const std::vector<int32_t> everyone(2, 1);
  const auto deadline = [](int ms) { return Clock::now() + std::chrono::milliseconds(ms); };
  verify::RunRanks(2, [&](int r) {
    if (r == 0) {
      // Finishes the first reset once rank 1's attempt has timed out (its flag to rank 1 is held until then),
      // then begins a second: its next call failed, rank 1 being on no generation.
      ops::protocol::BufferReset(held, states[0], everyone, true, deadline(30000), "BufferReset");
      ops::protocol::BufferReset(*windows[0], states[0], everyone, true, deadline(3000), "BufferReset");
      return;
    }
    EXPECT_THROW(ops::protocol::BufferReset(*windows[1], states[1], everyone, true, deadline(200), "BufferReset"),
                 TimeoutError);
    rank1_timed_out = true;
    // Retries once rank 0's flag says it began the second reset (tag 2).
    while (windows[1]->ReadFlag(plan::kSyncFlagBase + 0) < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ops::protocol::BufferReset(*windows[1], states[1], everyone, true, deadline(3000), "BufferReset");
  });
  EXPECT_EQ(states[0].generation, 2u);
  EXPECT_EQ(states[1].generation, 2u);
}

// Ranks 0 and 1 of 3 thread windows, rank 2 absent: the sync round that times out on rank 0 (it awaits rank 2) and
// ends on rank 1 (it leaves rank 2 out), and resets without sync.
struct SplitRound {
  explicit SplitRound(const char* name)
      : windows(transport::CreateThreadWindows(3, 1 << 16, ops::kWindowFlagCount, name)) {}
  static Clock::time_point Deadline(int ms) { return Clock::now() + std::chrono::milliseconds(ms); }
  // Returns on both ranks together.
  void SyncTimingOutOnRank0(int r) {
    if (r == 0) {
      EXPECT_THROW(ops::protocol::BufferReset(*windows[0], states[0], everyone, true, Deadline(200), "BufferReset"),
                   TimeoutError);
    } else {
      ops::protocol::BufferReset(*windows[1], states[1], without_rank2, true, Deadline(3000), "BufferReset");
    }
    step.arrive_and_wait();
  }
  void ResetWithoutSync(int r) {
    ops::protocol::BufferReset(*windows[r], states[r], without_rank2, false, Deadline(3000), "BufferReset");
  }

  std::vector<std::unique_ptr<transport::Window>> windows;
  std::vector<ops::OpState> states = std::vector<ops::OpState>(2);
  const std::vector<int32_t> everyone = {1, 1, 1}, without_rank2 = {1, 1, 0};
  std::barrier<> step{2};
};

// A reset without sync abandons a sync round that timed out: the next synced reset is a new round (a new tag, a
// clear), not a retry of the old one. Rank 0's sync awaits an absent rank 2 and times out; rank 1's, which leaves
// rank 2 out, ends (tag 1). Both reset without sync, then sync leaving rank 2 out, rank 0 first: both must end the
// same new round (rank 0 took it for a retry of tag 1, ended at once on rank 1's old flag and went on, while rank 1
// began tag 2 and waited for it in vain).
TEST(ResetRetry, AResetWithoutSyncAbandonsASyncThatTimedOut) {
  SplitRound round("reset abandoned");
  verify::RunRanks(2, [&](int r) {
    round.SyncTimingOutOnRank0(r);
    round.ResetWithoutSync(r);
    round.step.arrive_and_wait();
    if (r == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));  // rank 0 syncs first
    try {
      ops::protocol::BufferReset(*round.windows[r], round.states[r], round.without_rank2, true, round.Deadline(3000),
                                 "BufferReset");
    } catch (const TimeoutError& e) {
      ADD_FAILURE() << "rank " << r << ": " << e.what();
    }
  });
  EXPECT_EQ(round.states[0].generation, round.states[1].generation);
  EXPECT_EQ(round.states[0].generation, 2u);
}

// A reset without sync after a sync round that timed out on one rank and ended on another takes both to one
// generation: each counts its resets without sync from the round's start. Both reset without sync once, then rank 0's
// sync awaits an absent rank 2 and times out while rank 1's, leaving rank 2 out, ends; then both reset without sync
// (before, rank 0 still counted the first reset without sync, rank 1 did not: two generations that never met).
TEST(ResetRetry, ResetsWithoutSyncAfterARoundThatTimedOutOnOneRankAgree) {
  SplitRound round("reset counts");
  verify::RunRanks(2, [&](int r) {
    round.ResetWithoutSync(r);
    round.step.arrive_and_wait();
    round.SyncTimingOutOnRank0(r);
    round.ResetWithoutSync(r);
  });
  EXPECT_EQ(round.states[0].generation, round.states[1].generation);
  EXPECT_EQ(round.states[0].generation, ops::UnsyncedGeneration(1, 1));
}

}  // namespace
}  // namespace moe_ep
