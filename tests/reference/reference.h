// The independent reference: a naive global-view model of docs/semantics.md (all ranks' inputs in, all ranks'
// expected outputs out). It shares no code with src/ and favours obviousness over speed: it is the
// judge every test compares the library against, bit for bit.
#pragma once

#include <cstdint>
#include <vector>

namespace moe_ref {

enum class DType { kBf16, kFp16 };

// One job's configuration. Ranks are numbered globally g = tp_rank * ep_world_size + ep_rank: each
// EP group (ranks with the same tp_rank) is contiguous. With tp_world_size == 2 rank (ep, 0) and
// rank (ep, 1) form a TP pair.
struct Config {
  int ep_world_size = 2;   // E
  int tp_world_size = 1;   // 1 (no TP) or 2
  int moe_expert_num = 2;  // MoE experts, L = moe / (E - S) per MoE rank
  // V3 special experts (docs/semantics.md 2.8 / 3.2). Expert ids are partitioned: [0, moe) MoE experts,
  // [moe, moe + zero) zero experts, [moe + zero, moe + zero + copy) copy experts,
  // [moe + zero + copy, moe + zero + copy + const) const experts (const index c = e - moe - zero - copy).
  // Special experts are never dispatched; combine computes them locally on the token owner.
  int zero_expert_num = 0;
  int copy_expert_num = 0;
  int const_expert_num = 0;
  int shared_expert_num = 0;       // n_s
  int shared_expert_rank_num = 0;  // S: ranks [0, S) host shared experts
  int top_k = 1;                   // K
  int hidden = 8;                  // H
  int64_t global_bs = 0;           // 0 => Bs * E (all ranks have the same Bs)
  DType dtype = DType::kBf16;
  int quant_mode = 0;              // dispatch: 0 none, 2 dynamic int8
  int expert_token_nums_type = 1;  // 0 cumulative, 1 per expert
  int comm_quant_mode = 0;         // combine: 0 none, 2 int8 blocks of 8
  float norm_eps = 1e-6f;          // CombineAddRmsNorm
  // Atlas A2 fullmesh layout (docs/semantics.md 1.2, "A2"). A2 has no TP and no shared experts:
  // requires tp_world_size 0 or 1 (CANN's 0 means "no TP"), no shared experts (shared_expert_rank_num 0,
  // so shared_expert_num 0, or the op-def default 1 which then means none), const_expert_num 0 (zero and
  // copy experts are allowed) and masks of kind kNone or kTokens; a violation throws std::invalid_argument.
  // Dispatch: expandX, dynamic_scales, ep_recv_counts and expert_token_nums as on A3, but no triples
  // (assist_info stays empty); expand_idx is filled instead. Combine: as on A3 except that
  // shared_expert_x is ignored. CombineAddRmsNorm does not exist on A2 (throws).
  bool a2 = false;
};

enum class MaskKind { kNone, kTokens, kPairs };

// One rank's dispatch-side inputs (also the routing that combine uses).
struct RankInput {
  int64_t bs = 0;
  std::vector<uint16_t> x;          // bs * H raw bf16/fp16 bits, row-major
  std::vector<int32_t> expert_ids;  // bs * K; ids of the pairs that take part must lie in
                                    // [0, moe + zero + copy + const)
  MaskKind mask_kind = MaskKind::kNone;
  std::vector<uint8_t> mask;         // bs (kTokens, true values form a prefix) or bs * K (kPairs), 0/1
  std::vector<float> smooth_scales;  // (n_s + moe) * H, or empty; only used when quant_mode == 2
                                     // (the model quantizes with the SENDING rank's smooth_scales)
};

// One rank's expected dispatch outputs. Only the first `rows` rows are defined; the library must leave
// every later row of its output buffers untouched.
struct DispatchOut {
  int64_t rows = 0;                        // own EP rows + (TP) peer's rows
  std::vector<uint16_t> expand_x;          // rows * H (quant_mode 0; empty in quant_mode 2)
  std::vector<int8_t> expand_x_q;          // rows * H (quant_mode 2; empty in quant_mode 0)
  std::vector<float> dynamic_scales;       // rows (quant_mode 2; empty in quant_mode 0)
  std::vector<int32_t> assist_info;        // 3 * rows: (srcRank, tokenIdx, kIdx) per row (A2: empty); the operator
                                           // writes the first 3 * own_rows (the TP peer's rows carry none)
  int64_t own_rows = 0;                    // rows of this rank's EP group (rows without TP)
  std::vector<int64_t> expert_token_nums;  // L on MoE ranks, 1 on shared ranks
  std::vector<int32_t> ep_recv_counts;     // E*L (MoE) or E (shared), times tp_world_size
  std::vector<int32_t> tp_recv_counts;     // tp_world_size entries (empty without TP)
  // A2 only (A3: empty). Filled on the token-owning (sending) rank, activeBs * K entries, activeBs = bs or,
  // with a 1-D mask, the number of true entries. For i = t * K + k < activeBs * K with MoE expert
  // e = expert_ids[i] < moe: the number of earlier i' < i on this rank with expert_ids[i'] == e (the
  // pair's position among this rank's pairs sent to e); special experts (zero / copy, ids >= moe): 0.
  // The library leaves entries >= activeBs * K of its buffer untouched.
  std::vector<int32_t> expand_idx;
};

std::vector<DispatchOut> Dispatch(const Config& config, const std::vector<RankInput>& inputs);

// One rank's combine-side inputs. `expert_out` holds the expert outputs for the rows of that rank's
// dispatch result, in the same order (row i of expert_out is the output for dispatch row i).
struct CombineInput {
  std::vector<uint16_t> expert_out;       // DispatchOut.rows * H, dtype bits
  std::vector<float> expert_scales;       // bs * K
  std::vector<uint16_t> shared_expert_x;  // bs * H, or empty; ignored with a2 (the A2 kernel never reads it)
  std::vector<uint16_t> residual_x;       // bs * H bf16 (CombineAddRmsNorm only)
  std::vector<uint16_t> gamma;            // H bf16 (CombineAddRmsNorm only)
  // Special experts (docs/semantics.md 3.2), all in the combine dtype (bf16/fp16 bits):
  std::vector<uint16_t> ori_x;         // bs * H (copy and const experts); may be empty when copy == const == 0
  std::vector<uint16_t> const_alpha1;  // const_expert_num x H: the const expert's softmax of oriX . alpha_i[c]
  std::vector<uint16_t> const_alpha2;  // const_expert_num x H (docs/semantics.md 3.2)
  std::vector<uint16_t> const_v;       // const_expert_num * H (V), row-major
};

struct CombineOut {
  std::vector<uint8_t> written;  // bs: 1 where the token is active and its output rows are written
  std::vector<uint16_t> x;       // bs * H; rows with written == 0 are unspecified (library: untouched)
  std::vector<uint16_t> y;       // bs * H (CombineAddRmsNorm only)
  std::vector<float> rstd;       // bs (CombineAddRmsNorm only)
};

// CombineV2: `inputs` is the same routing that was dispatched, `combine_inputs` per rank.
std::vector<CombineOut> Combine(const Config& config, const std::vector<RankInput>& inputs,
                                const std::vector<CombineInput>& combine_inputs);
// CombineAddRmsNorm (bf16 only, A3 only: throws std::invalid_argument with a2): x, y and rstd per rank.
std::vector<CombineOut> CombineAddRmsNorm(const Config& config, const std::vector<RankInput>& inputs,
                                          const std::vector<CombineInput>& combine_inputs);

}  // namespace moe_ref
