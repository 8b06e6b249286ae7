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

}  // namespace moe_ep::cann
