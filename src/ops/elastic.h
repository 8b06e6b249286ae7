// Running an operation under an elasticInfo table (docs/semantics.md 2.8): when it is scaled down, the survivors'
// configuration and a renumbered view of the window; deadline errors still name the original ranks.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "ops/protocol.h"
#include "plan/config.h"

namespace moe_ep::ops {

/// Calls body(config, link) unchanged when `elastic_info` is empty or not scaled down (entry 0 == 0),
/// else body(survivors' config, a link over the renumbered EP window). Throws Error (561002) for a table
/// the operators cannot honour (plan::ApplyElasticInfo) and TimeoutError naming original ranks.
void RunElastic(const plan::MoeConfig& config, std::span<const int32_t> elastic_info, const protocol::Link& link,
                const char* op, const std::function<void(const plan::MoeConfig&, const protocol::Link&)>& body);

}  // namespace moe_ep::ops
