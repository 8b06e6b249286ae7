// CANN C API example for Atlas A2: DispatchV2 + CombineV2 with commAlg "fullmesh" on 8 devices (one EP
// group, 16 MoE experts: 2 per device), 1-D xActiveMask on odd ranks. It checks A2's own layout:
//   * assistInfoForCombineOut holds expandIdx, written on the token's owner: for pair (t, k) the number of
//     earlier pairs of this rank that went to the same expert (entries past the active pairs untouched);
//   * expandX rows: local expert, then source rank, then token; epRecvCounts inclusive cumulative;
//   * combine: y = bf16(sum over k of out_k * w_k), multiply and add each rounded to fp32.
// Under moe_ep, run it with MOE_EP_SOC_NAME=Ascend910B3 (any Ascend910B<n> name selects Atlas A2).
//
// Build (installed prefix P, after `source P/latest/bin/setenv.bash`; one command line):
//   g++ atlas_a2.cpp -o atlas_a2 -I$P/latest/include -I$P/latest/include/aclnnop
//       -L$P/latest/lib64 -lascendcl -lnnopbase -lopapi -lop_common -lpthread -lhccl
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "acl/acl.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "example_util.h"
#include "hccl/hccl.h"

namespace {

constexpr int kEpWorldSize = 8;
constexpr int64_t kBs = 6, kH = 256, kK = 2, kMoeExpertNum = 16;
constexpr int64_t kLocalExpertNum = kMoeExpertNum / kEpWorldSize;
constexpr int64_t kA = kBs * kEpWorldSize * std::min(kLocalExpertNum, kK);  // rows a rank can receive
constexpr float kWeights[kK] = {0.75f, 0.25f};
constexpr int32_t kUntouched = -7;  // expandIdx entries past the active pairs keep it

float TokenValue(int src, int64_t t, int64_t h) {  // multiples of 1/16 in [-7.9, 7.9]: exact in bf16
  return static_cast<float>((src * 131 + t * 31 + h * 7) % 255 - 127) / 16;
}
int32_t ExpertOf(int src, int64_t t, int64_t k) { return static_cast<int32_t>((src * 5 + t * 3 + 7 * k) % 16); }
int64_t ActiveTokens(int src) { return src % 2 == 1 ? kBs - 2 : kBs; }  // odd ranks mask their last two tokens
// The stand-in expert: halves the token for odd experts (exact in bf16).
float ExpertOutput(int32_t expert, float value) { return expert % 2 == 1 ? value / 2 : value; }

bool Fail(int rank, const char* what, long long at, long long got, long long want) {
  std::fprintf(stderr, "[ERROR] rank %d: %s[%lld] = %lld, expected %lld\n", rank, what, at, got, want);
  return false;
}

// expandIdx of this rank's pairs, computed from its own expert ids.
bool CheckExpandIdx(int rank, const std::vector<int32_t>& assist) {
  std::vector<int32_t> seen(kMoeExpertNum, 0);
  for (int64_t i = 0; i < kBs * kK; ++i) {
    const int32_t want = i < ActiveTokens(rank) * kK ? seen[ExpertOf(rank, i / kK, i % kK)]++ : kUntouched;
    if (assist[i] != want) return Fail(rank, "assistInfoForCombine (expandIdx)", i, assist[i], want);
  }
  return true;
}

// The rows this rank received, in A2's order, checked against the senders' tokens; writes the expert outputs.
bool CheckRowsAndRunExperts(int rank, const std::vector<uint16_t>& rows, const std::vector<int32_t>& recv_counts,
                            std::vector<uint16_t>& out) {
  int64_t row = 0;
  for (int64_t e_local = 0; e_local < kLocalExpertNum; ++e_local) {
    const int32_t e = static_cast<int32_t>(rank * kLocalExpertNum + e_local);
    for (int src = 0; src < kEpWorldSize; ++src) {
      for (int64_t t = 0; t < ActiveTokens(src); ++t) {
        if (ExpertOf(src, t, 0) != e && ExpertOf(src, t, 1) != e) continue;
        for (int64_t h = 0; h < kH; ++h) {
          if (rows[row * kH + h] != FloatToBf16(TokenValue(src, t, h))) {
            std::fprintf(stderr, "[ERROR] rank %d: expandX row %lld is not token %lld of rank %d (expert %d)\n", rank,
                         static_cast<long long>(row), static_cast<long long>(t), src, e);
            return false;
          }
          out[row * kH + h] = FloatToBf16(ExpertOutput(e, TokenValue(src, t, h)));
        }
        ++row;
      }
      const int64_t entry = e_local * kEpWorldSize + src;
      if (recv_counts[entry] != row) return Fail(rank, "epRecvCounts", entry, recv_counts[entry], row);
    }
  }
  return true;
}

bool RunRank(const Device& device, HcclComm comm) {
  const int rank = device.id;
  if (!Ok(aclrtSetCurrentContext(device.context), "aclrtSetCurrentContext")) return false;
  char group_ep[COMM_NAME_MAX_LENGTH] = {0};
  if (!Ok(HcclGetCommName(comm, group_ep), "HcclGetCommName")) return false;

  std::vector<uint16_t> x_host(kBs * kH);
  std::vector<int32_t> ids_host(kBs * kK);
  std::vector<float> weights_host(kBs * kK);
  std::vector<uint8_t> mask_host(kBs);
  for (int64_t t = 0; t < kBs; ++t) {
    mask_host[t] = t < ActiveTokens(rank) ? 1 : 0;
    for (int64_t h = 0; h < kH; ++h) x_host[t * kH + h] = FloatToBf16(TokenValue(rank, t, h));
    for (int64_t k = 0; k < kK; ++k) {
      ids_host[t * kK + k] = ExpertOf(rank, t, k);
      weights_host[t * kK + k] = kWeights[k];
    }
  }
  DeviceTensor x, expert_ids, mask, expert_scales, expand_x, assist_info, expert_token_nums, ep_recv_counts,
      tp_recv_counts, expert_out, out;
  const bool created = x.Create({kBs, kH}, ACL_BF16, x_host) && expert_ids.Create({kBs, kK}, ACL_INT32, ids_host) &&
                       mask.Create({kBs}, ACL_BOOL, mask_host) &&
                       expert_scales.Create({kBs, kK}, ACL_FLOAT, weights_host) &&
                       expand_x.Create({kA, kH}, ACL_BF16, std::vector<uint16_t>(kA * kH)) &&
                       assist_info.Create({kA * 128}, ACL_INT32, std::vector<int32_t>(kA * 128, kUntouched)) &&
                       expert_token_nums.Create({kLocalExpertNum}, ACL_INT64, std::vector<int64_t>(kLocalExpertNum)) &&
                       ep_recv_counts.Create({kMoeExpertNum}, ACL_INT32, std::vector<int32_t>(kMoeExpertNum)) &&
                       tp_recv_counts.Create({1}, ACL_INT32, std::vector<int32_t>(1)) &&
                       expert_out.Create({kA, kH}, ACL_BF16, std::vector<uint16_t>(kA * kH)) &&
                       out.Create({kBs, kH}, ACL_BF16, std::vector<uint16_t>(kBs * kH));
  if (!created) return false;

  uint64_t workspace_size = 0;
  aclOpExecutor* executor = nullptr;
  if (!Ok(aclnnMoeDistributeDispatchV2GetWorkspaceSize(
              x.get(), expert_ids.get(), /*scales=*/nullptr, mask.get(), /*expertScales=*/nullptr, group_ep,
              kEpWorldSize, rank, kMoeExpertNum, /*groupTp=*/"", /*tpWorldSize=*/0, /*tpRankId=*/0,
              /*expertShardType=*/0, /*sharedExpertNum=*/0, /*sharedExpertRankNum=*/0, /*quantMode=*/0,
              /*globalBs=*/0, /*expertTokenNumsType=*/1, "fullmesh", expand_x.get(), /*dynamicScales=*/nullptr,
              assist_info.get(), expert_token_nums.get(), ep_recv_counts.get(), tp_recv_counts.get(),
              /*expandScales=*/nullptr, &workspace_size, &executor),
          "aclnnMoeDistributeDispatchV2GetWorkspaceSize") ||
      !Ok(aclnnMoeDistributeDispatchV2(nullptr, workspace_size, executor, device.stream),
          "aclnnMoeDistributeDispatchV2") ||
      !Synchronize(device.stream, "aclnnMoeDistributeDispatchV2")) {
    return false;
  }

  std::vector<uint16_t> rows, expert_rows(kA * kH);
  std::vector<int32_t> assist, recv_counts;
  if (!expand_x.Read(rows) || !assist_info.Read(assist) || !ep_recv_counts.Read(recv_counts)) return false;
  if (!CheckExpandIdx(rank, assist) || !CheckRowsAndRunExperts(rank, rows, recv_counts, expert_rows) ||
      !expert_out.Write(expert_rows)) {
    return false;
  }

  if (!Ok(aclnnMoeDistributeCombineV2GetWorkspaceSize(
              expert_out.get(), expert_ids.get(), assist_info.get(), ep_recv_counts.get(), expert_scales.get(),
              tp_recv_counts.get(), mask.get(), nullptr, nullptr, nullptr, nullptr, nullptr, group_ep, kEpWorldSize,
              rank, kMoeExpertNum, "", /*tpWorldSize=*/0, 0, 0, 0, 0, /*globalBs=*/0, /*outDtype=*/0,
              /*commQuantMode=*/0, /*groupListType=*/0, "fullmesh", out.get(), &workspace_size, &executor),
          "aclnnMoeDistributeCombineV2GetWorkspaceSize") ||
      !Ok(aclnnMoeDistributeCombineV2(nullptr, workspace_size, executor, device.stream),
          "aclnnMoeDistributeCombineV2") ||
      !Synchronize(device.stream, "aclnnMoeDistributeCombineV2")) {
    return false;
  }

  std::vector<uint16_t> y;
  if (!out.Read(y)) return false;
  for (int64_t t = 0; t < ActiveTokens(rank); ++t) {
    for (int64_t h = 0; h < kH; ++h) {
      float acc = 0.0f;
      for (int64_t k = 0; k < kK; ++k) {
        const float product =
            Bf16ToFloat(FloatToBf16(ExpertOutput(ExpertOf(rank, t, k), TokenValue(rank, t, h)))) * kWeights[k];
        acc = acc + product;
      }
      if (y[t * kH + h] != FloatToBf16(acc))
        return Fail(rank, "combined x", t * kH + h, y[t * kH + h], FloatToBf16(acc));
    }
  }
  std::printf("[INFO] rank %d: expandIdx, rows, epRecvCounts and combine match Atlas A2's layout\n", rank);
  return true;
}

// The program is for Atlas A2: aclrtGetSocName must report an Ascend910B<n>.
bool IsAtlasA2() {
  const char* soc = aclrtGetSocName();
  if (soc == nullptr || std::strncmp(soc, "Ascend910B", 10) != 0) {
    std::fprintf(stderr,
                 "[ERROR] this program is for Atlas A2 (Ascend910B<n>), the SoC is %s; under moe_ep set "
                 "MOE_EP_SOC_NAME=Ascend910B3\n",
                 soc ? soc : aclGetRecentErrMsg());
    return false;
  }
  std::printf("[INFO] SoC %s (Atlas A2)\n", soc);
  return true;
}

}  // namespace

int main() { return RunExample(kEpWorldSize, "Atlas A2 dispatch + combine", RunRank, IsAtlasA2); }
