// Root-info rendezvous over MPI point-to-point: a process-wide mailbox sorts the join and reply
// messages of every group being formed, so groups formed at once from different threads do not mix.
#include "transport/mpi/rendezvous.h"

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "transport/mpi/hosts_window.h"
#include "transport/mpi/mpi_runtime.h"

namespace moe_ep::transport::mpi {
namespace {

// Reserved on MPI_COMM_WORLD for these set-up messages (a program must not receive it with MPI_ANY_TAG
// while groups are being formed).
constexpr int kRendezvousTag = 0x6D65;

// Joins received by a root ("J token rank world"), member lists received by members ("R token w0 w1 ...") and
// a root's refusal of the group ("E token message"), by token.
struct Mailbox {
  std::mutex mu;
  std::map<std::string, std::map<int, int>> joins;  // token -> group rank -> world rank
  std::map<std::string, std::vector<int>> members;  // token -> world rank of each group rank
  std::map<std::string, std::string> refusals;      // token -> why the root refused the group
};

Mailbox& Box() {
  static auto* const box = new Mailbox;
  return *box;
}

void SendText(const std::string& text, int to) {
  const auto lock = Lock();
  Check(MPI_Send(text.data(), static_cast<int>(text.size()), MPI_CHAR, to, kRendezvousTag, MPI_COMM_WORLD), "MPI_Send");
}

// Moves every rendezvous message that arrived into the mailbox.
void Poll() {
  for (;;) {
    std::string text;
    {
      const auto lock = Lock();
      int arrived = 0;
      MPI_Status status;
      Check(MPI_Iprobe(MPI_ANY_SOURCE, kRendezvousTag, MPI_COMM_WORLD, &arrived, &status), "MPI_Iprobe");
      if (!arrived) return;
      int count = 0;
      MPI_Get_count(&status, MPI_CHAR, &count);
      text.resize(static_cast<size_t>(count));
      Check(
          MPI_Recv(text.data(), count, MPI_CHAR, status.MPI_SOURCE, kRendezvousTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
          "MPI_Recv");
    }
    std::istringstream in(text);
    std::string kind, token;
    in >> kind >> token;
    Mailbox& box = Box();
    std::lock_guard lock(box.mu);
    if (kind == "J") {
      int rank = -1, world = -1;
      in >> rank >> world;
      box.joins[token][rank] = world;
    } else if (kind == "R") {
      std::vector<int>& list = box.members[token];
      for (int world; in >> world;) list.push_back(world);
    } else if (kind == "E") {
      std::getline(in >> std::ws, box.refusals[token]);
    }
  }
}

// Polls until `ready()` (called under the mailbox lock) holds, or throws TimeoutError at `deadline`.
template <typename Ready, typename Missing>
void PollUntil(Clock::time_point deadline, Ready&& ready, Missing&& missing, const std::string& what) {
  for (;;) {
    Poll();
    {
      std::lock_guard lock(Box().mu);
      if (ready()) return;
    }
    if (Clock::now() >= deadline) {
      std::vector<int> ranks;
      {
        std::lock_guard lock(Box().mu);
        ranks = missing();
      }
      std::string list;
      for (int r : ranks) list += (list.empty() ? "" : ", ") + std::to_string(r);
      throw TimeoutError("timed out waiting for " + what + (list.empty() ? "" : " (ranks " + list + ")"), ranks);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

int WorldRank() {
  EnsureInitialized();
  const auto lock = Lock();
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

std::unique_ptr<Window> JoinRootInfoGroup(const std::string& token, int root, int rank, int size, uint64_t data_bytes,
                                          uint64_t flag_count, Clock::time_point deadline) {
  const int world = WorldRank();
  SendText("J " + token + " " + std::to_string(rank) + " " + std::to_string(world), root);
  if (world == root) {
    Mailbox& box = Box();
    PollUntil(
        deadline, [&] { return static_cast<int>(box.joins[token].size()) == size; },
        [&] {
          std::vector<int> absent;
          for (int r = 0; r < size; ++r) {
            if (!box.joins[token].count(r)) absent.push_back(r);
          }
          return absent;
        },
        "every rank of the group to join the root");
    std::string reply = "R " + token;
    std::vector<int> members;
    std::string refusal;
    {
      std::lock_guard lock(box.mu);
      for (const auto& [r, w] : box.joins[token]) {
        if ((r < 0 || r >= size) && refusal.empty()) {
          refusal = "world rank " + std::to_string(w) + " joined as group rank " + std::to_string(r) + " of a " +
                    std::to_string(size) + "-rank group (the root's size); every rank must pass the same size";
        }
        members.push_back(w);
        reply += ' ';
        reply += std::to_string(w);
      }
      box.joins.erase(token);
    }
    if (!refusal.empty()) {  // the members hear why at once, instead of waiting out HCCL_CONNECT_TIMEOUT
      for (int w : members) {
        if (w != world) SendText("E " + token + " " + refusal, w);
      }
      throw Error(ErrorCode::kInvalidConfig, "HcclCommInitRootInfo: " + refusal);
    }
    // Its own copy goes straight into the mailbox: a blocking send to itself waits for a receive this thread would
    // post only after it, which MPI needs to complete a message past its eager size (long member lists).
    for (int w : members) {
      if (w != world) SendText(reply, w);
    }
    std::lock_guard lock(box.mu);
    box.members[token] = members;
  }
  Mailbox& box = Box();
  PollUntil(
      deadline, [&] { return box.members.count(token) > 0 || box.refusals.count(token) > 0; },
      [] { return std::vector<int>{}; },
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
