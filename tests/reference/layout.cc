// Dispatch layout of one EP group (docs/semantics.md 2.1-2.6), computed the obvious way: bucket every sent pair by
// (expert, source rank), then read the buckets out in the order of docs/semantics.md 2.2.
#include "reference/layout.h"

#include <stdexcept>
#include <string>

namespace moe_ref::layout {
namespace {

void Require(bool condition, const std::string& message) {
  if (!condition) throw std::invalid_argument("moe_ref: " + message);
}

void CheckRankInput(const Config& config, const Dims& dims, const RankInput& input, int rank) {
  const std::string who = "rank " + std::to_string(rank) + ": ";
  Require(input.bs >= 0, who + "bs < 0");
  Require(static_cast<int64_t>(input.x.size()) == input.bs * dims.H, who + "x must hold bs * H values");
  Require(static_cast<int64_t>(input.expert_ids.size()) == input.bs * dims.K,
          who + "expert_ids must hold bs * K values");
  if (input.mask_kind == MaskKind::kTokens) {
    Require(static_cast<int64_t>(input.mask.size()) == input.bs, who + "a token mask must hold bs values");
  } else if (input.mask_kind == MaskKind::kPairs) {
    Require(static_cast<int64_t>(input.mask.size()) == input.bs * dims.K, who + "a pair mask must hold bs * K values");
  }
  if (config.a2) Require(input.mask_kind != MaskKind::kPairs, who + "A2 takes no 2-D (pair) mask");
  if (config.quant_mode == 2 && !input.smooth_scales.empty()) {
    Require(static_cast<int64_t>(input.smooth_scales.size()) == (dims.n_s + dims.moe) * dims.H,
            who + "smooth_scales must hold (n_s + moe) * H values");
  }
}

// Shared-expert rank d (docs/semantics.md 2.2, 2.6): shared expert i = d / R receives, from every source src with
// src % R == d % R (ascending), that source's active tokens in index order, with kIdx = K + i.
EpResult LayoutSharedRank(const Dims& dims, const std::vector<Routing>& routings, int d) {
  EpResult result;
  const int shared_expert = d / dims.R;
  result.ep_recv_counts.assign(dims.E, 0);
  for (int src = 0; src < dims.E; ++src) {
    if (src % dims.R == d % dims.R) {
      const std::vector<uint8_t>& active = routings[src].token_active;
      for (int t = 0; t < static_cast<int>(active.size()); ++t) {
        if (active[t]) result.rows.push_back(Row{src, t, dims.K + shared_expert, shared_expert});
      }
    }
    result.ep_recv_counts[src] = static_cast<int32_t>(result.rows.size());  // inclusive cumulative (2.3)
  }
  result.expert_token_nums = {static_cast<int64_t>(result.rows.size())};  // shared ranks: [total] (2.3)
  return result;
}

// expertTokenNums of a MoE rank from its cumulative epRecvCounts (docs/semantics.md 2.3): c_e = rows of local expert e;
// type 0 gives the inclusive prefix sums of c_e, type 1 gives c_e. (With L == 1 both are [total].)
std::vector<int64_t> ExpertTokenNums(const Dims& dims, const std::vector<int32_t>& ep_recv_counts, int type) {
  std::vector<int64_t> nums(dims.L, 0);
  int64_t previous_end = 0;
  for (int e = 0; e < dims.L; ++e) {
    const int64_t end = ep_recv_counts[e * dims.E + dims.E - 1];
    nums[e] = type == 0 ? end : end - previous_end;
    previous_end = end;
  }
  return nums;
}

// MoE rank d (docs/semantics.md 2.2): by local expert, then by source rank ascending, then the source's flattened
// (t * K + k) order. buckets[e][src] already holds the last level in that order.
EpResult LayoutMoeRank(const Config& config, const Dims& dims,
                       const std::vector<std::vector<std::vector<Row>>>& buckets, int d) {
  EpResult result;
  result.ep_recv_counts.assign(static_cast<size_t>(dims.E) * dims.L, 0);
  for (int e_local = 0; e_local < dims.L; ++e_local) {
    const int expert = (d - dims.S) * dims.L + e_local;
    for (int src = 0; src < dims.E; ++src) {
      const std::vector<Row>& bucket = buckets[expert][src];
      result.rows.insert(result.rows.end(), bucket.begin(), bucket.end());
      // Status index e_local * E + src; inclusive cumulative over the whole rank-local vector (2.3).
      result.ep_recv_counts[e_local * dims.E + src] = static_cast<int32_t>(result.rows.size());
    }
  }
  result.expert_token_nums = ExpertTokenNums(dims, result.ep_recv_counts, config.expert_token_nums_type);
  return result;
}

}  // namespace

Dims MakeDims(const Config& config, const std::vector<RankInput>& inputs) {
  Dims dims;
  dims.E = config.ep_world_size;
  dims.tp = config.tp_world_size == 0 ? 1 : config.tp_world_size;  // CANN's tp 0 means "no TP", like 1
  dims.moe = config.moe_expert_num;
  dims.S = config.shared_expert_rank_num;
  // docs/semantics.md 1.2: shared_expert_num defaults to 1 and is silently set to 0 when S == 0.
  dims.n_s = (dims.S == 0 && config.shared_expert_num == 1) ? 0 : config.shared_expert_num;
  dims.K = config.top_k;
  dims.H = config.hidden;
  dims.zero = config.zero_expert_num;
  dims.copy = config.copy_expert_num;
  dims.cnst = config.const_expert_num;
  Require(dims.E >= 1, "ep_world_size must be >= 1");
  Require(dims.tp == 1 || dims.tp == 2, "tp_world_size must be 0, 1 or 2");
  Require(dims.S >= 0 && dims.S < dims.E, "shared_expert_rank_num must be in [0, E)");
  Require((dims.n_s == 0) == (dims.S == 0),
          "shared_expert_num and shared_expert_rank_num must be both zero or both set");
  Require(dims.n_s == 0 || dims.S % dims.n_s == 0, "shared_expert_rank_num must be a multiple of shared_expert_num");
  dims.R = dims.n_s == 0 ? 1 : dims.S / dims.n_s;
  Require(dims.moe >= 1 && dims.moe % (dims.E - dims.S) == 0, "moe_expert_num must be a positive multiple of E - S");
  dims.L = dims.moe / (dims.E - dims.S);
  Require(dims.zero >= 0 && dims.copy >= 0 && dims.cnst >= 0,
          "zero_expert_num, copy_expert_num and const_expert_num must be >= 0");
  Require(dims.K >= 1, "top_k must be >= 1");
  Require(dims.H >= 1, "hidden must be >= 1");
  Require(config.quant_mode == 0 || config.quant_mode == 2, "quant_mode must be 0 or 2");
  Require(config.expert_token_nums_type == 0 || config.expert_token_nums_type == 1,
          "expert_token_nums_type must be 0 or 1");
  Require(config.comm_quant_mode == 0 || config.comm_quant_mode == 2, "comm_quant_mode must be 0 or 2");
  if (config.a2) {
    // A2 (docs/semantics.md 1.2): TP and shared experts are forced off, and there are no const experts.
    Require(dims.tp == 1, "A2 has no TP: tp_world_size must be 0 or 1");
    Require(dims.S == 0 && dims.n_s == 0,
            "A2 has no shared experts: shared_expert_rank_num and shared_expert_num must be 0");
    Require(dims.cnst == 0, "A2 has no const experts: const_expert_num must be 0");
  }
  Require(static_cast<int64_t>(inputs.size()) == static_cast<int64_t>(dims.E) * dims.tp,
          "inputs must hold ep_world_size * tp_world_size ranks");
  for (size_t g = 0; g < inputs.size(); ++g) CheckRankInput(config, dims, inputs[g], static_cast<int>(g));
  return dims;
}

Routing RouteRank(const Dims& dims, const RankInput& input) {
  Routing routing;
  const int64_t bs = input.bs;
  routing.token_active.assign(bs, 0);
  routing.pair_active.assign(bs * dims.K, 0);
  routing.pair_sent.assign(bs * dims.K, 0);
  // Which tokens are active and which (t, k) pairs the mask lets through (docs/semantics.md 2.5).
  std::vector<uint8_t> pair_unmasked(bs * dims.K, 1);
  if (input.mask_kind == MaskKind::kNone) {
    routing.token_active.assign(bs, 1);
  } else if (input.mask_kind == MaskKind::kTokens) {
    // 1-D: c = sum(mask) and tokens [0, c) are active (the true values must form a prefix).
    int64_t count = 0;
    for (int64_t t = 0; t < bs; ++t) count += input.mask[t] ? 1 : 0;
    for (int64_t t = 0; t < count; ++t) routing.token_active[t] = 1;
  } else {
    // 2-D: pair (t, k) is sent iff mask[t, k]; token t is active iff any of its pairs is.
    for (int64_t t = 0; t < bs; ++t) {
      for (int k = 0; k < dims.K; ++k) {
        pair_unmasked[t * dims.K + k] = input.mask[t * dims.K + k] ? 1 : 0;
        if (pair_unmasked[t * dims.K + k]) routing.token_active[t] = 1;
      }
    }
  }
  // docs/semantics.md 2.1 / 2.8: a pair takes part by the mask alone; of those, only ids in [0, moe) are sent (zero,
  // copy and const experts, ids [moe, moe + zero + copy + const), are computed by combine on the owner).
  for (int64_t t = 0; t < bs; ++t) {
    for (int k = 0; k < dims.K; ++k) {
      const int64_t pair = t * dims.K + k;
      const int32_t expert = input.expert_ids[pair];
      routing.pair_active[pair] = routing.token_active[t] && pair_unmasked[pair];
      if (!routing.pair_active[pair]) continue;
      Require(expert >= 0 && expert < dims.TotalExperts(), "expert id " + std::to_string(expert) + " of token " +
                                                               std::to_string(t) + " k " + std::to_string(k) +
                                                               " is outside [0, moe + zero + copy + const)");
      routing.pair_sent[pair] = expert < dims.moe;
    }
  }
  return routing;
}

std::vector<EpResult> LayoutEpGroup(const Config& config, const Dims& dims, const std::vector<RankInput>& inputs,
                                    int tp_rank) {
  std::vector<Routing> routings;
  for (int src = 0; src < dims.E; ++src) routings.push_back(RouteRank(dims, inputs[dims.GlobalRank(tp_rank, src)]));

  // buckets[e][src]: the pairs of source src sent to MoE expert e, in src's flattened (t * K + k) order.
  std::vector<std::vector<std::vector<Row>>> buckets(dims.moe, std::vector<std::vector<Row>>(dims.E));
  for (int src = 0; src < dims.E; ++src) {
    const RankInput& input = inputs[dims.GlobalRank(tp_rank, src)];
    for (int64_t t = 0; t < input.bs; ++t) {
      for (int k = 0; k < dims.K; ++k) {
        const int64_t pair = t * dims.K + k;
        if (!routings[src].pair_sent[pair]) continue;
        const int expert = input.expert_ids[pair];
        buckets[expert][src].push_back(Row{src, static_cast<int>(t), k, dims.n_s + expert});
      }
    }
  }

  std::vector<EpResult> results;
  for (int d = 0; d < dims.E; ++d) {
    results.push_back(dims.IsSharedRank(d) ? LayoutSharedRank(dims, routings, d)
                                           : LayoutMoeRank(config, dims, buckets, d));
  }
  return results;
}

}  // namespace moe_ref::layout
