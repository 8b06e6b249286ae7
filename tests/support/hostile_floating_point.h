// Floating-point settings a caller may have on its thread, for tests that the operators compute without them.
#pragma once

#include <xmmintrin.h>

namespace moe_ep::testing {

// Flush-to-zero, denormals-are-zero and rounding upwards (every exception masked, as by default).
inline constexpr unsigned kHostileMxcsr = 0x1F80 | 0x8000 | 0x0040 | 0x4000;

// While it lives, the thread computes with kHostileMxcsr.
class HostileFloatingPoint {
 public:
  HostileFloatingPoint() { _mm_setcsr(kHostileMxcsr); }
  ~HostileFloatingPoint() { _mm_setcsr(saved_); }
  HostileFloatingPoint(const HostileFloatingPoint&) = delete;
  HostileFloatingPoint& operator=(const HostileFloatingPoint&) = delete;

 private:
  unsigned saved_ = _mm_getcsr();
};

}  // namespace moe_ep::testing
