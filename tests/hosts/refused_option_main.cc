// One rank of an MPI job in which rank VICTIM (env) asks for a group with GroupOptions out of range (threads -1):
// every rank's JoinMpiGroup fails at once, the victim's naming the field and its value, the others' naming the rank
// that refused, instead of the victim leaving the others in the join until their deadline. Every rank prints a line
// ending in OK when that holds.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/mpi.h"

int main(int argc, char** argv) {
  int provided = 0, rank = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int victim = std::atoi(std::getenv("VICTIM"));
  moe_ep::GroupOptions options;
  if (rank == victim) options.threads = -1;
  const std::string expected = rank == victim ? "GroupOptions::threads = -1: must be in [0, 1024]"
                                              : "another rank refused its GroupOptions (rank " + std::to_string(victim);
  int status = 1;
  const auto start = std::chrono::steady_clock::now();
  try {
    moe_ep::JoinMpiGroup(MPI_COMM_WORLD, options);
    std::printf("FAIL: rank %d joined a group one of whose ranks refused its options\n", rank);
  } catch (const moe_ep::Error& e) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    const std::string message = e.what();
    if (e.code() != moe_ep::ErrorCode::kInvalidParam || message.find(expected) == std::string::npos) {
      std::printf("FAIL: rank %d expected an InvalidParam error with '%s', got %d: %s\n", rank, expected.c_str(),
                  static_cast<int>(e.code()), message.c_str());
    } else if (ms.count() > 10000) {
      std::printf("FAIL: rank %d's join failed only after %lld ms: %s\n", rank, static_cast<long long>(ms.count()),
                  message.c_str());
    } else {
      std::printf("rank %d's join failed at once (%s): OK\n", rank, message.c_str());
      status = 0;
    }
  }
  std::fflush(stdout);
  MPI_Finalize();
  return status;
}
