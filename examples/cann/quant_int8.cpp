// CANN C API example: DispatchV2 with int8 dynamic quantization (quantMode 2) and smooth scales, then
// CombineV2, on 16 devices (one EP group, 32 MoE experts: 2 per device, no TP, no shared expert).
//
// For every row it sends to expert e, dispatch quantizes the token with that expert's smooth scales
// (scales has one row per expert, shape (moeExpertNum, H)):
//   f = float(x) * scales[e];  ds = 127 / max|f|;  q = round_half_even(f * ds);  dynamicScale = 1 / ds
// (all in fp32). Each expert rank recomputes this for every row it received and checks expandX (int8)
// and dynamicScales bit for bit. The stand-in expert dequantizes (bf16(q * dynamicScale)), and each
// token owner checks CombineV2's result against the same steps done locally:
//   y = bf16(sum over k of out_k * w_k), multiply and add each rounded to fp32.
//
// Build (installed prefix P, after `source P/latest/bin/setenv.bash`; one command line):
//   g++ quant_int8.cpp -o quant_int8 -I$P/latest/include -I$P/latest/include/aclnnop
//       -L$P/latest/lib64 -lascendcl -lnnopbase -lopapi -lop_common -lpthread -lhccl
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "acl/acl.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "example_util.h"
#include "hccl/hccl.h"

namespace {

constexpr int kEpWorldSize = 16;
constexpr int64_t kBs = 8, kH = 1024, kK = 2, kMoeExpertNum = 32;
constexpr int64_t kLocalExpertNum = kMoeExpertNum / kEpWorldSize;
constexpr float kWeights[kK] = {0.75f, 0.25f};

// Token t of rank `src`: multiples of 1/16 in [-7.9, 7.9], exact in bf16.
float TokenValue(int src, int64_t t, int64_t h) {
  return static_cast<float>((src * 131 + t * 31 + h * 7) % 255 - 127) / 16;
}
float SmoothScale(int64_t expert, int64_t h) { return 0.5f + static_cast<float>((expert + h) % 8) / 8; }
int32_t ExpertOf(int src, int64_t t, int64_t k) { return static_cast<int32_t>((src * 3 + t + 16 * k) % kMoeExpertNum); }

// The documented dynamic quantization of token (src, t) for expert e.
void Quantize(int src, int64_t t, int64_t e, std::vector<int8_t>& q, float& scale) {
  std::vector<float> f(kH);
  float amax = 0.0f;
  for (int64_t h = 0; h < kH; ++h) {
    f[h] = TokenValue(src, t, h) * SmoothScale(e, h);
    amax = std::fmax(amax, std::fabs(f[h]));
  }
  const float ds = 127.0f / amax;
  q.resize(kH);
  for (int64_t h = 0; h < kH; ++h) q[h] = static_cast<int8_t>(std::nearbyint(f[h] * ds));  // ties to even
  scale = 1.0f / ds;
}

// The stand-in expert: dequantization.
uint16_t Dequantize(int8_t q, float scale) { return FloatToBf16(static_cast<float>(q) * scale); }

// Checks the received rows against the documented order (local expert, then source rank, then token)
// and the quantization formula, and writes the expert's output rows (bf16) into `out`.
bool CheckAndRunExperts(int rank, const std::vector<int8_t>& expand_x, const std::vector<float>& dynamic_scales,
                        const std::vector<int64_t>& token_nums, std::vector<uint16_t>& out) {
  int64_t row = 0;
  std::vector<int8_t> q;
  float scale = 0.0f;
  for (int64_t e_local = 0; e_local < kLocalExpertNum; ++e_local) {
    const int64_t e = rank * kLocalExpertNum + e_local, first = row;
    for (int src = 0; src < kEpWorldSize; ++src) {
      for (int64_t t = 0; t < kBs; ++t) {
        if (ExpertOf(src, t, 0) != e && ExpertOf(src, t, 1) != e) continue;
        Quantize(src, t, e, q, scale);
        bool good = dynamic_scales[row] == scale;
        for (int64_t h = 0; good && h < kH; ++h) good = expand_x[row * kH + h] == q[h];
        if (!good) {
          std::fprintf(stderr,
                       "[ERROR] rank %d: row %lld (expert %lld, token %lld of rank %d) differs from the formula\n",
                       rank, static_cast<long long>(row), static_cast<long long>(e), static_cast<long long>(t), src);
          return false;
        }
        for (int64_t h = 0; h < kH; ++h) out[row * kH + h] = Dequantize(q[h], scale);
        ++row;
      }
    }
    if (token_nums[e_local] != row - first) {  // expertTokenNumsType 1: the count of each local expert
      std::fprintf(stderr, "[ERROR] rank %d: expertTokenNums[%lld] = %lld, expected %lld\n", rank,
                   static_cast<long long>(e_local), static_cast<long long>(token_nums[e_local]),
                   static_cast<long long>(row - first));
      return false;
    }
  }
  return true;
}

bool RunRank(const Device& device, HcclComm comm) {
  const int rank = device.id;
  if (!Ok(aclrtSetCurrentContext(device.context), "aclrtSetCurrentContext")) return false;
  char group_ep[COMM_NAME_MAX_LENGTH] = {0};
  if (!Ok(HcclGetCommName(comm, group_ep), "HcclGetCommName")) return false;

  const int64_t a = kBs * kEpWorldSize * std::min(kLocalExpertNum, kK);  // rows this rank can receive
  std::vector<uint16_t> x_host(kBs * kH);
  std::vector<int32_t> ids_host(kBs * kK);
  std::vector<float> weights_host(kBs * kK), scales_host(kMoeExpertNum * kH);
  for (int64_t t = 0; t < kBs; ++t) {
    for (int64_t h = 0; h < kH; ++h) x_host[t * kH + h] = FloatToBf16(TokenValue(rank, t, h));
    for (int64_t k = 0; k < kK; ++k) {
      ids_host[t * kK + k] = ExpertOf(rank, t, k);
      weights_host[t * kK + k] = kWeights[k];
    }
  }
  for (int64_t e = 0; e < kMoeExpertNum; ++e) {
    for (int64_t h = 0; h < kH; ++h) scales_host[e * kH + h] = SmoothScale(e, h);
  }
  DeviceTensor x, expert_ids, scales, expert_scales, expand_x, dynamic_scales, assist_info, expert_token_nums,
      ep_recv_counts, tp_recv_counts, expert_out, out;
  const bool created = x.Create({kBs, kH}, ACL_BF16, x_host) && expert_ids.Create({kBs, kK}, ACL_INT32, ids_host) &&
                       scales.Create({kMoeExpertNum, kH}, ACL_FLOAT, scales_host) &&
                       expert_scales.Create({kBs, kK}, ACL_FLOAT, weights_host) &&
                       expand_x.Create({a, kH}, ACL_INT8, std::vector<int8_t>(a * kH)) &&  // int8 with quantMode 2
                       dynamic_scales.Create({a}, ACL_FLOAT, std::vector<float>(a)) &&
                       assist_info.Create({a * 128}, ACL_INT32, std::vector<int32_t>(a * 128)) &&
                       expert_token_nums.Create({kLocalExpertNum}, ACL_INT64, std::vector<int64_t>(kLocalExpertNum)) &&
                       ep_recv_counts.Create({kEpWorldSize * kLocalExpertNum}, ACL_INT32,
                                             std::vector<int32_t>(kEpWorldSize * kLocalExpertNum)) &&
                       tp_recv_counts.Create({1}, ACL_INT32, std::vector<int32_t>(1)) &&
                       expert_out.Create({a, kH}, ACL_BF16, std::vector<uint16_t>(a * kH)) &&
                       out.Create({kBs, kH}, ACL_BF16, std::vector<uint16_t>(kBs * kH));
  if (!created) return false;

  uint64_t workspace_size = 0;
  aclOpExecutor* executor = nullptr;
  if (!Ok(aclnnMoeDistributeDispatchV2GetWorkspaceSize(
              x.get(), expert_ids.get(), scales.get(), /*xActiveMask=*/nullptr, /*expertScales=*/nullptr, group_ep,
              kEpWorldSize, rank, kMoeExpertNum, /*groupTp=*/"", /*tpWorldSize=*/1, /*tpRankId=*/0,
              /*expertShardType=*/0, /*sharedExpertNum=*/0, /*sharedExpertRankNum=*/0, /*quantMode=*/2,
              /*globalBs=*/0, /*expertTokenNumsType=*/1, /*commAlg=*/nullptr, expand_x.get(), dynamic_scales.get(),
              assist_info.get(), expert_token_nums.get(), ep_recv_counts.get(), tp_recv_counts.get(),
              /*expandScales=*/nullptr, &workspace_size, &executor),
          "aclnnMoeDistributeDispatchV2GetWorkspaceSize") ||
      !Ok(aclnnMoeDistributeDispatchV2(nullptr, workspace_size, executor, device.stream),
          "aclnnMoeDistributeDispatchV2") ||
      !Synchronize(device.stream, "aclnnMoeDistributeDispatchV2")) {
    return false;
  }

  std::vector<int8_t> rows;
  std::vector<float> row_scales;
  std::vector<int64_t> token_nums;
  std::vector<uint16_t> expert_rows(a * kH);
  if (!expand_x.Read(rows) || !dynamic_scales.Read(row_scales) || !expert_token_nums.Read(token_nums)) return false;
  if (!CheckAndRunExperts(rank, rows, row_scales, token_nums, expert_rows) || !expert_out.Write(expert_rows)) {
    return false;
  }

  if (!Ok(aclnnMoeDistributeCombineV2GetWorkspaceSize(
              expert_out.get(), expert_ids.get(), assist_info.get(), ep_recv_counts.get(), expert_scales.get(),
              tp_recv_counts.get(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, group_ep, kEpWorldSize, rank,
              kMoeExpertNum, "", /*tpWorldSize=*/1, 0, 0, 0, 0, /*globalBs=*/0, /*outDtype=*/0,
              /*commQuantMode=*/0, /*groupListType=*/0, nullptr, out.get(), &workspace_size, &executor),
          "aclnnMoeDistributeCombineV2GetWorkspaceSize") ||
      !Ok(aclnnMoeDistributeCombineV2(nullptr, workspace_size, executor, device.stream),
          "aclnnMoeDistributeCombineV2") ||
      !Synchronize(device.stream, "aclnnMoeDistributeCombineV2")) {
    return false;
  }

  // The owner's check: the same quantize / dequantize steps, then the weighted sum in fp32.
  std::vector<uint16_t> y;
  if (!out.Read(y)) return false;
  std::vector<int8_t> q[kK];
  float scale[kK];
  for (int64_t t = 0; t < kBs; ++t) {
    for (int64_t k = 0; k < kK; ++k) Quantize(rank, t, ExpertOf(rank, t, k), q[k], scale[k]);
    for (int64_t h = 0; h < kH; ++h) {
      float acc = 0.0f;
      for (int64_t k = 0; k < kK; ++k) {
        const float product = Bf16ToFloat(Dequantize(q[k][h], scale[k])) * kWeights[k];
        acc = acc + product;
      }
      if (y[t * kH + h] != FloatToBf16(acc)) {
        std::fprintf(stderr, "[ERROR] rank %d: token %lld element %lld is %g, expected %g\n", rank,
                     static_cast<long long>(t), static_cast<long long>(h), Bf16ToFloat(y[t * kH + h]),
                     Bf16ToFloat(FloatToBf16(acc)));
        return false;
      }
    }
  }
  std::printf("[INFO] rank %2d: int8 rows and dynamicScales match the formula (%lld + %lld rows), combine OK\n", rank,
              static_cast<long long>(token_nums[0]), static_cast<long long>(token_nums[1]));
  return true;
}

}  // namespace

int main() { return RunExample(kEpWorldSize, "int8 dispatch + combine", RunRank); }
