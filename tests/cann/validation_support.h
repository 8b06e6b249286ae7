// Shared machinery of the C API validation tests (A3 and Atlas A2 rules): communicators, arguments, calls, rule checks.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "cann/capi_support.h"

namespace moe_ep::capi_testing {

// ---------------------------------------------------------------------------------------------------
// Communicators shared by every case
// ---------------------------------------------------------------------------------------------------

// The HCCL groups of a test program (phase one only needs their names) and a stream for phase two. A test derives
// its own Groups from this and makes its groups in member initializers: `std::string ep_name = Add({0, 1, 2, 3});`.
class CommGroups {
 public:
  CommGroups() = default;
  CommGroups(const CommGroups&) = delete;
  CommGroups& operator=(const CommGroups&) = delete;
  // Destroys every group and the stream.
  ~CommGroups();

  // A group with comm i on devices[i] (HcclCommInitAll); returns its name. With `hccl_buffsize`, HCCL_BUFFSIZE
  // is set to it while the group is made.
  std::string Add(std::vector<int32_t> devices, const char* hccl_buffsize = nullptr);

  aclrtStream stream = nullptr;  // made by GroupsEnvironment after the groups

 private:
  std::vector<std::vector<HcclComm>> groups_;
};

// The global environment that makes a test's Groups (a CommGroups) once, on device 0, and `*groups` point to them
// (null when setting up failed); TearDown destroys them and resets device 0.
template <typename Groups>
class GroupsEnvironment : public ::testing::Environment {
 public:
  explicit GroupsEnvironment(Groups** groups) : groups_(groups) {}
  void SetUp() override {
    EnsureAclReady();
    ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS) << RecentErrMsg();
    *groups_ = new Groups;
    ASSERT_EQ(aclrtCreateStream(&(*groups_)->stream), ACL_SUCCESS) << RecentErrMsg();
  }
  void TearDown() override {
    if (*groups_ == nullptr) return;
    delete *groups_;
    *groups_ = nullptr;
    aclrtResetDevice(0);
  }

 private:
  Groups** groups_;
};

// ---------------------------------------------------------------------------------------------------
// Arguments and the calls (phase one: GetWorkspaceSize)
// ---------------------------------------------------------------------------------------------------

// Every tensor a case creates (inputs and outputs alike are poisoned and must stay so).
struct Scratch {
  std::vector<Tensor> tensors;
  aclTensor* T(aclDataType dtype, std::vector<int64_t> dims, aclFormat format = ACL_FORMAT_ND) {
    tensors.emplace_back(dtype, std::move(dims), nullptr, format);
    return tensors.back().get();
  }
};

// The out-parameters every phase one has.
struct PhaseOneOut {
  bool null_ws = false, null_exec = false;  // pass nullptr for the workspaceSize / executor out-params
  mutable uint64_t ws_storage = 77;
  mutable aclOpExecutor* exec_storage = nullptr;
  uint64_t* ws() const { return null_ws ? nullptr : &ws_storage; }
  aclOpExecutor** exec() const { return null_exec ? nullptr : &exec_storage; }
};

// DispatchV2 (or V3) arguments; a test's base call sets the group, the sizes and the tensors.
struct DispatchArgs : PhaseOneOut {
  bool v3 = false;
  const aclTensor *x = nullptr, *ids = nullptr, *scales = nullptr, *mask = nullptr, *expert_scales = nullptr,
                  *elastic = nullptr;
  const char* group_ep = nullptr;
  int64_t ep_world_size = 0, ep_rank = 0, moe = 0;
  const char* group_tp = "";
  int64_t tp_world_size = 0, tp_rank = 0, shard_type = 0, shared_num = 0, shared_rank_num = 0, quant = 0, global_bs = 0,
          token_nums_type = 1;
  const char* comm_alg = "";
  int64_t zero = 0, copy = 0, cnst = 0;
  aclTensor *expand_x = nullptr, *dyn_scales = nullptr, *assist = nullptr, *token_nums = nullptr, *ep_recv = nullptr,
            *tp_recv = nullptr, *expand_scales = nullptr;
};

enum class CombineOp { kV2, kV3, kAddRmsNorm };

// CombineV2, V3 or AddRmsNorm arguments; a test's base call sets the group, the sizes and the tensors.
struct CombineArgs : PhaseOneOut {
  CombineOp op = CombineOp::kV2;
  const aclTensor *expand_x = nullptr, *ids = nullptr, *assist = nullptr, *ep_send = nullptr, *scales = nullptr,
                  *residual = nullptr, *gamma = nullptr, *tp_send = nullptr, *mask = nullptr,
                  *activation_scale = nullptr, *weight_scale = nullptr, *group_list = nullptr, *expand_scales = nullptr,
                  *shared_x = nullptr, *elastic = nullptr, *ori_x = nullptr, *alpha1 = nullptr, *alpha2 = nullptr,
                  *const_v = nullptr;
  const char* group_ep = nullptr;
  int64_t ep_world_size = 0, ep_rank = 0, moe = 0;
  const char* group_tp = "";
  int64_t tp_world_size = 0, tp_rank = 0, shard_type = 0, shared_num = 0, shared_rank_num = 0, global_bs = 0,
          out_dtype = 0, comm_quant = 0, group_list_type = 0;
  const char* comm_alg = "";
  int64_t zero = 0, copy = 0, cnst = 0;
  float norm_eps = 1e-6f;
  aclTensor *x_out = nullptr, *y_out = nullptr, *rstd_out = nullptr;
};

// BufferReset arguments; a test's base call sets the group and the tensor.
struct ResetArgs : PhaseOneOut {
  const aclTensor* elastic = nullptr;
  const char* group_ep = nullptr;
  int32_t ep_world_size = 16, need_sync = 1;
};

// Phase one (the operator's GetWorkspaceSize) with these arguments.
aclnnStatus Call(const DispatchArgs& a);
aclnnStatus Call(const CombineArgs& a);
aclnnStatus Call(const ResetArgs& a);

// Phase two of the same operator with the null executor on `stream`.
aclnnStatus PhaseTwoNull(const DispatchArgs& a, aclrtStream stream);
aclnnStatus PhaseTwoNull(const CombineArgs& a, aclrtStream stream);
aclnnStatus PhaseTwoNull(const ResetArgs& a, aclrtStream stream);

// A test's base calls: one valid phase one per operator (for combine, per CombineOp), each rule changes it once.
struct BaseCalls {
  DispatchArgs (*dispatch)(Scratch&);
  CombineArgs (*combine)(Scratch&, CombineOp);
  ResetArgs (*reset)(Scratch&);
};

// ---------------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------------

// Environment variables (name, value; a null value unsets) set around a rule's call.
using Env = std::vector<std::pair<const char*, const char*>>;

template <typename Args>
struct Rule {
  std::string name;                             // test name
  std::function<void(Args&, Scratch&)> mutate;  // the one change from the base call
  aclnnStatus code;
  std::vector<std::string> names;   // the message names at least one of these parameters
  std::vector<std::string> values;  // ... and contains every one of these
  CombineOp op = CombineOp::kV2;    // combine cases only
  const Env* env = nullptr;         // extra environment for the call
};

template <typename Args>
void PrintTo(const Rule<Args>& rule, std::ostream* os) {
  *os << rule.name;
}

template <typename Args>
std::string RuleName(const ::testing::TestParamInfo<Rule<Args>>& info) {
  return info.param.name;
}

inline DispatchArgs Base(const BaseCalls& bases, Scratch& s, const Rule<DispatchArgs>&) { return bases.dispatch(s); }
inline CombineArgs Base(const BaseCalls& bases, Scratch& s, const Rule<CombineArgs>& rule) {
  return bases.combine(s, rule.op);
}
inline ResetArgs Base(const BaseCalls& bases, Scratch& s, const Rule<ResetArgs>&) { return bases.reset(s); }

// Runs one rule: the base call with the rule's change (and environment) must fail with rule.code and a message that
// names one of rule.names, contains every one of rule.values and states the rule it broke ("rule: ..."), leave every
// tensor poisoned (and, with `expect_no_executor`, the executor out-param null), and phase two with the null executor
// on `stream` must return 161001.
template <typename Args>
void ExpectRejected(const Rule<Args>& rule, const BaseCalls& bases, aclrtStream stream,
                    bool expect_no_executor = false) {
  std::vector<std::unique_ptr<ScopedEnv>> env;
  if (rule.env != nullptr) {
    for (const auto& [name, value] : *rule.env) env.push_back(std::make_unique<ScopedEnv>(name, value));
  }
  Scratch s;
  Args args = Base(bases, s, rule);
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
  const size_t said = msg.find("rule: ");
  EXPECT_TRUE(said != std::string::npos && msg.size() > said + 6) << "the message should state the rule: " << msg;
  if (expect_no_executor) {
    EXPECT_EQ(args.exec_storage, nullptr) << "a failing phase one made an executor";
  }
  for (size_t i = 0; i < s.tensors.size(); ++i) {
    EXPECT_TRUE(s.tensors[i].AllBytesAre(kPoison)) << "tensor #" << i << " was written by a failing phase one";
  }
  EXPECT_EQ(PhaseTwoNull(args, stream), ACLNN_ERR_PARAM_NULLPTR) << "phase two with the null executor";
}

// A positive control: phase one succeeds with workspace 0 and an executor (never run: no rank ever meets it, as phase
// one does not communicate); with `scratch`, none of its tensors was written.
template <typename Args>
void ExpectAccepted(const Args& a, const std::string& what, const Scratch* scratch = nullptr) {
  RecentErrMsg();
  const aclnnStatus st = Call(a);
  EXPECT_EQ(st, ACL_SUCCESS) << what << ": " << RecentErrMsg();
  EXPECT_EQ(a.ws_storage, kWorkspaceBytes) << what;
  EXPECT_NE(a.exec_storage, nullptr) << what;
  if (scratch == nullptr) return;
  for (const auto& t : scratch->tensors) EXPECT_TRUE(t.AllBytesAre(kPoison)) << what << ": phase one wrote a tensor";
}

// Compact mutators: Set(member, value), Make(member, dtype, dims[, format]), All({...}), and over-long group names.
template <typename Args>
using Mutator = std::function<void(Args&, Scratch&)>;

template <typename Args, typename M, typename V>
Mutator<Args> Set(M Args::*member, V value) {
  return [=](Args& a, Scratch&) { a.*member = static_cast<M>(value); };
}
template <typename Args, typename P>
Mutator<Args> Make(P Args::*member, aclDataType dtype, std::vector<int64_t> dims, aclFormat format = ACL_FORMAT_ND) {
  return [=](Args& a, Scratch& s) { a.*member = s.T(dtype, dims, format); };
}
template <typename Args>
Mutator<Args> All(std::vector<Mutator<Args>> steps) {
  return [=](Args& a, Scratch& s) {
    for (const auto& step : steps) step(a, s);
  };
}
// A group name of length 128: one past the limit.
const char* LongName();
// 128 characters and no NUL, right before a page that cannot be read: a name read past its limit crashes.
const char* UnterminatedName();
// The group names an operator is given.
template <typename Args>
Mutator<Args> GroupEpNamed(const char* name) {
  return [=](Args& a, Scratch&) { a.group_ep = name; };
}
template <typename Args>
Mutator<Args> GroupTpNamed(const char* name) {
  return [=](Args& a, Scratch&) { a.group_tp = name; };
}

inline constexpr aclnnStatus kNull = ACLNN_ERR_PARAM_NULLPTR, kInvalid = ACLNN_ERR_PARAM_INVALID,
                             kTiling = ACLNN_ERR_INNER_TILING_ERROR;

}  // namespace moe_ep::capi_testing
