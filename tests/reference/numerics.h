// Scalar numerics of the reference model, written from first principles (shares nothing with src/):
// bf16/fp16 <-> fp32 with round-half-to-even, integer rounding, and the fixed-order tree sum of SPEC 3.5.
#pragma once

#include <cstdint>
#include <vector>

#include "reference/reference.h"

namespace moe_ref::numerics {

// bf16 = the upper 16 bits of an fp32 (1 sign, 8 exponent, 7 mantissa bits).
float Bf16ToFloat(uint16_t bits);
// Round-half-to-even to bf16; NaN stays a (quiet) NaN, overflow gives infinity.
uint16_t FloatToBf16(float value);

// IEEE binary16 (1 sign, 5 exponent, 10 mantissa bits; subnormals kept).
float HalfToFloat(uint16_t bits);
// Round-half-to-even to fp16 (subnormal results included); |value| >= 65520 gives infinity.
uint16_t FloatToHalf(float value);

// The two above, selected by the job's dtype.
float DtypeToFloat(DType dtype, uint16_t bits);
uint16_t FloatToDtype(DType dtype, float value);

// Nearest integral value, ties to even (the NPU's RINT). Uses the default FE_TONEAREST mode.
float RoundHalfEven(float value);
// An integral float in [-128, 127] to int8 (exact). Outside that range it saturates; NaN gives 0.
int8_t IntegralFloatToInt8(float value);

// SPEC 3.5 (ReduceSum order used by CombineAddRmsNorm): split the list into chunks of 64 floats (the last
// one zero-padded); reduce each chunk by halving steps c[i] = c[i] + c[i + w], w = 32, 16, 8, 4, 2, 1
// (i < w); the chunk sums form the next list; repeat until one value is left. An empty list gives 0.
float ReduceSumTree(const std::vector<float>& values);

}  // namespace moe_ref::numerics
