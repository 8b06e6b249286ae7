// `moe-ep run` under mpirun: each process is one rank, on one or more hosts. Every rank checks its own
// outputs against the reference, then dispatch and combine are timed (per round: first start to last end on one host,
// the slowest rank across hosts) next to a memcpy of the same bytes.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "api/group_impl.h"
#include "base/env.h"
#include "kernels/kernels.h"
#include "moe-ep/rank_job.h"
#include "moe-ep/run_job.h"
#include "moe_ep/error.h"
#include "moe_ep/mpi.h"
#include "moe_ep/options.h"
#include "transport/mpi/hosts_window.h"
#include "transport/mpi/mpi_runtime.h"

namespace moe_ep::tools {
namespace {

// Hosts of the job: the ranks that share memory (MPI_Comm_split_type; MOE_EP_HOSTS_SPLIT's simulated hosts in tests).
// The hosts transport groups ranks by host name, which finds the same hosts on real machines.
int CountHosts() {
  // The tool's own MPI calls run on this thread between operations, never while one runs.
  MPI_Comm host = transport::SplitByHost(MPI_COMM_WORLD);
  int host_rank = 0, leaders = 0;
  MPI_Comm_rank(host, &host_rank);
  const int leader = host_rank == 0 ? 1 : 0;
  MPI_Allreduce(&leader, &leaders, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Comm_free(&host);
  return leaders;
}

// The job after the join. Its own collectives (the seed, the verdict, the times) have no deadline, so a rank that
// fails here ends the whole job (RunJobOverMpi) rather than leave the others waiting in one.
int RunJoinedJob(const JobOptions& o, Group& group) {
  const int rank = group.rank(), size = group.size();
  const int hosts = CountHosts();
  uint64_t seed = SeedOr(o.seed);
  MPI_Bcast(&seed, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);  // every rank draws the same inputs
  const VerifiedJob job = MakeVerifiedJob(o, seed);
  if (rank == 0) {
    std::printf("moe-ep run: %s\n", verify::Describe(job.spec).c_str());
    std::printf("  transport: hosts (MPI), %d ranks as processes on %d host%s, %s, kernels: %s, seed %llu\n", size,
                hosts, hosts == 1 ? "" : "s", GroupAccess::Comm(group).window().Describe().c_str(),
                kernels::IsaName(kernels::ActiveIsa()), static_cast<unsigned long long>(seed));
    std::fflush(stdout);
  }
  const std::string mismatch = VerifyRank(job, rank, group, !o.private_inputs);
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

  RankJob timed(o, rank, InputsOf(job.inputs, rank), group);
  RankTimes mine = timed.Time([] { MPI_Barrier(MPI_COMM_WORLD); }, false);
  // Rank 0 gets every rank's times, as rank processes of one host hand them over in files.
  std::vector<double> flat;
  for (const auto* ops : {&mine.starts, &mine.seconds}) {
    for (const auto& op : *ops) flat.insert(flat.end(), op.begin(), op.end());
  }
  flat.insert(flat.end(), {static_cast<double>(mine.rows), static_cast<double>(mine.dispatch_readers),
                           static_cast<double>(mine.combine_readers), static_cast<double>(mine.dispatch_copy_readers),
                           static_cast<double>(mine.combine_copy_readers)});
  std::vector<double> all(rank == 0 ? flat.size() * size : 0);
  MPI_Gather(flat.data(), static_cast<int>(flat.size()), MPI_DOUBLE, all.data(), static_cast<int>(flat.size()),
             MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (rank != 0) return 0;
  std::vector<RankTimes> times(size, mine);
  for (int r = 0; r < size; ++r) {
    const double* from = &all[r * flat.size()];
    for (auto* ops : {&times[r].starts, &times[r].seconds}) {
      for (auto& op : *ops) {
        for (double& s : op) s = *from++;
      }
    }
    times[r].rows = static_cast<int64_t>(from[0]);
    times[r].dispatch_readers = static_cast<int>(from[1]);
    times[r].combine_readers = static_cast<int>(from[2]);
    times[r].dispatch_copy_readers = static_cast<int>(from[3]);
    times[r].combine_copy_readers = static_cast<int>(from[4]);
  }
  // On one host the ranks share the steady clock, and the span from the first start to the last end is the time.
  PrintTimings(o, times, /*one_clock=*/hosts == 1);
  return 0;
}

// Whether every rank joined. A join refused over a setting fails every rank alike (the hosts transport agrees on its
// settings first), but one that failed on one host alone (its /dev/shm full) leaves the other hosts' ranks joined,
// and they would wait in the job's collectives for good. One non-blocking all-reduce settles it before any of them;
// every rank takes part, joined or not. It is waited for against the operations' deadline, and at least the time a
// join allows its set-up once its members met (kJoinSetUpAllowance): a rank whose deadline is short must not end the
// job over the others' scheduling.
bool EveryRankJoined(bool joined) {
  struct Vote {
    int mine = 0, all = 0;
  };
  auto vote = std::make_unique<Vote>();
  vote->mine = joined ? 1 : 0;
  MPI_Request request = MPI_REQUEST_NULL;
  {
    const auto lock = transport::mpi::Lock();
    transport::mpi::Check(MPI_Iallreduce(&vote->mine, &vote->all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &request),
                          "MPI_Iallreduce");
  }
  // The default where this rank refused its MOE_EP_TIMEOUT_MS.
  std::chrono::milliseconds wait{env::kDefaultTimeoutMs};
  try {
    wait = std::max<std::chrono::milliseconds>(DefaultTimeout(), transport::kJoinSetUpAllowance);
  } catch (const Error&) {
  }
  transport::mpi::WaitForRequestKeeping(vote, request, std::chrono::steady_clock::now() + wait,
                                        "the vote on whether every rank joined");
  return vote->all == 1;
}

void EndTheJob(const std::string& why) {
  std::fprintf(stderr, "moe-ep run: %s; ending the job\n", why.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
}

}  // namespace

int RunJobOverMpi(const JobOptions& o) {
  // A join's deadline passes on one rank alone (its MOE_EP_TIMEOUT_MS is short, or a rank is late), and the others
  // would wait out theirs: that ends the job. After any other failed join the ranks vote first: where every rank
  // failed (a setting refused) each returns its own error; where some joined, they return too.
  std::optional<Group> joined;
  std::exception_ptr failed;
  try {
    joined.emplace(JoinMpiGroup(MPI_COMM_WORLD, GroupOptions{{}, 0, "moe-ep run"}));  // initialises MPI if need be
  } catch (const TimeoutError& e) {
    EndTheJob(e.what());
    return 1;
  } catch (const std::exception&) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized || transport::mpi::Finalized()) throw;  // no job to vote in
    failed = std::current_exception();
  }
  bool everyone = false;
  try {
    everyone = EveryRankJoined(failed == nullptr);
  } catch (const std::exception& e) {
    std::string why = e.what();
    if (failed) {
      try {
        std::rethrow_exception(failed);
      } catch (const std::exception& own) {
        why = own.what() + std::string("; then ") + why;
      }
    }
    EndTheJob(why);
    return 1;
  }
  if (failed) std::rethrow_exception(failed);
  if (!everyone) {
    std::fprintf(stderr, "moe-ep run: rank %d: error: another rank's join failed\n", joined->rank());
    return 1;
  }
  Group& group = *joined;
  try {
    return RunJoinedJob(o, group);
  } catch (const std::exception& e) {
    // README runs the job with orte_abort_on_non_zero_status 0, so returning would leave the others waiting.
    EndTheJob("rank " + std::to_string(group.rank()) + ": " + e.what());
    return 1;
  }
}

}  // namespace moe_ep::tools
