// One rank of a 2-process MPI job: while rank 0's join of group 'twin' over one communicator waits for rank 1
// (which comes 3 s late), rank 0 joins another group of that name over another communicator from a second
// thread. That join must fail at once with an Error (161002) saying why, instead of mixing its members' meeting
// with the first's, and the first must still join. Every rank prints a line ending in OK when that holds.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/mpi.h"

int main(int argc, char** argv) {
  int provided = 0, rank = 0, size = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 2) {
    std::printf("FAIL: rank %d: run on 2 ranks, not %d\n", rank, size);
    MPI_Finalize();
    return 1;
  }
  MPI_Comm first = MPI_COMM_NULL, second = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &first);
  MPI_Comm_dup(MPI_COMM_WORLD, &second);
  moe_ep::GroupOptions options;
  options.name = "twin";
  std::string verdict = "rank " + std::to_string(rank) + " joined 'twin' once: OK";
  const auto join_first = [&] {
    try {
      moe_ep::JoinMpiGroup(first, options);
    } catch (const moe_ep::Error& e) {
      verdict = "FAIL: rank " + std::to_string(rank) + " could not join the first 'twin': " + e.what();
    }
  };
  if (rank == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    join_first();
  } else {
    std::thread waiting(join_first);
    std::this_thread::sleep_for(std::chrono::seconds(1));  // the first join is under way, waiting for rank 1
    std::string second_verdict;
    try {
      moe_ep::JoinMpiGroup(second, options);
      second_verdict = "FAIL: rank 0 joined a second group named 'twin' while joining the first";
    } catch (const moe_ep::Error& e) {
      const bool told = e.code() == moe_ep::ErrorCode::kInvalidParam &&
                        std::string(e.what()).find("joining another group of that name at once") != std::string::npos;
      second_verdict = told ? "" : std::string("FAIL: rank 0's second join of 'twin' failed otherwise: ") + e.what();
    }
    waiting.join();
    if (!second_verdict.empty()) verdict = second_verdict;
    if (verdict.rfind("FAIL", 0) != 0) verdict = "rank 0 joined 'twin' once, and was refused a second join at once: OK";
  }
  std::printf("%s\n", verdict.c_str());
  std::fflush(stdout);
  MPI_Comm_free(&first);
  MPI_Comm_free(&second);
  MPI_Finalize();
  return verdict.rfind("FAIL", 0) == 0 ? 1 : 0;
}
