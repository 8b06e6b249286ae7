// Bad data through the C API never crashes or writes out of bounds: each case is a defect a hostile
// caller once triggered (out-of-range and repeated expert ids, a huge globalBs, an elastic table that
// drops a shared-expert replica, out-of-range environment values and nRanks, a copy or fill past the
// allocation, a stride-0 view far longer than its storage, a combine routed otherwise than its dispatch). Each must
// fail with its documented code and a message naming the tensor or parameter, leave the outputs untouched, and leave
// the group usable: a good round afterwards, of fresh random tokens, matches the reference bit for bit.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <thread>

#include "cann/capi_support.h"
#include "support/test_seed.h"

namespace moe_ep::capi_testing {
namespace {

// Two ranks, four experts (L 2), top-2, Bs 8, H 1024: A = globalBs * min(L, K) = 32.
constexpr int kRanks = 2;
constexpr int64_t kMoe = 4, kBs = 8, kH = 1024, kK = 2, kA = kBs * kRanks * 2;

// Runs body(rank) on one thread per rank, with that rank's device current.
void OnEveryRank(const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      ASSERT_EQ(aclrtSetDevice(r), ACL_SUCCESS) << RecentErrMsg();
      body(r);
      aclrtResetDevice(r);
    });
  }
  for (auto& t : threads) t.join();
}

// What a call came to: the first status that was not success (from the GetWorkspaceSize phase or from the
// stream) and aclGetRecentErrMsg after it.
struct Outcome {
  aclnnStatus status = ACL_SUCCESS;
  std::string message;
  bool launched = false;  // phase one succeeded: the failure (if any) came through the stream
};

// One rank's tensors for the calls that fail; rank r's token t is the bf16 value 0x3F80 + 16r + t in every column, so
// each row shows where it came from. Combine weights are 0.5 and 0.5.
struct Rank {
  int rank;
  HcclComm comm;
  std::string group;
  aclrtStream stream = nullptr;
  Tensor x, ids, weights, expand_x, dynamic_scales, assist, token_nums, ep_recv, tp_recv, x_out;

  Rank(int r, HcclComm c) : rank(r), comm(c), group(CommName(c)) {
    std::vector<uint16_t> x_host(kBs * kH);
    for (int64_t t = 0; t < kBs; ++t) {
      std::fill_n(x_host.begin() + t * kH, kH, static_cast<uint16_t>(0x3F80 + 16 * r + t));
    }
    x = Tensor(ACL_BF16, {kBs, kH}, x_host.data());
    SetIds(GoodIds());
    const std::vector<float> w(kBs * kK, 0.5f);
    weights = Tensor(ACL_FLOAT, {kBs, kK}, w.data());
    expand_x = Tensor(ACL_BF16, {kA, kH});
    dynamic_scales = Tensor(ACL_FLOAT, {kA});
    assist = Tensor(ACL_INT32, {kA * 128});
    token_nums = Tensor(ACL_INT64, {2});
    ep_recv = Tensor(ACL_INT32, {2 * kRanks});
    tp_recv = Tensor(ACL_INT32, {0});
    x_out = Tensor(ACL_BF16, {kBs, kH});
    EXPECT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS) << RecentErrMsg();
  }
  ~Rank() {
    if (stream != nullptr) aclrtDestroyStream(stream);
  }

  // Token t goes to experts (t + r) % 4 and (t + r + 1) % 4: distinct, and every rank sends to both.
  std::vector<int32_t> GoodIds() const {
    std::vector<int32_t> id;
    for (int64_t t = 0; t < kBs; ++t) {
      for (int64_t k = 0; k < kK; ++k) id.push_back(static_cast<int32_t>((t + rank + k) % kMoe));
    }
    return id;
  }
  void SetIds(const std::vector<int32_t>& id) { ids = Tensor(ACL_INT32, {kBs, kK}, id.data()); }

  Outcome Finish(aclnnStatus phase_one) {
    Outcome o;
    if (phase_one != ACL_SUCCESS) {
      o.status = phase_one;
      o.message = RecentErrMsg();
      return o;
    }
    o.launched = true;
    o.status = aclrtSynchronizeStreamWithTimeout(stream, 30000);
    o.message = RecentErrMsg();
    return o;
  }
  // With `expand_x_out` or `tp_recv_out`, those descriptors instead of the rank's own.
  Outcome Dispatch(int64_t global_bs = 0, aclTensor* expand_x_out = nullptr, aclTensor* tp_recv_out = nullptr) {
    uint64_t ws = 0;
    aclOpExecutor* exec = nullptr;
    aclnnStatus st = aclnnMoeDistributeDispatchV2GetWorkspaceSize(
        x.get(), ids.get(), nullptr, nullptr, nullptr, group.c_str(), kRanks, rank, kMoe, "", 0, 0, 0, 0, 0, 0,
        global_bs, 1, "", expand_x_out ? expand_x_out : expand_x.get(), dynamic_scales.get(), assist.get(),
        token_nums.get(), ep_recv.get(), tp_recv_out ? tp_recv_out : tp_recv.get(), nullptr, &ws, &exec);
    if (st == ACL_SUCCESS) st = aclnnMoeDistributeDispatchV2(nullptr, ws, exec, stream);
    return Finish(st);
  }
  Outcome Combine(const aclTensor* assist_info = nullptr, aclTensor* out = nullptr) {
    uint64_t ws = 0;
    aclOpExecutor* exec = nullptr;
    aclnnStatus st = aclnnMoeDistributeCombineV2GetWorkspaceSize(
        expand_x.get(), ids.get(), assist_info ? assist_info : assist.get(), ep_recv.get(), weights.get(),
        tp_recv.get(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, group.c_str(), kRanks, rank, kMoe, "", 0,
        0, 0, 0, 0, 0, 0, 0, 0, "", out ? out : x_out.get(), &ws, &exec);
    if (st == ACL_SUCCESS) st = aclnnMoeDistributeCombineV2(nullptr, ws, exec, stream);
    return Finish(st);
  }
  // A good round of this group's shape, drawn from the run's seed, the test and `round` (alike on every rank): fresh
  // tokens, routing and weights, every output poisoned and compared with the reference.
  void ExpectGoodRound(uint64_t round = 0) const {
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    const uint64_t seed = moe_ep::testing::BaseSeed() + std::hash<std::string>{}(test) + round;
    std::mt19937_64 rng(seed);
    CapiCase c;
    c.spec = moe_ep::verify::RoutedSpec(kRanks, kMoe, kK, kH, kBs);
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
    const CapiExpected expected = ExpectedOutputs(c, inputs);
    EXPECT_EQ(RunCapiRank(c, inputs, rank, comm, expected).Summary(), "")
        << "seed " << seed << ": the group is not usable after the error";
  }
};

class CapiBadData : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EnsureAclReady();
    comms_ = new std::vector<HcclComm>(CreateGroup({0, 1}));
  }
  static void TearDownTestSuite() {
    for (HcclComm c : *comms_) HcclCommDestroy(c);
    delete comms_;
  }
  static HcclComm comm(int r) { return (*comms_)[r]; }
  static std::vector<HcclComm>* comms_;
};
std::vector<HcclComm>* CapiBadData::comms_ = nullptr;

void ExpectRunTimeFailure(const Outcome& o, aclnnStatus code, const std::string& param, const std::string& value) {
  EXPECT_TRUE(o.launched) << "phase one should accept (the data is read when the operation runs): " << o.message;
  EXPECT_EQ(o.status, code) << o.message;
  EXPECT_TRUE(NamesParam(o.message, param)) << o.message;
  EXPECT_TRUE(ContainsValue(o.message, value)) << o.message;
}

// Defect 1: combine read an id >= moeExpertNum as a special expert (through a null alpha1: SIGSEGV) and
// waited for a negative one until the deadline, naming "rank -3".
TEST_F(CapiBadData, CombineRejectsExpertIdsOutOfRangeBeforeAnyRowMoves) {
  for (const int32_t bad : {1000, -3, static_cast<int32_t>(kMoe)}) {
    SCOPED_TRACE("expert id " + std::to_string(bad));
    OnEveryRank([&](int r) {
      Rank rank(r, comm(r));
      ASSERT_EQ(rank.Dispatch().status, ACL_SUCCESS) << RecentErrMsg();
      rank.SetIds(std::vector<int32_t>(kBs * kK, bad));
      const auto start = std::chrono::steady_clock::now();
      ExpectRunTimeFailure(rank.Combine(), ACLNN_ERR_PARAM_INVALID, "expertIds", std::to_string(bad));
      EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5)) << "no wait for absent rows";
      EXPECT_TRUE(rank.x_out.AllBytesAre(kPoison)) << "xOut written by a failed combine";
      rank.ExpectGoodRound(static_cast<uint64_t>(bad));
    });
  }
}

// Defect 7: a combine handed other expertIds than its dispatch's summed, on that rank, rows of other tokens (and a rank
// whose rows it then never read waited for it until the deadline). Rank 0 sends token 0 to expert 2 (rank 1's) instead
// of expert 0 (its own): refused there alone, naming its own count of rows, before xOut is written; rank 1's combine
// completes with its tokens back (weights 0.5 and 0.5 of the rows they went out as).
TEST_F(CapiBadData, ACombineRoutedOtherwiseThanItsDispatchIsRefusedOnThatRankAlone) {
  OnEveryRank([&](int r) {
    Rank rank(r, comm(r));
    ASSERT_EQ(rank.Dispatch().status, ACL_SUCCESS) << RecentErrMsg();
    if (r == 0) {
      std::vector<int32_t> ids = rank.GoodIds();
      ids[0] = 2;
      rank.SetIds(ids);
      const Outcome o = rank.Combine();
      ExpectRunTimeFailure(o, ACLNN_ERR_PARAM_INVALID, "expertIds", "7 rows from rank 0");
      EXPECT_NE(o.message.find("equals the rows rank 0 returns (8, by its assistInfoForCombine and epSendCounts)"),
                std::string::npos)
          << o.message;
      EXPECT_TRUE(rank.x_out.AllBytesAre(kPoison)) << "xOut written by a refused combine";
    } else {
      const Outcome o = rank.Combine();
      EXPECT_EQ(o.status, ACL_SUCCESS) << o.message;
      EXPECT_EQ(rank.x_out.Read<uint16_t>(), rank.x.Read<uint16_t>()) << "rank 1's tokens did not come back";
    }
    rank.ExpectGoodRound();
  });
}

// An xOut over the first rows of expandX (an "in place" combine): peers read those rows in place while this rank
// writes xOut, so the sums depended on timing. Refused as it runs (phase one may see stand-ins for outputs), naming
// both, before anything moves; the group stays usable.
// In aclrtMalloc memory, whose addresses are fixed once phase one has them, the refusal comes in phase one: the
// program learns it at the call, before anything is launched (host memory is checked at the launch).
TEST_F(CapiBadData, AnOutputSharingMemoryWithAnInputIsRefusedInPhaseOne) {
  OnEveryRank([&](int r) {
    Rank rank(r, comm(r));
    ASSERT_EQ(rank.Dispatch().status, ACL_SUCCESS) << RecentErrMsg();
    const std::vector<uint16_t> rows_before = rank.expand_x.Read<uint16_t>();
    const int64_t dims[] = {kBs, kH}, strides[] = {kH, 1}, storage[] = {kA * kH};
    aclTensor* over = aclCreateTensor(dims, 2, ACL_BF16, strides, 0, ACL_FORMAT_ND, storage, 1, rank.expand_x.data());
    ASSERT_NE(over, nullptr) << RecentErrMsg();
    const Outcome o = rank.Combine(nullptr, over);
    aclDestroyTensor(over);
    EXPECT_FALSE(o.launched) << "refused at the launch, not in phase one";
    EXPECT_EQ(o.status, ACLNN_ERR_PARAM_INVALID) << o.message;
    EXPECT_TRUE(NamesParam(o.message, "xOut")) << o.message;
    EXPECT_TRUE(ContainsValue(o.message, "(8, 1024)")) << o.message;
    EXPECT_NE(o.message.find("must not share memory with 'expandX' = (32, 1024) bf16"), std::string::npos) << o.message;
    EXPECT_EQ(rank.expand_x.Read<uint16_t>(), rows_before) << "expandX, under xOut, was written";
    rank.ExpectGoodRound();
  });
}

// A view that reaches past the aclrtMalloc allocation it points into would be written out of bounds (here, into
// whatever the shared heap holds after 64 bytes): phase one refuses it naming the tensor. A required output of no
// elements made without tensorData (tpRecvCountsOut without TP) is a tensor all the same, not a null pointer.
TEST_F(CapiBadData, AViewPastItsAllocationIsRefusedInPhaseOne) {
  OnEveryRank([&](int r) {
    Rank rank(r, comm(r));
    void* small = nullptr;
    ASSERT_EQ(aclrtMalloc(&small, 64, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS) << RecentErrMsg();
    const int64_t dims[] = {kA, kH}, strides[] = {kH, 1};
    aclTensor* too_long = aclCreateTensor(dims, 2, ACL_BF16, strides, 0, ACL_FORMAT_ND, dims, 2, small);
    ASSERT_NE(too_long, nullptr) << RecentErrMsg();
    const Outcome o = rank.Dispatch(0, too_long);
    aclDestroyTensor(too_long);
    EXPECT_FALSE(o.launched) << "launched a dispatch into 64 bytes";
    EXPECT_EQ(o.status, ACLNN_ERR_PARAM_INVALID) << o.message;
    EXPECT_NE(o.message.find("'expandXOut' reaches " + std::to_string(kA * kH * 2) + " bytes"), std::string::npos)
        << o.message;
    EXPECT_NE(o.message.find("past the 64 bytes"), std::string::npos) << o.message;
    EXPECT_EQ(aclrtFree(small), ACL_SUCCESS);

    const int64_t none[] = {0}, unit[] = {1};
    aclTensor* no_counts = aclCreateTensor(none, 1, ACL_INT32, unit, 0, ACL_FORMAT_ND, none, 1, nullptr);
    ASSERT_NE(no_counts, nullptr) << RecentErrMsg();
    const Outcome accepted = rank.Dispatch(0, nullptr, no_counts);
    aclDestroyTensor(no_counts);
    EXPECT_EQ(accepted.status, ACL_SUCCESS) << accepted.message;
    rank.ExpectGoodRound();
  });
}

// Defect 2: the same expert twice in a token sent more rows to a rank than expandXOut holds when the rank
// hosts fewer experts than K (A = globalBs * min(L, K) counts one row per token and local expert).
TEST_F(CapiBadData, DispatchRejectsARepeatedExpertInAToken) {
  OnEveryRank([&](int r) {
    Rank rank(r, comm(r));
    rank.SetIds(std::vector<int32_t>(kBs * kK, 0));
    const Outcome o = rank.Dispatch();
    ExpectRunTimeFailure(o, ACLNN_ERR_PARAM_INVALID, "expertIds", "0");
    EXPECT_NE(o.message.find("distinct"), std::string::npos) << o.message;
    EXPECT_NE(o.message.find("[0, 1]"), std::string::npos) << "the second occurrence is named: " << o.message;
    EXPECT_TRUE(rank.expand_x.AllBytesAre(kPoison)) << "expandXOut written by a failed dispatch";
    EXPECT_TRUE(rank.assist.AllBytesAre(kPoison));
    rank.ExpectGoodRound();
  });
}

// Defect 3: globalBs = 2^61 wrapped maxBs * (K + n_s), A and the window size to 0, so a 0-row expandXOut
// passed and was then overflowed. Now every size is bounded before it is multiplied.
TEST_F(CapiBadData, HugeGlobalBsIsRejectedInPhaseOne) {
  OnEveryRank([&](int r) {
    Rank rank(r, comm(r));
    rank.expand_x = Tensor(ACL_BF16, {0, kH});
    for (const int64_t global_bs : {int64_t{1} << 61, int64_t{1} << 62, INT64_MAX - 1, int64_t{1} << 40}) {
      const Outcome o = rank.Dispatch(global_bs);
      EXPECT_FALSE(o.launched) << global_bs;
      EXPECT_EQ(o.status, ACLNN_ERR_INNER_TILING_ERROR) << o.message;
      EXPECT_TRUE(NamesParam(o.message, "globalBs")) << o.message;
      EXPECT_TRUE(ContainsValue(o.message, std::to_string(global_bs))) << o.message;
    }
    rank.expand_x = Tensor(ACL_BF16, {kA, kH});
    rank.ExpectGoodRound();
  });
}

// A view far longer than its storage (stride 0) is read only as far as the counts say: before, combine
// copied the whole (2^40,) assistInfoForCombine and died in std::bad_alloc.
TEST_F(CapiBadData, StrideZeroViewIsReadOnlyAsFarAsNeeded) {
  OnEveryRank([&](int r) {
    Rank rank(r, comm(r));
    ASSERT_EQ(rank.Dispatch().status, ACL_SUCCESS) << RecentErrMsg();
    Tensor endless = Tensor::View(ACL_INT32, {int64_t{1} << 40}, {0}, 0, 1);
    const int32_t minus_one = -1;
    ASSERT_EQ(aclrtMemcpy(endless.data(), sizeof minus_one, &minus_one, sizeof minus_one, ACL_MEMCPY_HOST_TO_DEVICE),
              ACL_SUCCESS);
    ExpectRunTimeFailure(rank.Combine(endless.get()), ACLNN_ERR_PARAM_INVALID, "assistInfoForCombine", "-1");
    rank.ExpectGoodRound();
  });
}

// Defect 4: a scaled-down job that drops one replica of the shared expert sends the surviving replica
// more rows (maxBs * ceil(newE / newR)) than its role's A. With elasticInfo every rank is sized for the
// larger role (docs/semantics.md 1.2), so the round is exact; before, it corrupted the heap and exited 0.
TEST(CapiBadDataElastic, DroppingASharedReplicaRunsExactlyWithBuffersSizedForEitherRole) {
  EnsureAclReady();
  const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0xE1A5;
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  constexpr int kE = 4, kDead = 1;  // ranks 0 and 1 replicate the shared expert; 2 and 3 host one expert each
  const std::vector<int32_t> devices = {0, 1, 2, 3};
  const std::vector<HcclComm> comms = CreateGroup(devices);
  moe_ref::Config original;
  original.ep_world_size = kE;
  original.shared_expert_num = 1;
  original.shared_expert_rank_num = 2;
  original.moe_expert_num = 2;
  original.top_k = 2;
  original.hidden = 1024;
  std::vector<int32_t> alive(kE, 1);
  alive[kDead] = 0;
  const std::vector<int32_t> table = ScaleDownTable(original, alive);
  ASSERT_EQ(table[2], 1) << "one shared replica is left";

  CapiCase c;
  c.use_v3 = true;
  c.spec.bs = 8;
  auto& sc = c.spec.config;
  sc = original;
  sc.ep_world_size = table[1];
  sc.shared_expert_rank_num = table[2];
  sc.moe_expert_num = table[3];
  std::vector<CapiElastic> elastic;
  std::vector<HcclComm> survivor_comms;
  std::vector<int32_t> survivor_devices;
  for (int i = 0; i < table[1]; ++i) {
    const int old = table[4 + kE + i];
    elastic.push_back(CapiElastic{original, old, table});
    survivor_comms.push_back(comms[old]);
    survivor_devices.push_back(devices[old]);
  }

  // Buffers sized for the shared role alone (maxBs * ceil(E / R) = 16 rows, the surviving replica gets
  // 8 * 3 = 24) are refused in phase one, naming expandXOut: MoE A = globalBs * min(L, K) = 32.
  std::thread([&] {
    ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
    {
      const std::vector<uint16_t> x(8 * 1024, 0x3F80);
      const std::vector<int32_t> ids(8 * 2, 0);
      Tensor tx(ACL_BF16, {8, 1024}, x.data()), tids(ACL_INT32, {8, 2}, ids.data());
      Tensor info(ACL_INT32, {static_cast<int64_t>(table.size())}, table.data());
      Tensor expand(ACL_BF16, {16, 1024}), assist(ACL_INT32, {16 * 128}), nums(ACL_INT64, {1}), recv(ACL_INT32, {kE}),
          tp(ACL_INT32, {0});
      uint64_t ws = 0;
      aclOpExecutor* exec = nullptr;
      EXPECT_EQ(aclnnMoeDistributeDispatchV3GetWorkspaceSize(
                    tx.get(), tids.get(), nullptr, nullptr, nullptr, info.get(), CommName(comms[0]).c_str(), kE, 0, 2,
                    "", 0, 0, 0, 1, 2, 0, 0, 1, "", 0, 0, 0, expand.get(), nullptr, assist.get(), nums.get(),
                    recv.get(), tp.get(), nullptr, &ws, &exec),
                ACLNN_ERR_INNER_TILING_ERROR);
      const std::string message = RecentErrMsg();
      EXPECT_TRUE(NamesParam(message, "expandXOut")) << message;
      EXPECT_NE(message.find(">= 32"), std::string::npos) << message;
    }
    aclrtResetDevice(0);
  }).join();

  // Sized for either role, the scaled-down round is exact.
  ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
  for (const auto& o : RunCapiRanks(c, inputs, survivor_comms, survivor_devices, &elastic)) {
    EXPECT_EQ(o.Summary(), "");
  }
  for (HcclComm comm : comms) HcclCommDestroy(comm);
}

// Defect 5: HCCL_BUFFSIZE and the timeouts saturated and then wrapped (<< 20, * 1000): flags landed
// before the mapping. Every value is now an integer in a documented range, or an error naming it.
// (HCCL_EXEC_TIMEOUT takes CANN's [0, 2147483647]: 0 means MOE_EP_TIMEOUT_MS, and a value past moe_ep's
// longest deadline is clamped to it, so that neither wraps.)
TEST(CapiBadDataEnvironment, ValuesOutOfRangeFailCommunicatorCreationNamingTheVariable) {
  EnsureAclReady();
  for (const char* name : {"HCCL_BUFFSIZE", "HCCL_EXEC_TIMEOUT", "MOE_EP_TIMEOUT_MS"}) {
    const bool exec = std::string(name) == "HCCL_EXEC_TIMEOUT";
    for (const char* value : {"99999999999999999999", "-1", "0", "12abc"}) {
      SCOPED_TRACE(std::string(name) + "=" + value);
      if (exec && std::string(value) == "0") continue;  // accepted: below
      ScopedEnv env(name, value);
      std::vector<HcclComm> comms(2, nullptr);
      const int32_t devices[2] = {0, 1};
      EXPECT_NE(HcclCommInitAll(2, const_cast<int32_t*>(devices), comms.data()), HCCL_SUCCESS);
      const std::string message = RecentErrMsg();
      EXPECT_NE(message.find(name), std::string::npos) << message;
      EXPECT_NE(message.find(value), std::string::npos) << message;
      for (HcclComm c : comms) EXPECT_EQ(c, nullptr);
    }
  }
  for (const char* value : {"0", "2147483647"}) {
    SCOPED_TRACE(std::string("HCCL_EXEC_TIMEOUT=") + value);
    ScopedEnv env("HCCL_EXEC_TIMEOUT", value);
    std::vector<HcclComm> comms(2, nullptr);
    const int32_t devices[2] = {0, 1};
    ASSERT_EQ(HcclCommInitAll(2, const_cast<int32_t*>(devices), comms.data()), HCCL_SUCCESS) << RecentErrMsg();
    for (HcclComm c : comms) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);
  }
}

// Defect 6: nRanks 2^30 allocated 16 GB before it timed out.
TEST(CapiBadDataEnvironment, RootInfoNRanksIsBoundedBeforeAnythingIsAllocated) {
  EnsureAclReady();
  ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
  HcclRootInfo root{};
  ASSERT_EQ(HcclGetRootInfo(&root), HCCL_SUCCESS);
  for (const uint32_t n_ranks : {uint32_t{1} << 30, uint32_t{65537}, UINT32_MAX}) {
    HcclComm comm = nullptr;
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(HcclCommInitRootInfo(n_ranks, &root, 0, &comm), HCCL_E_PARA);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
    const std::string message = RecentErrMsg();
    EXPECT_NE(message.find("nRanks = " + std::to_string(n_ranks)), std::string::npos) << message;
    EXPECT_EQ(comm, nullptr);
  }
  aclrtResetDevice(0);
}

// aclrtMemcpy / aclrtMemset trusted a count larger than what is left of the allocation at dst (devPtr) or
// src. The count is what is checked against the allocation: a destMax (maxCount) larger than what is left
// is accepted, as CANN checks only count <= destMax, and nothing past the count is touched. A pointer at an
// allocation's end or in its alignment padding was taken for unknown memory, and any count accepted there.
TEST(CapiBadDataMemory, CopiesAndFillsStayInsideTheAllocation) {
  EnsureAclReady();
  ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
  void* small = nullptr;
  void* big = nullptr;
  ASSERT_EQ(aclrtMalloc(&small, 64, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
  ASSERT_EQ(aclrtMalloc(&big, 256, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
  auto* const small_bytes = static_cast<uint8_t*>(small);
  std::vector<uint8_t> host(256, 1);
  // A generous destMax (maxCount) with a count that fits: accepted, and only count bytes change.
  ASSERT_EQ(aclrtMemset(small, 64, 0, 64), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_EQ(aclrtMemcpy(small, 128, host.data(), 32, ACL_MEMCPY_HOST_TO_DEVICE), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_EQ(aclrtMemcpy(small_bytes + 32, SIZE_MAX, host.data(), 8, ACL_MEMCPY_HOST_TO_DEVICE), ACL_SUCCESS)
      << RecentErrMsg();
  EXPECT_EQ(aclrtMemset(small_bytes + 40, 1 << 20, 2, 8), ACL_SUCCESS) << RecentErrMsg();
  std::vector<uint8_t> seen(64, 0);
  ASSERT_EQ(aclrtMemcpy(seen.data(), seen.size(), small, 64, ACL_MEMCPY_DEVICE_TO_HOST), ACL_SUCCESS);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], i < 40 ? 1 : i < 48 ? 2 : 0) << "byte " << i;
  // A count past the allocation: refused naming the count, what is left and the pointer, whatever destMax says.
  EXPECT_EQ(aclrtMemcpy(small, 128, host.data(), 65, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_INVALID_PARAM);
  std::string message = RecentErrMsg();
  EXPECT_NE(message.find("count 65 is more than the 64 bytes left"), std::string::npos) << message;
  EXPECT_NE(message.find("'dst'"), std::string::npos) << message;
  EXPECT_EQ(aclrtMemcpy(small_bytes + 32, 64, host.data(), 40, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_INVALID_PARAM)
      << "what is left counts from dst, not from the allocation's start";
  EXPECT_NE(RecentErrMsg().find("32 bytes left"), std::string::npos);
  EXPECT_EQ(aclrtMemcpy(big, 256, small, 128, ACL_MEMCPY_DEVICE_TO_DEVICE), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(RecentErrMsg().find("'src'"), std::string::npos);
  EXPECT_EQ(aclrtMemset(small, 128, 0, 65), ACL_ERROR_INVALID_PARAM);
  message = RecentErrMsg();
  EXPECT_NE(message.find("count 65"), std::string::npos) << message;
  EXPECT_NE(message.find("'devPtr'"), std::string::npos) << message;
  aclrtStream stream = nullptr;
  ASSERT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_EQ(aclrtMemcpyAsync(small, 128, host.data(), 65, ACL_MEMCPY_HOST_TO_DEVICE, stream), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtMemsetAsync(small_bytes + 8, 128, 0, 57, stream), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtMemcpyAsync(small, 128, host.data(), 64, ACL_MEMCPY_HOST_TO_DEVICE, stream), ACL_SUCCESS)
      << RecentErrMsg();
  EXPECT_EQ(aclrtMemsetAsync(small_bytes + 8, 128, 0, 56, stream), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
  // count <= destMax stays the first rule.
  EXPECT_EQ(aclrtMemcpy(small, 16, host.data(), 32, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(RecentErrMsg().find("destMax 16"), std::string::npos);
  EXPECT_EQ(aclrtMemcpy(small, 64, host.data(), 64, ACL_MEMCPY_HOST_TO_DEVICE), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_EQ(aclrtMemcpy(big, 256, small, 64, ACL_MEMCPY_DEVICE_TO_DEVICE), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_EQ(aclrtMemset(static_cast<uint8_t*>(small) + 60, 4, 0, 4), ACL_SUCCESS) << RecentErrMsg();
  // The end of an allocation, and its alignment padding, are its own: no room there, not unknown memory.
  // (The end of `whole`, allocated last, is where no other allocation starts.)
  void* odd = nullptr;
  void* whole = nullptr;
  ASSERT_EQ(aclrtMalloc(&odd, 100, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
  ASSERT_EQ(aclrtMalloc(&whole, 128, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
  auto* const odd_bytes = static_cast<uint8_t*>(odd);
  for (uint8_t* end : {odd_bytes + 100, odd_bytes + 120, static_cast<uint8_t*>(whole) + 128}) {
    EXPECT_EQ(aclrtMemcpy(end, 4096, host.data(), 8, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_INVALID_PARAM)
        << static_cast<void*>(end);
    EXPECT_NE(RecentErrMsg().find("count 8 is more than the 0 bytes left"), std::string::npos) << RecentErrMsg();
    EXPECT_EQ(aclrtMemset(end, 4096, 0, 1), ACL_ERROR_INVALID_PARAM);
  }
  EXPECT_EQ(aclrtMemcpy(odd_bytes + 100, 4096, host.data(), 0, ACL_MEMCPY_HOST_TO_DEVICE), ACL_SUCCESS)
      << RecentErrMsg();
  aclrtFree(whole);
  aclrtFree(odd);
  aclrtFree(small);
  aclrtFree(big);
  aclrtResetDevice(0);
}

}  // namespace
}  // namespace moe_ep::capi_testing
