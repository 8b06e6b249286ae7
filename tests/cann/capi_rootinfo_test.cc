// HCCL root-info groups and elastic scale-down through the C API only. Cases:
// (a) 4 threads: rank 0's thread calls HcclGetRootInfo and hands the struct to the others; each sets its
//     device and calls HcclCommInitRootInfo; names agree, rank ids and sizes are right; two rounds of
//     DispatchV2 + CombineV2 (unequal Bs, sharedExpertX; a shared-expert rank, int8 quant, a mask) equal the reference;
// (b) 4 processes (`moe-ep launch -n 4 -- capi_rank_main rootinfo SEED`): the root info travels through
//     a file; each process checks its own rank against the reference and prints "rank R OK"; nothing is
//     left in /dev/shm or /tmp;
// (c) errors: a root info not made by HcclGetRootInfo, rank >= nRanks, no current device, two ranks on
//     one device -> HCCL_E_PARA; a rank that never joins -> HCCL_E_TIMEOUT after HCCL_CONNECT_TIMEOUT,
//     naming it, with nothing left in /dev/shm;
// (d) elastic on 16 devices (HcclCommInitAll, EP 16, one shared-expert rank): a full V3 round, then rank 9
//     stops taking part; the other 15 BufferReset with rank 9 masked out (needSync 1), then run three
//     scaled-down V3 rounds (elasticInfo built here) equal to the reference on E = 15; a table whose
//     Table1 and Table2 disagree fails every synchronize with 561002 naming elasticInfo, and the group
//     still runs a good round afterwards; (e) a survivor missing from a scaled-down round is named by its original
//     rank in the others' timeouts.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <barrier>
#include <chrono>
#include <cstdio>
#include <future>
#include <random>
#include <set>
#include <thread>

#include "cann/capi_support.h"
#include "support/test_seed.h"

namespace moe_ep::capi_testing {
namespace {

using Clock = std::chrono::steady_clock;

#ifdef MOE_EP_SANITIZED
constexpr int kSlackMs = 10000;  // sanitizers slow everything down
#else
constexpr int kSlackMs = 2500;
#endif

// Entries of `dir` whose names start with `prefix` and end with `suffix`.
std::set<std::string> Entries(const char* dir, const std::string& prefix, const std::string& suffix = "") {
  std::set<std::string> names;
  if (DIR* d = opendir(dir)) {
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name.rfind(prefix, 0) == 0 && name.size() >= suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
        names.insert(name);
      }
    }
    closedir(d);
  }
  return names;
}
// The /dev/shm entries of one root-info group (other jobs may come and go meanwhile).
std::set<std::string> ShmEntriesOf(const std::string& token) {
  std::set<std::string> names;
  for (const auto& name : Entries("/dev/shm", "moe_ep.")) {
    if (name.find(token) != std::string::npos) names.insert(name);
  }
  return names;
}

// Runs `body` on a fresh thread with `device` current (none when device < 0), then resets the device.
template <typename Body>
void OnThread(int32_t device, Body&& body) {
  std::thread t([&] {
    if (device >= 0) {
      ASSERT_EQ(aclrtSetDevice(device), ACL_SUCCESS) << RecentErrMsg();
    }
    body();
    if (device >= 0) aclrtResetDevice(device);
  });
  t.join();
}

// ---------------------------------------------------------------------------------------------------
// (a) in-process root info
// ---------------------------------------------------------------------------------------------------

TEST(CapiRootInfo, FourThreadsJoinOneGroupAndMatchTheReference) {
  EnsureAclReady();
  constexpr int kRanks = 4;
  const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0x12A;
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));

  std::vector<CapiCase> cases(2);
  {  // bf16, two experts per rank, unequal Bs (globalBs set), sharedExpertX
    auto& cfg = cases[0].spec.config;
    cfg.ep_world_size = kRanks;
    cfg.moe_expert_num = 8;
    cfg.top_k = 3;
    cfg.hidden = 1024;
    cfg.global_bs = 6 * kRanks;
    cases[0].spec.bs = 6;
    cases[0].spec.unequal_bs = true;
    cases[0].spec.shared_expert_x = true;
  }
  {  // fp16, a shared-expert rank, int8 dispatch and combine quant, smooth scales, token mask
    auto& cfg = cases[1].spec.config;
    cfg.ep_world_size = kRanks;
    cfg.shared_expert_num = 1;
    cfg.shared_expert_rank_num = 1;
    cfg.moe_expert_num = 6;
    cfg.top_k = 4;
    cfg.hidden = 2048;
    cfg.dtype = moe_ref::DType::kFp16;
    cfg.quant_mode = 2;
    cfg.comm_quant_mode = 2;
    cfg.expert_token_nums_type = 0;
    cases[1].spec.bs = 5;
    cases[1].spec.smooth_scales = true;
    cases[1].spec.mask = moe_ref::MaskKind::kTokens;
  }
  std::vector<ScenarioInputs> inputs;
  std::vector<CapiExpected> expected;
  for (const auto& c : cases) {
    inputs.push_back(moe_ep::verify::MakeInputs(c.spec, rng));
    expected.push_back(ExpectedOutputs(c, inputs.back()));
  }

  std::promise<HcclRootInfo> root_promise;
  std::shared_future<HcclRootInfo> root_future = root_promise.get_future().share();
  std::barrier joined(kRanks);
  std::vector<HcclResult> init(kRanks, HCCL_E_RESERVED);
  std::vector<std::string> init_messages(kRanks), names(kRanks);
  std::vector<uint32_t> rank_ids(kRanks, 999), sizes(kRanks, 999);
  std::vector<std::vector<CapiRankOutcome>> outcomes(cases.size(), std::vector<CapiRankOutcome>(kRanks));
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      const bool device_ok = aclrtSetDevice(r) == ACL_SUCCESS;
      HcclComm comm = nullptr;
      if (r == 0) {
        HcclRootInfo root{};
        EXPECT_EQ(HcclGetRootInfo(&root), HCCL_SUCCESS) << RecentErrMsg();
        root_promise.set_value(root);
      }
      const HcclRootInfo root = root_future.get();  // a copy: the bytes are all a rank needs
      if (device_ok) {
        init[r] = HcclCommInitRootInfo(kRanks, &root, r, &comm);
        init_messages[r] = RecentErrMsg();
      }
      if (init[r] == HCCL_SUCCESS) {
        names[r] = CommName(comm);
        EXPECT_EQ(HcclGetRankId(comm, &rank_ids[r]), HCCL_SUCCESS);
        EXPECT_EQ(HcclGetRankSize(comm, &sizes[r]), HCCL_SUCCESS);
      }
      joined.arrive_and_wait();
      const bool all_joined = std::all_of(init.begin(), init.end(), [](HcclResult e) { return e == HCCL_SUCCESS; });
      for (size_t i = 0; all_joined && i < cases.size(); ++i) {
        outcomes[i][r] = RunCapiRank(cases[i], inputs[i], r, comm, expected[i]);
      }
      if (comm != nullptr) {
        EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
      }
      if (device_ok) aclrtResetDevice(r);
    });
  }
  for (auto& t : threads) t.join();

  for (int r = 0; r < kRanks; ++r) {
    ASSERT_EQ(init[r], HCCL_SUCCESS) << "rank " << r << ": " << init_messages[r];
    EXPECT_FALSE(names[r].empty());
    EXPECT_EQ(names[r], names[0]) << "rank " << r;
    EXPECT_EQ(rank_ids[r], static_cast<uint32_t>(r));
    EXPECT_EQ(sizes[r], static_cast<uint32_t>(kRanks));
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    for (int r = 0; r < kRanks; ++r) {
      EXPECT_EQ(outcomes[i][r].Summary(), "") << "round " << i << ": " << Describe(cases[i]);
    }
  }
  const std::string token = RootInfoToken(root_future.get());
  EXPECT_FALSE(token.empty());
  EXPECT_EQ(ShmEntriesOf(token), std::set<std::string>{}) << "segments left in /dev/shm";
}

// ---------------------------------------------------------------------------------------------------
// (b) ranks as processes
// ---------------------------------------------------------------------------------------------------

// Runs a command, returns its exit status and appends its output (stdout and stderr) to `output`.
int RunCommand(const std::string& command, std::string& output) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int CountOf(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(CapiRootInfo, FourProcessesJoinThroughARootInfoFileAndMatchTheReference) {
  const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0x12B;
  std::string output;
  const int status = RunCommand("MOE_EP_TIMEOUT_MS=20000 HCCL_CONNECT_TIMEOUT=30 " + std::string(MOE_EP_TOOL) +
                                    " launch -n 4 -- " + CAPI_RANK_MAIN + " rootinfo " + std::to_string(seed),
                                output);
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(CountOf(output, " OK\n"), 4) << output;
  for (int r = 0; r < 4; ++r) {
    const std::string line = "[rank " + std::to_string(r) + "] rank " + std::to_string(r) + " OK\n";
    EXPECT_NE(output.find(line), std::string::npos) << "no '" << line << "' in:\n" << output;
  }
  // Rank 0 said where the root info went and which token names the group's segments: both are gone.
  const std::string key = "root info file ";
  const size_t at = output.find(key);
  ASSERT_NE(at, std::string::npos) << output;
  const size_t comma = output.find(", token ", at);
  const size_t eol = output.find('\n', at);
  ASSERT_TRUE(comma != std::string::npos && eol != std::string::npos && comma < eol) << output;
  const std::string path = output.substr(at + key.size(), comma - at - key.size());
  const std::string token = output.substr(comma + 8, eol - comma - 8);
  EXPECT_EQ(path.rfind("/tmp/moe_ep.", 0), 0u) << path;
  EXPECT_NE(access(path.c_str(), F_OK), 0) << path << " left behind";
  EXPECT_FALSE(token.empty());
  EXPECT_EQ(ShmEntriesOf(token), std::set<std::string>{}) << "segments left in /dev/shm";
}

// ---------------------------------------------------------------------------------------------------
// (c) errors
// ---------------------------------------------------------------------------------------------------

TEST(CapiRootInfo, RootInfoNotMadeByHcclGetRootInfoIsRejected) {
  EnsureAclReady();
  HcclRootInfo good{};
  ASSERT_EQ(HcclGetRootInfo(&good), HCCL_SUCCESS);
  HcclRootInfo zeroed{};
  HcclRootInfo garbage{};
  for (size_t i = 0; i < sizeof(garbage.internal); ++i) garbage.internal[i] = static_cast<char>('a' + i % 26);
  HcclRootInfo truncated = good;  // the right prefix, half of the token
  const size_t len = strnlen(good.internal, sizeof(good.internal));
  ASSERT_GT(len, 16u);
  std::memset(truncated.internal + len - 16, 0, 16);
  const std::pair<const char*, const HcclRootInfo*> bad[] = {
      {"zeroed", &zeroed}, {"garbage", &garbage}, {"truncated", &truncated}};
  OnThread(0, [&] {
    for (const auto& [what, root] : bad) {
      HcclComm comm = nullptr;
      EXPECT_EQ(HcclCommInitRootInfo(2, root, 0, &comm), HCCL_E_PARA) << what;
      const std::string msg = RecentErrMsg();
      EXPECT_TRUE(NamesParam(msg, "rootInfo")) << what << ": " << msg;
      EXPECT_EQ(comm, nullptr) << what;
    }
  });
}

TEST(CapiRootInfo, RankOutsideTheGroupIsRejected) {
  EnsureAclReady();
  HcclRootInfo root{};
  ASSERT_EQ(HcclGetRootInfo(&root), HCCL_SUCCESS);
  OnThread(0, [&] {
    const std::pair<uint32_t, uint32_t> cases[] = {{4, 4}, {4, 7}, {1, 1}, {0, 0}};  // (nRanks, rank)
    for (const auto& [n_ranks, rank] : cases) {
      HcclComm comm = nullptr;
      const auto start = Clock::now();
      EXPECT_EQ(HcclCommInitRootInfo(n_ranks, &root, rank, &comm), HCCL_E_PARA) << "rank " << rank << " of " << n_ranks;
      const std::string msg = RecentErrMsg();
      EXPECT_TRUE(NamesParam(msg, "rank") || NamesParam(msg, "nRanks")) << msg;
      EXPECT_TRUE(ContainsValue(msg, std::to_string(rank))) << msg;
      EXPECT_EQ(comm, nullptr);
      EXPECT_LT(Clock::now() - start, std::chrono::seconds(1)) << "rejected at once, not after waiting";
    }
  });
}

TEST(CapiRootInfo, ThreadWithoutADeviceIsRejected) {
  EnsureAclReady();
  HcclRootInfo root{};
  ASSERT_EQ(HcclGetRootInfo(&root), HCCL_SUCCESS);
  OnThread(-1, [&] {
    HcclComm comm = nullptr;
    const auto start = Clock::now();
    EXPECT_NE(HcclCommInitRootInfo(1, &root, 0, &comm), HCCL_SUCCESS);
    const std::string msg = RecentErrMsg();
    EXPECT_NE(msg.find("aclrtSetDevice"), std::string::npos) << msg;
    EXPECT_EQ(comm, nullptr);
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(1));
  });
}

// Two ranks of one group on the same device of this process: the operators find a communicator by
// (group name, device), so one of the two joins must fail. (Both once succeeded: a rank was registered only once
// every rank had joined; each now claims its (group, device) before it joins, and the second finds it taken.)
TEST(CapiRootInfo, TwoRanksOnOneDeviceAreRejected) {
  EnsureAclReady();
  ScopedEnv connect("HCCL_CONNECT_TIMEOUT", "2");
  HcclRootInfo root{};
  ASSERT_EQ(HcclGetRootInfo(&root), HCCL_SUCCESS);
  HcclResult result[2] = {HCCL_E_RESERVED, HCCL_E_RESERVED};
  std::string messages[2];
  HcclComm comms[2] = {nullptr, nullptr};
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      ASSERT_EQ(aclrtSetDevice(5), ACL_SUCCESS);
      result[r] = HcclCommInitRootInfo(2, &root, r, &comms[r]);
      messages[r] = RecentErrMsg();
      aclrtResetDevice(5);
    });
  }
  for (auto& t : threads) t.join();
  const int ok = (result[0] == HCCL_SUCCESS) + (result[1] == HCCL_SUCCESS);
  EXPECT_TRUE(result[0] == HCCL_E_PARA || result[1] == HCCL_E_PARA) << messages[0] << " / " << messages[1];
  EXPECT_EQ(ok, 0) << "both ranks were created on device 5: " << messages[0] << " / " << messages[1];
  for (int r = 0; r < 2; ++r) {
    if (result[r] != HCCL_SUCCESS) {
      // The second rank on the device is refused naming it; the first then waits in vain for its peer.
      EXPECT_TRUE(result[r] == HCCL_E_PARA || result[r] == HCCL_E_TIMEOUT) << result[r] << ": " << messages[r];
      if (result[r] == HCCL_E_PARA) {
        EXPECT_TRUE(ContainsValue(messages[r], "device")) << messages[r];
      }
      if (result[r] == HCCL_E_TIMEOUT) {
        EXPECT_TRUE(ContainsValue(messages[r], "rank")) << messages[r];
      }
    }
    if (comms[r] != nullptr) {
      EXPECT_EQ(HcclCommDestroy(comms[r]), HCCL_SUCCESS);
    }
  }
  EXPECT_EQ(ShmEntriesOf(RootInfoToken(root)), std::set<std::string>{}) << "segments left in /dev/shm";
}

TEST(CapiRootInfo, ARankThatNeverJoinsTimesOutNamingIt) {
  EnsureAclReady();
  ScopedEnv connect("HCCL_CONNECT_TIMEOUT", "1");
  HcclRootInfo root{};
  ASSERT_EQ(HcclGetRootInfo(&root), HCCL_SUCCESS);
  const std::string token = RootInfoToken(root);
  ASSERT_FALSE(token.empty());
  constexpr int kJoining = 3;  // ranks 0..2 of 4; rank 3 never comes
  std::vector<HcclResult> result(kJoining, HCCL_E_RESERVED);
  std::vector<std::string> messages(kJoining);
  std::vector<int64_t> waited_ms(kJoining, -1);
  std::vector<HcclComm> comms(kJoining, nullptr);
  std::vector<std::thread> threads;
  for (int r = 0; r < kJoining; ++r) {
    threads.emplace_back([&, r] {
      ASSERT_EQ(aclrtSetDevice(r), ACL_SUCCESS);
      const auto start = Clock::now();
      result[r] = HcclCommInitRootInfo(4, &root, r, &comms[r]);
      waited_ms[r] = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
      messages[r] = RecentErrMsg();
      aclrtResetDevice(r);
    });
  }
  // While they wait, the joined ranks' segments exist under the token (so the check below means something).
  size_t seen = 0;
  for (int i = 0; i < 80 && seen < kJoining; ++i) {
    seen = std::max(seen, ShmEntriesOf(token).size());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(seen, static_cast<size_t>(kJoining)) << "segments of the waiting ranks under /dev/shm";
  for (int r = 0; r < kJoining; ++r) {
    EXPECT_EQ(result[r], HCCL_E_TIMEOUT) << "rank " << r << ": " << messages[r];
    EXPECT_TRUE(NamesRank(messages[r], 3)) << "rank " << r << ": " << messages[r];
    EXPECT_TRUE(ContainsValue(messages[r], "HCCL_CONNECT_TIMEOUT")) << messages[r];
    EXPECT_GE(waited_ms[r], 900) << "rank " << r;
    EXPECT_LE(waited_ms[r], 1000 + kSlackMs) << "rank " << r;
    EXPECT_EQ(comms[r], nullptr) << "rank " << r;
  }
  EXPECT_EQ(ShmEntriesOf(token), std::set<std::string>{}) << "segments left in /dev/shm after a failed join";
}

// ---------------------------------------------------------------------------------------------------
// (d) elastic scale-down through the C API
// ---------------------------------------------------------------------------------------------------

constexpr int kE = 16, kDead = 9;

// Each rank in `ranks` runs BufferReset(mask, needSync) on its own thread and device; returns the status of
// each synchronize (in the order of `ranks`), and their messages.
std::vector<aclError> ResetRanks(const std::vector<HcclComm>& comms, const std::vector<int>& ranks,
                                 const std::vector<int32_t>& mask, int32_t need_sync,
                                 std::vector<std::string>& messages) {
  std::vector<aclError> status(ranks.size(), -1);
  messages.assign(ranks.size(), "");
  std::vector<std::thread> threads;
  for (size_t i = 0; i < ranks.size(); ++i) {
    threads.emplace_back([&, i] {
      const int r = ranks[i];
      if (aclrtSetDevice(r) != ACL_SUCCESS) return;
      {
        aclrtStream stream = nullptr;
        EXPECT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS);
        const auto size = static_cast<int64_t>(comms.size());
        Tensor table(ACL_INT32, {size}, mask.data());
        const std::string group = CommName(comms[r]);
        uint64_t ws = 1;
        aclOpExecutor* exec = nullptr;
        aclnnStatus st =
            aclnnMoeDistributeBufferResetGetWorkspaceSize(table.get(), group.c_str(), size, need_sync, &ws, &exec);
        if (st == ACL_SUCCESS) st = aclnnMoeDistributeBufferReset(nullptr, 0, exec, stream);
        status[i] = st == ACL_SUCCESS ? aclrtSynchronizeStreamWithTimeout(stream, 30000) : st;
        messages[i] = RecentErrMsg();
        aclrtDestroyStream(stream);
      }
      aclrtResetDevice(r);
    });
  }
  for (auto& t : threads) t.join();
  return status;
}

TEST(CapiElastic, SurvivorsResetAndRunScaledDownEqualToTheReference) {
  EnsureAclReady();
  const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0x12D;
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::vector<int32_t> devices(kE);
  for (int r = 0; r < kE; ++r) devices[r] = r;
  const std::vector<HcclComm> comms = CreateGroup(devices);
  ASSERT_EQ(comms.size(), static_cast<size_t>(kE));

  // The group as created: rank 0 hosts the shared expert, ranks 1..15 two experts each, and ids 30 to 32 are a zero,
  // a copy and a const expert (they keep those ids once the group scaled down).
  constexpr int64_t kMaxBs = 6;
  CapiCase full;
  full.use_v3 = true;
  auto& cfg = full.spec.config;
  cfg.ep_world_size = kE;
  cfg.shared_expert_num = 1;
  cfg.shared_expert_rank_num = 1;
  cfg.moe_expert_num = 2 * (kE - 1);
  cfg.zero_expert_num = cfg.copy_expert_num = cfg.const_expert_num = 1;
  cfg.top_k = 3;
  cfg.hidden = 1024;
  cfg.global_bs = kMaxBs * kE;
  full.spec.bs = kMaxBs;
  full.spec.unequal_bs = true;
  {
    SCOPED_TRACE("round 1: the full group, elasticInfo null");
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(full.spec, rng);
    for (const auto& o : RunCapiRanks(full, inputs, comms, devices)) ASSERT_EQ(o.Summary(), "");
  }

  // Rank 9 is gone; the survivors reset, syncing only among themselves.
  std::vector<int> survivors;
  std::vector<int32_t> alive(kE, 1);
  alive[kDead] = 0;
  for (int r = 0; r < kE; ++r) {
    if (r != kDead) survivors.push_back(r);
  }
  {
    std::vector<std::string> messages;
    const auto status = ResetRanks(comms, survivors, alive, 1, messages);
    for (size_t i = 0; i < survivors.size(); ++i) {
      ASSERT_EQ(status[i], ACL_SUCCESS) << "BufferReset on rank " << survivors[i] << ": " << messages[i];
    }
  }

  // The scaled-down job: survivor i (new rank) is original rank Table2[i].
  const std::vector<int32_t> table = ScaleDownTable(cfg, alive);
  ASSERT_EQ(table[1], kE - 1);
  ASSERT_EQ(table[2], 1);
  ASSERT_EQ(table[3], 2 * (kE - 2));
  std::vector<HcclComm> survivor_comms;
  std::vector<int32_t> survivor_devices;
  for (int i = 0; i < kE - 1; ++i) {
    const int old = table[4 + kE + i];
    EXPECT_EQ(old, i < kDead ? i : i + 1);
    survivor_comms.push_back(comms[old]);
    survivor_devices.push_back(devices[old]);
  }
  // Round `variant` of the scaled-down job, and what each survivor passes: the attributes of the group as
  // created (with that round's globalBs) and the table.
  auto scaled_case = [&](int variant, std::vector<CapiElastic>& elastic) {
    CapiCase c = full;
    moe_ref::Config original = cfg;
    auto& sc = c.spec.config;
    sc.ep_world_size = table[1];
    sc.shared_expert_rank_num = table[2];
    sc.moe_expert_num = table[3];
    sc.global_bs = kMaxBs * table[1];  // maxBs stays
    if (variant == 1) {  // int8 dispatch and combine quant, 2-D mask (equal Bs, globalBs 0), cumulative counts
      sc.quant_mode = original.quant_mode = 2;
      sc.comm_quant_mode = original.comm_quant_mode = 2;
      sc.expert_token_nums_type = original.expert_token_nums_type = 0;
      sc.global_bs = original.global_bs = 0;
      c.spec.unequal_bs = false;
      c.spec.mask = moe_ref::MaskKind::kPairs;
    }
    if (variant == 2) {  // fp16, top-4, 1-D mask (equal Bs, globalBs 0)
      sc.dtype = original.dtype = moe_ref::DType::kFp16;
      sc.top_k = original.top_k = 4;
      sc.global_bs = original.global_bs = 0;
      c.spec.unequal_bs = false;
      c.spec.mask = moe_ref::MaskKind::kTokens;
    }
    elastic.clear();
    for (int i = 0; i < kE - 1; ++i) elastic.push_back(CapiElastic{original, table[4 + kE + i], table});
    return c;
  };
  std::vector<CapiElastic> elastic;
  for (int round = 0; round < 3; ++round) {
    const CapiCase c = scaled_case(round, elastic);
    SCOPED_TRACE("scaled-down round " + std::to_string(round + 1) + ": " + Describe(c));
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
    for (const auto& o : RunCapiRanks(c, inputs, survivor_comms, survivor_devices, &elastic)) {
      ASSERT_EQ(o.Summary(), "");
    }
  }

  {
    SCOPED_TRACE("Table1 and Table2 disagree");
    const CapiCase c = scaled_case(0, elastic);
    for (auto& b : elastic) std::swap(b.elastic_info[4 + kE + 3], b.elastic_info[4 + kE + 4]);  // Table2 only
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
    const auto outcomes = RunCapiRanks(c, inputs, survivor_comms, survivor_devices, &elastic);
    for (const auto& o : outcomes) {
      EXPECT_NE(o.failed_call.find("aclrtSynchronizeStream"), std::string::npos) << o.Summary();
      EXPECT_EQ(o.status, ACLNN_ERR_INNER_TILING_ERROR) << o.Summary();
      EXPECT_TRUE(NamesParam(o.message, "elasticInfo")) << o.Summary();
    }
  }
  {
    SCOPED_TRACE("a good scaled-down round after the rejected table");
    const CapiCase c = scaled_case(1, elastic);
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
    for (const auto& o : RunCapiRanks(c, inputs, survivor_comms, survivor_devices, &elastic)) {
      EXPECT_EQ(o.Summary(), "");
    }
  }
  for (HcclComm comm : comms) EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
}

// After rank 1 of 16 is gone and the survivors scaled down, survivor 2 (original rank 3) misses a round: the
// others time out naming it by its original rank, which is how the caller knows whom to leave out next.
TEST(CapiElastic, ASurvivorMissingFromAScaledDownRoundIsNamedByItsOriginalRank) {
  EnsureAclReady();
  const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0x12E;
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  constexpr int kGone = 1, kMissing = 3;
  std::vector<int32_t> devices(kE);
  for (int r = 0; r < kE; ++r) devices[r] = r;
  std::vector<HcclComm> comms;
  {
    ScopedEnv deadline("MOE_EP_TIMEOUT_MS", "1500");  // read as the communicators are made
    comms = CreateGroup(devices);
  }
  ASSERT_EQ(comms.size(), static_cast<size_t>(kE));
  moe_ref::Config cfg;
  cfg.ep_world_size = kE;
  cfg.moe_expert_num = 2 * kE;
  cfg.top_k = 3;
  cfg.hidden = 1024;
  std::vector<int32_t> alive(kE, 1);
  alive[kGone] = 0;
  std::vector<int> survivors;
  for (int r = 0; r < kE; ++r) {
    if (r != kGone) survivors.push_back(r);
  }
  {
    std::vector<std::string> messages;
    const auto status = ResetRanks(comms, survivors, alive, 1, messages);
    for (size_t i = 0; i < status.size(); ++i) ASSERT_EQ(status[i], ACL_SUCCESS) << messages[i];
  }
  const std::vector<int32_t> table = ScaleDownTable(cfg, alive);
  CapiCase c;
  c.use_v3 = true;
  c.spec.config = cfg;
  c.spec.config.ep_world_size = table[1];
  c.spec.config.moe_expert_num = table[3];
  c.spec.bs = 3;
  ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
  const CapiExpected expected = ExpectedOutputs(c, inputs);
  std::vector<CapiRankOutcome> outcomes(kE - 1);
  std::vector<std::thread> threads;
  for (int i = 0; i < kE - 1; ++i) {
    const int original = table[4 + kE + i];
    if (original == kMissing) continue;  // stays away
    threads.emplace_back([&, i, original] {
      ASSERT_EQ(aclrtSetDevice(original), ACL_SUCCESS);
      const CapiElastic elastic{cfg, original, table};
      outcomes[i] = RunCapiRank(c, inputs, i, comms[original], expected, &elastic, 30000);
      aclrtResetDevice(original);
    });
  }
  for (auto& t : threads) t.join();
  int named = 0;
  for (int i = 0; i < kE - 1; ++i) {
    const CapiRankOutcome& o = outcomes[i];
    if (table[4 + kE + i] == kMissing || o.status == 0) continue;  // a rank that needed nothing from it may pass
    EXPECT_EQ(o.status, 507034) << o.Summary();
    const bool names = o.message.find("original ranks: " + std::to_string(kMissing)) != std::string::npos;
    EXPECT_TRUE(names) << o.Summary();
    named += names;
  }
  EXPECT_GT(named, 0) << "no survivor timed out naming original rank " << kMissing;
  for (HcclComm comm : comms) EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
}

}  // namespace
}  // namespace moe_ep::capi_testing
