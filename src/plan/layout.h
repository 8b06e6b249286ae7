// Window layout of docs/semantics.md 1.2 / 5.1: sizes A, slot strides and area offsets, computed by one struct
// that both sizes the window (the rule checked at validation) and places every payload in it.
#pragma once

#include <cstdint>

#include "plan/config.h"

namespace moe_ep::plan {

inline constexpr uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Flag (status) area: fixed regions of 64-bit flags, indexed by a flag number.
inline constexpr uint64_t kMaxDispatchFlags = uint64_t{1} << 20;  // per parity: E*L (MoE) or E (shared)
inline constexpr uint64_t kMaxCombineFlags = uint64_t{1} << 22;   // per parity: maxBs * (K + n_s)
inline constexpr uint64_t kMaxSyncFlags = uint64_t{1} << 16;      // one per rank (barrier, reset sync)
inline constexpr uint64_t kDispatchFlagBase = 0;
inline constexpr uint64_t kCombineFlagBase = 2 * kMaxDispatchFlags;
// The pull data path's flags (ops/pull.h): per parity, kPullFields per rank, dispatch's then combine's.
inline constexpr uint64_t kPullFields = 16;
inline constexpr uint64_t kMaxPullFlags = kPullFields * kMaxSyncFlags;  // per parity
inline constexpr uint64_t kDispatchPullFlagBase = kCombineFlagBase + 2 * kMaxCombineFlags;
inline constexpr uint64_t kCombinePullFlagBase = kDispatchPullFlagBase + 2 * kMaxPullFlags;
// Atlas A2's combine (docs/a2.md): per parity, two per token owner: where its rows from this expert rank start
// and end among its slots.
inline constexpr uint64_t kCombineBaseFlagsPerHalf = 2 * kMaxSyncFlags;
inline constexpr uint64_t kCombineBaseFlagBase = kCombinePullFlagBase + 2 * kMaxPullFlags;
// Per parity, per rank: that the rank has started a call (dispatch: with its attribute fingerprint).
inline constexpr uint64_t kStartFlagBase = kCombineBaseFlagBase + 2 * kCombineBaseFlagsPerHalf;
inline constexpr uint64_t kSyncFlagBase = kStartFlagBase + 2 * kMaxSyncFlags;
inline constexpr uint64_t kFlagCount = kSyncFlagBase + kMaxSyncFlags;  // the transport's flags follow
// BufferReset clears flags [0, kSyncFlagBase): the sync flags survive so a reset can itself sync. Everything else
// goes, attribute fingerprints included: a reset without sync starts the call epochs again at 1, which a peer's
// fingerprint of the calls before would match.
inline constexpr uint64_t kClearedFlagCount = kSyncFlagBase;

/// The layout of one call's payloads in the EP window (per parity half) and in the TP window.
struct WindowLayout {
  explicit WindowLayout(const MoeConfig& config);

  // Row geometry.
  int64_t hidden = 0;
  uint64_t dispatch_token_bytes = 0;    // H * sizeof(expandX dtype): int8 with quant, else 2
  uint64_t dispatch_scale_offset = 0;   // Align32(token bytes): fp32 dynamic scale
  uint64_t dispatch_triple_offset = 0;  // scale + 32: int32 (srcRank, tokenIdx, kIdx)
  uint64_t dispatch_slot_bytes = 0;     // tokD = Align512(Align32(2H) + 44)
  uint64_t combine_slot_bytes = 0;      // tokC = Align512(2H)
  // Combine's wire format: a row of H halves, or with commQuantMode 2 int8[Align32(H)] followed by
  // ceil(H/8) half scales at combine_scale_offset.
  uint64_t combine_payload_bytes = 0;
  uint64_t combine_scale_offset = 0;

  // Counts.
  int64_t max_bs = 0;
  int64_t combine_slots_per_token = 0;  // K + n_s
  int64_t dispatch_blocks = 0;          // E*L (the rule sizes every rank for E*L blocks)
  int64_t a = 0;                        // A: rows this rank can receive from its EP group

  // EP window, offsets inside a parity half.
  uint64_t combine_area_bytes = 0;    // maxBs * (K + n_s) * tokC, at offset 0
  uint64_t dispatch_area_offset = 0;  // == combine_area_bytes
  uint64_t ep_half_bytes = 0;         // combine area + E*L*maxBs*tokD
  uint64_t ep_window_bytes = 0;       // 2 * ep_half_bytes: the HCCL_BUFFSIZE rule of docs/semantics.md 1.2

  // TP window (tp == 2), offsets inside a parity half: A dispatch slots then A combine slots.
  uint64_t tp_combine_offset = 0;
  uint64_t tp_half_bytes = 0;
  uint64_t tp_window_bytes = 0;  // 2 * A * (tokD + tokC)

  /// Byte offset (inside a half) of slot `slot` of dispatch block `block` = src*L + e_local (shared: src).
  uint64_t DispatchSlotOffset(int64_t block, int64_t slot) const {
    return dispatch_area_offset + (static_cast<uint64_t>(block) * max_bs + slot) * dispatch_slot_bytes;
  }
  /// Byte offset (inside a half) of combine slot t * (K + n_s) + k.
  uint64_t CombineSlotOffset(int64_t slot) const { return static_cast<uint64_t>(slot) * combine_slot_bytes; }
};

/// A: maxBs*ceil(E/R) on shared ranks, globalBs*min(L,K) on MoE ranks, the larger of the two on every
/// rank under elasticInfo (docs/semantics.md 1.2). Saturates instead of overflowing.
int64_t ReceiveRows(const MoeConfig& config);

/// The sizes of dispatch's outputs: what validation demands and what the native API allocates.
struct DispatchOutputSizes {
  int64_t rows = 0;                // expandX and dynamicScales rows: tp * A
  int64_t assist_entries = 0;      // assistInfoForCombine: 3 * A (own rows' triples), Bs * K (expandIdx)
  int64_t token_num_entries = 0;   // expertTokenNums: L, or 1 on a shared-expert rank
  int64_t recv_count_entries = 0;  // epRecvCounts: receive_entries() * tp
};
DispatchOutputSizes OutputSizesOf(const MoeConfig& config);

}  // namespace moe_ep::plan
