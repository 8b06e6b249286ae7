// Contexts: the implicit one per device that aclrtSetDevice uses, and those of aclrtCreateContext; a
// context names a device, and making it current makes its device the thread's current device.
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "cann/runtime/handle_registry.h"
#include "cann/runtime/internal.h"

namespace moe_ep::cann::runtime {
namespace {

struct Context {
  int32_t device = -1;
  bool is_default = false;  // made by aclrtSetDevice; the program does not own it
};

// Never destroyed: stream workers may still run while the process exits.
HandleRegistry<Context>& Contexts() {
  static auto* const contexts = new HandleRegistry<Context>(kContextHandleTag);
  return *contexts;
}

struct DefaultContexts {
  std::mutex mu;
  std::map<int32_t, aclrtContext> by_device;
};

DefaultContexts& TheDefaultContexts() {
  static auto* const defaults = new DefaultContexts;
  return *defaults;
}

}  // namespace

aclrtContext DefaultContext(int32_t device) {
  DefaultContexts& defaults = TheDefaultContexts();
  std::lock_guard<std::mutex> lock(defaults.mu);
  auto it = defaults.by_device.find(device);
  if (it != defaults.by_device.end() && Contexts().Find(it->second) != nullptr) return it->second;
  aclrtContext context = Contexts().Add(std::make_shared<Context>(Context{device, /*is_default=*/true}));
  defaults.by_device[device] = context;
  return context;
}

bool ContextIsLive(aclrtContext context) { return Contexts().Find(context) != nullptr; }

void DestroyAllContexts() {
  DefaultContexts& defaults = TheDefaultContexts();
  std::lock_guard<std::mutex> lock(defaults.mu);
  defaults.by_device.clear();
  Contexts().RemoveAll();
}

}  // namespace moe_ep::cann::runtime

using moe_ep::cann::ApiFamily;
using moe_ep::cann::Fail;
using moe_ep::cann::Guarded;
using moe_ep::cann::runtime::Contexts;
using moe_ep::cann::runtime::HandleName;

namespace {

aclError UnknownContext(const char* api, aclrtContext context) {
  return Fail(ACL_ERROR_RT_INVALID_HANDLE, std::string(api) + ": context " + HandleName(context) +
                                               " is not a live context (never created, or already destroyed)");
}

}  // namespace

// Like CANN, the new context also becomes the calling thread's current context.
extern "C" aclError aclrtCreateContext(aclrtContext* context, int32_t deviceId) {
  return Guarded("aclrtCreateContext", ApiFamily::kAcl, [&]() -> aclError {
    if (context == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, "aclrtCreateContext: parameter 'context' is nullptr");
    if (aclError status = moe_ep::cann::runtime::CheckDeviceId("aclrtCreateContext", deviceId); status != ACL_SUCCESS) {
      return status;
    }
    aclrtContext created = Contexts().Add(std::make_shared<moe_ep::cann::runtime::Context>(
        moe_ep::cann::runtime::Context{deviceId, /*is_default=*/false}));
    moe_ep::cann::runtime::SetThreadDevice(deviceId, created);
    *context = created;
    return ACL_SUCCESS;
  });
}

// Streams made while the context was current stay usable (lenient, like aclrtResetDevice).
extern "C" aclError aclrtDestroyContext(aclrtContext context) {
  return Guarded("aclrtDestroyContext", ApiFamily::kAcl, [&]() -> aclError {
    if (context == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, "aclrtDestroyContext: parameter 'context' is nullptr");
    auto found = Contexts().Find(context);
    if (found == nullptr) return UnknownContext("aclrtDestroyContext", context);
    if (found->is_default) {
      return Fail(ACL_ERROR_INVALID_PARAM, "aclrtDestroyContext: context " + HandleName(context) +
                                               " is the default context of device " + std::to_string(found->device) +
                                               " (made by aclrtSetDevice); only aclFinalize ends it");
    }
    // Another thread may have destroyed it since Find: exactly one Remove succeeds.
    if (Contexts().Remove(context) == nullptr) return UnknownContext("aclrtDestroyContext", context);
    if (moe_ep::cann::runtime::ThreadContext() == context) moe_ep::cann::runtime::ClearThreadContext();
    moe_ep::cann::runtime::DestroyDefaultStreamOf(context);  // as in CANN, the context's default stream goes with it
    return ACL_SUCCESS;
  });
}

extern "C" aclError aclrtSetCurrentContext(aclrtContext context) {
  return Guarded("aclrtSetCurrentContext", ApiFamily::kAcl, [&]() -> aclError {
    if (context == nullptr) {
      return Fail(ACL_ERROR_INVALID_PARAM, "aclrtSetCurrentContext: parameter 'context' is nullptr");
    }
    auto found = Contexts().Find(context);
    if (found == nullptr) return UnknownContext("aclrtSetCurrentContext", context);
    moe_ep::cann::runtime::SetThreadDevice(found->device, context);
    return ACL_SUCCESS;
  });
}

extern "C" aclError aclrtGetCurrentContext(aclrtContext* context) {
  return Guarded("aclrtGetCurrentContext", ApiFamily::kAcl, [&]() -> aclError {
    if (context == nullptr) {
      return Fail(ACL_ERROR_INVALID_PARAM, "aclrtGetCurrentContext: parameter 'context' is nullptr");
    }
    aclrtContext current = moe_ep::cann::runtime::ThreadContext();
    if (current == nullptr || Contexts().Find(current) == nullptr) {
      *context = nullptr;
      return Fail(ACL_ERROR_RT_CONTEXT_NULL,
                  "aclrtGetCurrentContext: this thread has no current context; call aclrtSetDevice, "
                  "aclrtCreateContext or aclrtSetCurrentContext first");
    }
    *context = current;
    return ACL_SUCCESS;
  });
}
