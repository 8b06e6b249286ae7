// The calling thread's recent error message: Fail() records it, aclGetRecentErrMsg() hands it out once.
#include <cstdio>
#include <string>
#include <utility>

#include "cann/guard.h"
#include "cann/runtime/internal.h"

namespace moe_ep::cann {
namespace {

// Per thread: the message waiting to be read, and the one last handed out, whose c_str() must stay
// valid until the thread's next aclGetRecentErrMsg call.
struct RecentError {
  bool pending = false;
  std::string message;
  std::string handed_out;
};

thread_local RecentError t_recent_error;

}  // namespace

int32_t Fail(int32_t code, const std::string& message) {
  try {
    t_recent_error.message = message;
  } catch (...) {
    // Out of memory copying the message: keep the code, and say at least that much.
    t_recent_error.message.clear();
  }
  t_recent_error.pending = true;
  return code;
}

namespace runtime {

void RunWithOwnRecentError(const std::function<void()>& body) {
  struct GiveBack {
    RecentError own = std::move(t_recent_error);
    ~GiveBack() { t_recent_error = std::move(own); }
  } give_back;
  t_recent_error = {};
  body();
}

std::string HandleName(const void* handle) {
  char text[32];
  std::snprintf(text, sizeof(text), "%p", handle);
  return text;
}

}  // namespace runtime
}  // namespace moe_ep::cann

// Guarded like every entry point, though nothing here allocates (swapping, not copying): when the guard
// catches something (a test's injected throw), the result is nullptr and the message waits for the next call.
extern "C" const char* aclGetRecentErrMsg() {
  const char* const none = nullptr;
  return moe_ep::cann::GuardedValue("aclGetRecentErrMsg", moe_ep::cann::ApiFamily::kAcl, none, [&] {
    auto& recent = moe_ep::cann::t_recent_error;
    if (!recent.pending) return none;
    recent.handed_out.swap(recent.message);
    recent.message.clear();
    recent.pending = false;
    return recent.handed_out.c_str();
  });
}
