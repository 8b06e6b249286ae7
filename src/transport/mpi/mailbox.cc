// The set-up messages of MPI joins, sent and sorted into the process's mailbox.
#include "transport/mpi/mailbox.h"

#include <memory>
#include <sstream>

#include "transport/mpi/mpi_runtime.h"

namespace moe_ep::transport::mpi {

Mailbox& Box() {
  static auto* const box = new Mailbox;
  return *box;
}

void SendText(const std::string& text, int to, Clock::time_point deadline) {
  auto kept = std::make_unique<std::string>(text);
  MPI_Request request = MPI_REQUEST_NULL;
  {
    const auto lock = Lock();
    Check(
        MPI_Isend(kept->data(), static_cast<int>(kept->size()), MPI_CHAR, to, kRendezvousTag, MPI_COMM_WORLD, &request),
        "MPI_Isend");
  }
  WaitForRequestKeeping(kept, request, deadline,
                        "sending the group's set-up message to world rank " + std::to_string(to));
}

void Post(const std::string& text, int to) {
  Mailbox& box = Box();
  const auto lock = Lock();
  std::lock_guard box_lock(box.mu);
  auto& [kept, request] = box.posted.emplace_back(text, MPI_REQUEST_NULL);
  Check(MPI_Isend(kept.data(), static_cast<int>(kept.size()), MPI_CHAR, to, kRendezvousTag, MPI_COMM_WORLD, &request),
        "MPI_Isend");
}

int Poll() {
  Mailbox& box = Box();
  // The MPI lock, then the mailbox's (never the other way round): a message is stored before the next is received.
  const auto lock = Lock();
  std::lock_guard box_lock(box.mu);
  std::erase_if(box.posted, [](auto& send) {
    int done = 0;
    Check(MPI_Test(&send.second, &done, MPI_STATUS_IGNORE), "MPI_Test");
    return done != 0;
  });
  for (int stored = 0;; ++stored) {
    // A matched probe: the message probed is the one received, whatever another thread's MPI call (a sub-group's
    // MPI_Comm_create_group runs without the lock) receives meanwhile.
    int arrived = 0;
    MPI_Message message = MPI_MESSAGE_NULL;
    MPI_Status status;
    Check(MPI_Improbe(MPI_ANY_SOURCE, kRendezvousTag, MPI_COMM_WORLD, &arrived, &message, &status), "MPI_Improbe");
    if (!arrived) return stored;
    int count = 0;
    MPI_Get_count(&status, MPI_CHAR, &count);
    std::string text(static_cast<size_t>(count), '\0');
    const int from = status.MPI_SOURCE;
    Check(MPI_Mrecv(text.data(), count, MPI_CHAR, &message, MPI_STATUS_IGNORE), "MPI_Mrecv");
    std::istringstream in(text);
    std::string kind, token;
    in >> kind >> token;
    if (kind == "J") {
      Join join{-1, -1, -1, ""};
      in >> join.rank >> join.world >> join.size >> join.refused;
      // A join replaces an earlier one of the same process as the same rank (a retry after the root had given up,
      // whose first join came late): one member, not two claiming one rank.
      std::vector<Join>& joins = box.joins[token];
      std::erase_if(joins, [&](const Join& j) { return j.world == join.world && j.rank == join.rank; });
      joins.push_back(join);
    } else if (kind == "R") {
      // The root's latest answer: one that came after its member gave up waiting may be followed by the retry's.
      std::vector<int>& list = box.members[token];
      list.clear();
      for (int world; in >> world;) list.push_back(world);
    } else if (kind == "E") {
      std::getline(in >> std::ws, box.refusals[token]);
    } else if (kind == "A" || kind == "C" || kind == "X") {
      // MPI keeps the order of one sender's messages, and they are stored in the order received: the word stored
      // is the sender's latest.
      Word word{kind[0], 0, 0};
      in >> word.attempt >> word.seen;
      box.words[token][from] = word;
    }
  }
}

}  // namespace moe_ep::transport::mpi
