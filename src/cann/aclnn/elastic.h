// elasticInfo of the V3 operators (SPEC 2.8): its layout rules, checked in phase one, and its contents,
// read when the operation runs (the tensor may be written by earlier work on the stream).
#pragma once

#include <string>

#include "moe_ep/tensor.h"
#include "plan/config.h"

namespace moe_ep::cann {

/// INT32, 1-D, 4 + 2 * epWorldSize entries, and no TP (561002 / 161002 otherwise). Absent is fine.
void CheckElasticInfo(const std::string& op, const TensorView& elastic, const plan::MoeConfig& config);

/// At run time: a table with isScaledDown == 0 runs as V2. Scale-down itself (elastic recovery) is
/// not implemented yet: it fails with 561002 saying so instead of computing anything wrong.
void RequireNotScaledDown(const TensorView& elastic);

}  // namespace moe_ep::cann
