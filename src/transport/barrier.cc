// Barrier and reachability probe over a window: each rank stamps its count into every peer's flag and
// waits for the peers' stamps to reach it (counts only grow, so a late stamp from before is harmless).
#include <thread>
#include <vector>

#include "plan/layout.h"
#include "transport/window.h"

namespace moe_ep::transport {

void Barrier(Window& w, Clock::time_point deadline, const char* what) {
  const uint64_t tag = ++w.barrier_calls();
  for (int peer = 0; peer < w.size(); ++peer) w.Signal(peer, plan::kBarrierFlagBase + w.rank(), tag);
  const auto missing = [&] {
    std::vector<int> ranks;
    for (int peer = 0; peer < w.size(); ++peer) {
      if (w.ReadFlag(plan::kBarrierFlagBase + peer) < tag) ranks.push_back(peer);
    }
    return ranks;
  };
  WaitUntil(w, deadline, "Barrier", what, 0, [&] { return missing().empty(); }, missing);
}

std::vector<int32_t> Probe(Window& w, Clock::duration wait) {
  const uint64_t tag = ++w.probe_calls();
  for (int peer = 0; peer < w.size(); ++peer) w.Signal(peer, plan::kProbeFlagBase + w.rank(), tag);
  std::vector<int32_t> reachable(w.size(), 0);
  const auto deadline = Clock::now() + wait;
  for (;;) {
    int arrived = 0;
    for (int peer = 0; peer < w.size(); ++peer) {
      reachable[peer] = w.ReadFlag(plan::kProbeFlagBase + peer) >= tag ? 1 : 0;
      arrived += reachable[peer];
    }
    if (arrived == w.size() || Clock::now() >= deadline) return reachable;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace moe_ep::transport
