// Internal to src/kernels: the per-ISA table of row kernels and the scalar helpers the vector paths share.
//
// Only declarations and constexpr data live here: the ISA files are compiled with -mavx2 / -mavx512*, so
// any out-of-line inline function they instantiated could be picked by the linker for the scalar build
// too and crash a CPU without those instructions (ODR + per-file flags).
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace moe_ep::kernels::internal {

// One entry per dispatched row kernel; signatures match the public functions in kernels.h.
struct RowKernels {
  void (*half_row_to_float)(Half type, const uint16_t* src, float* dst, int64_t n);
  void (*float_row_to_half)(Half type, const float* src, uint16_t* dst, int64_t n);
  float (*dynamic_quant_row)(Half type, const uint16_t* x, const float* smooth, int64_t h, int8_t* q);
  void (*comm_quant_row)(Half type, const uint16_t* x, int64_t h, int8_t* q, uint16_t* scales);
  void (*comm_dequant_row)(Half type, const int8_t* q, const uint16_t* scales, int64_t h, float* v);
  void (*accumulate_weighted_half)(Half type, const uint16_t* row, float w, int64_t h, float* acc);
  void (*accumulate_weighted_float)(const float* v, float w, int64_t h, float* acc);
  void (*accumulate_half)(Half type, const uint16_t* row, int64_t h, float* acc);
  void (*accumulate_float)(const float* v, int64_t h, float* acc);
  void (*add_half_rows)(Half type, const uint16_t* a, const uint16_t* b, int64_t h, uint16_t* out);
  void (*sum_half_rows)(Half type, const uint16_t* const* rows, const float* weights, const uint8_t* weighted,
                        int64_t n, int64_t h, uint16_t* out);
  float (*add_rms_norm_row)(const float* acc, const uint16_t* residual, const uint16_t* gamma, int64_t h, float eps,
                            uint16_t* x_out, uint16_t* y_out, float* scratch);
  float (*reduce_chunk)(const float* c, int64_t count);  // ReduceChunk64's contract
};

// The complete scalar table (scalar.cc) and the vector ones (avx2.cc, avx512.cc). A vector table fills every
// entry, pointing at the scalar function where it has no vector version.
const RowKernels& ScalarKernels();
const RowKernels& Avx2Kernels();
const RowKernels& Avx512Kernels();
// The table of ActiveIsa() (isa.cc); every public row kernel calls through it.
const RowKernels& ActiveKernels();

// ---- scalar building blocks shared by the vector paths (their tails and per-row scalar steps) ---------------

// The int8 conversion of every quantizer: NaN -> 0, clamp to [-128, 127], then round half to even.
// In range (the normal case, |v| <= 127) it is plain rint; the clamp and the NaN rule only pin down the
// degenerate rows (amax subnormal so ds = inf, inf/NaN inputs) identically on every ISA.
int8_t SaturateRoundToInt8(float v);

// Reduces `count` (1..64) floats as one zero-padded chunk of 64 by adding adjacent pairs, level by level:
// c[i] = c[2i] + c[2i + 1] for i < 32, then < 16, .., < 1 (the NPU's reduction within one repeat).
float ReduceChunk64(const float* c, int64_t count);

// ReduceSumTree with the first level (the chunks of v itself) done by `reduce_chunk` (same contract as
// ReduceChunk64); the upper levels (chunk sums, n/64 of them) are reduced with ReduceChunk64.
float ReduceSumTreeWith(const float* v, int64_t n, float (*reduce_chunk)(const float* c, int64_t count));
// ReduceSumInOrder with every chunk reduced by `reduce_chunk`.
float ReduceSumInOrderWith(const float* v, int64_t n, float (*reduce_chunk)(const float* c, int64_t count));

// Scalar row kernels (scalar.cc), also called by the vector paths for their tails.
void ScalarHalfRowToFloat(Half type, const uint16_t* src, float* dst, int64_t n);
void ScalarFloatRowToHalf(Half type, const float* src, uint16_t* dst, int64_t n);
void ScalarCommQuantRow(Half type, const uint16_t* x, int64_t h, int8_t* q, uint16_t* scales);
void ScalarCommDequantRow(Half type, const int8_t* q, const uint16_t* scales, int64_t h, float* v);
void ScalarAccumulateWeightedHalf(Half type, const uint16_t* row, float w, int64_t h, float* acc);
void ScalarAccumulateWeightedFloat(const float* v, float w, int64_t h, float* acc);
void ScalarAccumulateHalf(Half type, const uint16_t* row, int64_t h, float* acc);
void ScalarAccumulateFloat(const float* v, int64_t h, float* acc);
void ScalarAddHalfRows(Half type, const uint16_t* a, const uint16_t* b, int64_t h, uint16_t* out);
// SumHalfRows on columns [begin, h) only (a vector path's tail).
void ScalarSumHalfRowsFrom(Half type, const uint16_t* const* rows, const float* weights, const uint8_t* weighted,
                           int64_t n, int64_t begin, int64_t h, uint16_t* out);
// The two passes of AddRmsNormRow around the reduction, so a vector path can reuse any of them.
// Pass 1: xs = acc + float(residual); x_out = bf16(xs); scratch = (xs * xs) * inv_h.
void ScalarRmsNormPass1(const float* acc, const uint16_t* residual, int64_t h, float inv_h, uint16_t* x_out,
                        float* scratch);
// Pass 2: y = bf16(float(bf16(xs * rstd)) * float(gamma)), xs recomputed exactly as in pass 1.
void ScalarRmsNormPass2(const float* acc, const uint16_t* residual, const uint16_t* gamma, int64_t h, float rstd,
                        uint16_t* y_out);
// rstd = 1.0f / sqrtf(ms + eps) from the reduced mean square.
float RstdFromMeanSquare(float ms, float eps);

}  // namespace moe_ep::kernels::internal
