// The native operations: dispatch tokens to their experts, combine expert outputs back, reset buffers.
// Semantics are those of the CANN operators (docs/semantics.md): same layouts, counts and arithmetic, bit for bit.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "moe_ep/group.h"
#include "moe_ep/tensor.h"

// The public API: exported from libmoe_ep, whose other symbols are hidden.
#pragma GCC visibility push(default)
namespace moe_ep {

/// How experts are placed; must be the same on every rank and in dispatch and combine.
struct ExpertLayout {
  int64_t moe_expert_num = 0;          ///< routed experts, spread evenly over ranks [S, E)
  int64_t shared_expert_num = 0;       ///< shared experts (n_s), each replicated on S / n_s ranks
  int64_t shared_expert_rank_num = 0;  ///< ranks [0, S) host the shared experts
  int64_t global_bs = 0;               ///< 0: every rank has the same Bs; else max Bs * E (unequal Bs)
  /// Special experts (CANN V3): ids [moe, moe+zero) add nothing, the next copy_expert_num ids add the
  /// token itself (CombineOptions::ori_x), the next const_expert_num ids add p1*ori_x + p2*V, with
  /// (p1, p2) the softmax of the dot products of ori_x with alpha1 and alpha2 (CombineOptions).
  /// They never travel: combine computes them on the token's owner.
  int64_t zero_expert_num = 0;
  int64_t copy_expert_num = 0;
  int64_t const_expert_num = 0;
  /// Elastic scale-down (CANN V3's elasticInfo, docs/semantics.md 2.8): empty (every rank takes part), or
  /// one 0/1 entry per rank of the EP group, as ProbeReachable returns it. The operations then run among
  /// the ranks marked 1, renumbered 0..E'-1 in order; shared-expert ranks stay shared and each MoE rank
  /// keeps its experts (routed expert ids then index the survivors' experts, [0, L * MoE survivors); the special
  /// experts keep their ids from moe_expert_num, and the ids between are refused). Every shared expert must keep as
  /// many ranks as the others (each shared rank then keeps its shared expert). Call BufferReset(ep, survivors) first;
  /// this rank must be one of them, and there is no TP group.
  std::vector<int32_t> survivors;
};

enum class Quant : int64_t {
  kNone = 0,         ///< rows travel in their bf16 / fp16 type
  kDynamicInt8 = 2,  ///< per-row dynamic int8 (dispatch quantMode 2) / 8-value blocks (combine commQuantMode 2)
};

/// Everything of a dispatch besides x and the expert ids.
struct DispatchOptions {
  ExpertLayout experts;
  Quant quant = Quant::kNone;
  /// expertTokenNumsType: false (1) = tokens per local expert, true (0) = cumulative.
  bool cumulative_token_nums = false;
  TensorView smooth_scales;  ///< optional fp32 (n_s + moe, H), with Quant::kDynamicInt8
  TensorView active_mask;    ///< optional bool (Bs,) prefix of active tokens, or (Bs, K) active pairs
  /// Atlas A2's layout (docs/a2.md): assist_info holds expandIdx, one int32 per (token, k) of this rank (Bs*K:
  /// its place among this rank's pairs to the same expert) instead of a triple per received row. Needs no TP
  /// group, no shared experts, no const experts, no survivors and no 2-D active_mask, and its combine takes no
  /// shared_expert_x and cannot be CombineAddRmsNormInto (Atlas A2 has none of them); the handle carries it to
  /// combine.
  bool expand_idx_layout = false;
};

/// Caller-provided dispatch outputs. Rows past the received total are left untouched. Outputs may be strided
/// (each is then written through a contiguous copy: two more copies of it) but their elements must not overlap,
/// and no output may share memory with another or with an input (peers read the inputs while outputs are written).
struct DispatchOutputs {
  TensorView expand_x;           ///< (>= tp*A, H): x's dtype, or int8 with quantization
  TensorView dynamic_scales;     ///< (>= tp*A,) fp32, with quantization
  TensorView assist_info;        ///< (>= 3*A,) int32: (srcRank, tokenIdx, kIdx) per row of this rank's EP group (the TP
                                 ///< peer's rows have none); expandIdx: (>= Bs*K,)
  TensorView expert_token_nums;  ///< (L,) int64, (1,) on shared-expert ranks; (L,) on every rank with survivors (a
                                 ///< shared-expert rank's one count, then 0)
  TensorView ep_recv_counts;     ///< (E*L*tp,) or (E*tp,) int32, inclusive cumulative (scaled down: the
                                 ///< survivors' entries, then 0)
  TensorView tp_recv_counts;     ///< (tp,) int32 (tp = 1 without a TP group); written only with a TP pair
};

/// What combine needs from dispatch: the routing and where every received row came from.
struct DispatchHandle {
  ExpertLayout experts;
  int64_t bs = 0, hidden = 0, top_k = 0;
  DType dtype = DType::kBf16;      ///< x's (with quantization too): combine takes expert outputs of this dtype only
  int64_t num_rows = 0;            ///< rows of expand_x that hold tokens (own + TP peer's)
  Tensor expert_ids;               ///< copy of the (Bs, K) routing
  Tensor active_mask;              ///< copy of the mask, or empty
  Tensor assist_info;              ///< copy of the triples (or, with expand_idx_layout, of the Bs*K expandIdx)
  bool expand_idx_layout = false;  ///< DispatchOptions::expand_idx_layout of the dispatch
  Tensor ep_recv_counts;           ///< copy of the counts
  Tensor tp_recv_counts;           ///< copy of the TP counts
  uint64_t tp_pair = 0;            ///< set by Dispatch: which Group its TP pair was (0: none); combine takes that
                                   ///< one only (a handle made by hand, 0, with 2 tp_recv_counts: any pair)
  uint64_t ep_group = 0;           ///< set by Dispatch: which Group it ran on; combine takes that one only (0, a
                                   ///< handle made by hand: any)
};

/// Dispatch results: outputs allocated by moe_ep, plus the handle.
struct DispatchResult {
  Tensor expand_x;        ///< rows [0, handle.num_rows) are defined
  Tensor dynamic_scales;  ///< with quantization
  Tensor expert_token_nums;
  DispatchHandle handle;
};

/// Rows A that a rank of `ep` may receive from its EP group (docs/semantics.md 1.2); outputs need tp*A rows.
int64_t DispatchReceiveRows(const Group& ep, int64_t bs, int64_t top_k, const ExpertLayout& experts);

/// Element counts of the dispatch outputs on this rank for these inputs: what Dispatch allocates and
/// DispatchInto needs (expand_x has `rows` rows, dynamic_scales `rows` entries). Validates the inputs, and
/// that the group's window holds the call.
struct DispatchSizes {
  int64_t rows = 0;                ///< tp * A
  int64_t assist_entries = 0;      ///< 3 * A (expand_idx_layout: Bs * K)
  int64_t token_num_entries = 0;   ///< expert_token_nums
  int64_t recv_count_entries = 0;  ///< ep_recv_counts
};
DispatchSizes DispatchOutputSizes(const Group& ep, const TensorView& x, const TensorView& expert_ids,
                                  const DispatchOptions& options, const Group* tp = nullptr);

/// [collective over ep (and tp)] Sends every token of x (Bs, H) to its top-K experts (expert_ids (Bs, K)
/// int32) and to the shared experts. `tp` is the rank's TP pair (2 ranks) or nullptr.
/// Once a call returns, its caller may overwrite or free x (combine: expert_out): no peer reads them any more. After
/// a call that failed, one caveat: it waits at most 10 s for the peers copying its rows, and a peer held up longer in
/// the middle of its copy (a debugger, SIGSTOP) may read them later; keep that memory until a BufferReset with
/// need_sync among those peers returned (thread ranks read it in place: freed memory could crash them).
DispatchResult Dispatch(Group& ep, const TensorView& x, const TensorView& expert_ids, const DispatchOptions& options,
                        Group* tp = nullptr);
/// [collective] As Dispatch, writing into caller buffers; returns the handle.
DispatchHandle DispatchInto(Group& ep, const TensorView& x, const TensorView& expert_ids,
                            const DispatchOptions& options, const DispatchOutputs& outputs, Group* tp = nullptr);

/// Everything of a combine besides the expert outputs and weights.
struct CombineOptions {
  Quant comm_quant = Quant::kNone;  ///< int8 on the wire (not with TP)
  TensorView shared_expert_x;       ///< optional (Bs, H): added unweighted to every token's sum
  TensorView ori_x;                 ///< (Bs, H) tokens before the experts: needed by copy / const experts
  /// (const_expert_num, H) x's dtype: const expert c = p1*ori_x + p2*V[c], (p1, p2) = softmax(ori_x . alpha1[c],
  /// ori_x . alpha2[c]) (docs/semantics.md 3.2)
  TensorView const_alpha1;
  TensorView const_alpha2;  ///< (const_expert_num, H) x's dtype
  TensorView const_v;       ///< (const_expert_num, H) x's dtype
};

/// [collective] Returns expert outputs (rows of dispatch's expand_x, same order, x's dtype) to their
/// tokens and sums them: x[t] = sum_k w[t,k] * out(t,k) + shared outputs + shared_expert_x. Rows of
/// inactive tokens are left as allocated (zero) / untouched (Into variant; x_out may share no memory with an
/// input: peers read expert_out in place). `tp`: the TP pair the handle's dispatch ran with, none when it ran
/// without one (anything else is refused).
Tensor Combine(Group& ep, const DispatchHandle& handle, const TensorView& expert_out, const TensorView& expert_scales,
               const CombineOptions& options = {}, Group* tp = nullptr);
void CombineInto(Group& ep, const DispatchHandle& handle, const TensorView& expert_out, const TensorView& expert_scales,
                 const CombineOptions& options, const TensorView& x_out, Group* tp = nullptr);

/// Outputs of CombineAddRmsNorm, each (Bs, 1, H) bf16 except rstd (Bs, 1, 1) fp32.
struct AddRmsNormOutputs {
  TensorView y, rstd, x;
};
/// [collective] Combine, then x = sum + residual_x; y = RMSNorm(x) * gamma (bf16 only, docs/semantics.md 3.5);
/// norm_eps finite and >= 0.
void CombineAddRmsNormInto(Group& ep, const DispatchHandle& handle, const TensorView& expert_out,
                           const TensorView& expert_scales, const TensorView& residual_x, const TensorView& gamma,
                           float norm_eps, const CombineOptions& options, const AddRmsNormOutputs& outputs,
                           Group* tp = nullptr);

/// [collective over the live ranks] Which ranks of `ep` are alive: each calls ProbeReachable, and the
/// ranks that all did so within `wait` (0 or less: the group timeout; at most 2^31 ms) of each other are marked 1
/// (docs/semantics.md 4.3: ElasticReceivableTest + InfoCollect). One 0/1 entry per rank; a dead or stalled rank is 0.
/// Each call is a round of its own, met by one call on every peer. It may run beside an operation on the group (a
/// watchdog thread's); two threads' probes of one rank run one after the other.
std::vector<int32_t> ProbeReachable(Group& ep, std::chrono::milliseconds wait = std::chrono::milliseconds(0));

/// [collective over every rank of ep, failed ones included] Returns once every rank of `ep` has called
/// Barrier (a round trip of the group's transport); a rank that has not within the group timeout makes it
/// throw TimeoutError naming that rank, which failed_ranks() then lists.
void Barrier(Group& ep);

/// [collective over the ranks marked reachable] Clears this rank's window (parity back to 0). With
/// need_sync, waits until every reachable rank has cleared its own. `reachable` has one 0/1 entry per
/// rank; empty means all ranks. After a call with a TP pair failed on a rank before the pair's exchange was done there
/// (or was refused because the rank's EP group awaited a reset), its calls with that pair are refused (kInvalidConfig)
/// until both ranks of the pair have reset it too (BufferReset of the pair's group): the pair numbers its calls apart
/// from the EP groups, and may be out of step (docs/validation.md, "After a run-time data error").
void BufferReset(Group& ep, std::span<const int32_t> reachable = {}, bool need_sync = true);

}  // namespace moe_ep
#pragma GCC visibility pop
