// The one guard of the C API: every exported entry point, made to throw by the test hook, returns its family's status.
//
// Cases:
//   Guard.ListIsEveryExportedEntryPoint  the list below is exactly what libmoe_ep_cann exports (nm -D).
//   Guard.EveryEntryPointReportsAThrow   each entry point x each kind of throw (std::runtime_error,
//                                        std::bad_alloc, moe_ep::Error of four codes, `throw 42`): nothing
//                                        escapes, the status is the family's, aclGetRecentErrMsg names the
//                                        entry point and what was thrown, and the hook saw the entry point's name.
//   Guard.KeepsMessagesThatNameTheOperator  phase one's validation message is not prefixed a second time.
//   Guard.HookOffByDefault               without an injector the entry points just run.
#include "cann/guard.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "acl/acl.h"
#include "aclnn/acl_meta.h"
#include "aclnn/aclnn_base.h"
#include "aclnnop/aclnn_moe_distribute_buffer_reset.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v3.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"
#include "hccl/hccl.h"
#include "moe_ep/error.h"

namespace moe_ep::cann {
namespace {

struct EntryPoint {
  std::string name;
  ApiFamily family;
  bool returns_status;
  // Calls the entry point; returns its status, or for one without a status 1 when its failure value came back.
  std::function<int64_t()> call;
};

// Every argument null or zero: the injected throw comes before the body, which would reject them anyway.
template <typename R, typename... Args>
EntryPoint Status(const char* name, ApiFamily family, R (*fn)(Args...)) {
  return {name, family, true, [fn] { return static_cast<int64_t>(fn(Args{}...)); }};
}

EntryPoint Value(const char* name, ApiFamily family, std::function<bool()> returned_failure_value) {
  return {name, family, false, [f = std::move(returned_failure_value)] { return f() ? int64_t{1} : int64_t{0}; }};
}

// The exported C API, from include/acl, include/aclnn, include/hccl and include/aclnnop.
const std::vector<EntryPoint>& EntryPoints() {
  constexpr ApiFamily kAcl = ApiFamily::kAcl;
  constexpr ApiFamily kAclnn = ApiFamily::kAclnn;
  constexpr ApiFamily kHccl = ApiFamily::kHccl;
  static const std::vector<EntryPoint> entry_points = {
      // acl/acl_base.h: the failure values are those of "nothing" (no message, no size).
      Value("aclGetRecentErrMsg", kAcl, [] { return aclGetRecentErrMsg() == nullptr; }),
      Value("aclDataTypeSize", kAcl, [] { return aclDataTypeSize(ACL_FLOAT) == 0; }),
      // acl/acl_rt.h
      Status("aclInit", kAcl, &aclInit),
      Status("aclFinalize", kAcl, &aclFinalize),
      Status("aclrtGetDeviceCount", kAcl, &aclrtGetDeviceCount),
      Status("aclrtSetDevice", kAcl, &aclrtSetDevice),
      Status("aclrtGetDevice", kAcl, &aclrtGetDevice),
      Status("aclrtResetDevice", kAcl, &aclrtResetDevice),
      Status("aclrtSynchronizeDevice", kAcl, &aclrtSynchronizeDevice),
      Value("aclrtGetSocName", kAcl, [] { return aclrtGetSocName() == nullptr; }),
      Status("aclrtCreateContext", kAcl, &aclrtCreateContext),
      Status("aclrtDestroyContext", kAcl, &aclrtDestroyContext),
      Status("aclrtSetCurrentContext", kAcl, &aclrtSetCurrentContext),
      Status("aclrtGetCurrentContext", kAcl, &aclrtGetCurrentContext),
      Status("aclrtCreateStream", kAcl, &aclrtCreateStream),
      Status("aclrtCreateStreamWithConfig", kAcl, &aclrtCreateStreamWithConfig),
      Status("aclrtDestroyStream", kAcl, &aclrtDestroyStream),
      Status("aclrtSynchronizeStream", kAcl, &aclrtSynchronizeStream),
      Status("aclrtSynchronizeStreamWithTimeout", kAcl, &aclrtSynchronizeStreamWithTimeout),
      Status("aclrtMalloc", kAcl, &aclrtMalloc),
      Status("aclrtFree", kAcl, &aclrtFree),
      Status("aclrtMallocHost", kAcl, &aclrtMallocHost),
      Status("aclrtFreeHost", kAcl, &aclrtFreeHost),
      Status("aclrtMemcpy", kAcl, &aclrtMemcpy),
      Status("aclrtMemset", kAcl, &aclrtMemset),
      Status("aclrtMemcpyAsync", kAcl, &aclrtMemcpyAsync),
      Status("aclrtMemsetAsync", kAcl, &aclrtMemsetAsync),
      Status("aclrtCreateEvent", kAcl, &aclrtCreateEvent),
      Status("aclrtCreateEventWithFlag", kAcl, &aclrtCreateEventWithFlag),
      Status("aclrtCreateEventExWithFlag", kAcl, &aclrtCreateEventExWithFlag),
      Status("aclrtDestroyEvent", kAcl, &aclrtDestroyEvent),
      Status("aclrtRecordEvent", kAcl, &aclrtRecordEvent),
      Status("aclrtResetEvent", kAcl, &aclrtResetEvent),
      Status("aclrtStreamWaitEvent", kAcl, &aclrtStreamWaitEvent),
      Status("aclrtSynchronizeEvent", kAcl, &aclrtSynchronizeEvent),
      Status("aclrtSynchronizeEventWithTimeout", kAcl, &aclrtSynchronizeEventWithTimeout),
      Status("aclrtQueryEventStatus", kAcl, &aclrtQueryEventStatus),
      Status("aclrtQueryEvent", kAcl, &aclrtQueryEvent),
      Status("aclrtEventElapsedTime", kAcl, &aclrtEventElapsedTime),
      // aclnn/acl_meta.h: tensors report in aclnn's codes, as CANN's do.
      Value("aclCreateTensor", kAclnn,
            [] {
              return aclCreateTensor(nullptr, 0, ACL_FLOAT, nullptr, 0, ACL_FORMAT_ND, nullptr, 0, nullptr) == nullptr;
            }),
      Status("aclDestroyTensor", kAclnn, &aclDestroyTensor),
      Status("aclGetViewShape", kAclnn, &aclGetViewShape),
      Status("aclGetDataType", kAclnn, &aclGetDataType),
      Status("aclGetFormat", kAclnn, &aclGetFormat),
      Status("aclSetAclOpExecutorRepeatable", kAclnn, &aclSetAclOpExecutorRepeatable),
      Status("aclDestroyAclOpExecutor", kAclnn, &aclDestroyAclOpExecutor),
      // hccl/hccl.h: a string is never the failure, "unknown error" is.
      Status("HcclCommInitAll", kHccl, &HcclCommInitAll),
      Status("HcclGetRootInfo", kHccl, &HcclGetRootInfo),
      Status("HcclCommInitRootInfo", kHccl, &HcclCommInitRootInfo),
      Status("HcclCommInitRootInfoConfig", kHccl, &HcclCommInitRootInfoConfig),
      Status("HcclCommInitClusterInfo", kHccl, &HcclCommInitClusterInfo),
      Status("HcclCommInitClusterInfoConfig", kHccl, &HcclCommInitClusterInfoConfig),
      Status("HcclGetCommName", kHccl, &HcclGetCommName),
      Status("HcclGetRankId", kHccl, &HcclGetRankId),
      Status("HcclGetRankSize", kHccl, &HcclGetRankSize),
      Status("HcclCommDestroy", kHccl, &HcclCommDestroy),
      Value("HcclGetErrorString", kHccl,
            [] { return std::string(HcclGetErrorString(HCCL_SUCCESS)) == "unknown error"; }),
      // aclnnop/aclnn_moe_distribute_*.h: both phases of each operator.
      Status("aclnnMoeDistributeDispatchV2GetWorkspaceSize", kAclnn, &aclnnMoeDistributeDispatchV2GetWorkspaceSize),
      Status("aclnnMoeDistributeDispatchV2", kAclnn, &aclnnMoeDistributeDispatchV2),
      Status("aclnnMoeDistributeDispatchV3GetWorkspaceSize", kAclnn, &aclnnMoeDistributeDispatchV3GetWorkspaceSize),
      Status("aclnnMoeDistributeDispatchV3", kAclnn, &aclnnMoeDistributeDispatchV3),
      Status("aclnnMoeDistributeCombineV2GetWorkspaceSize", kAclnn, &aclnnMoeDistributeCombineV2GetWorkspaceSize),
      Status("aclnnMoeDistributeCombineV2", kAclnn, &aclnnMoeDistributeCombineV2),
      Status("aclnnMoeDistributeCombineV3GetWorkspaceSize", kAclnn, &aclnnMoeDistributeCombineV3GetWorkspaceSize),
      Status("aclnnMoeDistributeCombineV3", kAclnn, &aclnnMoeDistributeCombineV3),
      Status("aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize", kAclnn,
             &aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize),
      Status("aclnnMoeDistributeCombineAddRmsNorm", kAclnn, &aclnnMoeDistributeCombineAddRmsNorm),
      Status("aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize", kAclnn,
             &aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize),
      Status("aclnnMoeDistributeCombineAddRmsNormV2", kAclnn, &aclnnMoeDistributeCombineAddRmsNormV2),
      Status("aclnnMoeDistributeBufferResetGetWorkspaceSize", kAclnn, &aclnnMoeDistributeBufferResetGetWorkspaceSize),
      Status("aclnnMoeDistributeBufferReset", kAclnn, &aclnnMoeDistributeBufferReset),
  };
  return entry_points;
}

// One kind of throw and the status each family must turn it into.
struct Throw {
  const char* label;
  std::function<void()> raise;
  std::string text;  // what the message must contain besides the entry point's name
  int32_t acl, aclnn, hccl;

  int32_t StatusOf(ApiFamily family) const {
    return family == ApiFamily::kAcl ? acl : family == ApiFamily::kAclnn ? aclnn : hccl;
  }
};

std::vector<Throw> Throws() {
  const auto error = [](ErrorCode code, const std::string& text) { return [=] { throw Error(code, text); }; };
  return {
      {"std::runtime_error", [] { throw std::runtime_error("injected std::runtime_error"); },
       "injected std::runtime_error", ACL_ERROR_INTERNAL_ERROR, ACLNN_ERR_INNER, HCCL_E_INTERNAL},
      {"std::bad_alloc", [] { throw std::bad_alloc(); }, std::bad_alloc().what(), ACL_ERROR_BAD_ALLOC, ACLNN_ERR_INNER,
       HCCL_E_MEMORY},
      {"moe_ep::Error(kInvalidConfig)", error(ErrorCode::kInvalidConfig, "injected tiling error"),
       "injected tiling error", ACLNN_ERR_INNER_TILING_ERROR, ACLNN_ERR_INNER_TILING_ERROR, HCCL_E_PARA},
      {"moe_ep::Error(kNullPointer)", error(ErrorCode::kNullPointer, "injected null pointer"), "injected null pointer",
       ACLNN_ERR_PARAM_NULLPTR, ACLNN_ERR_PARAM_NULLPTR, HCCL_E_PTR},
      {"moe_ep::Error(kTimeout)", error(ErrorCode::kTimeout, "injected timeout"), "injected timeout",
       ACL_ERROR_RT_VECTOR_CORE_TIMEOUT, ACL_ERROR_RT_VECTOR_CORE_TIMEOUT, HCCL_E_TIMEOUT},
      {"moe_ep::Error(kInternal)", error(ErrorCode::kInternal, "injected internal error"), "injected internal error",
       static_cast<int32_t>(ErrorCode::kInternal), static_cast<int32_t>(ErrorCode::kInternal), HCCL_E_MEMORY},
      {"throw 42", [] { throw 42; }, "not a std::exception", ACL_ERROR_INTERNAL_ERROR, ACLNN_ERR_INNER,
       HCCL_E_INTERNAL},
  };
}

// The test hook: armed with a throw, it fires once, at the next entry point, and remembers which one it was.
class Injector {
 public:
  Injector() {
    test_hooks::SetThrowInjector([this](const char* api) {
      std::function<void()> raise;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!armed_) return;
        armed_ = false;
        seen_.push_back(api);
        raise = std::move(raise_);
      }
      raise();
    });
  }
  ~Injector() { test_hooks::SetThrowInjector(nullptr); }
  Injector(const Injector&) = delete;
  Injector& operator=(const Injector&) = delete;

  void Arm(std::function<void()> raise) {
    std::lock_guard<std::mutex> lock(mu_);
    raise_ = std::move(raise);
    armed_ = true;
    seen_.clear();
  }
  std::vector<std::string> Seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  std::mutex mu_;
  std::function<void()> raise_;
  bool armed_ = false;
  std::vector<std::string> seen_;
};

std::string RecentErrMsg() {
  const char* message = aclGetRecentErrMsg();
  return message == nullptr ? std::string() : message;
}

// The names libmoe_ep_cann exports, as the dynamic linker sees them.
std::set<std::string> ExportedSymbols() {
  const std::string command = std::string("'") + MOE_EP_NM + "' -D --defined-only '" + MOE_EP_CANN_LIBRARY + "'";
  std::set<std::string> names;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), &pclose);
  if (!pipe) return names;
  char line[512];
  while (std::fgets(line, sizeof(line), pipe.get()) != nullptr) {
    std::istringstream fields(line);
    std::string address, type, name;
    // "<address> <type> <name>"; version definitions (type A) are not functions.
    if (fields >> address >> type >> name && type != "A") names.insert(name);
  }
  return names;
}

TEST(Guard, ListIsEveryExportedEntryPoint) {
  std::set<std::string> listed;
  for (const EntryPoint& entry : EntryPoints()) {
    EXPECT_TRUE(listed.insert(entry.name).second) << entry.name << " is listed twice";
  }
  std::set<std::string> exported = ExportedSymbols();
  ASSERT_FALSE(exported.empty()) << "nm -D found nothing in " << MOE_EP_CANN_LIBRARY;
  // The Python package's bridge (src/cann/interrupt_bridge.cc), no C API entry point: an atomic store, nothing to
  // guard.
  EXPECT_EQ(exported.erase("moe_ep_cann_set_interrupt_check"), 1u);
  for (const std::string& name : exported) EXPECT_EQ(listed.count(name), 1u) << name << " is exported but not listed";
  for (const std::string& name : listed) EXPECT_EQ(exported.count(name), 1u) << name << " is listed but not exported";
  EXPECT_EQ(listed.size(), 71u);
}

TEST(Guard, EveryEntryPointReportsAThrow) {
  Injector injector;
  for (const Throw& thrown : Throws()) {
    for (const EntryPoint& entry : EntryPoints()) {
      SCOPED_TRACE(entry.name + " throwing " + thrown.label);
      // A stale message waits: the entry point must replace it (and aclGetRecentErrMsg must not hand it out).
      ASSERT_EQ(aclrtFree(nullptr), ACL_ERROR_INVALID_PARAM);
      injector.Arm(thrown.raise);
      const int64_t result = entry.call();
      EXPECT_EQ(injector.Seen(), std::vector<std::string>{entry.name}) << "the guard was given another name";
      if (entry.returns_status) {
        EXPECT_EQ(result, thrown.StatusOf(entry.family));
      } else {
        EXPECT_EQ(result, 1) << "the failure value did not come back";
      }
      const std::string message = RecentErrMsg();
      EXPECT_EQ(message.rfind(entry.name + ": ", 0), 0u) << message;
      EXPECT_NE(message.find(thrown.text), std::string::npos) << message;
      EXPECT_EQ(aclGetRecentErrMsg(), nullptr) << "a message is handed out once";
    }
  }
}

TEST(Guard, KeepsMessagesThatNameTheOperator) {
  uint64_t workspace_size = 0;
  aclOpExecutor* executor = nullptr;
  ASSERT_EQ(aclnnMoeDistributeBufferResetGetWorkspaceSize(nullptr, "group", 16, 0, &workspace_size, &executor),
            ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_EQ(RecentErrMsg(),
            "aclnnMoeDistributeBufferReset: parameter 'elasticInfo' = nullptr violates rule: "
            "this tensor is required");

  Injector injector;
  injector.Arm([] { throw Error(ErrorCode::kInvalidParam, "aclrtMalloc: named already"); });
  EXPECT_EQ(aclrtMalloc(nullptr, 0, ACL_MEM_MALLOC_HUGE_FIRST), ACLNN_ERR_PARAM_INVALID);
  EXPECT_EQ(RecentErrMsg(), "aclrtMalloc: named already");
}

TEST(Guard, HookOffByDefault) {
  EXPECT_EQ(aclDataTypeSize(ACL_FLOAT), 4u);
  EXPECT_STREQ(HcclGetErrorString(HCCL_E_PARA), "parameter error");
  {
    Injector injector;  // installed but not armed: calls pass through
    EXPECT_EQ(aclDataTypeSize(ACL_BF16), 2u);
  }
  uint32_t count = 0;
  EXPECT_EQ(aclrtGetDeviceCount(&count), ACL_SUCCESS);
  EXPECT_GT(count, 0u);
  EXPECT_EQ(aclGetRecentErrMsg(), nullptr);
}

}  // namespace
}  // namespace moe_ep::cann
