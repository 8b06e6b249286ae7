// Elastic scale-down (docs/semantics.md 2.8): the elasticInfo table [isScaledDown, newE, newS, newMoe, Table1[E]
// (old rank -> new rank or -1), Table2[E] (new rank -> old rank)] turned into the configuration the
// survivors run with, after checking that the table is one the operators can honour.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "plan/config.h"

namespace moe_ep::plan {

struct ScaledDown {
  MoeConfig config;           // E, S, moeExpertNum, epRankId and globalBs of the survivors
  std::vector<int> physical;  // new rank -> old rank (Table2[0, newE))
};

/// docs/semantics.md 2.8's layout rules for a table of `entries` values: 4 + 2 * epWorldSize of them, and no TP.
/// Throws Error (561002) naming `param` with `value` (how the caller shows the table).
void CheckElasticTable(const MoeConfig& config, int64_t entries, const char* op, const std::string& param,
                       const std::string& value);

/// For a table with isScaledDown == 1: the survivors' configuration. Throws Error (561002) naming the
/// entry when the table is inconsistent: newE outside [1, E], this rank dropped, Table1 / Table2 not
/// inverse to each other (in both directions), experts per MoE rank changed, a rank's role (shared /
/// MoE) changed, or a shared expert left without a rank.
ScaledDown ApplyElasticInfo(const MoeConfig& original, std::span<const int32_t> table, const char* op);

/// Builds the table for survivors `reachable` (E entries of 0/1): survivors keep their order, shared
/// ranks stay shared, each MoE rank keeps its number of experts (docs/semantics.md 2.8).
std::vector<int32_t> ElasticInfoFor(const MoeConfig& original, std::span<const int32_t> reachable);

}  // namespace moe_ep::plan
