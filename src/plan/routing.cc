// Builds the routing plan: mask compaction, per-expert slots by prefix count (docs/semantics.md 2.5, 5.2).
#include "plan/routing.h"

#include <algorithm>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "moe_ep/error.h"
#include "plan/validate.h"

namespace moe_ep::plan {

int64_t ActiveTokenLimit(const MoeConfig& c, const uint8_t* mask) {
  if (c.mask != MaskKind::kTokens) return c.bs;
  int64_t limit = 0;
  for (int64_t t = 0; t < c.bs; ++t) limit += mask[t] ? 1 : 0;
  return limit;
}

namespace {

[[noreturn]] void BadExpertId(const MoeConfig& c, const char* op, int64_t t, int64_t k, int32_t value,
                              const std::string& rule) {
  throw Error(ErrorCode::kInvalidParam, std::string(op) + ": parameter '" + ParamNames(c, "expertIds") +
                                            "' has value " + std::to_string(value) + " at [" + std::to_string(t) +
                                            ", " + std::to_string(k) + "]; rule: " + ParamNames(c, rule));
}

// A 1-D mask whose trues do not all come first: the tokens sent would not be the ones it marks.
void CheckTokenMaskIsPrefix(const MoeConfig& c, const uint8_t* mask, const char* op) {
  if (c.mask != MaskKind::kTokens) return;
  const int64_t first_false = std::find(mask, mask + c.bs, 0) - mask;
  const int64_t late_true = std::find_if(mask + first_false, mask + c.bs, [](uint8_t m) { return m != 0; }) - mask;
  if (late_true == c.bs) return;
  throw Error(ErrorCode::kInvalidParam,
              std::string(op) + ": parameter '" + ParamNames(c, "xActiveMask") + "' has value true at [" +
                  std::to_string(late_true) + "] after false at [" + std::to_string(first_false) +
                  "]; rule: " + ParamNames(c, "a 1-D xActiveMask has all its trues before its falses"));
}

}  // namespace

void CheckRouting(const MoeConfig& c, const int32_t* expert_ids, const uint8_t* mask, const char* op) {
  CheckTokenMaskIsPrefix(c, mask, op);
  const int64_t k_num = c.top_k, token_limit = ActiveTokenLimit(c, mask);
  const std::string range = std::string("0 <= expertIds < ") +
                            (c.special_expert_num() ? "moeExpertNum + zero/copy/const experts (" : "moeExpertNum (") +
                            std::to_string(c.all_expert_num()) + ")";
  std::vector<std::pair<int32_t, int64_t>> routed;  // (MoE expert, k) of one token
  for (int64_t t = 0; t < token_limit; ++t) {
    routed.clear();
    for (int64_t k = 0; k < k_num; ++k) {
      const int64_t idx = t * k_num + k;
      if (c.mask == MaskKind::kPairs && !mask[idx]) continue;
      const int32_t e = expert_ids[idx];
      if (e < 0 || e >= c.all_expert_num()) BadExpertId(c, op, t, k, e, range);
      if (e >= c.moe_expert_num && e < c.first_special_expert()) {
        BadExpertId(c, op, t, k, e,
                    "a scaled-down group routes to the survivors' MoE experts [0, " + std::to_string(c.moe_expert_num) +
                        ") and to the special experts from moeExpertNum (" + std::to_string(c.first_special_expert()) +
                        "); the experts between left with their ranks");
      }
      if (e < c.moe_expert_num) routed.emplace_back(e, k);
    }
    // A repeated MoE expert would send a token twice to one rank, beyond the A rows the outputs hold
    // (A counts one row per token and local expert). Special experts never travel: repeats are harmless.
    std::sort(routed.begin(), routed.end());
    const auto twin = std::adjacent_find(routed.begin(), routed.end(),
                                         [](const auto& a, const auto& b) { return a.first == b.first; });
    if (twin != routed.end()) {
      BadExpertId(c, op, t, std::next(twin)->second, twin->first,
                  "a token's MoE expert ids are distinct (it is also at [" + std::to_string(t) + ", " +
                      std::to_string(twin->second) + "])");
    }
  }
}

RoutingPlan BuildRoutingPlan(const MoeConfig& c, const int32_t* expert_ids, const uint8_t* mask) {
  const int64_t k_num = c.top_k;
  RoutingPlan plan;
  plan.expert_counts.assign(c.moe_expert_num, 0);

  const int64_t token_limit = ActiveTokenLimit(c, mask);
  for (int64_t t = 0; t < token_limit; ++t) {
    bool any = false;
    for (int64_t k = 0; k < k_num; ++k) {
      const int64_t idx = t * k_num + k;
      if (c.mask == MaskKind::kPairs && !mask[idx]) continue;
      any = true;
      const int32_t e = expert_ids[idx];
      if (e >= c.moe_expert_num) continue;  // special expert: computed by combine on this rank
      plan.pairs.push_back({static_cast<int32_t>(t), static_cast<int32_t>(k), e, plan.expert_counts[e]++});
    }
    if (any) plan.valid_tokens.push_back(static_cast<int32_t>(t));
  }
  return plan;
}

}  // namespace moe_ep::plan
