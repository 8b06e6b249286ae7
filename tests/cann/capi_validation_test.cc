// C API validation: one case per rule of docs/semantics.md 1.1-1.4 and 4.2, each a single change to a valid base call
// of phase one (GetWorkspaceSize) on rank 0 of a communicator that lives on device 0 (phase one does not communicate).
// Each case checks the exact status (161001 / 161002 / 561002), that aclGetRecentErrMsg() names the parameter (and the
// value where it makes sense), that no tensor was touched (all are poisoned before, byte-compared after), and that
// phase two with the null executor returns 161001. Positive controls: every base call, and the accepted variants (n_s 1
// with S 0, tpWorldSize 1, groupListType 1, A2-only parameters, 3-D sharedExpertX, TP, quant with smooth scales)
// succeed. Communicators: EP 4 on devices 0-3, a TP pair on devices 0 and 4, a pair on devices 5-6 (a name that has no
// rank on device 0), 16 ranks for BufferReset, and EP 4 created with HCCL_BUFFSIZE=1 (window too small).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <functional>
#include <limits>

#include "cann/validation_support.h"

namespace moe_ep::capi_testing {
namespace {

// ---------------------------------------------------------------------------------------------------
// Communicators shared by every case
// ---------------------------------------------------------------------------------------------------

struct Groups : CommGroups {
  std::string ep4_name = Add({0, 1, 2, 3});
  std::string tp_name = Add({0, 4});
  std::string elsewhere_name = Add({5, 6});
  std::string reset16_name = Add({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15});
  std::string small4_name = Add({0, 1, 2, 3}, /*hccl_buffsize=*/"1");
  std::string window2_name = Add({0, 1, 2, 3}, /*hccl_buffsize=*/"2");
};
Groups* g_groups = nullptr;
[[maybe_unused]] ::testing::Environment* const g_environment =
    ::testing::AddGlobalTestEnvironment(new GroupsEnvironment<Groups>(&g_groups));

// ---------------------------------------------------------------------------------------------------
// The base calls
// ---------------------------------------------------------------------------------------------------

constexpr int64_t kBs = 4, kH = 1024, kK = 2;

// HCCL_BUFFSIZE for the calls that have no communicator to take a window from.
const Env kTinyWindowEnv = {{"HCCL_BUFFSIZE", "1"}};
const Env kMalformedWindowEnv = {{"HCCL_BUFFSIZE", "lots"}};

// E 4, rank 0, 8 experts (L 2), K 2, Bs 4, H 1024, bf16, no TP: A = Bs * E * min(L, K) = 32.
DispatchArgs BaseDispatch(Scratch& s) {
  DispatchArgs a;
  a.x = s.T(ACL_BF16, {kBs, kH});
  a.ids = s.T(ACL_INT32, {kBs, kK});
  a.group_ep = g_groups->ep4_name.c_str();
  a.ep_world_size = 4;
  a.moe = 8;
  a.expand_x = s.T(ACL_BF16, {32, kH});
  a.dyn_scales = s.T(ACL_FLOAT, {32});
  a.assist = s.T(ACL_INT32, {32 * 128});
  a.token_nums = s.T(ACL_INT64, {2});
  a.ep_recv = s.T(ACL_INT32, {8});
  a.tp_recv = s.T(ACL_INT32, {0});
  return a;
}

// TP 2 (EP 4 x TP pair), 4 experts (L 1): A = 16, expandX 2A rows, epRecvCounts 2 E L, tpRecvCounts 2.
void MakeTp(DispatchArgs& a, Scratch& s) {
  a.tp_world_size = 2;
  a.group_tp = g_groups->tp_name.c_str();
  a.moe = 4;
  a.expand_x = s.T(ACL_BF16, {32, kH});
  a.dyn_scales = s.T(ACL_FLOAT, {32});
  a.assist = s.T(ACL_INT32, {16 * 128});
  a.token_nums = s.T(ACL_INT64, {1});
  a.ep_recv = s.T(ACL_INT32, {8});
  a.tp_recv = s.T(ACL_INT32, {2});
}

void MakeQuant(DispatchArgs& a, Scratch& s) {
  a.quant = 2;
  a.expand_x = s.T(ACL_INT8, {32, kH});
}

// The combine that pairs with BaseDispatch (A = 32 rows of expert output).
CombineArgs BaseCombine(Scratch& s, CombineOp op) {
  CombineArgs a;
  a.op = op;
  a.expand_x = s.T(ACL_BF16, {32, kH});
  a.ids = s.T(ACL_INT32, {kBs, kK});
  a.assist = s.T(ACL_INT32, {32 * 128});
  a.ep_send = s.T(ACL_INT32, {8});
  a.scales = s.T(ACL_FLOAT, {kBs, kK});
  a.group_ep = g_groups->ep4_name.c_str();
  a.ep_world_size = 4;
  a.moe = 8;
  if (op == CombineOp::kAddRmsNorm) {
    a.residual = s.T(ACL_BF16, {kBs, 1, kH});
    a.gamma = s.T(ACL_BF16, {kH});
    a.y_out = s.T(ACL_BF16, {kBs, 1, kH});
    a.rstd_out = s.T(ACL_FLOAT, {kBs, 1, 1});
    a.x_out = s.T(ACL_BF16, {kBs, 1, kH});
  } else {
    a.x_out = s.T(ACL_BF16, {kBs, kH});
  }
  return a;
}

void MakeTp(CombineArgs& a, Scratch& s) {
  a.tp_world_size = 2;
  a.group_tp = g_groups->tp_name.c_str();
  a.moe = 4;
  a.assist = s.T(ACL_INT32, {16 * 128});
  a.tp_send = s.T(ACL_INT32, {2});
}

// A 16-entry link mask on the 16-rank group, needSync 1.
ResetArgs BaseReset(Scratch& s) {
  ResetArgs a;
  a.elastic = s.T(ACL_INT32, {16});
  a.group_ep = g_groups->reset16_name.c_str();
  a.ep_world_size = 16;
  a.need_sync = 1;
  return a;
}

// ---------------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------------

template <typename Args>
void CheckRule(const Rule<Args>& rule) {
  ASSERT_NE(g_groups, nullptr);
  ExpectRejected(rule, {BaseDispatch, BaseCombine, BaseReset}, g_groups->stream);
}

// The mutators that need the communicators (their names exist only once the environment is up) or a base change.
template <typename Args>
Mutator<Args> GroupEp(std::string Groups::*name) {
  return [=](Args& a, Scratch&) { a.group_ep = (g_groups->*name).c_str(); };
}
template <typename Args>
Mutator<Args> Tp() {
  return [](Args& a, Scratch& s) { MakeTp(a, s); };
}
template <typename Args>
Mutator<Args> Quant() {
  return [](Args& a, Scratch& s) { MakeQuant(a, s); };
}

// ----- DispatchV2 / V3 ----------------------------------------------------------------------------------

using D = DispatchArgs;
std::vector<Rule<D>> DispatchRules() {
  const auto v3 = Set(&D::v3, true);
  // clang-format off
  return {
      // 1.1 null pointers and group names (161001 in dispatch).
      {"XNull", Set(&D::x, nullptr), kNull, {"x"}, {}},
      {"ExpertIdsNull", Set(&D::ids, nullptr), kNull, {"expertIds"}, {}},
      {"ExpandXOutNull", Set(&D::expand_x, nullptr), kNull, {"expandX"}, {}},
      {"AssistInfoOutNull", Set(&D::assist, nullptr), kNull, {"assistInfoForCombine"}, {}},
      {"ExpertTokenNumsOutNull", Set(&D::token_nums, nullptr), kNull, {"expertTokenNums"}, {}},
      {"EpRecvCountsOutNull", Set(&D::ep_recv, nullptr), kNull, {"epRecvCounts"}, {}},
      {"TpRecvCountsOutNull", Set(&D::tp_recv, nullptr), kNull, {"tpRecvCounts"}, {}},
      {"GroupEpNull", Set(&D::group_ep, nullptr), kNull, {"groupEp"}, {"= nullptr"}},
      {"GroupEpEmpty", Set(&D::group_ep, ""), kNull, {"groupEp"}, {}},
      {"DynamicScalesOutNullWithQuant2", All<D>({Quant<D>(), Set(&D::dyn_scales, nullptr)}), kNull,
       {"dynamicScales"}, {}},
      {"WorkspaceSizeNull", Set(&D::null_ws, true), kNull, {"workspaceSize"}, {}},
      {"ExecutorNull", Set(&D::null_exec, true), kNull, {"executor"}, {}},
      {"GroupEpTooLong", GroupEpNamed<D>(LongName()), kNull, {"groupEp"}, {"128"}},
      {"GroupTpTooLong", GroupTpNamed<D>(LongName()), kNull, {"groupTp"}, {"128"}},
      {"GroupEpUnterminated", GroupEpNamed<D>(UnterminatedName()), kNull, {"groupEp"}, {"at least 128"}},
      {"GroupTpUnterminated", GroupTpNamed<D>(UnterminatedName()), kNull, {"groupTp"}, {"at least 128"}},
      // 1.1 dtypes outside the op definition, including its dtype combinations (161002): (x bf16, expandX
      // fp16) is no combination; (bf16, int8) and (bf16, bf16) are, so only the tiling's quantMode-dependent
      // re-check rejects those (561002, docs/semantics.md 1.2).
      {"XInt16", Make(&D::x, ACL_INT16, {kBs, kH}), kInvalid, {"x"}, {"int16|6"}},
      {"XFloat32", Make(&D::x, ACL_FLOAT, {kBs, kH}), kInvalid, {"x"}, {"float"}},
      {"ExpertIdsInt64", Make(&D::ids, ACL_INT64, {kBs, kK}), kInvalid, {"expertIds"}, {"int64"}},
      {"ScalesFloat16", All<D>({Quant<D>(), Make(&D::scales, ACL_FLOAT16, {8, kH})}), kInvalid, {"scales"}, {"fp16", "dtype must be float32"}},
      {"XActiveMaskInt8", Make(&D::mask, ACL_INT8, {kBs}), kInvalid, {"xActiveMask"}, {"int8"}},
      {"ExpertTokenNumsInt32", Make(&D::token_nums, ACL_INT32, {2}), kInvalid, {"expertTokenNums"}, {"int32"}},
      // The op-def's dtypes are matched before any tiling rule: with a range rule broken too, the call is refused for
      // the dtype (161002), whichever tensor it is.
      {"ExpertTokenNumsInt32AndEpWorldSizeTooLarge",
       All<D>({Make(&D::token_nums, ACL_INT32, {2}), Set(&D::ep_world_size, 769)}), kInvalid, {"expertTokenNums"},
       {"int32"}},
      {"XActiveMaskInt8AndQuantMode3", All<D>({Make(&D::mask, ACL_INT8, {kBs}), Set(&D::quant, 3)}), kInvalid,
       {"xActiveMask"}, {"int8"}},
      {"AssistInfoInt64AndHTooSmall",
       All<D>({Make(&D::assist, ACL_INT64, {kBs * 128}), Make(&D::x, ACL_BF16, {kBs, 64})}), kInvalid,
       {"assistInfoForCombine"}, {"int64"}},
      {"EpRecvCountsInt64", Make(&D::ep_recv, ACL_INT64, {8}), kInvalid, {"epRecvCounts"}, {"int64"}},
      {"TpRecvCountsInt64", Make(&D::tp_recv, ACL_INT64, {0}), kInvalid, {"tpRecvCounts"}, {"int64"}},
      {"AssistInfoInt64", Make(&D::assist, ACL_INT64, {32 * 128}), kInvalid, {"assistInfoForCombine"}, {"int64"}},
      {"DynamicScalesFloat16", All<D>({Quant<D>(), Make(&D::dyn_scales, ACL_FLOAT16, {32})}), kInvalid,
       {"dynamicScales"}, {}},
      {"ExpandXDtypeDiffersFromX", Make(&D::expand_x, ACL_FLOAT16, {32, kH}), kInvalid, {"expandX"}, {"fp16", "dtype must be x's (bf16) or int8"}},
      {"ExpandXNotInt8WithQuant2", All<D>({Quant<D>(), Make(&D::expand_x, ACL_BF16, {32, kH})}), kTiling,
       {"expandX"}, {}},
      {"ExpandXInt8WithoutQuant", Make(&D::expand_x, ACL_INT8, {32, kH}), kTiling, {"expandX"}, {"int8", "dtype must be bf16"}},
      // 1.2 formats.
      {"XFractalNz", Make(&D::x, ACL_BF16, {kBs, kH}, ACL_FORMAT_FRACTAL_NZ), kTiling, {"x"}, {"nz"}},
      {"ExpandXFractalNz", Make(&D::expand_x, ACL_BF16, {32, kH}, ACL_FORMAT_FRACTAL_NZ), kTiling, {"expandX"},
       {"nz"}},
      // 1.2 attributes.
      {"QuantMode1", Set(&D::quant, 1), kTiling, {"quantMode"}, {"1"}},
      {"QuantMode3", Set(&D::quant, 3), kTiling, {"quantMode"}, {"3"}},
      {"ScalesWithQuant0", Make(&D::scales, ACL_FLOAT, {8, kH}), kTiling, {"scales"}, {"(8, 1024) float32", "absent when quantMode == 0"}},
      {"CommAlgUnknown", Set(&D::comm_alg, "bogus_alg"), kTiling, {"commAlg"}, {"bogus_alg"}},
      {"FullmeshV2With2dMask", All<D>({Set(&D::comm_alg, "fullmesh_v2"), Make(&D::mask, ACL_BOOL, {kBs, kK})}),
       kTiling, {"commAlg", "xActiveMask"}, {"'xActiveMask' = a 2-D mask"}},
      {"EpWorldSize1", Set(&D::ep_world_size, 1), kTiling, {"epWorldSize"}, {"1"}},
      {"EpWorldSize769", Set(&D::ep_world_size, 769), kTiling, {"epWorldSize"}, {"769"}},
      {"TpWorldSize3", Set(&D::tp_world_size, 3), kTiling, {"tpWorldSize"}, {"3"}},
      {"EpRankIdNegative", Set(&D::ep_rank, -1), kTiling, {"epRankId"}, {"-1"}},
      {"EpRankIdNotBelowEpWorldSize", Set(&D::ep_rank, 4), kTiling, {"epRankId"}, {"4"}},
      {"TpRankIdOutOfRangeWithTp", All<D>({Tp<D>(), Set(&D::tp_rank, 2)}), kTiling, {"tpRankId"}, {"2"}},
      {"GroupTpEmptyWithTp", All<D>({Tp<D>(), Set(&D::group_tp, "")}), kTiling, {"groupTp"}, {}},
      {"TpRankIdNonZeroWithoutTp", Set(&D::tp_rank, 1), kTiling, {"tpRankId"}, {"1"}},
      {"ExpertShardType1", Set(&D::shard_type, 1), kTiling, {"expertShardType"}, {"1"}},
      {"SharedExpertNum5", Set(&D::shared_num, 5), kTiling, {"sharedExpertNum"}, {"5"}},
      {"SharedExpertRankNumNotBelowE", All<D>({Set(&D::shared_num, 1), Set(&D::shared_rank_num, 4)}), kTiling,
       {"sharedExpertRankNum"}, {"4"}},
      {"SharedRanksWithoutSharedExperts", Set(&D::shared_rank_num, 1), kTiling,
       {"sharedExpertNum", "sharedExpertRankNum"}, {}},
      {"SharedRankNumNotMultipleOfSharedNum", All<D>({Set(&D::shared_num, 2), Set(&D::shared_rank_num, 3)}),
       kTiling, {"sharedExpertRankNum", "sharedExpertNum"}, {}},
      {"MoeExpertNum0", Set(&D::moe, 0), kTiling, {"moeExpertNum"}, {"0"}},
      {"MoeExpertNum1025", Set(&D::moe, 1025), kTiling, {"moeExpertNum"}, {"1025"}},
      {"MoeExpertNumNotMultipleOfMoeRanks", Set(&D::moe, 7), kTiling, {"moeExpertNum"}, {"7"}},
      // E 4 with 3 shared ranks: L = 1023, L * E = 4092 > 2048; rank 0 is a shared rank (outputs sized so).
      {"LocalExpertsTimesEAbove2048",
       All<D>({Set(&D::shared_num, 1), Set(&D::shared_rank_num, 3), Set(&D::moe, 1023),
               Make(&D::token_nums, ACL_INT64, {1}), Make(&D::ep_recv, ACL_INT32, {4})}),
       kTiling, {"moeExpertNum", "localExpertNum", "epWorldSize"}, {"4092"}},
      {"ExpertTokenNumsType2", Set(&D::token_nums_type, 2), kTiling, {"expertTokenNumsType"}, {"2"}},
      {"TpWithTwoLocalExperts", All<D>({Tp<D>(), Set(&D::moe, 8), Make(&D::token_nums, ACL_INT64, {2})}), kTiling,
       {"moeExpertNum", "localExpertNum", "tpWorldSize"}, {}},
      {"ZeroExpertNumNegative", All<D>({v3, Set(&D::zero, -1)}), kTiling, {"zeroExpertNum"}, {"-1"}},
      {"CopyExpertNumNegative", All<D>({v3, Set(&D::copy, -2)}), kTiling, {"copyExpertNum"}, {"-2"}},
      {"ConstExpertNumNegative", All<D>({v3, Set(&D::cnst, -3)}), kTiling, {"constExpertNum"}, {"-3"}},
      {"SpecialExpertCountOverflowsInt32", All<D>({v3, Set(&D::zero, INT32_MAX)}), kTiling,
       {"zeroExpertNum", "moeExpertNum", "copyExpertNum", "constExpertNum"}, {}},
      // 1.2 shapes.
      {"X3d", Make(&D::x, ACL_BF16, {kBs, 1, kH}), kTiling, {"x"}, {"(4, 1, 1024) bf16", "must have 2 dimensions"}},
      {"X1d", Make(&D::x, ACL_BF16, {kBs * kH}), kTiling, {"x"}, {"(4096,) bf16", "must have 2 dimensions"}},
      {"ExpertIds1d", Make(&D::ids, ACL_INT32, {kBs * kK}), kTiling, {"expertIds"}, {"(8,) int32", "must have 2 dimensions"}},
      {"ExpertIdsRowsDifferFromBs", Make(&D::ids, ACL_INT32, {3, kK}), kTiling, {"expertIds"}, {"3"}},
      {"ScalesShapeNotSharedPlusMoeByH", All<D>({Quant<D>(), Make(&D::scales, ACL_FLOAT, {9, kH})}), kTiling,
       {"scales"}, {"9"}},
      {"Scales1d", All<D>({Quant<D>(), Make(&D::scales, ACL_FLOAT, {8 * kH})}), kTiling, {"scales"}, {"(8192,) float32", "must have 2 dimensions"}},
      {"Mask1dWrongLength", Make(&D::mask, ACL_BOOL, {5}), kTiling, {"xActiveMask"}, {"5"}},
      {"Mask2dWrongK", Make(&D::mask, ACL_BOOL, {kBs, 3}), kTiling, {"xActiveMask"}, {"3"}},
      {"Mask3d", Make(&D::mask, ACL_BOOL, {kBs, kK, 1}), kTiling, {"xActiveMask"}, {"(4, 2, 1) bool", "1-D (Bs,) or 2-D (Bs, K)"}},
      {"ExpandX1d", Make(&D::expand_x, ACL_BF16, {32 * kH}), kTiling, {"expandX"}, {"(32768,) bf16", "must have 2 dimensions"}},
      {"ExpandXFewerRowsThanA", Make(&D::expand_x, ACL_BF16, {31, kH}), kTiling, {"expandX"}, {"31"}},
      {"ExpandXWrongH", Make(&D::expand_x, ACL_BF16, {32, kH + 1}), kTiling, {"expandX"}, {"1025"}},
      {"DynamicScalesShorterThanA", All<D>({Quant<D>(), Make(&D::dyn_scales, ACL_FLOAT, {31})}), kTiling,
       {"dynamicScales"}, {"31"}},
      {"DynamicScales2d", All<D>({Quant<D>(), Make(&D::dyn_scales, ACL_FLOAT, {32, 1})}), kTiling,
       {"dynamicScales"}, {}},
      {"AssistInfoShorterThan3A", Make(&D::assist, ACL_INT32, {95}), kTiling, {"assistInfoForCombine"}, {"95"}},
      {"AssistInfo2d", Make(&D::assist, ACL_INT32, {32, 128}), kTiling, {"assistInfoForCombine"}, {"(32, 128) int32", "must have 1 dimensions"}},
      {"ExpertTokenNumsNotL", Make(&D::token_nums, ACL_INT64, {3}), kTiling, {"expertTokenNums"}, {"3"}},
      {"EpRecvCountsShorterThanEL", Make(&D::ep_recv, ACL_INT32, {7}), kTiling, {"epRecvCounts"}, {"7"}},
      {"TpRecvCountsLengthNotTpWorldSize", Make(&D::tp_recv, ACL_INT32, {2}), kTiling, {"tpRecvCounts"}, {"2"}},
      {"Bs0", All<D>({Make(&D::x, ACL_BF16, {0, kH}), Make(&D::ids, ACL_INT32, {0, kK})}), kTiling, {"x", "Bs"},
       {"0"}},
      {"Bs513",
       All<D>({Make(&D::x, ACL_BF16, {513, kH}), Make(&D::ids, ACL_INT32, {513, kK}),
               Make(&D::expand_x, ACL_BF16, {513 * 8, kH}), Make(&D::assist, ACL_INT32, {513 * 8 * 128})}),
       kTiling, {"x", "Bs"}, {"513"}},
      {"GlobalBsNotMultipleOfE", Set(&D::global_bs, 17), kTiling, {"globalBs"}, {"17"}},
      {"GlobalBsBelowBsTimesE", Set(&D::global_bs, 12), kTiling, {"globalBs"}, {"12"}},
      {"GlobalBsAboveBsTimesEWithMask",
       All<D>({Set(&D::global_bs, 20), Make(&D::mask, ACL_BOOL, {kBs}), Make(&D::expand_x, ACL_BF16, {40, kH}),
               Make(&D::assist, ACL_INT32, {40 * 128})}),
       kTiling, {"globalBs", "xActiveMask"}, {"20"}},
      {"H1023", All<D>({Make(&D::x, ACL_BF16, {kBs, 1023}), Make(&D::expand_x, ACL_BF16, {32, 1023})}), kTiling,
       {"x", "H"}, {"1023"}},
      {"H8193", All<D>({Make(&D::x, ACL_BF16, {kBs, 8193}), Make(&D::expand_x, ACL_BF16, {32, 8193})}), kTiling,
       {"x", "H"}, {"8193"}},
      // K 17 with 32 experts (L 8, A = 16 * 8 rows).
      {"TopK17",
       All<D>({Set(&D::moe, 32), Make(&D::ids, ACL_INT32, {kBs, 17}), Make(&D::expand_x, ACL_BF16, {128, kH}),
               Make(&D::assist, ACL_INT32, {128 * 128}), Make(&D::token_nums, ACL_INT64, {8}),
               Make(&D::ep_recv, ACL_INT32, {32})}),
       kTiling, {"expertIds", "K"}, {"17"}},
      {"TopKAboveExpertCount",
       All<D>({Set(&D::moe, 4), Make(&D::ids, ACL_INT32, {kBs, 5}), Make(&D::token_nums, ACL_INT64, {1}),
               Make(&D::ep_recv, ACL_INT32, {4})}),
       kTiling, {"expertIds", "K", "moeExpertNum"}, {"5"}},
      // Communicators.
      {"GroupEpIsNoCommunicator", Set(&D::group_ep, "no_such_group"), kTiling, {"groupEp"}, {"no_such_group"}},
      // A group that is not found is what is reported, not HCCL_BUFFSIZE's value (a window it does not have).
      {"GroupEpIsNoCommunicatorWhateverHcclBuffsize", Set(&D::group_ep, "no_such_group"), kTiling, {"groupEp"},
       {"no_such_group"}, CombineOp::kV2, &kTinyWindowEnv},
      {"GroupEpIsNoCommunicatorWithHcclBuffsizeMalformed", Set(&D::group_ep, "no_such_group"), kTiling, {"groupEp"},
       {"no_such_group"}, CombineOp::kV2, &kMalformedWindowEnv},
      {"GroupEpHasNoRankOnThisDevice", GroupEp<D>(&Groups::elsewhere_name), kTiling, {"groupEp"}, {}},
      {"GroupTpIsNoCommunicator", All<D>({Tp<D>(), Set(&D::group_tp, "no_such_tp_group")}), kTiling, {"groupTp"},
       {"no_such_tp_group"}},
      // E 2 with 8 experts (L 4) is valid on its own; the communicator has 4 ranks.
      {"EpWorldSizeNotCommunicatorSize", All<D>({Set(&D::ep_world_size, 2), Make(&D::token_nums, ACL_INT64, {4})}),
       kTiling, {"epWorldSize"}, {"2"}},
      {"EpRankIdNotCommunicatorRank", Set(&D::ep_rank, 1), kTiling, {"epRankId"}, {"1"}},
      // HCCL_BUFFSIZE=1: H 8192, Bs 32 need 2 * (32*16896*4*2 + 32*16384*2) = 10747904 bytes.
      {"WindowTooSmall",
       All<D>({GroupEp<D>(&Groups::small4_name), Make(&D::x, ACL_BF16, {32, 8192}), Make(&D::ids, ACL_INT32, {32, kK}),
               Make(&D::expand_x, ACL_BF16, {256, 8192}), Make(&D::dyn_scales, ACL_FLOAT, {256}),
               Make(&D::assist, ACL_INT32, {256 * 128})}),
       kTiling, {"HCCL_BUFFSIZE"}, {"10747904"}},
      // commAlg fullmesh_v2 slots a dispatch row in 480-byte pieces of 512 bytes: H 1200, Bs 40 need 2 * (40 * 3072
      // * 8 + 40 * 2560 * 2) = 2375680 bytes, more than the 2 MB window that moe_ep's own layout fits in.
      {"FullmeshV2WindowTooSmall",
       All<D>({GroupEp<D>(&Groups::window2_name), Set(&D::comm_alg, "fullmesh_v2"), Make(&D::x, ACL_BF16, {40, 1200}),
               Make(&D::ids, ACL_INT32, {40, kK}), Make(&D::expand_x, ACL_BF16, {320, 1200}),
               Make(&D::assist, ACL_INT32, {320 * 128})}),
       kTiling, {"HCCL_BUFFSIZE", "fullmesh_v2"}, {"2375680"}},
      // V3 elasticInfo: its type and shape (scale-down itself: CapiElastic and the process fault tests).
      {"ElasticInfoInt64", All<D>({v3, Make(&D::elastic, ACL_INT64, {12})}), kInvalid, {"elasticInfo"}, {"int64"}},
      // The dtype first: with a shape rule broken too, the call is still refused for the dtype (161002).
      {"ElasticInfoInt64AndKTooLarge",
       All<D>({v3, Make(&D::elastic, ACL_INT64, {12}), Make(&D::ids, ACL_INT32, {kBs, 17})}), kInvalid,
       {"elasticInfo"}, {"int64"}},
      {"ElasticInfoWrongLength", All<D>({v3, Make(&D::elastic, ACL_INT32, {11})}), kTiling, {"elasticInfo"},
       {"11"}},
      {"ElasticInfoWithTp", All<D>({Tp<D>(), v3, Make(&D::elastic, ACL_INT32, {12})}), kTiling,
       {"elasticInfo", "tpWorldSize"}, {}},
      // With elasticInfo a rank's counts are sized for either role: on a shared-expert rank of L 2 (6 experts on
      // 3 MoE ranks), expertTokenNums 2 entries and epRecvCounts E * L = 8, not its role's 1 and 4.
      {"ElasticInfoTokenNumsSizedForTheRole",
       All<D>({v3, Make(&D::elastic, ACL_INT32, {12}), Set(&D::shared_num, 1), Set(&D::shared_rank_num, 1),
               Set(&D::moe, 6), Make(&D::token_nums, ACL_INT64, {1})}),
       kTiling, {"expertTokenNumsOut", "max(localExpertNum, 1)"}, {"(1,)"}},
      {"ElasticInfoRecvCountsSizedForTheRole",
       All<D>({v3, Make(&D::elastic, ACL_INT32, {12}), Set(&D::shared_num, 1), Set(&D::shared_rank_num, 1),
               Set(&D::moe, 6), Make(&D::ep_recv, ACL_INT32, {4})}),
       kTiling, {"epRecvCountsOut", ">= 8"}, {"(4,)"}},
  };
  // clang-format on
}

class DispatchRule : public ::testing::TestWithParam<Rule<D>> {};
TEST_P(DispatchRule, RejectedWithCodeAndMessage) { CheckRule(GetParam()); }
INSTANTIATE_TEST_SUITE_P(CapiValidation, DispatchRule, ::testing::ValuesIn(DispatchRules()), RuleName<D>);

// ----- CombineV2 / V3 / AddRmsNorm -----------------------------------------------------------------------

using C = CombineArgs;
std::vector<Rule<C>> CombineRules() {
  const CombineOp v2 = CombineOp::kV2, v3 = CombineOp::kV3, rms = CombineOp::kAddRmsNorm;
  // One expert per shared rank: rank 0 hosts the shared expert (epSendCounts E entries).
  const auto shared_rank =
      All<C>({Set(&C::shared_num, 1), Set(&C::shared_rank_num, 1), Set(&C::moe, 3), Make(&C::ep_send, ACL_INT32, {4})});
  const auto const_inputs =
      All<C>({Set(&C::cnst, 1), Make(&C::ori_x, ACL_BF16, {kBs, kH}), Make(&C::alpha1, ACL_BF16, {1, kH}),
              Make(&C::alpha2, ACL_BF16, {1, kH}), Make(&C::const_v, ACL_BF16, {1, kH})});
  // clang-format off
  return {
      // 1.1 null pointers (161001); group names too long are 161002 in combine.
      {"ExpandXNull", Set(&C::expand_x, nullptr), kNull, {"expandX"}, {}, v2},
      {"ExpertIdsNull", Set(&C::ids, nullptr), kNull, {"expertIds"}, {}, v2},
      {"AssistInfoNull", Set(&C::assist, nullptr), kNull, {"assistInfoForCombine"}, {}, v2},
      {"EpSendCountsNull", Set(&C::ep_send, nullptr), kNull, {"epSendCounts"}, {}, v2},
      {"ExpertScalesNull", Set(&C::scales, nullptr), kNull, {"expertScales"}, {}, v2},
      {"XOutNull", Set(&C::x_out, nullptr), kNull, {"x"}, {}, v2},
      {"GroupEpNull", Set(&C::group_ep, nullptr), kNull, {"groupEp"}, {"= nullptr"}, v2},
      {"GroupEpEmpty", Set(&C::group_ep, ""), kNull, {"groupEp"}, {}, v2},
      {"WorkspaceSizeNull", Set(&C::null_ws, true), kNull, {"workspaceSize"}, {}, v2},
      {"ExecutorNull", Set(&C::null_exec, true), kNull, {"executor"}, {}, v2},
      {"GroupEpTooLong", GroupEpNamed<C>(LongName()), kInvalid, {"groupEp"}, {"128"}, v2},
      {"GroupTpTooLong", GroupTpNamed<C>(LongName()), kInvalid, {"groupTp"}, {"128"}, v2},
      {"GroupEpUnterminated", GroupEpNamed<C>(UnterminatedName()), kInvalid, {"groupEp"}, {"at least 128"}, v2},
      {"GroupTpUnterminated", GroupTpNamed<C>(UnterminatedName()), kInvalid, {"groupTp"}, {"at least 128"}, rms},
      {"V3ExpandXNull", Set(&C::expand_x, nullptr), kNull, {"expandX"}, {}, v3},
      {"V3GroupEpTooLong", GroupEpNamed<C>(LongName()), kInvalid, {"groupEp"}, {"128"}, v3},
      {"AddRmsNormXOutNull", Set(&C::x_out, nullptr), kNull, {"x"}, {}, rms},
      {"AddRmsNormResidualXNull", Set(&C::residual, nullptr), kNull, {"residualX"}, {}, rms},
      {"AddRmsNormGammaNull", Set(&C::gamma, nullptr), kNull, {"gamma"}, {}, rms},
      {"AddRmsNormYOutNull", Set(&C::y_out, nullptr), kNull, {"y"}, {}, rms},
      {"AddRmsNormRstdOutNull", Set(&C::rstd_out, nullptr), kNull, {"rstd"}, {}, rms},
      {"AddRmsNormGroupEpTooLong", GroupEpNamed<C>(LongName()), kInvalid, {"groupEp"}, {"128"}, rms},
      // 1.1 dtypes (161002); output x and sharedExpertX pair with expandX in the op definition's dtype
      // combinations, and CombineAddRmsNorm is defined for bf16 only.
      {"ExpandXInt16", Make(&C::expand_x, ACL_INT16, {32, kH}), kInvalid, {"expandX"}, {"int16|6"}, v2},
      {"ExpandXFloat32", Make(&C::expand_x, ACL_FLOAT, {32, kH}), kInvalid, {"expandX"}, {"float"}, v2},
      {"ExpertIdsInt64", Make(&C::ids, ACL_INT64, {kBs, kK}), kInvalid, {"expertIds"}, {"int64"}, v2},
      {"ExpertScalesFloat16", Make(&C::scales, ACL_FLOAT16, {kBs, kK}), kInvalid, {"expertScales"}, {}, v2},
      {"AssistInfoInt64", Make(&C::assist, ACL_INT64, {32 * 128}), kInvalid, {"assistInfoForCombine"}, {"int64"},
       v2},
      {"EpSendCountsInt64", Make(&C::ep_send, ACL_INT64, {8}), kInvalid, {"epSendCounts"}, {"int64"}, v2},
      {"SharedExpertXDtypeDiffers", Make(&C::shared_x, ACL_FLOAT16, {kBs, kH}), kInvalid, {"sharedExpertX"}, {},
       v2},
      {"XOutDtypeDiffersFromExpandX", Make(&C::x_out, ACL_FLOAT16, {kBs, kH}), kInvalid, {"x"}, {}, v2},
      {"AddRmsNormExpandXFloat16", Make(&C::expand_x, ACL_FLOAT16, {32, kH}), kInvalid, {"expandX"}, {}, rms},
      {"AddRmsNormResidualXFloat16", Make(&C::residual, ACL_FLOAT16, {kBs, 1, kH}), kInvalid, {"residualX"}, {},
       rms},
      // 1.3 / 3.4 reserved parameters and attributes (561002).
      {"ActivationScaleGiven", Make(&C::activation_scale, ACL_FLOAT, {32}), kTiling, {"activationScale"}, {}, v2},
      {"WeightScaleGiven", Make(&C::weight_scale, ACL_FLOAT, {32}), kTiling, {"weightScale"}, {}, v2},
      {"GroupListGiven", Make(&C::group_list, ACL_INT64, {2}), kTiling, {"groupList"}, {}, v2},
      {"OutDtype1", Set(&C::out_dtype, 1), kTiling, {"outDtype"}, {"1"}, v2},
      {"CommQuantMode1", Set(&C::comm_quant, 1), kTiling, {"commQuantMode"}, {"1"}, v2},
      {"CommQuantMode2WithTp", All<C>({Tp<C>(), Set(&C::comm_quant, 2)}), kTiling,
       {"commQuantMode", "tpWorldSize"}, {}, v2},
      {"SharedExpertXWithSharedExpertRanks", All<C>({shared_rank, Make(&C::shared_x, ACL_BF16, {kBs, kH})}),
       kTiling, {"sharedExpertX", "sharedExpertRankNum"}, {}, v2},
      {"SharedExpertXWrongShape", Make(&C::shared_x, ACL_BF16, {kBs, 1000}), kTiling, {"sharedExpertX"}, {"1000"},
       v2},
      {"XOutWrongShape", Make(&C::x_out, ACL_BF16, {3, kH}), kTiling, {"x"}, {"3"}, v2},
      {"ExpandXFractalNz", Make(&C::expand_x, ACL_BF16, {32, kH}, ACL_FORMAT_FRACTAL_NZ), kTiling, {"expandX"},
       {"nz"}, v2},
      // H comes from expandX: an expandX of another width makes x (Bs, H) wrong.
      {"ExpandXWrongH", Make(&C::expand_x, ACL_BF16, {32, kH + 1}), kTiling, {"expandX", "x"}, {}, v2},
      {"AssistInfoShorterThanA128", Make(&C::assist, ACL_INT32, {32 * 128 - 1}), kTiling, {"assistInfoForCombine"},
       {"4095"}, v2},
      {"EpSendCountsShorterThanEL", Make(&C::ep_send, ACL_INT32, {7}), kTiling, {"epSendCounts"}, {"7"}, v2},
      {"ExpertScalesWrongShape", Make(&C::scales, ACL_FLOAT, {kBs, 3}), kTiling, {"expertScales"}, {"3"}, v2},
      {"TpSendCountsWrongLengthWithTp", All<C>({Tp<C>(), Make(&C::tp_send, ACL_INT32, {1})}), kTiling,
       {"tpSendCounts"}, {"1"}, v2},
      // Without TP tpSendCounts may be null (as the documents say); given, it is (tpWorldSize,) as CANN's tiling
      // checks it: dispatch's tpRecvCounts handed back.
      {"TpSendCountsWrongLengthWithoutTp", Make(&C::tp_send, ACL_INT32, {2}), kTiling, {"tpSendCounts"},
       {"(2,)", "tpWorldSize = 0"}},
      {"Mask2dWrongK", Make(&C::mask, ACL_BOOL, {kBs, 3}), kTiling, {"xActiveMask"}, {"3"}, v2},
      {"H1023", All<C>({Make(&C::expand_x, ACL_BF16, {32, 1023}), Make(&C::x_out, ACL_BF16, {kBs, 1023})}), kTiling,
       {"expandX", "x", "H"}, {"1023"}, v2},
      // Attributes that must agree with the dispatch and the communicator.
      {"EpWorldSizeNotCommunicatorSize", Set(&C::ep_world_size, 2), kTiling, {"epWorldSize"}, {"2"}, v2},
      {"EpRankIdNotCommunicatorRank", Set(&C::ep_rank, 1), kTiling, {"epRankId"}, {"1"}, v2},
      {"MoeExpertNumDiffersFromDispatch", Set(&C::moe, 16), kTiling, {"moeExpertNum", "epSendCounts", "expandX"},
       {}, v2},
      {"GroupEpIsNoCommunicator", Set(&C::group_ep, "no_such_group"), kTiling, {"groupEp"}, {"no_such_group"}, v2},
      {"GroupEpIsNoCommunicatorWhateverHcclBuffsize", Set(&C::group_ep, "no_such_group"), kTiling, {"groupEp"},
       {"no_such_group"}, v2, &kTinyWindowEnv},
      {"GroupEpHasNoRankOnThisDevice", GroupEp<C>(&Groups::elsewhere_name), kTiling, {"groupEp"}, {}, v2},
      {"WindowTooSmall",
       All<C>({GroupEp<C>(&Groups::small4_name), Make(&C::expand_x, ACL_BF16, {256, 8192}),
               Make(&C::ids, ACL_INT32, {32, kK}), Make(&C::scales, ACL_FLOAT, {32, kK}),
               Make(&C::assist, ACL_INT32, {256 * 128}), Make(&C::x_out, ACL_BF16, {32, 8192})}),
       kTiling, {"HCCL_BUFFSIZE"}, {"10747904"}, v2},
      // V3 special experts.
      {"CopyExpertsWithoutOriX", Set(&C::copy, 1), kTiling, {"oriX"}, {}, v3},
      // The dtype before the rules: oriX of another dtype than expandX, with commQuantMode out of range too.
      {"OriXFp16AndCommQuantMode3", All<C>({Make(&C::ori_x, ACL_FLOAT16, {kBs, kH}), Set(&C::comm_quant, 3)}),
       kInvalid, {"oriX"}, {"fp16"}, v3},
      {"XActiveMaskInt32AndCommQuantMode3", All<C>({Make(&C::mask, ACL_INT32, {kBs}), Set(&C::comm_quant, 3)}),
       kInvalid, {"xActiveMask"}, {"int32"}, v2},
      {"ConstExpertsWithoutAlpha1", All<C>({const_inputs, Set(&C::alpha1, nullptr)}), kTiling,
       {"constExpertAlpha1"}, {}, v3},
      {"ConstExpertsWithoutAlpha2", All<C>({const_inputs, Set(&C::alpha2, nullptr)}), kTiling,
       {"constExpertAlpha2"}, {}, v3},
      {"ConstExpertsWithoutV", All<C>({const_inputs, Set(&C::const_v, nullptr)}), kTiling, {"constExpertV"}, {},
       v3},
      {"ConstExpertsWithoutOriX", All<C>({const_inputs, Set(&C::ori_x, nullptr)}), kTiling, {"oriX"}, {}, v3},
      {"ConstExpertVWrongShape", All<C>({const_inputs, Make(&C::const_v, ACL_BF16, {1, 1000})}), kTiling,
       {"constExpertV"}, {"1000"}, v3},
      // The alphas are rows of H (the dot-product-and-softmax form), not one scalar per const expert.
      {"ConstExpertAlpha1OneValue", All<C>({const_inputs, Make(&C::alpha1, ACL_BF16, {1})}), kTiling,
       {"constExpertAlpha1", "(constExpertNum, H)"}, {}, v3},
      {"ConstExpertAlpha2WrongH", All<C>({const_inputs, Make(&C::alpha2, ACL_BF16, {1, 1000})}), kTiling,
       {"constExpertAlpha2"}, {"1000"}, v3},
      // Given without const experts, a const tensor must still be (constExpertNum = 0, H), as CANN's tiling checks.
      {"ConstExpertVGivenWithoutConstExperts", Make(&C::const_v, ACL_BF16, {1, kH}), kTiling,
       {"constExpertV", "(constExpertNum, H) = (0, "}, {}, v3},
      {"OriXWrongShape", All<C>({Set(&C::copy, 1), Make(&C::ori_x, ACL_BF16, {3, kH})}), kTiling, {"oriX"}, {"3"},
       v3},
      {"ZeroExpertNumNegative", Set(&C::zero, -1), kTiling, {"zeroExpertNum"}, {"-1"}, v3},
      {"ElasticInfoWrongLength", Make(&C::elastic, ACL_INT32, {11}), kTiling, {"elasticInfo"}, {"11"}, v3},
      {"ElasticInfoSendCountsSizedForTheRole",
       All<C>({Make(&C::elastic, ACL_INT32, {12}), Set(&C::shared_num, 1), Set(&C::shared_rank_num, 1),
               Set(&C::moe, 6), Make(&C::ep_send, ACL_INT32, {4})}),
       kTiling, {"epSendCounts", ">= 8"}, {"(4,)"}, v3},
      // 1.4 AddRmsNorm.
      {"AddRmsNormResidualX2d", Make(&C::residual, ACL_BF16, {kBs, kH}), kTiling, {"residualX"}, {}, rms},
      {"AddRmsNormGammaWrongLength", Make(&C::gamma, ACL_BF16, {1000}), kTiling, {"gamma"}, {"1000"}, rms},
      {"AddRmsNormWithSharedExperts", shared_rank, kTiling, {"sharedExpertNum", "sharedExpertRankNum"}, {}, rms},
      {"AddRmsNormCommQuantMode2", Set(&C::comm_quant, 2), kTiling, {"commQuantMode"}, {"2"}, rms},
      {"AddRmsNormEpsNegative", Set(&C::norm_eps, -0.5f), kTiling, {"normEps"}, {"-0.5", "finite and >= 0"}, rms},
      {"AddRmsNormEpsNan", Set(&C::norm_eps, std::numeric_limits<float>::quiet_NaN()), kTiling, {"normEps"},
       {"nan", "finite and >= 0"}, rms},
  };
  // clang-format on
}

class CombineRule : public ::testing::TestWithParam<Rule<C>> {};
TEST_P(CombineRule, RejectedWithCodeAndMessage) { CheckRule(GetParam()); }
INSTANTIATE_TEST_SUITE_P(CapiValidation, CombineRule, ::testing::ValuesIn(CombineRules()), RuleName<C>);

// ----- BufferReset (docs/semantics.md 4.2)
// ----------------------------------------------------------------------------

using R = ResetArgs;
std::vector<Rule<R>> ResetRules() {
  const auto sized = [](int32_t e) { return All<R>({Set(&R::ep_world_size, e), Make(&R::elastic, ACL_INT32, {e})}); };
  // clang-format off
  return {
      {"ElasticInfoNull", Set(&R::elastic, nullptr), kNull, {"elasticInfo"}, {}},
      {"GroupEpNull", Set(&R::group_ep, nullptr), kNull, {"groupEp"}, {}},
      {"WorkspaceSizeNull", Set(&R::null_ws, true), kNull, {"workspaceSize"}, {}},
      {"ExecutorNull", Set(&R::null_exec, true), kNull, {"executor"}, {}},
      {"GroupEpEmpty", Set(&R::group_ep, ""), kInvalid, {"groupEp"}, {}},
      {"GroupEpTooLong", GroupEpNamed<R>(LongName()), kInvalid, {"groupEp"}, {"128"}},
      {"GroupEpUnterminated", GroupEpNamed<R>(UnterminatedName()), kInvalid, {"groupEp"}, {"at least 128"}},
      {"ElasticInfoInt64", Make(&R::elastic, ACL_INT64, {16}), kInvalid, {"elasticInfo"}, {"int64"}},
      {"ElasticInfoFractalNz", Make(&R::elastic, ACL_INT32, {16}, ACL_FORMAT_FRACTAL_NZ), kInvalid, {"elasticInfo"},
       {"nz"}},
      {"ElasticInfoWrongLength", Make(&R::elastic, ACL_INT32, {17}), kTiling, {"elasticInfo"}, {"17"}},
      {"ElasticInfo2d", Make(&R::elastic, ACL_INT32, {16, 1}), kTiling, {"elasticInfo"}, {"(16, 1) int32", "(epWorldSize,) = (16,)"}},
      {"EpWorldSize8", sized(8), kTiling, {"epWorldSize"}, {"8"}},
      {"EpWorldSize24", sized(24), kTiling, {"epWorldSize"}, {"24"}},
      {"EpWorldSize144", sized(144), kTiling, {"epWorldSize"}, {"144"}},
      {"EpWorldSizeNotCommunicatorSize", sized(32), kTiling, {"epWorldSize"},
       {"epWorldSize (32) must match the communicator's size 16"}},
      {"NeedSync2", Set(&R::need_sync, 2), kTiling, {"needSync"}, {"2"}},
      {"NeedSyncNegative", Set(&R::need_sync, -1), kTiling, {"needSync"}, {"-1"}},
      {"GroupEpIsNoCommunicator", Set(&R::group_ep, "no_such_group"), kTiling, {"groupEp"}, {"no_such_group"}},
      {"GroupEpHasNoRankOnThisDevice", GroupEp<R>(&Groups::elsewhere_name), kTiling, {"groupEp"}, {}},
  };
  // clang-format on
}

class ResetRule : public ::testing::TestWithParam<Rule<R>> {};
TEST_P(ResetRule, RejectedWithCodeAndMessage) { CheckRule(GetParam()); }
INSTANTIATE_TEST_SUITE_P(CapiValidation, ResetRule, ::testing::ValuesIn(ResetRules()), RuleName<R>);
// ---------------------------------------------------------------------------------------------------
// Positive controls: the bases and the accepted variants pass phase one with workspace 0.
// ---------------------------------------------------------------------------------------------------

TEST(CapiValidation, DispatchBaseAndAcceptedVariants) {
  ASSERT_NE(g_groups, nullptr);
  {
    Scratch s;
    D a = BaseDispatch(s);
    ExpectAccepted(a, "V2 base", &s);
  }
  const std::vector<std::pair<const char*, std::function<void(D&, Scratch&)>>> variants = {
      {"V3 base", [](D& a, Scratch&) { a.v3 = true; }},
      {"V3 special experts",
       [](D& a, Scratch&) {
         a.v3 = true;
         a.zero = 1;
         a.copy = 1;
         a.cnst = 1;
       }},
      {"sharedExpertNum 1 with 0 shared ranks", [](D& a, Scratch&) { a.shared_num = 1; }},
      {"shared experts (rank 0 is a shared rank)",
       [](D& a, Scratch& s) {
         a.shared_num = 1;
         a.shared_rank_num = 1;
         a.moe = 6;
         a.token_nums = s.T(ACL_INT64, {1});
         a.ep_recv = s.T(ACL_INT32, {4});
       }},
      {"tpWorldSize 1",
       [](D& a, Scratch& s) {
         a.tp_world_size = 1;
         a.tp_recv = s.T(ACL_INT32, {1});
       }},
      {"TP 2", [](D& a, Scratch& s) { MakeTp(a, s); }},
      {"quant 2 with smooth scales",
       [](D& a, Scratch& s) {
         MakeQuant(a, s);
         a.scales = s.T(ACL_FLOAT, {8, kH});
       }},
      {"A2-only expertScales / expandScalesOut (ignored)",
       [](D& a, Scratch& s) {
         a.expert_scales = s.T(ACL_FLOAT, {kBs, kK});
         a.expand_scales = s.T(ACL_FLOAT, {32});
       }},
      {"V3 elasticInfo on a shared-expert rank, counts sized for either role",
       [](D& a, Scratch& s) {
         a.v3 = true;
         a.elastic = s.T(ACL_INT32, {12});
         a.shared_num = 1;
         a.shared_rank_num = 1;
         a.moe = 6;
       }},
      {"commAlg fullmesh_v1 on a window fullmesh_v2 would not fit",
       [](D& a, Scratch& s) {
         a.group_ep = g_groups->window2_name.c_str();
         a.comm_alg = "fullmesh_v1";
         a.x = s.T(ACL_BF16, {40, 1200});
         a.ids = s.T(ACL_INT32, {40, kK});
         a.expand_x = s.T(ACL_BF16, {320, 1200});
         a.assist = s.T(ACL_INT32, {320 * 128});
       }},
      {"commAlg null", [](D& a, Scratch&) { a.comm_alg = nullptr; }},
      {"commAlg fullmesh_v1", [](D& a, Scratch&) { a.comm_alg = "fullmesh_v1"; }},
      {"2-D mask",
       [](D& a, Scratch& s) {
         a.mask = s.T(ACL_BOOL, {kBs, kK});
       }},
      {"globalBs with spare rows",
       [](D& a, Scratch& s) {
         a.global_bs = 24;
         a.expand_x = s.T(ACL_BF16, {48, kH});
         a.assist = s.T(ACL_INT32, {48 * 128});
       }},
      {"expandX with more rows than A",
       [](D& a, Scratch& s) {
         a.expand_x = s.T(ACL_BF16, {40, kH});
       }},
      {"H 8192 and Bs 512 on the default window",
       [](D& a, Scratch& s) {
         a.x = s.T(ACL_BF16, {512, 8192});
         a.ids = s.T(ACL_INT32, {512, kK});
         a.expand_x = s.T(ACL_BF16, {4096, 8192});
         a.dyn_scales = s.T(ACL_FLOAT, {4096});
         a.assist = s.T(ACL_INT32, {4096 * 3});
       }},
  };
  for (const auto& [what, mutate] : variants) {
    Scratch s;
    D a = BaseDispatch(s);
    mutate(a, s);
    ExpectAccepted(a, what);
  }
}

TEST(CapiValidation, CombineBaseAndAcceptedVariants) {
  ASSERT_NE(g_groups, nullptr);
  for (CombineOp op : {CombineOp::kV2, CombineOp::kV3, CombineOp::kAddRmsNorm}) {
    Scratch s;
    C a = BaseCombine(s, op);
    ExpectAccepted(a, "combine base", &s);
  }
  const std::vector<std::pair<const char*, std::function<void(C&, Scratch&)>>> variants = {
      {"groupListType 1", [](C& a, Scratch&) { a.group_list_type = 1; }},
      {"sharedExpertX 2-D",
       [](C& a, Scratch& s) {
         a.shared_x = s.T(ACL_BF16, {kBs, kH});
       }},
      {"sharedExpertX 3-D",
       [](C& a, Scratch& s) {
         a.shared_x = s.T(ACL_BF16, {kBs, 1, kH});
       }},
      {"commQuantMode 2", [](C& a, Scratch&) { a.comm_quant = 2; }},
      {"TP 2", [](C& a, Scratch& s) { MakeTp(a, s); }},
      {"tpSendCounts (0,) handed back from a dispatch without TP",
       [](C& a, Scratch& s) { a.tp_send = s.T(ACL_INT32, {0}); }},
      {"expandScales handed back from dispatch (only A2's hierarchy reads it)",
       [](C& a, Scratch& s) { a.expand_scales = s.T(ACL_FLOAT, {32}); }},
      {"V3 elasticInfo on a shared-expert rank, counts sized for either role",
       [](C& a, Scratch& s) {
         a.op = CombineOp::kV3;
         a.elastic = s.T(ACL_INT32, {12});
         a.shared_num = 1;
         a.shared_rank_num = 1;
         a.moe = 6;
       }},
      {"V3 copy and const experts",
       [](C& a, Scratch& s) {
         a.op = CombineOp::kV3;
         a.zero = 1;
         a.copy = 1;
         a.cnst = 2;
         a.ori_x = s.T(ACL_BF16, {kBs, kH});
         a.alpha1 = s.T(ACL_BF16, {2, kH});
         a.alpha2 = s.T(ACL_BF16, {2, kH});
         a.const_v = s.T(ACL_BF16, {2, kH});
       }},
  };
  for (const auto& [what, mutate] : variants) {
    Scratch s;
    C a = BaseCombine(s, CombineOp::kV2);
    mutate(a, s);
    ExpectAccepted(a, what);
  }
}

TEST(CapiValidation, BufferResetBaseAccepted) {
  ASSERT_NE(g_groups, nullptr);
  for (int32_t need_sync : {0, 1}) {
    Scratch s;
    R a = BaseReset(s);
    a.need_sync = need_sync;
    ExpectAccepted(a, need_sync ? "needSync 1" : "needSync 0");
  }
}

TEST(CapiValidation, PhaseTwoWithNullExecutorIsNullptrError) {
  ASSERT_NE(g_groups, nullptr);
  aclrtStream st = g_groups->stream;
  RecentErrMsg();
  EXPECT_EQ(aclnnMoeDistributeDispatchV2(nullptr, 0, nullptr, st), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_TRUE(NamesParam(RecentErrMsg(), "executor"));
  EXPECT_EQ(aclnnMoeDistributeDispatchV3(nullptr, 0, nullptr, st), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_EQ(aclnnMoeDistributeCombineV2(nullptr, 0, nullptr, st), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_EQ(aclnnMoeDistributeCombineV3(nullptr, 0, nullptr, st), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_EQ(aclnnMoeDistributeCombineAddRmsNorm(nullptr, 0, nullptr, st), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_EQ(aclnnMoeDistributeBufferReset(nullptr, 0, nullptr, st), ACLNN_ERR_PARAM_NULLPTR);
  // The stream is still usable: nothing was enqueued.
  EXPECT_EQ(aclrtSynchronizeStream(st), ACL_SUCCESS) << RecentErrMsg();
}

}  // namespace
}  // namespace moe_ep::capi_testing
