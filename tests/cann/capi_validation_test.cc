// C API validation: one case per rule of SPEC 1.1-1.4 and 4.2, each a single change to a valid base call of
// phase one (GetWorkspaceSize) on rank 0 of a communicator that lives on device 0 (phase one does not
// communicate). Each case checks the exact status (161001 / 161002 / 561002), that aclGetRecentErrMsg()
// names the parameter (and the value where it makes sense), that no tensor was touched (all are
// poisoned before, byte-compared after), and that phase two with the null executor returns 161001.
// Positive controls: every base call, and the accepted variants (n_s 1 with S 0, tpWorldSize 1,
// groupListType 1, A2-only parameters, 3-D sharedExpertX, TP, quant with smooth scales) succeed.
// Communicators: EP 4 on devices 0-3, a TP pair on devices 0 and 4, a pair on devices 5-6 (a name that has
// no rank on device 0), 16 ranks for BufferReset, and EP 4 created with HCCL_BUFFSIZE=1 (window too small).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <functional>

#include "cann/capi_support.h"

namespace moe_ep::capi_testing {
namespace {

// ---------------------------------------------------------------------------------------------------
// Communicators shared by every case
// ---------------------------------------------------------------------------------------------------

struct Groups {
  std::vector<HcclComm> ep4, tp_pair, elsewhere, reset16, small4;
  std::string ep4_name, tp_name, elsewhere_name, reset16_name, small4_name;
  aclrtStream stream = nullptr;
};
Groups* g_groups = nullptr;

class GroupsEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    EnsureAclReady();
    ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS) << RecentErrMsg();
    g_groups = new Groups;
    Groups& g = *g_groups;
    g.ep4 = CreateGroup({0, 1, 2, 3});
    g.tp_pair = CreateGroup({0, 4});
    g.elsewhere = CreateGroup({5, 6});
    std::vector<int32_t> all(16);
    for (int i = 0; i < 16; ++i) all[i] = i;
    g.reset16 = CreateGroup(all);
    {
      ScopedEnv one_mb("HCCL_BUFFSIZE", "1");
      g.small4 = CreateGroup({0, 1, 2, 3});
    }
    g.ep4_name = CommName(g.ep4[0]);
    g.tp_name = CommName(g.tp_pair[0]);
    g.elsewhere_name = CommName(g.elsewhere[0]);
    g.reset16_name = CommName(g.reset16[0]);
    g.small4_name = CommName(g.small4[0]);
    ASSERT_EQ(aclrtCreateStream(&g.stream), ACL_SUCCESS) << RecentErrMsg();
  }
  void TearDown() override {
    if (g_groups == nullptr) return;
    Groups& g = *g_groups;
    for (auto* group : {&g.ep4, &g.tp_pair, &g.elsewhere, &g.reset16, &g.small4}) {
      for (HcclComm c : *group) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);
    }
    if (g.stream != nullptr) {
      EXPECT_EQ(aclrtDestroyStream(g.stream), ACL_SUCCESS);
    }
    aclrtResetDevice(0);
    delete g_groups;
    g_groups = nullptr;
  }
};
[[maybe_unused]] ::testing::Environment* const g_environment =
    ::testing::AddGlobalTestEnvironment(new GroupsEnvironment);

// ---------------------------------------------------------------------------------------------------
// Message checks
// ---------------------------------------------------------------------------------------------------

bool IdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// `name` appears as a whole identifier, optionally followed by "Out" or "Optional".
bool NamesParam(const std::string& msg, const std::string& name) {
  for (size_t pos = msg.find(name); pos != std::string::npos; pos = msg.find(name, pos + 1)) {
    if (pos > 0 && IdentChar(msg[pos - 1])) continue;
    size_t end = pos + name.size();
    for (const char* suffix : {"Optional", "Out"}) {
      if (msg.compare(end, std::strlen(suffix), suffix) == 0) {
        end += std::strlen(suffix);
        break;
      }
    }
    if (end >= msg.size() || !IdentChar(msg[end])) return true;
  }
  return false;
}

// Case-insensitive; a number must not be part of a longer number; "a|b" accepts either.
bool ContainsOneValue(const std::string& msg, const std::string& value);
bool ContainsValue(const std::string& msg, const std::string& value) {
  size_t start = 0;
  for (size_t bar = value.find('|'); bar != std::string::npos; start = bar + 1, bar = value.find('|', start)) {
    if (ContainsOneValue(msg, value.substr(start, bar - start))) return true;
  }
  return ContainsOneValue(msg, value.substr(start));
}
bool ContainsOneValue(const std::string& msg, const std::string& value) {
  std::string m = msg, v = value;
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return std::tolower(c); });
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
  const bool numeric = !v.empty() && (std::isdigit(static_cast<unsigned char>(v[0])) || v[0] == '-');
  for (size_t pos = m.find(v); pos != std::string::npos; pos = m.find(v, pos + 1)) {
    if (!numeric) return true;
    const bool before_ok = pos == 0 || !std::isdigit(static_cast<unsigned char>(m[pos - 1]));
    const size_t end = pos + v.size();
    const bool after_ok = end >= m.size() || !std::isdigit(static_cast<unsigned char>(m[end]));
    if (before_ok && after_ok) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------
// Arguments and the calls
// ---------------------------------------------------------------------------------------------------

// Every tensor a case creates (inputs and outputs alike are poisoned and must stay so).
struct Scratch {
  std::vector<Tensor> tensors;
  aclTensor* T(aclDataType dtype, std::vector<int64_t> dims, aclFormat format = ACL_FORMAT_ND) {
    tensors.emplace_back(dtype, std::move(dims), nullptr, format);
    return tensors.back().get();
  }
};

constexpr int64_t kBs = 4, kH = 1024, kK = 2;

struct DispatchArgs {
  bool v3 = false;
  const aclTensor *x = nullptr, *ids = nullptr, *scales = nullptr, *mask = nullptr, *expert_scales = nullptr,
                  *elastic = nullptr;
  const char* group_ep = nullptr;
  int64_t ep_world_size = 4, ep_rank = 0, moe = 8;
  const char* group_tp = "";
  int64_t tp_world_size = 0, tp_rank = 0, shard_type = 0, shared_num = 0, shared_rank_num = 0, quant = 0, global_bs = 0,
          token_nums_type = 1;
  const char* comm_alg = "";
  int64_t zero = 0, copy = 0, cnst = 0;
  aclTensor *expand_x = nullptr, *dyn_scales = nullptr, *assist = nullptr, *token_nums = nullptr, *ep_recv = nullptr,
            *tp_recv = nullptr, *expand_scales = nullptr;
  uint64_t ws_storage = 77;
  aclOpExecutor* exec_storage = nullptr;
  uint64_t* ws = &ws_storage;
  aclOpExecutor** exec = &exec_storage;
  std::string group_ep_storage, group_tp_storage;  // for long names
};

// E 4, rank 0, 8 experts (L 2), K 2, Bs 4, H 1024, bf16, no TP: A = Bs * E * min(L, K) = 32.
DispatchArgs BaseDispatch(Scratch& s) {
  DispatchArgs a;
  a.x = s.T(ACL_BF16, {kBs, kH});
  a.ids = s.T(ACL_INT32, {kBs, kK});
  a.group_ep = g_groups->ep4_name.c_str();
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

aclnnStatus Call(const DispatchArgs& a) {
  if (a.v3) {
    return aclnnMoeDistributeDispatchV3GetWorkspaceSize(
        a.x, a.ids, a.scales, a.mask, a.expert_scales, a.elastic, a.group_ep, a.ep_world_size, a.ep_rank, a.moe,
        a.group_tp, a.tp_world_size, a.tp_rank, a.shard_type, a.shared_num, a.shared_rank_num, a.quant, a.global_bs,
        a.token_nums_type, a.comm_alg, a.zero, a.copy, a.cnst, a.expand_x, a.dyn_scales, a.assist, a.token_nums,
        a.ep_recv, a.tp_recv, a.expand_scales, a.ws, a.exec);
  }
  return aclnnMoeDistributeDispatchV2GetWorkspaceSize(
      a.x, a.ids, a.scales, a.mask, a.expert_scales, a.group_ep, a.ep_world_size, a.ep_rank, a.moe, a.group_tp,
      a.tp_world_size, a.tp_rank, a.shard_type, a.shared_num, a.shared_rank_num, a.quant, a.global_bs,
      a.token_nums_type, a.comm_alg, a.expand_x, a.dyn_scales, a.assist, a.token_nums, a.ep_recv, a.tp_recv,
      a.expand_scales, a.ws, a.exec);
}

aclnnStatus PhaseTwoNull(const DispatchArgs& a) {
  return a.v3 ? aclnnMoeDistributeDispatchV3(nullptr, 0, nullptr, g_groups->stream)
              : aclnnMoeDistributeDispatchV2(nullptr, 0, nullptr, g_groups->stream);
}

enum class CombineOp { kV2, kV3, kAddRmsNorm };

struct CombineArgs {
  CombineOp op = CombineOp::kV2;
  const aclTensor *expand_x = nullptr, *ids = nullptr, *assist = nullptr, *ep_send = nullptr, *scales = nullptr,
                  *residual = nullptr, *gamma = nullptr, *tp_send = nullptr, *mask = nullptr,
                  *activation_scale = nullptr, *weight_scale = nullptr, *group_list = nullptr, *expand_scales = nullptr,
                  *shared_x = nullptr, *elastic = nullptr, *ori_x = nullptr, *alpha1 = nullptr, *alpha2 = nullptr,
                  *const_v = nullptr;
  const char* group_ep = nullptr;
  int64_t ep_world_size = 4, ep_rank = 0, moe = 8;
  const char* group_tp = "";
  int64_t tp_world_size = 0, tp_rank = 0, shard_type = 0, shared_num = 0, shared_rank_num = 0, global_bs = 0,
          out_dtype = 0, comm_quant = 0, group_list_type = 0;
  const char* comm_alg = "";
  int64_t zero = 0, copy = 0, cnst = 0;
  float norm_eps = 1e-6f;
  aclTensor *x_out = nullptr, *y_out = nullptr, *rstd_out = nullptr;
  uint64_t ws_storage = 77;
  aclOpExecutor* exec_storage = nullptr;
  uint64_t* ws = &ws_storage;
  aclOpExecutor** exec = &exec_storage;
  std::string group_ep_storage, group_tp_storage;
};

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

aclnnStatus Call(const CombineArgs& a) {
  switch (a.op) {
    case CombineOp::kV2:
      return aclnnMoeDistributeCombineV2GetWorkspaceSize(
          a.expand_x, a.ids, a.assist, a.ep_send, a.scales, a.tp_send, a.mask, a.activation_scale, a.weight_scale,
          a.group_list, a.expand_scales, a.shared_x, a.group_ep, a.ep_world_size, a.ep_rank, a.moe, a.group_tp,
          a.tp_world_size, a.tp_rank, a.shard_type, a.shared_num, a.shared_rank_num, a.global_bs, a.out_dtype,
          a.comm_quant, a.group_list_type, a.comm_alg, a.x_out, a.ws, a.exec);
    case CombineOp::kV3:
      return aclnnMoeDistributeCombineV3GetWorkspaceSize(
          a.expand_x, a.ids, a.assist, a.ep_send, a.scales, a.tp_send, a.mask, a.activation_scale, a.weight_scale,
          a.group_list, a.expand_scales, a.shared_x, a.elastic, a.ori_x, a.alpha1, a.alpha2, a.const_v, a.group_ep,
          a.ep_world_size, a.ep_rank, a.moe, a.group_tp, a.tp_world_size, a.tp_rank, a.shard_type, a.shared_num,
          a.shared_rank_num, a.global_bs, a.out_dtype, a.comm_quant, a.group_list_type, a.comm_alg, a.zero, a.copy,
          a.cnst, a.x_out, a.ws, a.exec);
    case CombineOp::kAddRmsNorm:
      return aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize(
          a.expand_x, a.ids, a.assist, a.ep_send, a.scales, a.residual, a.gamma, a.tp_send, a.mask, a.activation_scale,
          a.weight_scale, a.group_list, a.expand_scales, a.shared_x, a.group_ep, a.ep_world_size, a.ep_rank, a.moe,
          a.group_tp, a.tp_world_size, a.tp_rank, a.shard_type, a.shared_num, a.shared_rank_num, a.global_bs,
          a.out_dtype, a.comm_quant, a.group_list_type, a.comm_alg, a.norm_eps, a.y_out, a.rstd_out, a.x_out, a.ws,
          a.exec);
  }
  return -1;
}

aclnnStatus PhaseTwoNull(const CombineArgs& a) {
  switch (a.op) {
    case CombineOp::kV2:
      return aclnnMoeDistributeCombineV2(nullptr, 0, nullptr, g_groups->stream);
    case CombineOp::kV3:
      return aclnnMoeDistributeCombineV3(nullptr, 0, nullptr, g_groups->stream);
    case CombineOp::kAddRmsNorm:
      return aclnnMoeDistributeCombineAddRmsNorm(nullptr, 0, nullptr, g_groups->stream);
  }
  return -1;
}

struct ResetArgs {
  const aclTensor* elastic = nullptr;
  const char* group_ep = nullptr;
  int32_t ep_world_size = 16, need_sync = 1;
  uint64_t ws_storage = 77;
  aclOpExecutor* exec_storage = nullptr;
  uint64_t* ws = &ws_storage;
  aclOpExecutor** exec = &exec_storage;
  std::string group_ep_storage;
};

ResetArgs BaseReset(Scratch& s) {
  ResetArgs a;
  a.elastic = s.T(ACL_INT32, {16});
  a.group_ep = g_groups->reset16_name.c_str();
  return a;
}

aclnnStatus Call(const ResetArgs& a) {
  return aclnnMoeDistributeBufferResetGetWorkspaceSize(a.elastic, a.group_ep, a.ep_world_size, a.need_sync, a.ws,
                                                       a.exec);
}
aclnnStatus PhaseTwoNull(const ResetArgs&) {
  return aclnnMoeDistributeBufferReset(nullptr, 0, nullptr, g_groups->stream);
}

// ---------------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------------

template <typename Args>
struct Rule {
  std::string name;                             // test name
  std::function<void(Args&, Scratch&)> mutate;  // the one change from the base call
  aclnnStatus code;
  std::vector<std::string> names;   // the message names at least one of these parameters
  std::vector<std::string> values;  // ... and contains every one of these
  CombineOp op = CombineOp::kV2;    // combine cases only
};

template <typename Args>
void PrintTo(const Rule<Args>& rule, std::ostream* os) {
  *os << rule.name;
}

template <typename Args>
std::string RuleName(const ::testing::TestParamInfo<Rule<Args>>& info) {
  return info.param.name;
}

template <typename Args>
Args Base(Scratch& s, const Rule<Args>& rule);
template <>
DispatchArgs Base(Scratch& s, const Rule<DispatchArgs>&) {
  return BaseDispatch(s);
}
template <>
CombineArgs Base(Scratch& s, const Rule<CombineArgs>& rule) {
  return BaseCombine(s, rule.op);
}
template <>
ResetArgs Base(Scratch& s, const Rule<ResetArgs>&) {
  return BaseReset(s);
}

template <typename Args>
void CheckRule(const Rule<Args>& rule) {
  ASSERT_NE(g_groups, nullptr);
  Scratch s;
  Args args = Base(s, rule);
  rule.mutate(args, s);
  RecentErrMsg();  // clear
  const aclnnStatus status = Call(args);
  const std::string msg = RecentErrMsg();
  ::testing::Test::RecordProperty("message", msg);  // in --gtest_output=xml
  EXPECT_EQ(status, rule.code) << "message: " << msg;
  bool named = rule.names.empty();
  for (const auto& n : rule.names) named = named || NamesParam(msg, n);
  EXPECT_TRUE(named) << "the message should name one of {" << ::testing::PrintToString(rule.names) << "}: " << msg;
  for (const auto& v : rule.values)
    EXPECT_TRUE(ContainsValue(msg, v)) << "the message should contain '" << v << "': " << msg;
  for (size_t i = 0; i < s.tensors.size(); ++i) {
    EXPECT_TRUE(s.tensors[i].AllBytesAre(kPoison)) << "tensor #" << i << " was written by a failing phase one";
  }
  EXPECT_EQ(PhaseTwoNull(args), ACLNN_ERR_PARAM_NULLPTR) << "phase two with the null executor";
}

const std::string kLongName(128, 'g');  // length 128: one past the limit

// ----- DispatchV2 / V3 ----------------------------------------------------------------------------------

using D = DispatchArgs;
std::vector<Rule<D>> DispatchRules() {
  const aclnnStatus kNull = ACLNN_ERR_PARAM_NULLPTR, kInvalid = ACLNN_ERR_PARAM_INVALID,
                    kTiling = ACLNN_ERR_INNER_TILING_ERROR;
  return {
      // 1.1 null pointers and group names (161001 in dispatch).
      {"XNull", [](D& a, Scratch&) { a.x = nullptr; }, kNull, {"x"}, {}},
      {"ExpertIdsNull", [](D& a, Scratch&) { a.ids = nullptr; }, kNull, {"expertIds"}, {}},
      {"ExpandXOutNull", [](D& a, Scratch&) { a.expand_x = nullptr; }, kNull, {"expandX"}, {}},
      {"AssistInfoOutNull", [](D& a, Scratch&) { a.assist = nullptr; }, kNull, {"assistInfoForCombine"}, {}},
      {"ExpertTokenNumsOutNull", [](D& a, Scratch&) { a.token_nums = nullptr; }, kNull, {"expertTokenNums"}, {}},
      {"EpRecvCountsOutNull", [](D& a, Scratch&) { a.ep_recv = nullptr; }, kNull, {"epRecvCounts"}, {}},
      {"TpRecvCountsOutNull", [](D& a, Scratch&) { a.tp_recv = nullptr; }, kNull, {"tpRecvCounts"}, {}},
      {"GroupEpNull", [](D& a, Scratch&) { a.group_ep = nullptr; }, kNull, {"groupEp"}, {}},
      {"GroupEpEmpty", [](D& a, Scratch&) { a.group_ep = ""; }, kNull, {"groupEp"}, {}},
      {"DynamicScalesOutNullWithQuant2",
       [](D& a, Scratch& s) {
         MakeQuant(a, s);
         a.dyn_scales = nullptr;
       },
       kNull,
       {"dynamicScales"},
       {}},
      {"WorkspaceSizeNull", [](D& a, Scratch&) { a.ws = nullptr; }, kNull, {"workspaceSize"}, {}},
      {"ExecutorNull", [](D& a, Scratch&) { a.exec = nullptr; }, kNull, {"executor"}, {}},
      {"GroupEpTooLong",
       [](D& a, Scratch&) {
         a.group_ep_storage = kLongName;
         a.group_ep = a.group_ep_storage.c_str();
       },
       kNull,
       {"groupEp"},
       {"128"}},
      {"GroupTpTooLong",
       [](D& a, Scratch&) {
         a.group_tp_storage = kLongName;
         a.group_tp = a.group_tp_storage.c_str();
       },
       kNull,
       {"groupTp"},
       {"128"}},
      // 1.1 dtypes outside the op definition (161002).
      {"XInt16",
       [](D& a, Scratch& s) {
         a.x = s.T(ACL_INT16, {kBs, kH});
       },
       kInvalid,
       {"x"},
       {"int16|6"}},
      {"XFloat32",
       [](D& a, Scratch& s) {
         a.x = s.T(ACL_FLOAT, {kBs, kH});
       },
       kInvalid,
       {"x"},
       {"float"}},
      {"ExpertIdsInt64",
       [](D& a, Scratch& s) {
         a.ids = s.T(ACL_INT64, {kBs, kK});
       },
       kInvalid,
       {"expertIds"},
       {"int64"}},
      {"ScalesFloat16",
       [](D& a, Scratch& s) {
         MakeQuant(a, s);
         a.scales = s.T(ACL_FLOAT16, {8, kH});
       },
       kInvalid,
       {"scales"},
       {}},
      {"XActiveMaskInt8", [](D& a, Scratch& s) { a.mask = s.T(ACL_INT8, {kBs}); }, kInvalid, {"xActiveMask"}, {"int8"}},
      {"ExpertTokenNumsInt32",
       [](D& a, Scratch& s) { a.token_nums = s.T(ACL_INT32, {2}); },
       kInvalid,
       {"expertTokenNums"},
       {"int32"}},
      {"EpRecvCountsInt64",
       [](D& a, Scratch& s) { a.ep_recv = s.T(ACL_INT64, {8}); },
       kInvalid,
       {"epRecvCounts"},
       {"int64"}},
      {"TpRecvCountsInt64",
       [](D& a, Scratch& s) { a.tp_recv = s.T(ACL_INT64, {0}); },
       kInvalid,
       {"tpRecvCounts"},
       {"int64"}},
      {"AssistInfoInt64",
       [](D& a, Scratch& s) { a.assist = s.T(ACL_INT64, {32 * 128}); },
       kInvalid,
       {"assistInfoForCombine"},
       {"int64"}},
      {"DynamicScalesFloat16",
       [](D& a, Scratch& s) {
         MakeQuant(a, s);
         a.dyn_scales = s.T(ACL_FLOAT16, {32});
       },
       kInvalid,
       {"dynamicScales"},
       {}},
      // 1.2 formats and dtype combinations (tiling re-checks, 561002).
      {"XFractalNz",
       [](D& a, Scratch& s) {
         a.x = s.T(ACL_BF16, {kBs, kH}, ACL_FORMAT_FRACTAL_NZ);
       },
       kTiling,
       {"x"},
       {"nz"}},
      {"ExpandXFractalNz",
       [](D& a, Scratch& s) {
         a.expand_x = s.T(ACL_BF16, {32, kH}, ACL_FORMAT_FRACTAL_NZ);
       },
       kTiling,
       {"expandX"},
       {"nz"}},
      // (x bf16, expandX fp16) is no combination of the op definition (161002); (bf16, int8) and (bf16, bf16)
      // are, so only the tiling's quantMode-dependent re-check rejects them (561002, SPEC 1.2).
      {"ExpandXDtypeDiffersFromX",
       [](D& a, Scratch& s) {
         a.expand_x = s.T(ACL_FLOAT16, {32, kH});
       },
       kInvalid,
       {"expandX"},
       {}},
      {"ExpandXNotInt8WithQuant2",
       [](D& a, Scratch& s) {
         MakeQuant(a, s);
         a.expand_x = s.T(ACL_BF16, {32, kH});
       },
       kTiling,
       {"expandX"},
       {}},
      {"ExpandXInt8WithoutQuant",
       [](D& a, Scratch& s) {
         a.expand_x = s.T(ACL_INT8, {32, kH});
       },
       kTiling,
       {"expandX"},
       {}},
      // 1.2 attributes.
      {"QuantMode1", [](D& a, Scratch&) { a.quant = 1; }, kTiling, {"quantMode"}, {"1"}},
      {"QuantMode3", [](D& a, Scratch&) { a.quant = 3; }, kTiling, {"quantMode"}, {"3"}},
      {"ScalesWithQuant0",
       [](D& a, Scratch& s) {
         a.scales = s.T(ACL_FLOAT, {8, kH});
       },
       kTiling,
       {"scales"},
       {}},
      {"CommAlgUnknown", [](D& a, Scratch&) { a.comm_alg = "bogus_alg"; }, kTiling, {"commAlg"}, {"bogus_alg"}},
      {"FullmeshV2With2dMask",
       [](D& a, Scratch& s) {
         a.comm_alg = "fullmesh_v2";
         a.mask = s.T(ACL_BOOL, {kBs, kK});
       },
       kTiling,
       {"commAlg", "xActiveMask"},
       {}},
      {"EpWorldSize1", [](D& a, Scratch&) { a.ep_world_size = 1; }, kTiling, {"epWorldSize"}, {"1"}},
      {"EpWorldSize769", [](D& a, Scratch&) { a.ep_world_size = 769; }, kTiling, {"epWorldSize"}, {"769"}},
      {"TpWorldSize3", [](D& a, Scratch&) { a.tp_world_size = 3; }, kTiling, {"tpWorldSize"}, {"3"}},
      {"EpRankIdNegative", [](D& a, Scratch&) { a.ep_rank = -1; }, kTiling, {"epRankId"}, {"-1"}},
      {"EpRankIdNotBelowEpWorldSize", [](D& a, Scratch&) { a.ep_rank = 4; }, kTiling, {"epRankId"}, {"4"}},
      {"TpRankIdOutOfRangeWithTp",
       [](D& a, Scratch& s) {
         MakeTp(a, s);
         a.tp_rank = 2;
       },
       kTiling,
       {"tpRankId"},
       {"2"}},
      {"GroupTpEmptyWithTp",
       [](D& a, Scratch& s) {
         MakeTp(a, s);
         a.group_tp = "";
       },
       kTiling,
       {"groupTp"},
       {}},
      {"TpRankIdNonZeroWithoutTp", [](D& a, Scratch&) { a.tp_rank = 1; }, kTiling, {"tpRankId"}, {"1"}},
      {"ExpertShardType1", [](D& a, Scratch&) { a.shard_type = 1; }, kTiling, {"expertShardType"}, {"1"}},
      {"SharedExpertNum5",
       [](D& a, Scratch&) {
         a.shared_num = 5;
         a.shared_rank_num = 0;
       },
       kTiling,
       {"sharedExpertNum"},
       {"5"}},
      {"SharedExpertRankNumNotBelowE",
       [](D& a, Scratch&) {
         a.shared_num = 1;
         a.shared_rank_num = 4;
       },
       kTiling,
       {"sharedExpertRankNum"},
       {"4"}},
      {"SharedRanksWithoutSharedExperts",
       [](D& a, Scratch&) {
         a.shared_num = 0;
         a.shared_rank_num = 1;
       },
       kTiling,
       {"sharedExpertNum", "sharedExpertRankNum"},
       {}},
      {"SharedRankNumNotMultipleOfSharedNum",
       [](D& a, Scratch&) {
         a.shared_num = 2;
         a.shared_rank_num = 3;
       },
       kTiling,
       {"sharedExpertRankNum", "sharedExpertNum"},
       {}},
      {"MoeExpertNum0", [](D& a, Scratch&) { a.moe = 0; }, kTiling, {"moeExpertNum"}, {"0"}},
      {"MoeExpertNum1025", [](D& a, Scratch&) { a.moe = 1025; }, kTiling, {"moeExpertNum"}, {"1025"}},
      {"MoeExpertNumNotMultipleOfMoeRanks", [](D& a, Scratch&) { a.moe = 7; }, kTiling, {"moeExpertNum"}, {"7"}},
      {"LocalExpertsTimesEAbove2048",
       [](D& a, Scratch& s) {  // E 4 with 3 shared ranks: L = 1023, L * E = 4092; rank 0 is a shared rank
         a.shared_num = 1;
         a.shared_rank_num = 3;
         a.moe = 1023;
         a.token_nums = s.T(ACL_INT64, {1});
         a.ep_recv = s.T(ACL_INT32, {4});
       },
       kTiling,
       {"moeExpertNum", "localExpertNum", "epWorldSize"},
       {}},
      {"ExpertTokenNumsType2", [](D& a, Scratch&) { a.token_nums_type = 2; }, kTiling, {"expertTokenNumsType"}, {"2"}},
      {"TpWithTwoLocalExperts",
       [](D& a, Scratch& s) {
         MakeTp(a, s);
         a.moe = 8;
         a.token_nums = s.T(ACL_INT64, {2});
       },
       kTiling,
       {"moeExpertNum", "localExpertNum", "tpWorldSize"},
       {}},
      {"ZeroExpertNumNegative",
       [](D& a, Scratch&) {
         a.v3 = true;
         a.zero = -1;
       },
       kTiling,
       {"zeroExpertNum"},
       {"-1"}},
      {"CopyExpertNumNegative",
       [](D& a, Scratch&) {
         a.v3 = true;
         a.copy = -2;
       },
       kTiling,
       {"copyExpertNum"},
       {"-2"}},
      {"ConstExpertNumNegative",
       [](D& a, Scratch&) {
         a.v3 = true;
         a.cnst = -3;
       },
       kTiling,
       {"constExpertNum"},
       {"-3"}},
      {"SpecialExpertCountOverflowsInt32",
       [](D& a, Scratch&) {
         a.v3 = true;
         a.zero = INT32_MAX;
       },
       kTiling,
       {"zeroExpertNum", "moeExpertNum", "copyExpertNum", "constExpertNum"},
       {}},
      // 1.2 shapes.
      {"X3d",
       [](D& a, Scratch& s) {
         a.x = s.T(ACL_BF16, {kBs, 1, kH});
       },
       kTiling,
       {"x"},
       {}},
      {"X1d", [](D& a, Scratch& s) { a.x = s.T(ACL_BF16, {kBs * kH}); }, kTiling, {"x"}, {}},
      {"ExpertIds1d", [](D& a, Scratch& s) { a.ids = s.T(ACL_INT32, {kBs * kK}); }, kTiling, {"expertIds"}, {}},
      {"ExpertIdsRowsDifferFromBs",
       [](D& a, Scratch& s) {
         a.ids = s.T(ACL_INT32, {3, kK});
       },
       kTiling,
       {"expertIds"},
       {"3"}},
      {"ScalesShapeNotSharedPlusMoeByH",
       [](D& a, Scratch& s) {
         MakeQuant(a, s);
         a.scales = s.T(ACL_FLOAT, {9, kH});
       },
       kTiling,
       {"scales"},
       {"9"}},
      {"Scales1d",
       [](D& a, Scratch& s) {
         MakeQuant(a, s);
         a.scales = s.T(ACL_FLOAT, {8 * kH});
       },
       kTiling,
       {"scales"},
       {}},
      {"Mask1dWrongLength", [](D& a, Scratch& s) { a.mask = s.T(ACL_BOOL, {5}); }, kTiling, {"xActiveMask"}, {"5"}},
      {"Mask2dWrongK",
       [](D& a, Scratch& s) {
         a.mask = s.T(ACL_BOOL, {kBs, 3});
       },
       kTiling,
       {"xActiveMask"},
       {"3"}},
      {"Mask3d",
       [](D& a, Scratch& s) {
         a.mask = s.T(ACL_BOOL, {kBs, kK, 1});
       },
       kTiling,
       {"xActiveMask"},
       {}},
      {"ExpandX1d", [](D& a, Scratch& s) { a.expand_x = s.T(ACL_BF16, {32 * kH}); }, kTiling, {"expandX"}, {}},
      {"ExpandXFewerRowsThanA",
       [](D& a, Scratch& s) {
         a.expand_x = s.T(ACL_BF16, {31, kH});
       },
       kTiling,
       {"expandX"},
       {"31"}},
      {"ExpandXWrongH",
       [](D& a, Scratch& s) {
         a.expand_x = s.T(ACL_BF16, {32, kH + 1});
       },
       kTiling,
       {"expandX"},
       {"1025"}},
      {"DynamicScalesShorterThanA",
       [](D& a, Scratch& s) {
         MakeQuant(a, s);
         a.dyn_scales = s.T(ACL_FLOAT, {31});
       },
       kTiling,
       {"dynamicScales"},
       {"31"}},
      {"DynamicScales2d",
       [](D& a, Scratch& s) {
         MakeQuant(a, s);
         a.dyn_scales = s.T(ACL_FLOAT, {32, 1});
       },
       kTiling,
       {"dynamicScales"},
       {}},
      {"AssistInfoShorterThan3A",
       [](D& a, Scratch& s) { a.assist = s.T(ACL_INT32, {95}); },
       kTiling,
       {"assistInfoForCombine"},
       {"95"}},
      {"AssistInfo2d",
       [](D& a, Scratch& s) {
         a.assist = s.T(ACL_INT32, {32, 128});
       },
       kTiling,
       {"assistInfoForCombine"},
       {}},
      {"ExpertTokenNumsNotL",
       [](D& a, Scratch& s) { a.token_nums = s.T(ACL_INT64, {3}); },
       kTiling,
       {"expertTokenNums"},
       {"3"}},
      {"EpRecvCountsShorterThanEL",
       [](D& a, Scratch& s) { a.ep_recv = s.T(ACL_INT32, {7}); },
       kTiling,
       {"epRecvCounts"},
       {"7"}},
      {"TpRecvCountsLengthNotTpWorldSize",
       [](D& a, Scratch& s) { a.tp_recv = s.T(ACL_INT32, {2}); },
       kTiling,
       {"tpRecvCounts"},
       {"2"}},
      {"Bs0",
       [](D& a, Scratch& s) {
         a.x = s.T(ACL_BF16, {0, kH});
         a.ids = s.T(ACL_INT32, {0, kK});
       },
       kTiling,
       {"x", "Bs"},
       {"0"}},
      {"Bs513",
       [](D& a, Scratch& s) {
         a.x = s.T(ACL_BF16, {513, kH});
         a.ids = s.T(ACL_INT32, {513, kK});
         a.expand_x = s.T(ACL_BF16, {513 * 8, kH});
         a.assist = s.T(ACL_INT32, {513 * 8 * 128});
       },
       kTiling,
       {"x", "Bs"},
       {"513"}},
      {"GlobalBsNotMultipleOfE", [](D& a, Scratch&) { a.global_bs = 17; }, kTiling, {"globalBs"}, {"17"}},
      {"GlobalBsBelowBsTimesE", [](D& a, Scratch&) { a.global_bs = 12; }, kTiling, {"globalBs"}, {"12"}},
      {"GlobalBsAboveBsTimesEWithMask",
       [](D& a, Scratch& s) {
         a.global_bs = 20;
         a.mask = s.T(ACL_BOOL, {kBs});
         a.expand_x = s.T(ACL_BF16, {40, kH});
         a.assist = s.T(ACL_INT32, {40 * 128});
       },
       kTiling,
       {"globalBs", "xActiveMask"},
       {"20"}},
      {"H1023",
       [](D& a, Scratch& s) {
         a.x = s.T(ACL_BF16, {kBs, 1023});
         a.expand_x = s.T(ACL_BF16, {32, 1023});
       },
       kTiling,
       {"x", "H"},
       {"1023"}},
      {"H8193",
       [](D& a, Scratch& s) {
         a.x = s.T(ACL_BF16, {kBs, 8193});
         a.expand_x = s.T(ACL_BF16, {32, 8193});
       },
       kTiling,
       {"x", "H"},
       {"8193"}},
      {"TopK17",
       [](D& a, Scratch& s) {  // 32 experts (L 8): A = 16 * 8
         a.moe = 32;
         a.ids = s.T(ACL_INT32, {kBs, 17});
         a.expand_x = s.T(ACL_BF16, {128, kH});
         a.assist = s.T(ACL_INT32, {128 * 128});
         a.token_nums = s.T(ACL_INT64, {8});
         a.ep_recv = s.T(ACL_INT32, {32});
       },
       kTiling,
       {"expertIds", "K"},
       {"17"}},
      {"TopKAboveExpertCount",
       [](D& a, Scratch& s) {  // 4 experts, K 5
         a.moe = 4;
         a.ids = s.T(ACL_INT32, {kBs, 5});
         a.token_nums = s.T(ACL_INT64, {1});
         a.ep_recv = s.T(ACL_INT32, {4});
       },
       kTiling,
       {"expertIds", "K", "moeExpertNum"},
       {"5"}},
      // Communicators.
      {"GroupEpIsNoCommunicator",
       [](D& a, Scratch&) { a.group_ep = "no_such_group"; },
       kTiling,
       {"groupEp"},
       {"no_such_group"}},
      {"GroupEpHasNoRankOnThisDevice",
       [](D& a, Scratch&) { a.group_ep = g_groups->elsewhere_name.c_str(); },
       kTiling,
       {"groupEp"},
       {}},
      {"GroupTpIsNoCommunicator",
       [](D& a, Scratch& s) {
         MakeTp(a, s);
         a.group_tp = "no_such_tp_group";
       },
       kTiling,
       {"groupTp"},
       {"no_such_tp_group"}},
      {"EpWorldSizeNotCommunicatorSize",
       [](D& a, Scratch& s) {  // E 2 with 8 experts (L 4) is valid on its own; the communicator has 4 ranks
         a.ep_world_size = 2;
         a.token_nums = s.T(ACL_INT64, {4});
       },
       kTiling,
       {"epWorldSize"},
       {"2"}},
      {"EpRankIdNotCommunicatorRank", [](D& a, Scratch&) { a.ep_rank = 1; }, kTiling, {"epRankId"}, {"1"}},
      {"WindowTooSmall",
       [](D& a, Scratch& s) {  // HCCL_BUFFSIZE=1: H 8192, Bs 32 need 2*(32*16896*4*2 + 32*16384*2) bytes
         a.group_ep = g_groups->small4_name.c_str();
         a.x = s.T(ACL_BF16, {32, 8192});
         a.ids = s.T(ACL_INT32, {32, kK});
         a.expand_x = s.T(ACL_BF16, {256, 8192});
         a.dyn_scales = s.T(ACL_FLOAT, {256});
         a.assist = s.T(ACL_INT32, {256 * 128});
       },
       kTiling,
       {"HCCL_BUFFSIZE"},
       {"10747904"}},
      // V3 elasticInfo (type and shape; scale-down itself is not supported yet).
      {"ElasticInfoInt64",
       [](D& a, Scratch& s) {
         a.v3 = true;
         a.elastic = s.T(ACL_INT64, {12});
       },
       kInvalid,
       {"elasticInfo"},
       {"int64"}},
      {"ElasticInfoWrongLength",
       [](D& a, Scratch& s) {
         a.v3 = true;
         a.elastic = s.T(ACL_INT32, {11});
       },
       kTiling,
       {"elasticInfo"},
       {"11"}},
      {"ElasticInfoWithTp",
       [](D& a, Scratch& s) {
         MakeTp(a, s);
         a.v3 = true;
         a.elastic = s.T(ACL_INT32, {12});
       },
       kTiling,
       {"elasticInfo", "tpWorldSize"},
       {}},
  };
}

class DispatchRule : public ::testing::TestWithParam<Rule<D>> {};
TEST_P(DispatchRule, RejectedWithCodeAndMessage) { CheckRule(GetParam()); }
INSTANTIATE_TEST_SUITE_P(CapiValidation, DispatchRule, ::testing::ValuesIn(DispatchRules()), RuleName<D>);

// ----- CombineV2 / V3 / AddRmsNorm -----------------------------------------------------------------------

using C = CombineArgs;
std::vector<Rule<C>> CombineRules() {
  const aclnnStatus kNull = ACLNN_ERR_PARAM_NULLPTR, kInvalid = ACLNN_ERR_PARAM_INVALID,
                    kTiling = ACLNN_ERR_INNER_TILING_ERROR;
  const CombineOp v2 = CombineOp::kV2, v3 = CombineOp::kV3, rms = CombineOp::kAddRmsNorm;
  std::vector<Rule<C>> rules = {
      // 1.1 null pointers (161001); group names too long are 161002 in combine.
      {"ExpandXNull", [](C& a, Scratch&) { a.expand_x = nullptr; }, kNull, {"expandX"}, {}, v2},
      {"ExpertIdsNull", [](C& a, Scratch&) { a.ids = nullptr; }, kNull, {"expertIds"}, {}, v2},
      {"AssistInfoNull", [](C& a, Scratch&) { a.assist = nullptr; }, kNull, {"assistInfoForCombine"}, {}, v2},
      {"EpSendCountsNull", [](C& a, Scratch&) { a.ep_send = nullptr; }, kNull, {"epSendCounts"}, {}, v2},
      {"ExpertScalesNull", [](C& a, Scratch&) { a.scales = nullptr; }, kNull, {"expertScales"}, {}, v2},
      {"XOutNull", [](C& a, Scratch&) { a.x_out = nullptr; }, kNull, {"x"}, {}, v2},
      {"GroupEpNull", [](C& a, Scratch&) { a.group_ep = nullptr; }, kNull, {"groupEp"}, {}, v2},
      {"GroupEpEmpty", [](C& a, Scratch&) { a.group_ep = ""; }, kNull, {"groupEp"}, {}, v2},
      {"WorkspaceSizeNull", [](C& a, Scratch&) { a.ws = nullptr; }, kNull, {"workspaceSize"}, {}, v2},
      {"ExecutorNull", [](C& a, Scratch&) { a.exec = nullptr; }, kNull, {"executor"}, {}, v2},
      {"GroupEpTooLong",
       [](C& a, Scratch&) {
         a.group_ep_storage = kLongName;
         a.group_ep = a.group_ep_storage.c_str();
       },
       kInvalid,
       {"groupEp"},
       {"128"},
       v2},
      {"GroupTpTooLong",
       [](C& a, Scratch&) {
         a.group_tp_storage = kLongName;
         a.group_tp = a.group_tp_storage.c_str();
       },
       kInvalid,
       {"groupTp"},
       {"128"},
       v2},
      {"V3ExpandXNull", [](C& a, Scratch&) { a.expand_x = nullptr; }, kNull, {"expandX"}, {}, v3},
      {"V3GroupEpTooLong",
       [](C& a, Scratch&) {
         a.group_ep_storage = kLongName;
         a.group_ep = a.group_ep_storage.c_str();
       },
       kInvalid,
       {"groupEp"},
       {"128"},
       v3},
      {"AddRmsNormXOutNull", [](C& a, Scratch&) { a.x_out = nullptr; }, kNull, {"x"}, {}, rms},
      {"AddRmsNormResidualXNull", [](C& a, Scratch&) { a.residual = nullptr; }, kNull, {"residualX"}, {}, rms},
      {"AddRmsNormGammaNull", [](C& a, Scratch&) { a.gamma = nullptr; }, kNull, {"gamma"}, {}, rms},
      {"AddRmsNormYOutNull", [](C& a, Scratch&) { a.y_out = nullptr; }, kNull, {"y"}, {}, rms},
      {"AddRmsNormRstdOutNull", [](C& a, Scratch&) { a.rstd_out = nullptr; }, kNull, {"rstd"}, {}, rms},
      {"AddRmsNormGroupEpTooLong",
       [](C& a, Scratch&) {
         a.group_ep_storage = kLongName;
         a.group_ep = a.group_ep_storage.c_str();
       },
       kInvalid,
       {"groupEp"},
       {"128"},
       rms},
      // 1.1 dtypes (161002).
      {"ExpandXInt16",
       [](C& a, Scratch& s) {
         a.expand_x = s.T(ACL_INT16, {32, kH});
       },
       kInvalid,
       {"expandX"},
       {"int16|6"},
       v2},
      {"ExpandXFloat32",
       [](C& a, Scratch& s) {
         a.expand_x = s.T(ACL_FLOAT, {32, kH});
       },
       kInvalid,
       {"expandX"},
       {"float"},
       v2},
      {"ExpertIdsInt64",
       [](C& a, Scratch& s) {
         a.ids = s.T(ACL_INT64, {kBs, kK});
       },
       kInvalid,
       {"expertIds"},
       {"int64"},
       v2},
      {"ExpertScalesFloat16",
       [](C& a, Scratch& s) {
         a.scales = s.T(ACL_FLOAT16, {kBs, kK});
       },
       kInvalid,
       {"expertScales"},
       {},
       v2},
      {"AssistInfoInt64",
       [](C& a, Scratch& s) { a.assist = s.T(ACL_INT64, {32 * 128}); },
       kInvalid,
       {"assistInfoForCombine"},
       {"int64"},
       v2},
      {"EpSendCountsInt64",
       [](C& a, Scratch& s) { a.ep_send = s.T(ACL_INT64, {8}); },
       kInvalid,
       {"epSendCounts"},
       {"int64"},
       v2},
      {"AddRmsNormExpandXFloat16",
       [](C& a, Scratch& s) {
         a.expand_x = s.T(ACL_FLOAT16, {32, kH});
       },
       kInvalid,
       {"expandX"},
       {},
       rms},
      // 1.3 / 3.4 reserved parameters and attributes (561002).
      {"ActivationScaleGiven",
       [](C& a, Scratch& s) { a.activation_scale = s.T(ACL_FLOAT, {32}); },
       kTiling,
       {"activationScale"},
       {},
       v2},
      {"WeightScaleGiven",
       [](C& a, Scratch& s) { a.weight_scale = s.T(ACL_FLOAT, {32}); },
       kTiling,
       {"weightScale"},
       {},
       v2},
      {"GroupListGiven", [](C& a, Scratch& s) { a.group_list = s.T(ACL_INT64, {2}); }, kTiling, {"groupList"}, {}, v2},
      {"ExpandScalesGiven",
       [](C& a, Scratch& s) { a.expand_scales = s.T(ACL_FLOAT, {32}); },
       kTiling,
       {"expandScales"},
       {},
       v2},
      {"OutDtype1", [](C& a, Scratch&) { a.out_dtype = 1; }, kTiling, {"outDtype"}, {"1"}, v2},
      {"CommQuantMode1", [](C& a, Scratch&) { a.comm_quant = 1; }, kTiling, {"commQuantMode"}, {"1"}, v2},
      {"CommQuantMode2WithTp",
       [](C& a, Scratch& s) {
         MakeTp(a, s);
         a.comm_quant = 2;
       },
       kTiling,
       {"commQuantMode", "tpWorldSize"},
       {},
       v2},
      {"SharedExpertXWithSharedExpertRanks",
       [](C& a, Scratch& s) {
         a.shared_num = 1;
         a.shared_rank_num = 1;
         a.moe = 3;
         a.ep_send = s.T(ACL_INT32, {4});
         a.shared_x = s.T(ACL_BF16, {kBs, kH});
       },
       kTiling,
       {"sharedExpertX", "sharedExpertRankNum"},
       {},
       v2},
      {"SharedExpertXWrongShape",
       [](C& a, Scratch& s) {
         a.shared_x = s.T(ACL_BF16, {kBs, 1000});
       },
       kTiling,
       {"sharedExpertX"},
       {"1000"},
       v2},
      // Output x and sharedExpertX pair with expandX in the op definition's dtype combinations: 161002.
      {"SharedExpertXDtypeDiffers",
       [](C& a, Scratch& s) {
         a.shared_x = s.T(ACL_FLOAT16, {kBs, kH});
       },
       kInvalid,
       {"sharedExpertX"},
       {},
       v2},
      {"XOutDtypeDiffersFromExpandX",
       [](C& a, Scratch& s) {
         a.x_out = s.T(ACL_FLOAT16, {kBs, kH});
       },
       kInvalid,
       {"x"},
       {},
       v2},
      {"XOutWrongShape",
       [](C& a, Scratch& s) {
         a.x_out = s.T(ACL_BF16, {3, kH});
       },
       kTiling,
       {"x"},
       {"3"},
       v2},
      {"ExpandXFractalNz",
       [](C& a, Scratch& s) {
         a.expand_x = s.T(ACL_BF16, {32, kH}, ACL_FORMAT_FRACTAL_NZ);
       },
       kTiling,
       {"expandX"},
       {"nz"},
       v2},
      // H comes from expandX: an expandX of another width makes x (Bs, H) wrong.
      {"ExpandXWrongH",
       [](C& a, Scratch& s) {
         a.expand_x = s.T(ACL_BF16, {32, kH + 1});
       },
       kTiling,
       {"expandX", "x"},
       {},
       v2},
      {"AssistInfoShorterThanA128",
       [](C& a, Scratch& s) { a.assist = s.T(ACL_INT32, {32 * 128 - 1}); },
       kTiling,
       {"assistInfoForCombine"},
       {"4095"},
       v2},
      {"EpSendCountsShorterThanEL",
       [](C& a, Scratch& s) { a.ep_send = s.T(ACL_INT32, {7}); },
       kTiling,
       {"epSendCounts"},
       {"7"},
       v2},
      {"ExpertScalesWrongShape",
       [](C& a, Scratch& s) {
         a.scales = s.T(ACL_FLOAT, {kBs, 3});
       },
       kTiling,
       {"expertScales"},
       {"3"},
       v2},
      {"TpSendCountsWrongLengthWithTp",
       [](C& a, Scratch& s) {
         MakeTp(a, s);
         a.tp_send = s.T(ACL_INT32, {1});
       },
       kTiling,
       {"tpSendCounts"},
       {"1"},
       v2},
      {"Mask2dWrongK",
       [](C& a, Scratch& s) {
         a.mask = s.T(ACL_BOOL, {kBs, 3});
       },
       kTiling,
       {"xActiveMask"},
       {"3"},
       v2},
      {"H1023",
       [](C& a, Scratch& s) {
         a.expand_x = s.T(ACL_BF16, {32, 1023});
         a.x_out = s.T(ACL_BF16, {kBs, 1023});
       },
       kTiling,
       {"expandX", "x", "H"},
       {"1023"},
       v2},
      // Attributes that must agree with the dispatch and the communicator.
      {"EpWorldSizeNotCommunicatorSize",
       [](C& a, Scratch&) { a.ep_world_size = 2; },
       kTiling,
       {"epWorldSize"},
       {"2"},
       v2},
      {"EpRankIdNotCommunicatorRank", [](C& a, Scratch&) { a.ep_rank = 1; }, kTiling, {"epRankId"}, {"1"}, v2},
      {"MoeExpertNumDiffersFromDispatch",
       [](C& a, Scratch&) { a.moe = 16; },
       kTiling,
       {"moeExpertNum", "epSendCounts", "expandX"},
       {},
       v2},
      {"GroupEpIsNoCommunicator",
       [](C& a, Scratch&) { a.group_ep = "no_such_group"; },
       kTiling,
       {"groupEp"},
       {"no_such_group"},
       v2},
      {"GroupEpHasNoRankOnThisDevice",
       [](C& a, Scratch&) { a.group_ep = g_groups->elsewhere_name.c_str(); },
       kTiling,
       {"groupEp"},
       {},
       v2},
      {"WindowTooSmall",
       [](C& a, Scratch& s) {
         a.group_ep = g_groups->small4_name.c_str();
         a.expand_x = s.T(ACL_BF16, {256, 8192});
         a.ids = s.T(ACL_INT32, {32, kK});
         a.scales = s.T(ACL_FLOAT, {32, kK});
         a.assist = s.T(ACL_INT32, {256 * 128});
         a.x_out = s.T(ACL_BF16, {32, 8192});
       },
       kTiling,
       {"HCCL_BUFFSIZE"},
       {"10747904"},
       v2},
      // V3 special experts.
      {"CopyExpertsWithoutOriX", [](C& a, Scratch&) { a.copy = 1; }, kTiling, {"oriX"}, {}, v3},
      {"ConstExpertsWithoutAlpha1",
       [](C& a, Scratch& s) {
         a.cnst = 1;
         a.ori_x = s.T(ACL_BF16, {kBs, kH});
         a.alpha2 = s.T(ACL_BF16, {1});
         a.const_v = s.T(ACL_BF16, {1, kH});
       },
       kTiling,
       {"constExpertAlpha1"},
       {},
       v3},
      {"ConstExpertsWithoutV",
       [](C& a, Scratch& s) {
         a.cnst = 1;
         a.ori_x = s.T(ACL_BF16, {kBs, kH});
         a.alpha1 = s.T(ACL_BF16, {1});
         a.alpha2 = s.T(ACL_BF16, {1});
       },
       kTiling,
       {"constExpertV"},
       {},
       v3},
      {"ConstExpertVWrongShape",
       [](C& a, Scratch& s) {
         a.cnst = 1;
         a.ori_x = s.T(ACL_BF16, {kBs, kH});
         a.alpha1 = s.T(ACL_BF16, {1});
         a.alpha2 = s.T(ACL_BF16, {1});
         a.const_v = s.T(ACL_BF16, {1, 1000});
       },
       kTiling,
       {"constExpertV"},
       {"1000"},
       v3},
      {"OriXWrongShape",
       [](C& a, Scratch& s) {
         a.copy = 1;
         a.ori_x = s.T(ACL_BF16, {3, kH});
       },
       kTiling,
       {"oriX"},
       {"3"},
       v3},
      {"ZeroExpertNumNegative", [](C& a, Scratch&) { a.zero = -1; }, kTiling, {"zeroExpertNum"}, {"-1"}, v3},
      {"ElasticInfoWrongLength",
       [](C& a, Scratch& s) { a.elastic = s.T(ACL_INT32, {11}); },
       kTiling,
       {"elasticInfo"},
       {"11"},
       v3},
      // 1.4 AddRmsNorm.
      {"AddRmsNormResidualX2d",
       [](C& a, Scratch& s) {
         a.residual = s.T(ACL_BF16, {kBs, kH});
       },
       kTiling,
       {"residualX"},
       {},
       rms},
      {"AddRmsNormGammaWrongLength",
       [](C& a, Scratch& s) { a.gamma = s.T(ACL_BF16, {1000}); },
       kTiling,
       {"gamma"},
       {"1000"},
       rms},
      {"AddRmsNormResidualXFloat16",
       [](C& a, Scratch& s) {
         a.residual = s.T(ACL_FLOAT16, {kBs, 1, kH});
       },
       kInvalid,
       {"residualX"},
       {},
       rms},
      {"AddRmsNormWithSharedExperts",
       [](C& a, Scratch& s) {
         a.shared_num = 1;
         a.shared_rank_num = 1;
         a.moe = 3;
         a.ep_send = s.T(ACL_INT32, {4});
       },
       kTiling,
       {"sharedExpertNum", "sharedExpertRankNum"},
       {},
       rms},
      {"AddRmsNormCommQuantMode2", [](C& a, Scratch&) { a.comm_quant = 2; }, kTiling, {"commQuantMode"}, {"2"}, rms},
  };
  return rules;
}

class CombineRule : public ::testing::TestWithParam<Rule<C>> {};
TEST_P(CombineRule, RejectedWithCodeAndMessage) { CheckRule(GetParam()); }
INSTANTIATE_TEST_SUITE_P(CapiValidation, CombineRule, ::testing::ValuesIn(CombineRules()), RuleName<C>);

// ----- BufferReset (SPEC 4.2) ----------------------------------------------------------------------------

using R = ResetArgs;
std::vector<Rule<R>> ResetRules() {
  const aclnnStatus kNull = ACLNN_ERR_PARAM_NULLPTR, kInvalid = ACLNN_ERR_PARAM_INVALID,
                    kTiling = ACLNN_ERR_INNER_TILING_ERROR;
  return {
      {"ElasticInfoNull", [](R& a, Scratch&) { a.elastic = nullptr; }, kNull, {"elasticInfo"}, {}},
      {"GroupEpNull", [](R& a, Scratch&) { a.group_ep = nullptr; }, kNull, {"groupEp"}, {}},
      {"WorkspaceSizeNull", [](R& a, Scratch&) { a.ws = nullptr; }, kNull, {"workspaceSize"}, {}},
      {"ExecutorNull", [](R& a, Scratch&) { a.exec = nullptr; }, kNull, {"executor"}, {}},
      {"GroupEpEmpty", [](R& a, Scratch&) { a.group_ep = ""; }, kInvalid, {"groupEp"}, {}},
      {"GroupEpTooLong",
       [](R& a, Scratch&) {
         a.group_ep_storage = kLongName;
         a.group_ep = a.group_ep_storage.c_str();
       },
       kInvalid,
       {"groupEp"},
       {"128"}},
      {"ElasticInfoInt64",
       [](R& a, Scratch& s) { a.elastic = s.T(ACL_INT64, {16}); },
       kInvalid,
       {"elasticInfo"},
       {"int64"}},
      {"ElasticInfoWrongLength",
       [](R& a, Scratch& s) { a.elastic = s.T(ACL_INT32, {17}); },
       kTiling,
       {"elasticInfo"},
       {"17"}},
      {"ElasticInfo2d",
       [](R& a, Scratch& s) {
         a.elastic = s.T(ACL_INT32, {16, 1});
       },
       kTiling,
       {"elasticInfo"},
       {}},
      {"EpWorldSize8",
       [](R& a, Scratch& s) {
         a.ep_world_size = 8;
         a.elastic = s.T(ACL_INT32, {8});
       },
       kTiling,
       {"epWorldSize"},
       {"8"}},
      {"EpWorldSize24",
       [](R& a, Scratch& s) {
         a.ep_world_size = 24;
         a.elastic = s.T(ACL_INT32, {24});
       },
       kTiling,
       {"epWorldSize"},
       {"24"}},
      {"EpWorldSize144",
       [](R& a, Scratch& s) {
         a.ep_world_size = 144;
         a.elastic = s.T(ACL_INT32, {144});
       },
       kTiling,
       {"epWorldSize"},
       {"144"}},
      {"EpWorldSizeNotCommunicatorSize",
       [](R& a, Scratch& s) {
         a.ep_world_size = 32;
         a.elastic = s.T(ACL_INT32, {32});
       },
       kTiling,
       {"epWorldSize"},
       {"32"}},
      {"NeedSync2", [](R& a, Scratch&) { a.need_sync = 2; }, kTiling, {"needSync"}, {"2"}},
      {"NeedSyncNegative", [](R& a, Scratch&) { a.need_sync = -1; }, kTiling, {"needSync"}, {"-1"}},
      {"GroupEpIsNoCommunicator",
       [](R& a, Scratch&) { a.group_ep = "no_such_group"; },
       kTiling,
       {"groupEp"},
       {"no_such_group"}},
      {"GroupEpHasNoRankOnThisDevice",
       [](R& a, Scratch&) { a.group_ep = g_groups->elsewhere_name.c_str(); },
       kTiling,
       {"groupEp"},
       {}},
  };
}

class ResetRule : public ::testing::TestWithParam<Rule<R>> {};
TEST_P(ResetRule, RejectedWithCodeAndMessage) { CheckRule(GetParam()); }
INSTANTIATE_TEST_SUITE_P(CapiValidation, ResetRule, ::testing::ValuesIn(ResetRules()), RuleName<R>);

// ---------------------------------------------------------------------------------------------------
// Positive controls: the bases and the accepted variants pass phase one with workspace 0.
// ---------------------------------------------------------------------------------------------------

template <typename Args>
void ExpectAccepted(Args& a, const char* what) {
  RecentErrMsg();
  const aclnnStatus st = Call(a);
  EXPECT_EQ(st, ACL_SUCCESS) << what << ": " << RecentErrMsg();
  EXPECT_EQ(a.ws_storage, 0u) << what;
  EXPECT_NE(a.exec_storage, nullptr) << what;
  // The executor is never run: no rank ever meets it (phase one does not communicate).
}

TEST(CapiValidation, DispatchBaseAndAcceptedVariants) {
  ASSERT_NE(g_groups, nullptr);
  {
    Scratch s;
    D a = BaseDispatch(s);
    ExpectAccepted(a, "V2 base");
    for (const auto& t : s.tensors) EXPECT_TRUE(t.AllBytesAre(kPoison)) << "phase one wrote a tensor";
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
    ExpectAccepted(a, "combine base");
    for (const auto& t : s.tensors) EXPECT_TRUE(t.AllBytesAre(kPoison)) << "phase one wrote a tensor";
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
      {"V3 copy and const experts",
       [](C& a, Scratch& s) {
         a.op = CombineOp::kV3;
         a.zero = 1;
         a.copy = 1;
         a.cnst = 2;
         a.ori_x = s.T(ACL_BF16, {kBs, kH});
         a.alpha1 = s.T(ACL_BF16, {2});
         a.alpha2 = s.T(ACL_BF16, {2});
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
