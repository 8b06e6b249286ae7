// `moe-ep bench`: dispatch and combine timed over sweeps of tokens per rank, rank counts, transports and
// quantization, next to a memcpy of the same bytes and a barrier of the same transport measured in the same
// run, and the same configurations through an MPI_Alltoallv dispatcher (bench/alltoallv_dispatcher.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moe-ep/rank_job.h"
#include "moe-ep/run_job.h"

namespace moe_ep::tools {

/// Who moves the rows in a measurement.
enum class BenchSystem {
  kThreads,    // moe_ep, ranks as threads of this process
  kProcesses,  // moe_ep, ranks as processes of this host (shared memory; x and expert outputs in the shared heap, or
               // with --memory private in private memory)
  kHosts,      // moe_ep over the hosts transport, ranks as MPI processes started by mpirun on this host
  kAlltoallv,  // the MPI_Alltoallv dispatcher (permute, all-to-all, sort), in the same mpirun job as kHosts
};
const char* SystemName(BenchSystem system);

struct BenchOptions {
  std::vector<int64_t> tokens = {1, 8, 64, 128, 512, 2048};
  std::vector<int> ranks = {8};
  std::vector<BenchSystem> systems = {BenchSystem::kThreads, BenchSystem::kProcesses, BenchSystem::kAlltoallv};
  std::vector<bool> quant = {false};  // dispatch quantMode 0 and/or 2
  int64_t hidden = 7168;
  int64_t top_k = 8;
  int64_t experts = 64;
  int repeats = 9;
  int warmup = 2;
  uint64_t seed = 0;            // 0: random (printed)
  bool private_inputs = false;  // --memory private: x and the expert outputs outside the shared heap
  std::string json_path;        // empty: no JSON
};

/// The sweep's configurations, in the order they run: by rank count, then quantization, then tokens per rank.
std::vector<JobOptions> Configurations(const BenchOptions& options, uint64_t seed);

/// Runs every configuration of the sweep on every system; prints the table as it goes and writes the JSON.
/// Returns 0, or 1 when a measurement failed (the others still ran) or none was made (every one skipped).
int RunBench(const BenchOptions& options);

/// The group a measurement's ranks make: its window sized for the configuration.
GroupOptions BenchGroupOptions(const JobOptions& job);

/// One rank's inputs in a measurement, drawn from the job's seed, its Bs and the rank: bf16 tokens, K distinct
/// experts per token uniformly at random, weights in [0, 1).
struct BenchInputs {
  std::vector<uint16_t> x;
  std::vector<int32_t> expert_ids;
  std::vector<float> expert_scales;
  RankInputs View() const { return {x, expert_ids, expert_scales, {}}; }
};
BenchInputs DrawBenchInputs(const JobOptions& job, int rank);

/// One rank process of a bench measurement (the hidden `moe-ep bench-rank POINT` that RunBench starts):
/// joins its group, times the rounds and leaves its times in the point's directory. Returns the exit code.
int RunBenchRank(const std::string& point);
/// The same under mpirun (bench_mpi.cc; without MPI it throws): times moe_ep over the hosts transport and/or
/// the MPI_Alltoallv dispatcher, leaving the times under the tags "hosts" and "alltoallv" in `dir`.
int RunBenchMpiRank(const JobOptions& job, bool hosts, bool alltoallv, const std::string& dir);

}  // namespace moe_ep::tools
