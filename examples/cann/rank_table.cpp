// CANN C API example: a group made from a rank table file with a configuration, fp16 tokens filled with
// op::fp16_t, DispatchV2 + CombineV2 on 8 devices.
//
// The program writes a rank table of one server whose rank r is on device 7 - r, and every rank joins with
// HcclCommInitClusterInfoConfig (a configuration naming the group and asking for a 64 MB window). EP rank r hosts
// MoE experts 2r and 2r + 1; every rank sends 4 tokens of hidden size 1024 (fp16) to 2 experts with weights 1/2
// and 1/4, and the stand-in expert is the identity, so every token comes back as 0.75 * x (exact for the small
// integers in x). Each rank checks what came back, prints OK, and the program exits non-zero if any rank failed.
//
// Build (installed prefix P, after `source P/latest/bin/setenv.bash`; one command line), with the libraries the
// vendor's operator samples link:
//   g++ rank_table.cpp -o rank_table -I$P/latest/include -I$P/latest/include/aclnnop -L$P/latest/lib64
//       -lopapi_math -lopapi_transformer -lascendcl -lnnopbase -lpthread -lhccl -lhccl_fwk -lc_sec
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "acl/acl.h"
#include "aclnn/opdev/fp16_t.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "example_util.h"
#include "hccl/hccl.h"

namespace {

constexpr int kRanks = 8;
constexpr int64_t kBs = 4, kH = 1024, kK = 2, kMoeExpertNum = 2 * kRanks;

float TokenValue(int rank, int64_t t, int64_t h) { return static_cast<float>(1 + (rank + 3 * t + h) % 16); }
int32_t ExpertOf(int rank, int64_t t, int64_t k) {
  return static_cast<int32_t>((2 * rank + 5 * t + 7 * k) % kMoeExpertNum);
}

// The rank table: one server, rank r on device kRanks - 1 - r.
std::string WriteRankTable() {
  char path[] = "/tmp/rank_table_example_XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return "";
  close(fd);
  std::ofstream table(path);
  table << "{\"status\": \"completed\", \"version\": \"1.0\", \"server_count\": \"1\", \"server_list\": [\n"
        << "  {\"server_id\": \"127.0.0.1\", \"device\": [\n";
  for (int r = 0; r < kRanks; ++r) {
    table << "    {\"device_id\": \"" << kRanks - 1 - r << "\", \"device_ip\": \"192.168.100." << r
          << "\", \"rank_id\": \"" << r << "\"}" << (r + 1 < kRanks ? ",\n" : "\n");
  }
  table << "  ]}\n]}\n";
  return table ? path : "";
}

bool RunRank(int rank, const Device& device, const std::string& rank_table) {
  if (!Ok(aclrtSetCurrentContext(device.context), "aclrtSetCurrentContext")) return false;
  HcclCommConfig config;
  HcclCommConfigInit(&config);
  config.hcclBufferSize = 64;
  std::snprintf(config.hcclCommName, sizeof config.hcclCommName, "example_ep_group");
  HcclComm comm = nullptr;
  if (!Ok(HcclCommInitClusterInfoConfig(rank_table.c_str(), rank, &config, &comm), "HcclCommInitClusterInfoConfig")) {
    return false;
  }
  char group[COMM_NAME_MAX_LENGTH] = {0};
  bool ok = Ok(HcclGetCommName(comm, group), "HcclGetCommName");

  const int64_t local_experts = kMoeExpertNum / kRanks, a = kBs * kRanks * kK;
  std::vector<op::fp16_t> x_host(kBs * kH);
  std::vector<int32_t> ids_host(kBs * kK);
  std::vector<float> weights_host(kBs * kK);
  for (int64_t t = 0; t < kBs; ++t) {
    for (int64_t h = 0; h < kH; ++h) x_host[t * kH + h] = TokenValue(rank, t, h);
    for (int64_t k = 0; k < kK; ++k) {
      ids_host[t * kK + k] = ExpertOf(rank, t, k);
      weights_host[t * kK + k] = k == 0 ? 0.5f : 0.25f;
    }
  }
  DeviceTensor x, ids, weights, expand_x, assist_info, token_nums, ep_recv_counts, tp_recv_counts, out;
  ok = ok && x.Create({kBs, kH}, ACL_FLOAT16, x_host) && ids.Create({kBs, kK}, ACL_INT32, ids_host) &&
       weights.Create({kBs, kK}, ACL_FLOAT, weights_host) &&
       expand_x.Create({a, kH}, ACL_FLOAT16, std::vector<op::fp16_t>(a * kH)) &&
       assist_info.Create({a * 128}, ACL_INT32, std::vector<int32_t>(a * 128)) &&
       token_nums.Create({local_experts}, ACL_INT64, std::vector<int64_t>(local_experts)) &&
       ep_recv_counts.Create({kRanks * local_experts}, ACL_INT32, std::vector<int32_t>(kRanks * local_experts)) &&
       tp_recv_counts.Create({1}, ACL_INT32, std::vector<int32_t>(1)) &&
       out.Create({kBs, kH}, ACL_FLOAT16, std::vector<op::fp16_t>(kBs * kH));

  uint64_t workspace_size = 0;
  aclOpExecutor* executor = nullptr;
  ok = ok &&
       Ok(aclnnMoeDistributeDispatchV2GetWorkspaceSize(
              x.get(), ids.get(), nullptr, nullptr, nullptr, group, kRanks, rank, kMoeExpertNum, "", 1, 0, 0, 0, 0,
              /*quantMode=*/0, /*globalBs=*/0, /*expertTokenNumsType=*/1, nullptr, expand_x.get(), nullptr,
              assist_info.get(), token_nums.get(), ep_recv_counts.get(), tp_recv_counts.get(), nullptr, &workspace_size,
              &executor),
          "aclnnMoeDistributeDispatchV2GetWorkspaceSize") &&
       Ok(aclnnMoeDistributeDispatchV2(nullptr, workspace_size, executor, device.stream),
          "aclnnMoeDistributeDispatchV2") &&
       Synchronize(device.stream, "aclnnMoeDistributeDispatchV2");
  // The expert is the identity: expandX goes back to combine as it came.
  ok = ok &&
       Ok(aclnnMoeDistributeCombineV2GetWorkspaceSize(
              expand_x.get(), ids.get(), assist_info.get(), ep_recv_counts.get(), weights.get(), tp_recv_counts.get(),
              nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, group, kRanks, rank, kMoeExpertNum, "", 1, 0, 0, 0,
              0, /*globalBs=*/0, /*outDtype=*/0, /*commQuantMode=*/0, /*groupListType=*/0, nullptr, out.get(),
              &workspace_size, &executor),
          "aclnnMoeDistributeCombineV2GetWorkspaceSize") &&
       Ok(aclnnMoeDistributeCombineV2(nullptr, workspace_size, executor, device.stream),
          "aclnnMoeDistributeCombineV2") &&
       Synchronize(device.stream, "aclnnMoeDistributeCombineV2");

  std::vector<op::fp16_t> y;
  ok = ok && out.Read(y);
  for (int64_t i = 0; ok && i < kBs * kH; ++i) {
    const float want = 0.75f * TokenValue(rank, i / kH, i % kH);
    if (static_cast<float>(y[i]) != want) {
      std::fprintf(stderr, "[ERROR] rank %d: element %lld is %g, expected %g\n", rank, static_cast<long long>(i),
                   static_cast<float>(y[i]), want);
      ok = false;
    }
  }
  if (ok) std::printf("[INFO] rank %d on device %d of group '%s': OK\n", rank, device.id, group);
  HcclCommDestroy(comm);
  return ok;
}

}  // namespace

int main() {
  if (!Ok(aclInit(nullptr), "aclInit")) return 1;
  const std::string rank_table = WriteRankTable();
  if (rank_table.empty()) {
    std::fprintf(stderr, "[ERROR] cannot write the rank table\n");
    return 1;
  }
  std::vector<Device> devices(kRanks);
  if (!SetUpDevices(devices)) return 1;
  const int failed = RunRanks(kRanks, [&](int r) { return RunRank(r, devices[kRanks - 1 - r], rank_table); });
  TearDownDevices(devices);
  aclFinalize();
  std::remove(rank_table.c_str());
  return Report(failed, kRanks, "dispatch + combine on a group made from a rank table");
}
