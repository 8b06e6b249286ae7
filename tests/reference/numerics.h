// Scalar numerics of the reference model, written from first principles (shares nothing with src/):
// bf16/fp16 <-> fp32 with round-half-to-even, integer rounding, and the fixed-order tree sum of docs/semantics.md 3.5.
// The conversions are inline only because a large job calls them billions of times.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "reference/reference.h"

namespace moe_ref::numerics {

// Rounds the retained high part `kept` up when the dropped low part `dropped` (of `dropped_bits` bits) is
// more than half an ulp, or exactly half and `kept` is odd: round half to even.
// (`|` and `&` on bools instead of `||` and `&&` only keep the compiler from branching on random data.)
inline uint32_t RoundKept(uint32_t kept, uint32_t dropped, int dropped_bits) {
  const uint32_t half = 1u << (dropped_bits - 1);
  const bool round_up = (dropped > half) | ((dropped == half) & ((kept & 1u) != 0));
  return kept + (round_up ? 1u : 0u);
}

// bf16 = the upper 16 bits of an fp32 (1 sign, 8 exponent, 7 mantissa bits).
inline float Bf16ToFloat(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

// Round-half-to-even to bf16; NaN stays a (quiet) NaN, overflow gives infinity.
inline uint16_t FloatToBf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  // Keep the upper 16 bits and round on the lower 16. A carry out of the mantissa correctly bumps the
  // exponent (and turns values past the largest finite bf16 into infinity).
  const uint32_t rounded = RoundKept(bits >> 16, bits & 0xFFFF, 16);
  const bool is_nan = (bits & 0x7FFFFFFF) > 0x7F800000;
  return static_cast<uint16_t>(is_nan ? (bits >> 16) | 0x0040 : rounded);  // NaN: keep sign, force quiet
}

// IEEE binary16 (1 sign, 5 exponent, 10 mantissa bits; subnormals kept).
inline float HalfToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1F;
  const uint32_t mantissa = bits & 0x3FF;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24 (exact in fp32)
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 31) {  // inf, or NaN: its payload kept in the top mantissa bits, and quiet (bit 22 set)
    const uint32_t quiet = mantissa != 0 ? 0x400000 : 0;
    return std::bit_cast<float>(sign | 0x7F800000 | quiet | (mantissa << 13));
  }
  // Normal: rebias the exponent 15 -> 127 and widen the mantissa 10 -> 23 bits.
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// Round-half-to-even to fp16 (subnormal results included); |value| >= 65520 gives infinity.
inline uint16_t FloatToHalf(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const uint32_t magnitude = bits & 0x7FFFFFFF;
  if (magnitude > 0x7F800000) return sign | 0x7E00 | ((magnitude >> 13) & 0x3FF);  // NaN: top payload bits, quiet
  if (magnitude >= 0x477FF000) return sign | 0x7C00;  // >= 65520 (half-way past 65504, ties up): inf
  const uint32_t exponent = magnitude >> 23;          // biased fp32 exponent
  const uint32_t mantissa = magnitude & 0x7FFFFF;
  if (exponent >= 113) {
    // Normal fp16 (>= 2^-14): rebias the exponent 127 -> 15, keep 10 of the 23 mantissa bits.
    const uint32_t kept = ((exponent - 112) << 10) | (mantissa >> 13);
    return sign | static_cast<uint16_t>(RoundKept(kept, mantissa & 0x1FFF, 13));
  }
  // Subnormal fp16: the result is m * 2^-24 with m = value * 2^24 = significand * 2^(exponent - 126).
  if (exponent < 102) return sign;  // < 2^-25: rounds to zero (fp32 subnormals included)
  const uint32_t significand = mantissa | 0x800000;
  const int shift = 126 - static_cast<int>(exponent);  // 14..24
  const uint32_t kept = significand >> shift;
  const uint32_t dropped = significand & ((1u << shift) - 1);
  // m may round up to 1024, which is exactly the encoding of the smallest normal.
  return sign | static_cast<uint16_t>(RoundKept(kept, dropped, shift));
}

// HalfToFloat(FloatToHalf(value)) without branches (for the hot loop of the comm-quant round trip; the
// self-test checks that the two agree): fp16 keeps 10 mantissa bits down to 2^-14, and a fixed step of
// 2^-24 below that.
inline float RoundToHalfGrid(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint32_t magnitude = bits & 0x7FFFFFFF;
  // Normal range: drop 13 of the 23 mantissa bits, half to even (a carry correctly bumps the exponent).
  const float normal = std::bit_cast<float>(RoundKept(bits >> 13, bits & 0x1FFF, 13) << 13);
  // Below 2^-14: in |value| + 0.5 the last mantissa bit is worth 2^-24, so that addition rounds |value| to
  // a multiple of 2^-24, half to even; subtracting 0.5 again is exact.
  const float subnormal = std::copysign((std::fabs(value) + 0.5f) - 0.5f, value);
  const float infinity = std::copysign(std::numeric_limits<float>::infinity(), value);
  const float finite = magnitude < 0x38800000 ? subnormal : normal;   // |value| < 2^-14
  const float rounded = magnitude >= 0x477FF000 ? infinity : finite;  // |value| >= 65520
  return magnitude > 0x7F800000 ? std::numeric_limits<float>::quiet_NaN() : rounded;
}

// The two above, selected by the job's dtype.
inline float DtypeToFloat(DType dtype, uint16_t bits) {
  return dtype == DType::kBf16 ? Bf16ToFloat(bits) : HalfToFloat(bits);
}
inline uint16_t FloatToDtype(DType dtype, float value) {
  return dtype == DType::kBf16 ? FloatToBf16(value) : FloatToHalf(value);
}

// Nearest integral value, ties to even (the NPU's RINT), like rint/nearbyint in the default FE_TONEAREST mode.
inline float RoundHalfEven(float value) {
  // value + (+-2^23) lies in [2^23, 2^24), where fp32 has no fraction bits, so that addition itself rounds
  // value to an integer (half to even); subtracting 2^23 again is exact. Floats with |value| >= 2^23 are
  // integral already (inf and NaN too): they get magic = 0 and pass through unchanged. (Choosing magic by
  // an integer compare, rather than branching, lets the compiler vectorize the loops that call this.)
  const bool has_fraction_bits = (std::bit_cast<uint32_t>(value) & 0x7FFFFFFF) < 0x4B000000;  // |value| < 2^23
  const float magic = has_fraction_bits ? std::copysign(0x1p23f, value) : 0.0f;
  return std::copysign((value + magic) - magic, value);  // keep the sign of a zero result, like rint
}

// An integral float in [-128, 127] to int8 (exact). Outside that range it saturates; NaN gives 0.
inline int8_t IntegralFloatToInt8(float value) {
  const float clamped = value > 127.0f ? 127.0f : (value < -128.0f ? -128.0f : value);
  return std::isnan(value) ? int8_t{0} : static_cast<int8_t>(static_cast<int32_t>(clamped));
}

// docs/numerics.md, the NPU's fp32 reductions. Both split the list into chunks of 64 floats (the last one padded
// with +0) and sum each chunk by pairs of neighbours: (c0 + c1), (c2 + c3), ... then the same on those 32 sums,
// and so on until one is left.
// ReduceSumTree (AscendC Sum: the const experts' dot products): the chunk sums form the next list, reduced the
// same way, until one value is left. An empty list gives 0.
float ReduceSumTree(const std::vector<float>& values);
// ReduceSumInOrder (AscendC ReduceSum of a count: CombineAddRmsNorm's mean square): 0 plus the first chunk sum,
// plus the second, and so on.
float ReduceSumInOrder(const std::vector<float>& values);

}  // namespace moe_ref::numerics
