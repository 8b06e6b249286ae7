// Scalar numerics of the reference model: conversions by explicit bit manipulation, nothing clever.
#include "reference/numerics.h"

#include <array>
#include <bit>
#include <cmath>
#include <limits>

namespace moe_ref::numerics {
namespace {

uint32_t FloatBits(float value) { return std::bit_cast<uint32_t>(value); }
float BitsFloat(uint32_t bits) { return std::bit_cast<float>(bits); }

// Decodes one fp16 pattern: (-1)^s * 2^-24 * m for subnormals, (-1)^s * 2^(e-25) * (1024 + m) for normals.
float DecodeHalf(uint16_t bits) {
  const bool negative = (bits & 0x8000) != 0;
  const int exponent = (bits >> 10) & 0x1F;
  const int mantissa = bits & 0x3FF;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // zero or subnormal, exact
  } else if (exponent == 31) {
    magnitude = mantissa == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  } else {
    magnitude = std::ldexp(static_cast<float>(1024 + mantissa), exponent - 25);  // exact
  }
  return negative ? -magnitude : magnitude;
}

// All 65536 fp16 values, decoded once (decoding with ldexp per element would be slow for large jobs).
const std::array<float, 65536>& HalfTable() {
  static const std::array<float, 65536> table = [] {
    std::array<float, 65536> t{};
    for (uint32_t bits = 0; bits < 65536; ++bits) t[bits] = DecodeHalf(static_cast<uint16_t>(bits));
    return t;
  }();
  return table;
}

// Rounds `kept` (the retained high part) up when the dropped low part `dropped` (of `dropped_bits` bits)
// is more than half an ulp, or exactly half and `kept` is odd: round half to even.
uint32_t RoundKept(uint32_t kept, uint32_t dropped, int dropped_bits) {
  const uint32_t half = 1u << (dropped_bits - 1);
  if (dropped > half || (dropped == half && (kept & 1u) != 0)) return kept + 1;
  return kept;
}

}  // namespace

float Bf16ToFloat(uint16_t bits) { return BitsFloat(static_cast<uint32_t>(bits) << 16); }

uint16_t FloatToBf16(float value) {
  const uint32_t bits = FloatBits(value);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x0040);  // keep sign, force quiet
  // Keep the upper 16 bits and round on the lower 16. A carry out of the mantissa correctly bumps the
  // exponent (and turns the largest finite values into infinity).
  return static_cast<uint16_t>(RoundKept(bits >> 16, bits & 0xFFFF, 16));
}

float HalfToFloat(uint16_t bits) { return HalfTable()[bits]; }

uint16_t FloatToHalf(float value) {
  const uint32_t bits = FloatBits(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const uint32_t magnitude = bits & 0x7FFFFFFF;
  if (magnitude > 0x7F800000) return sign | 0x7E00;   // NaN
  if (magnitude >= 0x477FF000) return sign | 0x7C00;  // >= 65520 (half-way past 65504, ties up): inf
  const uint32_t exponent = magnitude >> 23;           // biased fp32 exponent
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

float DtypeToFloat(DType dtype, uint16_t bits) {
  return dtype == DType::kBf16 ? Bf16ToFloat(bits) : HalfToFloat(bits);
}

uint16_t FloatToDtype(DType dtype, float value) {
  return dtype == DType::kBf16 ? FloatToBf16(value) : FloatToHalf(value);
}

float RoundHalfEven(float value) { return std::nearbyint(value); }

int8_t IntegralFloatToInt8(float value) {
  if (std::isnan(value)) return 0;
  if (value >= 127.0f) return 127;
  if (value <= -128.0f) return -128;
  return static_cast<int8_t>(value);
}

float ReduceSumTree(const std::vector<float>& values) {
  if (values.empty()) return 0.0f;
  std::vector<float> list = values;
  while (list.size() > 1) {
    std::vector<float> next;
    for (size_t begin = 0; begin < list.size(); begin += 64) {
      float chunk[64] = {};  // zero-padded
      for (size_t i = 0; i < 64 && begin + i < list.size(); ++i) chunk[i] = list[begin + i];
      for (int width = 32; width >= 1; width /= 2) {
        for (int i = 0; i < width; ++i) chunk[i] = chunk[i] + chunk[i + width];
      }
      next.push_back(chunk[0]);
    }
    list = next;
  }
  return list[0];
}

}  // namespace moe_ref::numerics
