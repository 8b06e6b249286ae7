// `moe-ep run` under mpirun: each process is one rank, on one or more hosts. Every rank checks its own
// outputs against the reference, then dispatch and combine are timed (slowest rank per round) next to
// a memcpy of the same bytes.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "base/env.h"
#include "kernels/kernels.h"
#include "moe-ep/rank_job.h"
#include "moe-ep/run_job.h"
#include "moe_ep/mpi.h"
#include "transport/mpi/hosts_window.h"
#include "transport/mpi/mpi_runtime.h"

namespace moe_ep::tools {
namespace {

using Clock = std::chrono::steady_clock;

// Hosts of the job, grouped as the hosts transport groups them.
int CountHosts() {
  MPI_Comm host = MPI_COMM_NULL;
  {
    const auto lock = transport::mpi::Lock();
    host = transport::SplitByHost(MPI_COMM_WORLD);
  }
  int host_rank = 0, leaders = 0;
  MPI_Comm_rank(host, &host_rank);
  const int leader = host_rank == 0 ? 1 : 0;
  MPI_Allreduce(&leader, &leaders, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Comm_free(&host);
  return leaders;
}

// One phase of a round on every rank at once: the barrier lines the ranks up, the time is this rank's.
template <typename Phase>
double Timed(Phase&& phase) {
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = Clock::now();
  phase();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int RunJobOverMpi(const JobOptions& o) {
  Group group = JoinMpiGroup(MPI_COMM_WORLD, GroupOptions{{}, 0, "moe-ep run"});  // initialises MPI if need be
  const int rank = group.rank(), size = group.size();
  const int hosts = CountHosts();
  uint64_t seed = o.seed ? o.seed : (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  MPI_Bcast(&seed, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);  // every rank draws the same inputs
  const verify::ScenarioSpec spec = SpecOf(o);
  if (rank == 0) {
    std::printf("moe-ep run: %s\n", verify::Describe(spec).c_str());
    std::printf(
        "  transport: hosts (MPI), %d ranks as processes on %d host%s, between hosts %s, kernels: %s, seed %llu\n",
        size, hosts, hosts == 1 ? "" : "s",
        env::HostsRelay() ? "two-level (through one rank per host)" : "flat (MOE_EP_HOSTS_RELAY=0)",
        kernels::IsaName(kernels::ActiveIsa()), static_cast<unsigned long long>(seed));
    std::fflush(stdout);
  }

  std::mt19937_64 rng(seed);
  verify::ScenarioInputs inputs = verify::MakeInputs(spec, rng);
  const auto expected = moe_ref::Dispatch(spec.config, inputs.dispatch);
  verify::FillExpertOutputs(spec, expected, inputs);
  const auto expected_combine = moe_ref::Combine(spec.config, inputs.dispatch, inputs.combine);
  const auto result = verify::RunScenarioRank(spec, inputs, rank, group, nullptr, nullptr);
  const std::string mismatch = verify::CompareScenarioRank(spec, rank, expected[rank], expected_combine[rank], result);
  if (mismatch.empty()) {
    std::printf("  rank %d: dispatch outputs and combine results equal to the reference\n", rank);
  } else {
    std::printf("  rank %d: VERIFY FAILED: %s\n", rank, mismatch.c_str());
  }
  std::fflush(stdout);
  int failed = mismatch.empty() ? 0 : 1;
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (failed) return 1;
  if (rank == 0) std::printf("  verified: bit-identical to the reference on every rank\n");

  RankJob job(o, spec, inputs, rank, expected[rank].rows, group);
  const int rounds = o.warmup + o.repeats;
  std::vector<double> seconds(4 * static_cast<size_t>(rounds));  // per round: dispatch, combine, 2 memcpy
  for (int i = 0; i < rounds; ++i) {
    seconds[4 * i] = Timed([&] { job.Dispatch(); });
    seconds[4 * i + 1] = Timed([&] { job.Combine(); });
    seconds[4 * i + 2] = Timed([&] { job.CopyDispatchBytes(); });
    seconds[4 * i + 3] = Timed([&] { job.CopyCombineBytes(); });
  }
  MPI_Allreduce(MPI_IN_PLACE, seconds.data(), static_cast<int>(seconds.size()), MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  if (rank != 0) return 0;
  std::vector<double> phase[4];
  for (int i = o.warmup; i < rounds; ++i) {
    for (int p = 0; p < 4; ++p) phase[p].push_back(seconds[4 * i + p]);
  }
  uint64_t dispatch_bytes = 0, combine_bytes = 0;
  for (int r = 0; r < size; ++r) {
    dispatch_bytes += expected[r].rows * DispatchRowBytes(o);
    combine_bytes += expected[r].rows * 2 * spec.config.hidden;
  }
  std::printf(
      "timings (%d rounds after %d warm-up; slowest rank per round; bytes = rows received x row bytes, "
      "all ranks):\n",
      o.repeats, o.warmup);
  PrintRow("dispatch", Median(phase[0]), dispatch_bytes, Median(phase[2]));
  PrintRow("combine", Median(phase[1]), combine_bytes, Median(phase[3]));
  return 0;
}

}  // namespace moe_ep::tools
