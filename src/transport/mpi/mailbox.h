// The set-up messages of MPI joins: point-to-point texts on MPI_COMM_WORLD with a reserved tag, sorted by a
// process-wide mailbox into the groups being formed, so groups formed at once from different threads do not mix.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "moe_ep/error.h"
#include "transport/window.h"

namespace moe_ep::transport::mpi {

/// The tag of the set-up messages on MPI_COMM_WORLD, kept for moe_ep (include/moe_ep/mpi.h names it): a program must
/// not receive with MPI_ANY_TAG there while groups are being formed.
inline constexpr int kRendezvousTag = 0x6D65;

/// One member's join as its root received it ("J token rank world size [refused-variable]").
struct Join {
  int rank, world, size;
  std::string refused;  // a setting the member refused, "" when none
};

/// A member's latest word about its attempt to meet a group (MeetMembers): 'A' it arrived, 'C' it committed to
/// the members' attempts it saw (`seen`: a digest of them), 'X' it gave its attempt up.
struct Word {
  char kind;
  uint64_t attempt;
  uint64_t seen;  // 'C' only
};

/// What arrived, by group: joins received by a root, member lists received by members ("R token w0 w1 ...") and a
/// root's refusal of the group ("E token message") of root-info groups; the words of the members of groups meeting.
struct Mailbox {
  std::mutex mu;
  std::map<std::string, std::vector<Join>> joins;         // token -> joins in arrival order
  std::map<std::string, std::vector<int>> members;        // token -> world rank of each group rank
  std::map<std::string, std::string> refusals;            // token -> why the root refused the group
  std::map<std::string, std::map<int, Word>> words;       // meeting key -> world rank -> its latest word
  std::list<std::pair<std::string, MPI_Request>> posted;  // Post's sends not yet seen finished, with their texts
};

/// The process's mailbox.
Mailbox& Box();

/// Sends `text` to world rank `to`, or throws TimeoutError at `deadline`: a long text (a big group's member list)
/// takes MPI's handshake, which a rank that died after its join never answers. The text of a send given up on is kept
/// for the life of the process, as MPI may still read it.
void SendText(const std::string& text, int to, Clock::time_point deadline);

/// Sends `text` to world rank `to` without waiting for the send to finish: Poll frees it once it has. For words
/// to members that may never come (or take part in MPI only later), whom a waiting send would wait for.
void Post(const std::string& text, int to);

/// Moves every set-up message that arrived into the mailbox (each stored before the next is received, so a sender's
/// words are stored in the order it sent them, whichever threads poll), and frees Post's finished sends. Returns how
/// many it stored.
int Poll();

/// Polls until `done()` (called under the mailbox lock) holds, and returns true; false at `until`. Throws
/// InterruptedError when the interrupt check asks (saying `what` was awaited), unless not `interruptible`. `done()` is
/// asked only after a poll that found nothing new: one poll may not surface every message already sent (MPI moves
/// them in as it progresses), and a sender's older word must not stand for its latest (a member that gave up and
/// came again).
template <typename Done>
bool PollFor(Clock::time_point until, Done&& done, const std::string& what, bool interruptible = true) {
  for (auto next_interrupt_check = Clock::now() + kInterruptCheckEvery;;) {
    if (Poll() == 0) {
      std::lock_guard lock(Box().mu);
      if (done()) return true;
    }
    if (Clock::now() >= until) return false;
    if (interruptible && Clock::now() >= next_interrupt_check) {
      next_interrupt_check = Clock::now() + kInterruptCheckEvery;
      if (InterruptRequested()) throw InterruptedError("interrupted while waiting for " + what, {});
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

/// PollFor that throws TimeoutError at `deadline` (after `forget()`, under the lock: what the mailbox holds for this
/// group would mislead a retry; the error names the ranks `missing()` returns).
template <typename Ready, typename Missing, typename Forget>
void PollUntil(Clock::time_point deadline, Ready&& ready, Missing&& missing, Forget&& forget, const std::string& what) {
  if (PollFor(deadline, ready, what)) return;
  std::vector<int> ranks;
  {
    std::lock_guard lock(Box().mu);
    ranks = missing();
    forget();
  }
  std::string list;
  for (int r : ranks) list += (list.empty() ? "" : ", ") + std::to_string(r);
  throw TimeoutError("timed out waiting for " + what + (list.empty() ? "" : " (ranks " + list + ")"), ranks);
}

}  // namespace moe_ep::transport::mpi
