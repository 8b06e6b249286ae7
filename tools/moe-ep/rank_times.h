// The timings of a job whose ranks may be threads or processes: each rank times its own rounds, the ranks'
// times meet in one place (memory, or files written by rank processes), and the table takes per round the span
// from the first rank's start to the last rank's end (or, clocks apart, the slowest rank) and the median over
// the rounds.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace moe_ep::tools {

/// The middle value (the mean of the two middle ones for an even count); 0 for none.
double Median(std::vector<double> v);

/// One rank's timings for the timed rounds (after the warm-up): when each op started on this rank's
/// steady clock, starts[op][round], and how long it took, seconds[op][round]; how many rows dispatch
/// handed it (the bytes a memcpy of the same size copies); and the data path its rows took.
struct RankTimes {
  std::vector<std::vector<double>> starts, seconds;
  int64_t rows = 0;
  /// How many ranks (itself included) read this rank's rows in place or by copy (pulled them) in its last dispatch /
  /// combine, and how many of those by copy (out of its private memory).
  int dispatch_readers = 0, combine_readers = 0;
  int dispatch_copy_readers = 0, combine_copy_readers = 0;
};

/// One timed operation of a round, and what its caller's previous step would have done right before it
/// (untimed): write the op's inputs anew, so that they are in the writer's cache, not already in the
/// readers' from the last round (a model's layer writes x just before dispatch, and the experts their
/// outputs just before combine). `refresh` may be empty.
struct TimedStep {
  std::function<void()> refresh;
  std::function<void()> run;
};

/// Runs warmup + repeats rounds of `steps`; every step's run starts right after its refresh and then sync()
/// (a barrier of all ranks) return on this rank, and is timed to its end on this rank.
RankTimes TimeRounds(int warmup, int repeats, const std::function<void()>& sync, std::span<const TimedStep> steps);

/// Per op, the median over rounds of the op's time in that round: with `one_clock` (every rank on this
/// host, the steady clock shared), from the first rank's start to the last rank's end, else the slowest
/// rank's own time. A rank's own time misses the time it waited for a core to leave the barrier: with
/// more ranks than cores only the span is the time the op took.
std::vector<double> SlowestRankMedians(std::span<const RankTimes> ranks, bool one_clock = true);

/// Where rank processes leave their times for the process that started them: one file per rank and tag
/// (a tag tells apart systems timed by the same job).
void WriteRankTimes(const std::string& dir, const std::string& tag, int rank, const RankTimes& times);
/// Reads the files of ranks [0, ranks); throws moe_ep::Error naming the first rank whose file is missing or
/// malformed (it did not get as far as writing it).
std::vector<RankTimes> ReadRankTimes(const std::string& dir, const std::string& tag, int ranks);

/// A fresh private directory for such files (under TMPDIR or /tmp), removed with its files on destruction.
class ResultsDir {
 public:
  ResultsDir();
  ~ResultsDir();
  ResultsDir(const ResultsDir&) = delete;
  ResultsDir& operator=(const ResultsDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// The path of this program, to start more copies of it.
std::string SelfExecutable();

}  // namespace moe_ep::tools
