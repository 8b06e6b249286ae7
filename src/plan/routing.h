// Routing plan of one dispatch: which (token, k) pairs are sent where, in which slot (docs/semantics.md 2.1, 2.5, 5.2).
#pragma once

#include <cstdint>
#include <vector>

#include "plan/config.h"

namespace moe_ep::plan {

/// One (token, k) pair sent to a MoE expert.
struct RoutedPair {
  int32_t token;   // original row index in x
  int32_t k;       // top-k index
  int32_t expert;  // global MoE expert id, < moe_expert_num
  int32_t slot;    // #earlier pairs (flattened t*K+k order) routed to the same expert
};

struct RoutingPlan {
  std::vector<int32_t> valid_tokens;   // tokens that take part, ascending; shared slot = position here
  std::vector<RoutedPair> pairs;       // valid pairs to MoE experts in flattened (t*K + k) order
  std::vector<int32_t> expert_counts;  // pairs per MoE expert
};

/// Tokens that take part under a 1-D mask: the kernel takes tokens [0, sum(mask)), so "true must be a
/// prefix" (docs/semantics.md 2.5); all Bs tokens under no mask or a 2-D one. `mask` holds Bs or Bs*K bytes.
int64_t ActiveTokenLimit(const MoeConfig& config, const uint8_t* mask);

/// The routing inputs as dispatch and combine both demand them: a 1-D mask (Bs bytes) has its trues
/// before its falses (docs/semantics.md 2.5: the kernel would take tokens [0, sum(mask)) whatever their
/// bits), and the expert ids of the active (token, k) pairs (contiguous, bs*K; mask: Bs or Bs*K bytes, or
/// nullptr) are each in [0, all_expert_num()) and none is a retired expert of a scale-down
/// ([moe_expert_num, first_special_expert())), a token's MoE experts distinct (docs/semantics.md 2.1, 2.8).
/// Throws Error (161002) naming `op` and the first offending element otherwise.
void CheckRouting(const MoeConfig& config, const int32_t* expert_ids, const uint8_t* mask, const char* op);

/// Builds the plan from inputs that passed CheckRouting. Pairs to special experts take part
/// (they make their token valid) but are not routed.
RoutingPlan BuildRoutingPlan(const MoeConfig& config, const int32_t* expert_ids, const uint8_t* mask);

}  // namespace moe_ep::plan
