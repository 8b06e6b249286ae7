// One rank of an MPI job in which world ranks 0 and 1 each join two sub-groups at once, from two threads: members
// {0, 1} and {1, 0}, a fresh pair of names each round. Each process's threads race to MPI_Comm_create_group, so in
// about half the rounds the two processes enter the two groups' calls in opposite orders: a process that held
// its MPI calls to one at a time there would wait for the other for good. Every rank prints a line ending in OK
// when every round's two groups joined; a watchdog fails the rank when a round takes longer than MOE_EP_TIMEOUT_MS.
#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "moe_ep/group.h"

int main(int argc, char** argv) {
  const int rounds = argc == 2 ? std::atoi(argv[1]) : 0;
  if (rounds <= 0) {
    std::fprintf(stderr, "usage: MOE_EP_TIMEOUT_MS=T %s ROUNDS (under mpirun, 3 ranks or more)\n", argv[0]);
    return 2;
  }
  int provided = 0, rank = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (provided != MPI_THREAD_MULTIPLE) {  // groups may then be formed one at a time only (docs/hosts.md)
    std::printf("FAIL: rank %d: MPI provides thread level %d, not MPI_THREAD_MULTIPLE\n", rank, provided);
    MPI_Finalize();
    return 1;
  }
  const char* timeout_ms = std::getenv("MOE_EP_TIMEOUT_MS");
  const auto timeout = std::chrono::milliseconds(timeout_ms ? std::atoi(timeout_ms) : 10000);
  int status = 0;
  if (rank >= 2) {
    std::printf("rank %d is in no group: OK\n", rank);
  } else {
    // A round that cannot end is reported rather than left waiting; the watchdog is joined before MPI_Finalize.
    std::mutex mutex;
    std::condition_variable changed;
    int round_now = 0;
    bool done = false;
    std::thread watchdog([&] {
      std::unique_lock lock(mutex);
      while (!done) {
        const int seen = round_now;
        if (!changed.wait_for(lock, timeout, [&] { return done || round_now != seen; })) {
          std::printf("FAIL: rank %d: round %d's two groups did not join within %lld ms\n", rank, seen,
                      static_cast<long long>(timeout.count()));
          std::fflush(stdout);
          std::_Exit(1);
        }
      }
    });
    for (int round = 0; round < rounds && status == 0; ++round) {
      std::vector<std::string> failures(2);
      std::vector<std::thread> joins;
      for (int g = 0; g < 2; ++g) {
        joins.emplace_back([&, g] {
          moe_ep::GroupOptions options;
          options.name = "crossed" + std::to_string(round) + (g == 0 ? "a" : "b");
          const std::vector<int> members = g == 0 ? std::vector<int>{0, 1} : std::vector<int>{1, 0};
          try {
            const moe_ep::Group group = moe_ep::JoinProcessGroup(moe_ep::ReadLaunchEnvironment(), members, options);
            if (group.rank() != (g == 0 ? rank : 1 - rank)) failures[g] = "a wrong group rank";
          } catch (const moe_ep::Error& e) {
            failures[g] = e.what();
          }
        });
      }
      for (std::thread& t : joins) t.join();
      for (const std::string& failure : failures) {
        if (!failure.empty()) {
          std::printf("FAIL: rank %d, round %d: %s\n", rank, round, failure.c_str());
          status = 1;
        }
      }
      {
        std::lock_guard lock(mutex);
        round_now = round + 1;
      }
      changed.notify_one();
    }
    {
      std::lock_guard lock(mutex);
      done = true;
    }
    changed.notify_one();
    watchdog.join();
    if (status == 0) std::printf("rank %d joined %d pairs of sub-groups at once: OK\n", rank, rounds);
  }
  std::fflush(stdout);
  MPI_Finalize();
  return status;
}
