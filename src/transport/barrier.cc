// Barrier over a window: each rank stamps its barrier count into every peer's barrier flag and waits
// for all peers' stamps to reach it (counts only grow, so a late stamp from an earlier barrier is harmless).
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

}  // namespace moe_ep::transport
