// `moe-ep run`: dispatch + combine across ranks (threads, or MPI processes) on a realistic configuration, verified
// against the reference, timed against a memcpy of the same bytes in the same run.
#pragma once

#include <cstdint>

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
  uint64_t seed = 0;  // 0: random (printed)
};

/// Runs the job on `options.ranks` threads; returns the process exit code (0 = verified).
int RunJob(const JobOptions& options);

/// Runs the job with this process as one rank of an MPI job (started by mpirun; options.ranks is the
/// number of processes); returns the exit code, the same on every rank. Built when MPI is found.
int RunJobOverMpi(const JobOptions& options);

}  // namespace moe_ep::tools
