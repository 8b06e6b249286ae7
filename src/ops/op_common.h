// Small pieces every operation shares: the parity half / flag base / epoch of a call, and the
// mapping from tensor dtypes to kernel half types.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "moe_ep/error.h"
#include "moe_ep/tensor.h"
#include "ops/communicator.h"
#include "plan/layout.h"
#include "transport/window.h"

namespace moe_ep::ops {

/// Where one call of an operation lives in a window: its parity, data half, flag half and epoch tag.
struct CallSlot {
  uint64_t parity;
  uint64_t half_offset;
  uint64_t flag_base;
  uint32_t epoch;
};

/// The epoch tag of call `call` (0-based) after the synced reset that began `generation`: the call index plus
/// `generation` times a constant near 2^32 / golden ratio, into 32 bits (transport::EpochOf, never 0). Calls of one
/// generation repeat a tag only after 2^32 - 1 calls (a flag one call wrote and the next 2^32 - 2 left alone is still
/// never taken for a later call's); two calls of neighbouring generations share a tag only if one of the two made 1.6
/// billion calls, of generations up to 255 apart 8 million (the tags were generation << 24 + call, and the next
/// generation met this one's at call 2^24): a stalled rank's late flags from before a reset do not match a call after
/// it.
inline uint32_t CallEpoch(uint64_t generation, uint64_t call) {
  return static_cast<uint32_t>(transport::EpochOf(call + generation * 0x9E3779B9u));
}

/// The generation of the calls after the `n`th reset without sync (n >= 1) since the synced reset that began generation
/// `synced`: alike on every rank that made as many, and one no earlier call of the group used, so that a late flag of
/// a call that failed before the reset (the group's first generation included) never matches a call after it. Below
/// 2^32 - 1 (CallEpoch's product stays within 64 bits); for up to 128 such resets, the calls of these generations and
/// of synced generations up to 8 apart meet only after 2.6 million calls (the stride was searched for that;
/// OpState.UnsyncedGenerationsMeetNoNeighbour checks their first 2^16).
inline uint64_t UnsyncedGeneration(uint64_t synced, uint64_t n) {
  constexpr uint64_t kStride = 1623658818;  // searched for: the least such distance of strides tried, the largest
  return (synced + n * kStride) % 0xFFFFFFFFu;
}

/// Claims the next call on window `w` (dispatch and combine share one count) for an operation whose flags start at
/// `flag_region` with `flags_per_half` per half.
inline CallSlot NextCall(const transport::Window& w, OpState& state, uint64_t flag_region, uint64_t flags_per_half) {
  ++state.operations;
  const uint64_t call = state.calls++, parity = call & 1;
  return {parity, parity * (w.data_bytes() / 2), flag_region + parity * flags_per_half,
          CallEpoch(state.generation, call)};
}

/// The flag in which `rank` tells a peer it has started `call` (dispatch: with its attribute fingerprint). Every call,
/// of either operation, waits for every peer's before it returns, so no rank starts call n + 2 before every peer has
/// finished call n, whatever operations they are: two halves suffice (docs/protocol.md, "Double buffering").
inline uint64_t StartFlag(const CallSlot& call, int64_t rank) {
  return plan::kStartFlagBase + call.parity * plan::kMaxSyncFlags + static_cast<uint64_t>(rank);
}

/// What a start flag counts: its operation's attribute fingerprint (ops/agreement.h), with this bit set for a
/// dispatch and clear for a combine. A peer's start of the other operation at a call's index means the two ranks'
/// calls are out of step.
inline constexpr uint32_t kDispatchStartBit = 0x80000000u;

/// Tells ranks [0, `ranks`) of `w` that `rank` has started `call`, with `value` (its attribute fingerprint).
inline void SignalStart(transport::Window& w, int64_t ranks, int64_t rank, const CallSlot& call, uint32_t value) {
  const uint64_t flag = transport::MakeFlag(call.epoch, value);
  for (int64_t peer = 0; peer < ranks; ++peer) w.Signal(static_cast<int>(peer), StartFlag(call, rank), flag);
}

/// Waits until every rank of `c`'s EP group has started `call` in `w` (`what` names the wait should it time out), and
/// returns what each started with. A peer's start of the other operation throws 500002 (the ranks' calls are out of
/// step: the group needs a reset).
inline std::vector<uint32_t> WaitForStarts(const plan::MoeConfig& c, const transport::Window& w, const CallSlot& call,
                                           transport::Clock::time_point deadline, bool this_is_dispatch,
                                           const char* what) {
  const int64_t ranks = c.ep_world_size;
  const char* op = c.op.c_str();
  std::vector<uint64_t> indices;
  for (int64_t peer = 0; peer < ranks; ++peer) indices.push_back(StartFlag(call, peer));
  transport::WaitFlags(
      w, indices, call.epoch, deadline, [&](uint64_t idx) { return static_cast<int>(idx - StartFlag(call, 0)); }, op,
      what);
  std::vector<uint32_t> starts;
  for (int64_t peer = 0; peer < ranks; ++peer) {
    starts.push_back(transport::FlagCount(w.ReadFlag(indices[peer])));
    if (static_cast<bool>(starts.back() & kDispatchStartBit) == this_is_dispatch) continue;
    throw Error(ErrorCode::kInternal,
                std::string(op) + ": rank " + std::to_string(peer) + " of " + w.name() + " runs " +
                    (this_is_dispatch ? "a combine" : "a dispatch") + " as call " + std::to_string(call.epoch) +
                    ", where rank " + std::to_string(w.rank()) + " runs " +
                    (this_is_dispatch ? "a dispatch" : "a combine") +
                    ": the ranks' calls are out of step (one refused or skipped a call the others made); rule: every "
                    "rank of a group makes the same calls in the same order, and after such a failure the ranks call "
                    "BufferReset (aclnnMoeDistributeBufferReset in the C API)");
  }
  return starts;
}

inline kernels::Half HalfOf(DType d) { return d == DType::kFp16 ? kernels::Half::kFp16 : kernels::Half::kBf16; }

}  // namespace moe_ep::ops
