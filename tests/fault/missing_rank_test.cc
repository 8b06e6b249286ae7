// Cases: a rank that never calls dispatch; one that never calls barrier; one that never calls combine; a reset sync
// that waits only for reachable ranks; a rank that comes after its peer's call failed (it must not read the rows
// that peer had announced); a TP peer that never calls (a TP rank, not taken for the EP rank of its number); a TP pair
// out of step (refused until reset) and one a call failed after its exchange (still usable); a late call's flags after
// a reset without sync (never taken for a later call's). The
// others must fail within the deadline with a TimeoutError naming the missing
// rank (or, for the reset, succeed without it), and the group must work again afterwards.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "moe_ep/ops.h"
#include "support/test_seed.h"
#include "verify/run_ranks.h"
#include "verify/scenario.h"

namespace moe_ep::testing {
namespace {

using namespace ::moe_ep::verify;  // the scenario runner of tools/verify

using std::chrono::milliseconds;

constexpr int kRanks = 4;
constexpr int64_t kBs = 4, kHidden = 32, kTopK = 2;
const ExpertLayout kExperts{8, 0, 0, 0, 0, 0, 0, {}};

DispatchOptions Options() {
  DispatchOptions options;
  options.experts = kExperts;
  return options;
}

struct RankData {
  std::vector<uint16_t> x = std::vector<uint16_t>(kBs * kHidden, 0x3F80);  // bf16 1.0
  std::vector<int32_t> ids;
  std::vector<float> weights = std::vector<float>(kBs * kTopK, 0.5f);
  explicit RankData(int rank) {
    for (int64_t t = 0; t < kBs; ++t) {
      for (int64_t k = 0; k < kTopK; ++k) ids.push_back(static_cast<int32_t>((rank + t + 3 * k) % 8));
    }
  }
  TensorView XView() { return TensorView(x.data(), DType::kBf16, {kBs, kHidden}); }
  TensorView IdsView() { return TensorView(ids.data(), DType::kInt32, {kBs, kTopK}); }
  TensorView WeightsView() { return TensorView(weights.data(), DType::kFloat32, {kBs, kTopK}); }
};

std::vector<Group> ShortDeadlineGroups(milliseconds timeout, int ranks = kRanks, DataPath path = DataPath::kAuto,
                                       const char* name = "fault") {
  GroupOptions options;
  options.timeout = timeout;
  options.window_bytes = 64 << 20;
  options.data_path = path;
  options.name = name;
  return CreateThreadGroups(ranks, options);
}

// Runs one round of a random configuration on every rank (drawn from the run's seed, the test and how many rounds it
// has run) and compares every output with the reference.
void RoundOnAll(std::vector<Group>& groups) {
  static int rounds = 0;
  const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  const uint64_t seed = BaseSeed() + std::hash<std::string>{}(test) + rounds++;
  RunRanks(static_cast<int>(groups.size()),
           [&](int r) { EXPECT_EQ(RandomRoundOnRank(groups[r], nullptr, r, seed), "") << "rank " << r; });
}

// Every rank but `absent` failed with a TimeoutError naming it alone; `more` checks each error further.
void ExpectTimedOutNaming(const std::vector<std::exception_ptr>& errors, int absent,
                          const std::function<void(const TimeoutError&)>& more = {}) {
  for (int r = 0; r < static_cast<int>(errors.size()); ++r) {
    if (r == absent) continue;
    ASSERT_TRUE(errors[r]) << "rank " << r << " should have timed out";
    try {
      std::rethrow_exception(errors[r]);
    } catch (const TimeoutError& e) {
      EXPECT_EQ(e.missing_ranks(), std::vector<int>{absent}) << "rank " << r << ": " << e.what();
      if (more) more(e);
    }
  }
}

TEST(MissingRank, DispatchTimesOutNamingTheAbsentRank) {
  auto groups = ShortDeadlineGroups(milliseconds(300));
  const int absent = 2;
  const auto start = std::chrono::steady_clock::now();
  const auto errors = RunRanksCollect(kRanks, [&](int r) {
    if (r == absent) return;
    RankData d(r);
    Dispatch(groups[r], d.XView(), d.IdsView(), Options());
  });
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, milliseconds(5000)) << "waits must end at the deadline";
  ExpectTimedOutNaming(errors, absent, [](const TimeoutError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kTimeout);
    EXPECT_TRUE(std::string(e.what()).starts_with("Dispatch: ")) << e.what();  // the native name
    EXPECT_NE(std::string(e.what()).find("rank 2"), std::string::npos) << e.what();
  });
}

// An elastic service's watchdog probes while an operation waits for a rank that does not come: two watchdog threads
// of each rank probe beside its dispatch, one probe at a time (they share the probe flags: at once, they raced on
// them), and find every rank, the absent one probing too; the dispatches then time out naming it.
TEST(MissingRank, WatchdogThreadsProbeWhileADispatchWaits) {
  auto groups = ShortDeadlineGroups(milliseconds(3000));
  const int absent = 3;
  constexpr int kWatchdogs = 2, kProbes = 5;
  const std::vector<int32_t> everyone(kRanks, 1);
  const auto probe = [&](int r, int probes) {
    for (int i = 0; i < probes; ++i) {
      try {
        EXPECT_EQ(ProbeReachable(groups[r], milliseconds(2000)), everyone) << "rank " << r << ", probe " << i;
      } catch (const Error& e) {
        ADD_FAILURE() << "rank " << r << ", probe " << i << ": " << e.what();
      }
    }
  };
  const auto errors = RunRanksCollect(kRanks, [&](int r) {
    if (r == absent) return probe(r, kWatchdogs * kProbes);  // alive, but never dispatches
    std::vector<std::thread> watchdogs;
    for (int w = 0; w < kWatchdogs; ++w) watchdogs.emplace_back(probe, r, kProbes);
    RankData d(r);
    std::exception_ptr failed;
    try {
      Dispatch(groups[r], d.XView(), d.IdsView(), Options());
    } catch (...) {
      failed = std::current_exception();
    }
    for (std::thread& t : watchdogs) t.join();
    if (failed) std::rethrow_exception(failed);
  });
  ExpectTimedOutNaming(errors, absent);
}

// A process group's window is named after its shared-memory segments ("2.ep-0-1.0": the name's length, the name, the
// members, the how-manieth such group), but its errors name it as its user did.
TEST(MissingRank, AProcessGroupsErrorsNameItAsItsUserDid) {
  GroupOptions options;
  options.timeout = milliseconds(300);
  const auto join = ShmGroupMaker()(2, 1, options);  // named "ep"
  std::vector<std::optional<RankGroups>> groups(2);
  RunRanks(2, [&](int g) { groups[g].emplace(join(g)); });
  EXPECT_EQ(groups[0]->ep.name(), "ep");
  try {
    Barrier(groups[0]->ep);  // rank 1 never comes
    ADD_FAILURE() << "a barrier without rank 1 returned";
  } catch (const TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("on rank 0 of group 'ep' waiting"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("ep-0-1"), std::string::npos) << e.what();
  }
}

TEST(MissingRank, BarrierWaitsForEveryRankAndNamesTheAbsentOne) {
  auto groups = ShortDeadlineGroups(milliseconds(300));
  std::atomic<int> arrived{0};
  RunRanks(kRanks, [&](int r) {  // rank 3 comes late: nobody leaves before it arrives
    if (r == 3) std::this_thread::sleep_for(milliseconds(50));
    arrived.fetch_add(1);
    Barrier(groups[r]);
    EXPECT_EQ(arrived.load(), kRanks) << "rank " << r << " left the barrier early";
  });
  const auto errors = RunRanksCollect(kRanks, [&](int r) {
    if (r != 3) Barrier(groups[r]);
  });
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(errors[r]) << "rank " << r << " should have timed out";
    try {
      std::rethrow_exception(errors[r]);
    } catch (const TimeoutError& e) {
      EXPECT_EQ(e.missing_ranks(), std::vector<int>{3}) << e.what();
      EXPECT_NE(std::string(e.what()).find("Barrier"), std::string::npos) << e.what();
    }
    EXPECT_EQ(groups[r].failed_ranks(), std::vector<int>{3}) << "rank " << r << " should remember the absent rank";
  }
  // The ranks that timed out are a barrier ahead of rank 3: a synced reset aligns them, and barriers work again.
  RunRanks(kRanks, [&](int r) {
    BufferReset(groups[r], {}, true);
    for (int i = 0; i < 3; ++i) Barrier(groups[r]);
  });
}

// An interrupt check that says so ends the waits long before the deadline, each with InterruptedError naming the
// absent rank; once it is removed, the group works again after a reset.
std::atomic<bool> g_interrupt{false};
bool InterruptFlag() { return g_interrupt.load(); }

TEST(MissingRank, AnInterruptCheckEndsTheWaitsNamingTheAbsentRank) {
  auto groups = ShortDeadlineGroups(milliseconds(60'000));
  SetInterruptCheck(&InterruptFlag);
  std::thread interrupter([] {
    std::this_thread::sleep_for(milliseconds(200));
    g_interrupt = true;
  });
  const auto started = std::chrono::steady_clock::now();
  const auto errors = RunRanksCollect(kRanks, [&](int r) {
    if (r == 3) return;
    RankData d(r);
    Dispatch(groups[r], d.XView(), d.IdsView(), Options());
  });
  interrupter.join();
  const auto waited = std::chrono::steady_clock::now() - started;
  SetInterruptCheck(nullptr);
  g_interrupt = false;
  EXPECT_LT(waited, std::chrono::seconds(30)) << "the waits ran to their deadline";
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(errors[r]) << "rank " << r << " should have been interrupted";
    try {
      std::rethrow_exception(errors[r]);
    } catch (const InterruptedError& e) {
      EXPECT_EQ(e.missing_ranks(), std::vector<int>{3}) << e.what();
      EXPECT_NE(std::string(e.what()).find("interrupted"), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "rank " << r << ": not an InterruptedError: " << e.what();
    }
    EXPECT_EQ(groups[r].failed_ranks(), std::vector<int>{}) << "rank " << r << ": an interrupt blames no one";
  }
  RunRanks(kRanks, [&](int r) { BufferReset(groups[r], {}, true); });
  RoundOnAll(groups);
}

// A synced reset forgets the failed ranks it is to wait for only once it has: one interrupted while it waited still
// lists them (it listed none, and the next operation would have waited for a rank known to be gone).
TEST(MissingRank, AnInterruptedResetForgetsNoFailedRank) {
  auto groups = ShortDeadlineGroups(milliseconds(2000));
  const int absent = 3;
  RunRanksCollect(kRanks, [&](int r) {
    if (r == absent) return;
    RankData d(r);
    Dispatch(groups[r], d.XView(), d.IdsView(), Options());
  });
  for (int r = 0; r < kRanks; ++r) {
    if (r != absent) {
      ASSERT_EQ(groups[r].failed_ranks(), std::vector<int>{absent}) << "rank " << r;
    }
  }
  SetInterruptCheck(&InterruptFlag);
  std::thread interrupter([] {
    std::this_thread::sleep_for(milliseconds(200));
    g_interrupt = true;
  });
  const auto errors = RunRanksCollect(kRanks, [&](int r) {
    if (r != absent) BufferReset(groups[r], std::vector<int32_t>(kRanks, 1), true);  // waits for the absent rank
  });
  interrupter.join();
  SetInterruptCheck(nullptr);
  g_interrupt = false;
  for (int r = 0; r < kRanks; ++r) {
    if (r == absent) continue;
    ASSERT_TRUE(errors[r]) << "rank " << r << " should have been interrupted";
    try {
      std::rethrow_exception(errors[r]);
    } catch (const InterruptedError&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "rank " << r << ": not an InterruptedError: " << e.what();
    }
    EXPECT_EQ(groups[r].failed_ranks(), std::vector<int>{absent}) << "rank " << r;
  }
  RunRanks(kRanks, [&](int r) { BufferReset(groups[r], std::vector<int32_t>(kRanks, 1), true); });
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(groups[r].failed_ranks(), std::vector<int>{}) << "rank " << r;
  RoundOnAll(groups);
}

// After an operation that timed out, a rank refuses the next one until it resets: the failed call's rows and flags
// may still be in flight, and a peer that came late would take them for its next call's.
TEST(MissingRank, AfterATimeoutOperationsAreRefusedUntilAReset) {
  auto groups = ShortDeadlineGroups(milliseconds(300));
  RunRanksCollect(kRanks, [&](int r) {
    if (r == 3) return;
    RankData d(r);
    Dispatch(groups[r], d.XView(), d.IdsView(), Options());
  });
  const auto refused = RunRanksCollect(kRanks, [&](int r) {
    if (r == 3) return;
    RankData d(r);
    Dispatch(groups[r], d.XView(), d.IdsView(), Options());
  });
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(refused[r]) << "rank " << r << " ran an operation after a timeout, without a reset";
    try {
      std::rethrow_exception(refused[r]);
    } catch (const TimeoutError& e) {
      ADD_FAILURE() << "rank " << r << " waited instead of refusing: " << e.what();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig) << e.what();
      for (const std::string& part :
           {"refused on rank " + std::to_string(r), std::string("(Dispatch timed out waiting for rank 3)"),
            std::string("BufferReset")}) {
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      }
    }
  }
  RunRanks(kRanks, [&](int r) { BufferReset(groups[r], {}, true); });
  RoundOnAll(groups);
}

// Rank 1 dispatches but never combines: every other rank sent it tokens, and awaits their rows from it.
TEST(MissingRank, CombineTimesOutNamingTheRankThatOwesRows) {
  auto groups = ShortDeadlineGroups(milliseconds(300));
  const int absent = 1;
  const int64_t local_experts = kExperts.moe_expert_num / kRanks;
  for (int r = 0; r < kRanks; ++r) {
    const std::vector<int32_t> ids = RankData(r).ids;
    EXPECT_TRUE(r == absent ||
                std::any_of(ids.begin(), ids.end(), [&](int32_t e) { return e / local_experts == absent; }))
        << "rank " << r << " sends no token to rank " << absent << "'s experts";
  }
  const auto errors = RunRanksCollect(kRanks, [&](int r) {
    RankData d(r);
    DispatchResult res = Dispatch(groups[r], d.XView(), d.IdsView(), Options());
    if (r == absent) return;
    Combine(groups[r], res.handle, res.expand_x.view(), d.WeightsView());
  });
  ExpectTimedOutNaming(errors, absent, [](const TimeoutError& e) {
    EXPECT_TRUE(std::string(e.what()).starts_with("Combine: ")) << e.what();
  });
}

TEST(MissingRank, ResetSyncsOnlyWithReachableRanksThenAllRecover) {
  auto groups = ShortDeadlineGroups(milliseconds(2000));
  RoundOnAll(groups);
  // Rank 3 is "unreachable": the others reset and sync among themselves without it.
  const std::vector<int32_t> reachable{1, 1, 1, 0};
  RunRanks(kRanks - 1, [&](int r) { BufferReset(groups[r], reachable, true); });
  // Told rank 3 is unreachable, each remembers it as failed (a transport that relays stops relaying through it).
  for (int r = 0; r < kRanks - 1; ++r) EXPECT_EQ(groups[r].failed_ranks(), std::vector<int>{3}) << "rank " << r;
  // Rank 3 comes back: a full reset of everyone, then rounds work again.
  RunRanks(kRanks, [&](int r) { BufferReset(groups[r], {}, true); });
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(groups[r].failed_ranks(), std::vector<int>{}) << "rank " << r;
  for (int round = 0; round < 3; ++round) RoundOnAll(groups);
}

TEST(MissingRank, GroupWorksAgainAfterATimeoutAndAReset) {
  auto groups = ShortDeadlineGroups(milliseconds(300));
  const auto errors = RunRanksCollect(kRanks, [&](int r) {
    if (r == 0) return;
    RankData d(r);
    Dispatch(groups[r], d.XView(), d.IdsView(), Options());
  });
  ExpectTimedOutNaming(errors, 0);
  // The same groups: the reset drops the stale flags and call counts the failed round left behind.
  RunRanks(kRanks, [&](int r) { BufferReset(groups[r], {}, true); });
  RoundOnAll(groups);
}

// A rank whose call fails (its peer came too late) withdraws the rows it announced for reading in place before
// its caller gets that memory back: the late peer, arriving once the caller has overwritten it, fails saying so
// instead of reading what is there now (or, for a tensor the caller freed, crashing), also when the failed rank
// reset its window first (which clears the words the withdrawal is written in). Pull forced; x of 8 tokens of
// H 8192 is past what dispatch would stage (a staged copy is moe_ep's and stays put).
TEST(MissingRank, ALateRankNeverReadsRowsOfACallThatFailed) {
  constexpr int kPair = 2;
  constexpr int64_t kBigHidden = 8192;
  constexpr uint16_t kOne = 0x3F80, kPoison = 0x7FC1;  // bf16 1.0; a NaN no round produces
  const ExpertLayout experts{4, 0, 0, 0, 0, 0, 0, {}};
  DispatchOptions dispatch_options;
  dispatch_options.experts = experts;
  for (const auto& [combine_late, reset] : {std::pair{false, false}, {true, false}, {false, true}, {true, true}}) {
    const bool in_combine = combine_late, reset_first = reset;  // lambdas below capture these (not bindings)
    SCOPED_TRACE(std::string(in_combine ? "combine" : "dispatch") + (reset_first ? ", reset before the reuse" : ""));
    auto groups = ShortDeadlineGroups(milliseconds(300), kPair, DataPath::kPull, "withdraw");
    std::vector<std::vector<uint16_t>> x(kPair, std::vector<uint16_t>(kBs * 2 * kBigHidden, kOne));
    std::vector<std::vector<int32_t>> ids(kPair);
    for (int r = 0; r < kPair; ++r) {
      for (int64_t t = 0; t < 2 * kBs; ++t)
        ids[r].insert(ids[r].end(), {int32_t((t + r) % 4), int32_t((t + r + 1) % 4)});
    }
    const std::vector<float> weights(2 * kBs * kTopK, 0.5f);
    const auto x_view = [&](int r) { return TensorView(x[r].data(), DType::kBf16, {2 * kBs, kBigHidden}); };
    const auto ids_view = [&](int r) { return TensorView(ids[r].data(), DType::kInt32, {2 * kBs, kTopK}); };
    const TensorView weights_view(weights.data(), DType::kFloat32, {2 * kBs, kTopK});
    std::atomic<bool> overwritten{false};
    RunRanks(kPair, [&](int r) {
      std::optional<DispatchResult> res;
      if (in_combine) res = Dispatch(groups[r], x_view(r), ids_view(r), dispatch_options);
      const auto call = [&] {
        if (in_combine) return void(Combine(groups[r], res->handle, res->expand_x.view(), weights_view));
        Dispatch(groups[r], x_view(r), ids_view(r), dispatch_options);
      };
      if (r == 0) {
        EXPECT_THROW(call(), TimeoutError) << "rank 1 is late";
        if (reset_first) BufferReset(groups[0], {}, false);
        // The caller's memory is its own again: reuse it.
        if (in_combine) {
          std::fill_n(res->expand_x.data_as<uint16_t>(), res->expand_x.numel(), kPoison);
        } else {
          std::fill(x[0].begin(), x[0].end(), kPoison);
        }
        overwritten = true;
        return;
      }
      while (!overwritten) std::this_thread::sleep_for(milliseconds(1));
      try {
        call();
        ADD_FAILURE() << "rank 1 completed a call whose rows rank 0 had given back to its caller";
      } catch (const TimeoutError& e) {
        EXPECT_EQ(e.missing_ranks(), std::vector<int>{0}) << e.what();
        EXPECT_NE(std::string(e.what()).find(
                      "rank 0 of group 'withdraw' withdrew the rows it announced before rank 1 read them"),
                  std::string::npos)
            << e.what();
      }
    });
    // Both reset; a round of a random configuration matches the reference.
    RunRanks(kPair, [&](int r) { BufferReset(groups[r], {}, true); });
    RoundOnAll(groups);
  }
}

// A reset without sync begins a generation no call before it used, also where the group never synced: rank 0's call
// times out (rank 1 is late) and it resets; rank 1's late call then writes its flags and rows into rank 0's window, and
// rank 1 resets too. Rank 0's next round must wait for rank 1's (delayed) next round, not take the late call's flags
// for its own: before, both were generation 0, so rank 0 finished at once with the late call's rows.
TEST(MissingRank, ALateCallsFlagsNeverMatchACallAfterAResetWithoutSync) {
  constexpr int kPair = 2;
  auto groups = ShortDeadlineGroups(milliseconds(300), kPair, DataPath::kPush, "late-flags");
  DispatchOptions dispatch_options;
  dispatch_options.experts = ExpertLayout{4, 0, 0, 0, 0, 0, 0, {}};
  std::atomic<int> stage{0};  // 1: rank 0 reset; 2: rank 1's late call ended and it reset
  const auto wait_for = [&](int s) {
    while (stage.load() < s) std::this_thread::sleep_for(milliseconds(1));
  };
  const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  const uint64_t seed = BaseSeed() + std::hash<std::string>{}(test);
  RunRanks(kPair, [&](int r) {
    RankData d(r);
    for (int32_t& id : d.ids) id %= 4;
    if (r == 0) {
      EXPECT_THROW(Dispatch(groups[0], d.XView(), d.IdsView(), dispatch_options), TimeoutError) << "rank 1 is late";
      BufferReset(groups[0], {}, false);
      stage = 1;
      wait_for(2);  // rank 0's next call must not write into rank 1's window before rank 1 cleared it
    } else {
      wait_for(1);
      try {  // the late call: it may find rank 0's rows of the failed call and end, or time out
        Dispatch(groups[1], d.XView(), d.IdsView(), dispatch_options);
      } catch (const TimeoutError&) {
      }
      BufferReset(groups[1], {}, false);
      stage = 2;
      std::this_thread::sleep_for(milliseconds(100));  // time enough for rank 0 to take the late flags, were they its
    }
    EXPECT_EQ(RandomRoundOnRank(groups[r], nullptr, r, seed), "") << "rank " << r << ", seed " << seed;
  });
}

// A TP peer that never calls: the wait for it fails naming TP rank 1, which the EP group does not take for its own
// rank 1 (which did nothing wrong, and which the group once left out of its next calls).
TEST(MissingRank, AnAbsentTpPeerIsNotTakenForAnEpRank) {
  auto groups = ShortDeadlineGroups(milliseconds(500));
  std::vector<std::vector<Group>> pairs;  // [EP rank][TP rank]; TP rank 1 never calls
  for (int r = 0; r < kRanks; ++r) pairs.push_back(CreateThreadGroups(2));
  DispatchOptions one_expert_each;  // a TP pair needs one expert per MoE rank
  one_expert_each.experts = ExpertLayout{kRanks, 0, 0, 0, 0, 0, 0, {}};
  RunRanks(kRanks, [&](int r) {
    RankData d(r);
    for (int64_t t = 0; t < kBs; ++t) {
      for (int64_t k = 0; k < kTopK; ++k) d.ids[t * kTopK + k] = static_cast<int32_t>((r + t + k) % kRanks);
    }
    try {
      Dispatch(groups[r], d.XView(), d.IdsView(), one_expert_each, &pairs[r][0]);
      ADD_FAILURE() << "rank " << r << ": dispatch without its TP peer succeeded";
    } catch (const TimeoutError& e) {
      EXPECT_EQ(e.missing_ranks(), std::vector<int>{1}) << e.what();
      EXPECT_NE(std::string(e.what()).find("TP peer"), std::string::npos) << e.what();
    }
    EXPECT_EQ(groups[r].failed_ranks(), std::vector<int>{}) << "rank " << r;
    BufferReset(groups[r]);
  });
  RoundOnAll(groups);
}

// Two EP groups of 2 thread ranks joined in TP pairs (world rank g = TP rank * 2 + EP rank), with a deadline of 1.5 s
// (also the random rounds' after a failure, under TSan too), and a dispatch of 2 tokens of rank g through them: token
// 0 to expert 0 (EP rank 0), token 1 to expert 1 (a TP pair needs one expert per MoE rank).
struct TwoTpPairs {
  static constexpr int kEp = 2, kWorld = 2 * kEp;
  static constexpr int64_t kTokens = 2;
  std::vector<std::optional<RankGroups>> groups = std::vector<std::optional<RankGroups>>(kWorld);
  DispatchOptions one_expert_each;
  std::vector<int32_t> ids = {0, 1};
  std::vector<uint16_t> x = std::vector<uint16_t>(kTokens * kHidden, 0x3F80);
  TwoTpPairs() {
    GroupOptions options;
    options.timeout = milliseconds(1500);
    options.window_bytes = 16 << 20;
    const auto join = ThreadGroupMaker()(kEp, 2, options);
    RunRanks(kWorld, [&](int g) { groups[g].emplace(join(g)); });
    one_expert_each.experts = ExpertLayout{kEp, 0, 0, 0, 0, 0, 0, {}};
  }
  DispatchResult Dispatch(int g) {
    return moe_ep::Dispatch(groups[g]->ep, TensorView(x.data(), DType::kBf16, {kTokens, kHidden}),
                            TensorView(ids.data(), DType::kInt32, {kTokens, 1}), one_expert_each, &*groups[g]->tp);
  }
  // Random rounds on every rank through both pairs, each compared with the reference.
  void RoundsOnAll(uint64_t seed, int rounds) {
    for (int round = 0; round < rounds; ++round) {
      RunRanks(kWorld, [&](int g) {
        EXPECT_EQ(RandomRoundOnRank(groups[g]->ep, &*groups[g]->tp, g, seed + round), "") << "rank " << g;
      });
    }
  }
};

// A TP pair numbers its calls apart from its EP groups, so a call one side of the pair failed puts the pair out of
// step, and resetting the EP groups does not realign it. Side 0 (TP rank 0 of both pairs) runs a dispatch side 1 never
// comes to, and times out after announcing its attributes to the pair; after resetting its EP group, its next call with
// the pair is refused naming the pair (it would wait on side 1's other call, or take side 1's rows of another call for
// its own), and side 1's, which took side 0's stale attributes for its own call's, fails at its deadline without
// taking any row. Resetting the EP groups and the pairs (BufferReset of each, on every rank) brings every rank back,
// bit for bit.
TEST(MissingRank, ATpPairOutOfStepIsRefusedUntilThePairIsReset) {
  TwoTpPairs pairs;
  const auto side = [](int g) { return g / TwoTpPairs::kEp; };
  RunRanks(TwoTpPairs::kWorld, [&](int g) {
    if (side(g) == 1) return;  // never comes
    EXPECT_THROW(pairs.Dispatch(g), TimeoutError) << "rank " << g;
    BufferReset(pairs.groups[g]->ep);
  });
  RunRanks(TwoTpPairs::kWorld, [&](int g) {
    try {
      pairs.Dispatch(g);
      ADD_FAILURE() << "rank " << g << ": a dispatch through a TP pair out of step succeeded";
    } catch (const TimeoutError& e) {
      EXPECT_EQ(side(g), 1) << "rank " << g << ": " << e.what();
    } catch (const Error& e) {
      EXPECT_EQ(side(g), 0) << "rank " << g << ": " << e.what();
      EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig) << e.what();
      for (const char* part : {"its TP pair (rank 0 of group 'tp", "is out of step", "BufferReset of the pair"}) {
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "rank " << g << ": " << e.what();
      }
    }
  });
  RunRanks(TwoTpPairs::kWorld, [&](int g) {
    BufferReset(pairs.groups[g]->ep);
    BufferReset(*pairs.groups[g]->tp);
  });
  pairs.RoundsOnAll(BaseSeed() + 31, 3);
}

// A call that fails after its TP exchange leaves the pair in step: side 0's EP rank 0 (world rank 0) never comes to a
// combine. Its TP peer (world rank 2) times out on the pair, which is then out of step on rank 2 alone; world rank 1
// finishes the exchange with its TP peer (world rank 3) before it times out on rank 0 in its EP group, and rank 3
// before it times out on rank 2 in its own: their pair stays usable. After the EP groups' resets and the first pair's
// (world ranks 0 and 2), every rank runs rounds bit for bit, through both pairs.
TEST(MissingRank, ACallThatFailsAfterItsTpExchangeLeavesThePairInStep) {
  TwoTpPairs pairs;
  const std::vector<float> weights(TwoTpPairs::kTokens, 0.5f);
  std::vector<std::string> failed(TwoTpPairs::kWorld);
  RunRanks(TwoTpPairs::kWorld, [&](int g) {
    RankGroups& mine = *pairs.groups[g];
    const DispatchResult d = pairs.Dispatch(g);
    if (g == 0) return;  // never comes to combine
    try {
      Combine(mine.ep, d.handle, d.expand_x.view(),
              TensorView(weights.data(), DType::kFloat32, {TwoTpPairs::kTokens, 1}), {}, &*mine.tp);
      failed[g] = "no error";
    } catch (const TimeoutError& e) {
      failed[g] = e.what();
    }
  });
  for (int g = 1; g < TwoTpPairs::kWorld; ++g) {
    EXPECT_NE(failed[g].find("timed out"), std::string::npos) << "rank " << g << ": " << failed[g];
  }
  EXPECT_NE(failed[2].find("TP peer"), std::string::npos) << failed[2];
  RunRanks(TwoTpPairs::kWorld, [&](int g) {
    BufferReset(pairs.groups[g]->ep);
    if (g % TwoTpPairs::kEp == 0) BufferReset(*pairs.groups[g]->tp);  // the pair of world ranks 0 and 2, not 1 and 3's
  });
  pairs.RoundsOnAll(BaseSeed() + 41, 2);
}

// A rank held up by another's absence never gets a healthy rank named in its place. Three ranks, pull forced, rank 1
// dispatches but never comes to combine. Rank 2's first token needs rank 1's row, so rank 2 waits there and never
// reaches the rows rank 0 announced to it for its other tokens; rank 0 needs no row of rank 1, but no combine returns
// before every rank has come to it (the next call may write where a late one would still read). Both name rank 1,
// and only rank 1: not rank 2, which is waiting too, nor rank 0, whose rows are withdrawn from rank 2 at its deadline
// or declined by rank 2 when rank 2 gives up first.
TEST(MissingRank, AHealthyRankIsNotNamedForAnotherRanksAbsence) {
  constexpr int kRanks = 3;
  constexpr int64_t kBigHidden = 8192, kTokens = 4;
  constexpr uint16_t kOne = 0x3F80;  // bf16 1.0
  DispatchOptions dispatch_options;
  dispatch_options.experts = ExpertLayout{3, 0, 0, 0, 0, 0, 0, {}};  // expert e on rank e
  GroupOptions options;
  options.timeout = milliseconds(500);
  options.window_bytes = 64 << 20;
  options.data_path = DataPath::kPull;
  options.name = "held up";
  auto groups = CreateThreadGroups(kRanks, options);
  std::vector<std::vector<uint16_t>> x(kRanks, std::vector<uint16_t>(kTokens * kBigHidden, kOne));
  const std::vector<std::vector<int32_t>> ids = {
      {0, 2, 0, 2, 0, 2, 0, 2},  // rank 0: experts on ranks 0 and 2
      {0, 1, 0, 1, 0, 1, 0, 1},  // rank 1
      {1, 2, 0, 2, 0, 2, 0, 2},  // rank 2: token 0 needs rank 1, the others rank 0
  };
  const std::vector<float> weights(kTokens * kTopK, 0.5f);
  std::vector<std::string> errors(kRanks);
  std::vector<std::vector<int>> missing(kRanks);
  RunRanks(kRanks, [&](int r) {
    const TensorView x_view(x[r].data(), DType::kBf16, {kTokens, kBigHidden});
    const TensorView ids_view(ids[r].data(), DType::kInt32, {kTokens, kTopK});
    const DispatchResult d = Dispatch(groups[r], x_view, ids_view, dispatch_options);
    if (r == 1) return;  // never comes to combine
    try {
      Combine(groups[r], d.handle, d.expand_x.view(), TensorView(weights.data(), DType::kFloat32, {kTokens, kTopK}));
      errors[r] = "no error";
    } catch (const TimeoutError& e) {
      errors[r] = e.what();
      missing[r] = e.missing_ranks();
    }
  });
  for (int r : {0, 2}) EXPECT_EQ(missing[r], std::vector<int>{1}) << "rank " << r << ": " << errors[r];
}

}  // namespace
}  // namespace moe_ep::testing
