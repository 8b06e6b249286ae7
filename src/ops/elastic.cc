// Elastic scale-down: the survivors run the unchanged operations on a renumbered window.
#include "ops/elastic.h"

#include <string>
#include <vector>

#include "moe_ep/error.h"
#include "plan/elastic.h"
#include "transport/remapped_window.h"

namespace moe_ep::ops {

void RunElastic(const plan::MoeConfig& config, std::span<const int32_t> elastic_info, const protocol::Link& link,
                const char* op, const std::function<void(const plan::MoeConfig&, const protocol::Link&)>& body) {
  if (elastic_info.empty() || elastic_info[0] == 0) {
    body(config, link);
    return;
  }
  if (elastic_info[0] != 1) {
    throw Error(ErrorCode::kInvalidConfig, std::string(op) + ": parameter 'elasticInfo[0]' = " +
                                               std::to_string(elastic_info[0]) + " violates rule: 0 or 1");
  }
  const plan::ScaledDown scaled = plan::ApplyElasticInfo(config, elastic_info, op);
  transport::RemappedWindow survivors(link.ep, static_cast<int>(scaled.config.ep_rank), scaled.physical);
  const protocol::Link scaled_link{survivors,     link.ep_state,       nullptr,     nullptr,
                                   link.deadline, link.pull_min_bytes, link.workers};
  try {
    body(scaled.config, scaled_link);
  } catch (const TimeoutError& e) {
    std::vector<int> original;
    std::string list;
    for (int r : e.missing_ranks()) {
      original.push_back(scaled.physical[r]);
      list += (list.empty() ? "" : ", ") + std::to_string(scaled.physical[r]);
    }
    transport::ThrowRenumbered(
        e, std::string(e.what()) + " [ranks above are in the scaled-down numbering; original ranks: " + list + "]",
        original);
  }
}

}  // namespace moe_ep::ops
