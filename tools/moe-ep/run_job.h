// `moe-ep run`: dispatch + combine across ranks (threads, processes of this host, or MPI processes) on a realistic
// configuration, verified against the reference, timed against a memcpy of the same bytes in the same run.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moe_ep::tools {

struct JobOptions {
  int ranks = 8;
  int64_t bs = 128;
  int64_t hidden = 7168;
  int64_t top_k = 8;
  int64_t experts = 64;
  int64_t shared_expert_ranks = 0;  // with --shared-experts: 1 shared expert on this many ranks
  bool fp16 = false;
  bool quant_int8 = false;       // dispatch quantMode 2
  bool comm_quant_int8 = false;  // combine commQuantMode 2
  int repeats = 20;
  int warmup = 3;
  uint64_t seed = 0;            // 0: random (printed)
  bool processes = false;       // ranks as processes of this host (over shared memory) rather than threads
  bool private_inputs = false;  // x and the expert outputs in private memory (as torch tensors are), not the heap
};

/// Runs the job on `options.ranks` threads; returns the process exit code (0 = verified).
int RunJob(const JobOptions& options);

/// Runs the job on `options.ranks` processes of this program started through `moe-ep launch`'s launcher, each
/// one rank (RunJobAsProcessRank); `args` are the run flags to hand them. Prints their timings; returns the
/// exit code (the first failing rank's status, else 0).
int RunJobOverProcesses(const JobOptions& options, std::vector<std::string> args);
/// Set in a rank process started by RunJobOverProcesses: where it leaves its timings.
std::optional<std::string> ProcessRankResultsDir();
/// One rank process of RunJobOverProcesses: joins the process group, verifies its outputs, writes its timings
/// to `results_dir`; returns the exit code.
int RunJobAsProcessRank(const JobOptions& options, const std::string& results_dir);

/// Runs the job with this process as one rank of an MPI job (started by mpirun; options.ranks is the
/// number of processes); returns the exit code, the same on every rank. Built when MPI is found.
int RunJobOverMpi(const JobOptions& options);

}  // namespace moe_ep::tools
