// The aclrt stream calls, launching, and the registry of streams: the created ones and each context's default.
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cann/runtime/handle_registry.h"
#include "cann/runtime/internal.h"
#include "cann/runtime/stream.h"

namespace moe_ep::cann::runtime {
namespace {

// Never destroyed: aclFinalize joins the workers; a program that skips it exits with them idle.
HandleRegistry<Stream>& Streams() {
  static auto* const streams = new HandleRegistry<Stream>(kStreamHandleTag);
  return *streams;
}

// As in CANN, every context has a default stream of its own: the implicit context of each device (aclrtSetDevice)
// and each one made by aclrtCreateContext. Two ranks of different groups on one device, each in its context, must
// not queue behind each other's operations (each would wait for its peer behind the other group's).
struct DefaultStreams {
  std::mutex mu;
  std::map<aclrtContext, std::shared_ptr<Stream>> by_context;
};

DefaultStreams& TheDefaultStreams() {
  static auto* const defaults = new DefaultStreams;
  return *defaults;
}

// The default stream of the calling thread's context on `device` (its device's implicit context when it has none:
// a stream worker, or a thread whose context was destroyed, by itself or by another thread); made on first use when
// `create`, else nullptr if there is none yet. (A destroyed context's own would be made again, and kept until
// aclFinalize.)
std::shared_ptr<Stream> DefaultStream(int32_t device, bool create) {
  DefaultStreams& defaults = TheDefaultStreams();
  // Looked at under the lock that destroying a context's default stream takes (after the context is gone): a stream
  // made for a context alive here is destroyed with it.
  std::lock_guard<std::mutex> lock(defaults.mu);
  aclrtContext context = ThreadContext();
  if (context == nullptr || !ContextIsLive(context)) context = DefaultContext(device);
  auto it = defaults.by_context.find(context);
  if (it != defaults.by_context.end()) return it->second;
  if (!create) return nullptr;
  // Only when it is made: which context it is, for its name (a launch must not look the device's context up).
  const std::string name = context == DefaultContext(device) ? "the default stream of device " + std::to_string(device)
                                                             : "the default stream of context " + HandleName(context) +
                                                                   " on device " + std::to_string(device);
  auto stream = std::make_shared<Stream>(device, name);
  defaults.by_context.emplace(context, stream);
  return stream;
}

// The default streams of every context of `device`.
std::vector<std::shared_ptr<Stream>> DefaultStreamsOf(int32_t device) {
  DefaultStreams& defaults = TheDefaultStreams();
  std::lock_guard<std::mutex> lock(defaults.mu);
  std::vector<std::shared_ptr<Stream>> streams;
  for (const auto& [context, stream] : defaults.by_context) {
    if (stream->device() == device) streams.push_back(stream);
  }
  return streams;
}

aclError NoCurrentDevice(const std::string& api) {
  return Fail(ACL_ERROR_RT_CONTEXT_NULL, api +
                                             ": this thread has no current device for the default (nullptr) stream; "
                                             "call aclrtSetDevice or aclrtSetCurrentContext first");
}

aclError UnknownStream(const std::string& api, aclrtStream stream) {
  return Fail(ACL_ERROR_RT_PARAM_INVALID,
              api + ": stream " + HandleName(stream) + " is not a live stream (never created, or already destroyed)");
}

// The stream a call names: a created one, or for nullptr the current context's default stream (made
// when `create_default`; otherwise *out stays nullptr when there is none, i.e. nothing to wait for).
aclError ResolveStream(const std::string& api, aclrtStream handle, bool create_default, std::shared_ptr<Stream>* out) {
  if (handle == nullptr) {
    const int32_t device = CurrentDevice();
    if (device < 0) return NoCurrentDevice(api);
    *out = DefaultStream(device, create_default);
    return ACL_SUCCESS;
  }
  *out = Streams().Find(handle);
  return *out == nullptr ? UnknownStream(api, handle) : ACL_SUCCESS;
}

// A task's failure is reported as the task worded it ("op_name: what"); a failed wait names the call.
aclError Report(const std::string& api, const Stream::Outcome& outcome) {
  if (outcome.code == ACL_SUCCESS) return ACL_SUCCESS;
  return Fail(outcome.code, outcome.task_failed ? outcome.message : api + ": " + outcome.message);
}

aclError Synchronize(const char* api, aclrtStream handle, std::optional<std::chrono::milliseconds> timeout) {
  std::shared_ptr<Stream> stream;
  if (aclError status = ResolveStream(api, handle, /*create_default=*/false, &stream); status != ACL_SUCCESS) {
    return status;
  }
  if (stream == nullptr) return ACL_SUCCESS;  // the default stream never had a task
  return Report(api, stream->Synchronize(timeout));
}

}  // namespace

aclError LaunchAndWait(const char* api, aclrtStream handle, StreamTask task) {
  std::shared_ptr<Stream> stream;
  if (aclError status = ResolveStream(api, handle, /*create_default=*/true, &stream); status != ACL_SUCCESS) {
    return status;
  }
  std::optional<Stream::Outcome> outcome = stream->LaunchAndWait(api, std::move(task));
  if (!outcome) {
    return Fail(ACL_ERROR_RT_PARAM_INVALID, std::string(api) + ": " + stream->name() + " is being destroyed");
  }
  return Report(api, *outcome);
}

aclError SynchronizeDeviceStreams(const char* api, int32_t device) {
  if (OnStreamWorker()) {
    return Fail(ACL_ERROR_INVALID_PARAM, std::string(api) +
                                             ": a stream task cannot wait for a whole device: it would wait for "
                                             "its own stream");
  }
  std::vector<std::shared_ptr<Stream>> streams;
  for (auto& stream : Streams().Snapshot()) {
    if (stream->device() == device) streams.push_back(std::move(stream));
  }
  for (auto& fallback : DefaultStreamsOf(device)) streams.push_back(std::move(fallback));
  aclError first_failure = ACL_SUCCESS;
  std::string messages;
  // A failure stays for the stream's own synchronize too: the thread that launched the task (another, maybe) learns of
  // it there. The stream's first failure after it is recorded as well, for the next device synchronize to report.
  for (const auto& stream : streams) {
    Stream::Outcome outcome = stream->Synchronize(std::nullopt, /*keep_failure=*/true);
    if (outcome.code == ACL_SUCCESS) continue;
    if (first_failure == ACL_SUCCESS) first_failure = outcome.code;
    messages += (messages.empty() ? "" : "; ") + outcome.message;
  }
  // Each message already names its op; several failing streams are joined with "; ".
  if (first_failure == ACL_SUCCESS) return ACL_SUCCESS;
  return Fail(first_failure, messages);
}

void DestroyAllStreams() {
  std::vector<std::shared_ptr<Stream>> streams = Streams().RemoveAll();
  {
    DefaultStreams& defaults = TheDefaultStreams();
    std::lock_guard<std::mutex> lock(defaults.mu);
    for (auto& [context, stream] : defaults.by_context) streams.push_back(std::move(stream));
    defaults.by_context.clear();
  }
  // Outside every lock: the tasks still draining may launch, look up or synchronize other streams.
  for (auto& stream : streams) stream->Shutdown();
}

void DestroyDefaultStreamOf(aclrtContext context) {
  std::shared_ptr<Stream> stream;
  {
    DefaultStreams& defaults = TheDefaultStreams();
    std::lock_guard<std::mutex> lock(defaults.mu);
    auto it = defaults.by_context.find(context);
    if (it == defaults.by_context.end() || it->second.get() == Stream::OfCallingThread()) return;
    stream = std::move(it->second);
    defaults.by_context.erase(it);
  }
  stream->Shutdown();  // outside the lock: its tasks may launch on other default streams
}

bool OnStreamWorker() { return Stream::OfCallingThread() != nullptr; }

}  // namespace moe_ep::cann::runtime

namespace moe_ep::cann {

aclError LaunchOnStream(aclrtStream stream, const char* op_name, StreamTask task, int32_t* device,
                        int32_t required_device) {
  const std::string name = op_name != nullptr ? op_name : "LaunchOnStream";
  if (!task) return Fail(ACL_ERROR_INVALID_PARAM, name + ": there is no task to launch");
  std::shared_ptr<runtime::Stream> target;
  if (aclError status = runtime::ResolveStream(name, stream, /*create_default=*/true, &target); status != ACL_SUCCESS) {
    return status;
  }
  // On another device's stream, it would wait behind that device's ranks, and they behind it, until the deadline.
  if (required_device >= 0 && target->device() != required_device) {
    return Fail(ACL_ERROR_RT_STREAM_CONTEXT, name + ": " + target->name() + " is on device " +
                                                 std::to_string(target->device()) +
                                                 ", and the operator was built (phase "
                                                 "one) on device " +
                                                 std::to_string(required_device) +
                                                 ", where its communicators are: launch it on a stream of device " +
                                                 std::to_string(required_device));
  }
  if (!target->Launch(name, std::move(task))) {
    return Fail(ACL_ERROR_RT_PARAM_INVALID, name + ": " + target->name() + " is being destroyed");
  }
  if (device != nullptr) *device = target->device();
  return ACL_SUCCESS;
}

}  // namespace moe_ep::cann

using moe_ep::cann::ApiFamily;
using moe_ep::cann::Fail;
using moe_ep::cann::Guarded;
using moe_ep::cann::runtime::Stream;

namespace moe_ep::cann::runtime {
namespace {

aclError CreateStream(const std::string& api, aclrtStream* stream, Stream::Sync sync) {
  if (stream == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, api + ": parameter 'stream' is nullptr");
  const int32_t device = CurrentDevice();
  if (device < 0) {
    return Fail(ACL_ERROR_RT_CONTEXT_NULL, api +
                                               ": this thread has no current device; call aclrtSetDevice (or "
                                               "aclrtCreateContext / aclrtSetCurrentContext) first");
  }
  *stream = Streams().AddMade(
      [&](void* handle) { return std::make_shared<Stream>(device, "stream " + HandleName(handle), sync); });
  return ACL_SUCCESS;
}

}  // namespace
}  // namespace moe_ep::cann::runtime

extern "C" aclError aclrtCreateStream(aclrtStream* stream) {
  return Guarded("aclrtCreateStream", ApiFamily::kAcl, [&]() -> aclError {
    return moe_ep::cann::runtime::CreateStream("aclrtCreateStream", stream, Stream::Sync::kWakeWorker);
  });
}

// As CANN documents: priority is reserved on Atlas A2 / A3, and flag bits other than its two are ignored.
extern "C" aclError aclrtCreateStreamWithConfig(aclrtStream* stream, uint32_t /*priority*/, uint32_t flag) {
  return Guarded("aclrtCreateStreamWithConfig", ApiFamily::kAcl, [&]() -> aclError {
    const auto sync = (flag & ACL_STREAM_FAST_SYNC) != 0 ? Stream::Sync::kFast : Stream::Sync::kWakeWorker;
    return moe_ep::cann::runtime::CreateStream("aclrtCreateStreamWithConfig", stream, sync);
  });
}

// Waits for the stream's tasks, then joins its worker.
extern "C" aclError aclrtDestroyStream(aclrtStream stream) {
  return Guarded("aclrtDestroyStream", ApiFamily::kAcl, [&]() -> aclError {
    if (stream == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, "aclrtDestroyStream: parameter 'stream' is nullptr");
    // A task may destroy another stream (it waits for it), but not its own: it would wait for itself.
    if (auto found = moe_ep::cann::runtime::Streams().Find(stream); found && found.get() == Stream::OfCallingThread()) {
      return Fail(ACL_ERROR_INVALID_PARAM, "aclrtDestroyStream: a task of " + found->name() +
                                               " cannot destroy its own stream (it would wait for itself)");
    }
    std::shared_ptr<Stream> removed = moe_ep::cann::runtime::Streams().Remove(stream);
    if (removed == nullptr) return moe_ep::cann::runtime::UnknownStream("aclrtDestroyStream", stream);
    removed->Shutdown();
    return ACL_SUCCESS;
  });
}

extern "C" aclError aclrtSynchronizeStream(aclrtStream stream) {
  return Guarded("aclrtSynchronizeStream", ApiFamily::kAcl, [&]() -> aclError {
    return moe_ep::cann::runtime::Synchronize("aclrtSynchronizeStream", stream, std::nullopt);
  });
}

// CANN documents -1 (wait forever) and positive timeouts; 0 and other negatives are rejected rather than
// guessed at.
extern "C" aclError aclrtSynchronizeStreamWithTimeout(aclrtStream stream, int32_t timeout) {
  return Guarded("aclrtSynchronizeStreamWithTimeout", ApiFamily::kAcl, [&]() -> aclError {
    const char* api = "aclrtSynchronizeStreamWithTimeout";
    if (timeout == -1) return moe_ep::cann::runtime::Synchronize(api, stream, std::nullopt);
    if (timeout <= 0) {
      return Fail(ACL_ERROR_INVALID_PARAM, std::string(api) + ": timeout " + std::to_string(timeout) +
                                               " ms is invalid: use -1 to wait forever or a positive number of ms");
    }
    return moe_ep::cann::runtime::Synchronize(api, stream, std::chrono::milliseconds(timeout));
  });
}
