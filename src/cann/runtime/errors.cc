// The calling thread's recent error message: Fail() records it, aclGetRecentErrMsg() hands it out once.
#include <cstdio>
#include <string>
#include <utility>

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

int32_t FailNoThrow(const char* api, int32_t code, const char* what) noexcept {
  try {
    Fail(code, std::string(api) + ": " + what);
  } catch (...) {
    // Out of memory while building the message: the code alone still reports the failure.
  }
  return code;
}

std::string HandleName(const void* handle) {
  char text[32];
  std::snprintf(text, sizeof(text), "%p", handle);
  return text;
}

}  // namespace runtime
}  // namespace moe_ep::cann

extern "C" const char* aclGetRecentErrMsg() {
  auto& recent = moe_ep::cann::t_recent_error;
  if (!recent.pending) return nullptr;
  // Swapping, not copying: nothing here allocates, so this cannot throw into a C caller.
  recent.handed_out.swap(recent.message);
  recent.message.clear();
  recent.pending = false;
  return recent.handed_out.c_str();
}
