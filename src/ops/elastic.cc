// Elastic scale-down: the survivors run the unchanged operations on a renumbered window.
#include "ops/elastic.h"

#include <algorithm>
#include <string>
#include <vector>

#include "moe_ep/error.h"
#include "plan/elastic.h"
#include "transport/remapped_window.h"

namespace moe_ep::ops {

std::optional<plan::ScaledDown> ScaledDownBy(const plan::MoeConfig& config, std::span<const int32_t> elastic_info) {
  const char* op = config.op.c_str();
  if (elastic_info.empty() || elastic_info[0] == 0) return std::nullopt;
  if (elastic_info[0] != 1) {
    throw Error(ErrorCode::kInvalidConfig, std::string(op) + ": parameter 'elasticInfo[0]' = " +
                                               std::to_string(elastic_info[0]) + " violates rule: 0 or 1");
  }
  return plan::ApplyElasticInfo(config, elastic_info, op);
}

std::vector<int> LeftOut(const std::optional<plan::ScaledDown>& scaled, int world) {
  std::vector<int> left_out;
  if (!scaled) return left_out;
  for (int r = 0; r < world; ++r) {
    if (std::find(scaled->physical.begin(), scaled->physical.end(), r) == scaled->physical.end()) left_out.push_back(r);
  }
  return left_out;
}

void RunElastic(const plan::MoeConfig& config, const std::optional<plan::ScaledDown>& scaled,
                const protocol::Link& link,
                const std::function<void(const plan::MoeConfig&, const protocol::Link&)>& body) {
  if (!scaled) {
    body(config, link);
    return;
  }
  transport::RemappedWindow survivors(link.ep, static_cast<int>(scaled->config.ep_rank), scaled->physical);
  const protocol::Link scaled_link{survivors,     link.ep_state,       nullptr,     nullptr,
                                   link.deadline, link.pull_min_bytes, link.workers};
  try {
    body(scaled->config, scaled_link);
  } catch (const TimeoutError& e) {
    if (e.missing_ranks().empty()) throw;  // nothing to renumber (an interrupt as the worker threads ran)
    std::vector<int> original;
    std::string list;
    for (int r : e.missing_ranks()) {
      original.push_back(scaled->physical[r]);
      list += (list.empty() ? "" : ", ") + std::to_string(scaled->physical[r]);
    }
    transport::ThrowRenumbered(e,
                               std::string(e.what()) +
                                   " [the ranks waited for are in the scaled-down numbering; original ranks: " + list +
                                   "]",
                               original);
  }
}

}  // namespace moe_ep::ops
