// Fuzzes the moe-ep command-line parser (tools/moe-ep/options.h): bytes -> argv; what it accepts must be safe to run.
//
// Input: words separated by NUL or newline; unless the first is a command ("run", "bench", "launch", "help"), "run" is
// put in front, so most inputs reach the run flags. Every answer is checked: a refusal is one line starting "moe-ep"
// with exit status 2; an acceptance satisfies every rule the job relies on (the ones whose breach crashed the input
// generator: --topk <= --experts, --experts a multiple of the MoE ranks), for a bench sweep in each of its
// configurations, whose lists hold each value once. An accepted job small enough to take milliseconds (<= 4 thread
// ranks, bs <= 4, hidden <= 256, experts <= 64, one timed round) is also run in-process, verified against the
// reference; `launch` is only parsed and `bench` only expanded into its configurations, never started. Nothing here
// calls exit().
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "moe-ep/options.h"
#include "moe-ep/run_job.h"

namespace {

using moe_ep::tools::Command;
using moe_ep::tools::JobOptions;
using moe_ep::tools::ParseResult;

// A broken promise of the parser: report it the way libFuzzer records a crash.
void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "cli_fuzz: %s: %s\n", what, detail.c_str());
  std::abort();
}

std::vector<std::string> Words(const uint8_t* data, size_t size) {
  std::vector<std::string> words;
  if (size == 0) return words;  // no command at all: its own error path
  std::string word;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\0' || data[i] == '\n') {
      words.push_back(word);
      word.clear();
    } else {
      word += static_cast<char>(data[i]);
    }
  }
  words.push_back(word);
  const std::string& first = words.front();
  if (first != "run" && first != "bench" && first != "launch" && first != "help" && first != "--help" &&
      first != "-h") {
    words.insert(words.begin(), "run");
  }
  return words;
}

// The rules a run job needs (tools/verify's generator and the library's native profile).
void CheckAccepted(const JobOptions& o) {
  using namespace moe_ep::tools;
  const bool in_bounds = o.ranks >= 1 && o.ranks <= kMaxRanks && o.bs >= 1 && o.bs <= kMaxBs && o.hidden >= 1 &&
                         o.hidden <= kMaxHidden && o.top_k >= 1 && o.top_k <= kMaxTopK && o.experts >= 1 &&
                         o.experts <= kMaxExperts && o.shared_expert_ranks >= 0 && o.repeats >= 1 &&
                         o.repeats <= kMaxRounds && o.warmup >= 0 && o.warmup <= kMaxRounds;
  if (!in_bounds) Fail("accepted a value out of its bounds", std::to_string(o.ranks));
  if (o.shared_expert_ranks >= o.ranks) Fail("accepted --shared-experts >= --ranks", std::to_string(o.ranks));
  if (o.experts % (o.ranks - o.shared_expert_ranks) != 0) Fail("accepted --experts", std::to_string(o.experts));
  if (o.top_k > o.experts) Fail("accepted --topk > --experts", std::to_string(o.top_k));
}

template <typename T>
void CheckEachOnce(const std::vector<T>& values, const char* list) {
  if (values.empty()) Fail("accepted an empty list", list);
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::count(values.begin(), values.end(), values[i]) != 1) Fail("accepted a repeated value in", list);
  }
}

// A sweep: every list non-empty with each value once, and every configuration within run's rules.
void CheckAcceptedBench(const moe_ep::tools::BenchOptions& b) {
  CheckEachOnce(b.tokens, "--bs");
  CheckEachOnce(b.ranks, "--ranks");
  CheckEachOnce(b.systems, "--transports");
  CheckEachOnce(b.quant, "--quant");
  for (const JobOptions& o : moe_ep::tools::Configurations(b, 1)) CheckAccepted(o);
}

bool SmallEnoughToRun(const JobOptions& o) {
  return o.ranks <= 4 && o.bs <= 4 && o.hidden <= 256 && o.experts <= 64 && o.repeats == 1 && o.warmup <= 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string> args = Words(data, size);
  const ParseResult result = moe_ep::tools::ParseCommandLine(args);
  if (!result.ok()) {
    if (result.exit_code != moe_ep::tools::kBadUsageExitCode) Fail("exit status", std::to_string(result.exit_code));
    if (result.error.rfind("moe-ep", 0) != 0 || result.error.find('\n') != std::string::npos) {
      Fail("message is not one line starting with moe-ep", result.error);
    }
    return 0;
  }
  const auto& line = *result.command_line;
  if (line.command == Command::kLaunch) {
    if (line.launch.ranks < 1 || line.launch.ranks > moe_ep::tools::kMaxLaunchRanks || line.launch.command.empty()) {
      Fail("accepted a bad launch", std::to_string(line.launch.ranks));
    }
    return 0;
  }
  if (line.command == Command::kBench) CheckAcceptedBench(line.bench);
  if (line.command != Command::kRun) return 0;
  CheckAccepted(line.job);
  // The parser bounds a run's memory (a sweep's configurations are bounded by the bench itself, as it goes).
  if (moe_ep::tools::EstimatedJobBytes(line.job) > moe_ep::tools::kMaxJobBytes) {
    Fail("accepted a job over the memory bound", std::to_string(line.job.bs));
  }
  if (SmallEnoughToRun(line.job)) {
    JobOptions job = line.job;
    if (job.seed == 0) job.seed = 1;  // reproducible: the same input runs the same routing
    if (const int status = moe_ep::tools::RunJob(job); status != 0) Fail("the job failed", std::to_string(status));
  }
  return 0;
}
