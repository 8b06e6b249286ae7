// Argument conversion and group lookup shared by the aclnn operators.
#include "cann/aclnn/op_args.h"

#include <cstring>
#include <limits>

#include "base/env.h"
#include "cann/aclnn/executor.h"
#include "cann/runtime/runtime.h"
#include "plan/elastic.h"

namespace moe_ep::cann {

void Reject(ErrorCode code, const std::string& op, const std::string& param, const std::string& value,
            const std::string& rule) {
  throw Error(code, op + ": parameter '" + param + "' = " + value + " violates rule: " + rule);
}

TensorView OptionalTensor(const std::string& op, const char* param, const aclTensor* tensor) {
  if (!tensor) return {};
  if (!IsLiveTensor(tensor)) {
    Reject(ErrorCode::kInvalidParam, op, param, "an unknown pointer", "must come from aclCreateTensor, not destroyed");
  }
  DType dtype;
  if (!ToDType(tensor->dtype, &dtype)) {
    Reject(ErrorCode::kInvalidParam, op, param,
           std::string("dtype ") + AclDataTypeName(tensor->dtype) + " (" + std::to_string(tensor->dtype) + ")",
           "dtype not in the supported set of this parameter");
  }
  if (tensor->format == ACL_FORMAT_FRACTAL_NZ) {
    Reject(ErrorCode::kInvalidConfig, op, param, "format FRACTAL_NZ", "tensors must be ND");
  }
  NoteTensorMemory(tensor->data);
  const TensorView view = ViewOf(*tensor);
  if (tensor->data != nullptr && view.numel() > 0) {
    // The view's furthest element, in elements from tensorData (aclCreateTensor checked that it lies in the storage,
    // whose bytes fit int64).
    int64_t last = tensor->offset;
    for (size_t d = 0; d < tensor->view_shape.size(); ++d) last += (tensor->view_shape[d] - 1) * tensor->strides[d];
    const uint64_t bytes = static_cast<uint64_t>(last + 1) * DTypeSize(dtype);
    if (const std::string problem = TensorMemoryProblem(tensor->data, bytes, op + ": '" + param + "'");
        !problem.empty()) {
      throw Error(ErrorCode::kInvalidParam, problem);
    }
  }
  return view;
}

TensorView RequiredTensor(const std::string& op, const char* param, const aclTensor* tensor) {
  if (!tensor) Reject(ErrorCode::kNullPointer, op, param, "nullptr", "this tensor is required");
  return OptionalTensor(op, param, tensor);
}

std::string GroupName(const char* name) { return name ? name : ""; }

size_t GroupNameLength(const char* name) { return name ? strnlen(name, kGroupNameMax) : 0; }

std::string GroupNameLengthText(size_t length) {
  return (length >= kGroupNameMax ? "at least " : "") + std::to_string(length) + " characters";
}

std::string CheckCommAlg(const std::string& op, const char* comm_alg) {
  const std::string alg = comm_alg ? comm_alg : "";
  if (alg != "" && alg != "fullmesh_v1" && alg != "fullmesh_v2") {
    Reject(ErrorCode::kInvalidConfig, op, "commAlg", "'" + alg + "'", "one of \"\", \"fullmesh_v1\", \"fullmesh_v2\"");
  }
  return alg;
}

plan::Profile ProfileOf(const std::string& op, const char* comm_alg) {
  if (env::SocName().second == env::Product::kA3) return plan::Profile::kA3;
  const std::string alg = comm_alg ? comm_alg : "";
  if (alg == "fullmesh") return plan::Profile::kA2Fullmesh;
  if (alg == "hierarchy") return plan::Profile::kA2Hierarchy;
  if (alg != "" && alg != "0") {
    Reject(ErrorCode::kInvalidConfig, op, "commAlg", "'" + alg + "'",
           "one of nullptr, \"\", \"0\", \"fullmesh\", \"hierarchy\" on Atlas A2");
  }
  const std::optional<bool> pcie = env::Switch("HCCL_INTRA_PCIE_ENABLE");
  const std::optional<bool> roce = env::Switch("HCCL_INTRA_ROCE_ENABLE");
  const bool layered = pcie == true && roce == false;
  return layered ? plan::Profile::kA2Hierarchy : plan::Profile::kA2Fullmesh;
}

void RefuseHierarchy(const std::string& op, const char* comm_alg) {
  const std::string alg = comm_alg ? comm_alg : "";
  Reject(ErrorCode::kInvalidConfig, op, "commAlg",
         alg == "hierarchy" ? "'hierarchy'"
                            : "'" + alg + "' (hierarchy, chosen by HCCL_INTRA_PCIE_ENABLE=1 HCCL_INTRA_ROCE_ENABLE=0)",
         "moe_ep implements Atlas A2's \"fullmesh\" only: the public kernel sources do not fix hierarchy's "
         "arithmetic (docs/a2.md); pass commAlg \"fullmesh\"");
}

void RequireA3(const std::string& op) {
  const auto [name, product] = env::SocName();
  if (product != env::Product::kA3) {
    Reject(ErrorCode::kInvalidParam, op, "MOE_EP_SOC_NAME", std::string("'") + name + "' (Atlas A2)",
           "this operator exists on Atlas A3 only");
  }
}

void NoteDispatchProduct(const Groups& groups, env::Product product) {
  groups.ep->dispatched_as = static_cast<int>(product);
}

void RequireDispatchProduct(const std::string& op, const Groups& groups, env::Product product) {
  const int dispatched = groups.ep->dispatched_as;
  if (dispatched < 0 || dispatched == static_cast<int>(product)) return;
  const auto name = [](int p) { return p == static_cast<int>(env::Product::kA3) ? "Atlas A3" : "Atlas A2"; };
  Reject(
      ErrorCode::kInvalidParam, op, "MOE_EP_SOC_NAME", name(static_cast<int>(product)),
      std::string("combine runs as the product of this rank's last dispatch on the group (") + name(dispatched) + ")");
}

Groups FindGroups(const std::string& group_ep, const std::string& group_tp, bool has_tp) {
  const int32_t device = CurrentDevice();
  return {FindComm(group_ep, device), has_tp ? FindComm(group_tp, device) : nullptr};
}

void RequireUndestroyed(const std::string& op, const Groups& groups) {
  for (const auto& [comm, param] : {std::pair{groups.ep.get(), "groupEp"}, std::pair{groups.tp.get(), "groupTp"}}) {
    if (comm && comm->destroyed) {
      Reject(ErrorCode::kInvalidConfig, op, param, "'" + comm->name + "'",
             "its communicator was destroyed (HcclCommDestroy) after phase one built this executor");
    }
  }
}

namespace {

// The window capacity the docs/semantics.md 1.2 rule is checked against: the communicators' windows. A group
// that is not found has no window to fall short of: RequireGroups reports it, where HCCL_BUFFSIZE's value
// (or a malformed one) would point at the wrong setting.
plan::WindowCapacity CapacityOf(const Groups& groups) {
  constexpr uint64_t kNoWindow = std::numeric_limits<uint64_t>::max();
  return {groups.ep ? groups.ep->comm->window_bytes() : kNoWindow,
          groups.tp ? groups.tp->comm->window_bytes() : kNoWindow};
}

void RequireGroup(const std::string& op, const std::shared_ptr<Comm>& comm, const char* param, const std::string& name,
                  int64_t size, const char* size_param, int64_t rank, const char* rank_param) {
  const std::string value = "'" + name + "'";
  if (!comm) {
    const int32_t device = CurrentDevice();
    Reject(ErrorCode::kInvalidConfig, op, param, value,
           "must name a live HCCL communicator with a rank on this thread's device " +
               (device < 0 ? std::string("(none set)") : std::to_string(device)) +
               " (HcclGetCommName; set the device with aclrtSetDevice / aclrtSetCurrentContext)");
  }
  // An operation that takes no rank (BufferReset: `rank_param` null) is checked, and named, by its size alone.
  if (comm->comm->size() != size || (rank_param && comm->comm->rank() != rank)) {
    std::string rule = std::string(size_param) + " (" + std::to_string(size) + ")";
    if (rank_param) rule += std::string(" and ") + rank_param + " (" + std::to_string(rank) + ")";
    rule += " must match the communicator's size " + std::to_string(comm->comm->size());
    if (rank_param) rule += " and rank " + std::to_string(comm->comm->rank());
    Reject(ErrorCode::kInvalidConfig, op, param, value, rule);
  }
}

// elasticInfo's layout (docs/semantics.md 2.8) in phase one; its contents are read when the operation runs, since
// earlier work on the stream may write them (ops/elastic.h).
// Its shape (its dtype is checked with the other tensors' dtypes, first).
void CheckElasticInfo(const std::string& op, const TensorView& elastic, const plan::MoeConfig& c) {
  if (!elastic.present()) return;
  if (elastic.dim() != 1) Reject(ErrorCode::kInvalidConfig, op, "elasticInfo", elastic.Describe(), "must be 1-D");
  plan::CheckElasticTable(c, elastic.shape[0], op.c_str(), "elasticInfo", elastic.Describe());
}

}  // namespace

void RequireGroups(const std::string& op, const Groups& groups, const plan::MoeConfig& c, const std::string& group_ep,
                   const std::string& group_tp, bool takes_rank) {
  RequireGroup(op, groups.ep, "groupEp", group_ep, c.ep_world_size, "epWorldSize", c.ep_rank,
               takes_rank ? "epRankId" : nullptr);
  if (c.has_tp()) {
    if (group_tp == group_ep)
      Reject(ErrorCode::kInvalidConfig, op, "groupTp", "'" + group_tp + "'", "must differ from groupEp");
    RequireGroup(op, groups.tp, "groupTp", group_tp, 2, "tpWorldSize", c.tp_rank, "tpRankId");
  }
}

plan::MoeConfig ConfigOf(const GroupAttributes& a) {
  plan::MoeConfig c;
  c.ep_world_size = a.ep_world_size;
  c.ep_rank = a.ep_rank_id;
  c.moe_expert_num = a.moe_expert_num;
  c.tp_world_size = a.tp_world_size;
  c.tp_rank = a.tp_rank_id;
  c.expert_shard_type = a.expert_shard_type;
  c.shared_expert_num = a.shared_expert_num;
  c.shared_expert_rank_num = a.shared_expert_rank_num;
  c.global_bs = a.global_bs;
  c.zero_expert_num = a.zero_expert_num;
  c.copy_expert_num = a.copy_expert_num;
  c.const_expert_num = a.const_expert_num;
  return c;
}

Groups ValidateOnGroups(const std::string& op, const GroupAttributes& a, const plan::MoeConfig& c,
                        const TensorView& elastic_info, const std::function<void(plan::WindowCapacity)>& validate) {
  const std::string group_ep = GroupName(a.group_ep), group_tp = GroupName(a.group_tp);
  Groups groups = FindGroups(group_ep, group_tp, a.tp_world_size == 2);
  // A dtype outside the operator's set is 161002 before any shape rule (561002), as for the other tensors.
  if (elastic_info.present() && elastic_info.dtype != DType::kInt32) {
    Reject(ErrorCode::kInvalidParam, op, "elasticInfo", DTypeName(elastic_info.dtype), "dtype must be int32");
  }
  validate(CapacityOf(groups));
  if (c.has_tp() && group_tp.empty()) {
    Reject(ErrorCode::kInvalidConfig, op, "groupTp", "empty", "a TP group name is required when tpWorldSize == 2");
  }
  CheckElasticInfo(op, elastic_info, c);
  RequireGroups(op, groups, c, group_ep, group_tp);
  return groups;
}

}  // namespace moe_ep::cann
