// Root-info rendezvous over MPI point-to-point: each member sends its world rank to the root's process, which answers
// with the whole list (or refuses the group, naming why).
#include "transport/mpi/rendezvous.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "transport/mpi/hosts_window.h"
#include "transport/mpi/mailbox.h"
#include "transport/mpi/mpi_runtime.h"

namespace moe_ep::transport::mpi {
namespace {

// Why a root of a `size`-rank group must refuse these joins ("" while none is wrong): a member given another size,
// a rank outside the group, or two members claiming one rank. Any of them would leave the group short, and the
// others waiting in MPI's collectives for a member that never comes.
std::string RefusalOf(const std::vector<Join>& joins, int size) {
  std::map<int, int> world_of;
  for (const Join& j : joins) {
    const std::string who = "world rank " + std::to_string(j.world);
    if (!j.refused.empty()) {
      return who + " refused its " + j.refused + " (its own error names the value); every rank must be given a " +
             "valid one";
    }
    if (j.size != size) {
      return who + " was given a group of " + std::to_string(j.size) + " ranks, the root one of " +
             std::to_string(size) + "; every rank must pass the same size";
    }
    if (j.rank < 0 || j.rank >= size) {
      return who + " joined as group rank " + std::to_string(j.rank) + " of a " + std::to_string(size) +
             "-rank group; every rank must pass its own rank in [0, size)";
    }
    if (const auto [at, fresh] = world_of.emplace(j.rank, j.world); !fresh) {
      return "world ranks " + std::to_string(at->second) + " and " + std::to_string(j.world) +
             " both joined as group rank " + std::to_string(j.rank) + "; every rank must pass its own rank";
    }
  }
  return "";
}

}  // namespace

int WorldRank() {
  EnsureInitialized();
  const auto lock = Lock();
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int WorldSize() {
  EnsureInitialized();
  const auto lock = Lock();
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

std::unique_ptr<Window> JoinRootInfoGroup(const std::string& token, int root, int rank, int size, uint64_t data_bytes,
                                          uint64_t flag_count, Clock::time_point deadline,
                                          const std::optional<env::Refusal>& refused) {
  const int world = WorldRank();
  SendText("J " + token + " " + std::to_string(rank) + " " + std::to_string(world) + " " + std::to_string(size) +
               (refused ? " " + refused->variable : ""),
           root, deadline);
  if (refused && world != root) throw refused->error;  // the root tells the others
  if (world == root) {
    Mailbox& box = Box();
    // As many joins as the group has ranks (every rank, unless some were given other settings).
    PollUntil(
        deadline, [&] { return static_cast<int>(box.joins[token].size()) >= size; },
        [&] {
          std::vector<int> absent;
          for (int r = 0; r < size; ++r) {
            const std::vector<Join>& joins = box.joins[token];
            if (std::none_of(joins.begin(), joins.end(), [r](const Join& j) { return j.rank == r; })) {
              absent.push_back(r);
            }
          }
          return absent;
        },
        [&] { box.joins.erase(token); }, "every rank of the group to join the root");
    std::vector<Join> joins;
    {
      std::lock_guard lock(box.mu);
      joins = std::move(box.joins[token]);
      box.joins.erase(token);
    }
    if (const std::string refusal = RefusalOf(joins, size); !refusal.empty()) {
      // The members hear why at once, instead of waiting out HCCL_CONNECT_TIMEOUT: those that joined, and for a
      // short while those that join late (a member of the group may come after one that was given another size).
      const auto refuse = [&](const std::vector<Join>& to) {
        for (const Join& j : to) {
          if (j.world != world) SendText("E " + token + " " + refusal, j.world, deadline);
        }
      };
      refuse(joins);
      for (const auto until = std::min(deadline, Clock::now() + std::chrono::seconds(2)); Clock::now() < until;) {
        Poll();
        std::vector<Join> late;
        {
          std::lock_guard lock(box.mu);
          late = std::move(box.joins[token]);
          box.joins.erase(token);
        }
        refuse(late);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (refused) throw refused->error;
      throw Error(ErrorCode::kInvalidConfig, "HcclCommInitRootInfo: " + refusal);
    }
    std::vector<int> members(size);
    for (const Join& j : joins) members[j.rank] = j.world;
    std::string reply = "R " + token;
    for (int w : members) (reply += ' ') += std::to_string(w);
    // Its own copy goes straight into the mailbox: a blocking send to itself waits for a receive this thread would
    // post only after it, which MPI needs to complete a message past its eager size (long member lists).
    for (int w : members) {
      if (w != world) SendText(reply, w, deadline);
    }
    std::lock_guard lock(box.mu);
    box.members[token] = members;
  }
  Mailbox& box = Box();
  PollUntil(
      deadline, [&] { return box.members.count(token) > 0 || box.refusals.count(token) > 0; },
      [] { return std::vector<int>{}; },
      [&] {
        box.members.erase(token);
        box.refusals.erase(token);
      },
      "the root (world rank " + std::to_string(root) + ") to answer with the group's members");
  std::vector<int> members;
  {
    std::lock_guard lock(box.mu);
    if (const auto refused = box.refusals.find(token); refused != box.refusals.end()) {
      const std::string why = refused->second;
      box.refusals.erase(refused);
      throw Error(ErrorCode::kInvalidConfig,
                  "HcclCommInitRootInfo: the root (world rank " + std::to_string(root) + ") refused the group: " + why);
    }
    members = box.members[token];
    box.members.erase(token);
  }
  if (std::set<int>(members.begin(), members.end()).size() != members.size()) {
    throw Error(ErrorCode::kInvalidConfig,
                "HcclCommInitRootInfo: two ranks of the group are in one MPI process; "
                "under MPI each process holds at most one rank of a group");
  }
  if (static_cast<int>(members.size()) != size || members[rank] != world) {
    throw Error(ErrorCode::kInvalidConfig,
                "HcclCommInitRootInfo: the root's member list does not place this "
                "process at group rank " +
                    std::to_string(rank) + "; every rank must pass its own distinct rank");
  }
  return JoinHostsGroupOfWorldRanks(members, "hccl_" + token.substr(0, 24), data_bytes, flag_count, deadline);
}

}  // namespace moe_ep::transport::mpi
