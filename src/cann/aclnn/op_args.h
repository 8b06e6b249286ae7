// Turning aclnn arguments into the engine's: tensor parameters into views, group names into
// communicators, with CANN's status code and a message naming the parameter whenever one is wrong.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "aclnn/acl_meta.h"
#include "base/env.h"
#include "cann/hccl/comm.h"
#include "moe_ep/error.h"
#include "moe_ep/tensor.h"
#include "ops/operations.h"
#include "plan/validate.h"

namespace moe_ep::cann {

/// Throws moe_ep::Error(code, "op: parameter 'param' = value violates rule: rule").
[[noreturn]] void Reject(ErrorCode code, const std::string& op, const std::string& param, const std::string& value,
                         const std::string& rule);

/// An optional tensor parameter as a view (absent when null). A pointer that is not a live aclTensor or
/// a dtype moe_ep does not know is 161002; a FRACTAL_NZ format is 561002 (docs/semantics.md 1.2: ND only).
TensorView OptionalTensor(const std::string& op, const char* param, const aclTensor* tensor);
/// As OptionalTensor, but null is 161001.
TensorView RequiredTensor(const std::string& op, const char* param, const aclTensor* tensor);

/// A group-name parameter (null reads as ""); only after GroupNameLength passed it.
std::string GroupName(const char* name);
/// How long a group name is, read no further than its limit: kGroupNameMax for one of kGroupNameMax characters or
/// more, or without a NUL in its first kGroupNameMax bytes (which a caller's fixed buffer may end with).
inline constexpr size_t kGroupNameMax = 128;
size_t GroupNameLength(const char* name);
/// The value a Reject names for a group name of `length` (GroupNameLength's).
std::string GroupNameLengthText(size_t length);

/// commAlg of the A3 operators: "", "fullmesh_v1" or "fullmesh_v2" (null reads as ""); else 561002.
std::string CheckCommAlg(const std::string& op, const char* comm_alg);

/// The product phase one follows (MOE_EP_SOC_NAME): kA3, or on Atlas A2 the profile of its commAlg: "fullmesh",
/// "hierarchy", or for null / "" / "0" hierarchy exactly when HCCL_INTRA_PCIE_ENABLE=1 and
/// HCCL_INTRA_ROCE_ENABLE=0 (docs/a2.md); another A2 commAlg is 561002. A3's commAlg is CheckCommAlg's.
plan::Profile ProfileOf(const std::string& op, const char* comm_alg);
/// Refuses Atlas A2's "hierarchy" once its rules passed: its arithmetic is not fixed by public sources, so moe_ep
/// implements "fullmesh" only (561002, docs/a2.md).
[[noreturn]] void RefuseHierarchy(const std::string& op, const char* comm_alg);
/// Refuses an operator Atlas A2 does not have (161002, docs/a2.md).
void RequireA3(const std::string& op);

/// The communicators an operation runs on, looked up by name on the calling thread's device.
struct Groups {
  std::shared_ptr<Comm> ep;
  std::shared_ptr<Comm> tp;  // with tpWorldSize == 2
};

/// Looks the groups up without failing (the window capacity is needed before the rules are checked).
Groups FindGroups(const std::string& group_ep, const std::string& group_tp, bool has_tp);
/// As an executor is launched: its groups must not have been destroyed since phase one (561002 naming the
/// group); a group of the same name made since is another communicator.
void RequireUndestroyed(const std::string& op, const Groups& groups);
/// A dispatch that ran notes the product it was built as (env::SocName() in phase one) on its EP
/// communicator; a combine, as it runs, refuses to run as another (161002 naming MOE_EP_SOC_NAME): it would
/// read assistInfoForCombine in the other layout. Every rank's dispatch checked that the group agrees, so a
/// combine that matches its own rank's last dispatch agrees too.
void NoteDispatchProduct(const Groups& groups, env::Product product);
void RequireDispatchProduct(const std::string& op, const Groups& groups, env::Product product);
/// After the rules: the groups must exist on this device and agree with epWorldSize / epRankId
/// (tpWorldSize / tpRankId); else 561002 naming the group. An operation that takes no rank (`takes_rank` false:
/// BufferReset) is checked, and named, by its size alone.
void RequireGroups(const std::string& op, const Groups& groups, const plan::MoeConfig& config,
                   const std::string& group_ep, const std::string& group_tp, bool takes_rank = true);

/// The attributes dispatch and combine share (CANN's names), as phase one received them.
struct GroupAttributes {
  const char* group_ep = nullptr;
  int64_t ep_world_size = 0, ep_rank_id = 0, moe_expert_num = 0;
  const char* group_tp = nullptr;
  int64_t tp_world_size = 0, tp_rank_id = 0, expert_shard_type = 0, shared_expert_num = 0, shared_expert_rank_num = 0;
  int64_t global_bs = 0;
  int64_t zero_expert_num = 0, copy_expert_num = 0, const_expert_num = 0;  // V3; 0 for V2
};

/// The engine configuration of those attributes (shapes are filled in by validation).
plan::MoeConfig ConfigOf(const GroupAttributes& attributes);

/// Phase one's common part after the tensors: `validate(capacity)` runs the rules of docs/semantics.md 1 against
/// the communicators' windows, then the TP group name, elasticInfo and the communicators themselves
/// are checked. Returns the groups the operation runs on.
Groups ValidateOnGroups(const std::string& op, const GroupAttributes& attributes, const plan::MoeConfig& config,
                        const TensorView& elastic_info, const std::function<void(plan::WindowCapacity)>& validate);

/// The internal communicators of `groups` (tp null without a TP group).
inline ops::Communicator& EpOf(const Groups& groups) { return *groups.ep->comm; }
inline ops::Communicator* TpOf(const Groups& groups) { return groups.tp ? groups.tp->comm.get() : nullptr; }

}  // namespace moe_ep::cann
