// CANN C API example: DispatchV2 + CombineV2 on 16 devices, EP 8 x TP 2, with one shared expert.
//
// Device d is EP rank d / 2 and TP rank d % 2. EP rank 0 hosts the shared expert; EP ranks 1..7 host
// the 7 MoE experts (one each). Every device sends 8 tokens of hidden size 1024 (bf16) to its top-3
// experts with weights 1/2, 1/4, 1/8. The stand-in "expert" is the identity split over the TP pair:
// each TP rank returns half of every row it holds, and CombineV2's TP reduce-scatter adds the halves.
// So every token comes back as (1/2 + 1/4 + 1/8) * x + x (shared expert, unweighted) = 1.875 * x,
// which is exact in bf16 for the small integers in x. Each rank checks what its expert received and
// what came back, prints OK, and the program exits non-zero if any rank failed.
//
// Build (installed prefix P, after `source P/latest/bin/setenv.bash`; one command line):
//   g++ dispatch_combine.cpp -o dispatch_combine -I$P/latest/include -I$P/latest/include/aclnnop
//       -L$P/latest/lib64 -lascendcl -lnnopbase -lopapi -lop_common -lpthread -lhccl
#include <algorithm>
#include <cstdio>
#include <vector>

#include "acl/acl.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "example_util.h"
#include "hccl/hccl.h"

namespace {

constexpr int kEpWorldSize = 8, kTpWorldSize = 2, kDevices = kEpWorldSize * kTpWorldSize;
constexpr int64_t kBs = 8, kH = 1024, kK = 3;
constexpr int64_t kMoeExpertNum = 7, kSharedExpertNum = 1, kSharedExpertRankNum = 1;
constexpr float kWeights[kK] = {0.5f, 0.25f, 0.125f};

// Token t of device d: element 0 names the device, element 1 the token, the rest are small integers.
float TokenValue(int d, int64_t t, int64_t h) {
  if (h == 0) return static_cast<float>(d + 1);
  if (h == 1) return static_cast<float>(t + 1);
  return static_cast<float>(1 + (d + t + h) % 16);
}

// The top-3 MoE experts of token t on EP rank ep (three distinct experts of 7); the same in both TP groups.
int32_t ExpertOf(int ep, int64_t t, int64_t k) {
  static constexpr int kOffsets[kK] = {0, 2, 5};
  return static_cast<int32_t>((ep + t + kOffsets[k]) % kMoeExpertNum);
}

// Whether EP rank `ep` receives token t of the devices of EP rank `src_ep` (shared rank 0: every token).
bool Receives(int ep, int src_ep, int64_t t) {
  if (ep < kSharedExpertRankNum) return true;
  for (int64_t k = 0; k < kK; ++k) {
    if (ExpertOf(src_ep, t, k) == ep - kSharedExpertRankNum) return true;
  }
  return false;
}

struct Rank {
  Device device;
  int ep_rank = 0, tp_rank = 0;
  HcclComm ep_comm = nullptr, tp_comm = nullptr;
};

// The expert: checks every received row (a token routed here, from either TP group, each exactly
// once), then replaces it with its half, this TP rank's share of the identity.
bool RunExpert(const Rank& rank, std::vector<uint16_t>& rows, int64_t num_rows) {
  std::vector<int> seen(kDevices * kBs, 0);
  int64_t expected_rows = 0;
  for (int d = 0; d < kDevices; ++d) {
    for (int64_t t = 0; t < kBs; ++t) expected_rows += Receives(rank.ep_rank, d / kTpWorldSize, t) ? 1 : 0;
  }
  if (num_rows != expected_rows) {
    std::fprintf(stderr, "[ERROR] device %d: expert received %lld rows, expected %lld\n", rank.device.id,
                 static_cast<long long>(num_rows), static_cast<long long>(expected_rows));
    return false;
  }
  for (int64_t row = 0; row < num_rows; ++row) {
    uint16_t* x = &rows[row * kH];
    const int d = static_cast<int>(Bf16ToFloat(x[0])) - 1;
    const int64_t t = static_cast<int64_t>(Bf16ToFloat(x[1])) - 1;
    bool good = d >= 0 && d < kDevices && t >= 0 && t < kBs && Receives(rank.ep_rank, d / kTpWorldSize, t) &&
                seen[d * kBs + t]++ == 0;
    for (int64_t h = 0; good && h < kH; ++h) good = Bf16ToFloat(x[h]) == TokenValue(d, t, h);
    if (!good) {
      std::fprintf(stderr, "[ERROR] device %d: expandX row %lld is not a token routed here\n", rank.device.id,
                   static_cast<long long>(row));
      return false;
    }
    for (int64_t h = 0; h < kH; ++h) x[h] = FloatToBf16(0.5f * Bf16ToFloat(x[h]));
  }
  return true;
}

bool RunRank(const Rank& rank) {
  if (!Ok(aclrtSetCurrentContext(rank.device.context), "aclrtSetCurrentContext")) return false;
  char group_ep[COMM_NAME_MAX_LENGTH] = {0}, group_tp[COMM_NAME_MAX_LENGTH] = {0};
  if (!Ok(HcclGetCommName(rank.ep_comm, group_ep), "HcclGetCommName (EP)")) return false;
  if (!Ok(HcclGetCommName(rank.tp_comm, group_tp), "HcclGetCommName (TP)")) return false;

  // A: the most rows this rank can receive from its EP group (the shared rank gets every token).
  const bool shared_rank = rank.ep_rank < kSharedExpertRankNum;
  const int64_t local_expert_num = shared_rank ? 1 : kMoeExpertNum / (kEpWorldSize - kSharedExpertRankNum);
  const int64_t a = shared_rank ? kBs * kEpWorldSize * kSharedExpertNum / kSharedExpertRankNum
                                : kBs * kEpWorldSize * std::min(local_expert_num, kK);

  std::vector<uint16_t> x_host(kBs * kH);
  std::vector<int32_t> ids_host(kBs * kK);
  std::vector<float> weights_host(kBs * kK);
  for (int64_t t = 0; t < kBs; ++t) {
    for (int64_t h = 0; h < kH; ++h) x_host[t * kH + h] = FloatToBf16(TokenValue(rank.device.id, t, h));
    for (int64_t k = 0; k < kK; ++k) {
      ids_host[t * kK + k] = ExpertOf(rank.ep_rank, t, k);
      weights_host[t * kK + k] = kWeights[k];
    }
  }
  DeviceTensor x, expert_ids, expert_scales, expand_x, assist_info, expert_token_nums, ep_recv_counts, tp_recv_counts;
  const bool created =
      x.Create({kBs, kH}, ACL_BF16, x_host) && expert_ids.Create({kBs, kK}, ACL_INT32, ids_host) &&
      expert_scales.Create({kBs, kK}, ACL_FLOAT, weights_host) &&
      expand_x.Create({kTpWorldSize * a, kH}, ACL_BF16, std::vector<uint16_t>(kTpWorldSize * a * kH)) &&
      assist_info.Create({a * 128}, ACL_INT32, std::vector<int32_t>(a * 128)) &&
      expert_token_nums.Create({local_expert_num}, ACL_INT64, std::vector<int64_t>(local_expert_num)) &&
      ep_recv_counts.Create({kEpWorldSize * kTpWorldSize * local_expert_num}, ACL_INT32,
                            std::vector<int32_t>(kEpWorldSize * kTpWorldSize * local_expert_num)) &&
      tp_recv_counts.Create({kTpWorldSize}, ACL_INT32, std::vector<int32_t>(kTpWorldSize));
  if (!created) return false;

  // Dispatch: phase one validates and plans, phase two enqueues on the stream.
  uint64_t workspace_size = 0;
  aclOpExecutor* executor = nullptr;
  if (!Ok(aclnnMoeDistributeDispatchV2GetWorkspaceSize(
              x.get(), expert_ids.get(), /*scales=*/nullptr, /*xActiveMask=*/nullptr, /*expertScales=*/nullptr,
              group_ep, kEpWorldSize, rank.ep_rank, kMoeExpertNum, group_tp, kTpWorldSize, rank.tp_rank,
              /*expertShardType=*/0, kSharedExpertNum, kSharedExpertRankNum, /*quantMode=*/0, /*globalBs=*/0,
              /*expertTokenNumsType=*/1, /*commAlg=*/nullptr, expand_x.get(), /*dynamicScales=*/nullptr,
              assist_info.get(), expert_token_nums.get(), ep_recv_counts.get(), tp_recv_counts.get(),
              /*expandScales=*/nullptr, &workspace_size, &executor),
          "aclnnMoeDistributeDispatchV2GetWorkspaceSize")) {
    return false;
  }
  // moe_ep uses no workspace (it reports 16 MiB, as CANN does, for programs that always allocate it).
  if (!Ok(aclnnMoeDistributeDispatchV2(nullptr, workspace_size, executor, rank.device.stream),
          "aclnnMoeDistributeDispatchV2") ||
      !Synchronize(rank.device.stream, "aclnnMoeDistributeDispatchV2")) {
    return false;
  }

  // The expert runs on rows [0, expertTokenNums[0]): this rank's EP rows, then its TP peer's.
  std::vector<int64_t> token_nums;
  std::vector<uint16_t> rows;
  if (!expert_token_nums.Read(token_nums) || !expand_x.Read(rows)) return false;
  if (!RunExpert(rank, rows, token_nums[0]) || !expand_x.Write(rows)) return false;

  // Combine: the dispatch outputs go back in as they came out (epRecvCounts -> epSendCounts, ...).
  DeviceTensor out;
  if (!out.Create({kBs, kH}, ACL_BF16, std::vector<uint16_t>(kBs * kH))) return false;
  if (!Ok(aclnnMoeDistributeCombineV2GetWorkspaceSize(
              expand_x.get(), expert_ids.get(), assist_info.get(), ep_recv_counts.get(), expert_scales.get(),
              tp_recv_counts.get(), /*xActiveMask=*/nullptr, /*activationScale=*/nullptr, /*weightScale=*/nullptr,
              /*groupList=*/nullptr, /*expandScales=*/nullptr, /*sharedExpertX=*/nullptr, group_ep, kEpWorldSize,
              rank.ep_rank, kMoeExpertNum, group_tp, kTpWorldSize, rank.tp_rank, /*expertShardType=*/0,
              kSharedExpertNum, kSharedExpertRankNum, /*globalBs=*/0, /*outDtype=*/0, /*commQuantMode=*/0,
              /*groupListType=*/0, /*commAlg=*/nullptr, out.get(), &workspace_size, &executor),
          "aclnnMoeDistributeCombineV2GetWorkspaceSize") ||
      !Ok(aclnnMoeDistributeCombineV2(nullptr, workspace_size, executor, rank.device.stream),
          "aclnnMoeDistributeCombineV2") ||
      !Synchronize(rank.device.stream, "aclnnMoeDistributeCombineV2")) {
    return false;
  }

  std::vector<uint16_t> y;
  if (!out.Read(y)) return false;
  for (int64_t t = 0; t < kBs; ++t) {
    for (int64_t h = 0; h < kH; ++h) {
      const float want = 1.875f * TokenValue(rank.device.id, t, h);
      if (Bf16ToFloat(y[t * kH + h]) != want) {
        std::fprintf(stderr, "[ERROR] device %d: token %lld element %lld is %g, expected %g\n", rank.device.id,
                     static_cast<long long>(t), static_cast<long long>(h), Bf16ToFloat(y[t * kH + h]), want);
        return false;
      }
    }
  }
  std::printf("[INFO] device %2d (EP rank %d, TP rank %d): OK, expert rows %lld\n", rank.device.id, rank.ep_rank,
              rank.tp_rank, static_cast<long long>(token_nums[0]));
  return true;
}

}  // namespace

int main() {
  if (!Ok(aclInit(nullptr), "aclInit")) return 1;
  std::vector<Device> devices(kDevices);
  if (!SetUpDevices(devices)) return 1;

  // One EP communicator per TP rank (the devices with that TP rank), one TP communicator per EP rank.
  std::vector<Rank> ranks(kDevices);
  for (int tp = 0; tp < kTpWorldSize; ++tp) {
    int32_t members[kEpWorldSize];
    HcclComm comms[kEpWorldSize];
    for (int ep = 0; ep < kEpWorldSize; ++ep) members[ep] = ep * kTpWorldSize + tp;
    if (!Ok(HcclCommInitAll(kEpWorldSize, members, comms), "HcclCommInitAll (EP)")) return 1;
    for (int ep = 0; ep < kEpWorldSize; ++ep) ranks[members[ep]].ep_comm = comms[ep];
  }
  for (int ep = 0; ep < kEpWorldSize; ++ep) {
    int32_t members[kTpWorldSize];
    HcclComm comms[kTpWorldSize];
    for (int tp = 0; tp < kTpWorldSize; ++tp) members[tp] = ep * kTpWorldSize + tp;
    if (!Ok(HcclCommInitAll(kTpWorldSize, members, comms), "HcclCommInitAll (TP)")) return 1;
    for (int tp = 0; tp < kTpWorldSize; ++tp) ranks[members[tp]].tp_comm = comms[tp];
  }
  for (int d = 0; d < kDevices; ++d) {
    ranks[d].device = devices[d];
    ranks[d].ep_rank = d / kTpWorldSize;
    ranks[d].tp_rank = d % kTpWorldSize;
  }

  const int failed = RunRanks(kDevices, [&](int d) { return RunRank(ranks[d]); });

  for (Rank& rank : ranks) {
    HcclCommDestroy(rank.ep_comm);
    HcclCommDestroy(rank.tp_comm);
  }
  TearDownDevices(devices);
  aclFinalize();
  char what[64];
  std::snprintf(what, sizeof(what), "dispatch + combine (EP %d x TP %d, shared expert)", kEpWorldSize, kTpWorldSize);
  return Report(failed, kDevices, what);
}
