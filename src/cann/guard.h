// The one guard around every extern "C" entry point: nothing thrown reaches a C caller; it becomes a status.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>

namespace moe_ep::cann {

/// The C API's three families. The same failure has a different status in each, so the guard is told which.
enum class ApiFamily {
  kAcl,    ///< acl / aclrt runtime calls (aclError)
  kAclnn,  ///< aclnn operators and the aclTensor calls (aclnnStatus)
  kHccl,   ///< Hccl calls (HcclResult)
};

/// `what` named by the entry point or operation `api`: "api: what", or `what` as it is where it names `api` already
/// (begins with "api: ", or for phase one of an aclnn operator, aclnnXxxGetWorkspaceSize, with "aclnnXxx: "), as
/// the operators' own messages do.
std::string NamedByEntryPoint(std::string_view api, std::string_view what);

namespace guard_detail {

extern std::atomic<bool> g_throw_injector_set;

/// Runs the test hook's injector (test_hooks::SetThrowInjector) for `api`.
void InjectThrow(const char* api);

/// Called inside a catch block: records "api: what" of the exception in flight for aclGetRecentErrMsg and
/// returns the status `family` reports it with (guard.cc has the table). Never throws.
int32_t FailWithCurrentException(const char* api, ApiFamily family) noexcept;

}  // namespace guard_detail

/// Runs the body of the extern "C" entry point `api` (its exported name) and returns the status the body
/// returns; when the body throws, the status of `family` for what it threw: moe_ep::Error its own code
/// (HCCL: HCCL_E_PTR for a missing pointer, HCCL_E_PARA, HCCL_E_TIMEOUT, HCCL_E_MEMORY for an internal one),
/// std::bad_alloc the family's memory status, anything else its internal status, each with the message for
/// aclGetRecentErrMsg.
template <typename Body>
auto Guarded(const char* api, ApiFamily family, Body&& body) noexcept -> std::invoke_result_t<Body&> {
  using Status = std::invoke_result_t<Body&>;
  static_assert(std::is_integral_v<Status> || std::is_enum_v<Status>, "Guarded: the body returns a status code");
  try {
    // The test hook goes first, so an injected throw never meets the caller's (possibly garbage) arguments.
    if (guard_detail::g_throw_injector_set.load(std::memory_order_relaxed)) [[unlikely]] {
      guard_detail::InjectThrow(api);
    }
    return body();
  } catch (...) {
    return static_cast<Status>(guard_detail::FailWithCurrentException(api, family));
  }
}

/// Guarded for an entry point whose result is not a status (a tensor, a string, a size): `on_failure` when
/// the body throws, with the message recorded all the same.
template <typename Result, typename Body>
Result GuardedValue(const char* api, ApiFamily family, Result on_failure, Body&& body) noexcept {
  Result result = on_failure;
  Guarded(api, family, [&]() -> int32_t {
    result = body();
    return 0;
  });
  return result;
}

namespace test_hooks {  // not "testing": that would hide GoogleTest's ::testing inside moe_ep::cann

/// Makes every guarded entry point call `injector(api)` before its body, so that a test can throw anything
/// there; nullptr (the default) turns it off. Hidden in libmoe_ep_cann: tests link moe_ep_capi for it.
void SetThrowInjector(std::function<void(const char* api)> injector);

}  // namespace test_hooks
}  // namespace moe_ep::cann
