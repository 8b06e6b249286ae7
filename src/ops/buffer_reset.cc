// BufferReset (docs/semantics.md 4.2): clear the local window (data, flags, call counters: parity back to 0) and
// optionally sync with the ranks marked reachable, so survivors can start afresh together.
#include <algorithm>
#include <vector>

#include "ops/op_common.h"
#include "ops/protocol.h"
#include "plan/layout.h"

namespace moe_ep::ops::protocol {

void BufferReset(transport::Window& ep, OpState& state, std::span<const int32_t> reachable, bool need_sync,
                 transport::Clock::time_point deadline, const char* op) {
  // The done words of a staged dispatch go with the flags: a buffer whose readers have not all said so
  // by now is given up (ops/stage.h).
  state.dispatch_stage.Settle(ep, transport::Clock::now());
  // A retry after a timed-out sync (below) is the same reset, whose clear is done: clearing again could wipe
  // what a peer that finished this reset has sent since, for its first call of the new generation.
  if (!(need_sync && state.reset_unfinished)) ep.ClearLocal(plan::kClearedFlagCount);
  state.calls = 0;
  state.generation = 0;
  state.pair_call_open = false;
  if (!need_sync) {
    ++state.operations;  // a number of its own, above those before (communicator.h)
    // A generation no call before it used (not the group's first, nor the synced one's, nor one of the resets
    // without sync before it): late flags of a call that failed before the reset match no call after it.
    state.generation = UnsyncedGeneration(state.reset_tag, ++state.unsynced_resets);
    // A sync that timed out is abandoned (the window is cleared now): the next synced reset is a new round, with a
    // new tag every rank joins, not a retry that a peer's flag of the old round would end at once.
    state.reset_unfinished = false;
    return;
  }
  state.operations = 0;  // the sync's tag becomes the generation
  // A sync is a round of tags. Sync flags live past the cleared range (a peer's flag that lands while this rank
  // is still clearing is not lost) and only grow. A new round's tag is above every tag this rank has seen, so a
  // peer's flag from an earlier round never counts; a retry after a timed-out sync keeps its tag (the same round,
  // which peers may have finished). A rank that sees a peer's tag above its own joins that newer round: a peer
  // that finished the round this rank's retry is in may have begun the next (its next call failed, this rank
  // being behind), and waits for this rank there; finishing the old round alone would leave that peer waiting
  // for a tag never sent, and the two would time out in turn. Joining clears first (no peer can have finished
  // the newer round: each waits for this rank's tag) and signals the newer tag. The round ends when every
  // reachable rank's flag holds this rank's tag, which becomes the generation: every rank that ends a round
  // ends it with the same one, and a rank that missed rounds (it was unreachable) joins the current one.
  // A round's tag starts the count of resets without sync afresh (UnsyncedGeneration counts them from it), on a rank
  // whose round ends and on one whose round times out alike.
  if (!state.reset_unfinished) ++state.reset_tag, state.unsynced_resets = 0;
  state.reset_unfinished = true;
  std::vector<int> awaited;
  for (int peer = 0; peer < ep.size(); ++peer) {
    if (reachable[peer]) awaited.push_back(peer);
  }
  // The transport drops what a peer sent in an earlier round from here on (rows carry no round of their own), so a
  // failed operation's rows still on their way through another host never land after this round's.
  const auto signal_tag = [&] {
    ep.BeginRound(state.reset_tag);
    for (int peer : awaited) ep.Signal(peer, plan::kSyncFlagBase + ep.rank(), state.reset_tag);
  };
  signal_tag();
  const auto tag_of = [&](int peer) { return ep.ReadFlag(plan::kSyncFlagBase + peer); };
  const auto missing = [&] {
    std::vector<int> ranks;
    for (int peer : awaited) {
      if (tag_of(peer) < state.reset_tag) ranks.push_back(peer);
    }
    return ranks;
  };
  const auto round_ended = [&] {
    uint64_t newest = state.reset_tag;
    for (int peer : awaited) newest = std::max(newest, tag_of(peer));
    if (newest > state.reset_tag) {
      ep.ClearLocal(plan::kClearedFlagCount);
      state.reset_tag = newest;
      state.unsynced_resets = 0;
      signal_tag();
      return false;
    }
    return missing().empty();
  };
  transport::WaitUntil(ep, deadline, op, "the reset sync", 0, round_ended, missing);
  state.generation = state.reset_tag;
  ep.AlignBarriers(state.generation);
  state.reset_unfinished = false;
}

}  // namespace moe_ep::ops::protocol
