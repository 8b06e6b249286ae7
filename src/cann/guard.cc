// The guard's catch side: which status each API family reports a C++ exception with, and the message.
#include "cann/guard.h"

#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <utility>

#include "acl/acl_base.h"
#include "aclnn/aclnn_base.h"
#include "cann/runtime/runtime.h"
#include "hccl/hccl_types.h"
#include "moe_ep/error.h"

namespace moe_ep::cann {
namespace {

// What a family reports for a failure that is not a moe_ep::Error.
struct FamilyStatuses {
  int32_t internal;       // std::exception, or anything else
  int32_t out_of_memory;  // std::bad_alloc
};

FamilyStatuses StatusesOf(ApiFamily family) {
  switch (family) {
    case ApiFamily::kAcl:
      return {ACL_ERROR_INTERNAL_ERROR, ACL_ERROR_BAD_ALLOC};
    case ApiFamily::kAclnn:
      return {ACLNN_ERR_INNER, ACLNN_ERR_INNER};  // aclnn has no out-of-memory status: CANN says inner error
    case ApiFamily::kHccl:
      return {HCCL_E_INTERNAL, HCCL_E_MEMORY};
  }
  return {ACL_ERROR_INTERNAL_ERROR, ACL_ERROR_BAD_ALLOC};
}

// moe_ep's codes are the acl / aclnn numbers themselves; HCCL has its own small set. An internal moe_ep
// error under an HCCL call is a failed mmap or an unusable HCCL_BUFFSIZE: a memory error to HCCL. A missing
// pointer is HCCL_E_PTR, as HCCL reports one, not a parameter error.
int32_t ErrorStatus(ApiFamily family, ErrorCode code) {
  if (family != ApiFamily::kHccl) return static_cast<int32_t>(code);
  switch (code) {
    case ErrorCode::kNullPointer:
      return HCCL_E_PTR;
    case ErrorCode::kTimeout:
      return HCCL_E_TIMEOUT;
    case ErrorCode::kInternal:
      return HCCL_E_MEMORY;
    default:
      return HCCL_E_PARA;
  }
}

// Records NamedByEntryPoint(api, text) + more for aclGetRecentErrMsg
// and returns `status`. The two parts are joined here, where running out of memory is caught: then an empty message
// is recorded, so that the status still reports the failure and no older message is taken for this one.
int32_t Record(const char* api, int32_t status, std::string_view text, std::string_view more = {}) noexcept {
  try {
    Fail(status, NamedByEntryPoint(api, text).append(more));
  } catch (...) {
    Fail(status, std::string());
  }
  return status;
}

std::mutex g_injector_mu;
std::function<void(const char*)> g_injector;  // guarded by g_injector_mu

}  // namespace

std::string NamedByEntryPoint(std::string_view api, std::string_view what) {
  const size_t colon = what.find(": ");
  if (colon != std::string_view::npos) {
    const std::string_view head = what.substr(0, colon);
    constexpr std::string_view kPhaseOne = "GetWorkspaceSize";
    if (head == api || (api.ends_with(kPhaseOne) && api.substr(0, api.size() - kPhaseOne.size()) == head)) {
      return std::string(what);
    }
  }
  return std::string(api).append(": ").append(what);
}

namespace guard_detail {

std::atomic<bool> g_throw_injector_set{false};

void InjectThrow(const char* api) {
  std::function<void(const char*)> injector;
  {
    std::lock_guard<std::mutex> lock(g_injector_mu);
    injector = g_injector;
  }
  if (injector) injector(api);  // outside the lock: it may call entry points itself
}

int32_t FailWithCurrentException(const char* api, ApiFamily family) noexcept {
  try {
    throw;
  } catch (const Error& e) {
    return Record(api, ErrorStatus(family, e.code()), e.what());
  } catch (const std::bad_alloc& e) {
    return Record(api, StatusesOf(family).out_of_memory, "out of host memory: ", e.what());
  } catch (const std::exception& e) {
    return Record(api, StatusesOf(family).internal, e.what());
  } catch (...) {
    return Record(api, StatusesOf(family).internal, "an exception that is not a std::exception");
  }
}

}  // namespace guard_detail

namespace test_hooks {

void SetThrowInjector(std::function<void(const char* api)> injector) {
  std::lock_guard<std::mutex> lock(g_injector_mu);
  g_injector = std::move(injector);
  guard_detail::g_throw_injector_set.store(static_cast<bool>(g_injector), std::memory_order_relaxed);
}

}  // namespace test_hooks
}  // namespace moe_ep::cann
