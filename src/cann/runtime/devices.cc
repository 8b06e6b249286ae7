// Virtual devices: how many there are (MOE_EP_DEVICE_COUNT), the calling thread's current device and
// context, and the aclrt device calls.
#include <atomic>
#include <string>

#include "base/env.h"
#include "cann/runtime/internal.h"
#include "moe_ep/error.h"

namespace moe_ep::cann {
namespace {

// The device count, or why MOE_EP_DEVICE_COUNT is unusable (then `count` is 0, so that every device
// call fails with `problem` instead of silently running with a count the user did not ask for).
struct DeviceCountSetting {
  int32_t count = 0;
  std::string problem;
};

DeviceCountSetting ReadDeviceCountSetting() {
  DeviceCountSetting setting;
  try {
    setting.count = env::DeviceCount();
  } catch (const Error& e) {
    setting.problem = e.what();
  }
  return setting;
}

// Read once, at first use; never destroyed, so stream workers still running at exit can use it.
const DeviceCountSetting& Setting() {
  static const DeviceCountSetting* const setting = new DeviceCountSetting(ReadDeviceCountSetting());
  return *setting;
}

// aclFinalize starts a new generation; a thread's device and context from an older one are forgotten.
std::atomic<uint64_t> g_generation{1};

struct ThreadDevice {
  int32_t device = -1;
  aclrtContext context = nullptr;
  uint64_t generation = 0;
  bool pinned = false;  // a stream worker: its device outlives generations
};

thread_local ThreadDevice t_device;

bool ThreadDeviceIsCurrent() {
  return t_device.pinned || t_device.generation == g_generation.load(std::memory_order_acquire);
}

}  // namespace

int32_t DeviceCount() { return Setting().count; }

int32_t CurrentDevice() { return ThreadDeviceIsCurrent() ? t_device.device : -1; }

namespace runtime {

aclError CheckDeviceId(const char* api, int32_t device) {
  const DeviceCountSetting& setting = Setting();
  if (!setting.problem.empty()) {
    return Fail(ACL_ERROR_RT_INVALID_DEVICEID,
                std::string(api) + ": device " + std::to_string(device) + " is unusable: " + setting.problem);
  }
  if (device < 0 || device >= setting.count) {
    return Fail(ACL_ERROR_RT_INVALID_DEVICEID, std::string(api) + ": device id " + std::to_string(device) +
                                                   " is out of range: there are " + std::to_string(setting.count) +
                                                   " virtual devices, ids 0 to " + std::to_string(setting.count - 1) +
                                                   " (MOE_EP_DEVICE_COUNT sets the count)");
  }
  return ACL_SUCCESS;
}

void SetThreadDevice(int32_t device, aclrtContext context) {
  t_device.device = device;
  t_device.context = context;
  t_device.generation = g_generation.load(std::memory_order_acquire);
}

void PinWorkerDevice(int32_t device) {
  SetThreadDevice(device, nullptr);
  t_device.pinned = true;
}

void RunAsWorkerOf(int32_t device, const std::function<void()>& body) {
  struct GiveBack {
    ThreadDevice own = t_device;
    ~GiveBack() { t_device = own; }
  } give_back;
  PinWorkerDevice(device);
  body();
}

aclrtContext ThreadContext() { return ThreadDeviceIsCurrent() ? t_device.context : nullptr; }

void ClearThreadContext() { t_device.context = nullptr; }

void ClearThreadDevice() {
  if (t_device.pinned) return;  // a worker keeps its stream's device
  t_device.device = -1;
  t_device.context = nullptr;
}

void ForgetAllThreadDevices() { g_generation.fetch_add(1, std::memory_order_acq_rel); }

}  // namespace runtime
}  // namespace moe_ep::cann

using moe_ep::cann::ApiFamily;
using moe_ep::cann::Fail;
using moe_ep::cann::Guarded;
using moe_ep::cann::runtime::CheckDeviceId;

// None of these calls requires aclInit first: a program that forgets it still runs (lenient on purpose;
// CANN would return ACL_ERROR_UNINITIALIZE, which helps nobody on a host emulation).

extern "C" aclError aclrtGetDeviceCount(uint32_t* count) {
  return Guarded("aclrtGetDeviceCount", ApiFamily::kAcl, [&]() -> aclError {
    if (count == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, "aclrtGetDeviceCount: parameter 'count' is nullptr");
    const moe_ep::cann::DeviceCountSetting& setting = moe_ep::cann::Setting();
    if (!setting.problem.empty()) return Fail(ACL_ERROR_INVALID_PARAM, "aclrtGetDeviceCount: " + setting.problem);
    *count = static_cast<uint32_t>(setting.count);
    return ACL_SUCCESS;
  });
}

extern "C" const char* aclrtGetSocName() {
  return moe_ep::cann::GuardedValue("aclrtGetSocName", ApiFamily::kAcl, static_cast<const char*>(nullptr),
                                    [] { return moe_ep::env::SocName().first; });
}

extern "C" aclError aclrtSetDevice(int32_t deviceId) {
  return Guarded("aclrtSetDevice", ApiFamily::kAcl, [&]() -> aclError {
    if (aclError status = CheckDeviceId("aclrtSetDevice", deviceId); status != ACL_SUCCESS) return status;
    moe_ep::cann::runtime::SetThreadDevice(deviceId, moe_ep::cann::runtime::DefaultContext(deviceId));
    return ACL_SUCCESS;
  });
}

extern "C" aclError aclrtGetDevice(int32_t* deviceId) {
  return Guarded("aclrtGetDevice", ApiFamily::kAcl, [&]() -> aclError {
    if (deviceId == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, "aclrtGetDevice: parameter 'deviceId' is nullptr");
    const int32_t device = moe_ep::cann::CurrentDevice();
    if (device < 0) {
      return Fail(ACL_ERROR_RT_CONTEXT_NULL,
                  "aclrtGetDevice: this thread has no current device; call aclrtSetDevice or aclrtSetCurrentContext "
                  "first");
    }
    *deviceId = device;
    return ACL_SUCCESS;
  });
}

// Releases nothing the program still holds (its streams, contexts and memory stay usable): CANN would
// free them, but a host emulation loses nothing by keeping them, and the seed samples reset a device
// before they are done with other threads' handles on it. Only the thread's current device is cleared.
extern "C" aclError aclrtResetDevice(int32_t deviceId) {
  return Guarded("aclrtResetDevice", ApiFamily::kAcl, [&]() -> aclError {
    if (aclError status = CheckDeviceId("aclrtResetDevice", deviceId); status != ACL_SUCCESS) return status;
    if (moe_ep::cann::CurrentDevice() == deviceId) moe_ep::cann::runtime::ClearThreadDevice();
    return ACL_SUCCESS;
  });
}

extern "C" aclError aclrtSynchronizeDevice() {
  return Guarded("aclrtSynchronizeDevice", ApiFamily::kAcl, [&]() -> aclError {
    const int32_t device = moe_ep::cann::CurrentDevice();
    if (device < 0) {
      return Fail(ACL_ERROR_RT_CONTEXT_NULL,
                  "aclrtSynchronizeDevice: this thread has no current device; call aclrtSetDevice first");
    }
    return moe_ep::cann::runtime::SynchronizeDeviceStreams("aclrtSynchronizeDevice", device);
  });
}
