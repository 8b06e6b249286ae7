// aclnnMoeDistributeDispatchV2 / V3: docs/semantics.md 1.1 wrapper checks (161001), dtypes (161002), the A3 or A2
// (docs/a2.md) tiling rules (561002), then the engine's dispatch on the stream.
#include <cstring>
#include <utility>

#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"
#include "cann/aclnn/executor.h"
#include "cann/aclnn/op_args.h"
#include "cann/guard.h"
#include "ops/tensor_access.h"
#include "plan/layout.h"

namespace moe_ep::cann {
namespace {

// Phase one's arguments by their CANN names (V2 leaves the V3-only ones absent).
struct DispatchArgs {
  const aclTensor* x = nullptr;
  const aclTensor* expert_ids = nullptr;
  const aclTensor* scales = nullptr;
  const aclTensor* x_active_mask = nullptr;
  const aclTensor* expert_scales = nullptr;
  const aclTensor* elastic_info = nullptr;  // V3
  GroupAttributes attributes;
  int64_t quant_mode = 0;
  int64_t expert_token_nums_type = 0;
  const char* comm_alg = nullptr;
  aclTensor* expand_x = nullptr;
  aclTensor* dynamic_scales = nullptr;
  aclTensor* assist_info = nullptr;
  aclTensor* expert_token_nums = nullptr;
  aclTensor* ep_recv_counts = nullptr;
  aclTensor* tp_recv_counts = nullptr;
  aclTensor* expand_scales = nullptr;
};

// The checks CANN's op_api wrapper makes before tiling: required pointers and group-name lengths, all 161001.
void CheckWrapperRules(const std::string& op, const DispatchArgs& a) {
  const std::pair<const aclTensor*, const char*> required[] = {{a.x, "x"},
                                                               {a.expert_ids, "expertIds"},
                                                               {a.expand_x, "expandXOut"},
                                                               {a.assist_info, "assistInfoForCombineOut"},
                                                               {a.expert_token_nums, "expertTokenNumsOut"},
                                                               {a.ep_recv_counts, "epRecvCountsOut"},
                                                               {a.tp_recv_counts, "tpRecvCountsOut"}};
  for (const auto& [tensor, name] : required) {
    if (!tensor) Reject(ErrorCode::kNullPointer, op, name, "nullptr", "this tensor is required");
  }
  const char* group_ep = a.attributes.group_ep;
  if (!group_ep || !*group_ep) {
    Reject(ErrorCode::kNullPointer, op, "groupEp", group_ep ? "\"\"" : "nullptr", "a group name is required");
  }
  if (a.quant_mode == 2 && !a.dynamic_scales) {
    Reject(ErrorCode::kNullPointer, op, "dynamicScalesOut", "nullptr", "required when quantMode == 2");
  }
  for (const auto& [name, param] : {std::pair{group_ep, "groupEp"}, {a.attributes.group_tp, "groupTp"}}) {
    const size_t length = GroupNameLength(name);
    if (length >= kGroupNameMax)
      Reject(ErrorCode::kNullPointer, op, param, GroupNameLengthText(length), "length < 128");
  }
}

// commAlg "fullmesh_v2" restrictions (docs/semantics.md 1.2).
void CheckFullmeshV2(const std::string& op, const plan::MoeConfig& c, bool elastic) {
  const auto require = [&](bool ok, const char* param, const std::string& value, const char* rule) {
    if (!ok) Reject(ErrorCode::kInvalidConfig, op, param, value, std::string(rule) + " with commAlg fullmesh_v2");
  };
  const auto str = [](int64_t v) { return std::to_string(v); };
  require(!elastic, "elasticInfo", "a tensor", "must be absent");
  require(c.special_expert_num() == 0, "zero/copy/constExpertNum", str(c.special_expert_num()), "must be 0");
  require(c.mask != plan::MaskKind::kPairs, "xActiveMask", "a 2-D mask", "must not be 2-D");
  require(!c.has_tp(), "tpWorldSize", str(c.tp_world_size), "must be < 2");
  require(c.bs <= 256, "Bs (x.dim0)", str(c.bs), "must be <= 256");
  require(c.top_k <= 12, "K (expertIds.dim1)", str(c.top_k), "must be <= 12");
  require(c.global_bs <= c.bs * c.ep_world_size, "globalBs", str(c.global_bs), "must be <= Bs * epWorldSize");
}

// commAlg "fullmesh_v2" lays a dispatch row out in 480-byte pieces, each of a 512-byte slot, so its window rule
// is larger than moe_ep's own layout needs (docs/semantics.md 1.2): CANN's tiling refuses a window below it.
void CheckFullmeshV2Window(const std::string& op, const plan::MoeConfig& c, plan::WindowCapacity window) {
  // moe_ep's own layout, its dispatch slots as this path sizes them (its combine area is the same).
  const plan::WindowLayout layout(c);
  const uint64_t dispatch_slot = (plan::AlignUp(2 * static_cast<uint64_t>(c.hidden), 32) + 44 + 479) / 480 * 512;
  const uint64_t need = 2 * (layout.combine_area_bytes + static_cast<uint64_t>(layout.dispatch_blocks) *
                                                             static_cast<uint64_t>(layout.max_bs) * dispatch_slot);
  if (need > window.ep_bytes) {
    Reject(ErrorCode::kInvalidConfig, op, "HCCL_BUFFSIZE (EP window)", std::to_string(window.ep_bytes) + " bytes",
           "needs 2 * (maxBs*tokD*E*L + maxBs*tokC*(K+n_s)) = " + std::to_string(need) + " bytes (" +
               std::to_string((need + (1 << 20) - 1) >> 20) +
               " MB) with commAlg fullmesh_v2, whose tokD is ceil((Align32(2H) + 44) / 480) * 512");
  }
}

OpWork BuildDispatch(const std::string& op, const DispatchArgs& a) {
  CheckWrapperRules(op, a);
  plan::DispatchTensors t;
  t.x = RequiredTensor(op, "x", a.x);
  t.expert_ids = RequiredTensor(op, "expertIds", a.expert_ids);
  t.scales = OptionalTensor(op, "scales", a.scales);
  t.x_active_mask = OptionalTensor(op, "xActiveMask", a.x_active_mask);
  t.expert_scales = OptionalTensor(op, "expertScales", a.expert_scales);  // Atlas A2's
  const TensorView elastic = OptionalTensor(op, "elasticInfo", a.elastic_info);
  t.expand_x = RequiredTensor(op, "expandXOut", a.expand_x);
  t.dynamic_scales = OptionalTensor(op, "dynamicScalesOut", a.dynamic_scales);
  t.assist_info = RequiredTensor(op, "assistInfoForCombineOut", a.assist_info);
  t.expert_token_nums = RequiredTensor(op, "expertTokenNumsOut", a.expert_token_nums);
  t.ep_recv_counts = RequiredTensor(op, "epRecvCountsOut", a.ep_recv_counts);
  t.tp_recv_counts = RequiredTensor(op, "tpRecvCountsOut", a.tp_recv_counts);
  const TensorView expand_scales = OptionalTensor(op, "expandScalesOut", a.expand_scales);  // never written
  const plan::Profile profile = ProfileOf(op, a.comm_alg);
  const std::string alg = profile == plan::Profile::kA3 ? CheckCommAlg(op, a.comm_alg) : "";

  GroupAttributes attributes = a.attributes;
  plan::MoeConfig c = ConfigOf(attributes);
  c.op = op;
  c.quant_mode = a.quant_mode;
  c.expert_token_nums_type = a.expert_token_nums_type;
  c.elastic = elastic.present();
  if (plan::IsA2(profile)) {  // docs/a2.md: no TP group, no elasticInfo, expandIdx instead of triples
    attributes.group_tp = "";
    c.assist = plan::AssistLayout::kExpandIdx;
    if (elastic.present()) Reject(ErrorCode::kInvalidConfig, op, "elasticInfo", "a tensor", "absent on Atlas A2");
  }
  if (profile == plan::Profile::kA2Hierarchy) {
    if (!t.expert_scales.present())
      Reject(ErrorCode::kInvalidConfig, op, "expertScales", "nullptr", "hierarchy needs it");
    if (!expand_scales.present())
      Reject(ErrorCode::kInvalidConfig, op, "expandScalesOut", "nullptr", "hierarchy needs it");
    if (t.scales.present())
      Reject(ErrorCode::kInvalidConfig, op, "scales", t.scales.Describe(), "must be absent with hierarchy on Atlas A2");
  }
  const Groups groups = ValidateOnGroups(op, attributes, c, elastic, [&](plan::WindowCapacity capacity) {
    plan::ValidateDispatch(c, t, profile, capacity, op.c_str());
    if (alg == "fullmesh_v2") {
      CheckFullmeshV2(op, c, elastic.present());
      CheckFullmeshV2Window(op, c, capacity);
    }
  });
  if (profile == plan::Profile::kA2Hierarchy) RefuseHierarchy(op, a.comm_alg);
  if (c.quant_mode == 0) t.scales = {};  // A2 with a half expandX copies rows whatever quantMode and scales say
  // In phase one among the tensors in aclrtMalloc(Host) memory, whose addresses are fixed now, so that the program
  // learns it at the call, before anything is launched; the rest at the launch: host memory may be described by
  // stand-ins in phase one (the Python binding's, for outputs it makes only once the call is known to be good).
  plan::CheckOutputsApart(t, profile, op.c_str(), InAllocation);
  const env::Product product = env::SocName().second;
  auto work = [c, t, groups, elastic, op, product, profile] {
    plan::CheckOutputsApart(t, profile, op.c_str());
    const std::vector<int32_t> table = elastic.present() ? ops::GatherInt32(elastic) : std::vector<int32_t>{};
    plan::DispatchTensors run = t;
    const ops::DenseOutputs dense(run.outputs());
    ops::RunDispatch(EpOf(groups), TpOf(groups), c, run, table);
    dense.CopyBack();
    NoteDispatchProduct(groups, product);  // only a dispatch that ran makes handles for combine
  };
  return {std::move(work), [groups, op] { RequireUndestroyed(op, groups); }};
}

}  // namespace
}  // namespace moe_ep::cann

using moe_ep::cann::ApiFamily;
using moe_ep::cann::BuildDispatch;
using moe_ep::cann::BuildExecutor;
using moe_ep::cann::DispatchArgs;
using moe_ep::cann::Guarded;
using moe_ep::cann::LaunchExecutor;

namespace {
constexpr char kDispatchV2[] = "aclnnMoeDistributeDispatchV2";
constexpr char kDispatchV3[] = "aclnnMoeDistributeDispatchV3";

// Phase one of DispatchV3, under the names of `entry` (the C function) and `op` (the operator): DispatchV2 runs it
// too, without the V3 inputs.
aclnnStatus DispatchV3Workspace(const char* entry, const char* op, const aclTensor* x, const aclTensor* expertIds,
                                const aclTensor* scalesOptional, const aclTensor* xActiveMaskOptional,
                                const aclTensor* expertScalesOptional, const aclTensor* elasticInfoOptional,
                                const char* groupEp, int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum,
                                const char* groupTp, int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType,
                                int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t quantMode,
                                int64_t globalBs, int64_t expertTokenNumsType, const char* commAlg,
                                int64_t zeroExpertNum, int64_t copyExpertNum, int64_t constExpertNum,
                                aclTensor* expandXOut, aclTensor* dynamicScalesOut, aclTensor* assistInfoForCombineOut,
                                aclTensor* expertTokenNumsOut, aclTensor* epRecvCountsOut, aclTensor* tpRecvCountsOut,
                                aclTensor* expandScalesOut, uint64_t* workspaceSize, aclOpExecutor** executor) {
  return Guarded(entry, ApiFamily::kAclnn, [&] {
    const DispatchArgs args{.x = x,
                            .expert_ids = expertIds,
                            .scales = scalesOptional,
                            .x_active_mask = xActiveMaskOptional,
                            .expert_scales = expertScalesOptional,
                            .elastic_info = elasticInfoOptional,
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
                            .quant_mode = quantMode,
                            .expert_token_nums_type = expertTokenNumsType,
                            .comm_alg = commAlg,
                            .expand_x = expandXOut,
                            .dynamic_scales = dynamicScalesOut,
                            .assist_info = assistInfoForCombineOut,
                            .expert_token_nums = expertTokenNumsOut,
                            .ep_recv_counts = epRecvCountsOut,
                            .tp_recv_counts = tpRecvCountsOut,
                            .expand_scales = expandScalesOut};
    return BuildExecutor(op, workspaceSize, executor, [&] { return BuildDispatch(op, args); });
  });
}
}  // namespace

extern "C" {

aclnnStatus aclnnMoeDistributeDispatchV2GetWorkspaceSize(
    const aclTensor* x, const aclTensor* expertIds, const aclTensor* scalesOptional,
    const aclTensor* xActiveMaskOptional, const aclTensor* expertScalesOptional, const char* groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char* groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t quantMode,
    int64_t globalBs, int64_t expertTokenNumsType, const char* commAlg, aclTensor* expandXOut,
    aclTensor* dynamicScalesOut, aclTensor* assistInfoForCombineOut, aclTensor* expertTokenNumsOut,
    aclTensor* epRecvCountsOut, aclTensor* tpRecvCountsOut, aclTensor* expandScalesOut, uint64_t* workspaceSize,
    aclOpExecutor** executor) {
  // DispatchV3 without its inputs: no elasticInfo, no special experts.
  return DispatchV3Workspace("aclnnMoeDistributeDispatchV2GetWorkspaceSize", kDispatchV2, x, expertIds, scalesOptional,
                             xActiveMaskOptional, expertScalesOptional, nullptr, groupEp, epWorldSize, epRankId,
                             moeExpertNum, groupTp, tpWorldSize, tpRankId, expertShardType, sharedExpertNum,
                             sharedExpertRankNum, quantMode, globalBs, expertTokenNumsType, commAlg, 0, 0, 0,
                             expandXOut, dynamicScalesOut, assistInfoForCombineOut, expertTokenNumsOut, epRecvCountsOut,
                             tpRecvCountsOut, expandScalesOut, workspaceSize, executor);
}

aclnnStatus aclnnMoeDistributeDispatchV2(void*, uint64_t, aclOpExecutor* executor, aclrtStream stream) {
  return Guarded("aclnnMoeDistributeDispatchV2", ApiFamily::kAclnn,
                 [&] { return LaunchExecutor(kDispatchV2, executor, stream); });
}

aclnnStatus aclnnMoeDistributeDispatchV3GetWorkspaceSize(
    const aclTensor* x, const aclTensor* expertIds, const aclTensor* scalesOptional,
    const aclTensor* xActiveMaskOptional, const aclTensor* expertScalesOptional, const aclTensor* elasticInfoOptional,
    const char* groupEp, int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char* groupTp,
    int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum,
    int64_t sharedExpertRankNum, int64_t quantMode, int64_t globalBs, int64_t expertTokenNumsType, const char* commAlg,
    int64_t zeroExpertNum, int64_t copyExpertNum, int64_t constExpertNum, aclTensor* expandXOut,
    aclTensor* dynamicScalesOut, aclTensor* assistInfoForCombineOut, aclTensor* expertTokenNumsOut,
    aclTensor* epRecvCountsOut, aclTensor* tpRecvCountsOut, aclTensor* expandScalesOut, uint64_t* workspaceSize,
    aclOpExecutor** executor) {
  return DispatchV3Workspace(
      "aclnnMoeDistributeDispatchV3GetWorkspaceSize", kDispatchV3, x, expertIds, scalesOptional, xActiveMaskOptional,
      expertScalesOptional, elasticInfoOptional, groupEp, epWorldSize, epRankId, moeExpertNum, groupTp, tpWorldSize,
      tpRankId, expertShardType, sharedExpertNum, sharedExpertRankNum, quantMode, globalBs, expertTokenNumsType,
      commAlg, zeroExpertNum, copyExpertNum, constExpertNum, expandXOut, dynamicScalesOut, assistInfoForCombineOut,
      expertTokenNumsOut, epRecvCountsOut, tpRecvCountsOut, expandScalesOut, workspaceSize, executor);
}

aclnnStatus aclnnMoeDistributeDispatchV3(void*, uint64_t, aclOpExecutor* executor, aclrtStream stream) {
  return Guarded("aclnnMoeDistributeDispatchV3", ApiFamily::kAclnn,
                 [&] { return LaunchExecutor(kDispatchV3, executor, stream); });
}

}  // extern "C"
