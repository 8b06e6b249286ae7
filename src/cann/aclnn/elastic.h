// elasticInfo of the V3 operators (SPEC 2.8): its layout rules, checked in phase one. Its contents are
// read when the operation runs (earlier work on the stream may write them): ops/elastic.h.
#pragma once

#include <string>

#include "moe_ep/tensor.h"
#include "plan/config.h"

namespace moe_ep::cann {

/// INT32, 1-D, 4 + 2 * epWorldSize entries, and no TP (561002 / 161002 otherwise). Absent is fine.
void CheckElasticInfo(const std::string& op, const TensorView& elastic, const plan::MoeConfig& config);

}  // namespace moe_ep::cann
