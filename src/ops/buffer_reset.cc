// BufferReset (SPEC 4.2): clear the local window (data, flags, call counters: parity back to 0) and
// optionally sync with the ranks marked reachable, so survivors can start afresh together.
#include <vector>

#include "ops/ops.h"
#include "plan/layout.h"

namespace moe_ep::ops {

void BufferReset(transport::Window& ep, std::span<const int32_t> reachable, bool need_sync,
                 transport::Clock::time_point deadline) {
  ep.ClearLocal(plan::kClearedFlagCount);
  if (!need_sync) return;
  // Sync flags live past the cleared range and carry the reset generation, so a peer's flag that
  // lands while we are still clearing is not lost, and an old reset's flag never counts.
  const uint32_t epoch = static_cast<uint32_t>(transport::EpochOf(ep.reset_calls()++));
  std::vector<uint64_t> awaited;
  for (int peer = 0; peer < ep.size(); ++peer) {
    if (!reachable[peer]) continue;
    ep.Signal(peer, plan::kSyncFlagBase + ep.rank(), transport::MakeFlag(epoch, 1));
    awaited.push_back(plan::kSyncFlagBase + peer);
  }
  transport::WaitFlags(
      ep, awaited, epoch, deadline, [](uint64_t idx) { return static_cast<int>(idx - plan::kSyncFlagBase); },
      "MoeDistributeBufferReset", "the reset sync");
}

}  // namespace moe_ep::ops
