// The floating-point environment moe_ep computes in: the default one, whatever the calling thread set.
#pragma once

#include <xmmintrin.h>

namespace moe_ep {

// While it lives, the thread computes with every exception masked, rounding to nearest even and subnormals kept
// (MXCSR 0x1F80), as the operators' arithmetic is specified; on its end the thread's own settings come back, with
// the exceptions raised meanwhile flagged. A caller may have set flush-to-zero, denormals-are-zero or another
// rounding mode (torch.set_flush_denormal, a library built with -ffast-math setting them at load), and worker
// threads inherit the settings of the thread that started them: without this the same row could give other bits by
// the thread that handled it. (The Python extension, which sees only the public headers, converts norm_eps under
// the same value itself: python/src/args.h.)
class DefaultFloatingPoint {
 public:
  static constexpr unsigned kDefault = 0x1F80;  // exceptions masked, round to nearest, no FTZ, no DAZ

  DefaultFloatingPoint() : saved_(_mm_getcsr()) {
    if ((saved_ & ~kStatusFlags) != kDefault) _mm_setcsr(kDefault);
  }
  ~DefaultFloatingPoint() {
    if ((saved_ & ~kStatusFlags) != kDefault) _mm_setcsr(saved_ | (_mm_getcsr() & kStatusFlags));
  }
  DefaultFloatingPoint(const DefaultFloatingPoint&) = delete;
  DefaultFloatingPoint& operator=(const DefaultFloatingPoint&) = delete;

 private:
  static constexpr unsigned kStatusFlags = 0x3F;  // the sticky exception flags, which decide nothing
  unsigned saved_;
};

}  // namespace moe_ep
