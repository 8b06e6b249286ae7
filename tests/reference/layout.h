// Who receives what, in which order (docs/semantics.md 2.1-2.6): the dispatch layout of one EP group, as plain lists.
// Dispatch fills these rows with payloads; combine uses them to find where each (token, k) was sent.
#pragma once

#include <cstdint>
#include <vector>

#include "reference/reference.h"

namespace moe_ref::layout {

// The job's dimensions in docs/semantics.md notation (section 0), checked for consistency.
struct Dims {
  int E = 0;      // ep_world_size
  int tp = 1;     // tp_world_size (1 or 2)
  int moe = 0;    // moe_expert_num
  int n_s = 0;    // shared_expert_num (0 when S == 0, docs/semantics.md 1.2)
  int S = 0;      // shared_expert_rank_num
  int R = 1;      // S / n_s: ranks per shared expert
  int L = 0;      // moe / (E - S): experts per MoE rank
  int K = 0;      // top_k
  int64_t H = 0;  // hidden
  int zero = 0;   // zero_expert_num   (ids [moe, moe + zero))
  int copy = 0;   // copy_expert_num   (ids [moe + zero, moe + zero + copy))
  int cnst = 0;   // const_expert_num  (ids [moe + zero + copy, moe + zero + copy + cnst))

  int GlobalRank(int tp_rank, int ep_rank) const { return tp_rank * E + ep_rank; }
  bool IsSharedRank(int ep_rank) const { return ep_rank < S; }
  int TotalExperts() const { return moe + zero + copy + cnst; }  // valid ids: [0, TotalExperts())
};

// Derives and checks the dimensions; throws std::invalid_argument on an inconsistent config or a wrong
// number of ranks (inputs must hold E * tp ranks).
Dims MakeDims(const Config& config, const std::vector<RankInput>& inputs);

// Which tokens and (t, k) pairs of one rank take part (docs/semantics.md 2.5).
struct Routing {
  std::vector<uint8_t> token_active;  // bs: sent to the shared experts, combined on return (by the mask alone)
  std::vector<uint8_t> pair_active;   // bs * K: token active and pair unmasked (any expert, special included)
  std::vector<uint8_t> pair_sent;     // bs * K: pair_active and expert id in [0, moe) (special experts: never)
};
// Throws std::invalid_argument when an active pair's expert id is outside [0, moe + zero + copy + const).
Routing RouteRank(const Dims& dims, const RankInput& input);

// One row received in the EP all-to-all.
struct Row {
  int src = 0;         // EP rank of the sender (the triple's srcRank, numbered inside the EP group)
  int token = 0;       // index of the token in the sender's x (original, not compacted)
  int k_idx = 0;       // k for a MoE expert, K + i for shared expert i
  int smooth_row = 0;  // smooth-scale row (docs/semantics.md 2.4): n_s + e for MoE expert e, i for shared expert i
};

// What one rank receives from its own EP group (before any TP all-gather).
struct EpResult {
  std::vector<Row> rows;                   // expandX order, docs/semantics.md 2.2
  std::vector<int32_t> ep_recv_counts;     // E * L (MoE rank) or E (shared rank), inclusive cumulative
  std::vector<int64_t> expert_token_nums;  // L (MoE rank) or 1 (shared rank), docs/semantics.md 2.3
};

// The EP results of every rank of EP group `tp_rank`, indexed by EP rank.
std::vector<EpResult> LayoutEpGroup(const Config& config, const Dims& dims, const std::vector<RankInput>& inputs,
                                    int tp_rank);

}  // namespace moe_ref::layout
