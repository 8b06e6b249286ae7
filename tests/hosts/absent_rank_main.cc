// One rank of an MPI job in which rank VICTIM (env) never joins the group, or joins late: the others' join must fail
// with a deadline error naming it within their deadline (MOE_EP_TIMEOUT_MS), not wait in MPI's collectives for good;
// a member that comes late joins with the others. The group is the whole world (JoinMpiGroup over MPI_COMM_WORLD,
// or JoinProcessGroup: "mpi", "process") or, through JoinProcessGroup, the sub-group of world ranks 0, 2, 1 in that
// order ("subgroup", whose group ranks differ from the world's), whose join needs MPI_Comm_create_group, which has
// no deadline of its own. MODE alone: VICTIM never comes. MODE-late: it comes after a third of the deadline, and
// every member joins at once. MODE-retry: it comes after one and a half deadlines; the others' first join fails
// naming it, and their second joins it, which no collective of the failed one may disturb. Every rank prints a line
// ending in OK when that holds, and the group of a late member passes a barrier.
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
#include "moe_ep/ops.h"

namespace {

using std::chrono::milliseconds;

long long Ms(std::chrono::steady_clock::duration d) {
  return static_cast<long long>(std::chrono::duration_cast<milliseconds>(d).count());
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc == 2 ? argv[1] : "";
  const std::string kind = mode.substr(0, mode.find('-'));
  const std::string when = mode.find('-') == std::string::npos ? "never" : mode.substr(mode.find('-') + 1);
  if ((kind != "mpi" && kind != "process" && kind != "subgroup") ||
      (when != "never" && when != "late" && when != "retry")) {
    std::fprintf(stderr, "usage: VICTIM=R MOE_EP_TIMEOUT_MS=T %s {mpi|process|subgroup}[-late|-retry] (under mpirun)\n",
                 argv[0]);
    return 2;
  }
  int provided = 0, rank = 0, world_size = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  const int victim = std::atoi(std::getenv("VICTIM"));
  const auto timeout = milliseconds(std::atoi(std::getenv("MOE_EP_TIMEOUT_MS")));
  std::vector<int> members = {0, 2, 1};  // group rank != world rank
  if (kind != "subgroup") {
    members.resize(world_size);
    for (int r = 0; r < world_size; ++r) members[r] = r;
  }
  const int victim_in_group = static_cast<int>(std::find(members.begin(), members.end(), victim) - members.begin());
  const auto join = [&] {
    if (kind == "mpi") return moe_ep::JoinMpiGroup(MPI_COMM_WORLD);
    if (kind == "subgroup") return moe_ep::JoinProcessGroup(moe_ep::ReadLaunchEnvironment(), members);
    return moe_ep::JoinProcessGroup();
  };
  // A join that must fail for want of the victim: within the deadline, naming it alone (group and world rank).
  const auto join_without_victim = [&]() -> std::string {
    const auto start = std::chrono::steady_clock::now();
    try {
      join();
      return "FAIL: rank " + std::to_string(rank) + " joined a group without rank " + std::to_string(victim);
    } catch (const moe_ep::TimeoutError& e) {
      const auto waited = std::chrono::steady_clock::now() - start;
      const bool named = e.missing_ranks() == std::vector<int>{victim_in_group} &&
                         std::string(e.what()).find("(world rank " + std::to_string(victim) + ")") != std::string::npos;
      if (waited > timeout + std::chrono::seconds(2)) {
        return "FAIL: rank " + std::to_string(rank) + "'s join failed only after " + std::to_string(Ms(waited)) +
               " ms: " + e.what();
      }
      if (!named) {
        return "FAIL: rank " + std::to_string(rank) + "'s join failed without naming rank " + std::to_string(victim) +
               " alone: " + e.what();
      }
      return "rank " + std::to_string(rank) + "'s join failed after " + std::to_string(Ms(waited)) + " ms (" +
             e.what() + ")";
    }
  };
  // A join that must succeed, and its group work.
  const auto join_with_victim = [&](const std::string& how) -> std::string {
    try {
      moe_ep::Group group = join();
      moe_ep::Barrier(group);
      return "rank " + std::to_string(rank) + " joined the group of " + std::to_string(group.size()) +
             " ranks as rank " + std::to_string(group.rank()) + " " + how + ", and passed a barrier: OK";
    } catch (const moe_ep::Error& e) {
      return "FAIL: rank " + std::to_string(rank) + " could not join " + how + ": " + e.what();
    }
  };
  std::string verdict;
  if (std::find(members.begin(), members.end(), rank) == members.end()) {
    verdict = "rank " + std::to_string(rank) + " is in no group: OK";
  } else if (when == "never") {
    if (rank == victim) {
      std::this_thread::sleep_for(timeout + std::chrono::seconds(3));  // until the others have given up
      verdict = "rank " + std::to_string(rank) + " stayed away from the join: OK";
    } else {
      verdict = join_without_victim();
      if (verdict.rfind("FAIL", 0) != 0) verdict += ": OK";
    }
  } else if (rank == victim) {
    std::this_thread::sleep_for(when == "late" ? timeout / 3 : timeout * 3 / 2);
    verdict = join_with_victim("after coming late");
  } else if (when == "late") {
    verdict = join_with_victim("with a member that came late");
  } else {
    verdict = join_without_victim();
    if (verdict.rfind("FAIL", 0) != 0) verdict = join_with_victim("on its second try");
  }
  std::printf("%s\n", verdict.c_str());
  std::fflush(stdout);
  MPI_Finalize();
  return verdict.rfind("FAIL", 0) == 0 ? 1 : 0;
}
