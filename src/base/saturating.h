// Size arithmetic that saturates instead of wrapping: a size computed from hostile attributes comes out
// too large to fit anything, and fails its check, instead of wrapping to something small that passes.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

namespace moe_ep {

/// a * b, or the type's maximum when the product does not fit. For sizes and counts (a, b >= 0).
template <typename T>
constexpr T SaturatingMul(T a, T b) {
  static_assert(std::is_integral_v<T>);
  T product{};
  return __builtin_mul_overflow(a, b, &product) ? std::numeric_limits<T>::max() : product;
}

/// a + b, or the type's maximum when the sum does not fit. For sizes and counts (a, b >= 0).
template <typename T>
constexpr T SaturatingAdd(T a, T b) {
  static_assert(std::is_integral_v<T>);
  T sum{};
  return __builtin_add_overflow(a, b, &sum) ? std::numeric_limits<T>::max() : sum;
}

}  // namespace moe_ep
