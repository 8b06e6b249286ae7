// How `moe-ep run` and `moe-ep bench` turn the ranks' own timings into one number per op: the span from the first
// start to the last end (one clock) or the slowest rank (clocks apart), the median over rounds; and the files rank
// processes hand their timings over in.
#include "moe-ep/rank_times.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "moe_ep/error.h"
#include "support/test_seed.h"
#include "support/thrown_error.h"

namespace moe_ep::tools {
namespace {

// A rank whose op 0 starts at starts[i] and lasts seconds[i] in round i.
RankTimes OneOp(std::vector<double> starts, std::vector<double> seconds, int64_t rows = 0) {
  RankTimes t;
  t.starts = {std::move(starts)};
  t.seconds = {std::move(seconds)};
  t.rows = rows;
  return t;
}

TEST(RankTimes, SpanFromFirstStartToLastEndOrSlowestRank) {
  // Round 0: rank 1 starts late (it waited for a core) and ends last: span 0.5, slowest own time 0.2.
  // Rounds 1 and 2 make the medians (middle of three) distinguishable from a mean.
  const std::vector<RankTimes> ranks = {OneOp({10.0, 20.0, 30.0}, {0.1, 0.3, 1.0}),
                                        OneOp({10.3, 20.0, 30.5}, {0.2, 0.1, 0.1})};
  EXPECT_NEAR(SlowestRankMedians(ranks, true)[0], 0.5, 1e-9);   // spans 0.5, 0.3, 1.0
  EXPECT_NEAR(SlowestRankMedians(ranks, false)[0], 0.3, 1e-9);  // slowest 0.2, 0.3, 1.0
}

TEST(RankTimes, EachStepIsRefreshedThenSyncedThenTimedAloneEveryRound) {
  std::string trace;
  const auto sleep_ms = [](int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };
  const TimedStep steps[] = {{[&] { trace += 'r', sleep_ms(40); }, [&] { trace += 'A'; }},
                             {{}, [&] { trace += 'B', sleep_ms(20); }}};
  const RankTimes t = TimeRounds(/*warmup=*/1, /*repeats=*/2, [&] { trace += 's'; }, steps);
  EXPECT_EQ(trace,
            "rsAsB"
            "rsAsB"
            "rsAsB");
  ASSERT_EQ(t.seconds.size(), 2u);
  ASSERT_EQ(t.seconds[0].size(), 2u);  // the warm-up round is not kept
  // Step A takes next to nothing: well below the refresh's 40 ms, unless it was timed with them.
  for (double s : t.seconds[0]) EXPECT_LT(s, 0.04) << "the refresh's 40 ms were timed as step A's";
  for (double s : t.seconds[1]) EXPECT_GE(s, 0.02);
}

TEST(RankTimes, FilesRoundTripBitForBitAndNameAMissingRank) {
  const uint64_t seed = moe_ep::testing::BaseSeed();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> value(0.0, 1e6);
  const ResultsDir dir;
  std::vector<RankTimes> written;
  for (int r = 0; r < 3; ++r) {
    RankTimes t;
    t.rows = static_cast<int64_t>(rng() >> 20);
    for (int op = 0; op < 4; ++op) {
      t.starts.emplace_back();
      t.seconds.emplace_back();
      for (int round = 0; round < 5; ++round) {
        t.starts.back().push_back(value(rng));
        t.seconds.back().push_back(value(rng) * 1e-9);
      }
    }
    WriteRankTimes(dir.path(), "tag", r, t);
    written.push_back(t);
  }
  const std::vector<RankTimes> read = ReadRankTimes(dir.path(), "tag", 3);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(read[r].rows, written[r].rows);
    EXPECT_EQ(read[r].starts, written[r].starts);
    EXPECT_EQ(read[r].seconds, written[r].seconds);
  }
  try {
    ReadRankTimes(dir.path(), "tag", 4);
    FAIL() << "rank 3 wrote nothing";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 3 left no complete timings"), std::string::npos) << e.what();
  }
  std::ofstream(dir.path() + "/tag.rank1") << "7 4 5\n1 2 3\n";  // cut short
  EXPECT_TRUE(moe_ep::testing::ThrowsError([&] { ReadRankTimes(dir.path(), "tag", 3); }, ErrorCode::kInternal,
                                           "rank 1 left no complete timings"));
}

TEST(RankTimes, ResultsDirIsPrivateAndGoesAway) {
  std::string path;
  {
    const ResultsDir dir;
    path = dir.path();
    const auto perms = std::filesystem::status(path).permissions();
    EXPECT_EQ(perms & (std::filesystem::perms::group_all | std::filesystem::perms::others_all),
              std::filesystem::perms::none);
    std::ofstream(path + "/file") << "x";
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace moe_ep::tools
