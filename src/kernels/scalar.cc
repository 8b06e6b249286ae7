// Scalar row kernels: the reference-quality implementation of every formula in kernels.h.
#include <cmath>
#include <cstdint>

#include "kernels/kernels.h"
#include "kernels/row_table.h"

namespace moe_ep::kernels::internal {

int8_t SaturateRoundToInt8(float v) {
  if (v != v) return 0;
  // Same comparisons as the vector max/min (second operand kept unless the first is strictly beyond).
  v = v > -128.0f ? v : -128.0f;
  v = v < 127.0f ? v : 127.0f;
  // Round half to even without relying on the floating-point environment: v - trunc(v) is exact here.
  // Written with bitwise & / | so the compiler emits no data-dependent branches (random rows mispredict).
  int32_t i = static_cast<int32_t>(v);
  const float frac = v - static_cast<float>(i);
  const int32_t odd = i & 1;
  i += static_cast<int32_t>(frac > 0.5f) | (static_cast<int32_t>(frac == 0.5f) & odd);
  i -= static_cast<int32_t>(frac < -0.5f) | (static_cast<int32_t>(frac == -0.5f) & odd);
  return static_cast<int8_t>(i);
}

float ReduceChunk64(const float* c, int64_t count) {
  float buf[64];
  for (int64_t i = 0; i < 64; ++i) buf[i] = i < count ? c[i] : 0.0f;
  for (int m = 32; m >= 1; m /= 2) {  // in place: pair i is read before slot i is written
    for (int i = 0; i < m; ++i) buf[i] = buf[2 * i] + buf[2 * i + 1];
  }
  return buf[0];
}

float ReduceSumInOrderWith(const float* v, int64_t n, float (*reduce_chunk)(const float* c, int64_t count)) {
  float sum = 0.0f;
  for (int64_t start = 0; start < n; start += 64) sum = sum + reduce_chunk(v + start, n - start < 64 ? n - start : 64);
  return sum;
}

float ReduceSumTreeWith(const float* v, int64_t n, float (*reduce_chunk)(const float* c, int64_t count)) {
  if (n <= 0) return 0.0f;
  // Streaming over the levels of the tree: level[k] collects the sums of level k-1's chunks; a full group of
  // 64 is reduced at once and its sum moves up. 11 levels of 64 cover any int64 n.
  constexpr int kMaxLevels = 12;
  float level[kMaxLevels][64];
  int64_t count[kMaxLevels] = {};
  int64_t total[kMaxLevels] = {};  // how many values level k receives in all
  total[0] = n;
  for (int k = 1; k < kMaxLevels; ++k) total[k] = (total[k - 1] + 63) / 64;

  auto push = [&](int k, float value) {
    while (true) {
      level[k][count[k]++] = value;
      if (count[k] < 64) return;
      value = ReduceChunk64(level[k], 64);
      count[k] = 0;
      ++k;
    }
  };
  for (int64_t start = 0; start < n; start += 64) {
    const int64_t len = n - start < 64 ? n - start : 64;
    push(1, reduce_chunk(v + start, len));
  }
  // Flush the partial groups bottom-up; the first level holding a single value in all holds the answer.
  for (int k = 1; k < kMaxLevels; ++k) {
    if (total[k] == 1) return level[k][0];
    if (count[k] > 0) {
      const float sum = ReduceChunk64(level[k], count[k]);
      count[k] = 0;
      push(k + 1, sum);
    }
  }
  return level[kMaxLevels - 1][0];  // unreachable for any int64 n
}

void ScalarHalfRowToFloat(Half type, const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = HalfToFloat(type, src[i]);
}

void ScalarFloatRowToHalf(Half type, const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = FloatToHalf(type, src[i]);
}

namespace {

float ScalarDynamicQuantRow(Half type, const uint16_t* x, const float* smooth, int64_t h, int8_t* q) {
  auto value = [&](int64_t i) {
    const float f = HalfToFloat(type, x[i]);
    return smooth != nullptr ? f * smooth[i] : f;
  };
  float amax = 0.0f;
  for (int64_t i = 0; i < h; ++i) {
    const float a = std::fabs(value(i));
    amax = a > amax ? a : amax;  // NaN never wins (as vmaxps(a, amax))
  }
  // amax == 0: ds = inf, every f * ds is 0 * inf = NaN -> 0, and the scale is 1 / inf = 0 (docs/numerics.md).
  const float ds = 127.0f / amax;
  for (int64_t i = 0; i < h; ++i) q[i] = SaturateRoundToInt8(value(i) * ds);
  return 1.0f / ds;
}

}  // namespace

void ScalarCommQuantRow(Half type, const uint16_t* x, int64_t h, int8_t* q, uint16_t* scales) {
  for (int64_t start = 0; start < h; start += 8) {
    const int64_t len = h - start < 8 ? h - start : 8;  // the zero padding never changes the max
    float amax = 0.0f;
    for (int64_t i = 0; i < len; ++i) {
      const float a = std::fabs(HalfToFloat(type, x[start + i]));
      amax = a > amax ? a : amax;
    }
    const float s = amax * (1.0f / 127.0f);
    scales[start / 8] = FloatToHalf(type, s);
    for (int64_t i = 0; i < len; ++i) {
      if (s == 0.0f) {
        q[start + i] = 0;
        continue;
      }
      const float ratio = HalfToFloat(type, x[start + i]) / s;
      q[start + i] = SaturateRoundToInt8(HalfToFloat(Half::kFp16, FloatToHalf(Half::kFp16, ratio)));
    }
  }
}

void ScalarCommDequantRow(Half type, const int8_t* q, const uint16_t* scales, int64_t h, float* v) {
  for (int64_t i = 0; i < h; ++i) {
    // float(fp16(q)) is exact for an int8, so it is just float(q).
    const float product = static_cast<float>(q[i]) * HalfToFloat(type, scales[i / 8]);
    v[i] = HalfToFloat(type, FloatToHalf(type, product));
  }
}

void ScalarAccumulateWeightedHalf(Half type, const uint16_t* row, float w, int64_t h, float* acc) {
  for (int64_t i = 0; i < h; ++i) {
    const float product = HalfToFloat(type, row[i]) * w;
    acc[i] = acc[i] + product;
  }
}

void ScalarAccumulateWeightedFloat(const float* v, float w, int64_t h, float* acc) {
  for (int64_t i = 0; i < h; ++i) {
    const float product = v[i] * w;
    acc[i] = acc[i] + product;
  }
}

void ScalarAccumulateHalf(Half type, const uint16_t* row, int64_t h, float* acc) {
  for (int64_t i = 0; i < h; ++i) acc[i] = acc[i] + HalfToFloat(type, row[i]);
}

void ScalarAccumulateFloat(const float* v, int64_t h, float* acc) {
  for (int64_t i = 0; i < h; ++i) acc[i] = acc[i] + v[i];
}

void ScalarAddHalfRows(Half type, const uint16_t* a, const uint16_t* b, int64_t h, uint16_t* out) {
  for (int64_t i = 0; i < h; ++i) out[i] = FloatToHalf(type, HalfToFloat(type, a[i]) + HalfToFloat(type, b[i]));
}

void ScalarSumHalfRowsFrom(Half type, const uint16_t* const* rows, const float* weights, const uint8_t* weighted,
                           int64_t n, int64_t begin, int64_t h, uint16_t* out) {
  for (int64_t i = begin; i < h; ++i) {
    float sum = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      const float v = HalfToFloat(type, rows[j][i]);
      if (weighted[j]) {
        const float product = v * weights[j];
        sum = sum + product;
      } else {
        sum = sum + v;
      }
    }
    out[i] = FloatToHalf(type, sum);
  }
}

void ScalarRmsNormPass1(const float* acc, const uint16_t* residual, int64_t h, float inv_h, uint16_t* x_out,
                        float* scratch) {
  for (int64_t i = 0; i < h; ++i) {
    const float xs = acc[i] + HalfToFloat(Half::kBf16, residual[i]);
    x_out[i] = FloatToHalf(Half::kBf16, xs);
    const float square = xs * xs;
    scratch[i] = square * inv_h;
  }
}

void ScalarRmsNormPass2(const float* acc, const uint16_t* residual, const uint16_t* gamma, int64_t h, float rstd,
                        uint16_t* y_out) {
  for (int64_t i = 0; i < h; ++i) {
    const float xs = acc[i] + HalfToFloat(Half::kBf16, residual[i]);
    const float normed = HalfToFloat(Half::kBf16, FloatToHalf(Half::kBf16, xs * rstd));
    y_out[i] = FloatToHalf(Half::kBf16, normed * HalfToFloat(Half::kBf16, gamma[i]));
  }
}

float RstdFromMeanSquare(float ms, float eps) { return 1.0f / std::sqrt(ms + eps); }

namespace {

float ScalarAddRmsNormRow(const float* acc, const uint16_t* residual, const uint16_t* gamma, int64_t h, float eps,
                          uint16_t* x_out, uint16_t* y_out, float* scratch) {
  ScalarRmsNormPass1(acc, residual, h, 1.0f / static_cast<float>(h), x_out, scratch);
  const float rstd = RstdFromMeanSquare(ReduceSumInOrderWith(scratch, h, ReduceChunk64), eps);
  ScalarRmsNormPass2(acc, residual, gamma, h, rstd, y_out);
  return rstd;
}

}  // namespace

namespace {

void ScalarSumHalfRows(Half type, const uint16_t* const* rows, const float* weights, const uint8_t* weighted, int64_t n,
                       int64_t h, uint16_t* out) {
  ScalarSumHalfRowsFrom(type, rows, weights, weighted, n, 0, h, out);
}

}  // namespace

const RowKernels& ScalarKernels() {
  static constexpr RowKernels kTable = {
      ScalarHalfRowToFloat,
      ScalarFloatRowToHalf,
      ScalarDynamicQuantRow,
      ScalarCommQuantRow,
      ScalarCommDequantRow,
      ScalarAccumulateWeightedHalf,
      ScalarAccumulateWeightedFloat,
      ScalarAccumulateHalf,
      ScalarAccumulateFloat,
      ScalarAddHalfRows,
      ScalarSumHalfRows,
      ScalarAddRmsNormRow,
      ReduceChunk64,
  };
  return kTable;
}

}  // namespace moe_ep::kernels::internal
