// C API validation on Atlas A2 (docs/a2.md): with MOE_EP_SOC_NAME=Ascend910B3 every operator follows A2's rules. One
// case per rule of docs/a2.md, each a single change to a valid A2 base call of phase one (GetWorkspaceSize) on rank 0
// of an EP group of 8 whose communicators live on devices 0-7 (phase one does not communicate). Each case checks the
// exact status (161001 / 161002 / 561002), that aclGetRecentErrMsg() names the parameter (and the value where it makes
// sense), that no tensor was touched (all are poisoned before, byte-compared after), and that phase two with the null
// executor returns 161001. Positive controls: the A2 bases and the variants docs/a2.md accepts (commAlg null / "" /
// "0", zero and copy experts, quantization chosen by expandXOut's dtype, 1-D masks, ignored TP and shared-expert
// parameters, sharedExpertX and expandScales in combine) succeed. Also: the product selection itself (aclrtGetSocName,
// an unknown MOE_EP_SOC_NAME) and the operators A2 does not have (CombineAddRmsNorm, BufferReset). Communicators: EP 8
// on devices 0-7, EP 8 created with HCCL_BUFFSIZE=1 (window too small), and 16 ranks for BufferReset.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <utility>

#include "cann/validation_support.h"

namespace moe_ep::capi_testing {
namespace {

constexpr const char kSocVar[] = "MOE_EP_SOC_NAME";
constexpr const char kA2Soc[] = "Ascend910B3";

// ---------------------------------------------------------------------------------------------------
// Communicators shared by every case
// ---------------------------------------------------------------------------------------------------

struct Groups : CommGroups {
  std::string ep8_name = Add({0, 1, 2, 3, 4, 5, 6, 7});
  std::string small8_name = Add({0, 1, 2, 3, 4, 5, 6, 7}, /*hccl_buffsize=*/"1");
  std::string reset16_name = Add({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15});
};
Groups* g_groups = nullptr;
[[maybe_unused]] ::testing::Environment* const g_environment =
    ::testing::AddGlobalTestEnvironment(new GroupsEnvironment<Groups>(&g_groups));

// Every A2 case runs as Ascend910B3, with the variables that pick "hierarchy" for an empty commAlg unset (a case that
// wants them sets them itself).
struct A2Scope {
  ScopedEnv soc{kSocVar, kA2Soc};
  ScopedEnv pcie{"HCCL_INTRA_PCIE_ENABLE", nullptr};
  ScopedEnv roce{"HCCL_INTRA_ROCE_ENABLE", nullptr};
};

// ---------------------------------------------------------------------------------------------------
// The base calls
// ---------------------------------------------------------------------------------------------------

// The A2 base: E 8, rank 0, 16 experts (L 2), K 2, Bs 4, H 64 (a multiple of 32): A = Bs * E * min(L, K) = 64.
constexpr int64_t kE = 8, kMoe = 16, kL = 2, kBs = 4, kH = 64, kK = 2;
constexpr int64_t kA = kBs * kE * std::min(kL, kK);

DispatchArgs BaseDispatch(Scratch& s) {
  DispatchArgs a;
  a.x = s.T(ACL_BF16, {kBs, kH});
  a.ids = s.T(ACL_INT32, {kBs, kK});
  a.group_ep = g_groups->ep8_name.c_str();
  a.ep_world_size = kE;
  a.moe = kMoe;
  a.comm_alg = "fullmesh";
  a.expand_x = s.T(ACL_BF16, {kA, kH});
  a.dyn_scales = s.T(ACL_FLOAT, {kA});
  a.assist = s.T(ACL_INT32, {kA * 128});
  a.token_nums = s.T(ACL_INT64, {kL});
  a.ep_recv = s.T(ACL_INT32, {kMoe});
  a.tp_recv = s.T(ACL_INT32, {0});
  return a;
}

// H of the CombineAddRmsNorm base: a valid A3 call (A3 needs H >= 1024 and refuses commAlg "fullmesh").
constexpr int64_t kA3H = 1024;

// The combine that pairs with BaseDispatch: A rows of expert output, A2's expandIdx (Bs * K entries is enough).
// CombineAddRmsNorm's base is the same call in A3's terms (H 1024, commAlg "", assist A * 128): valid on A3.
CombineArgs BaseCombine(Scratch& s, CombineOp op) {
  CombineArgs a;
  a.op = op;
  a.ids = s.T(ACL_INT32, {kBs, kK});
  a.ep_send = s.T(ACL_INT32, {kMoe});
  a.scales = s.T(ACL_FLOAT, {kBs, kK});
  a.group_ep = g_groups->ep8_name.c_str();
  a.ep_world_size = kE;
  a.moe = kMoe;
  a.comm_alg = "fullmesh";
  if (op == CombineOp::kAddRmsNorm) {
    a.comm_alg = "";
    a.expand_x = s.T(ACL_BF16, {kA, kA3H});
    a.assist = s.T(ACL_INT32, {kA * 128});
    a.residual = s.T(ACL_BF16, {kBs, 1, kA3H});
    a.gamma = s.T(ACL_BF16, {kA3H});
    a.y_out = s.T(ACL_BF16, {kBs, 1, kA3H});
    a.rstd_out = s.T(ACL_FLOAT, {kBs, 1, 1});
    a.x_out = s.T(ACL_BF16, {kBs, 1, kA3H});
  } else {
    a.expand_x = s.T(ACL_BF16, {kA, kH});
    a.assist = s.T(ACL_INT32, {kBs * kK});
    a.x_out = s.T(ACL_BF16, {kBs, kH});
  }
  return a;
}

// A valid A3 BufferReset: a 16-entry link mask on the 16-rank group, needSync 0.
ResetArgs BaseReset(Scratch& s) {
  ResetArgs a;
  a.elastic = s.T(ACL_INT32, {16});
  a.group_ep = g_groups->reset16_name.c_str();
  a.ep_world_size = 16;
  a.need_sync = 0;
  return a;
}

// ---------------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------------

// The rule's environment goes on top of A2Scope; a failing phase one must also leave the executor null.
template <typename Args>
void CheckRule(const Rule<Args>& rule) {
  ASSERT_NE(g_groups, nullptr);
  const A2Scope a2;
  ExpectRejected(rule, {BaseDispatch, BaseCombine, BaseReset}, g_groups->stream, /*expect_no_executor=*/true);
}

// The mutators that need the communicators (their names exist only once the environment is up).
template <typename Args>
Mutator<Args> SmallWindow() {
  return [](Args& a, Scratch&) { a.group_ep = g_groups->small8_name.c_str(); };
}

// HCCL_INTRA_PCIE_ENABLE=1 with HCCL_INTRA_ROCE_ENABLE=0: null, "" and "0" mean "hierarchy".
const Env kHierarchyEnv = {{"HCCL_INTRA_PCIE_ENABLE", "1"}, {"HCCL_INTRA_ROCE_ENABLE", "0"}};
// Each holds 0 or 1: another value is refused, naming the variable (it used to mean fullmesh, silently).
const Env kPcieNotABitEnv = {{"HCCL_INTRA_PCIE_ENABLE", "01"}, {"HCCL_INTRA_ROCE_ENABLE", "0"}};
const Env kRoceNotABitEnv = {{"HCCL_INTRA_PCIE_ENABLE", "1"}, {"HCCL_INTRA_ROCE_ENABLE", "true"}};

// A2's fullmesh rule for the base on a 1 MB window: 2 * (Bs*E*min(L,K) * H * 2 + 2 MB) = 2 * (64*64*2 + 2097152).
constexpr const char kBaseA2WindowNeed[] = "4210688";
// ... and hierarchy's: 16 * 4 * (64 * 2 + 4 * 8 * 4) + 104 MB.
constexpr const char kBaseA2HierarchyWindowNeed[] = "109068288";

// ----- DispatchV2 / V3 ----------------------------------------------------------------------------------

using D = DispatchArgs;

// The dispatch base as a valid "hierarchy" call: commAlg "hierarchy" plus the two tensors hierarchy needs.
Mutator<D> DispatchHierarchy() {
  return All<D>({Set(&D::comm_alg, "hierarchy"), Make(&D::expert_scales, ACL_FLOAT, {kBs, kK}),
                 Make(&D::expand_scales, ACL_FLOAT, {kA})});
}
// Bs rows (A = Bs * 16 rows of output, Bs * K expandIdx entries).
Mutator<D> DispatchBs(int64_t bs) {
  return All<D>({Make(&D::x, ACL_BF16, {bs, kH}), Make(&D::ids, ACL_INT32, {bs, kK}),
                 Make(&D::expand_x, ACL_BF16, {bs * 16, kH}), Make(&D::dyn_scales, ACL_FLOAT, {bs * 16}),
                 Make(&D::assist, ACL_INT32, {bs * kK})});
}
// Hidden size h (x and expandXOut).
Mutator<D> DispatchH(int64_t h) {
  return All<D>({Make(&D::x, ACL_BF16, {kBs, h}), Make(&D::expand_x, ACL_BF16, {kA, h})});
}
// moeExpertNum m on 8 ranks (expertTokenNumsOut m / 8, epRecvCountsOut m).
Mutator<D> DispatchMoe(int64_t m) {
  return All<D>({Set(&D::moe, m), Make(&D::token_nums, ACL_INT64, {m / kE}), Make(&D::ep_recv, ACL_INT32, {m})});
}
// K 17 with 32 experts (L 4, A = Bs * E * 4 = 128 rows).
Mutator<D> DispatchTopK17() {
  return All<D>({DispatchMoe(32), Make(&D::ids, ACL_INT32, {kBs, 17}), Make(&D::expand_x, ACL_BF16, {128, kH}),
                 Make(&D::dyn_scales, ACL_FLOAT, {128}), Make(&D::assist, ACL_INT32, {kBs * 17})});
}

// K 9 with 8 experts (L 1, A = Bs * E * 1 = 32 rows): within A2's cap of 16, above moeExpertNum.
Mutator<D> DispatchTopKAboveExperts() {
  return All<D>({DispatchMoe(8), Make(&D::ids, ACL_INT32, {kBs, 9}), Make(&D::expand_x, ACL_BF16, {32, kH}),
                 Make(&D::dyn_scales, ACL_FLOAT, {32}), Make(&D::assist, ACL_INT32, {kBs * 9})});
}

std::vector<Rule<D>> DispatchRules() {
  const auto v3 = Set(&D::v3, true);
  const auto int8_out = Make(&D::expand_x, ACL_INT8, {kA, kH});
  // clang-format off
  return {
      // Selection: "hierarchy" is checked, then refused naming commAlg and saying moe_ep implements "fullmesh" only.
      {"CommAlgHierarchy", DispatchHierarchy(), kTiling, {"commAlg"}, {"hierarchy", "fullmesh"}},
      // commAlg "" means hierarchy when HCCL_INTRA_PCIE_ENABLE=1 and HCCL_INTRA_ROCE_ENABLE=0: refused the same way.
      {"CommAlgEmptyMeansHierarchyByEnv", All<D>({DispatchHierarchy(), Set(&D::comm_alg, "")}), kTiling,
       {"commAlg"}, {"fullmesh"}, CombineOp::kV2, &kHierarchyEnv},
      // ... and so does a null commAlg.
      {"CommAlgNullMeansHierarchyByEnv", All<D>({DispatchHierarchy(), Set(&D::comm_alg, nullptr)}), kTiling,
       {"commAlg"}, {"fullmesh"}, CombineOp::kV2, &kHierarchyEnv},
      // ... and commAlg "0".
      {"CommAlg0MeansHierarchyByEnv", All<D>({DispatchHierarchy(), Set(&D::comm_alg, "0")}), kTiling,
       {"commAlg"}, {"fullmesh"}, CombineOp::kV2, &kHierarchyEnv},
      // The two variables that choose hierarchy hold 0 or 1.
      {"IntraPcieEnableNotABit", Set(&D::comm_alg, ""), kInvalid, {"HCCL_INTRA_PCIE_ENABLE"}, {"'01'"},
       CombineOp::kV2, &kPcieNotABitEnv},
      {"IntraRoceEnableNotABit", Set(&D::comm_alg, ""), kInvalid, {"HCCL_INTRA_ROCE_ENABLE"}, {"'true'"},
       CombineOp::kV2, &kRoceNotABitEnv},
      // A3's commAlg values are not A2's.
      {"CommAlgFullmeshV1", Set(&D::comm_alg, "fullmesh_v1"), kTiling, {"commAlg"}, {"fullmesh_v1"}},
      // Nor is anything else.
      {"CommAlgUnknown", Set(&D::comm_alg, "bogus_alg"), kTiling, {"commAlg"}, {"bogus_alg"}},
      // hierarchy needs expertScalesOptional (checked before the refusal).
      {"HierarchyWithoutExpertScales", All<D>({DispatchHierarchy(), Set(&D::expert_scales, nullptr)}), kTiling,
       {"expertScales"}, {}},
      // hierarchy needs expandScalesOut.
      {"HierarchyWithoutExpandScalesOut", All<D>({DispatchHierarchy(), Set(&D::expand_scales, nullptr)}), kTiling,
       {"expandScales"}, {}},
      // hierarchy takes no scales (the seed's A2 rule), checked before the refusal.
      {"HierarchyWithScales",
       All<D>({DispatchHierarchy(), Set(&D::quant, 2), int8_out, Make(&D::scales, ACL_FLOAT, {kMoe, kH})}), kTiling,
       {"scales"}, {"hierarchy"}},
      // hierarchy's H limit: 10240 (10272 is a multiple of 32).
      {"HierarchyH10272", All<D>({DispatchHierarchy(), DispatchH(10272)}), kTiling, {"H"}, {"10272"}},
      // hierarchy's own range: epWorldSize 72 (a multiple of 8 above 64) fails on it before the refusal.
      {"HierarchyEpWorldSize72", All<D>({DispatchHierarchy(), Set(&D::ep_world_size, 72)}), kTiling,
       {"epWorldSize"}, {"72"}},
      // hierarchy's H limit is 10240: H 7200 passes its rules, so the call reaches the refusal.
      {"HierarchyH7200ReachesRefusal", All<D>({DispatchHierarchy(), DispatchH(7200)}), kTiling, {"commAlg"},
       {"fullmesh"}},
      // hierarchy has no per-rank expert limit: 25 per rank reaches the refusal.
      {"HierarchyMoe200ReachesRefusal", All<D>({DispatchHierarchy(), DispatchMoe(200)}), kTiling, {"commAlg"},
       {"fullmesh"}},
      // hierarchy's own window formula: moe * Bs * (H * 2 + 4 * Align8(K) * 4) + 104 MB (1 MB window).
      {"HierarchyWindowBelowA2Formula", All<D>({DispatchHierarchy(), SmallWindow<D>()}), kTiling, {"HCCL_BUFFSIZE"},
       {kBaseA2HierarchyWindowNeed}},
      // epWorldSize must be a multiple of 8.
      {"EpWorldSize12", Set(&D::ep_world_size, 12), kTiling, {"epWorldSize"}, {"12"}},
      // ... in [8, 256] with fullmesh.
      {"EpWorldSize264", Set(&D::ep_world_size, 264), kTiling, {"epWorldSize"}, {"264"}},
      // A valid epWorldSize that is not the communicator's size (16 vs 8; moe 16 makes L 1).
      {"EpWorldSizeNotCommunicatorSize", All<D>({Set(&D::ep_world_size, 16), Make(&D::token_nums, ACL_INT64, {1})}),
       kTiling, {"epWorldSize"}, {"16"}},
      // moeExpertNum in (0, 512] (520 is a multiple of 8).
      {"MoeExpertNum520", DispatchMoe(520), kTiling, {"moeExpertNum"}, {"520"}},
      // moeExpertNum a multiple of epWorldSize.
      {"MoeExpertNumNotMultipleOfE", DispatchMoe(20), kTiling, {"moeExpertNum"}, {"20"}},
      // dispatch fullmesh: at most 24 experts per rank (200 / 8 = 25).
      {"MoeExpertNum200Is25PerRank", DispatchMoe(200), kTiling, {"moeExpertNum"}, {"200"}},
      // H a multiple of 32.
      {"H48", DispatchH(48), kTiling, {"H"}, {"48"}},
      // H at most 7168 with fullmesh (7200 is a multiple of 32).
      {"H7200", DispatchH(7200), kTiling, {"H"}, {"7200"}},
      // Bs in [1, 256].
      {"Bs257", DispatchBs(257), kTiling, {"Bs"}, {"257"}},
      // K at most 16 (32 experts).
      {"TopK17", DispatchTopK17(), kTiling, {"K"}, {"17"}},
      // ... and at most moeExpertNum (+ zero and copy experts).
      {"TopKAboveExpertCount", DispatchTopKAboveExperts(), kTiling, {"K"}, {"9"}},
      // xActiveMask 1-D only.
      {"Mask2d", Make(&D::mask, ACL_BOOL, {kBs, kK}), kTiling, {"xActiveMask"}, {"(4, 2)"}},
      // expertScales, when given, is fp32 (Bs, K).
      {"ExpertScalesNotBsK", Make(&D::expert_scales, ACL_FLOAT, {kBs, kK + 1}), kTiling, {"expertScales"},
       {"(4, 3)", "(4, 2)"}},
      {"ExpertScalesFloat16", Make(&D::expert_scales, ACL_FLOAT16, {kBs, kK}), kInvalid, {"expertScales"}, {"fp16"}},
      // The dtype before the rules (quantMode 1 is a tiling refusal).
      {"ExpertScalesFloat16AndQuantMode1",
       All<D>({Make(&D::expert_scales, ACL_FLOAT16, {kBs, kK}), Set(&D::quant, 1)}), kInvalid, {"expertScales"},
       {"fp16"}},
      // tpWorldSize 0 or 1.
      {"TpWorldSize2", Set(&D::tp_world_size, 2), kTiling, {"tpWorldSize"}, {"2"}},
      // The other TP and shared-expert parameters are 0 too (the seed: "pass 0").
      {"TpRankId1", Set(&D::tp_rank, 1), kTiling, {"tpRankId"}, {"1"}},
      {"ExpertShardType1", Set(&D::shard_type, 1), kTiling, {"expertShardType"}, {"1"}},
      {"SharedExpertNum2", Set(&D::shared_num, 2), kTiling, {"sharedExpertNum"}, {"2"}},
      // No shared-expert ranks (moe 14 on the 7 MoE ranks would otherwise be valid).
      {"SharedExpertRankNum1",
       All<D>({Set(&D::shared_num, 1), Set(&D::shared_rank_num, 1), Set(&D::moe, 14),
               Make(&D::token_nums, ACL_INT64, {1})}),
       kTiling, {"sharedExpertRankNum"}, {"1"}},
      // No const experts (V3).
      {"V3ConstExpertNum1", All<D>({v3, Set(&D::cnst, 1)}), kTiling, {"constExpertNum"}, {"1"}},
      // No elasticInfo (V3; 4 + 2E entries).
      {"V3ElasticInfo", All<D>({v3, Make(&D::elastic, ACL_INT32, {4 + 2 * kE})}), kTiling, {"elasticInfo"}, {}},
      // quantMode 1 is refused as on A3.
      {"QuantMode1", Set(&D::quant, 1), kTiling, {"quantMode"}, {"1"}},
      // scales with quantMode 0 is refused.
      {"ScalesWithQuant0", Make(&D::scales, ACL_FLOAT, {kMoe, kH}), kTiling, {"scales"}, {}},
      // scales is (moeExpertNum, H): no shared-expert row (sharedExpertNum 1 reads as 0).
      {"ScalesWithSharedExpertRow",
       All<D>({Set(&D::quant, 2), int8_out, Set(&D::shared_num, 1), Make(&D::scales, ACL_FLOAT, {kMoe + 1, kH})}),
       kTiling, {"scales"}, {"17"}},
      // int8 expandXOut quantizes whatever quantMode says, so dynamicScalesOut is required.
      {"Int8ExpandXQuant0WithoutDynamicScales", All<D>({int8_out, Set(&D::dyn_scales, nullptr)}), kTiling,
       {"dynamicScales"}, {}},
      // expandXOut has x's dtype or int8 (161002).
      {"ExpandXFloat16WithBf16X", Make(&D::expand_x, ACL_FLOAT16, {kA, kH}), kInvalid, {"expandX"}, {}},
      // HCCL_BUFFSIZE at least 2 * (Bs*E*min(L,K)*H*2 + 2 MB) (1 MB window).
      {"WindowBelowA2Formula", SmallWindow<D>(), kTiling, {"HCCL_BUFFSIZE"}, {kBaseA2WindowNeed}},
      // Output shapes: expandXOut at least A rows.
      {"ExpandXFewerRowsThanA", Make(&D::expand_x, ACL_BF16, {kA - 1, kH}), kTiling, {"expandX"}, {"63"}},
      // assistInfoForCombineOut at least Bs * K entries.
      {"AssistInfoShorterThanBsK", Make(&D::assist, ACL_INT32, {kBs * kK - 1}), kTiling, {"assistInfoForCombine"},
       {"7"}},
      // epRecvCountsOut at least moeExpertNum entries.
      {"EpRecvCountsShorterThanMoe", Make(&D::ep_recv, ACL_INT32, {kMoe - 1}), kTiling, {"epRecvCounts"}, {"15"}},
      // expertTokenNumsOut exactly L entries.
      {"ExpertTokenNumsNotL", Make(&D::token_nums, ACL_INT64, {3}), kTiling, {"expertTokenNums"}, {"3"}},
      // globalBs keeps A3's rule (a multiple of E).
      {"GlobalBsNotMultipleOfE", Set(&D::global_bs, 36), kTiling, {"globalBs"}, {"36"}},
      // The wrapper checks are A3's: an over-long groupTp is 161001 in dispatch although A2 ignores groupTp.
      {"GroupTpTooLong", GroupTpNamed<D>(LongName()), kNull, {"groupTp"}, {"128"}},
      // ... and so is a null expandXOut.
      {"ExpandXOutNull", Set(&D::expand_x, nullptr), kNull, {"expandX"}, {}},
  };
  // clang-format on
}

class A2DispatchRule : public ::testing::TestWithParam<Rule<D>> {};
TEST_P(A2DispatchRule, RejectedWithCodeAndMessage) { CheckRule(GetParam()); }
INSTANTIATE_TEST_SUITE_P(CapiA2Validation, A2DispatchRule, ::testing::ValuesIn(DispatchRules()), RuleName<D>);

// ----- CombineV2 / V3 / AddRmsNorm -----------------------------------------------------------------------

using C = CombineArgs;

Mutator<C> CombineBs(int64_t bs) {
  return All<C>({Make(&C::ids, ACL_INT32, {bs, kK}), Make(&C::scales, ACL_FLOAT, {bs, kK}),
                 Make(&C::expand_x, ACL_BF16, {bs * 16, kH}), Make(&C::assist, ACL_INT32, {bs * kK}),
                 Make(&C::x_out, ACL_BF16, {bs, kH})});
}
Mutator<C> CombineH(int64_t h) {
  return All<C>({Make(&C::expand_x, ACL_BF16, {kA, h}), Make(&C::x_out, ACL_BF16, {kBs, h})});
}
Mutator<C> CombineMoe(int64_t m) { return All<C>({Set(&C::moe, m), Make(&C::ep_send, ACL_INT32, {m})}); }

std::vector<Rule<C>> CombineRules() {
  const CombineOp v2 = CombineOp::kV2, v3 = CombineOp::kV3, rms = CombineOp::kAddRmsNorm;
  // clang-format off
  return {
      // "hierarchy" is refused after its rules.
      {"CommAlgHierarchy", Set(&C::comm_alg, "hierarchy"), kTiling, {"commAlg"}, {"hierarchy", "fullmesh"}, v2},
      // commAlg "" with HCCL_INTRA_PCIE_ENABLE=1 HCCL_INTRA_ROCE_ENABLE=0 means hierarchy: refused.
      {"CommAlgEmptyMeansHierarchyByEnv", Set(&C::comm_alg, ""), kTiling, {"commAlg"}, {"fullmesh"}, v2,
       &kHierarchyEnv},
      // hierarchy takes commQuantMode 2: the call reaches the refusal.
      {"HierarchyCommQuantMode2ReachesRefusal", All<C>({Set(&C::comm_alg, "hierarchy"), Set(&C::comm_quant, 2)}),
       kTiling, {"commAlg"}, {"fullmesh"}, v2},
      // A3's commAlg values are not A2's.
      {"CommAlgFullmeshV1", Set(&C::comm_alg, "fullmesh_v1"), kTiling, {"commAlg"}, {"fullmesh_v1"}, v2},
      // commQuantMode must be 0 with fullmesh.
      {"CommQuantMode2", Set(&C::comm_quant, 2), kTiling, {"commQuantMode"}, {"2"}, v2},
      // epWorldSize a multiple of 8.
      {"EpWorldSize12", Set(&C::ep_world_size, 12), kTiling, {"epWorldSize"}, {"12"}, v2},
      // ... at most 256 with fullmesh.
      {"EpWorldSize264", Set(&C::ep_world_size, 264), kTiling, {"epWorldSize"}, {"264"}, v2},
      // moeExpertNum in (0, 512].
      {"MoeExpertNum520", CombineMoe(520), kTiling, {"moeExpertNum"}, {"520"}, v2},
      // H a multiple of 32.
      {"H48", CombineH(48), kTiling, {"H"}, {"48"}, v2},
      // H at most 7168 with fullmesh.
      {"H7200", CombineH(7200), kTiling, {"H"}, {"7200"}, v2},
      // Bs in [1, 256].
      {"Bs257", CombineBs(257), kTiling, {"Bs"}, {"257"}, v2},
      // K at most 16 (32 experts).
      {"TopK17",
       All<C>({CombineMoe(32), Make(&C::ids, ACL_INT32, {kBs, 17}), Make(&C::scales, ACL_FLOAT, {kBs, 17}),
               Make(&C::expand_x, ACL_BF16, {128, kH}), Make(&C::assist, ACL_INT32, {kBs * 17})}),
       kTiling, {"K"}, {"17"}, v2},
      // ... and at most moeExpertNum (K 9 with 8 experts).
      {"TopKAboveExpertCount",
       All<C>({CombineMoe(8), Make(&C::ids, ACL_INT32, {kBs, 9}), Make(&C::scales, ACL_FLOAT, {kBs, 9}),
               Make(&C::expand_x, ACL_BF16, {32, kH}), Make(&C::assist, ACL_INT32, {kBs * 9})}),
       kTiling, {"K"}, {"9"}, v2},
      // xActiveMask 1-D only.
      {"Mask2d", Make(&C::mask, ACL_BOOL, {kBs, kK}), kTiling, {"xActiveMask"}, {"(4, 2)"}, v2},
      // tpWorldSize 0 or 1.
      {"TpWorldSize2", Set(&C::tp_world_size, 2), kTiling, {"tpWorldSize"}, {"2"}, v2},
      {"TpRankId1", Set(&C::tp_rank, 1), kTiling, {"tpRankId"}, {"1"}, v2},
      {"ExpertShardType1", Set(&C::shard_type, 1), kTiling, {"expertShardType"}, {"1"}, v2},
      // No shared-expert ranks.
      {"SharedExpertRankNum1", All<C>({Set(&C::shared_num, 1), Set(&C::shared_rank_num, 1), Set(&C::moe, 14)}),
       kTiling, {"sharedExpertRankNum"}, {"1"}, v2},
      // No const experts (V3).
      {"V3ConstExpertNum1", Set(&C::cnst, 1), kTiling, {"constExpertNum"}, {"1"}, v3},
      // constExpertAlpha1 must be null (constExpertNum 0).
      {"V3ConstExpertAlpha1Given", Make(&C::alpha1, ACL_BF16, {1}), kTiling, {"constExpertAlpha1"}, {}, v3},
      // constExpertAlpha2 must be null.
      {"V3ConstExpertAlpha2Given", Make(&C::alpha2, ACL_BF16, {1}), kTiling, {"constExpertAlpha2"}, {}, v3},
      // constExpertV must be null.
      {"V3ConstExpertVGiven", Make(&C::const_v, ACL_BF16, {1, kH}), kTiling, {"constExpertV"}, {}, v3},
      // No elasticInfo (V3).
      {"V3ElasticInfo", Make(&C::elastic, ACL_INT32, {4 + 2 * kE}), kTiling, {"elasticInfo"}, {}, v3},
      // copyExpertNum > 0 needs oriX (as on A3).
      {"V3CopyExpertsWithoutOriX", Set(&C::copy, 1), kTiling, {"oriX"}, {}, v3},
      // HCCL_BUFFSIZE at least 2 * (Bs*E*min(L,K)*H*2 + 2 MB) (1 MB window).
      {"WindowBelowA2Formula", SmallWindow<C>(), kTiling, {"HCCL_BUFFSIZE"}, {kBaseA2WindowNeed}, v2},
      // ... and hierarchy's formula.
      {"HierarchyWindowBelowA2Formula", All<C>({Set(&C::comm_alg, "hierarchy"), SmallWindow<C>()}), kTiling,
       {"HCCL_BUFFSIZE"}, {kBaseA2HierarchyWindowNeed}, v2},
      // assistInfoForCombine at least Bs * K entries.
      {"AssistInfoShorterThanBsK", Make(&C::assist, ACL_INT32, {kBs * kK - 1}), kTiling, {"assistInfoForCombine"},
       {"7"}, v2},
      // epSendCounts at least moeExpertNum entries.
      {"EpSendCountsShorterThanMoe", Make(&C::ep_send, ACL_INT32, {kMoe - 1}), kTiling, {"epSendCounts"}, {"15"},
       v2},
      // The wrapper checks are A3's: an over-long groupTp is 161002 in combine.
      {"GroupTpTooLong", GroupTpNamed<C>(LongName()), kInvalid, {"groupTp"}, {"128"}, v2},
      // CombineAddRmsNorm exists on Atlas A3 only (161002), for a call that is valid on A3.
      {"AddRmsNormOnA2", [](C&, Scratch&) {}, kInvalid, {"MOE_EP_SOC_NAME"}, {"Atlas A3 only"}, rms},
      // ... after the null checks of the combines' common tensors (161001), before its own tensors'.
      {"AddRmsNormExpandXNullOnA2", Set(&C::expand_x, nullptr), kNull, {"expandX"}, {}, rms},
      {"AddRmsNormResidualXNullOnA2", Set(&C::residual, nullptr), kInvalid, {"MOE_EP_SOC_NAME"}, {"Atlas A3 only"}, rms},
  };
  // clang-format on
}

class A2CombineRule : public ::testing::TestWithParam<Rule<C>> {};
TEST_P(A2CombineRule, RejectedWithCodeAndMessage) { CheckRule(GetParam()); }
INSTANTIATE_TEST_SUITE_P(CapiA2Validation, A2CombineRule, ::testing::ValuesIn(CombineRules()), RuleName<C>);

// ----- BufferReset ---------------------------------------------------------------------------------------

using R = ResetArgs;
std::vector<Rule<R>> ResetRules() {
  // clang-format off
  return {
      // A2 has no BufferReset: 161002 naming the SoC variable, for a call that is valid on A3.
      {"OnA2", [](R&, Scratch&) {}, kInvalid, {"MOE_EP_SOC_NAME"}, {"Atlas A3 only"}},
      // ... after its null check (161001).
      {"ElasticInfoNullOnA2", Set(&R::elastic, nullptr), kNull, {"elasticInfo"}, {}},
      // ... and its group-name check (161002 naming groupEp).
      {"GroupEpEmptyOnA2", Set(&R::group_ep, ""), kInvalid, {"groupEp"}, {}},
  };
  // clang-format on
}

class A2ResetRule : public ::testing::TestWithParam<Rule<R>> {};
TEST_P(A2ResetRule, RejectedWithCodeAndMessage) { CheckRule(GetParam()); }
INSTANTIATE_TEST_SUITE_P(CapiA2Validation, A2ResetRule, ::testing::ValuesIn(ResetRules()), RuleName<R>);

// ---------------------------------------------------------------------------------------------------
// Positive controls: the A2 bases and the accepted variants pass phase one with workspace 0.
// ---------------------------------------------------------------------------------------------------

template <typename Args>
using Variants = std::vector<std::pair<std::string, Mutator<Args>>>;

TEST(CapiA2Validation, DispatchBaseAndAcceptedVariants) {
  ASSERT_NE(g_groups, nullptr);
  const A2Scope a2;
  const auto int8_out = Make(&D::expand_x, ACL_INT8, {kA, kH});
  const Variants<D> variants = {
      // The base: E 8, moe 16, K 2, Bs 4, H 64, bf16, commAlg "fullmesh".
      {"V2 base", [](D&, Scratch&) {}},
      // Null, "" and "0" mean fullmesh without the hierarchy variables.
      {"commAlg null", Set(&D::comm_alg, nullptr)},
      {"commAlg \"\"", Set(&D::comm_alg, "")},
      {"commAlg \"0\"", Set(&D::comm_alg, "0")},
      // DispatchV3 with zero and copy experts (fullmesh allows them).
      {"V3 zero and copy experts", All<D>({Set(&D::v3, true), Set(&D::zero, 1), Set(&D::copy, 1)})},
      // quantMode 2 with an int8 expandXOut quantizes.
      {"quantMode 2, int8 expandXOut", All<D>({Set(&D::quant, 2), int8_out})},
      // quantMode 2 with smooth scales of shape (moeExpertNum, H).
      {"quantMode 2 with scales (moe, H)",
       All<D>({Set(&D::quant, 2), int8_out, Make(&D::scales, ACL_FLOAT, {kMoe, kH})})},
      // quantMode 2 with a bf16 expandXOut copies rows.
      {"quantMode 2, bf16 expandXOut", Set(&D::quant, 2)},
      // quantMode 0 with an int8 expandXOut (dynamicScalesOut given) quantizes.
      {"quantMode 0, int8 expandXOut", int8_out},
      // A 1-D mask.
      {"1-D mask", Make(&D::mask, ACL_BOOL, {kBs})},
      // ... also with globalBs past Bs * E (ranks of unequal Bs), which A3's tiling refuses: A = 2 * kA.
      {"1-D mask with globalBs 2 * Bs * E",
       All<D>({Make(&D::mask, ACL_BOOL, {kBs}), Set(&D::global_bs, 2 * kBs * kE),
               Make(&D::expand_x, ACL_BF16, {2 * kA, kH}), Make(&D::dyn_scales, ACL_FLOAT, {2 * kA})})},
      // tpWorldSize 1 is no TP.
      {"tpWorldSize 1", Set(&D::tp_world_size, 1)},
      // groupTp is ignored with tpWorldSize 0, even when it names no communicator.
      {"groupTp garbage with tpWorldSize 0", Set(&D::group_tp, "no_such_tp_group")},
      // sharedExpertNum 1 with sharedExpertRankNum 0 reads as 0.
      {"sharedExpertNum 1, sharedExpertRankNum 0", Set(&D::shared_num, 1)},
      // expertScales and expandScalesOut are ignored with fullmesh.
      {"expertScales and expandScalesOut given",
       All<D>({Make(&D::expert_scales, ACL_FLOAT, {kBs, kK}), Make(&D::expand_scales, ACL_FLOAT, {kA})})},
      // 24 experts per rank is the fullmesh maximum.
      {"moe 192 (24 per rank)", DispatchMoe(192)},
      // K 16 is the maximum.
      {"K 16", All<D>({Make(&D::ids, ACL_INT32, {kBs, 16}), Make(&D::assist, ACL_INT32, {kBs * 16})})},
      // Bs 256 and H 7168: the fullmesh maxima (A = 4096 rows; the formula needs about 120 MB of 200).
      {"Bs 256, H 7168", All<D>({Make(&D::x, ACL_BF16, {256, 7168}), Make(&D::ids, ACL_INT32, {256, kK}),
                                 Make(&D::expand_x, ACL_BF16, {4096, 7168}), Make(&D::dyn_scales, ACL_FLOAT, {4096}),
                                 Make(&D::assist, ACL_INT32, {256 * kK})})},
      // assistInfoForCombineOut of exactly Bs * K entries (expandIdx, no triples).
      {"assistInfoForCombineOut Bs*K", Make(&D::assist, ACL_INT32, {kBs * kK})},
      // A larger epRecvCountsOut (hierarchy's documented moe + 2 * globalBs * K * serverNum).
      {"epRecvCountsOut moe + 2*globalBs*K", Make(&D::ep_recv, ACL_INT32, {kMoe + 2 * kBs * kE * kK})},
      // tpRecvCountsOut is never written on A2: its length is not checked.
      {"tpRecvCountsOut of 2", Make(&D::tp_recv, ACL_INT32, {2})},
  };
  for (const auto& [what, mutate] : variants) {
    Scratch s;
    D a = BaseDispatch(s);
    mutate(a, s);
    ExpectAccepted(a, what, &s);
  }
  // An explicit "fullmesh" wins over the variables that make null, "" and "0" mean hierarchy.
  const ScopedEnv pcie("HCCL_INTRA_PCIE_ENABLE", "1"), roce("HCCL_INTRA_ROCE_ENABLE", "0");
  Scratch s;
  const D a = BaseDispatch(s);
  ExpectAccepted(a, "commAlg fullmesh with the hierarchy variables", &s);
}

// Null, "" and "0" mean hierarchy only for HCCL_INTRA_PCIE_ENABLE "1" with HCCL_INTRA_ROCE_ENABLE "0" (strings).
TEST(CapiA2Validation, EmptyCommAlgIsFullmeshUnlessBothVariablesSayHierarchy) {
  ASSERT_NE(g_groups, nullptr);
  const A2Scope a2;
  const std::vector<std::pair<const char*, const char*>> settings = {
      {"1", "1"}, {"0", "0"}, {"1", nullptr}, {nullptr, "0"}, {"", "0"}};
  for (const auto& [pcie_value, roce_value] : settings) {
    const ScopedEnv pcie("HCCL_INTRA_PCIE_ENABLE", pcie_value);
    const ScopedEnv roce("HCCL_INTRA_ROCE_ENABLE", roce_value);
    Scratch s;
    D a = BaseDispatch(s);
    a.comm_alg = "";
    ExpectAccepted(
        a, std::string("PCIE=") + (pcie_value ? pcie_value : "unset") + " ROCE=" + (roce_value ? roce_value : "unset"),
        &s);
  }
}

TEST(CapiA2Validation, CombineBaseAndAcceptedVariants) {
  ASSERT_NE(g_groups, nullptr);
  const A2Scope a2;
  const Variants<C> variants = {
      // The base: expandX (A, H), assistInfoForCombine (Bs * K,), epSendCounts (moe,), tpSendCounts null.
      {"V2 base", [](C&, Scratch&) {}},
      // CombineV3 base.
      {"V3 base", Set(&C::op, CombineOp::kV3)},
      // Null, "" and "0" mean fullmesh without the hierarchy variables.
      {"commAlg null", Set(&C::comm_alg, nullptr)},
      {"commAlg \"\"", Set(&C::comm_alg, "")},
      {"commAlg \"0\"", Set(&C::comm_alg, "0")},
      // sharedExpertX is accepted and ignored.
      {"sharedExpertX (Bs, H)", Make(&C::shared_x, ACL_BF16, {kBs, kH})},
      // CombineV3 with copy experts and oriX.
      {"V3 copy expert with oriX",
       All<C>({Set(&C::op, CombineOp::kV3), Set(&C::copy, 1), Make(&C::ori_x, ACL_BF16, {kBs, kH})})},
      // CombineV3 with a zero expert.
      {"V3 zero expert", All<C>({Set(&C::op, CombineOp::kV3), Set(&C::zero, 1)})},
      // expandScales is accepted on A2 (reserved on A3).
      {"expandScales given", Make(&C::expand_scales, ACL_FLOAT, {kA})},
      // Combine has no per-rank expert limit: 25 per rank.
      {"moe 200 (25 per rank)", CombineMoe(200)},
      // A 1-D mask.
      {"1-D mask", Make(&C::mask, ACL_BOOL, {kBs})},
      // tpWorldSize 1, groupTp garbage, sharedExpertNum 1 with no shared ranks.
      {"tpWorldSize 1", Set(&C::tp_world_size, 1)},
      {"groupTp garbage with tpWorldSize 0", Set(&C::group_tp, "no_such_tp_group")},
      {"sharedExpertNum 1, sharedExpertRankNum 0", Set(&C::shared_num, 1)},
      // A3-sized assistInfoForCombine (A * 128) is more than enough.
      {"assistInfoForCombine A*128", Make(&C::assist, ACL_INT32, {kA * 128})},
  };
  for (const auto& [what, mutate] : variants) {
    Scratch s;
    C a = BaseCombine(s, CombineOp::kV2);
    mutate(a, s);
    ExpectAccepted(a, what, &s);
  }
}

// The operators A2 lacks accept the same calls as Atlas A3 (the controls of AddRmsNormOnA2 and OnA2).
TEST(CapiA2Validation, AddRmsNormAndBufferResetAcceptedOnA3) {
  ASSERT_NE(g_groups, nullptr);
  for (const char* soc : {static_cast<const char*>(nullptr), "Ascend910_9382"}) {
    const ScopedEnv env(kSocVar, soc);
    const std::string as = std::string(" as ") + (soc ? soc : "the default");
    {
      Scratch s;
      const C a = BaseCombine(s, CombineOp::kAddRmsNorm);
      ExpectAccepted(a, "CombineAddRmsNorm" + as, &s);
    }
    {
      Scratch s;
      const R a = BaseReset(s);
      ExpectAccepted(a, "BufferReset" + as, &s);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Selecting the product
// ---------------------------------------------------------------------------------------------------

TEST(CapiA2Soc, GetSocNameDefaultsToAscend910_9391) {
  const ScopedEnv env(kSocVar, nullptr);
  RecentErrMsg();
  const char* name = aclrtGetSocName();
  ASSERT_NE(name, nullptr) << RecentErrMsg();
  EXPECT_STREQ(name, "Ascend910_9391");
}

// Every accepted name, A2 and A3 alike, is reported as set.
TEST(CapiA2Soc, GetSocNameReportsTheSetName) {
  for (const char* soc :
       {"Ascend910B1", "Ascend910B2", "Ascend910B2C", "Ascend910B3", "Ascend910B4", "Ascend910B4-1", "Ascend910_9391",
        "Ascend910_9381", "Ascend910_9372", "Ascend910_9392", "Ascend910_9382", "Ascend910_9362"}) {
    const ScopedEnv env(kSocVar, soc);
    RecentErrMsg();
    const char* name = aclrtGetSocName();
    ASSERT_NE(name, nullptr) << soc << ": " << RecentErrMsg();
    EXPECT_STREQ(name, soc);
  }
}

// An unknown name: aclrtGetSocName returns NULL, and the message names the variable and the accepted names.
TEST(CapiA2Soc, GetSocNameUnknownIsNullWithMessage) {
  for (const char* soc : {"Ascend910B", "ascend910b3", "Ascend910_93", "Ascend910B3 "}) {
    const ScopedEnv env(kSocVar, soc);
    RecentErrMsg();
    EXPECT_EQ(aclrtGetSocName(), nullptr) << "'" << soc << "'";
    const std::string msg = RecentErrMsg();
    EXPECT_TRUE(NamesParam(msg, kSocVar)) << msg;
    EXPECT_TRUE(ContainsValue(msg, "Ascend910B4-1")) << "the accepted names: " << msg;
    EXPECT_TRUE(ContainsValue(msg, "Ascend910_9391")) << "the accepted names: " << msg;
  }
}

// An unknown name fails the operator call that reads it with 161002 naming the variable.
TEST(CapiA2Soc, UnknownSocNameFailsDispatchAndCombine) {
  ASSERT_NE(g_groups, nullptr);
  const ScopedEnv env(kSocVar, "Ascend910B");
  {
    Scratch s;
    const D a = BaseDispatch(s);
    RecentErrMsg();
    EXPECT_EQ(Call(a), ACLNN_ERR_PARAM_INVALID);
    const std::string msg = RecentErrMsg();
    EXPECT_TRUE(NamesParam(msg, kSocVar)) << msg;
    EXPECT_TRUE(ContainsValue(msg, "Ascend910B")) << msg;
    EXPECT_EQ(a.exec_storage, nullptr);
    for (const auto& t : s.tensors) EXPECT_TRUE(t.AllBytesAre(kPoison)) << "a failing phase one wrote a tensor";
  }
  {
    Scratch s;
    const C a = BaseCombine(s, CombineOp::kV2);
    RecentErrMsg();
    EXPECT_EQ(Call(a), ACLNN_ERR_PARAM_INVALID);
    const std::string msg = RecentErrMsg();
    EXPECT_TRUE(NamesParam(msg, kSocVar)) << msg;
    EXPECT_EQ(a.exec_storage, nullptr);
  }
}

// The name selects the rules: every A2 name takes the A2 base; an A3 name refuses its commAlg "fullmesh" (A3 knows
// "", "fullmesh_v1" and "fullmesh_v2") and, with commAlg "", its H 64 (A3 needs H >= 1024).
TEST(CapiA2Soc, TheNameSelectsTheRules) {
  ASSERT_NE(g_groups, nullptr);
  const ScopedEnv pcie("HCCL_INTRA_PCIE_ENABLE", nullptr), roce("HCCL_INTRA_ROCE_ENABLE", nullptr);
  for (const char* soc :
       {"Ascend910B1", "Ascend910B2", "Ascend910B2C", "Ascend910B3", "Ascend910B4", "Ascend910B4-1"}) {
    const ScopedEnv env(kSocVar, soc);
    Scratch s;
    const D a = BaseDispatch(s);
    ExpectAccepted(a, std::string("A2 base as ") + soc, &s);
  }
  for (const char* soc : {static_cast<const char*>(nullptr), "Ascend910_9382"}) {
    const ScopedEnv env(kSocVar, soc);
    const std::string as = soc ? soc : "the default";
    {
      Scratch s;
      const D a = BaseDispatch(s);
      RecentErrMsg();
      EXPECT_EQ(Call(a), ACLNN_ERR_INNER_TILING_ERROR) << as;
      const std::string msg = RecentErrMsg();
      EXPECT_TRUE(NamesParam(msg, "commAlg")) << as << ": " << msg;
    }
    {
      Scratch s;
      D a = BaseDispatch(s);
      a.comm_alg = "";
      RecentErrMsg();
      EXPECT_EQ(Call(a), ACLNN_ERR_INNER_TILING_ERROR) << as;
      const std::string msg = RecentErrMsg();
      EXPECT_TRUE(NamesParam(msg, "H") && ContainsValue(msg, "64")) << as << ": " << msg;
    }
  }
}

}  // namespace
}  // namespace moe_ep::capi_testing
