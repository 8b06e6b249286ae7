// What the runtime emulation's own files share: the calling thread's device and context, the default
// context of a device, stream teardown for aclFinalize, and the guard (cann/guard.h) of their C entry points.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <type_traits>

#include "cann/guard.h"
#include "cann/runtime/runtime.h"
#include "moe_ep/error.h"
#include "transport/window.h"

namespace moe_ep::cann::runtime {

/// The integer a C caller passed for an enum parameter, read without an enum-typed load: C allows any int
/// there, C++ (and UBSan's enum check) only the enum's value range, so a bad value is looked at as bytes.
template <typename Enum>
int64_t RawEnumValue(const Enum& value) {
  std::underlying_type_t<Enum> raw;
  std::memcpy(&raw, &value, sizeof(raw));
  return static_cast<int64_t>(raw);
}

/// Waits on `cv` (`lock` held) until `done()`, without a deadline, asking the interrupt check every
/// kInterruptCheckEvery with the lock released: it may then act on this thread (the Python package runs the
/// interpreter's signal handlers on its main thread), and the task waited for fails at its own next look.
template <typename Done>
void WaitAskingTheInterruptCheck(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, Done done) {
  while (!cv.wait_for(lock, transport::kInterruptCheckEvery, done)) {
    lock.unlock();
    transport::InterruptRequested();
    lock.lock();
  }
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

/// Runs `body` on the calling thread as a worker of a stream of `device` would (that device current and
/// pinned), then gives the thread back its own device and context.
void RunAsWorkerOf(int32_t device, const std::function<void()>& body);

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

/// Whether `context` is a live context (not destroyed, by this thread or another).
bool ContextIsLive(aclrtContext context);

// ---- stream_api.cc ----

/// Launches `task` on `stream` (nullptr: the current context's default stream) as LaunchOnStream does, then waits
/// until it has run, as aclrtSynchronizeStream waits (running it, and the tasks before it, on the calling thread
/// where it can), and returns its failure Fail()ed (the stream's synchronizes do not report it again), or
/// ACL_SUCCESS. A task of that stream cannot wait for it: that is ACL_ERROR_INVALID_PARAM, and nothing is launched.
aclError LaunchAndWait(const char* api, aclrtStream stream, StreamTask task);

/// Waits for every stream of `device` (its default stream included). Returns the first failure code
/// and Fail()s with every failing stream's message; ACL_SUCCESS when none failed.
aclError SynchronizeDeviceStreams(const char* api, int32_t device);

/// Destroys every stream, waiting for their tasks and joining their workers (aclFinalize).
void DestroyAllStreams();

/// Destroys the default stream of `context` (aclrtDestroyContext), if it has one, as aclrtDestroyStream does:
/// its tasks finish first. A task of that stream itself leaves it to aclFinalize (it would wait for itself).
void DestroyDefaultStreamOf(aclrtContext context);

/// True when the calling thread is a stream's worker, which must not wait for streams to drain.
bool OnStreamWorker();

// ---- errors.cc ----

/// Runs `body` with a recent error message of its own: what it Fail()s with is dropped, and the calling
/// thread's pending message stays as it was (a task run by a synchronizing thread, as by a worker).
void RunWithOwnRecentError(const std::function<void()>& body);

/// "0x5354000010" for messages.
std::string HandleName(const void* handle);

}  // namespace moe_ep::cann::runtime
