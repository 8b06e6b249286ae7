// One rank of a 4-rank MPI job whose ranks join two groups of one name (JoinMpiGroup's default): their pair ({0, 1}
// or {2, 3}, a TP pair, split from MPI_COMM_WORLD), then the whole world (the EP group). Rank 1 comes 2 s late, so
// ranks 2 and 3 arrive at the world group's join while rank 0 still waits for rank 1 in its pair's, whose meeting
// files their words under the same name and drops them when it ends: the world group's meeting must still form
// (their commitments, sent once rank 0 arrives, say they came). Every rank prints a line ending in OK once both
// groups joined.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/mpi.h"

int main(int argc, char** argv) {
  int provided = 0, rank = 0, size = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int status = 0;
  if (size != 4) {
    std::printf("FAIL: rank %d: run under mpirun -np 4, not %d\n", rank, size);
    status = 2;
  } else {
    MPI_Comm pair = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, rank / 2, rank, &pair);
    if (rank == 1) std::this_thread::sleep_for(std::chrono::seconds(2));
    try {
      const moe_ep::Group tp = moe_ep::JoinMpiGroup(pair);
      const moe_ep::Group ep = moe_ep::JoinMpiGroup(MPI_COMM_WORLD);
      if (tp.rank() != rank % 2 || ep.rank() != rank) {
        std::printf("FAIL: rank %d: group ranks %d and %d\n", rank, tp.rank(), ep.rank());
        status = 1;
      }
    } catch (const moe_ep::Error& e) {
      std::printf("FAIL: rank %d: %s\n", rank, e.what());
      status = 1;
    }
    MPI_Comm_free(&pair);
    if (status == 0) std::printf("rank %d joined its pair and the world under one name: OK\n", rank);
  }
  std::fflush(stdout);
  MPI_Finalize();
  return status;
}
