// The non-template half of validation_support.h: the communicator groups and every operator's phase one and two.
#include "cann/validation_support.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <stdexcept>

namespace moe_ep::capi_testing {

CommGroups::~CommGroups() {
  for (const auto& group : groups_) {
    for (HcclComm c : group) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);
  }
  if (stream != nullptr) {
    EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
  }
}

std::string CommGroups::Add(std::vector<int32_t> devices, const char* hccl_buffsize) {
  std::optional<ScopedEnv> buffsize;
  if (hccl_buffsize != nullptr) buffsize.emplace("HCCL_BUFFSIZE", hccl_buffsize);
  groups_.push_back(CreateGroup(std::move(devices)));
  return groups_.back().empty() ? std::string() : CommName(groups_.back()[0]);
}

aclnnStatus Call(const DispatchArgs& a) {
  if (a.v3) {
    return aclnnMoeDistributeDispatchV3GetWorkspaceSize(
        a.x, a.ids, a.scales, a.mask, a.expert_scales, a.elastic, a.group_ep, a.ep_world_size, a.ep_rank, a.moe,
        a.group_tp, a.tp_world_size, a.tp_rank, a.shard_type, a.shared_num, a.shared_rank_num, a.quant, a.global_bs,
        a.token_nums_type, a.comm_alg, a.zero, a.copy, a.cnst, a.expand_x, a.dyn_scales, a.assist, a.token_nums,
        a.ep_recv, a.tp_recv, a.expand_scales, a.ws(), a.exec());
  }
  return aclnnMoeDistributeDispatchV2GetWorkspaceSize(
      a.x, a.ids, a.scales, a.mask, a.expert_scales, a.group_ep, a.ep_world_size, a.ep_rank, a.moe, a.group_tp,
      a.tp_world_size, a.tp_rank, a.shard_type, a.shared_num, a.shared_rank_num, a.quant, a.global_bs,
      a.token_nums_type, a.comm_alg, a.expand_x, a.dyn_scales, a.assist, a.token_nums, a.ep_recv, a.tp_recv,
      a.expand_scales, a.ws(), a.exec());
}

aclnnStatus PhaseTwoNull(const DispatchArgs& a, aclrtStream stream) {
  return a.v3 ? aclnnMoeDistributeDispatchV3(nullptr, 0, nullptr, stream)
              : aclnnMoeDistributeDispatchV2(nullptr, 0, nullptr, stream);
}

aclnnStatus Call(const CombineArgs& a) {
  switch (a.op) {
    case CombineOp::kV2:
      return aclnnMoeDistributeCombineV2GetWorkspaceSize(
          a.expand_x, a.ids, a.assist, a.ep_send, a.scales, a.tp_send, a.mask, a.activation_scale, a.weight_scale,
          a.group_list, a.expand_scales, a.shared_x, a.group_ep, a.ep_world_size, a.ep_rank, a.moe, a.group_tp,
          a.tp_world_size, a.tp_rank, a.shard_type, a.shared_num, a.shared_rank_num, a.global_bs, a.out_dtype,
          a.comm_quant, a.group_list_type, a.comm_alg, a.x_out, a.ws(), a.exec());
    case CombineOp::kV3:
      return aclnnMoeDistributeCombineV3GetWorkspaceSize(
          a.expand_x, a.ids, a.assist, a.ep_send, a.scales, a.tp_send, a.mask, a.activation_scale, a.weight_scale,
          a.group_list, a.expand_scales, a.shared_x, a.elastic, a.ori_x, a.alpha1, a.alpha2, a.const_v, a.group_ep,
          a.ep_world_size, a.ep_rank, a.moe, a.group_tp, a.tp_world_size, a.tp_rank, a.shard_type, a.shared_num,
          a.shared_rank_num, a.global_bs, a.out_dtype, a.comm_quant, a.group_list_type, a.comm_alg, a.zero, a.copy,
          a.cnst, a.x_out, a.ws(), a.exec());
    case CombineOp::kAddRmsNorm:
      return aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize(
          a.expand_x, a.ids, a.assist, a.ep_send, a.scales, a.residual, a.gamma, a.tp_send, a.mask, a.activation_scale,
          a.weight_scale, a.group_list, a.expand_scales, a.shared_x, a.group_ep, a.ep_world_size, a.ep_rank, a.moe,
          a.group_tp, a.tp_world_size, a.tp_rank, a.shard_type, a.shared_num, a.shared_rank_num, a.global_bs,
          a.out_dtype, a.comm_quant, a.group_list_type, a.comm_alg, a.norm_eps, a.y_out, a.rstd_out, a.x_out, a.ws(),
          a.exec());
  }
  return -1;
}

aclnnStatus PhaseTwoNull(const CombineArgs& a, aclrtStream stream) {
  switch (a.op) {
    case CombineOp::kV2:
      return aclnnMoeDistributeCombineV2(nullptr, 0, nullptr, stream);
    case CombineOp::kV3:
      return aclnnMoeDistributeCombineV3(nullptr, 0, nullptr, stream);
    case CombineOp::kAddRmsNorm:
      return aclnnMoeDistributeCombineAddRmsNorm(nullptr, 0, nullptr, stream);
  }
  return -1;
}

aclnnStatus Call(const ResetArgs& a) {
  return aclnnMoeDistributeBufferResetGetWorkspaceSize(a.elastic, a.group_ep, a.ep_world_size, a.need_sync, a.ws(),
                                                       a.exec());
}

aclnnStatus PhaseTwoNull(const ResetArgs&, aclrtStream stream) {
  return aclnnMoeDistributeBufferReset(nullptr, 0, nullptr, stream);
}

const char* LongName() {
  static const std::string name(128, 'g');
  return name.c_str();
}

const char* UnterminatedName() {
  static const char* const name = [] {
    const long page = sysconf(_SC_PAGESIZE);
    void* pages = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pages == MAP_FAILED) throw std::runtime_error("UnterminatedName: mmap failed");
    char* guard = static_cast<char*>(pages) + page;
    if (mprotect(guard, page, PROT_NONE) != 0) throw std::runtime_error("UnterminatedName: mprotect failed");
    std::memset(guard - 128, 'g', 128);
    return guard - 128;
  }();
  return name;
}

}  // namespace moe_ep::capi_testing
