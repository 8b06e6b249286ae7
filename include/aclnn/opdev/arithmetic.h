/* moe_ep: the arithmetic op::fp16_t and op::bfloat16 share: every operator goes through float, and its result is
 * rounded back (to nearest, ties to even). C++ only. */
#ifndef MOE_EP_ACLNN_OPDEV_ARITHMETIC_H_
#define MOE_EP_ACLNN_OPDEV_ARITHMETIC_H_

namespace op::detail {

template <typename T>  // T converts to and from float
struct ArithmeticThroughFloat {
  friend T operator+(T a, T b) { return T(static_cast<float>(a) + static_cast<float>(b)); }
  friend T operator-(T a, T b) { return T(static_cast<float>(a) - static_cast<float>(b)); }
  friend T operator*(T a, T b) { return T(static_cast<float>(a) * static_cast<float>(b)); }
  friend T operator/(T a, T b) { return T(static_cast<float>(a) / static_cast<float>(b)); }
  friend T operator-(T a) { return T(-static_cast<float>(a)); }
  friend T& operator+=(T& a, T b) { return a = a + b; }
  friend T& operator-=(T& a, T b) { return a = a - b; }
  friend T& operator*=(T& a, T b) { return a = a * b; }
  friend T& operator/=(T& a, T b) { return a = a / b; }
  friend bool operator==(T a, T b) { return static_cast<float>(a) == static_cast<float>(b); }
  friend bool operator!=(T a, T b) { return static_cast<float>(a) != static_cast<float>(b); }
  friend bool operator<(T a, T b) { return static_cast<float>(a) < static_cast<float>(b); }
  friend bool operator>(T a, T b) { return static_cast<float>(a) > static_cast<float>(b); }
  friend bool operator<=(T a, T b) { return static_cast<float>(a) <= static_cast<float>(b); }
  friend bool operator>=(T a, T b) { return static_cast<float>(a) >= static_cast<float>(b); }
};

}  // namespace op::detail

#endif  // MOE_EP_ACLNN_OPDEV_ARITHMETIC_H_
