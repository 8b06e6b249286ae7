// The attributes of one dispatch or combine call (CANN's names in comments) and the limits profile
// that decides which product rules apply.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "moe_ep/tensor.h"

namespace moe_ep::plan {

/// Which product limits validation enforces (docs/semantics.md 0: native relaxes them, the C API enforces A3,
/// or Atlas A2's with commAlg "fullmesh" or "hierarchy" (docs/a2.md)).
enum class Profile : uint8_t { kNative, kA3, kA2Fullmesh, kA2Hierarchy };
inline bool IsA2(Profile p) { return p == Profile::kA2Fullmesh || p == Profile::kA2Hierarchy; }

/// What dispatch's assistInfoForCombine holds and combine reads back: Atlas A3's (srcRank, tokenIdx, kIdx)
/// per received row, or Atlas A2's expandIdx per sent (token, k) pair (docs/a2.md).
enum class AssistLayout : uint8_t { kTriples, kExpandIdx };

enum class MaskKind : uint8_t { kNone, kTokens, kPairs };  // xActiveMask absent, (Bs,), (Bs,K)

/// Everything a rank needs to agree on with its peers plus its own shapes.
struct MoeConfig {
  // group
  int64_t ep_world_size = 0;  // epWorldSize (E)
  int64_t ep_rank = 0;        // epRankId
  int64_t tp_world_size = 0;  // tpWorldSize: 0 or 1 = no TP, 2 = TP pair
  int64_t tp_rank = 0;        // tpRankId
  // experts
  int64_t moe_expert_num = 0;          // moeExpertNum
  int64_t shared_expert_num = 0;       // sharedExpertNum (n_s), 0 when shared_expert_rank_num == 0
  int64_t shared_expert_rank_num = 0;  // sharedExpertRankNum (S)
  int64_t expert_shard_type = 0;       // expertShardType (must be 0)
  int64_t zero_expert_num = 0;         // zeroExpertNum (V3): ids from first_special_expert() contribute nothing
  int64_t copy_expert_num = 0;         // copyExpertNum (V3): next ids return oriX
  int64_t const_expert_num = 0;        // constExpertNum (V3): next ids return alpha1*oriX + alpha2*V
  // Scaled down: the MoE experts that left with their ranks (moeExpertNum - the new moe). Their ids,
  // [moe, moe + retired), route nowhere, and the special experts keep theirs, counted from the moeExpertNum
  // attribute as the combine kernels count them (docs/semantics.md 2.8). 0 otherwise.
  int64_t retired_expert_num = 0;
  // tokens
  int64_t bs = 0;                // local tokens (x.dim0)
  int64_t hidden = 0;            // H
  int64_t top_k = 0;             // K
  int64_t global_bs = 0;         // globalBs: 0 => bs * E
  DType x_dtype = DType::kBf16;  // bf16 or fp16
  MaskKind mask = MaskKind::kNone;
  // dispatch
  int64_t quant_mode = 0;              // 0 or 2
  int64_t expert_token_nums_type = 1;  // 0 cumulative, 1 per expert
  // combine
  int64_t comm_quant_mode = 0;  // 0 or 2
  // elasticInfo given (V3, or native survivors): outputs are sized for either role (docs/semantics.md 1.2)
  bool elastic = false;
  // Scaled down: a hash of the survivors' old ranks in their new order (Table2), which every survivor must agree on
  // (tables that differ but are each valid would route rows to other ranks' experts); 0 otherwise.
  uint64_t survivors = 0;
  AssistLayout assist = AssistLayout::kTriples;
  // Who called, as refusals made while the operation runs name it: "Dispatch", "CombineAddRmsNorm" (the native API),
  // "aclnnMoeDistributeDispatchV2" (the C API).
  std::string op;
  // Called through the native API: refusals name its parameters (ParamNames), not CANN's.
  bool native_names = false;

  bool expand_idx() const { return assist == AssistLayout::kExpandIdx; }

  /// Special experts are computed on the token's owner in combine and never travel (docs/semantics.md 2.8).
  int64_t special_expert_num() const { return zero_expert_num + copy_expert_num + const_expert_num; }
  /// The first special expert's id (zero, then copy, then const experts follow it).
  int64_t first_special_expert() const { return moe_expert_num + retired_expert_num; }
  /// One past the largest expert id.
  int64_t all_expert_num() const { return first_special_expert() + special_expert_num(); }
  bool has_tp() const { return tp_world_size == 2; }
  int64_t tp_size() const { return has_tp() ? 2 : 1; }
  bool has_shared() const { return shared_expert_rank_num > 0; }
  bool is_shared_rank() const { return ep_rank < shared_expert_rank_num; }
  int64_t moe_rank_num() const { return ep_world_size - shared_expert_rank_num; }
  /// L: experts per MoE rank.
  int64_t local_expert_num() const { return moe_expert_num / moe_rank_num(); }
  /// Entries of epRecvCounts per TP rank: one per (local expert, source rank) on a MoE rank, one per
  /// source rank on a shared-expert rank (docs/semantics.md 2.3).
  int64_t receive_entries() const { return is_shared_rank() ? ep_world_size : ep_world_size * local_expert_num(); }
  /// Entries of expertTokenNums: L on a MoE rank, 1 on a shared-expert rank.
  int64_t token_num_entries() const { return is_shared_rank() ? 1 : local_expert_num(); }
  /// The entries of the count tensors as CANN sizes them: for the rank's role, or under elasticInfo (which can move
  /// a rank from one role to the other) for either role: epRecvCounts / epSendCounts max(E, E * L) per TP rank and
  /// expertTokenNums max(L, 1). A call writes its role's entries first.
  int64_t sized_receive_entries() const {
    return elastic ? std::max(ep_world_size, ep_world_size * local_expert_num()) : receive_entries();
  }
  int64_t sized_token_num_entries() const {
    return elastic ? std::max<int64_t>(local_expert_num(), 1) : token_num_entries();
  }
  /// R: ranks per shared expert.
  int64_t shared_replicas() const { return has_shared() ? shared_expert_rank_num / shared_expert_num : 1; }
  /// maxBs = globalBs / E (globalBs == 0 => bs).
  int64_t max_bs() const { return global_bs == 0 ? bs : global_bs / ep_world_size; }
  int64_t effective_global_bs() const { return global_bs == 0 ? bs * ep_world_size : global_bs; }
  /// Rank hosting MoE expert e.
  int64_t ExpertRank(int64_t e) const { return e / local_expert_num() + shared_expert_rank_num; }
  /// Shared rank that serves shared expert i for this rank.
  int64_t SharedRank(int64_t i, int64_t src_rank) const { return i * shared_replicas() + src_rank % shared_replicas(); }
};

}  // namespace moe_ep::plan
