// Two rounds of words between the members of a group over MPI (arrived, committed), with a deadline, before the
// collectives of its join.
#include "transport/mpi/meeting.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

#include "base/entropy.h"
#include "base/hash.h"
#include "moe_ep/error.h"
#include "transport/mpi/mailbox.h"
#include "transport/mpi/mpi_runtime.h"
#include "transport/mpi/rendezvous.h"

namespace moe_ep::transport::mpi {
namespace {

// How long after committing a member waits at least for the others' commitments (until the deadline, when that is
// later): each commits as soon as it has seen every arrival, so only a member stopped this long between its two words
// takes longer.
constexpr auto kCommitGrace = std::chrono::seconds(3);

// The meeting's key in the words, which are separated by spaces (a group's name may hold some).
std::string KeyOf(const std::string& group) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash::Fnv1a(group)));
  return std::string("meet-") + hex;
}

// "group ranks 1, 2 (world ranks 5, 6)"
std::string Named(const std::vector<int>& group_ranks, std::span<const int> members) {
  std::string ranks, worlds;
  for (int r : group_ranks) {
    ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    worlds += (worlds.empty() ? "" : ", ") + std::to_string(members[r]);
  }
  return "group rank" + std::string(group_ranks.size() > 1 ? "s " : " ") + ranks + " (world rank" +
         (group_ranks.size() > 1 ? "s " : " ") + worlds + ")";
}

}  // namespace

void MeetMembers(std::span<const int> members, const std::string& group, Clock::time_point deadline) {
  const int world = WorldRank();
  const std::string key = KeyOf(group);
  const uint64_t attempt = entropy::NonZero64();
  // Posted, not waited for: a send to a member that is not in MPI yet (or never comes) may not finish before it is.
  const auto tell_others = [&](char kind, uint64_t seen) {
    const std::string word =
        std::string(1, kind) + " " + key + " " + std::to_string(attempt) + " " + std::to_string(seen);
    for (int m : members) {
      if (m != world) Post(word, m);
    }
  };
  // So that no member goes on without this one (best effort: a member that is gone cannot be told).
  const auto give_up = [&] {
    try {
      tell_others('X', 0);
    } catch (const Error&) {
    }
  };
  Mailbox& box = Box();
  const auto word_of = [&](size_t i) -> const Word* {  // under the lock; null when none came
    const auto& words = box.words[key];
    const auto word = words.find(members[i]);
    return word == words.end() ? nullptr : &word->second;
  };
  // Under the lock: the members not heard from, and those whose latest word is that they gave up (at their own
  // deadline, or on a retry's failure) and have not come again.
  std::vector<int> unheard, gave_up;
  const auto everyone_arrived = [&] {
    unheard.clear();
    gave_up.clear();
    for (size_t i = 0; i < members.size(); ++i) {
      if (members[i] == world) continue;
      const Word* word = word_of(i);
      if (word == nullptr) unheard.push_back(static_cast<int>(i));
      if (word != nullptr && word->kind == 'X') gave_up.push_back(static_cast<int>(i));
    }
    return unheard.empty() && gave_up.empty();
  };
  const std::string what = "every member of group '" + group + "' to arrive at its join";
  bool arrived = false;
  try {
    tell_others('A', 0);
    arrived = PollFor(deadline, everyone_arrived, what);
  } catch (...) {
    give_up();
    throw;
  }
  if (!arrived) {
    give_up();
    std::string message = "timed out waiting for " + what + ": ";
    if (!unheard.empty()) message += Named(unheard, members) + " did not come before the deadline";
    if (!gave_up.empty()) {
      message += std::string(unheard.empty() ? "" : "; ") + Named(gave_up, members) +
                 " came, then gave up waiting (its own deadline)";
    }
    throw TimeoutError(message + " (MOE_EP_TIMEOUT_MS, GroupOptions::timeout; HCCL_CONNECT_TIMEOUT in the C API)",
                       unheard.empty() ? gave_up : unheard);
  }

  // Every member arrived: commit to the attempts seen, and go on when every member committed to the same ones.
  std::vector<uint64_t> attempts(members.size());
  {
    std::lock_guard lock(box.mu);
    for (size_t i = 0; i < members.size(); ++i) attempts[i] = members[i] == world ? attempt : word_of(i)->attempt;
  }
  std::string attempt_bytes;
  for (uint64_t a : attempts) {
    for (int byte = 0; byte < 8; ++byte) attempt_bytes += static_cast<char>(a >> (8 * byte));  // one byte order
  }
  const uint64_t seen = hash::Fnv1a(attempt_bytes);
  std::vector<int> broken, uncommitted;
  const auto settled = [&] {  // under the lock: whether the meeting broke or every member committed
    broken.clear();
    uncommitted.clear();
    for (size_t i = 0; i < members.size(); ++i) {
      if (members[i] == world) continue;
      const Word* word = word_of(i);
      if (word == nullptr || word->kind == 'X' || word->attempt != attempts[i] ||
          (word->kind == 'C' && word->seen != seen)) {
        broken.push_back(static_cast<int>(i));
      } else if (word->kind != 'C') {
        uncommitted.push_back(static_cast<int>(i));
      }
    }
    return !broken.empty() || uncommitted.empty();
  };
  // Not interruptible once committed: a member that has every commitment, this one's among them, is on its way
  // into the join's collectives (a sub-group's MPI_Comm_create_group), which it would never leave if this one gave
  // up now. The wait is bounded still.
  try {
    tell_others('C', seen);
    PollFor(std::max(deadline, Clock::now() + kCommitGrace), settled,
            "every member of group '" + group + "' to commit to its join", /*interruptible=*/false);
  } catch (...) {
    give_up();
    throw;
  }
  if (broken.empty() && uncommitted.empty()) {
    std::lock_guard lock(box.mu);
    box.words.erase(key);
    return;
  }
  give_up();
  if (!broken.empty()) {
    throw TimeoutError(
        "the join of group '" + group + "' ended: " + Named(broken, members) +
            " gave it up (at its deadline, or interrupted before it committed), or saw other attempts of "
            "members than this one did (a member retrying its join)",
        broken);
  }
  throw TimeoutError("timed out waiting for every member of group '" + group +
                         "' to commit to its join: " + Named(uncommitted, members) + " arrived, then stopped answering",
                     uncommitted);
}

}  // namespace moe_ep::transport::mpi
