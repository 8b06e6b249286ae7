// Scalar bf16 / fp16 <-> fp32 conversions: the reference every vector path must match bit for bit.
#include <bit>
#include <cstdint>

#include "kernels/kernels.h"

namespace moe_ep::kernels {
namespace {

float Fp16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  if (exp == 0x1F) {
    // Inf or NaN. F16C's vcvtph2ps quiets a signalling NaN (sets the top mantissa bit); match it so the
    // scalar and vector paths agree on every one of the 65536 patterns.
    const uint32_t quiet = man != 0 ? 0x400000u : 0u;
    return std::bit_cast<float>(sign | 0x7F800000u | quiet | (man << 13));
  }
  if (exp == 0) {
    if (man == 0) return std::bit_cast<float>(sign);
    // Subnormal half m * 2^-24: normalize so the leading 1 lands on bit 10, adjusting the exponent.
    int32_t e = 113;  // the biased fp32 exponent of 2^-14, the half's subnormal scale before shifting
    while ((man & 0x400u) == 0) {
      man <<= 1;
      --e;
    }
    man &= 0x3FFu;
    return std::bit_cast<float>(sign | (static_cast<uint32_t>(e) << 23) | (man << 13));
  }
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t FloatToFp16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) {
    // NaN: keep the sign and the top payload bits, force quiet (what vcvtps2ph does).
    return static_cast<uint16_t>(sign | 0x7E00u | ((abs >> 13) & 0x3FFu));
  }
  // 65520 = 0x477FF000 is the midpoint between the largest half (65504, odd mantissa) and 65536: it and
  // everything above round to inf.
  if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);
  if (abs >= 0x38800000u) {
    // Normal half (>= 2^-14): rebias the exponent, round the 13 dropped bits half to even. A carry out of
    // the mantissa correctly bumps the exponent.
    uint32_t u = abs - (112u << 23);
    u += 0xFFFu + ((u >> 13) & 1u);
    return static_cast<uint16_t>(sign | (u >> 13));
  }
  // Below 2^-14: a subnormal half m * 2^-24 (or zero). abs <= 2^-25 rounds to 0 (2^-25 is a tie, 0 is even);
  // this also covers fp32 subnormals.
  if (abs <= 0x33000000u) return sign;
  const uint32_t exp = abs >> 23;  // 102 .. 112
  const uint32_t mant = (abs & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126u - exp;  // m = mant * 2^-shift, shift in 14 .. 24
  const uint32_t m = (mant + (1u << (shift - 1)) - 1u + ((mant >> shift) & 1u)) >> shift;
  return static_cast<uint16_t>(sign | m);  // m == 1024 is exactly the smallest normal's bits
}

uint16_t FloatToBf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
    // NaN: truncating could clear every payload bit (-> inf); force the quiet bit instead.
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  }
  return static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

}  // namespace

float HalfToFloat(Half type, uint16_t bits) {
  if (type == Half::kBf16) return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
  return Fp16ToFloat(bits);
}

uint16_t FloatToHalf(Half type, float value) { return type == Half::kBf16 ? FloatToBf16(value) : FloatToFp16(value); }

}  // namespace moe_ep::kernels
