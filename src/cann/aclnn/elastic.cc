// elasticInfo checks for the V3 operators.
#include "cann/aclnn/elastic.h"

#include "cann/aclnn/op_args.h"

namespace moe_ep::cann {

void CheckElasticInfo(const std::string& op, const TensorView& elastic, const plan::MoeConfig& c) {
  if (!elastic.present()) return;
  if (elastic.dtype != DType::kInt32) {
    Reject(ErrorCode::kInvalidParam, op, "elasticInfo", DTypeName(elastic.dtype), "dtype must be int32");
  }
  const int64_t want = 4 + 2 * c.ep_world_size;
  if (elastic.dim() != 1 || elastic.shape[0] != want) {
    Reject(ErrorCode::kInvalidConfig, op, "elasticInfo", elastic.Describe(),
           "shape must be (4 + 2 * epWorldSize,) = (" + std::to_string(want) + ",)");
  }
  if (c.has_tp()) Reject(ErrorCode::kInvalidConfig, op, "elasticInfo", elastic.Describe(), "not allowed with tpWorldSize == 2");
}

void RequireNotScaledDown(const TensorView& elastic) {
  if (!elastic.present()) return;
  const int32_t scaled_down = *static_cast<const int32_t*>(elastic.data);
  if (scaled_down != 0) {
    throw Error(ErrorCode::kInvalidConfig,
                "elasticInfo[0] (isScaledDown) = " + std::to_string(scaled_down) +
                    ": elastic scale-down is not supported by this moe_ep build yet; pass isScaledDown = 0");
  }
}

}  // namespace moe_ep::cann
