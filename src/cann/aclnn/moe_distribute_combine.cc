// aclnnMoeDistributeCombineV2 / V3 / AddRmsNorm / AddRmsNormV2: docs/semantics.md 1.1 wrapper checks (161001,
// group-name lengths 161002), dtypes (161002), the A3 or A2 (docs/a2.md) tiling rules (561002), then the engine's
// combine on the stream.
#include <cstring>
#include <utility>

#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v3.h"
#include "cann/aclnn/executor.h"
#include "cann/aclnn/op_args.h"
#include "cann/guard.h"
#include "ops/tensor_access.h"

namespace moe_ep::cann {
namespace {

// Phase one's arguments by their CANN names (each variant leaves the others' own ones absent).
struct CombineArgs {
  const aclTensor* expand_x = nullptr;
  const aclTensor* expert_ids = nullptr;
  const aclTensor* assist_info = nullptr;
  const aclTensor* ep_send_counts = nullptr;
  const aclTensor* expert_scales = nullptr;
  const aclTensor* residual_x = nullptr;  // AddRmsNorm
  const aclTensor* gamma = nullptr;       // AddRmsNorm
  const aclTensor* tp_send_counts = nullptr;
  const aclTensor* x_active_mask = nullptr;
  const aclTensor* activation_scale = nullptr;
  const aclTensor* weight_scale = nullptr;
  const aclTensor* group_list = nullptr;
  const aclTensor* expand_scales = nullptr;
  const aclTensor* shared_expert_x = nullptr;
  const aclTensor* elastic_info = nullptr;  // V3, AddRmsNormV2
  const aclTensor* ori_x = nullptr;         // V3, AddRmsNormV2
  const aclTensor* const_alpha1 = nullptr;  // V3, AddRmsNormV2
  const aclTensor* const_alpha2 = nullptr;  // V3, AddRmsNormV2
  const aclTensor* const_v = nullptr;       // V3, AddRmsNormV2
  GroupAttributes attributes;
  int64_t out_dtype = 0;
  int64_t comm_quant_mode = 0;
  int64_t group_list_type = 0;
  const char* comm_alg = nullptr;
  float norm_eps = 0.0f;      // AddRmsNorm
  aclTensor* y = nullptr;     // AddRmsNorm
  aclTensor* rstd = nullptr;  // AddRmsNorm
  aclTensor* x = nullptr;
};

void CheckWrapperRules(const std::string& op, const CombineArgs& a, bool add_rms_norm) {
  const std::pair<const aclTensor*, const char*> required[] = {{a.expand_x, "expandX"},
                                                               {a.expert_ids, "expertIds"},
                                                               {a.assist_info, "assistInfoForCombine"},
                                                               {a.ep_send_counts, "epSendCounts"},
                                                               {a.expert_scales, "expertScales"},
                                                               {a.x, "xOut"}};
  for (const auto& [tensor, name] : required) {
    if (!tensor) Reject(ErrorCode::kNullPointer, op, name, "nullptr", "this tensor is required");
  }
  const char* group_ep = a.attributes.group_ep;
  if (!group_ep || !*group_ep) {
    Reject(ErrorCode::kNullPointer, op, "groupEp", group_ep ? "\"\"" : "nullptr", "a group name is required");
  }
  // CombineAddRmsNorm's wrapper refuses Atlas A2 right after these null checks; its own tensors are checked after
  // the group names' lengths (by the inner layer).
  if (add_rms_norm) RequireA3(op);
  // CANN's combine wrappers report over-long group names as 161002 (dispatch says 161001): docs/semantics.md 0.
  for (const auto& [name, param] : {std::pair{group_ep, "groupEp"}, {a.attributes.group_tp, "groupTp"}}) {
    const size_t length = GroupNameLength(name);
    if (length >= kGroupNameMax)
      Reject(ErrorCode::kInvalidParam, op, param, GroupNameLengthText(length), "length < 128");
  }
  if (add_rms_norm) {
    for (const auto& [tensor, name] : {std::pair{a.residual_x, "residualX"},
                                       {a.gamma, "gamma"},
                                       {static_cast<const aclTensor*>(a.y), "yOut"},
                                       {static_cast<const aclTensor*>(a.rstd), "rstdOut"}}) {
      if (!tensor) Reject(ErrorCode::kNullPointer, op, name, "nullptr", "this tensor is required");
    }
  }
}

// Reserved parameters (docs/semantics.md 3.4): the tensors must be null and outDtype 0. groupListType is not
// checked: CANN's tiling never reads it and the documented samples pass 1. Nor is expandScales, which only A2's
// hierarchy reads: torch_npu hands dispatch's expand_scales back whatever the product, and A3 ignores it.
void CheckReserved(const std::string& op, const CombineArgs& a) {
  const std::pair<const aclTensor*, const char*> reserved[] = {
      {a.activation_scale, "activationScale"}, {a.weight_scale, "weightScale"}, {a.group_list, "groupList"}};
  for (const auto& [tensor, name] : reserved) {
    if (tensor) Reject(ErrorCode::kInvalidConfig, op, name, "a tensor", "reserved: must be nullptr");
  }
  if (a.out_dtype != 0)
    Reject(ErrorCode::kInvalidConfig, op, "outDtype", std::to_string(a.out_dtype), "reserved: must be 0");
}

OpWork BuildCombine(const std::string& op, const CombineArgs& a, bool add_rms_norm) {
  CheckWrapperRules(op, a, add_rms_norm);
  plan::CombineTensors t;
  t.expand_x = RequiredTensor(op, "expandX", a.expand_x);
  t.expert_ids = RequiredTensor(op, "expertIds", a.expert_ids);
  t.assist_info = RequiredTensor(op, "assistInfoForCombine", a.assist_info);
  t.ep_send_counts = RequiredTensor(op, "epSendCounts", a.ep_send_counts);
  t.expert_scales = RequiredTensor(op, "expertScales", a.expert_scales);
  t.tp_send_counts = OptionalTensor(op, "tpSendCounts", a.tp_send_counts);
  t.x_active_mask = OptionalTensor(op, "xActiveMask", a.x_active_mask);
  t.shared_expert_x = OptionalTensor(op, "sharedExpertX", a.shared_expert_x);
  const TensorView elastic = OptionalTensor(op, "elasticInfo", a.elastic_info);
  t.ori_x = OptionalTensor(op, "oriX", a.ori_x);
  t.const_alpha1 = OptionalTensor(op, "constExpertAlpha1", a.const_alpha1);
  t.const_alpha2 = OptionalTensor(op, "constExpertAlpha2", a.const_alpha2);
  t.const_v = OptionalTensor(op, "constExpertV", a.const_v);
  t.x = RequiredTensor(op, "xOut", a.x);
  if (add_rms_norm) {
    t.add_rms_norm = true;
    t.residual_x = RequiredTensor(op, "residualX", a.residual_x);
    t.gamma = RequiredTensor(op, "gamma", a.gamma);
    t.y = RequiredTensor(op, "yOut", a.y);
    t.rstd = RequiredTensor(op, "rstdOut", a.rstd);
    t.norm_eps = a.norm_eps;
  }
  const plan::Profile profile = ProfileOf(op, a.comm_alg);
  CheckReserved(op, a);
  if (profile == plan::Profile::kA3) CheckCommAlg(op, a.comm_alg);

  GroupAttributes attributes = a.attributes;
  plan::MoeConfig c = ConfigOf(attributes);
  c.op = op;
  c.comm_quant_mode = a.comm_quant_mode;
  c.elastic = elastic.present();
  if (plan::IsA2(profile)) {  // docs/a2.md: no TP group, no elasticInfo; sharedExpertX is never read
    attributes.group_tp = "";
    c.assist = plan::AssistLayout::kExpandIdx;
    t.shared_expert_x = {};
    if (elastic.present()) Reject(ErrorCode::kInvalidConfig, op, "elasticInfo", "a tensor", "absent on Atlas A2");
  }
  const Groups groups = ValidateOnGroups(op, attributes, c, elastic, [&](plan::WindowCapacity capacity) {
    plan::ValidateCombine(c, t, profile, capacity, op.c_str());
  });
  if (profile == plan::Profile::kA2Hierarchy) RefuseHierarchy(op, a.comm_alg);
  plan::CheckOutputsApart(t, profile, op.c_str(), InAllocation);  // as dispatch
  const env::Product product = env::SocName().second;
  auto work = [c, t, groups, elastic, op, product, profile] {
    RequireDispatchProduct(op, groups, product);
    plan::CheckOutputsApart(t, profile, op.c_str());
    const std::vector<int32_t> table = elastic.present() ? ops::GatherInt32(elastic) : std::vector<int32_t>{};
    plan::CombineTensors run = t;
    const ops::DenseOutputs dense(run.outputs());
    ops::RunCombine(EpOf(groups), TpOf(groups), c, run, table);
    dense.CopyBack();
  };
  return {std::move(work), [groups, op] { RequireUndestroyed(op, groups); }};
}

}  // namespace
}  // namespace moe_ep::cann

using moe_ep::cann::ApiFamily;
using moe_ep::cann::BuildCombine;
using moe_ep::cann::BuildExecutor;
using moe_ep::cann::CombineArgs;
using moe_ep::cann::Guarded;
using moe_ep::cann::LaunchExecutor;

namespace {
constexpr char kCombineV2[] = "aclnnMoeDistributeCombineV2";
constexpr char kCombineV3[] = "aclnnMoeDistributeCombineV3";
constexpr char kAddRmsNorm[] = "aclnnMoeDistributeCombineAddRmsNorm";
constexpr char kAddRmsNormV2[] = "aclnnMoeDistributeCombineAddRmsNormV2";

// Phase one of CombineV3, under the names of `entry` (the C function) and `op` (the operator): CombineV2 runs it
// too, without the V3 inputs.
aclnnStatus CombineV3Workspace(
    const char* entry, const char* op, const aclTensor* expandX, const aclTensor* expertIds,
    const aclTensor* assistInfoForCombine, const aclTensor* epSendCounts, const aclTensor* expertScales,
    const aclTensor* tpSendCountsOptional, const aclTensor* xActiveMaskOptional,
    const aclTensor* activationScaleOptional, const aclTensor* weightScaleOptional, const aclTensor* groupListOptional,
    const aclTensor* expandScalesOptional, const aclTensor* sharedExpertXOptional, const aclTensor* elasticInfoOptional,
    const aclTensor* oriXOptional, const aclTensor* constExpertAlpha1Optional,
    const aclTensor* constExpertAlpha2Optional, const aclTensor* constExpertVOptional, const char* groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char* groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs,
    int64_t outDtype, int64_t commQuantMode, int64_t groupListType, const char* commAlg, int64_t zeroExpertNum,
    int64_t copyExpertNum, int64_t constExpertNum, aclTensor* xOut, uint64_t* workspaceSize, aclOpExecutor** executor) {
  return Guarded(entry, ApiFamily::kAclnn, [&] {
    const CombineArgs args{.expand_x = expandX,
                           .expert_ids = expertIds,
                           .assist_info = assistInfoForCombine,
                           .ep_send_counts = epSendCounts,
                           .expert_scales = expertScales,
                           .tp_send_counts = tpSendCountsOptional,
                           .x_active_mask = xActiveMaskOptional,
                           .activation_scale = activationScaleOptional,
                           .weight_scale = weightScaleOptional,
                           .group_list = groupListOptional,
                           .expand_scales = expandScalesOptional,
                           .shared_expert_x = sharedExpertXOptional,
                           .elastic_info = elasticInfoOptional,
                           .ori_x = oriXOptional,
                           .const_alpha1 = constExpertAlpha1Optional,
                           .const_alpha2 = constExpertAlpha2Optional,
                           .const_v = constExpertVOptional,
                           .attributes = {.group_ep = groupEp,
                                          .ep_world_size = epWorldSize,
                                          .ep_rank_id = epRankId,
                                          .moe_expert_num = moeExpertNum,
                                          .group_tp = groupTp,
                                          .tp_world_size = tpWorldSize,
                                          .tp_rank_id = tpRankId,
                                          .expert_shard_type = expertShardType,
                                          .shared_expert_num = sharedExpertNum,
                                          .shared_expert_rank_num = sharedExpertRankNum,
                                          .global_bs = globalBs,
                                          .zero_expert_num = zeroExpertNum,
                                          .copy_expert_num = copyExpertNum,
                                          .const_expert_num = constExpertNum},
                           .out_dtype = outDtype,
                           .comm_quant_mode = commQuantMode,
                           .group_list_type = groupListType,
                           .comm_alg = commAlg,
                           .x = xOut};
    return BuildExecutor(op, workspaceSize, executor, [&] { return BuildCombine(op, args, false); });
  });
}

// Phase one of CombineAddRmsNormV2 under the names of `entry` and `op`; CombineAddRmsNorm runs it too, without the
// V2 inputs.
aclnnStatus AddRmsNormV2Workspace(
    const char* entry, const char* op, const aclTensor* expandX, const aclTensor* expertIds,
    const aclTensor* assistInfoForCombine, const aclTensor* epSendCounts, const aclTensor* expertScales,
    const aclTensor* residualX, const aclTensor* gamma, const aclTensor* tpSendCountsOptional,
    const aclTensor* xActiveMaskOptional, const aclTensor* activationScaleOptional,
    const aclTensor* weightScaleOptional, const aclTensor* groupListOptional, const aclTensor* expandScalesOptional,
    const aclTensor* sharedExpertXOptional, const aclTensor* elasticInfoOptional, const aclTensor* oriXOptional,
    const aclTensor* constExpertAlpha1Optional, const aclTensor* constExpertAlpha2Optional,
    const aclTensor* constExpertVOptional, const char* groupEp, int64_t epWorldSize, int64_t epRankId,
    int64_t moeExpertNum, const char* groupTp, int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType,
    int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs, int64_t outDtype, int64_t commQuantMode,
    int64_t groupListType, const char* commAlg, float normEps, int64_t zeroExpertNum, int64_t copyExpertNum,
    int64_t constExpertNum, aclTensor* yOut, aclTensor* rstdOut, aclTensor* xOut, uint64_t* workspaceSize,
    aclOpExecutor** executor) {
  return Guarded(entry, ApiFamily::kAclnn, [&] {
    const CombineArgs args{.expand_x = expandX,
                           .expert_ids = expertIds,
                           .assist_info = assistInfoForCombine,
                           .ep_send_counts = epSendCounts,
                           .expert_scales = expertScales,
                           .residual_x = residualX,
                           .gamma = gamma,
                           .tp_send_counts = tpSendCountsOptional,
                           .x_active_mask = xActiveMaskOptional,
                           .activation_scale = activationScaleOptional,
                           .weight_scale = weightScaleOptional,
                           .group_list = groupListOptional,
                           .expand_scales = expandScalesOptional,
                           .shared_expert_x = sharedExpertXOptional,
                           .elastic_info = elasticInfoOptional,
                           .ori_x = oriXOptional,
                           .const_alpha1 = constExpertAlpha1Optional,
                           .const_alpha2 = constExpertAlpha2Optional,
                           .const_v = constExpertVOptional,
                           .attributes = {.group_ep = groupEp,
                                          .ep_world_size = epWorldSize,
                                          .ep_rank_id = epRankId,
                                          .moe_expert_num = moeExpertNum,
                                          .group_tp = groupTp,
                                          .tp_world_size = tpWorldSize,
                                          .tp_rank_id = tpRankId,
                                          .expert_shard_type = expertShardType,
                                          .shared_expert_num = sharedExpertNum,
                                          .shared_expert_rank_num = sharedExpertRankNum,
                                          .global_bs = globalBs,
                                          .zero_expert_num = zeroExpertNum,
                                          .copy_expert_num = copyExpertNum,
                                          .const_expert_num = constExpertNum},
                           .out_dtype = outDtype,
                           .comm_quant_mode = commQuantMode,
                           .group_list_type = groupListType,
                           .comm_alg = commAlg,
                           .norm_eps = normEps,
                           .y = yOut,
                           .rstd = rstdOut,
                           .x = xOut};
    return BuildExecutor(op, workspaceSize, executor, [&] { return BuildCombine(op, args, true); });
  });
}
}  // namespace

extern "C" {

aclnnStatus aclnnMoeDistributeCombineV2GetWorkspaceSize(
    const aclTensor* expandX, const aclTensor* expertIds, const aclTensor* assistInfoForCombine,
    const aclTensor* epSendCounts, const aclTensor* expertScales, const aclTensor* tpSendCountsOptional,
    const aclTensor* xActiveMaskOptional, const aclTensor* activationScaleOptional,
    const aclTensor* weightScaleOptional, const aclTensor* groupListOptional, const aclTensor* expandScalesOptional,
    const aclTensor* sharedExpertXOptional, const char* groupEp, int64_t epWorldSize, int64_t epRankId,
    int64_t moeExpertNum, const char* groupTp, int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType,
    int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs, int64_t outDtype, int64_t commQuantMode,
    int64_t groupListType, const char* commAlg, aclTensor* xOut, uint64_t* workspaceSize, aclOpExecutor** executor) {
  // CombineV3 without its inputs: no elasticInfo, oriX or const tensors, no special experts.
  return CombineV3Workspace("aclnnMoeDistributeCombineV2GetWorkspaceSize", kCombineV2, expandX, expertIds,
                            assistInfoForCombine, epSendCounts, expertScales, tpSendCountsOptional, xActiveMaskOptional,
                            activationScaleOptional, weightScaleOptional, groupListOptional, expandScalesOptional,
                            sharedExpertXOptional, nullptr, nullptr, nullptr, nullptr, nullptr, groupEp, epWorldSize,
                            epRankId, moeExpertNum, groupTp, tpWorldSize, tpRankId, expertShardType, sharedExpertNum,
                            sharedExpertRankNum, globalBs, outDtype, commQuantMode, groupListType, commAlg, 0, 0, 0,
                            xOut, workspaceSize, executor);
}

aclnnStatus aclnnMoeDistributeCombineV2(void*, uint64_t, aclOpExecutor* executor, aclrtStream stream) {
  return Guarded("aclnnMoeDistributeCombineV2", ApiFamily::kAclnn,
                 [&] { return LaunchExecutor(kCombineV2, executor, stream); });
}

aclnnStatus aclnnMoeDistributeCombineV3GetWorkspaceSize(
    const aclTensor* expandX, const aclTensor* expertIds, const aclTensor* assistInfoForCombine,
    const aclTensor* epSendCounts, const aclTensor* expertScales, const aclTensor* tpSendCountsOptional,
    const aclTensor* xActiveMaskOptional, const aclTensor* activationScaleOptional,
    const aclTensor* weightScaleOptional, const aclTensor* groupListOptional, const aclTensor* expandScalesOptional,
    const aclTensor* sharedExpertXOptional, const aclTensor* elasticInfoOptional, const aclTensor* oriXOptional,
    const aclTensor* constExpertAlpha1Optional, const aclTensor* constExpertAlpha2Optional,
    const aclTensor* constExpertVOptional, const char* groupEp, int64_t epWorldSize, int64_t epRankId,
    int64_t moeExpertNum, const char* groupTp, int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType,
    int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs, int64_t outDtype, int64_t commQuantMode,
    int64_t groupListType, const char* commAlg, int64_t zeroExpertNum, int64_t copyExpertNum, int64_t constExpertNum,
    aclTensor* xOut, uint64_t* workspaceSize, aclOpExecutor** executor) {
  return CombineV3Workspace("aclnnMoeDistributeCombineV3GetWorkspaceSize", kCombineV3, expandX, expertIds,
                            assistInfoForCombine, epSendCounts, expertScales, tpSendCountsOptional, xActiveMaskOptional,
                            activationScaleOptional, weightScaleOptional, groupListOptional, expandScalesOptional,
                            sharedExpertXOptional, elasticInfoOptional, oriXOptional, constExpertAlpha1Optional,
                            constExpertAlpha2Optional, constExpertVOptional, groupEp, epWorldSize, epRankId,
                            moeExpertNum, groupTp, tpWorldSize, tpRankId, expertShardType, sharedExpertNum,
                            sharedExpertRankNum, globalBs, outDtype, commQuantMode, groupListType, commAlg,
                            zeroExpertNum, copyExpertNum, constExpertNum, xOut, workspaceSize, executor);
}

aclnnStatus aclnnMoeDistributeCombineV3(void*, uint64_t, aclOpExecutor* executor, aclrtStream stream) {
  return Guarded("aclnnMoeDistributeCombineV3", ApiFamily::kAclnn,
                 [&] { return LaunchExecutor(kCombineV3, executor, stream); });
}

aclnnStatus aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize(
    const aclTensor* expandX, const aclTensor* expertIds, const aclTensor* assistInfoForCombine,
    const aclTensor* epSendCounts, const aclTensor* expertScales, const aclTensor* residualX, const aclTensor* gamma,
    const aclTensor* tpSendCountsOptional, const aclTensor* xActiveMaskOptional,
    const aclTensor* activationScaleOptional, const aclTensor* weightScaleOptional, const aclTensor* groupListOptional,
    const aclTensor* expandScalesOptional, const aclTensor* sharedExpertXOptional, const char* groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char* groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBS,
    int64_t outDtype, int64_t commQuantMode, int64_t groupListType, const char* commAlg, float normEps, aclTensor* yOut,
    aclTensor* rstdOut, aclTensor* xOut, uint64_t* workspaceSize, aclOpExecutor** executor) {
  // AddRmsNormV2 without its inputs: no elasticInfo, oriX or const tensors, no special experts.
  return AddRmsNormV2Workspace("aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize", kAddRmsNorm, expandX, expertIds,
                               assistInfoForCombine, epSendCounts, expertScales, residualX, gamma, tpSendCountsOptional,
                               xActiveMaskOptional, activationScaleOptional, weightScaleOptional, groupListOptional,
                               expandScalesOptional, sharedExpertXOptional, nullptr, nullptr, nullptr, nullptr, nullptr,
                               groupEp, epWorldSize, epRankId, moeExpertNum, groupTp, tpWorldSize, tpRankId,
                               expertShardType, sharedExpertNum, sharedExpertRankNum, globalBS, outDtype, commQuantMode,
                               groupListType, commAlg, normEps, 0, 0, 0, yOut, rstdOut, xOut, workspaceSize, executor);
}

aclnnStatus aclnnMoeDistributeCombineAddRmsNorm(void*, uint64_t, aclOpExecutor* executor, aclrtStream stream) {
  return Guarded("aclnnMoeDistributeCombineAddRmsNorm", ApiFamily::kAclnn,
                 [&] { return LaunchExecutor(kAddRmsNorm, executor, stream); });
}

aclnnStatus aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
    const aclTensor* expandX, const aclTensor* expertIds, const aclTensor* assistInfoForCombine,
    const aclTensor* epSendCounts, const aclTensor* expertScales, const aclTensor* residualX, const aclTensor* gamma,
    const aclTensor* tpSendCountsOptional, const aclTensor* xActiveMaskOptional,
    const aclTensor* activationScaleOptional, const aclTensor* weightScaleOptional, const aclTensor* groupListOptional,
    const aclTensor* expandScalesOptional, const aclTensor* sharedExpertXOptional, const aclTensor* elasticInfoOptional,
    const aclTensor* oriXOptional, const aclTensor* constExpertAlpha1Optional,
    const aclTensor* constExpertAlpha2Optional, const aclTensor* constExpertVOptional, const char* groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char* groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs,
    int64_t outDtype, int64_t commQuantMode, int64_t groupListType, const char* commAlg, float normEps,
    int64_t zeroExpertNum, int64_t copyExpertNum, int64_t constExpertNum, aclTensor* yOut, aclTensor* rstdOut,
    aclTensor* xOut, uint64_t* workspaceSize, aclOpExecutor** executor) {
  return AddRmsNormV2Workspace(
      "aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize", kAddRmsNormV2, expandX, expertIds, assistInfoForCombine,
      epSendCounts, expertScales, residualX, gamma, tpSendCountsOptional, xActiveMaskOptional, activationScaleOptional,
      weightScaleOptional, groupListOptional, expandScalesOptional, sharedExpertXOptional, elasticInfoOptional,
      oriXOptional, constExpertAlpha1Optional, constExpertAlpha2Optional, constExpertVOptional, groupEp, epWorldSize,
      epRankId, moeExpertNum, groupTp, tpWorldSize, tpRankId, expertShardType, sharedExpertNum, sharedExpertRankNum,
      globalBs, outDtype, commQuantMode, groupListType, commAlg, normEps, zeroExpertNum, copyExpertNum, constExpertNum,
      yOut, rstdOut, xOut, workspaceSize, executor);
}

aclnnStatus aclnnMoeDistributeCombineAddRmsNormV2(void*, uint64_t, aclOpExecutor* executor, aclrtStream stream) {
  return Guarded("aclnnMoeDistributeCombineAddRmsNormV2", ApiFamily::kAclnn,
                 [&] { return LaunchExecutor(kAddRmsNormV2, executor, stream); });
}

}  // extern "C"
