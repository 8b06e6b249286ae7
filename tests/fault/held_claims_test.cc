// A combine owner that has read one rank's rows in place and then waits for another rank's holds no claim on the
// first rank's memory while it waits: should the first rank's deadline pass meanwhile, that rank withdraws its rows
// and returns with its results (complete), never naming the healthy owner, and the owner's results are exact. (A claim
// held across the wait made the first rank fail naming the owner, and after kWithdrawWait give up on it while it
// still held pointers into memory the caller got back.)
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "support/test_seed.h"
#include "verify/run_ranks.h"
#include "verify/scenario.h"

namespace moe_ep::testing {
namespace {

using namespace ::moe_ep::verify;  // the rank runner and the scenario's inputs of tools/verify
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kRanks = 3;
constexpr int kSender = 0, kLate = 1, kOwner = 2;  // expert e lives on rank e
constexpr int64_t kBs = 4, kTopK = 2, kHidden = 8192;

// The late rank's interrupt check (called by its waits, every few ms) holds its thread once, until g_wake: the rank
// has announced its start (its peers pass their own checks) and sends its rows only after that.
thread_local bool t_late_rank = false;
std::atomic<bool> g_held{false};
Clock::time_point g_wake;
bool HoldTheLateRankOnce() {
  if (t_late_rank && !g_held.exchange(true)) std::this_thread::sleep_until(g_wake);
  return false;
}

TEST(HeldClaims, AnOwnerWaitingOnOneRankLetsAnotherWithdrawAtItsDeadline) {
  ScenarioSpec spec = RoutedSpec(kRanks, kRanks, kTopK, kHidden, kBs);
  spec.config.a2 = true;  // Atlas A2's layout: a rank sends its rows only after every rank's start, so one can be held
  const uint64_t seed = BaseSeed() + 0x48C1;
  std::mt19937_64 rng(seed);
  ScenarioInputs inputs = MakeInputs(spec, rng);
  // The sender's and the late rank's tokens go to their own expert and the owner's; the owner's first token to the
  // sender's expert (read in place, so claimed) and its own, every later one to the late rank's and its own.
  for (int r = 0; r < kRanks; ++r) {
    std::vector<int32_t>& ids = inputs.dispatch[r].expert_ids;
    for (int64_t t = 0; t < kBs; ++t) {
      ids[t * kTopK] = r == kOwner ? (t == 0 ? kSender : kLate) : r;
      ids[t * kTopK + 1] = kOwner;
    }
  }
  const Expected expected = ExpectedRound(spec, inputs);

  GroupOptions options;
  options.timeout = milliseconds(6000);
  options.window_bytes = 64 << 20;
  options.data_path = DataPath::kPull;  // rows of 16 KiB: read in place
  options.threads = 1;
  options.name = "held claims";
  auto groups = CreateThreadGroups(kRanks, options);
  // Deadlines: the sender's at 6 s, the late rank's at 9 s, the owner's at 10 s. The late rank starts at 3 s and is
  // held until 7.5 s: the owner (from 4 s) reads the sender's rows, then waits for the late rank's past the sender's
  // deadline.
  const Clock::time_point start = Clock::now() + milliseconds(1000);
  const milliseconds enters[kRanks] = {milliseconds(0), milliseconds(3000), milliseconds(4000)};
  g_wake = start + milliseconds(7500);
  g_held = false;
  SetInterruptCheck(&HoldTheLateRankOnce);
  std::vector<std::string> failures(kRanks);
  Clock::time_point sender_returned{};
  RunRanks(kRanks, [&](int r) {
    RankCalls calls(spec, inputs, r, groups[r], nullptr);
    try {
      calls.Dispatch();
      if (Clock::now() > start + enters[r]) {
        failures[r] = "the dispatch ended after the rank's planned start: the machine is too slow for this test's plan";
        return;
      }
      std::this_thread::sleep_until(start + enters[r]);
      t_late_rank = r == kLate;
      calls.Combine();
      t_late_rank = false;
      if (r == kSender) sender_returned = Clock::now();
      failures[r] = CompareScenarioRank(spec, r, expected.dispatch[r], expected.combine[r], calls.Result());
    } catch (const std::exception& e) {
      t_late_rank = false;
      failures[r] = e.what();
    }
  });
  SetInterruptCheck(nullptr);
  EXPECT_TRUE(g_held) << "the late rank was never held: this run checked nothing";
  EXPECT_LT(sender_returned, g_wake) << "the sender's deadline did not come while the owner waited: this run "
                                        "checked nothing";
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(failures[r], "") << "rank " << r << " (seed " << seed << ")";
}

}  // namespace
}  // namespace moe_ep::testing
