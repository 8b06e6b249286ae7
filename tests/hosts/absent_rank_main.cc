// One rank of an MPI job in which rank VICTIM (env) never joins the group: the others' join (JoinMpiGroup over
// MPI_COMM_WORLD, or JoinProcessGroup, as `join` says) must fail with a deadline error within their deadline
// (MOE_EP_TIMEOUT_MS), not wait in MPI's collectives for good. Every rank prints a line ending in OK when that holds.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/mpi.h"

int main(int argc, char** argv) {
  if (argc != 2 || (std::string(argv[1]) != "mpi" && std::string(argv[1]) != "process")) {
    std::fprintf(stderr, "usage: VICTIM=R MOE_EP_TIMEOUT_MS=T %s mpi|process (under mpirun)\n", argv[0]);
    return 2;
  }
  int provided = 0, rank = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int victim = std::atoi(std::getenv("VICTIM"));
  const auto timeout = std::chrono::milliseconds(std::atoi(std::getenv("MOE_EP_TIMEOUT_MS")));
  int status = 0;
  if (rank == victim) {
    std::this_thread::sleep_for(timeout + std::chrono::seconds(3));  // until the others have given up
    std::printf("rank %d stayed away from the join: OK\n", rank);
  } else {
    const auto start = std::chrono::steady_clock::now();
    try {
      if (std::string(argv[1]) == "mpi") {
        moe_ep::JoinMpiGroup(MPI_COMM_WORLD);
      } else {
        moe_ep::JoinProcessGroup();
      }
      std::printf("FAIL: rank %d joined a group without rank %d\n", rank, victim);
      status = 1;
    } catch (const moe_ep::TimeoutError& e) {
      const auto waited = std::chrono::steady_clock::now() - start;
      const auto ms = static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(waited).count());
      if (waited > timeout + std::chrono::seconds(2)) {
        std::printf("FAIL: rank %d's join failed only after %lld ms: %s\n", rank, ms, e.what());
        status = 1;
      } else {
        std::printf("rank %d's join failed after %lld ms (%s): OK\n", rank, ms, e.what());
      }
    }
  }
  std::fflush(stdout);
  MPI_Finalize();
  return status;
}
