// Two rounds of words between the members of a sub-group (arrived, committed), with a deadline, before
// MPI_Comm_create_group.
#include "transport/mpi/meeting.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "transport/mpi/mailbox.h"
#include "transport/mpi/mpi_runtime.h"
#include "transport/mpi/rendezvous.h"

namespace moe_ep::transport::mpi {
namespace {

// How long past the deadline a member that saw every arrival waits for the others' commitments: each commits as
// soon as it has seen every arrival, so only a member stopped for this long between its two words takes longer.
constexpr auto kCommitGrace = std::chrono::seconds(3);

// FNV-1a over `bytes`, continuing from `hash`.
uint64_t Fnv1a(const void* bytes, size_t size, uint64_t hash = 0xCBF29CE484222325ull) {
  for (size_t i = 0; i < size; ++i) {
    hash ^= static_cast<const unsigned char*>(bytes)[i];
    hash *= 0x100000001B3ull;
  }
  return hash;
}

// The meeting's key in the words, which are separated by spaces (a group's name may hold some).
std::string KeyOf(const std::string& group) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(Fnv1a(group.data(), group.size())));
  return std::string("meet-") + hex;
}

uint64_t NewAttempt() {
  std::random_device device;
  const uint64_t attempt = (static_cast<uint64_t>(device()) << 32) | device();
  return attempt != 0 ? attempt : 1;
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
  const uint64_t attempt = NewAttempt();
  const auto tell_others = [&](char kind, uint64_t seen, Clock::time_point until) {
    const std::string word =
        std::string(1, kind) + " " + key + " " + std::to_string(attempt) + " " + std::to_string(seen);
    for (int m : members) {
      if (m != world) SendText(word, m, until);
    }
  };
  // So that no member goes on without this one (best effort: a member that is gone cannot be told).
  const auto give_up = [&] {
    try {
      tell_others('X', 0, Clock::now() + std::chrono::seconds(1));
    } catch (const Error&) {
    }
  };
  Mailbox& box = Box();
  const auto word_of = [&](size_t i) -> const Word* {  // under the lock; null when none came
    const auto& words = box.words[key];
    const auto word = words.find(members[i]);
    return word == words.end() ? nullptr : &word->second;
  };
  const auto absent = [&] {  // under the lock
    std::vector<int> ranks;
    for (size_t i = 0; i < members.size(); ++i) {
      const Word* word = word_of(i);
      if (members[i] != world && (word == nullptr || word->kind == 'X')) ranks.push_back(static_cast<int>(i));
    }
    return ranks;
  };
  const std::string what = "every member of group '" + group + "' to arrive at its join";
  std::vector<int> missing;
  try {
    tell_others('A', 0, deadline);
    if (!PollFor(
            deadline, [&] { return absent().empty(); }, what)) {
      std::lock_guard lock(box.mu);
      missing = absent();
    }
  } catch (...) {
    give_up();
    throw;
  }
  if (!missing.empty()) {
    give_up();
    throw TimeoutError("timed out waiting for " + what + ": " + Named(missing, members) +
                           " did not come before the deadline (MOE_EP_TIMEOUT_MS, GroupOptions::timeout; "
                           "HCCL_CONNECT_TIMEOUT in the C API)",
                       missing);
  }

  // Every member arrived: commit to the attempts seen, and go on when every member committed to the same ones.
  std::vector<uint64_t> attempts(members.size());
  {
    std::lock_guard lock(box.mu);
    for (size_t i = 0; i < members.size(); ++i) attempts[i] = members[i] == world ? attempt : word_of(i)->attempt;
  }
  const uint64_t seen = Fnv1a(attempts.data(), attempts.size() * sizeof(uint64_t));
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
  try {
    const Clock::time_point until = std::max(deadline, Clock::now() + kCommitGrace);
    tell_others('C', seen, until);
    PollFor(until, settled, "every member of group '" + group + "' to commit to its join");
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
    throw TimeoutError("the join of group '" + group + "' ended: " + Named(broken, members) +
                           " gave it up (its deadline passed) or began another attempt after every member had arrived",
                       broken);
  }
  throw TimeoutError("timed out waiting for every member of group '" + group +
                         "' to commit to its join: " + Named(uncommitted, members) + " arrived, then stopped answering",
                     uncommitted);
}

}  // namespace moe_ep::transport::mpi
