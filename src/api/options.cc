// Reading the MOE_EP_* environment variables (see include/moe_ep/options.h).
#include "moe_ep/options.h"

#include <cstdlib>
#include <string>

#include "moe_ep/error.h"

namespace moe_ep {

int64_t PositiveEnv(const char* name, int64_t fallback) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  if (*end != '\0' || value < 1) {
    throw Error(ErrorCode::kInvalidParam,
                std::string("environment variable ") + name + " = '" + text + "' must be a positive integer");
  }
  return value;
}

std::chrono::milliseconds DefaultTimeout() { return std::chrono::milliseconds(PositiveEnv("MOE_EP_TIMEOUT_MS", 300000)); }

uint64_t DefaultWindowBytes() { return static_cast<uint64_t>(PositiveEnv("MOE_EP_WINDOW_MB", 2048)) << 20; }

}  // namespace moe_ep
