// aclnnMoeDistributeBufferReset (docs/semantics.md 4.2): elasticInfo is a 0/1 link mask of epWorldSize entries;
// epWorldSize in [16, 128] and a multiple of 16, needSync 0 or 1; clears this rank's window and, with
// needSync, waits for the reachable ranks to have cleared theirs.
#include <cstring>
#include <utility>
#include <vector>

#include "aclnnop/aclnn_moe_distribute_buffer_reset.h"
#include "cann/aclnn/executor.h"
#include "cann/aclnn/op_args.h"
#include "cann/guard.h"
#include "cann/runtime/runtime.h"
#include "ops/tensor_access.h"

namespace moe_ep::cann {
namespace {

constexpr char kOp[] = "aclnnMoeDistributeBufferReset";

OpWork BuildBufferReset(const aclTensor* elastic_info, const char* group_ep, int32_t ep_world_size, int32_t need_sync) {
  const std::string op = kOp;
  if (!elastic_info) Reject(ErrorCode::kNullPointer, op, "elasticInfo", "nullptr", "this tensor is required");
  if (!group_ep) Reject(ErrorCode::kNullPointer, op, "groupEp", "nullptr", "a group name is required");
  const size_t name_length = GroupNameLength(group_ep);
  if (name_length == 0 || name_length >= kGroupNameMax) {
    Reject(ErrorCode::kInvalidParam, op, "groupEp", GroupNameLengthText(name_length), "length in [1, 128)");
  }
  RequireA3(op);  // registered for Atlas A3 only: the A2 kernel lookup fails
  // Its document lists a format outside the supported ND as 161002 (the MoE operators' tiling makes it 561002).
  if (IsLiveTensor(elastic_info) && elastic_info->format == ACL_FORMAT_FRACTAL_NZ)
    Reject(ErrorCode::kInvalidParam, op, "elasticInfo", "format FRACTAL_NZ", "format must be ND");
  const TensorView mask = RequiredTensor(op, "elasticInfo", elastic_info);
  if (mask.dtype != DType::kInt32)
    Reject(ErrorCode::kInvalidParam, op, "elasticInfo", DTypeName(mask.dtype), "dtype must be int32");
  if (ep_world_size < 16 || ep_world_size > 128 || ep_world_size % 16 != 0) {
    Reject(ErrorCode::kInvalidConfig, op, "epWorldSize", std::to_string(ep_world_size),
           "in [16, 128] and a multiple of 16");
  }
  if (need_sync != 0 && need_sync != 1)
    Reject(ErrorCode::kInvalidConfig, op, "needSync", std::to_string(need_sync), "0 or 1");
  if (mask.dim() != 1 || mask.shape[0] != ep_world_size) {
    Reject(ErrorCode::kInvalidConfig, op, "elasticInfo", mask.Describe(),
           "shape must be (epWorldSize,) = (" + std::to_string(ep_world_size) + ",)");
  }
  const Groups groups = FindGroups(group_ep, "", false);
  plan::MoeConfig c;
  c.ep_world_size = ep_world_size;
  RequireGroups(op, groups, c, group_ep, "", /*takes_rank=*/false);
  auto work = [groups, mask, need_sync] {
    // Read when the reset runs: earlier work on the stream may have written the mask.
    const std::vector<int32_t> reachable = ops::GatherInt32(mask);
    for (size_t r = 0; r < reachable.size(); ++r) {
      if (reachable[r] != 0 && reachable[r] != 1) {
        Reject(ErrorCode::kInvalidConfig, kOp, "elasticInfo[" + std::to_string(r) + "]", std::to_string(reachable[r]),
               "a link mask holds 0 or 1");
      }
    }
    ops::RunBufferReset(EpOf(groups), reachable, need_sync == 1, kOp);
  };
  return {std::move(work), [groups] { RequireUndestroyed(kOp, groups); }};
}

}  // namespace
}  // namespace moe_ep::cann

using moe_ep::cann::ApiFamily;
using moe_ep::cann::Guarded;

extern "C" {

aclnnStatus aclnnMoeDistributeBufferResetGetWorkspaceSize(const aclTensor* elasticInfo, const char* groupEp,
                                                          int32_t epWorldSize, int32_t needSync,
                                                          uint64_t* workspaceSize, aclOpExecutor** executor) {
  return Guarded("aclnnMoeDistributeBufferResetGetWorkspaceSize", ApiFamily::kAclnn, [&] {
    return moe_ep::cann::BuildExecutor(moe_ep::cann::kOp, workspaceSize, executor, [&] {
      return moe_ep::cann::BuildBufferReset(elasticInfo, groupEp, epWorldSize, needSync);
    });
  });
}

aclnnStatus aclnnMoeDistributeBufferReset(void*, uint64_t, aclOpExecutor* executor, aclrtStream stream) {
  return Guarded("aclnnMoeDistributeBufferReset", ApiFamily::kAclnn,
                 [&] { return moe_ep::cann::LaunchExecutor(moe_ep::cann::kOp, executor, stream); });
}

}  // extern "C"
