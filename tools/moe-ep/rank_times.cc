// Rank timings: the timed rounds, the slowest-rank medians, and the files rank processes hand them over in.
#include "moe-ep/rank_times.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "moe_ep/error.h"

namespace moe_ep::tools {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  if (n == 0) return 0.0;
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

RankTimes TimeRounds(int warmup, int repeats, const std::function<void()>& sync, std::span<const TimedStep> steps) {
  using Clock = std::chrono::steady_clock;
  RankTimes times;
  times.seconds.assign(steps.size(), {});
  times.starts.assign(steps.size(), {});
  for (int round = 0; round < warmup + repeats; ++round) {
    for (size_t op = 0; op < steps.size(); ++op) {
      if (steps[op].refresh) steps[op].refresh();
      sync();
      const auto start = Clock::now();
      steps[op].run();
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      if (round < warmup) continue;
      times.seconds[op].push_back(seconds);
      times.starts[op].push_back(std::chrono::duration<double>(start.time_since_epoch()).count());
    }
  }
  return times;
}

std::vector<double> SlowestRankMedians(std::span<const RankTimes> ranks, bool one_clock) {
  std::vector<double> medians;
  if (ranks.empty()) return medians;
  for (size_t op = 0; op < ranks[0].seconds.size(); ++op) {
    std::vector<double> per_round;
    for (size_t round = 0; round < ranks[0].seconds[op].size(); ++round) {
      double first_start = 1e300, last_end = -1e300, slowest = 0;
      for (const RankTimes& rank : ranks) {
        const double start = rank.starts.at(op).at(round), seconds = rank.seconds.at(op).at(round);
        first_start = std::min(first_start, start);
        last_end = std::max(last_end, start + seconds);
        slowest = std::max(slowest, seconds);
      }
      per_round.push_back(one_clock ? last_end - first_start : slowest);
    }
    medians.push_back(Median(std::move(per_round)));
  }
  return medians;
}

namespace {

std::string FileOf(const std::string& dir, const std::string& tag, int rank) {
  return dir + "/" + tag + ".rank" + std::to_string(rank);
}

}  // namespace

// Text: "rows dispatch_readers combine_readers dispatch_copy_readers combine_copy_readers OPS ROUNDS", then per op a
// line of ROUNDS start times and one of ROUNDS durations. Written to a temporary name and renamed, so a reader never
// sees half a file.
void WriteRankTimes(const std::string& dir, const std::string& tag, int rank, const RankTimes& times) {
  const std::string path = FileOf(dir, tag, rank);
  {
    std::ofstream out(path + ".partial");
    out.precision(17);
    const size_t rounds = times.seconds.empty() ? 0 : times.seconds[0].size();
    out << times.rows << ' ' << times.dispatch_readers << ' ' << times.combine_readers << ' '
        << times.dispatch_copy_readers << ' ' << times.combine_copy_readers << ' ' << times.seconds.size() << ' '
        << rounds << '\n';
    for (size_t op = 0; op < times.seconds.size(); ++op) {
      for (const auto* line : {&times.starts[op], &times.seconds[op]}) {
        for (double s : *line) out << s << ' ';
        out << '\n';
      }
    }
    out.close();  // a write that fails only as the file is flushed (a full disk) counts too
    if (!out) throw Error(ErrorCode::kInternal, "cannot write the rank times file " + path + ".partial");
  }
  std::filesystem::rename(path + ".partial", path);
}

std::vector<RankTimes> ReadRankTimes(const std::string& dir, const std::string& tag, int ranks) {
  std::vector<RankTimes> all(ranks);
  for (int r = 0; r < ranks; ++r) {
    std::ifstream in(FileOf(dir, tag, r));
    size_t ops = 0, rounds = 0;
    RankTimes& times = all[r];
    bool ok = static_cast<bool>(in >> times.rows >> times.dispatch_readers >> times.combine_readers >>
                                times.dispatch_copy_readers >> times.combine_copy_readers >> ops >> rounds) &&
              ops > 0 && ops <= 64 && rounds <= 1000000;
    times.seconds.assign(ok ? ops : 0, std::vector<double>(rounds));
    times.starts = times.seconds;
    for (size_t op = 0; op < times.seconds.size(); ++op) {
      for (auto* line : {&times.starts[op], &times.seconds[op]}) {
        for (double& s : *line) ok = ok && static_cast<bool>(in >> s);
      }
    }
    if (!ok || (r > 0 && (ops != all[0].seconds.size() || rounds != all[0].seconds[0].size()))) {
      throw Error(ErrorCode::kInternal, "rank " + std::to_string(r) + " left no complete timings (" +
                                            FileOf(dir, tag, r) + "): it failed before the end, see its output");
    }
  }
  return all;
}

ResultsDir::ResultsDir() {
  const char* base = getenv("TMPDIR");  // NOLINT(concurrency-mt-unsafe): read before any thread starts
  std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/moe-ep.XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    throw Error(ErrorCode::kInternal,
                "cannot make a directory for the ranks' timings from " + pattern + ": " + std::strerror(errno));
  }
  path_ = pattern;
}

ResultsDir::~ResultsDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string SelfExecutable() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

}  // namespace moe_ep::tools
