/* CANN-compatible host half-precision type (moe_ep): op::fp16_t, the IEEE binary16 value programs fill host
 * buffers with. Conversions round to nearest, ties to even; arithmetic goes through float. C++ only. */
#ifndef MOE_EP_ACLNN_OPDEV_FP16_T_H_
#define MOE_EP_ACLNN_OPDEV_FP16_T_H_

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "aclnn/opdev/arithmetic.h"

namespace op {

struct fp16_t : detail::ArithmeticThroughFloat<fp16_t> {
  uint16_t val = 0;  // the bits

  fp16_t() = default;
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  fp16_t(T value) : val(FromFloat(static_cast<float>(value))) {}  // NOLINT: converts like a built-in type

  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  operator T() const {  // NOLINT: converts like a built-in type
    return static_cast<T>(ToFloat(val));
  }
  float toFloat() const { return ToFloat(val); }

  static fp16_t FromBits(uint16_t bits) {
    fp16_t h;
    h.val = bits;
    return h;
  }

  static float ToFloat(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
    uint32_t bits;
    if (exponent == 0x1F) {
      bits = sign | 0x7F800000u | (mantissa << 13);  // infinity or NaN
    } else if (exponent != 0) {
      bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
      bits = sign;
    } else {                                                                        // subnormal: exact as a float
      const float magnitude = static_cast<float>(mantissa) * (1.0f / 16777216.0f);  // mantissa * 2^-24
      std::memcpy(&bits, &magnitude, sizeof bits);
      bits |= sign;
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }

  static uint16_t FromFloat(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
    const uint32_t magnitude = bits & 0x7FFFFFFFu;
    if (magnitude > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((magnitude >> 13) & 0x3FFu));  // NaN
    if (magnitude >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds past 65504: infinity
    if (magnitude < 0x38800000u) {               // below 2^-14: a subnormal half, rounded to nearest even
      if (magnitude < 0x33000000u) return sign;  // at most 2^-25: rounds to zero
      const uint32_t exponent = magnitude >> 23, mantissa = (magnitude & 0x7FFFFFu) | 0x800000u;
      const uint32_t shift = 126 - exponent;  // 14..24 bits off, to a unit of 2^-24
      const uint32_t kept = mantissa >> shift, rest = mantissa & ((1u << shift) - 1), half = 1u << (shift - 1);
      return static_cast<uint16_t>(sign | (kept + (rest > half || (rest == half && (kept & 1u)))));
    }
    const uint32_t rebased = magnitude - (112u << 23);  // the half's exponent and mantissa, 13 bits too many
    const uint32_t kept = rebased >> 13, rest = rebased & 0x1FFFu;
    return static_cast<uint16_t>(sign | (kept + (rest > 0x1000u || (rest == 0x1000u && (kept & 1u)))));
  }
};
static_assert(sizeof(fp16_t) == 2, "a host buffer of fp16_t holds the 16-bit values and nothing else");

}  // namespace op

#endif  // MOE_EP_ACLNN_OPDEV_FP16_T_H_
