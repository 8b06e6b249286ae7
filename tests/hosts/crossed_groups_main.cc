// One rank of an MPI job in which world ranks 0 and 1 each join two sub-groups at once, from two threads: members
// {0, 1} and {1, 0}, a fresh pair of names each round. Each process's threads race to MPI_Comm_create_group, so in
// about half the rounds the two processes enter the two groups' calls in opposite orders: a process that held
// its MPI calls to one at a time there would wait for the other for good. Every rank prints a line ending in OK
// when every round's two groups joined; a watchdog fails the rank if a round takes past MOE_EP_TIMEOUT_MS.
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
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
  const auto timeout = std::chrono::milliseconds(std::atoi(std::getenv("MOE_EP_TIMEOUT_MS")));
  int status = 0;
  if (rank >= 2) {
    std::printf("rank %d is in no group: OK\n", rank);
  } else {
    std::atomic<int> round_now{0};
    std::thread([&] {  // a round that cannot end: report it rather than leave the job waiting
      for (int seen = -1; round_now.load() < rounds;) {
        const int now = round_now.load();
        if (now == seen) {
          std::printf("FAIL: rank %d: round %d's two groups did not join within %lld ms\n", rank, now,
                      static_cast<long long>(timeout.count()));
          std::fflush(stdout);
          std::_Exit(1);
        }
        seen = now;
        std::this_thread::sleep_for(timeout);
      }
    })
        .detach();
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
      round_now.store(round + 1);
    }
    if (status == 0) std::printf("rank %d joined %d pairs of sub-groups at once: OK\n", rank, rounds);
  }
  std::fflush(stdout);
  MPI_Finalize();
  return status;
}
