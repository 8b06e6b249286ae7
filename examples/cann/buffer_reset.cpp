// CANN C API example: aclnnMoeDistributeBufferReset on 16 devices (one EP group of 16), between two
// dispatch + combine rounds.
//
// BufferReset clears this rank's communication windows; with needSync = 1 it also waits until every
// rank that elasticInfo marks reachable (here all 16: an all-ones link mask) has cleared its own, so
// the group starts over from a clean state. A round: every device sends 8 tokens (bf16, hidden 1024)
// to its top-2 of 16 MoE experts (one per device) with weights 1/2 and 1/4; the expert returns its rows
// unchanged, so each token comes back as 0.75 * x, exactly. Each rank checks both rounds.
//
// Build (installed prefix P, after `source P/latest/bin/setenv.bash`; one command line):
//   g++ buffer_reset.cpp -o buffer_reset -I$P/latest/include -I$P/latest/include/aclnnop
//       -L$P/latest/lib64 -lascendcl -lnnopbase -lopapi -lop_common -lpthread -lhccl
#include <cstdio>
#include <vector>

#include "acl/acl.h"
#include "aclnnop/aclnn_moe_distribute_buffer_reset.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "example_util.h"
#include "hccl/hccl.h"

namespace {

constexpr int kEpWorldSize = 16;  // BufferReset: a multiple of 16 in [16, 128]
constexpr int64_t kBs = 8, kH = 1024, kK = 2, kMoeExpertNum = 16;
constexpr int64_t kTpWorldSize = 1;  // 0 or 1: no TP communication; tpRecvCounts then has 1 entry
constexpr float kWeights[kK] = {0.5f, 0.25f};

float TokenValue(int rank, int64_t t, int64_t h, int round) {
  return static_cast<float>(1 + (rank + t + h + round) % 16);
}

// One dispatch + combine round on EP rank `rank` of group `group_ep`; checks the combined tokens.
bool Round(int rank, const char* group_ep, aclrtStream stream, int round) {
  const int64_t a = kBs * kEpWorldSize;  // rows this rank can receive: Bs * epWorldSize * min(localExpertNum, K)
  std::vector<uint16_t> x_host(kBs * kH);
  std::vector<int32_t> ids_host(kBs * kK);
  std::vector<float> weights_host(kBs * kK);
  for (int64_t t = 0; t < kBs; ++t) {
    for (int64_t h = 0; h < kH; ++h) x_host[t * kH + h] = FloatToBf16(TokenValue(rank, t, h, round));
    ids_host[t * kK] = static_cast<int32_t>((rank + t) % kMoeExpertNum);
    ids_host[t * kK + 1] = static_cast<int32_t>((rank + t + 5) % kMoeExpertNum);
    weights_host[t * kK] = kWeights[0];
    weights_host[t * kK + 1] = kWeights[1];
  }
  DeviceTensor x, expert_ids, expert_scales, expand_x, assist_info, expert_token_nums, ep_recv_counts, tp_recv_counts,
      out;
  const bool created = x.Create({kBs, kH}, ACL_BF16, x_host) && expert_ids.Create({kBs, kK}, ACL_INT32, ids_host) &&
                       expert_scales.Create({kBs, kK}, ACL_FLOAT, weights_host) &&
                       expand_x.Create({a, kH}, ACL_BF16, std::vector<uint16_t>(a * kH)) &&
                       assist_info.Create({a * 128}, ACL_INT32, std::vector<int32_t>(a * 128)) &&
                       expert_token_nums.Create({1}, ACL_INT64, std::vector<int64_t>(1)) &&
                       ep_recv_counts.Create({kEpWorldSize}, ACL_INT32, std::vector<int32_t>(kEpWorldSize)) &&
                       tp_recv_counts.Create({kTpWorldSize}, ACL_INT32, std::vector<int32_t>(kTpWorldSize)) &&
                       out.Create({kBs, kH}, ACL_BF16, std::vector<uint16_t>(kBs * kH));
  if (!created) return false;

  uint64_t workspace_size = 0;
  aclOpExecutor* executor = nullptr;
  if (!Ok(aclnnMoeDistributeDispatchV2GetWorkspaceSize(
              x.get(), expert_ids.get(), nullptr, nullptr, nullptr, group_ep, kEpWorldSize, rank, kMoeExpertNum,
              /*groupTp=*/"", kTpWorldSize, /*tpRankId=*/0, /*expertShardType=*/0, /*sharedExpertNum=*/0,
              /*sharedExpertRankNum=*/0, /*quantMode=*/0, /*globalBs=*/0, /*expertTokenNumsType=*/1, nullptr,
              expand_x.get(), nullptr, assist_info.get(), expert_token_nums.get(), ep_recv_counts.get(),
              tp_recv_counts.get(), nullptr, &workspace_size, &executor),
          "aclnnMoeDistributeDispatchV2GetWorkspaceSize") ||
      !Ok(aclnnMoeDistributeDispatchV2(nullptr, workspace_size, executor, stream), "aclnnMoeDistributeDispatchV2") ||
      !Synchronize(stream, "aclnnMoeDistributeDispatchV2")) {
    return false;
  }
  // The expert would compute on expandX rows [0, expertTokenNums[0]) here; the identity leaves them as they are.
  if (!Ok(aclnnMoeDistributeCombineV2GetWorkspaceSize(
              expand_x.get(), expert_ids.get(), assist_info.get(), ep_recv_counts.get(), expert_scales.get(),
              tp_recv_counts.get(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, group_ep, kEpWorldSize, rank,
              kMoeExpertNum, "", kTpWorldSize, 0, 0, 0, 0, /*globalBs=*/0, /*outDtype=*/0,
              /*commQuantMode=*/0, /*groupListType=*/0, nullptr, out.get(), &workspace_size, &executor),
          "aclnnMoeDistributeCombineV2GetWorkspaceSize") ||
      !Ok(aclnnMoeDistributeCombineV2(nullptr, workspace_size, executor, stream), "aclnnMoeDistributeCombineV2") ||
      !Synchronize(stream, "aclnnMoeDistributeCombineV2")) {
    return false;
  }
  std::vector<uint16_t> y;
  if (!out.Read(y)) return false;
  for (int64_t i = 0; i < kBs * kH; ++i) {
    const float want = (kWeights[0] + kWeights[1]) * TokenValue(rank, i / kH, i % kH, round);
    if (Bf16ToFloat(y[i]) != want) {
      std::fprintf(stderr, "[ERROR] rank %d round %d: token %lld element %lld is %g, expected %g\n", rank, round,
                   static_cast<long long>(i / kH), static_cast<long long>(i % kH), Bf16ToFloat(y[i]), want);
      return false;
    }
  }
  return true;
}

// Clears this rank's windows and, with needSync = 1, waits for every rank the link mask marks reachable.
bool Reset(const char* group_ep, aclrtStream stream) {
  DeviceTensor link_mask;
  if (!link_mask.Create({kEpWorldSize}, ACL_INT32, std::vector<int32_t>(kEpWorldSize, 1))) return false;
  uint64_t workspace_size = 0;
  aclOpExecutor* executor = nullptr;
  return Ok(aclnnMoeDistributeBufferResetGetWorkspaceSize(link_mask.get(), group_ep, kEpWorldSize, /*needSync=*/1,
                                                          &workspace_size, &executor),
            "aclnnMoeDistributeBufferResetGetWorkspaceSize") &&
         Ok(aclnnMoeDistributeBufferReset(nullptr, workspace_size, executor, stream),
            "aclnnMoeDistributeBufferReset") &&
         Synchronize(stream, "aclnnMoeDistributeBufferReset");
}

bool RunRank(const Device& device, HcclComm comm) {
  if (!Ok(aclrtSetCurrentContext(device.context), "aclrtSetCurrentContext")) return false;
  char group_ep[COMM_NAME_MAX_LENGTH] = {0};
  if (!Ok(HcclGetCommName(comm, group_ep), "HcclGetCommName")) return false;
  if (!Round(device.id, group_ep, device.stream, 1)) return false;
  if (!Reset(group_ep, device.stream)) return false;
  if (!Round(device.id, group_ep, device.stream, 2)) return false;
  std::printf("[INFO] rank %2d: round, BufferReset (needSync 1), round: OK\n", device.id);
  return true;
}

}  // namespace

int main() { return RunExample(kEpWorldSize, "BufferReset between two dispatch + combine rounds", RunRank); }
