// BufferReset (docs/semantics.md 4.2): clear the local window (data, flags, call counters: parity back to 0) and
// optionally sync with the ranks marked reachable, so survivors can start afresh together.
#include <algorithm>
#include <vector>

#include "ops/protocol.h"
#include "plan/layout.h"

namespace moe_ep::ops::protocol {

void BufferReset(transport::Window& ep, OpState& state, std::span<const int32_t> reachable, bool need_sync,
                 transport::Clock::time_point deadline) {
  // The done words of a staged dispatch go with the flags: a buffer whose readers have not all said so
  // by now is given up (ops/stage.h).
  state.dispatch_stage.Settle(ep, transport::Clock::now());
  // A retry after a timed-out sync (below) is the same reset, whose clear is done: clearing again could wipe
  // what a peer that finished this reset has sent since, for its first call of the new generation.
  if (!(need_sync && state.reset_unfinished)) ep.ClearLocal(plan::kClearedFlagCount);
  state.dispatch_calls = state.combine_calls = 0;
  state.generation = 0;
  if (!need_sync) return;
  // Sync flags live past the cleared range, so a peer's flag that lands while we are still clearing
  // is not lost. Each carries the sender's reset count; we wait for one newer than the last we took
  // from that peer, so a rank that missed a reset (it was unreachable) rejoins the next one. A retry
  // after a timed-out sync is the same reset: it keeps its tag, so ranks that needed different numbers
  // of attempts still see the same tags and agree on the generation.
  if (!state.reset_unfinished) ++state.reset_calls;
  state.reset_unfinished = true;
  const uint64_t tag = state.reset_calls;
  std::vector<int> awaited;
  for (int peer = 0; peer < ep.size(); ++peer) {
    if (!reachable[peer]) continue;
    ep.Signal(peer, plan::kSyncFlagBase + ep.rank(), tag);
    awaited.push_back(peer);
  }
  auto& seen = state.reset_seen;
  const auto missing = [&] {
    std::vector<int> ranks;
    for (int peer : awaited) {
      if (ep.ReadFlag(plan::kSyncFlagBase + peer) <= seen[peer]) ranks.push_back(peer);
    }
    return ranks;
  };
  transport::WaitUntil(
      ep, deadline, "MoeDistributeBufferReset", "the reset sync", 0, [&] { return missing().empty(); }, missing);
  // The new generation: the highest reset count among the ranks that synced, which all of them see.
  uint64_t generation = tag;
  for (int peer : awaited) {
    seen[peer] = ep.ReadFlag(plan::kSyncFlagBase + peer);
    generation = std::max(generation, seen[peer]);
  }
  state.generation = generation;
  state.reset_unfinished = false;
}

}  // namespace moe_ep::ops::protocol
