// A rank of a `moe-ep bench` measurement under mpirun: moe_ep over the hosts transport and the MPI_Alltoallv
// dispatcher on the same inputs, each op timed after two MPI_Barriers.
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "alltoallv_dispatcher.h"
#include "moe-ep/bench.h"
#include "moe_ep/error.h"
#include "moe_ep/mpi.h"

namespace moe_ep::tools {
namespace {

// Two barriers, as thread and process ranks are lined up (RankJob::LineUp): a rank that slept in the first (the
// others still rewriting their inputs) leaves it late, and the second lets every rank go within a poll of each other.
// After one the span of an op would include that lateness, the baseline's as much as moe_ep's.
void SyncAll() {
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
}

// The baseline's rounds: its dispatch and combine, the same memcpy baselines, and an MPI_Barrier round trip.
RankTimes TimeAlltoallv(const JobOptions& job, const BenchInputs& in) {
  moe_ep_bench::AlltoallvDispatcher alltoallv(MPI_COMM_WORLD, static_cast<int>(job.experts), job.hidden);
  const int top_k = static_cast<int>(job.top_k);
  alltoallv.Dispatch(in.x, in.expert_ids, top_k);
  const size_t row_bytes = 2 * job.hidden;
  const size_t rows = alltoallv.received_rows();
  const std::vector<uint16_t> expert_out_rows(alltoallv.expand_x().begin(), alltoallv.expand_x().end());
  std::vector<uint16_t> x(in.x.begin(), in.x.end()), expert_out = expert_out_rows;
  std::vector<uint16_t> combined(job.bs * job.hidden);
  std::vector<uint8_t> copy_to(std::max<size_t>(rows * row_bytes, 1));
  const auto copy_rows = [&](const uint16_t* from) {
    if (rows > 0) std::memcpy(copy_to.data(), from, rows * row_bytes);  // a rank may receive nothing (no buffer)
  };
  // Inputs rewritten before each operation, as for moe_ep (RankJob::Time).
  const TimedStep steps[] = {
      {[&] { std::copy(in.x.begin(), in.x.end(), x.begin()); }, [&] { alltoallv.Dispatch(x, in.expert_ids, top_k); }},
      {[&] { std::copy(expert_out_rows.begin(), expert_out_rows.end(), expert_out.begin()); },
       [&] { alltoallv.Combine(expert_out, in.expert_scales, combined); }},
      {{}, [&] { copy_rows(alltoallv.expand_x().data()); }},
      {{}, [&] { copy_rows(expert_out.data()); }},
      {{}, [&] { MPI_Barrier(MPI_COMM_WORLD); }},
  };
  RankTimes times = TimeRounds(job.warmup, job.repeats, SyncAll, steps);
  times.rows = static_cast<int64_t>(rows);
  return times;
}

}  // namespace

int RunBenchMpiRank(const JobOptions& job, bool hosts, bool alltoallv, const std::string& dir) {
  // This process owns MPI (the library's copy of its MPI state is not the one linked into moe-ep): thread-multiple,
  // as the library needs, and finalized here once the group is gone.
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  try {
    if (provided < MPI_THREAD_MULTIPLE) {
      throw Error(ErrorCode::kInternal, "moe-ep bench-rank: this MPI does not provide MPI_THREAD_MULTIPLE");
    }
    const BenchInputs inputs = DrawBenchInputs(job, rank);
    if (hosts) {
      Group group = JoinMpiGroup(MPI_COMM_WORLD, BenchGroupOptions(job));
      RankJob timed(job, rank, inputs.View(), group);
      WriteRankTimes(dir, "hosts", rank, timed.Time(SyncAll, true));
    }
    if (alltoallv) WriteRankTimes(dir, "alltoallv", rank, TimeAlltoallv(job, inputs));
  } catch (const std::exception& e) {
    // The other ranks may wait in a collective without a deadline: end the whole job.
    std::fprintf(stderr, "moe-ep bench-rank: rank %d: %s\n", rank, e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return 0;
}

}  // namespace moe_ep::tools
