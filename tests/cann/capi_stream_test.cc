// C API streams, deadlines and communicator lifetime. Cases:
// (a) one thread launches dispatch for 8 ranks (8 streams, switching contexts), synchronizes them all,
//     then does the same for combine: results equal the reference;
// (b) the DispatchV2 seed's sample: 16 devices, EP 8 x TP 2, one shared expert rank, two streams per rank
//     (dispatch stream, combine stream) ordered by aclrtSynchronizeStreamWithTimeout;
// (c) a rank that never launches dispatch (or combine): the others' aclrtSynchronizeStreamWithTimeout(200)
//     returns 507046, then a plain synchronize returns 507034 within the op deadline (MOE_EP_TIMEOUT_MS, or
//     HCCL_EXEC_TIMEOUT seconds, read when the communicator is created; 0 there, or in a configuration, means
//     MOE_EP_TIMEOUT_MS) with a message naming the rank;
// (d) BufferReset on 16 devices: needSync 0 and 1 succeed; with rank 15 masked unreachable and absent,
//     needSync 1 succeeds on the other 15; a mask value other than 0/1 fails the stream (561002); the
//     group then runs a dispatch + combine that matches the reference;
// (e) memory: 16 ranks x 2 communicators at the default HCCL_BUFFSIZE (200 MB) plus one small round grow
//     the resident set by < 300 MB (windows are reserved, not committed) and destroying them unmaps them;
// (f) HcclCommDestroy twice (HCCL_E_PARA) or on null (HCCL_E_PTR, as for every call given a null communicator)
//     returns an error and does not crash; a destroyed communicator's name no longer resolves.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "cann/capi_support.h"
#include "support/test_seed.h"

namespace moe_ep::capi_testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

#ifdef MOE_EP_SANITIZED
constexpr int kSlackMs = 10000;  // sanitizers slow everything down
#else
constexpr int kSlackMs = 2500;
#endif

int64_t MsSince(Clock::time_point t) { return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count(); }

// ---------------------------------------------------------------------------------------------------
// (a), (b): whole scenarios through the runner
// ---------------------------------------------------------------------------------------------------

TEST(CapiStream, OneThreadLaunchesEightRanksThenSynchronizes) {
  EnsureAclReady();
  for (int variant = 0; variant < 2; ++variant) {
    const uint64_t seed = moe_ep::testing::BaseSeed() ^ (0xA11ull + variant);
    std::mt19937_64 rng(seed);
    CapiCase c;
    auto& cfg = c.spec.config;
    cfg.ep_world_size = 8;
    cfg.moe_expert_num = 16;
    cfg.top_k = 4;
    cfg.hidden = 1024 + variant * 7;
    cfg.quant_mode = variant == 1 ? 2 : 0;
    cfg.comm_quant_mode = variant == 1 ? 2 : 0;
    cfg.dtype = variant == 1 ? moe_ref::DType::kFp16 : moe_ref::DType::kBf16;
    c.spec.bs = 8;
    c.spec.mask = variant == 1 ? moe_ref::MaskKind::kPairs : moe_ref::MaskKind::kNone;
    c.spec.smooth_scales = variant == 1;
    SCOPED_TRACE("seed " + std::to_string(seed) + ": " + Describe(c));
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
    CapiRunOptions options;
    options.launch = Launch::kSingleThread;
    options.two_streams = variant == 1;
    ASSERT_EQ(RunCapiCase(c, inputs, options), "");
  }
}

TEST(CapiStream, SeedSampleTwoStreamsPerRankSixteenDevices) {
  EnsureAclReady();
  const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0xB22;
  std::mt19937_64 rng(seed);
  const CapiCase c = SeedSampleCase();
  SCOPED_TRACE("seed " + std::to_string(seed) + ": " + Describe(c));
  ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
  CapiRunOptions options;
  options.launch = Launch::kThreadPerRankContexts;
  options.two_streams = true;
  options.sync_timeout_ms = 10000 * (kSlackMs / 2500);
  ASSERT_EQ(RunCapiCase(c, inputs, options), "");
}

// ---------------------------------------------------------------------------------------------------
// A small fixed job for the fault cases: E ranks, 2E experts (L 2), K 2, Bs 4, H 1024 (A = 8E); token t,
// slot k of rank r goes to expert (2t + k + r) % 2E, so every rank sends to every rank when E <= 4.
// ---------------------------------------------------------------------------------------------------

constexpr int kRanks = 4;
constexpr int64_t kBs = 4, kH = 1024, kK = 2;

struct SmallRank {
  int rank = 0, world = kRanks;
  int64_t moe = 2 * kRanks, global_bs = 0;
  std::string group;
  aclrtStream stream = nullptr;
  Tensor x, ids, expand_x, dyn_scales, assist, token_nums, ep_recv, tp_recv, scales, x_out;

  SmallRank(int r, HcclComm comm, int world_size = kRanks, int64_t global_batch = 0)
      : rank(r), world(world_size), moe(2 * world_size), global_bs(global_batch), group(CommName(comm)) {
    const int64_t a = (global_bs != 0 ? global_bs : kBs * world) * 2;
    std::vector<uint16_t> xs(kBs * kH);  // row t of rank r: bf16 bits 0x4000 + 16 r + t (misplaced rows show)
    for (int64_t t = 0; t < kBs; ++t) std::fill_n(xs.begin() + t * kH, kH, static_cast<uint16_t>(0x4000 + 16 * r + t));
    std::vector<int32_t> id;
    for (int64_t t = 0; t < kBs; ++t) {
      for (int64_t k = 0; k < kK; ++k) id.push_back(static_cast<int32_t>((2 * t + k + r) % moe));
    }
    std::vector<float> w(kBs * kK, 0.5f);
    x = Tensor(ACL_BF16, {kBs, kH}, xs.data());
    ids = Tensor(ACL_INT32, {kBs, kK}, id.data());
    scales = Tensor(ACL_FLOAT, {kBs, kK}, w.data());
    expand_x = Tensor(ACL_BF16, {a, kH});
    dyn_scales = Tensor(ACL_FLOAT, {a});
    assist = Tensor(ACL_INT32, {a * 128});
    token_nums = Tensor(ACL_INT64, {2});
    ep_recv = Tensor(ACL_INT32, {2 * world});
    tp_recv = Tensor(ACL_INT32, {0});
    x_out = Tensor(ACL_BF16, {kBs, kH});
    EXPECT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS) << RecentErrMsg();
  }
  ~SmallRank() {
    if (stream != nullptr) aclrtDestroyStream(stream);
  }

  aclnnStatus BuildDispatch(aclOpExecutor** exec) {
    uint64_t ws = 0;
    return aclnnMoeDistributeDispatchV2GetWorkspaceSize(
        x.get(), ids.get(), nullptr, nullptr, nullptr, group.c_str(), world, rank, moe, "", 0, 0, 0, 0, 0, 0, global_bs,
        1, "", expand_x.get(), dyn_scales.get(), assist.get(), token_nums.get(), ep_recv.get(), tp_recv.get(), nullptr,
        &ws, exec);
  }
  aclnnStatus LaunchDispatch() {
    aclOpExecutor* exec = nullptr;
    const aclnnStatus st = BuildDispatch(&exec);
    if (st != ACL_SUCCESS) return st;
    return aclnnMoeDistributeDispatchV2(nullptr, 0, exec, stream);
  }
  aclnnStatus LaunchCombine() {
    uint64_t ws = 0;
    aclOpExecutor* exec = nullptr;
    aclnnStatus st = aclnnMoeDistributeCombineV2GetWorkspaceSize(
        expand_x.get(), ids.get(), assist.get(), ep_recv.get(), scales.get(), tp_recv.get(), nullptr, nullptr, nullptr,
        nullptr, nullptr, nullptr, group.c_str(), world, rank, moe, "", 0, 0, 0, 0, 0, global_bs, 0, 0, 0, "",
        x_out.get(), &ws, &exec);
    if (st != ACL_SUCCESS) return st;
    return aclnnMoeDistributeCombineV2(nullptr, ws, exec, stream);
  }
};

struct FaultOutcome {
  aclError short_sync = -1, full_sync = -1;
  int64_t short_ms = 0, full_ms = 0;  // since the launch
  std::string message;
};

// Ranks other than `absent` launch the op; rank `absent` skips it (for combine: after a good dispatch).
std::vector<FaultOutcome> RunWithAbsentRank(const std::vector<HcclComm>& comms, int absent, bool absent_in_combine) {
  std::vector<FaultOutcome> out(kRanks);
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      FaultOutcome& o = out[r];
      if (aclrtSetDevice(r) != ACL_SUCCESS) {
        o.message = "aclrtSetDevice failed";
        return;
      }
      {
        SmallRank rank(r, comms[r]);
        if (absent_in_combine) {
          EXPECT_EQ(rank.LaunchDispatch(), ACL_SUCCESS) << RecentErrMsg();
          EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(rank.stream, 20000), ACL_SUCCESS) << RecentErrMsg();
        }
        if (r != absent) {
          const auto start = Clock::now();
          const aclnnStatus launched = absent_in_combine ? rank.LaunchCombine() : rank.LaunchDispatch();
          EXPECT_EQ(launched, ACL_SUCCESS) << "rank " << r << ": " << RecentErrMsg();
          o.short_sync = aclrtSynchronizeStreamWithTimeout(rank.stream, 200);
          o.short_ms = MsSince(start);
          o.full_sync = aclrtSynchronizeStream(rank.stream);
          o.full_ms = MsSince(start);
          o.message = RecentErrMsg();
        }
      }
      aclrtResetDevice(r);
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

void ExpectDeadlineFailures(const std::vector<FaultOutcome>& out, int absent, int deadline_ms, const char* op) {
  for (int r = 0; r < kRanks; ++r) {
    if (r == absent) continue;
    SCOPED_TRACE(std::string(op) + " on rank " + std::to_string(r));
    const FaultOutcome& o = out[r];
    EXPECT_EQ(o.short_sync, ACL_ERROR_RT_STREAM_SYNC_TIMEOUT) << "the 200 ms synchronize must time out first";
    EXPECT_GE(o.short_ms, 190);
    EXPECT_LT(o.short_ms, deadline_ms) << "the 200 ms synchronize must return before the op deadline";
    EXPECT_EQ(o.full_sync, ACL_ERROR_RT_VECTOR_CORE_TIMEOUT) << o.message;
    EXPECT_GE(o.full_ms, deadline_ms - 50) << "the op must wait until its deadline";
    EXPECT_LT(o.full_ms, deadline_ms + kSlackMs) << "the op must fail at its deadline";
    EXPECT_TRUE(NamesRank(o.message, absent)) << "the message must name rank " << absent << ": " << o.message;
    EXPECT_NE(o.message.find(op), std::string::npos) << o.message;
  }
}

// A group of kRanks devices made by HcclCommInitRootInfoConfig with `exec_timeout` as the configuration's
// hcclExecTimeOut; a rank that failed leaves nullptr.
std::vector<HcclComm> CreateConfiguredGroup(int32_t exec_timeout) {
  std::vector<HcclComm> comms(kRanks, nullptr);
  HcclRootInfo root{};
  EXPECT_EQ(HcclGetRootInfo(&root), HCCL_SUCCESS) << RecentErrMsg();
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      ASSERT_EQ(aclrtSetDevice(r), ACL_SUCCESS) << RecentErrMsg();
      HcclCommConfig config;
      HcclCommConfigInit(&config);
      config.hcclExecTimeOut = exec_timeout;
      EXPECT_EQ(HcclCommInitRootInfoConfig(kRanks, &root, r, &config, &comms[r]), HCCL_SUCCESS)
          << "rank " << r << ": " << RecentErrMsg();
      aclrtResetDevice(r);
    });
  }
  for (auto& t : threads) t.join();
  return comms;
}

TEST(CapiStream, AbsentRankInDispatchTimesOutNamingIt) {
  EnsureAclReady();
  std::vector<HcclComm> comms;
  {
    ScopedEnv deadline("MOE_EP_TIMEOUT_MS", "1000");
    ScopedEnv hccl("HCCL_EXEC_TIMEOUT", nullptr);
    comms = CreateGroup({0, 1, 2, 3});
  }
  const auto out = RunWithAbsentRank(comms, 2, false);
  ExpectDeadlineFailures(out, 2, 1000, "Dispatch");
  for (HcclComm c : comms) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);
}

TEST(CapiStream, AbsentRankInCombineTimesOutNamingIt) {
  EnsureAclReady();
  std::vector<HcclComm> comms;
  {
    ScopedEnv deadline("MOE_EP_TIMEOUT_MS", "1000");
    ScopedEnv hccl("HCCL_EXEC_TIMEOUT", nullptr);
    comms = CreateGroup({0, 1, 2, 3});
  }
  const auto out = RunWithAbsentRank(comms, 1, true);
  ExpectDeadlineFailures(out, 1, 1000, "Combine");
  for (HcclComm c : comms) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);
}

// HCCL_EXEC_TIMEOUT (seconds) sets the deadline when MOE_EP_TIMEOUT_MS is not set.
TEST(CapiStream, HcclExecTimeoutSetsTheDeadline) {
  EnsureAclReady();
  std::vector<HcclComm> comms;
  {
    ScopedEnv deadline("MOE_EP_TIMEOUT_MS", nullptr);
    ScopedEnv hccl("HCCL_EXEC_TIMEOUT", "1");
    comms = CreateGroup({0, 1, 2, 3});
  }
  const auto out = RunWithAbsentRank(comms, 3, false);
  ExpectDeadlineFailures(out, 3, 1000, "Dispatch");
  for (HcclComm c : comms) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);
}

// HCCL_EXEC_TIMEOUT=0, and a configuration's hcclExecTimeOut = 0 (CANN's "never time out"), mean moe_ep's own
// deadline, MOE_EP_TIMEOUT_MS: an absent rank still fails the others, at that deadline.
TEST(CapiStream, HcclExecTimeoutZeroMeansTheOperationsDeadline) {
  EnsureAclReady();
  std::vector<HcclComm> comms;
  {
    ScopedEnv deadline("MOE_EP_TIMEOUT_MS", "1000");
    ScopedEnv hccl("HCCL_EXEC_TIMEOUT", "0");
    comms = CreateGroup({0, 1, 2, 3});
  }
  ASSERT_EQ(comms.size(), size_t{kRanks});
  ExpectDeadlineFailures(RunWithAbsentRank(comms, 3, false), 3, 1000, "Dispatch");
  for (HcclComm c : comms) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);

  // The configuration's 0 is MOE_EP_TIMEOUT_MS, not HCCL_EXEC_TIMEOUT (which it takes precedence over).
  {
    ScopedEnv deadline("MOE_EP_TIMEOUT_MS", "1000");
    ScopedEnv hccl("HCCL_EXEC_TIMEOUT", "4");
    comms = CreateConfiguredGroup(0);
  }
  for (HcclComm c : comms) ASSERT_NE(c, nullptr);
  ExpectDeadlineFailures(RunWithAbsentRank(comms, 2, false), 2, 1000, "Dispatch");
  for (HcclComm c : comms) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);
}

// A configuration's hcclExecTimeOut (seconds) is the deadline, over HCCL_EXEC_TIMEOUT and MOE_EP_TIMEOUT_MS.
TEST(CapiStream, AConfigurationsExecTimeoutSetsTheDeadline) {
  EnsureAclReady();
  std::vector<HcclComm> comms;
  {
    ScopedEnv deadline("MOE_EP_TIMEOUT_MS", "60000");
    ScopedEnv hccl("HCCL_EXEC_TIMEOUT", "30");
    comms = CreateConfiguredGroup(1);
  }
  for (HcclComm c : comms) ASSERT_NE(c, nullptr);
  ExpectDeadlineFailures(RunWithAbsentRank(comms, 1, false), 1, 1000, "Dispatch");
  for (HcclComm c : comms) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);
}

// ---------------------------------------------------------------------------------------------------
// (d) BufferReset on 16 devices
// ---------------------------------------------------------------------------------------------------

// Every rank in `callers` runs BufferReset with `mask` on its own thread; returns each sync's status.
std::vector<aclError> ResetOn(const Comms& comms, const std::vector<int32_t>& mask, int32_t need_sync, int callers,
                              std::vector<std::string>* messages = nullptr) {
  std::vector<aclError> status(callers, -1);
  if (messages) messages->assign(callers, "");
  std::vector<std::thread> threads;
  for (int r = 0; r < callers; ++r) {
    threads.emplace_back([&, r] {
      if (aclrtSetDevice(comms.Device(r, 0)) != ACL_SUCCESS) return;
      {
        aclrtStream stream = nullptr;
        EXPECT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS);
        Tensor elastic(ACL_INT32, {16}, mask.data());
        const std::string group = CommName(comms.ep(0, r));
        uint64_t ws = 1;
        aclOpExecutor* exec = nullptr;
        aclnnStatus st =
            aclnnMoeDistributeBufferResetGetWorkspaceSize(elastic.get(), group.c_str(), 16, need_sync, &ws, &exec);
        EXPECT_EQ(st, ACL_SUCCESS) << "rank " << r << ": " << RecentErrMsg();
        EXPECT_EQ(ws, kWorkspaceBytes);
        if (st == ACL_SUCCESS) {
          st = aclnnMoeDistributeBufferReset(nullptr, 0, exec, stream);
          EXPECT_EQ(st, ACL_SUCCESS) << RecentErrMsg();
          status[r] = aclrtSynchronizeStreamWithTimeout(stream, 30000);
          if (messages) (*messages)[r] = RecentErrMsg();
        }
        aclrtDestroyStream(stream);
      }
      aclrtResetDevice(comms.Device(r, 0));
    });
  }
  for (auto& t : threads) t.join();
  return status;
}

// Every context has a default stream of its own, as in CANN. One context's default stream holds a synced BufferReset
// (rank 5 of a 16-rank group) that cannot end before the other ranks reset (a gate this thread opens only later);
// meanwhile another context's default stream on the same device runs and synchronizes. One default stream per
// device would hold that work behind the reset (so would two ranks of different groups on one device, each waiting
// for a peer behind the other group's operation), and the synchronize would time out.
TEST(CapiStream, EachContextHasADefaultStreamOfItsOwn) {
  EnsureAclReady();
  constexpr int kRanks = 16, kHeldRank = 5;
  std::vector<int32_t> devices(kRanks);
  for (int r = 0; r < kRanks; ++r) devices[r] = r;
  const std::vector<HcclComm> comms = CreateGroup(devices);
  const std::vector<int32_t> everyone(kRanks, 1);
  // Each rank's mask lives until its reset ran: the task reads it then, not at the launch.
  std::vector<std::unique_ptr<Tensor>> masks;
  for (int r = 0; r < kRanks; ++r)
    masks.push_back(std::make_unique<Tensor>(ACL_INT32, std::vector<int64_t>{kRanks}, everyone.data()));
  const auto launch_reset = [&](int rank, aclrtStream stream) {
    const std::string group = CommName(comms[rank]);
    uint64_t ws = 0;
    aclOpExecutor* exec = nullptr;
    ASSERT_EQ(aclnnMoeDistributeBufferResetGetWorkspaceSize(masks[rank]->get(), group.c_str(), kRanks, 1, &ws, &exec),
              ACL_SUCCESS)
        << RecentErrMsg();
    ASSERT_EQ(aclnnMoeDistributeBufferReset(nullptr, 0, exec, stream), ACL_SUCCESS) << RecentErrMsg();
  };
  ASSERT_EQ(aclrtSetDevice(kHeldRank), ACL_SUCCESS);
  aclrtContext held = nullptr, other = nullptr;
  ASSERT_EQ(aclrtCreateContext(&held, kHeldRank), ACL_SUCCESS) << RecentErrMsg();
  ASSERT_EQ(aclrtCreateContext(&other, kHeldRank), ACL_SUCCESS) << RecentErrMsg();
  ASSERT_EQ(aclrtSetCurrentContext(held), ACL_SUCCESS);
  launch_reset(kHeldRank, nullptr);
  ASSERT_EQ(aclrtSetCurrentContext(other), ACL_SUCCESS);
  void* buffer = nullptr;
  ASSERT_EQ(aclrtMalloc(&buffer, 64, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
  ASSERT_EQ(aclrtMemsetAsync(buffer, 64, 0x11, 64, nullptr), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(nullptr, 10000), ACL_SUCCESS)
      << "the second context's default stream waited behind the first's reset: " << RecentErrMsg();
  EXPECT_EQ(static_cast<const uint8_t*>(buffer)[63], 0x11);
  std::vector<std::thread> gate;  // the other ranks reset too, and the held reset ends
  for (int r = 0; r < kRanks; ++r) {
    if (r == kHeldRank) continue;
    gate.emplace_back([&, r] {
      ASSERT_EQ(aclrtSetDevice(r), ACL_SUCCESS);
      aclrtStream stream = nullptr;
      ASSERT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS);
      launch_reset(r, stream);
      EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS) << RecentErrMsg();
      aclrtDestroyStream(stream);
      aclrtResetDevice(r);
    });
  }
  ASSERT_EQ(aclrtSetCurrentContext(held), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeStream(nullptr), ACL_SUCCESS) << RecentErrMsg();
  for (auto& t : gate) t.join();
  EXPECT_EQ(aclrtFree(buffer), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyContext(held), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyContext(other), ACL_SUCCESS);
  for (HcclComm c : comms) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);
  aclrtResetDevice(kHeldRank);
}

TEST(CapiStream, BufferResetOnSixteenDevices) {
  EnsureAclReady();
  // A short deadline: a reset that waited for the masked-out rank would fail after 3 s, not hang.
  std::unique_ptr<Comms> comms;
  {
    ScopedEnv deadline("MOE_EP_TIMEOUT_MS", "3000");
    comms = std::make_unique<Comms>(16, 1);
  }
  const std::vector<int32_t> all(16, 1);
  for (int32_t need_sync : {0, 1}) {
    SCOPED_TRACE("needSync " + std::to_string(need_sync));
    for (aclError e : ResetOn(*comms, all, need_sync, 16)) EXPECT_EQ(e, ACL_SUCCESS);
  }
  {
    SCOPED_TRACE("rank 15 unreachable and absent");
    std::vector<int32_t> without_15 = all;
    without_15[15] = 0;
    // Waiting for rank 15 would fail every sync at the 3 s deadline.
    for (aclError e : ResetOn(*comms, without_15, 1, 15)) EXPECT_EQ(e, ACL_SUCCESS);
  }
  {
    SCOPED_TRACE("mask value 2");
    std::vector<int32_t> bad = all;
    bad[3] = 2;
    std::vector<std::string> messages;
    const auto status = ResetOn(*comms, bad, 0, 16, &messages);
    for (int r = 0; r < 16; ++r) {
      EXPECT_EQ(status[r], ACLNN_ERR_INNER_TILING_ERROR) << "rank " << r << ": " << messages[r];
      EXPECT_NE(messages[r].find("elasticInfo"), std::string::npos) << messages[r];
    }
  }
  {
    SCOPED_TRACE("everyone back: full reset, then a dispatch + combine round");
    for (aclError e : ResetOn(*comms, all, 1, 16)) EXPECT_EQ(e, ACL_SUCCESS);
    const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0xD44;
    std::mt19937_64 rng(seed);
    CapiCase c;
    c.spec.config.ep_world_size = 16;
    c.spec.config.moe_expert_num = 32;
    c.spec.config.top_k = 3;
    c.spec.config.hidden = 1024;
    c.spec.bs = 3;
    SCOPED_TRACE("seed " + std::to_string(seed));
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
    EXPECT_EQ(RunCapiCase(c, inputs, CapiRunOptions{}, comms.get()), "");
  }
}

// Phase one of a BufferReset of rank 0 of a 16-rank `group` without sync (it runs alone) with `mask`.
aclOpExecutor* BuildLoneReset(const Tensor& mask, const std::string& group) {
  uint64_t ws = 0;
  aclOpExecutor* exec = nullptr;
  EXPECT_EQ(aclnnMoeDistributeBufferResetGetWorkspaceSize(mask.get(), group.c_str(), 16, 0, &ws, &exec), ACL_SUCCESS)
      << RecentErrMsg();
  return exec;
}

// Phase two of a BufferReset on `stream`, and its outcome.
aclnnStatus LaunchAndWait(aclOpExecutor* exec, aclrtStream stream) {
  const aclnnStatus st = aclnnMoeDistributeBufferReset(nullptr, 0, exec, stream);
  return st != ACL_SUCCESS ? st : aclrtSynchronizeStreamWithTimeout(stream, 30000);
}

// Executors: one made repeatable runs at each launch with its tensors' contents at that time (a mask made invalid
// between launches fails that launch, and the next good one passes) until destroyed; one not repeatable runs once;
// one destroyed before its launch never runs; a destroyed or made-up executor is an error.
TEST(CapiStream, RepeatableExecutorsRunAtEachLaunchUntilDestroyed) {
  EnsureAclReady();
  const std::vector<HcclComm> comms = CreateGroup({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15});
  ASSERT_EQ(comms.size(), 16u);
  std::thread rank0([&] {  // needSync 0: rank 0 resets its own window, alone
    ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
    aclrtStream stream = nullptr;
    ASSERT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS);
    {
      const std::vector<int32_t> ones(16, 1), twos(16, 2);
      Tensor mask(ACL_INT32, {16}, ones.data());
      const std::string group = CommName(comms[0]);
      const auto build = [&] { return BuildLoneReset(mask, group); };
      const auto launch = [&](aclOpExecutor* exec) { return LaunchAndWait(exec, stream); };
      const auto write_mask = [&](const std::vector<int32_t>& values) {
        ASSERT_EQ(aclrtMemcpy(mask.data(), mask.storage_bytes(), values.data(), 64, ACL_MEMCPY_HOST_TO_DEVICE),
                  ACL_SUCCESS);
      };

      aclOpExecutor* repeatable = build();
      ASSERT_EQ(aclSetAclOpExecutorRepeatable(repeatable), ACL_SUCCESS) << RecentErrMsg();
      EXPECT_EQ(launch(repeatable), ACL_SUCCESS) << RecentErrMsg();
      write_mask(twos);
      EXPECT_EQ(launch(repeatable), ACLNN_ERR_INNER_TILING_ERROR) << "the second launch did not read the mask again";
      EXPECT_NE(RecentErrMsg().find("elasticInfo"), std::string::npos);
      write_mask(ones);
      EXPECT_EQ(launch(repeatable), ACL_SUCCESS) << RecentErrMsg();
      EXPECT_EQ(aclDestroyAclOpExecutor(repeatable), ACL_SUCCESS);
      EXPECT_EQ(launch(repeatable), ACLNN_ERR_PARAM_INVALID) << "a destroyed executor ran";
      EXPECT_EQ(aclDestroyAclOpExecutor(repeatable), ACLNN_ERR_PARAM_INVALID);

      aclOpExecutor* once = build();
      EXPECT_EQ(launch(once), ACL_SUCCESS) << RecentErrMsg();
      EXPECT_EQ(launch(once), ACLNN_ERR_PARAM_INVALID) << "an executor not repeatable ran twice";
      EXPECT_NE(RecentErrMsg().find("aclSetAclOpExecutorRepeatable"), std::string::npos);
      EXPECT_EQ(aclSetAclOpExecutorRepeatable(once), ACLNN_ERR_PARAM_INVALID) << "a launched executor";

      write_mask(twos);  // were it to run, this executor would fail its stream
      aclOpExecutor* dropped = build();
      EXPECT_EQ(aclDestroyAclOpExecutor(dropped), ACL_SUCCESS);
      EXPECT_EQ(launch(dropped), ACLNN_ERR_PARAM_INVALID);
      EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(stream, 30000), ACL_SUCCESS) << "the dropped executor ran";
      EXPECT_EQ(aclDestroyAclOpExecutor(nullptr), ACLNN_ERR_INNER_NULLPTR);  // as CANN documents it
      EXPECT_EQ(aclSetAclOpExecutorRepeatable(nullptr), ACLNN_ERR_INNER_NULLPTR);
      EXPECT_EQ(aclDestroyAclOpExecutor(reinterpret_cast<aclOpExecutor*>(0x40)), ACLNN_ERR_PARAM_INVALID);
    }
    aclrtDestroyStream(stream);
    aclrtResetDevice(0);
  });
  rank0.join();
  for (HcclComm comm : comms) EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
}

// An executor built on a group that HcclCommDestroy destroyed before its launch is refused there with 561002 naming
// the group, and the operation once, and given back (it ran on the destroyed communicator, and with every rank doing
// so, silently succeeded); a repeatable one ran before the destroy.
TEST(CapiStream, AnExecutorIsRefusedAtItsLaunchOnADestroyedGroup) {
  EnsureAclReady();
  std::vector<HcclComm> comms = CreateGroup({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15});
  ASSERT_EQ(comms.size(), 16u);
  std::thread rank0([&] {  // needSync 0: rank 0 resets its own window, alone
    ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
    aclrtStream stream = nullptr;
    ASSERT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS);
    {
      const std::vector<int32_t> ones(16, 1);
      Tensor mask(ACL_INT32, {16}, ones.data());
      const std::string group = CommName(comms[0]);
      const auto build = [&] { return BuildLoneReset(mask, group); };
      const auto launch = [&](aclOpExecutor* exec) { return LaunchAndWait(exec, stream); };
      aclOpExecutor* repeatable = build();
      aclOpExecutor* pending = build();
      ASSERT_EQ(aclSetAclOpExecutorRepeatable(repeatable), ACL_SUCCESS) << RecentErrMsg();
      EXPECT_EQ(launch(repeatable), ACL_SUCCESS) << RecentErrMsg();
      ASSERT_EQ(HcclCommDestroy(comms[0]), HCCL_SUCCESS);
      comms[0] = nullptr;
      for (aclOpExecutor* exec : {repeatable, pending}) {
        EXPECT_EQ(launch(exec), ACLNN_ERR_INNER_TILING_ERROR) << "an executor ran on a destroyed group";
        const std::string message = RecentErrMsg();
        for (const char* part : {"groupEp", group.c_str(), "destroyed"}) {
          EXPECT_NE(message.find(part), std::string::npos) << message;
        }
        const std::string op = "aclnnMoeDistributeBufferReset";
        EXPECT_EQ(message.find(op, message.find(op) + 1), std::string::npos)
            << "the operation named twice: " << message;
      }
      EXPECT_EQ(aclDestroyAclOpExecutor(repeatable), ACL_SUCCESS);
      EXPECT_EQ(aclDestroyAclOpExecutor(pending), ACL_SUCCESS) << "a refused launch gives the executor back";
    }
    aclrtDestroyStream(stream);
    aclrtResetDevice(0);
  });
  rank0.join();
  for (HcclComm comm : comms) {
    if (comm != nullptr) {
      EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
    }
  }
}

// An executor whose tensor's memory was freed after phase one is refused at its launch (161002, saying so), instead of
// running on freed memory, also when memory of the same size was allocated since (at the same address, as a heap
// hands out a block just given back); the refused launch gives the executor back.
TEST(CapiStream, AnExecutorWhoseTensorMemoryWasFreedIsRefusedAtItsLaunch) {
  EnsureAclReady();
  std::vector<HcclComm> comms = CreateGroup({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15});
  ASSERT_EQ(comms.size(), 16u);
  std::thread rank0([&] {
    ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
    aclrtStream stream = nullptr;
    ASSERT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS);
    void* memory = nullptr;
    ASSERT_EQ(aclrtMalloc(&memory, 64, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS) << RecentErrMsg();
    const std::vector<int32_t> ones(16, 1);
    ASSERT_EQ(aclrtMemcpy(memory, 64, ones.data(), 64, ACL_MEMCPY_HOST_TO_DEVICE), ACL_SUCCESS);
    const int64_t dims[] = {16}, strides[] = {1};
    aclTensor* mask = aclCreateTensor(dims, 1, ACL_INT32, strides, 0, ACL_FORMAT_ND, dims, 1, memory);
    ASSERT_NE(mask, nullptr) << RecentErrMsg();
    uint64_t ws = 0;
    aclOpExecutor* exec = nullptr;
    const std::string group = CommName(comms[0]);
    ASSERT_EQ(aclnnMoeDistributeBufferResetGetWorkspaceSize(mask, group.c_str(), 16, 0, &ws, &exec), ACL_SUCCESS)
        << RecentErrMsg();
    ASSERT_EQ(aclrtFree(memory), ACL_SUCCESS) << RecentErrMsg();
    void* since = nullptr;
    ASSERT_EQ(aclrtMalloc(&since, 64, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS) << RecentErrMsg();
    EXPECT_EQ(LaunchAndWait(exec, stream), ACLNN_ERR_PARAM_INVALID) << "an executor ran on freed memory";
    const std::string message = RecentErrMsg();
    for (const char* part : {"aclnnMoeDistributeBufferReset", "freed", "after phase one"}) {
      EXPECT_NE(message.find(part), std::string::npos) << message;
    }
    EXPECT_EQ(aclDestroyAclOpExecutor(exec), ACL_SUCCESS) << "a refused launch gives the executor back";
    EXPECT_EQ(aclDestroyTensor(mask), ACL_SUCCESS);
    EXPECT_EQ(aclrtFree(since), ACL_SUCCESS);
    aclrtDestroyStream(stream);
    aclrtResetDevice(0);
  });
  rank0.join();
  for (HcclComm comm : comms) EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
}

// After a deadline failure (rank 15 never dispatched), a BufferReset of all 16 ranks makes the group work
// again: the stale flags, parities and call counts of the failed round are gone.
TEST(CapiStream, GroupWorksAgainAfterATimeoutAndABufferReset) {
  EnsureAclReady();
  std::unique_ptr<Comms> comms;
  {
    ScopedEnv deadline("MOE_EP_TIMEOUT_MS", "1000");
    comms = std::make_unique<Comms>(16, 1);
  }
  std::vector<aclError> status(15, -1);
  std::vector<std::string> messages(15);
  std::vector<std::thread> threads;
  for (int r = 0; r < 15; ++r) {
    threads.emplace_back([&, r] {
      if (aclrtSetDevice(r) != ACL_SUCCESS) return;
      {
        SmallRank rank(r, comms->ep(0, r), 16);
        EXPECT_EQ(rank.LaunchDispatch(), ACL_SUCCESS) << RecentErrMsg();
        status[r] = aclrtSynchronizeStream(rank.stream);
        messages[r] = RecentErrMsg();
      }
      aclrtResetDevice(r);
    });
  }
  for (auto& t : threads) t.join();
  int named = 0;
  for (int r = 0; r < 15; ++r) {
    EXPECT_EQ(status[r], ACL_ERROR_RT_VECTOR_CORE_TIMEOUT) << "rank " << r << ": " << messages[r];
    named += NamesRank(messages[r], 15) ? 1 : 0;
  }
  EXPECT_GT(named, 0) << "ranks that route tokens to rank 15 must name it";
  for (aclError e : ResetOn(*comms, std::vector<int32_t>(16, 1), 1, 16)) EXPECT_EQ(e, ACL_SUCCESS);
  const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0xF66;
  std::mt19937_64 rng(seed);
  CapiCase c;
  c.spec.config.ep_world_size = 16;
  c.spec.config.moe_expert_num = 32;
  c.spec.config.top_k = 4;
  c.spec.config.hidden = 1024;
  c.spec.bs = 4;
  SCOPED_TRACE("seed " + std::to_string(seed));
  ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
  for (int round = 0; round < 2; ++round) {
    if (round > 0) moe_ep::verify::RerouteInputs(c.spec, rng, inputs);
    EXPECT_EQ(RunCapiCase(c, inputs, CapiRunOptions{}, comms.get()), "") << "round " << round;
  }
}

// Two groups with ranks on the same four devices run at the same time (8 threads): each operator finds
// its own communicator by name on the calling thread's device, and neither job disturbs the other.
TEST(CapiStream, TwoGroupsOnTheSameDevicesRunConcurrently) {
  EnsureAclReady();
  Comms first(4, 1), second(4, 1);
  std::string results[2];
  std::thread jobs[2];
  for (int j = 0; j < 2; ++j) {
    jobs[j] = std::thread([&, j] {
      const uint64_t seed = moe_ep::testing::BaseSeed() ^ (0x2C0ull + j);
      std::mt19937_64 rng(seed);
      CapiCase c;
      c.spec.config.ep_world_size = 4;
      c.spec.config.moe_expert_num = 8 * (j + 1);
      c.spec.config.top_k = 3;
      c.spec.config.hidden = 1024 + 64 * j;
      c.spec.config.dtype = j == 0 ? moe_ref::DType::kBf16 : moe_ref::DType::kFp16;
      c.spec.bs = 5;
      ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
      CapiRunOptions options;
      options.launch = j == 0 ? Launch::kThreadPerRank : Launch::kThreadPerRankContexts;
      for (int round = 0; round < 3 && results[j].empty(); ++round) {
        if (round > 0) moe_ep::verify::RerouteInputs(c.spec, rng, inputs);
        results[j] = RunCapiCase(c, inputs, options, j == 0 ? &first : &second);
        if (!results[j].empty())
          results[j] = "seed " + std::to_string(seed) + " round " + std::to_string(round) + ": " + results[j];
      }
    });
  }
  for (auto& t : jobs) t.join();
  EXPECT_EQ(results[0], "");
  EXPECT_EQ(results[1], "");
}

// Ranks that disagree on globalBs (which CANN requires to be equal on every rank; rank 3 would size its slots for
// maxBs 8, the others for 4) must not read rows from the wrong window slots: the attribute agreement names the
// disagreement. Every rank reports it (561002), naming globalBs.
TEST(CapiStream, RanksDisagreeingOnGlobalBsAreAnErrorNotWrongRows) {
  EnsureAclReady();
  std::vector<HcclComm> comms;
  {
    ScopedEnv deadline("MOE_EP_TIMEOUT_MS", "1000");
    comms = CreateGroup({0, 1, 2, 3});
  }
  std::vector<aclError> status(kRanks, -1);
  std::vector<std::string> messages(kRanks);
  std::vector<int> bad_rows(kRanks, 0);
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      if (aclrtSetDevice(r) != ACL_SUCCESS) {
        ADD_FAILURE() << "rank " << r << ": aclrtSetDevice failed: " << RecentErrMsg();
        return;
      }
      {
        SmallRank rank(r, comms[r], kRanks, r == 3 ? 2 * kBs * kRanks : 0);
        EXPECT_EQ(rank.LaunchDispatch(), ACL_SUCCESS) << RecentErrMsg();
        status[r] = aclrtSynchronizeStream(rank.stream);
        messages[r] = RecentErrMsg();
        if (status[r] == ACL_SUCCESS) {
          const auto counts = rank.ep_recv.Read<int32_t>();
          const auto rows = rank.expand_x.Read<uint16_t>();
          const auto assist = rank.assist.Read<int32_t>();
          for (int32_t i = 0; i < counts.back(); ++i) {
            const uint16_t want = static_cast<uint16_t>(0x4000 + 16 * assist[3 * i] + assist[3 * i + 1]);
            if (rows[i * kH] != want || rows[i * kH + kH - 1] != want) ++bad_rows[r];
          }
        }
      }
      aclrtResetDevice(r);
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(status[r], ACLNN_ERR_INNER_TILING_ERROR)
        << "rank " << r << ": " << messages[r] << " (" << bad_rows[r] << " misplaced rows)";
    EXPECT_NE(messages[r].find("globalBs"), std::string::npos) << "rank " << r << ": " << messages[r];
  }
  for (HcclComm c : comms) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);
}

// ---------------------------------------------------------------------------------------------------
// (e) memory, (f) destroy
// ---------------------------------------------------------------------------------------------------

TEST(CapiStream, DefaultWindowsAreReservedNotCommitted) {
#ifdef MOE_EP_SANITIZED
  GTEST_SKIP() << "sanitizer shadow memory makes RSS meaningless";
#endif
  EnsureAclReady();
  ScopedEnv default_window("HCCL_BUFFSIZE", nullptr);
  const int64_t rss_before = ProcStatusBytes("VmRSS"), vm_before = ProcStatusBytes("VmSize");
  ASSERT_GT(rss_before, 0);
  int64_t rss_after = 0, vm_with = 0;
  {
    Comms first(16, 1), second(16, 1);
    vm_with = ProcStatusBytes("VmSize");
    const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0xE55;
    std::mt19937_64 rng(seed);
    CapiCase c;
    c.spec.config.ep_world_size = 16;
    c.spec.config.moe_expert_num = 16;
    c.spec.config.top_k = 2;
    c.spec.config.hidden = 1024;
    c.spec.bs = 2;
    SCOPED_TRACE("seed " + std::to_string(seed));
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
    EXPECT_EQ(RunCapiCase(c, inputs, CapiRunOptions{}, &first), "");
    rss_after = ProcStatusBytes("VmRSS");
  }
  const int64_t vm_after_destroy = ProcStatusBytes("VmSize");
  std::printf("[capi memory] VmRSS %lld -> %lld MB with 32 windows; VmSize %lld -> %lld -> %lld MB\n",
              static_cast<long long>(rss_before >> 20), static_cast<long long>(rss_after >> 20),
              static_cast<long long>(vm_before >> 20), static_cast<long long>(vm_with >> 20),
              static_cast<long long>(vm_after_destroy >> 20));
  EXPECT_LT(rss_after - rss_before, int64_t{300} << 20) << "32 windows of 200 MB must not be committed";
  EXPECT_GE(vm_with - vm_before, int64_t{32 * 200} << 20) << "each rank reserves an HCCL_BUFFSIZE window";
  // What stays is not windows (6.4 GB): stream threads' stacks and malloc arenas, and the shared heap's
  // chunk that aclrtMalloc carves (kept for the next allocation).
  EXPECT_LT(vm_after_destroy - vm_before, int64_t{2} << 30) << "HcclCommDestroy must unmap the windows";
}

// An executor's handle is good for one launch: a launch that did not happen (a destroyed stream, a stream of another
// device, another operator's phase two) gives it back; one that ran is gone, and stays gone once a new executor took
// its memory.
TEST(CapiStream, AnExecutorLaunchesOnceAndOnlyAsItsOwnOperator) {
  EnsureAclReady();
  std::vector<HcclComm> comms = CreateGroup({0, 1, 2, 3});
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      ASSERT_EQ(aclrtSetDevice(r), ACL_SUCCESS);
      {
        SmallRank rank(r, comms[r]);
        aclOpExecutor* first = nullptr;
        ASSERT_EQ(rank.BuildDispatch(&first), ACL_SUCCESS) << RecentErrMsg();
        aclrtStream gone = nullptr;
        ASSERT_EQ(aclrtCreateStream(&gone), ACL_SUCCESS);
        ASSERT_EQ(aclrtDestroyStream(gone), ACL_SUCCESS);
        EXPECT_EQ(aclnnMoeDistributeDispatchV2(nullptr, 0, first, gone), ACL_ERROR_RT_PARAM_INVALID)
            << "a destroyed stream";
        // A stream of another device: the launch would queue behind that device's rank, which waits for this one,
        // until the deadline. Refused at once, naming both devices.
        aclrtContext own = nullptr, other = nullptr;
        ASSERT_EQ(aclrtGetCurrentContext(&own), ACL_SUCCESS);
        ASSERT_EQ(aclrtCreateContext(&other, (r + 1) % kRanks), ACL_SUCCESS);
        aclrtStream elsewhere = nullptr;
        ASSERT_EQ(aclrtCreateStream(&elsewhere), ACL_SUCCESS);
        ASSERT_EQ(aclrtSetCurrentContext(own), ACL_SUCCESS);
        EXPECT_EQ(aclnnMoeDistributeDispatchV2(nullptr, 0, first, elsewhere), ACL_ERROR_RT_STREAM_CONTEXT);
        EXPECT_NE(RecentErrMsg().find("is on device " + std::to_string((r + 1) % kRanks) +
                                      ", and the operator was built (phase one) on device " + std::to_string(r)),
                  std::string::npos)
            << RecentErrMsg();
        EXPECT_EQ(aclrtDestroyStream(elsewhere), ACL_SUCCESS);
        EXPECT_EQ(aclrtDestroyContext(other), ACL_SUCCESS);
        ASSERT_EQ(aclrtSetCurrentContext(own), ACL_SUCCESS);
        EXPECT_EQ(aclnnMoeDistributeCombineV2(nullptr, 0, first, rank.stream), ACLNN_ERR_PARAM_INVALID);
        EXPECT_NE(RecentErrMsg().find("built by aclnnMoeDistributeDispatchV2"), std::string::npos);
        // Neither failed launch used the executor up.
        EXPECT_EQ(aclnnMoeDistributeDispatchV2(nullptr, 0, first, rank.stream), ACL_SUCCESS) << RecentErrMsg();
        EXPECT_EQ(aclrtSynchronizeStream(rank.stream), ACL_SUCCESS) << RecentErrMsg();
        EXPECT_EQ(aclnnMoeDistributeDispatchV2(nullptr, 0, first, rank.stream), ACLNN_ERR_PARAM_INVALID) << "ran";
        // A new executor (likely where the first one lived, were handles addresses) is not the first one.
        aclOpExecutor* second = nullptr;
        ASSERT_EQ(rank.BuildDispatch(&second), ACL_SUCCESS) << RecentErrMsg();
        EXPECT_NE(second, first);
        EXPECT_EQ(aclnnMoeDistributeDispatchV2(nullptr, 0, first, rank.stream), ACLNN_ERR_PARAM_INVALID) << "stale";
        EXPECT_EQ(aclnnMoeDistributeDispatchV2(nullptr, 0, second, rank.stream), ACL_SUCCESS) << RecentErrMsg();
        EXPECT_EQ(aclrtSynchronizeStream(rank.stream), ACL_SUCCESS) << RecentErrMsg();
      }
      aclrtResetDevice(r);
    });
  }
  for (auto& t : threads) t.join();
  for (HcclComm c : comms) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);
}

// A communicator's handle is never handed out again: destroying a stale one fails and leaves the communicator
// that now lives where the old one did (allocators hand back freed memory of the same size) alone.
TEST(CapiStream, StaleCommunicatorHandleIsAnErrorNotAnotherCommunicator) {
  EnsureAclReady();
  std::set<HcclComm> destroyed;
  for (int round = 0; round < 8; ++round) {
    std::vector<HcclComm> comms = CreateGroup({0, 1});
    ASSERT_EQ(comms.size(), 2u);
    for (HcclComm comm : comms) EXPECT_EQ(destroyed.count(comm), 0u) << "round " << round << ": a handle came back";
    for (HcclComm stale : destroyed) EXPECT_NE(HcclCommDestroy(stale), HCCL_SUCCESS) << "round " << round;
    uint32_t rank = 9;
    EXPECT_EQ(HcclGetRankId(comms[1], &rank), HCCL_SUCCESS);
    EXPECT_EQ(rank, 1u);
    for (HcclComm comm : comms) {
      EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS) << "round " << round;
      destroyed.insert(comm);
    }
  }
}

TEST(CapiStream, DoubleDestroyIsAnErrorNotACrash) {
  EnsureAclReady();
  std::vector<HcclComm> comms = CreateGroup({0, 1});
  ASSERT_EQ(comms.size(), 2u);
  const std::string name = CommName(comms[0]);
  EXPECT_EQ(HcclCommDestroy(comms[0]), HCCL_SUCCESS);
  EXPECT_EQ(HcclCommDestroy(comms[0]), HCCL_E_PARA) << "second destroy";
  EXPECT_NE(RecentErrMsg().find("not a live communicator"), std::string::npos);
  EXPECT_EQ(HcclCommDestroy(nullptr), HCCL_E_PTR) << "destroy of null";
  EXPECT_NE(RecentErrMsg().find("comm must not be null"), std::string::npos);
  char buffer[COMM_NAME_MAX_LENGTH] = {0};
  EXPECT_EQ(HcclGetCommName(comms[0], buffer), HCCL_E_PARA) << "name of a destroyed communicator";
  uint32_t value = 0;
  EXPECT_EQ(HcclGetRankSize(comms[0], &value), HCCL_E_PARA);
  EXPECT_EQ(HcclGetRankId(comms[0], &value), HCCL_E_PARA);
  // A null communicator is HCCL_E_PTR, as CANN reports it, naming comm.
  EXPECT_EQ(HcclGetCommName(nullptr, buffer), HCCL_E_PTR);
  EXPECT_NE(RecentErrMsg().find("HcclGetCommName: comm must not be null"), std::string::npos);
  EXPECT_EQ(HcclGetRankSize(nullptr, &value), HCCL_E_PTR);
  EXPECT_NE(RecentErrMsg().find("HcclGetRankSize: comm must not be null"), std::string::npos);
  EXPECT_EQ(HcclGetRankId(nullptr, &value), HCCL_E_PTR);
  EXPECT_NE(RecentErrMsg().find("HcclGetRankId: comm must not be null"), std::string::npos);
  EXPECT_EQ(HcclGetRankId(comms[1], nullptr), HCCL_E_PTR);
  EXPECT_NE(RecentErrMsg().find("rank must not be null"), std::string::npos);
  // The destroyed rank's name no longer resolves on its device.
  ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
  {
    SmallRank rank(0, comms[1]);  // tensors of the right shape; the group name is replaced below
    rank.group = name;
    RecentErrMsg();
    EXPECT_EQ(rank.LaunchDispatch(), ACLNN_ERR_INNER_TILING_ERROR);
    EXPECT_NE(RecentErrMsg().find("groupEp"), std::string::npos);
  }
  aclrtResetDevice(0);
  EXPECT_EQ(HcclCommDestroy(comms[1]), HCCL_SUCCESS);
  EXPECT_NE(HcclCommDestroy(comms[1]), HCCL_SUCCESS);
}

}  // namespace
}  // namespace moe_ep::capi_testing
