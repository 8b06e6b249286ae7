// Running an operation under an elasticInfo table (docs/semantics.md 2.8): when it is scaled down, the survivors'
// configuration and a renumbered view of the window; deadline errors still name the original ranks.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "ops/protocol.h"
#include "plan/config.h"
#include "plan/elastic.h"

namespace moe_ep::ops {

/// The survivors' configuration and numbering when `elastic_info` scales down (entry 0 == 1); nullopt when it is
/// empty or entry 0 is 0. Throws Error (561002) for a table the operators cannot honour (plan::ApplyElasticInfo).
std::optional<plan::ScaledDown> ScaledDownBy(const plan::MoeConfig& config, std::span<const int32_t> elastic_info);

/// The ranks of a group of `world` that `scaled` leaves out (none when it is nullopt): gone for the operation, so
/// that a transport neither relays through them nor waits for them, whether or not they ever failed.
std::vector<int> LeftOut(const std::optional<plan::ScaledDown>& scaled, int world);

/// Calls body(config, link) unchanged when `scaled` is nullopt, else body(survivors' config, a link over the
/// renumbered EP window). A TimeoutError names original ranks.
void RunElastic(const plan::MoeConfig& config, const std::optional<plan::ScaledDown>& scaled,
                const protocol::Link& link,
                const std::function<void(const plan::MoeConfig&, const protocol::Link&)>& body);

}  // namespace moe_ep::ops
