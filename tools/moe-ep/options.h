// The moe-ep command line: parses and validates every flag of `run`, `bench` and `launch` without exiting, so the
// command, the tests and the fuzzer share one parser and nothing is generated or started before all of it is checked.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "moe-ep/bench.h"
#include "moe-ep/launch.h"
#include "moe-ep/run_job.h"

namespace moe_ep::tools {

// Upper bounds of `moe-ep run`, printed by --help. They keep a typo from asking for absurd memory or time; the
// library itself (native profile) allows more.
inline constexpr int64_t kMaxRanks = 256;      // --ranks: every rank is a thread of this process
inline constexpr int64_t kMaxBs = 8192;        // --bs
inline constexpr int64_t kMaxHidden = 65536;   // --hidden
inline constexpr int64_t kMaxExperts = 4096;   // --experts
inline constexpr int64_t kMaxTopK = 1024;      // --topk (also <= --experts)
inline constexpr int64_t kMaxRounds = 100000;  // --repeats, --warmup
// The upper estimate of the job's memory (EstimatedJobBytes) must stay below this.
inline constexpr uint64_t kMaxJobBytes = uint64_t{32} << 30;
// `moe-ep launch -n`: processes on this host.
inline constexpr int64_t kMaxLaunchRanks = 512;

/// The exit status of a bad command line (and of `moe-ep` without a command).
inline constexpr int kBadUsageExitCode = 2;

enum class Command { kHelp, kRun, kBench, kBenchRank, kLaunch };

/// A valid command line.
struct CommandLine {
  Command command = Command::kHelp;
  JobOptions job;           // kRun
  BenchOptions bench;       // kBench
  std::string bench_point;  // kBenchRank: what `bench` hands the rank processes it starts
  LaunchOptions launch;     // kLaunch
};

/// The parser's answer: a valid command line, or why not and with which exit status.
struct ParseResult {
  std::optional<CommandLine> command_line;  // set when the arguments are valid
  int exit_code = 0;                        // when invalid: the status the process exits with
  std::string error;  // when invalid: one line (no newline) naming the flag, its value and the rule it breaks
  bool ok() const { return command_line.has_value(); }
};

/// Parses and validates `args`, the words after the program name (argv[1..]). `run` checks every flag alone and
/// in combination, including that each rank's window fits `window_bytes` (nullopt: MOE_EP_WINDOW_MB, as the job's
/// groups will use) and that EstimatedJobBytes <= kMaxJobBytes. Never exits, never throws for any input.
ParseResult ParseCommandLine(std::span<const std::string> args, std::optional<uint64_t> window_bytes = std::nullopt);

/// The first rule between flags that a `bench` configuration breaks (run's, without the window and memory
/// bounds, which the bench handles itself), or "".
std::string BenchConfigurationViolation(const JobOptions& options);

/// The window each rank of the job needs (the HCCL_BUFFSIZE rule), for these (valid) options.
uint64_t WindowBytesNeeded(const JobOptions& options);

/// An upper estimate of the bytes `moe-ep run` touches with these (valid) options: the receive buffers sized for
/// the worst case (A rows per rank) are held about four times over (output, its poisoned copy, the timed buffers),
/// and the rows that actually travel about eight times (inputs, reference, window slots, memcpy baseline), by every
/// rank process with --processes.
uint64_t EstimatedJobBytes(const JobOptions& options);

/// The text `moe-ep help` prints: commands, flags with defaults and bounds, the cross-flag rules.
const std::string& UsageText();

}  // namespace moe_ep::tools
