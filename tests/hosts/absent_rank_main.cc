// One rank of an MPI job in which rank VICTIM (env) never joins the group, or joins late: the others' join must fail
// with a deadline error naming it within their deadline (MOE_EP_TIMEOUT_MS), not wait in MPI's collectives for good;
// a late member that comes within the deadline joins with the others. The group is the whole world
// (JoinMpiGroup over MPI_COMM_WORLD, or JoinProcessGroup: "mpi", "process") or, through JoinProcessGroup, the
// sub-group of world ranks 0, 2, 1 in that order ("subgroup": VICTIM never comes, and the others' error names its
// group rank and world rank; "subgroup-late": it comes after a third of the deadline), whose join needs
// MPI_Comm_create_group, which has no deadline of its own. Every rank prints a line ending in OK when that holds.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/mpi.h"

int main(int argc, char** argv) {
  const std::string mode = argc == 2 ? argv[1] : "";
  if (mode != "mpi" && mode != "process" && mode != "subgroup" && mode != "subgroup-late") {
    std::fprintf(stderr, "usage: VICTIM=R MOE_EP_TIMEOUT_MS=T %s mpi|process|subgroup|subgroup-late (under mpirun)\n",
                 argv[0]);
    return 2;
  }
  int provided = 0, rank = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int victim = std::atoi(std::getenv("VICTIM"));
  const auto timeout = std::chrono::milliseconds(std::atoi(std::getenv("MOE_EP_TIMEOUT_MS")));
  const bool subgroup = mode.starts_with("subgroup");
  const std::vector<int> members = {0, 2, 1};  // group rank != world rank
  const auto join = [&] {
    if (mode == "mpi") return moe_ep::JoinMpiGroup(MPI_COMM_WORLD);
    if (subgroup) return moe_ep::JoinProcessGroup(moe_ep::ReadLaunchEnvironment(), members);
    return moe_ep::JoinProcessGroup();
  };
  int status = 0;
  if (subgroup && rank >= static_cast<int>(members.size())) {
    std::printf("rank %d is in no group: OK\n", rank);
  } else if (mode == "subgroup-late") {
    if (rank == victim) std::this_thread::sleep_for(timeout / 3);
    try {
      const moe_ep::Group group = join();
      std::printf("rank %d joined the sub-group of %d ranks as rank %d: OK\n", rank, group.size(), group.rank());
    } catch (const moe_ep::Error& e) {
      std::printf("FAIL: rank %d could not join with a member that came late: %s\n", rank, e.what());
      status = 1;
    }
  } else if (rank == victim) {
    std::this_thread::sleep_for(timeout + std::chrono::seconds(3));  // until the others have given up
    std::printf("rank %d stayed away from the join: OK\n", rank);
  } else {
    const auto start = std::chrono::steady_clock::now();
    try {
      join();
      std::printf("FAIL: rank %d joined a group without rank %d\n", rank, victim);
      status = 1;
    } catch (const moe_ep::TimeoutError& e) {
      const auto waited = std::chrono::steady_clock::now() - start;
      const auto ms = static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(waited).count());
      // The sub-group's members know who did not come (the whole world's join cannot say: MPI's collectives don't).
      const int victim_in_group = static_cast<int>(std::find(members.begin(), members.end(), victim) - members.begin());
      const bool named =
          !subgroup || (e.missing_ranks() == std::vector<int>{victim_in_group} &&
                        std::string(e.what()).find("(world rank " + std::to_string(victim) + ")") != std::string::npos);
      if (waited > timeout + std::chrono::seconds(2)) {
        std::printf("FAIL: rank %d's join failed only after %lld ms: %s\n", rank, ms, e.what());
        status = 1;
      } else if (!named) {
        std::printf("FAIL: rank %d's join failed without naming rank %d alone: %s\n", rank, victim, e.what());
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
