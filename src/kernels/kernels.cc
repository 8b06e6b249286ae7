// The public row kernels: each forwards to the table of the active instruction set.
#include "kernels/kernels.h"

#include <cmath>

#include "kernels/row_table.h"

namespace moe_ep::kernels {

using internal::ActiveKernels;

void HalfRowToFloat(Half type, const uint16_t* src, float* dst, int64_t n) {
  ActiveKernels().half_row_to_float(type, src, dst, n);
}

void FloatRowToHalf(Half type, const float* src, uint16_t* dst, int64_t n) {
  ActiveKernels().float_row_to_half(type, src, dst, n);
}

float DynamicQuantRow(Half type, const uint16_t* x, const float* smooth, int64_t h, int8_t* q) {
  return ActiveKernels().dynamic_quant_row(type, x, smooth, h, q);
}

void CommQuantRow(Half type, const uint16_t* x, int64_t h, int8_t* q, uint16_t* scales) {
  ActiveKernels().comm_quant_row(type, x, h, q, scales);
}

void CommDequantRow(Half type, const int8_t* q, const uint16_t* scales, int64_t h, float* v) {
  ActiveKernels().comm_dequant_row(type, q, scales, h, v);
}

void AccumulateWeightedHalf(Half type, const uint16_t* row, float w, int64_t h, float* acc) {
  ActiveKernels().accumulate_weighted_half(type, row, w, h, acc);
}

void AccumulateWeightedFloat(const float* v, float w, int64_t h, float* acc) {
  ActiveKernels().accumulate_weighted_float(v, w, h, acc);
}

void AccumulateHalf(Half type, const uint16_t* row, int64_t h, float* acc) {
  ActiveKernels().accumulate_half(type, row, h, acc);
}

void AccumulateFloat(const float* v, int64_t h, float* acc) { ActiveKernels().accumulate_float(v, h, acc); }

void SumHalfRows(Half type, const uint16_t* const* rows, const float* weights, const uint8_t* weighted, int64_t n,
                 int64_t h, uint16_t* out) {
  ActiveKernels().sum_half_rows(type, rows, weights, weighted, n, h, out);
}

void AddHalfRows(Half type, const uint16_t* a, const uint16_t* b, int64_t h, uint16_t* out) {
  ActiveKernels().add_half_rows(type, a, b, h, out);
}

float AddRmsNormRow(const float* acc, const uint16_t* residual, const uint16_t* gamma, int64_t h, float eps,
                    uint16_t* x_out, uint16_t* y_out, float* scratch) {
  return ActiveKernels().add_rms_norm_row(acc, residual, gamma, h, eps, x_out, y_out, scratch);
}

std::pair<float, float> SoftmaxOfTwo(float a1, float a2) {
  const float m = a1 > a2 ? a1 : a2;
  // The vector Exp of the NPU is not documented to the bit; exp in double rounded once to fp32 is the correctly
  // rounded value but for ties too rare to meet.
  const auto exp = [](float d) { return static_cast<float>(std::exp(static_cast<double>(d))); };
  const float e1 = exp(a1 - m), e2 = exp(a2 - m);
  const float sum = e1 + e2;
  return {e1 / sum, e2 / sum};
}

float ReduceSumTree(const float* v, int64_t n) {
  return internal::ReduceSumTreeWith(v, n, ActiveKernels().reduce_chunk);
}
float ReduceSumInOrder(const float* v, int64_t n) {
  return internal::ReduceSumInOrderWith(v, n, ActiveKernels().reduce_chunk);
}

}  // namespace moe_ep::kernels
