/* CANN-compatible host bfloat16 type (moe_ep): op::bfloat16, the upper half of an IEEE binary32, which programs
 * fill host buffers with. Conversions round to nearest, ties to even (NaN stays NaN); arithmetic goes through
 * float. C++ only. */
#ifndef MOE_EP_ACLNN_OPDEV_BFLOAT16_H_
#define MOE_EP_ACLNN_OPDEV_BFLOAT16_H_

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "aclnn/opdev/arithmetic.h"

namespace op {

struct bfloat16 : detail::ArithmeticThroughFloat<bfloat16> {
  uint16_t value = 0;  // the bits

  bfloat16() = default;
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  bfloat16(T v) : value(FromFloat(static_cast<float>(v))) {}  // NOLINT: converts like a built-in type

  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  operator T() const {  // NOLINT: converts like a built-in type
    return static_cast<T>(ToFloat(value));
  }

  static float ToFloat(uint16_t b) {
    const uint32_t bits = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
  static uint16_t FromFloat(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // a quiet NaN
    return static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
  }
};
static_assert(sizeof(bfloat16) == 2, "a host buffer of bfloat16 holds the 16-bit values and nothing else");

}  // namespace op

#endif  // MOE_EP_ACLNN_OPDEV_BFLOAT16_H_
