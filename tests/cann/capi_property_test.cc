// C API property tests: random A3-legal configurations driven only through the CANN-compatible entry
// points (aclrt*, Hccl*, aclnnMoeDistribute*), every output element bit-identical to tests/reference/,
// rows the reference leaves undefined still poisoned. Each case forces one feature and draws the rest:
// bf16 / fp16, shared experts (n_s 1..2), 1-D and 2-D masks, unequal Bs with globalBs, TP 2, dynamic quant
// with smooth scales, both expertTokenNumsTypes, commQuantMode 2, sharedExpertX (2-D and 3-D),
// CombineAddRmsNorm (V1, and V2 with special experts), V3 zero / copy / const experts, strided inputs with offsets, and
// one thread that launches every rank (switching contexts). Also: rounds with fresh routing on the same communicators,
// and the same on Atlas A2 (MOE_EP_SOC_NAME=Ascend910B3: A2's rules and expandIdx layout). Replay a run with
// MOE_EP_TEST_SEED=<printed seed>.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <utility>

#include "cann/capi_support.h"
#include "support/scoped_env.h"
#include "support/test_seed.h"

namespace moe_ep::capi_testing {
namespace {

using moe_ref::DType;
using moe_ref::MaskKind;

#ifdef MOE_EP_SANITIZED
constexpr int kCycles = 1;
#else
constexpr int kCycles = 4;
#endif

enum Feature {
  kBf16,
  kFp16,
  kShared,
  kMask1d,
  kMask2d,
  kUnequalBs,
  kTp2,
  kQuantSmooth,
  kTokenNumsCumulative,
  kCommQuant,
  kSharedX,
  kAddRmsNorm,
  kAddRmsNormV2,  // with special experts
  kSpecialExperts,
  kStrided,
  kSingleThread,
  kFeatureCount
};

int64_t Uniform(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}
bool Chance(std::mt19937_64& rng, double p) { return std::bernoulli_distribution(p)(rng); }

// How the caller passes a case, beyond its configuration: the inputs' layout (a strided one when `strided`),
// tpWorldSize 0 or 1 without TP, sharedExpertNum's default 1, the A2-only parameters (with chance `a2_params`), a
// null commAlg, groupListType, outputs with gaps after their rows, rows of zeros, infinities, NaNs and subnormals.
void DrawCallerChoices(std::mt19937_64& rng, bool strided, double a2_params, CapiCase& c) {
  const int64_t layout = strided ? Uniform(rng, 1, 2) : Uniform(rng, 0, 4) - 2;
  c.spec.layout = layout == 1   ? InputLayout::kPaddedRows
                  : layout == 2 ? InputLayout::kStridedColumns
                                : InputLayout::kContiguous;
  c.no_tp_attr = static_cast<int>(Uniform(rng, 0, 1));
  c.default_shared_num = Chance(rng, 0.3);
  c.pass_a2_params = Chance(rng, a2_params);
  c.null_comm_alg = Chance(rng, 0.3);
  c.group_list_type = Uniform(rng, 0, 1);
  c.spec.strided_outputs = Chance(rng, 0.25);
  c.spec.special_values = Chance(rng, 0.2);
}

// A random A3-legal case that certainly has feature `f`.
CapiCase RandomCase(std::mt19937_64& rng, Feature f, Launch* launch) {
  CapiCase c;
  auto& s = c.spec;
  auto& cfg = s.config;
  // CombineAddRmsNorm takes bf16 alone, no comm quantization and no shared experts: never drawn against those features.
  const bool add_rms =
      f == kAddRmsNorm || f == kAddRmsNormV2 || (f != kFp16 && f != kCommQuant && f != kShared && Chance(rng, 0.1));
  cfg.tp_world_size = f == kTp2 || (f != kCommQuant && Chance(rng, 0.12)) ? 2 : 1;
  // Shared experts need a rank of their own and one for the MoE experts at least.
  cfg.ep_world_size =
      static_cast<int>(Uniform(rng, f == kShared ? 3 : 2, cfg.tp_world_size == 2 && Chance(rng, 0.8) ? 4 : 8));
  if (!add_rms && !(f == kSharedX) && cfg.ep_world_size >= 3 && (f == kShared || Chance(rng, 0.25))) {
    cfg.shared_expert_num = static_cast<int>(Uniform(rng, 1, std::min(2, cfg.ep_world_size - 1)));
    const int replicas =
        static_cast<int>(Uniform(rng, 1, std::max(1, (cfg.ep_world_size - 1) / cfg.shared_expert_num)));
    cfg.shared_expert_rank_num = cfg.shared_expert_num * replicas;
  }
  const int local = cfg.tp_world_size == 2 ? 1 : static_cast<int>(Uniform(rng, 1, 4));
  cfg.moe_expert_num = local * (cfg.ep_world_size - cfg.shared_expert_rank_num);
  const bool special = f == kSpecialExperts || f == kAddRmsNormV2 || Chance(rng, 0.12);
  if (special) {
    do {
      cfg.zero_expert_num = static_cast<int>(Uniform(rng, 0, 2));
      cfg.copy_expert_num = static_cast<int>(Uniform(rng, 0, 2));
      cfg.const_expert_num = static_cast<int>(Uniform(rng, 0, 2));
    } while (cfg.zero_expert_num + cfg.copy_expert_num + cfg.const_expert_num == 0);
  }
  c.use_v3 = special || Chance(rng, 0.2);  // with AddRmsNorm: its V2
  const int total = cfg.moe_expert_num + cfg.zero_expert_num + cfg.copy_expert_num + cfg.const_expert_num;
  cfg.top_k = static_cast<int>(Uniform(rng, 1, std::min(8, total)));
  cfg.hidden = static_cast<int>(Chance(rng, 0.5) ? Uniform(rng, 1024, 1040) : Uniform(rng, 1024, 1536));
  cfg.dtype = add_rms || f == kBf16 ? DType::kBf16
              : f == kFp16          ? DType::kFp16
              : Chance(rng, 0.5)    ? DType::kBf16
                                    : DType::kFp16;
  cfg.quant_mode = f == kQuantSmooth || Chance(rng, 0.3) ? 2 : 0;
  s.smooth_scales = cfg.quant_mode == 2 && (f == kQuantSmooth || Chance(rng, 0.6));
  cfg.expert_token_nums_type = f == kTokenNumsCumulative ? 0 : static_cast<int>(Uniform(rng, 0, 1));
  cfg.comm_quant_mode = cfg.tp_world_size == 1 && !add_rms && (f == kCommQuant || Chance(rng, 0.25)) ? 2 : 0;
  cfg.norm_eps = Chance(rng, 0.5) ? 1e-6f : 1e-5f;
  s.bs = Uniform(rng, f == kUnequalBs ? 2 : 1, 16);  // with Bs 1 every rank's would be equal
  s.mask = f == kMask1d      ? MaskKind::kTokens
           : f == kMask2d    ? MaskKind::kPairs
           : f == kUnequalBs ? MaskKind::kNone
                             : static_cast<MaskKind>(Uniform(rng, 0, 2));
  if (f == kUnequalBs || (s.mask == MaskKind::kNone && Chance(rng, 0.25))) {
    s.unequal_bs = f == kUnequalBs || Chance(rng, 0.6);
    cfg.global_bs = (s.bs + Uniform(rng, 0, 3)) * cfg.ep_world_size;
  } else if (Chance(rng, 0.2)) {
    cfg.global_bs = s.bs * cfg.ep_world_size;
  }
  s.shared_expert_x = cfg.shared_expert_rank_num == 0 && (f == kSharedX || Chance(rng, 0.2));
  s.add_rms_norm = add_rms;
  DrawCallerChoices(rng, f == kStrided, 0.3, c);
  c.shared_x_3d = s.shared_expert_x && Chance(rng, 0.4);
  c.pass_zero_ori_x = c.use_v3 && Chance(rng, 0.3);
  *launch = f == kSingleThread ? Launch::kSingleThread
            : Chance(rng, 0.3) ? Launch::kThreadPerRankContexts
                               : Launch::kThreadPerRank;
  return c;
}

// What a random A2 case is made to have (docs/a2.md); each case forces one, so that every run covers all.
enum A2Feature { kA2Mask1d, kA2UnequalBs, kA2Quant, kA2QuantByDtype, kA2FeatureCount };

// A random Atlas A2-legal case (docs/a2.md) with `f`: epWorldSize 8 or 16, H a multiple of 32, no TP, no shared or
// const experts, masks 1-D, zero / copy experts through V3; sharedExpertX passed sometimes (A2 never reads it).
// kA2QuantByDtype passes the quantMode that expandXOut's dtype overrides (2 with a half expandXOut: rows copied; 0
// with an int8 one: rows quantized).
CapiCase RandomA2Case(std::mt19937_64& rng, A2Feature f) {
  CapiCase c;
  auto& s = c.spec;
  auto& cfg = s.config;
  cfg.a2 = true;
  cfg.ep_world_size = Chance(rng, 0.8) ? 8 : 16;
  cfg.moe_expert_num = static_cast<int>(Uniform(rng, 1, 3)) * cfg.ep_world_size;
  if (Chance(rng, 0.3)) {
    cfg.zero_expert_num = static_cast<int>(Uniform(rng, 0, 2));
    cfg.copy_expert_num = static_cast<int>(Uniform(rng, cfg.zero_expert_num == 0 ? 1 : 0, 2));
  }
  c.use_v3 = cfg.zero_expert_num + cfg.copy_expert_num > 0 || Chance(rng, 0.3);
  cfg.top_k = static_cast<int>(Uniform(rng, 1, std::min(8, cfg.moe_expert_num + cfg.zero_expert_num)));
  cfg.hidden = static_cast<int>(32 * Uniform(rng, 1, 24));
  cfg.dtype = Chance(rng, 0.5) ? DType::kBf16 : DType::kFp16;
  cfg.quant_mode = f == kA2Quant || Chance(rng, 0.5) ? 2 : 0;
  if (f == kA2QuantByDtype) c.a2_quant_mode_attr = 2 - cfg.quant_mode;
  // Smooth scales with quantMode 0 are refused, whatever expandXOut says.
  s.smooth_scales = cfg.quant_mode == 2 && f != kA2QuantByDtype && Chance(rng, 0.5);
  cfg.expert_token_nums_type = static_cast<int>(Uniform(rng, 0, 1));
  s.bs = Uniform(rng, f == kA2UnequalBs ? 2 : 1, 16);  // ranks draw their Bs from [1, s.bs]
  // A 1-D mask with unequal Bs too: A2's code never reads globalBs (A3's tiling refuses a mask past Bs * E).
  s.mask = f == kA2Mask1d || Chance(rng, 0.4) ? MaskKind::kTokens : MaskKind::kNone;
  if (f == kA2UnequalBs || Chance(rng, 0.4)) {
    s.unequal_bs = true;
    cfg.global_bs = (s.bs + Uniform(rng, 0, 3)) * cfg.ep_world_size;
  }
  s.shared_expert_x = Chance(rng, 0.3);
  DrawCallerChoices(rng, /*strided=*/false, 0.5, c);
  return c;
}

const char* LaunchName(Launch l) {
  return l == Launch::kSingleThread            ? "single thread"
         : l == Launch::kThreadPerRankContexts ? "threads+contexts"
                                               : "threads";
}

TEST(CapiProperty, RandomConfigurationsMatchReference) {
  EnsureAclReady();
  int cases = 0;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    for (int f = 0; f < kFeatureCount; ++f) {
      const uint64_t seed = moe_ep::testing::BaseSeed() ^ (0xCA91ull * 1000003 + cycle * 100 + f);
      std::mt19937_64 rng(seed);
      Launch launch;
      const CapiCase c = RandomCase(rng, static_cast<Feature>(f), &launch);
      // Both data paths, forced, in turn (the communicators read MOE_EP_DATA_PATH when they are made, below).
      const char* data_path = (moe_ep::testing::BaseSeed() + cycle + f) % 2 ? "pull" : "push";
      const moe_ep::testing::ScopedEnv path_env("MOE_EP_DATA_PATH", data_path);
      const std::string what =
          "case seed " + std::to_string(seed) + " (" + LaunchName(launch) + ", " + data_path + "): " + Describe(c);
      SCOPED_TRACE(what);
      ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
      if (c.use_v3) RouteSpecialExperts(c, rng, inputs);
      CapiRunOptions options;
      options.launch = launch;
      options.two_streams = Chance(rng, 0.3);
      ASSERT_EQ(RunCapiCase(c, inputs, options), "") << what;
      ++cases;
    }
  }
  std::printf("[capi property] %d configurations matched the reference\n", cases);
}

// Atlas A2 (MOE_EP_SOC_NAME names an Ascend910B SoC): random A2-legal configurations through the C API on both data
// paths, each forcing one A2Feature in turn (1-D masks, unequal Bs, quantization, quantMode overridden by expandXOut's
// dtype), assistInfoForCombine holding expandIdx, every output bit for bit against the reference's A2 layout; each
// case runs two rounds with fresh routing on the same communicators.
TEST(CapiProperty, AtlasA2ConfigurationsMatchReference) {
  EnsureAclReady();
  const moe_ep::testing::ScopedEnv soc("MOE_EP_SOC_NAME", "Ascend910B3");
  for (int i = 0; i < std::max<int>(kA2FeatureCount, 3 * kCycles); ++i) {
    const uint64_t seed = moe_ep::testing::BaseSeed() ^ (0xA2A2ull * 1000003 + i);
    std::mt19937_64 rng(seed);
    const CapiCase c = RandomA2Case(rng, static_cast<A2Feature>(i % kA2FeatureCount));
    // Both paths, in turn, and each feature on both where it comes up more than once.
    const char* data_path = (moe_ep::testing::BaseSeed() + i + i / kA2FeatureCount) % 2 ? "pull" : "push";
    const moe_ep::testing::ScopedEnv path_env("MOE_EP_DATA_PATH", data_path);
    const std::string what = "case seed " + std::to_string(seed) + " (" + data_path + "): " + Describe(c);
    SCOPED_TRACE(what);
    Comms comms(c.spec.config.ep_world_size, 1);
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
    for (int round = 0; round < 2; ++round) {
      if (round > 0) moe_ep::verify::RerouteInputs(c.spec, rng, inputs);
      if (c.use_v3) RouteSpecialExperts(c, rng, inputs);
      CapiRunOptions options;
      options.launch = Chance(rng, 0.3) ? Launch::kThreadPerRankContexts : Launch::kThreadPerRank;
      options.two_streams = Chance(rng, 0.3);
      ASSERT_EQ(RunCapiCase(c, inputs, options, &comms), "") << what << " round " << round;
    }
  }
}

// The product tests' group: 8 ranks on devices 0-7, Bs 2, H 1024, K 2 of 16 experts (random x, expert ids and
// weights): a call Atlas A3 and A2 both accept.
constexpr int kSmallRanks = 8;
constexpr int64_t kSmallBs = 2, kSmallH = 1024, kSmallK = 2, kSmallMoe = 16, kSmallA = kSmallBs * kSmallRanks * 2;
struct SmallRank {
  aclrtStream stream = nullptr;
  std::string name;
  Tensor x, ids, scales, expand_x, assist, token_nums, ep_recv, tp_recv, x_out;
  moe_ref::RankInput in;          // x and the expert ids, as the reference takes them
  moe_ref::CombineInput combine;  // the weights (the experts return their rows: expert_out is dispatch's)
};

// Rank r of `comms`: its stream and tensors on device r, which stays set; x and the weights drawn from `rng`.
void MakeSmallRank(const std::vector<HcclComm>& comms, int r, std::mt19937_64& rng, SmallRank& k) {
  ASSERT_EQ(aclrtSetDevice(r), ACL_SUCCESS) << RecentErrMsg();
  ASSERT_EQ(aclrtCreateStream(&k.stream), ACL_SUCCESS) << RecentErrMsg();
  k.in.bs = kSmallBs;
  for (int64_t t = 0; t < kSmallBs; ++t) {  // K distinct experts per token
    const auto first = static_cast<int32_t>(rng() % kSmallMoe);
    k.in.expert_ids.push_back(first);
    k.in.expert_ids.push_back(static_cast<int32_t>((first + 1 + rng() % (kSmallMoe - 1)) % kSmallMoe));
  }
  for (int64_t i = 0; i < kSmallBs * kSmallH; ++i) k.in.x.push_back(static_cast<uint16_t>(0x3C00 + rng() % 0x0800));
  std::uniform_real_distribution<float> weight(0.25f, 1.0f);
  for (int64_t i = 0; i < kSmallBs * kSmallK; ++i) k.combine.expert_scales.push_back(weight(rng));
  k.name = CommName(comms[r]);
  k.x = Tensor(ACL_BF16, {kSmallBs, kSmallH}, k.in.x.data());
  k.ids = Tensor(ACL_INT32, {kSmallBs, kSmallK}, k.in.expert_ids.data());
  k.scales = Tensor(ACL_FLOAT, {kSmallBs, kSmallK}, k.combine.expert_scales.data());
  k.expand_x = Tensor(ACL_BF16, {kSmallA, kSmallH});
  k.assist = Tensor(ACL_INT32, {kSmallA * 128});
  k.token_nums = Tensor(ACL_INT64, {2});
  k.ep_recv = Tensor(ACL_INT32, {kSmallMoe});
  k.tp_recv = Tensor(ACL_INT32, {0});
}

// Rank r's dispatch (DispatchV2) built as `soc` (nullptr: Atlas A3) with `comm_alg`, launched on its stream; device r
// must be set.
void LaunchSmallDispatch(SmallRank& k, int r, const char* soc, const char* comm_alg) {
  const moe_ep::testing::ScopedEnv env("MOE_EP_SOC_NAME", soc);
  uint64_t ws = 0;
  aclOpExecutor* exec = nullptr;
  ASSERT_EQ(aclnnMoeDistributeDispatchV2GetWorkspaceSize(
                k.x.get(), k.ids.get(), nullptr, nullptr, nullptr, k.name.c_str(), kSmallRanks, r, kSmallMoe, "", 0, 0,
                0, 0, 0, 0, 0, 1, comm_alg, k.expand_x.get(), nullptr, k.assist.get(), k.token_nums.get(),
                k.ep_recv.get(), k.tp_recv.get(), nullptr, &ws, &exec),
            ACL_SUCCESS)
      << "rank " << r << ": " << RecentErrMsg();
  ASSERT_EQ(aclnnMoeDistributeDispatchV2(nullptr, 0, exec, k.stream), ACL_SUCCESS) << RecentErrMsg();
}

// Rank r's combine (CombineV2) of its last dispatch, built as `soc` (nullptr: Atlas A3; commAlg "fullmesh" on A2),
// into a fresh (poisoned) xOut, launched on its stream.
void LaunchSmallCombine(SmallRank& k, int r, const char* soc) {
  ASSERT_EQ(aclrtSetDevice(r), ACL_SUCCESS);
  k.x_out = Tensor(ACL_BF16, {kSmallBs, kSmallH});
  const moe_ep::testing::ScopedEnv env("MOE_EP_SOC_NAME", soc);
  uint64_t ws = 0;
  aclOpExecutor* exec = nullptr;
  ASSERT_EQ(aclnnMoeDistributeCombineV2GetWorkspaceSize(
                k.expand_x.get(), k.ids.get(), k.assist.get(), k.ep_recv.get(), k.scales.get(), nullptr, nullptr,
                nullptr, nullptr, nullptr, nullptr, nullptr, k.name.c_str(), kSmallRanks, r, kSmallMoe, "", 0, 0, 0, 0,
                0, 0, 0, 0, 0, soc ? "fullmesh" : "", k.x_out.get(), &ws, &exec),
            ACL_SUCCESS)
      << "rank " << r << ": " << RecentErrMsg();
  ASSERT_EQ(aclnnMoeDistributeCombineV2(nullptr, 0, exec, k.stream), ACL_SUCCESS) << RecentErrMsg();
}

// A rank's combine runs as the product of its last dispatch that ran, whose assistInfoForCombine it reads (expandIdx
// on Atlas A2, triples on A3). Dispatch as A2 on every rank, a dispatch as A3 that is refused as it runs, then combine
// as A3 (a call A3 accepts): each rank's combine fails with 161002 naming MOE_EP_SOC_NAME and the dispatch's product,
// before it communicates (no rank waits), and leaves xOut untouched; the same combine as A2 then runs. The first
// dispatch's outputs (rows, expandIdx, counts) and the last combine's, of random expert outputs, are the reference's.
TEST(CapiProperty, CombineRunsAsItsDispatchsProduct) {
  EnsureAclReady();
  const moe_ep::testing::ScopedEnv pcie("HCCL_INTRA_PCIE_ENABLE", nullptr);
  std::vector<HcclComm> comms = CreateGroup({0, 1, 2, 3, 4, 5, 6, 7});
  std::vector<SmallRank> ranks(kSmallRanks);
  std::mt19937_64 rng(moe_ep::testing::BaseSeed() + 11);
  for (int r = 0; r < kSmallRanks; ++r) {
    ASSERT_NO_FATAL_FAILURE(MakeSmallRank(comms, r, rng, ranks[r]));
    ASSERT_NO_FATAL_FAILURE(LaunchSmallDispatch(ranks[r], r, "Ascend910B3", "fullmesh"));
  }
  moe_ref::Config config;
  config.ep_world_size = kSmallRanks;
  config.moe_expert_num = kSmallMoe;
  config.top_k = kSmallK;
  config.hidden = kSmallH;
  config.a2 = true;
  std::vector<moe_ref::RankInput> inputs;
  for (const SmallRank& k : ranks) inputs.push_back(k.in);
  const std::vector<moe_ref::DispatchOut> dispatched = moe_ref::Dispatch(config, inputs);
  std::vector<moe_ref::CombineInput> combine_inputs;
  const std::string seed = " (seed " + std::to_string(moe_ep::testing::BaseSeed() + 11) + ")";
  for (int r = 0; r < kSmallRanks; ++r) {
    ASSERT_EQ(aclrtSetDevice(r), ACL_SUCCESS);
    ASSERT_EQ(aclrtSynchronizeStreamWithTimeout(ranks[r].stream, 60000), ACL_SUCCESS) << RecentErrMsg();
    const moe_ref::DispatchOut& want = dispatched[r];
    // Every element: the reference's where it defines one, the poison past that.
    EXPECT_EQ(CompareElements("expandX", want.expand_x.data(), want.expand_x.size(), 2, ranks[r].expand_x.Bytes()), "")
        << "rank " << r << seed;
    EXPECT_EQ(CompareElements("expandIdx", want.expand_idx.data(), want.expand_idx.size(), 4, ranks[r].assist.Bytes()),
              "")
        << "rank " << r << seed;
    EXPECT_EQ(CompareElements("expertTokenNums", want.expert_token_nums.data(), want.expert_token_nums.size(), 8,
                              ranks[r].token_nums.Bytes()),
              "")
        << "rank " << r << seed;
    EXPECT_EQ(CompareElements("epRecvCounts", want.ep_recv_counts.data(), want.ep_recv_counts.size(), 4,
                              ranks[r].ep_recv.Bytes()),
              "")
        << "rank " << r << seed;
    // The experts' outputs: random rows where dispatch's were, which the last combine must sum.
    combine_inputs.push_back(ranks[r].combine);
    std::vector<uint16_t>& out = combine_inputs.back().expert_out;
    for (int64_t i = 0; i < want.rows * kSmallH; ++i) out.push_back(static_cast<uint16_t>(0x3C00 + rng() % 0x0800));
    if (out.empty()) continue;  // no row came here
    ASSERT_EQ(aclrtMemcpy(ranks[r].expand_x.data(), ranks[r].expand_x.storage_bytes(), out.data(),
                          out.size() * sizeof(uint16_t), ACL_MEMCPY_HOST_TO_DEVICE),
              ACL_SUCCESS)
        << RecentErrMsg();
  }
  // A dispatch as A3 refused as it runs (an expert id of -1, read from device memory then) makes no handles: the
  // product of the last dispatch that ran stays A2 (it once became A3 as the refused dispatch began).
  const std::vector<int32_t> no_expert(kSmallBs * kSmallK, -1);
  std::vector<Tensor> routed(kSmallRanks);
  for (int r = 0; r < kSmallRanks; ++r) {
    ASSERT_EQ(aclrtSetDevice(r), ACL_SUCCESS);
    routed[r] = std::exchange(ranks[r].ids, Tensor(ACL_INT32, {kSmallBs, kSmallK}, no_expert.data()));
    ASSERT_NO_FATAL_FAILURE(LaunchSmallDispatch(ranks[r], r, nullptr, ""));
  }
  for (int r = 0; r < kSmallRanks; ++r) {
    ASSERT_EQ(aclrtSetDevice(r), ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(ranks[r].stream, 60000), ACLNN_ERR_PARAM_INVALID) << "rank " << r;
    const std::string message = RecentErrMsg();  // reading it clears it
    EXPECT_NE(message.find("aclnnMoeDistributeDispatchV2: parameter 'expertIds' has value -1"), std::string::npos)
        << "rank " << r << ": " << message;
    ranks[r].ids = std::move(routed[r]);
  }
  for (int r = 0; r < kSmallRanks; ++r) ASSERT_NO_FATAL_FAILURE(LaunchSmallCombine(ranks[r], r, nullptr));
  for (int r = 0; r < kSmallRanks; ++r) {
    ASSERT_EQ(aclrtSetDevice(r), ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(ranks[r].stream, 60000), ACLNN_ERR_PARAM_INVALID) << "rank " << r;
    const std::string message = RecentErrMsg();
    for (const char* part : {"MOE_EP_SOC_NAME", "Atlas A3", "last dispatch on the group (Atlas A2)"}) {
      EXPECT_NE(message.find(part), std::string::npos) << "rank " << r << ": " << message;
    }
    for (uint8_t byte : ranks[r].x_out.Bytes()) ASSERT_EQ(byte, kPoison) << "rank " << r << ": xOut was written";
  }
  for (int r = 0; r < kSmallRanks; ++r) ASSERT_NO_FATAL_FAILURE(LaunchSmallCombine(ranks[r], r, "Ascend910B3"));
  const std::vector<moe_ref::CombineOut> combined = moe_ref::Combine(config, inputs, combine_inputs);
  for (int r = 0; r < kSmallRanks; ++r) {
    ASSERT_EQ(aclrtSetDevice(r), ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(ranks[r].stream, 60000), ACL_SUCCESS) << "rank " << r << RecentErrMsg();
    EXPECT_EQ(ranks[r].x_out.Read<uint16_t>(), combined[r].x) << "rank " << r << seed;
    EXPECT_EQ(aclrtDestroyStream(ranks[r].stream), ACL_SUCCESS);
  }
  ranks.clear();
  for (HcclComm comm : comms) EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
}

// Ranks of one group that run as different products (phase one reads MOE_EP_SOC_NAME on every call: rank 0's
// as Atlas A2, the others' as A3), with attributes both accept: each rank's dispatch fails with 561002 naming
// a rank that differs and the product among the attributes that must agree; nothing hangs.
TEST(CapiProperty, RanksOnDifferentProductsAreNamed) {
  EnsureAclReady();
  const moe_ep::testing::ScopedEnv push("MOE_EP_DATA_PATH", "push");
  const moe_ep::testing::ScopedEnv pcie("HCCL_INTRA_PCIE_ENABLE", nullptr);
  std::vector<HcclComm> comms = CreateGroup({0, 1, 2, 3, 4, 5, 6, 7});
  std::vector<SmallRank> ranks(kSmallRanks);
  std::mt19937_64 rng(moe_ep::testing::BaseSeed() + 12);
  for (int r = 0; r < kSmallRanks; ++r) {
    ASSERT_NO_FATAL_FAILURE(MakeSmallRank(comms, r, rng, ranks[r]));
    ASSERT_NO_FATAL_FAILURE(LaunchSmallDispatch(ranks[r], r, r == 0 ? "Ascend910B3" : nullptr, ""));
  }
  for (int r = 0; r < kSmallRanks; ++r) {
    ASSERT_EQ(aclrtSetDevice(r), ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(ranks[r].stream, 60000), 561002) << "rank " << r;
    const std::string message = RecentErrMsg();
    const std::string differing = r == 0 ? "rank 1 " : "rank 0 ";
    EXPECT_NE(message.find(differing), std::string::npos) << "rank " << r << ": " << message;
    EXPECT_NE(message.find("MOE_EP_SOC_NAME"), std::string::npos) << "rank " << r << ": " << message;
    EXPECT_EQ(aclrtDestroyStream(ranks[r].stream), ACL_SUCCESS);
  }
  ranks.clear();
  for (HcclComm comm : comms) EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
}

// Several rounds on the same communicators, with fresh routing each round (double-buffered windows,
// parity words and flags must carry over correctly between C API calls).
TEST(CapiProperty, RoundsOnTheSameCommunicatorsMatchReference) {
  EnsureAclReady();
  for (int i = 0; i < 3; ++i) {
    const uint64_t seed = moe_ep::testing::BaseSeed() ^ (0x20DDull * 1000003 + i);
    std::mt19937_64 rng(seed);
    Launch launch;
    const Feature features[] = {kMask2d, kSpecialExperts, kTp2};
    const CapiCase c = RandomCase(rng, features[i], &launch);
    const std::string what = "case seed " + std::to_string(seed) + ": " + Describe(c);
    SCOPED_TRACE(what);
    Comms comms(c.spec.config.ep_world_size, c.spec.config.tp_world_size);
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
    for (int round = 0; round < 3; ++round) {
      if (round > 0) moe_ep::verify::RerouteInputs(c.spec, rng, inputs);
      if (c.use_v3) RouteSpecialExperts(c, rng, inputs);
      CapiRunOptions options;
      options.launch = round == 1 ? Launch::kSingleThread : Launch::kThreadPerRank;
      ASSERT_EQ(RunCapiCase(c, inputs, options, &comms), "") << what << " round " << round;
    }
  }
}

// Without TP the A3 dispatch has no TP output: with tpWorldSize 1 (a 1-element tpRecvCounts) the
// buffer must stay untouched, as with tpWorldSize 0 (docs/semantics.md 2.3 defines tpRecvCounts only for tp == 2;
// the seed's docs: "无TP域通信时无输出").
TEST(CapiProperty, TpRecvCountsUntouchedWithTpWorldSize1) {
  EnsureAclReady();
  const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0x7B1;
  std::mt19937_64 rng(seed);
  CapiCase c;
  auto& cfg = c.spec.config;
  cfg.ep_world_size = 2;
  cfg.moe_expert_num = 4;
  cfg.top_k = 2;
  cfg.hidden = 1024;
  c.spec.bs = 3;
  c.no_tp_attr = 1;
  c.strict_tp_recv_counts = true;
  SCOPED_TRACE("seed " + std::to_string(seed) + ": " + Describe(c));
  ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
  EXPECT_EQ(RunCapiCase(c, inputs, CapiRunOptions{}), "");
}

// The DispatchV2 seed's sample configuration (EP 8 x TP 2, one shared expert rank, 7 MoE experts, K 3,
// H 7168, Bs 8, globalBs = Bs * E, groupListType 1), launched from one thread.
TEST(CapiProperty, SeedSampleConfigurationFromOneThread) {
  EnsureAclReady();
  const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0x5A3B1E;
  std::mt19937_64 rng(seed);
  const CapiCase c = SeedSampleCase();
  SCOPED_TRACE("seed " + std::to_string(seed) + ": " + Describe(c));
  ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
  CapiRunOptions options;
  options.launch = Launch::kSingleThread;
  ASSERT_EQ(RunCapiCase(c, inputs, options), "");
}

}  // namespace
}  // namespace moe_ep::capi_testing
