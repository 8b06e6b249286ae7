// Elastic scale-down tables: checking one, and building one from a reachability mask.
#include "plan/elastic.h"

#include <string>
#include <string_view>

#include "base/hash.h"
#include "moe_ep/error.h"
#include "plan/validate.h"

namespace moe_ep::plan {
namespace {

// A native caller passed ExpertLayout::survivors, from which the table was made: the refusal names both.
[[noreturn]] void BadTable(const MoeConfig& c, const char* op, const std::string& entry, int64_t value,
                           const std::string& rule) {
  const std::string param =
      c.native_names ? "ExpertLayout::survivors (as elasticInfo" + entry + ")" : "elasticInfo" + entry;
  throw Error(ErrorCode::kInvalidConfig, std::string(op) + ": parameter '" + param + "' = " + std::to_string(value) +
                                             " violates rule: " + ParamNames(c, rule));
}

}  // namespace

void CheckElasticTable(const MoeConfig& c, int64_t entries, const char* op, const std::string& param,
                       const std::string& value) {
  const int64_t want = 4 + 2 * c.ep_world_size;
  const auto reject = [&](const std::string& rule) {
    throw Error(ErrorCode::kInvalidConfig,
                std::string(op) + ": parameter '" + param + "' = " + value + " violates rule: " + rule);
  };
  if (entries != want) reject("4 + 2 * epWorldSize = " + std::to_string(want) + " entries");
  if (c.has_tp()) reject("not allowed with tpWorldSize == 2");
}

ScaledDown ApplyElasticInfo(const MoeConfig& c, std::span<const int32_t> table, const char* op) {
  const int64_t e = c.ep_world_size;
  const int64_t new_e = table[1], new_s = table[2], new_moe = table[3];
  if (new_e < 1 || new_e > e)
    BadTable(c, op, "[1]", new_e, "new epWorldSize in [1, epWorldSize = " + std::to_string(e) + "]");
  if (new_s < 0 || new_s >= new_e) BadTable(c, op, "[2]", new_s, "new sharedExpertRankNum in [0, new epWorldSize)");
  if (new_moe < 0 || new_moe != c.local_expert_num() * (new_e - new_s)) {
    BadTable(c, op, "[3]", new_moe,
             "new moeExpertNum = localExpertNum (" + std::to_string(c.local_expert_num()) +
                 ") * (new epWorldSize - new sharedExpertRankNum): experts per rank stay");
  }
  if (c.shared_expert_num > 0 ? new_s % c.shared_expert_num != 0 || new_s == 0 : new_s != 0) {
    BadTable(c, op, "[2]", new_s,
             c.shared_expert_num > 0
                 ? "a non-zero multiple of sharedExpertNum (" + std::to_string(c.shared_expert_num) +
                       "): every shared expert keeps at least one rank"
                 : "0 when there are no shared experts");
  }
  const auto table1 = table.subspan(4, e), table2 = table.subspan(4 + e, e);
  // Shared expert i is served by the shared ranks i * R' .. (i + 1) * R' - 1 of the new numbering (R' = new S / n_s
  // ranks each; MoeConfig::SharedRank): each must be a rank that held expert i (old rank / R = i).
  const int64_t old_replicas = c.shared_replicas();
  const int64_t new_replicas = c.shared_expert_num > 0 ? new_s / c.shared_expert_num : 1;
  ScaledDown out;
  for (int64_t r = 0; r < new_e; ++r) {
    const int32_t old = table2[r];
    if (old < 0 || old >= e || table1[old] != r) {
      BadTable(c, op, "[4 + E + " + std::to_string(r) + "]", old, "Table2[new] = old rank with Table1[old] = new");
    }
    if ((r < new_s) != (old < c.shared_expert_rank_num)) {
      BadTable(c, op, "[4 + E + " + std::to_string(r) + "]", old, "a rank keeps its role (shared or MoE)");
    }
    if (r < new_s && old / old_replicas != r / new_replicas) {
      BadTable(c, op, "[4 + E + " + std::to_string(r) + "]", old,
               "a shared rank keeps its shared expert: new rank " + std::to_string(r) + " serves shared expert " +
                   std::to_string(r / new_replicas) +
                   " (new sharedExpertRankNum / sharedExpertNum = " + std::to_string(new_replicas) +
                   " ranks each), and old rank " + std::to_string(old) + " held shared expert " +
                   std::to_string(old / old_replicas) + "; every shared expert keeps as many ranks as the others");
    }
    out.physical.push_back(old);
  }
  // The other direction too: a rank that left must say so (-1), or it would receive as a survivor's
  // double.
  for (int64_t old = 0; old < e; ++old) {
    const int32_t r = table1[old];
    if (r != -1 && (r < 0 || r >= new_e || table2[r] != old)) {
      BadTable(c, op, "[4 + " + std::to_string(old) + "]", r,
               "Table1[old] = -1 for a rank that left, else the new rank n with Table2[n] = old");
    }
  }
  const int32_t new_rank = table1[c.ep_rank];
  if (new_rank < 0 || new_rank >= new_e) {
    BadTable(c, op, "[4 + " + std::to_string(c.ep_rank) + "]", new_rank,
             "this rank (epRankId " + std::to_string(c.ep_rank) + ") must be one of the survivors");
  }
  out.config = c;
  out.config.survivors = hash::Fnv1a(
      std::string_view(reinterpret_cast<const char*>(out.physical.data()), out.physical.size() * sizeof(int)));
  out.config.ep_world_size = new_e;
  out.config.shared_expert_rank_num = new_s;
  out.config.moe_expert_num = new_moe;
  out.config.retired_expert_num = c.moe_expert_num - new_moe;
  out.config.ep_rank = new_rank;
  if (c.global_bs != 0) out.config.global_bs = c.global_bs / e * new_e;  // maxBs stays
  return out;
}

std::vector<int32_t> ElasticInfoFor(const MoeConfig& c, std::span<const int32_t> reachable) {
  const int64_t e = c.ep_world_size;
  std::vector<int32_t> table(4 + 2 * e, -1);
  int32_t new_e = 0, new_s = 0;
  for (int64_t r = 0; r < e; ++r) {
    if (!reachable[r]) continue;
    table[4 + r] = new_e;
    table[4 + e + new_e] = static_cast<int32_t>(r);
    ++new_e;
    if (r < c.shared_expert_rank_num) ++new_s;
  }
  table[0] = new_e < e ? 1 : 0;
  table[1] = new_e;
  table[2] = new_s;
  table[3] = static_cast<int32_t>(c.local_expert_num() * (new_e - new_s));
  return table;
}

}  // namespace moe_ep::plan
