// One rank of an MPI job: while rank 0's join of group 'twin' waits for rank 1 (which comes 3 s late), rank 0 joins
// a second group from another thread, which must fail at once with an Error (161002) saying why, and the first must
// still join. Mode `name`: the second group is another 'twin', over another communicator (JoinMpiGroup; two
// meetings of one name would mix their words). Mode `tag`: both are sub-groups {0, 1} (JoinProcessGroup), the
// second named 'twin7074', whose MPI_Comm_create_group tag is twin's (a pair found by search over the join's group
// strings, "4.twin" and "8.twin7074": calls of that function at once must have different tags; the low 15 bits of
// FNV-1a depend on low bits only, so the two still collide with any suffix the join adds to both). Every rank prints
// a line ending in OK when that holds.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/mpi.h"

int main(int argc, char** argv) {
  const std::string mode = argc == 2 ? argv[1] : "";
  if (mode != "name" && mode != "tag") {
    std::fprintf(stderr, "usage: %s name|tag (under mpirun: 2 ranks for name, 3 for tag)\n", argv[0]);
    return 2;
  }
  int provided = 0, rank = 0, size = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int want_size = mode == "name" ? 2 : 3;  // a sub-group leaves a rank out
  if (size != want_size) {
    std::printf("FAIL: rank %d: run on %d ranks, not %d\n", rank, want_size, size);
    MPI_Finalize();
    return 1;
  }
  MPI_Comm first = MPI_COMM_NULL, second = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &first);
  MPI_Comm_dup(MPI_COMM_WORLD, &second);
  const std::vector<int> pair{0, 1};
  const auto join = [&](MPI_Comm comm, const std::string& name) {
    moe_ep::GroupOptions options;
    options.name = name;
    if (mode == "name") {
      moe_ep::JoinMpiGroup(comm, options);
    } else {
      moe_ep::JoinProcessGroup(moe_ep::ReadLaunchEnvironment(), pair, options);
    }
  };
  const std::string second_name = mode == "name" ? "twin" : "twin7074";
  const std::string why =
      mode == "name" ? "joining another group of that name at once" : "both names give MPI_Comm_create_group the tag";
  std::string verdict = "rank " + std::to_string(rank) + " joined 'twin' once: OK";
  const auto join_first = [&] {
    try {
      join(first, "twin");
    } catch (const moe_ep::Error& e) {
      verdict = "FAIL: rank " + std::to_string(rank) + " could not join the first 'twin': " + e.what();
    }
  };
  if (rank == 2) {
    verdict = "rank 2 is in no group: OK";
  } else if (rank == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    join_first();
  } else {
    std::thread waiting(join_first);
    std::this_thread::sleep_for(std::chrono::seconds(1));  // the first join is under way, waiting for rank 1
    std::string second_verdict;
    try {
      join(second, second_name);
      second_verdict = "FAIL: rank 0 joined '" + second_name + "' while joining 'twin'";
    } catch (const moe_ep::Error& e) {
      const bool told =
          e.code() == moe_ep::ErrorCode::kInvalidParam && std::string(e.what()).find(why) != std::string::npos;
      second_verdict = told ? "" : "FAIL: rank 0's join of '" + second_name + "' failed otherwise: " + e.what();
    }
    waiting.join();
    if (!second_verdict.empty()) verdict = second_verdict;
    if (verdict.rfind("FAIL", 0) != 0) {
      verdict = "rank 0 joined 'twin' once, and was refused '" + second_name + "' at once (" + why + "): OK";
    }
  }
  std::printf("%s\n", verdict.c_str());
  std::fflush(stdout);
  MPI_Comm_free(&first);
  MPI_Comm_free(&second);
  MPI_Finalize();
  return verdict.rfind("FAIL", 0) == 0 ? 1 : 0;
}
