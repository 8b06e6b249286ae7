// aclInit and aclFinalize: the runtime's lifetime. aclFinalize ends every stream (after its tasks) and
// context; memory and tensors stay the program's to free.
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>
#include <string>

#include "cann/runtime/internal.h"

namespace {

std::mutex g_init_mu;
bool g_initialized = false;  // guarded by g_init_mu

}  // namespace

using moe_ep::cann::ApiFamily;
using moe_ep::cann::Fail;
using moe_ep::cann::Guarded;

// The configuration file's content is ignored (it tunes dump and profiling on a real device), but a path
// that names no file is reported: the program most likely meant another one. "" is treated as no path.
extern "C" aclError aclInit(const char* configPath) {
  return Guarded("aclInit", ApiFamily::kAcl, [&]() -> aclError {
    if (configPath != nullptr && *configPath != '\0') {
      struct stat info {};
      if (stat(configPath, &info) != 0 || !S_ISREG(info.st_mode) || access(configPath, R_OK) != 0) {
        return Fail(ACL_ERROR_INVALID_PARAM,
                    std::string("aclInit: configPath '") + configPath + "' names no readable file");
      }
    }
    std::lock_guard<std::mutex> lock(g_init_mu);
    if (g_initialized) {
      return Fail(ACL_ERROR_REPEAT_INITIALIZE, "aclInit: already initialized; call aclFinalize before aclInit again");
    }
    g_initialized = true;
    return ACL_SUCCESS;
  });
}

// Lenient like the rest of the runtime: it also cleans up after a program that never called aclInit,
// and a second call finds nothing left to do. Not allowed inside a stream task, which it would wait for.
extern "C" aclError aclFinalize() {
  return Guarded("aclFinalize", ApiFamily::kAcl, [&]() -> aclError {
    if (moe_ep::cann::runtime::OnStreamWorker()) {
      return Fail(ACL_ERROR_INVALID_PARAM, "aclFinalize: a stream task cannot finalize the runtime it runs on");
    }
    {
      std::lock_guard<std::mutex> lock(g_init_mu);
      g_initialized = false;
    }
    // Not under the lock: the tasks still draining may call anything, aclInit included.
    moe_ep::cann::runtime::DestroyAllStreams();
    moe_ep::cann::runtime::DestroyAllContexts();
    moe_ep::cann::runtime::ForgetAllThreadDevices();
    return ACL_SUCCESS;
  });
}
