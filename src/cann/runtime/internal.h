// What the runtime emulation's own files share: the calling thread's device and context, the default
// context of a device, stream teardown for aclFinalize, and the guard around every C entry point.
#pragma once

#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "cann/runtime/runtime.h"
#include "moe_ep/error.h"

namespace moe_ep::cann::runtime {

// Handle tags (high bits of the opaque handles) so that a handle of one kind is never taken for another.
inline constexpr uintptr_t kStreamHandleTag = uintptr_t{0x5354} << 32;   // "ST"
inline constexpr uintptr_t kContextHandleTag = uintptr_t{0x4358} << 32;  // "CX"

/// The integer a C caller passed for an enum parameter, read without an enum-typed load: C allows any int
/// there, C++ (and UBSan's enum check) only the enum's value range, so a bad value is looked at as bytes.
template <typename Enum>
int64_t RawEnumValue(const Enum& value) {
  std::underlying_type_t<Enum> raw;
  std::memcpy(&raw, &value, sizeof(raw));
  return static_cast<int64_t>(raw);
}

// ---- devices.cc ----

/// ACL_SUCCESS when `device` is a virtual device id; otherwise Fail()s with a message naming `api`, the id
/// and the device count (or why MOE_EP_DEVICE_COUNT is unusable).
aclError CheckDeviceId(const char* api, int32_t device);

/// Makes `device` and `context` the calling thread's current ones (aclrtSetDevice, contexts).
void SetThreadDevice(int32_t device, aclrtContext context);

/// Pins the calling stream worker to `device` for good: aclFinalize does not clear it, so tasks that
/// still drain during aclFinalize see their stream's device.
void PinWorkerDevice(int32_t device);

/// The calling thread's current context handle (possibly destroyed since: look it up), or nullptr.
aclrtContext ThreadContext();

/// Forgets the calling thread's current context, keeping its device (the context was destroyed).
void ClearThreadContext();

/// Forgets the calling thread's current device and context (aclrtResetDevice of that device).
void ClearThreadDevice();

/// Forgets every thread's current device and context at once (aclFinalize), without touching them.
void ForgetAllThreadDevices();

// ---- contexts.cc ----

/// The implicit context of `device` that aclrtSetDevice makes current; created on first use.
aclrtContext DefaultContext(int32_t device);

/// Destroys every context (aclFinalize).
void DestroyAllContexts();

// ---- streams.cc ----

/// Waits for every stream of `device` (its default stream included). Returns the first failure code
/// and Fail()s with every failing stream's message; ACL_SUCCESS when none failed.
aclError SynchronizeDeviceStreams(const char* api, int32_t device);

/// Destroys every stream, waiting for their tasks and joining their workers (aclFinalize).
void DestroyAllStreams();

/// True when the calling thread is a stream's worker, which must not wait for streams to drain.
bool OnStreamWorker();

// ---- errors.cc ----

/// Fail(code, api + ": " + what) that cannot throw (for catch blocks): when even the message cannot be
/// built, the code is still returned.
int32_t FailNoThrow(const char* api, int32_t code, const char* what) noexcept;

/// "0x5354000010" for messages.
std::string HandleName(const void* handle);

/// Runs the body of an extern "C" entry point so that no exception reaches a C caller: moe_ep::Error
/// becomes its code, anything else `internal_error`, each with the message for aclGetRecentErrMsg.
template <typename Body>
int32_t GuardedCall(const char* api, int32_t internal_error, Body&& body) noexcept {
  try {
    return body();
  } catch (const moe_ep::Error& e) {
    return FailNoThrow(api, static_cast<int32_t>(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    return FailNoThrow(api, internal_error, "out of host memory");
  } catch (const std::exception& e) {
    return FailNoThrow(api, internal_error, e.what());
  } catch (...) {
    return FailNoThrow(api, internal_error, "unknown exception");
  }
}

/// GuardedCall for the aclrt / acl calls (internal errors are ACL_ERROR_INTERNAL_ERROR).
template <typename Body>
aclError GuardedAclCall(const char* api, Body&& body) noexcept {
  return GuardedCall(api, ACL_ERROR_INTERNAL_ERROR, std::forward<Body>(body));
}

}  // namespace moe_ep::cann::runtime
