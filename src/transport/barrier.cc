// Barrier and reachability probe over a window's transport-owned flags: each rank stamps its count into
// every peer's flag and waits for the peers' stamps to reach it (counts only grow, so a late stamp from
// before is harmless).
#include <thread>
#include <utility>
#include <vector>

#include "transport/window.h"

namespace moe_ep::transport {

void Window::Barrier(Clock::time_point deadline, const char* what) {
  const uint64_t tag = ++barrier_calls_;
  for (int peer = 0; peer < size(); ++peer) Signal(peer, BarrierFlag(rank()), tag);
  const auto missing = [&] {
    std::vector<int> ranks;
    for (int peer = 0; peer < size(); ++peer) {
      if (ReadFlag(BarrierFlag(peer)) < tag) ranks.push_back(peer);
    }
    return ranks;
  };
  // Polled without building the list: a poll must not allocate.
  const auto all_arrived = [&] {
    for (int peer = 0; peer < size(); ++peer) {
      if (ReadFlag(BarrierFlag(peer)) < tag) return false;
    }
    return true;
  };
  WaitUntil(*this, deadline, "Barrier", what, 0, all_arrived, missing);
}

std::vector<int32_t> Window::Probe(Clock::duration wait) {
  const uint64_t tag = ++probe_calls_;
  for (int peer = 0; peer < size(); ++peer) Signal(peer, ProbeFlag(rank()), tag);
  std::vector<int32_t> reachable(size(), 0);
  std::vector<uint64_t> stamps(size(), 0);
  const auto deadline = Clock::now() + wait;
  for (int64_t polls = 0;;) {  // about 1 ms apart
    Progress();
    int arrived = 0;
    for (int peer = 0; peer < size(); ++peer) {
      stamps[peer] = ReadFlag(ProbeFlag(peer));
      reachable[peer] = stamps[peer] >= tag || stamps[peer] > probe_seen_[peer] ? 1 : 0;
      arrived += reachable[peer];
    }
    if (arrived == size() || Clock::now() >= deadline) {
      // Remember the stamps this verdict was made from: one that lands later counts at the next probe.
      probe_seen_ = std::move(stamps);
      return reachable;
    }
    if (++polls % kInterruptCheckEvery.count() == 0 && InterruptRequested()) {
      std::vector<int> unreached;
      for (int peer = 0; peer < size(); ++peer) {
        if (!reachable[peer]) unreached.push_back(peer);
      }
      throw InterruptedError("Probe: interrupted on rank " + std::to_string(rank()) + " of " + name() +
                                 " while waiting for the ranks to answer",
                             unreached);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace moe_ep::transport
