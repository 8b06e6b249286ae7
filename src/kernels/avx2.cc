// AVX2 + F16C row kernels, bit-identical to scalar.cc; 8 lanes, tails done by the scalar code.
//
// Compiled with -mavx2 -mf16c: keep every helper in the anonymous namespace (internal linkage) and call only
// out-of-line scalar functions, so no AVX2 code can leak into the rest of the library (row_table.h).
#include <immintrin.h>

#include <cstdint>

#include "kernels/kernels.h"
#include "kernels/row_table.h"

namespace moe_ep::kernels::internal {
namespace {

constexpr int kRneNoExc = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

template <Half kType>
__m256 Widen(__m128i half) {
  if constexpr (kType == Half::kBf16) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
  } else {
    return _mm256_cvtph_ps(half);
  }
}

template <Half kType>
__m256 LoadHalf(const uint16_t* p) {
  return Widen<kType>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// FloatToHalf on 8 lanes. bf16: round half to even in integer arithmetic, NaN -> quiet NaN (half.cc).
template <Half kType>
__m128i Narrow(__m256 f) {
  if constexpr (kType == Half::kBf16) {
    const __m256i bits = _mm256_castps_si256(f);
    const __m256i high = _mm256_srli_epi32(bits, 16);
    const __m256i lsb = _mm256_and_si256(high, _mm256_set1_epi32(1));
    const __m256i rounded =
        _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7FFF)), lsb), 16);
    const __m256i quiet = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
    const __m256i result = _mm256_blendv_epi8(rounded, quiet, nan);
    // Every lane is <= 0xFFFF, so the unsigned-saturating pack is a plain narrowing.
    return _mm_packus_epi32(_mm256_castsi256_si128(result), _mm256_extracti128_si256(result, 1));
  } else {
    return _mm256_cvtps_ph(f, kRneNoExc);
  }
}

template <Half kType>
void StoreHalf(uint16_t* p, __m256 f) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), Narrow<kType>(f));
}

// SaturateRoundToInt8 on 8 lanes, packed to 8 bytes: NaN -> 0, clamp (same max/min operand order), RNE.
void StoreSaturatedInt8(int8_t* p, __m256 v) {
  v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
  v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-128.0f)), _mm256_set1_ps(127.0f));
  const __m256i i32 = _mm256_cvttps_epi32(_mm256_round_ps(v, kRneNoExc));
  const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi16(i16, i16));
}

// |v| with NaN lanes replaced by 0: the scalar max (a > amax ? a : amax from 0) ignores NaN.
__m256 AbsNoNan(__m256 v) {
  const __m256 a = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
  return _mm256_and_ps(a, _mm256_cmp_ps(a, a, _CMP_ORD_Q));
}

template <Half kType>
void HalfRowToFloatT(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, LoadHalf<kType>(src + i));
  ScalarHalfRowToFloat(kType, src + i, dst + i, n - i);
}

template <Half kType>
void FloatRowToHalfT(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) StoreHalf<kType>(dst + i, _mm256_loadu_ps(src + i));
  ScalarFloatRowToHalf(kType, src + i, dst + i, n - i);
}

template <Half kType>
float DynamicQuantRowT(const uint16_t* x, const float* smooth, int64_t h, int8_t* q) {
  auto load = [&](int64_t i) {
    const __m256 f = LoadHalf<kType>(x + i);
    return smooth != nullptr ? _mm256_mul_ps(f, _mm256_loadu_ps(smooth + i)) : f;
  };
  auto value = [&](int64_t i) {
    const float f = HalfToFloat(kType, x[i]);
    return smooth != nullptr ? f * smooth[i] : f;
  };
  const int64_t body = h - h % 8;
  __m256 amax_v = _mm256_setzero_ps();
  for (int64_t i = 0; i < body; i += 8) {
    const __m256 a = _mm256_and_ps(load(i), _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
    amax_v = _mm256_max_ps(a, amax_v);  // keeps amax when a is NaN, as the scalar loop
  }
  // max is exact, so reducing the lanes in any order gives the scalar result.
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax_v), _mm256_extractf128_ps(amax_v, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
  for (int64_t i = body; i < h; ++i) {
    const float a = __builtin_fabsf(value(i));
    amax = a > amax ? a : amax;
  }
  const float ds = 127.0f / amax;
  const __m256 ds_v = _mm256_set1_ps(ds);
  for (int64_t i = 0; i < body; i += 8) StoreSaturatedInt8(q + i, _mm256_mul_ps(load(i), ds_v));
  for (int64_t i = body; i < h; ++i) q[i] = SaturateRoundToInt8(value(i) * ds);
  return 1.0f / ds;
}

template <Half kType>
void CommQuantRowT(const uint16_t* x, int64_t h, int8_t* q, uint16_t* scales) {
  int64_t i = 0;
  for (; i + 8 <= h; i += 8) {  // one block per iteration
    const __m256 f = LoadHalf<kType>(x + i);
    // Block max broadcast to all lanes: swap pairs, swap quads, swap 128-bit halves.
    __m256 m = AbsNoNan(f);
    m = _mm256_max_ps(_mm256_permute_ps(m, 0xB1), m);
    m = _mm256_max_ps(_mm256_permute_ps(m, 0x4E), m);
    m = _mm256_max_ps(_mm256_permute2f128_ps(m, m, 1), m);
    const __m256 s = _mm256_mul_ps(m, _mm256_set1_ps(1.0f / 127.0f));
    scales[i / 8] = static_cast<uint16_t>(_mm_extract_epi16(Narrow<kType>(s), 0));
    if (_mm_cvtss_f32(_mm256_castps256_ps128(s)) == 0.0f) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_setzero_si128());
      continue;
    }
    const __m256 ratio = _mm256_div_ps(f, s);
    StoreSaturatedInt8(q + i, _mm256_cvtph_ps(_mm256_cvtps_ph(ratio, kRneNoExc)));
  }
  ScalarCommQuantRow(kType, x + i, h - i, q + i, scales + i / 8);
}

template <Half kType>
void CommDequantRowT(const int8_t* q, const uint16_t* scales, int64_t h, float* v) {
  int64_t i = 0;
  for (; i + 8 <= h; i += 8) {
    const __m256 sc = Widen<kType>(_mm_set1_epi16(static_cast<int16_t>(scales[i / 8])));
    const __m256i q32 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
    const __m256 product = _mm256_mul_ps(_mm256_cvtepi32_ps(q32), sc);
    _mm256_storeu_ps(v + i, Widen<kType>(Narrow<kType>(product)));
  }
  ScalarCommDequantRow(kType, q + i, scales + i / 8, h - i, v + i);
}

template <Half kType, bool kWeighted>
void AccumulateHalfT(const uint16_t* row, float w, int64_t h, float* acc) {
  const __m256 w_v = _mm256_set1_ps(w);
  int64_t i = 0;
  for (; i + 8 <= h; i += 8) {
    __m256 v = LoadHalf<kType>(row + i);
    if constexpr (kWeighted) v = _mm256_mul_ps(v, w_v);
    _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), v));
  }
  if constexpr (kWeighted) {
    ScalarAccumulateWeightedHalf(kType, row + i, w, h - i, acc + i);
  } else {
    ScalarAccumulateHalf(kType, row + i, h - i, acc + i);
  }
}

template <Half kType>
void SumHalfRowsT(const uint16_t* const* rows, const float* weights, const uint8_t* weighted, int64_t n, int64_t h,
                  uint16_t* out) {
  int64_t i = 0;
  for (; i + 8 <= h; i += 8) {
    __m256 sum = _mm256_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      __m256 v = LoadHalf<kType>(rows[j] + i);
      if (weighted[j]) v = _mm256_mul_ps(v, _mm256_set1_ps(weights[j]));
      sum = _mm256_add_ps(sum, v);
    }
    StoreHalf<kType>(out + i, sum);
  }
  ScalarSumHalfRowsFrom(kType, rows, weights, weighted, n, i, h, out);
}

template <bool kWeighted>
void AccumulateFloatT(const float* src, float w, int64_t h, float* acc) {
  const __m256 w_v = _mm256_set1_ps(w);
  int64_t i = 0;
  for (; i + 8 <= h; i += 8) {
    __m256 v = _mm256_loadu_ps(src + i);
    if constexpr (kWeighted) v = _mm256_mul_ps(v, w_v);
    _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), v));
  }
  if constexpr (kWeighted) {
    ScalarAccumulateWeightedFloat(src + i, w, h - i, acc + i);
  } else {
    ScalarAccumulateFloat(src + i, h - i, acc + i);
  }
}

template <Half kType>
void AddHalfRowsT(const uint16_t* a, const uint16_t* b, int64_t h, uint16_t* out) {
  int64_t i = 0;
  for (; i + 8 <= h; i += 8) StoreHalf<kType>(out + i, _mm256_add_ps(LoadHalf<kType>(a + i), LoadHalf<kType>(b + i)));
  ScalarAddHalfRows(kType, a + i, b + i, h - i, out + i);
}

float AddRmsNormRow256(const float* acc, const uint16_t* residual, const uint16_t* gamma, int64_t h, float eps,
                       uint16_t* x_out, uint16_t* y_out, float* scratch) {
  const float inv_h = 1.0f / static_cast<float>(h);
  const __m256 inv_h_v = _mm256_set1_ps(inv_h);
  const int64_t body = h - h % 8;
  for (int64_t i = 0; i < body; i += 8) {
    const __m256 xs = _mm256_add_ps(_mm256_loadu_ps(acc + i), LoadHalf<Half::kBf16>(residual + i));
    StoreHalf<Half::kBf16>(x_out + i, xs);
    _mm256_storeu_ps(scratch + i, _mm256_mul_ps(_mm256_mul_ps(xs, xs), inv_h_v));
  }
  ScalarRmsNormPass1(acc + body, residual + body, h - body, inv_h, x_out + body, scratch + body);
  const float rstd = RstdFromMeanSquare(ReduceSumInOrderWith(scratch, h, ReduceChunk64), eps);
  const __m256 rstd_v = _mm256_set1_ps(rstd);
  for (int64_t i = 0; i < body; i += 8) {
    const __m256 xs = _mm256_add_ps(_mm256_loadu_ps(acc + i), LoadHalf<Half::kBf16>(residual + i));
    const __m256 normed = Widen<Half::kBf16>(Narrow<Half::kBf16>(_mm256_mul_ps(xs, rstd_v)));
    StoreHalf<Half::kBf16>(y_out + i, _mm256_mul_ps(normed, LoadHalf<Half::kBf16>(gamma + i)));
  }
  ScalarRmsNormPass2(acc + body, residual + body, gamma + body, h - body, rstd, y_out + body);
  return rstd;
}

// ---- Half-type dispatch: one branch per row, none per element --------------------------------------------

void HalfRowToFloat256(Half t, const uint16_t* src, float* dst, int64_t n) {
  t == Half::kBf16 ? HalfRowToFloatT<Half::kBf16>(src, dst, n) : HalfRowToFloatT<Half::kFp16>(src, dst, n);
}
void FloatRowToHalf256(Half t, const float* src, uint16_t* dst, int64_t n) {
  t == Half::kBf16 ? FloatRowToHalfT<Half::kBf16>(src, dst, n) : FloatRowToHalfT<Half::kFp16>(src, dst, n);
}
float DynamicQuantRow256(Half t, const uint16_t* x, const float* smooth, int64_t h, int8_t* q) {
  return t == Half::kBf16 ? DynamicQuantRowT<Half::kBf16>(x, smooth, h, q)
                          : DynamicQuantRowT<Half::kFp16>(x, smooth, h, q);
}
void CommQuantRow256(Half t, const uint16_t* x, int64_t h, int8_t* q, uint16_t* scales) {
  t == Half::kBf16 ? CommQuantRowT<Half::kBf16>(x, h, q, scales) : CommQuantRowT<Half::kFp16>(x, h, q, scales);
}
void CommDequantRow256(Half t, const int8_t* q, const uint16_t* scales, int64_t h, float* v) {
  t == Half::kBf16 ? CommDequantRowT<Half::kBf16>(q, scales, h, v) : CommDequantRowT<Half::kFp16>(q, scales, h, v);
}
void AccumulateWeightedHalf256(Half t, const uint16_t* row, float w, int64_t h, float* acc) {
  t == Half::kBf16 ? AccumulateHalfT<Half::kBf16, true>(row, w, h, acc)
                   : AccumulateHalfT<Half::kFp16, true>(row, w, h, acc);
}
void AccumulateWeightedFloat256(const float* v, float w, int64_t h, float* acc) {
  AccumulateFloatT<true>(v, w, h, acc);
}
void AccumulateHalf256(Half t, const uint16_t* row, int64_t h, float* acc) {
  t == Half::kBf16 ? AccumulateHalfT<Half::kBf16, false>(row, 1.0f, h, acc)
                   : AccumulateHalfT<Half::kFp16, false>(row, 1.0f, h, acc);
}
void AccumulateFloat256(const float* v, int64_t h, float* acc) { AccumulateFloatT<false>(v, 1.0f, h, acc); }
void AddHalfRows256(Half t, const uint16_t* a, const uint16_t* b, int64_t h, uint16_t* out) {
  t == Half::kBf16 ? AddHalfRowsT<Half::kBf16>(a, b, h, out) : AddHalfRowsT<Half::kFp16>(a, b, h, out);
}

void SumHalfRows256(Half t, const uint16_t* const* rows, const float* weights, const uint8_t* weighted, int64_t n,
                    int64_t h, uint16_t* out) {
  t == Half::kBf16 ? SumHalfRowsT<Half::kBf16>(rows, weights, weighted, n, h, out)
                   : SumHalfRowsT<Half::kFp16>(rows, weights, weighted, n, h, out);
}

}  // namespace

const RowKernels& Avx2Kernels() {
  static constexpr RowKernels kTable = {
      HalfRowToFloat256,
      FloatRowToHalf256,
      DynamicQuantRow256,
      CommQuantRow256,
      CommDequantRow256,
      AccumulateWeightedHalf256,
      AccumulateWeightedFloat256,
      AccumulateHalf256,
      AccumulateFloat256,
      AddHalfRows256,
      SumHalfRows256,
      AddRmsNormRow256,
      ReduceChunk64,
  };
  return kTable;
}

}  // namespace moe_ep::kernels::internal
