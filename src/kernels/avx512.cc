// AVX-512 (F/BW/VL/DQ + F16C) row kernels, bit-identical to scalar.cc; 16 lanes, masked tails.
//
// Compiled with -mavx512*: keep every helper in the anonymous namespace (internal linkage) and call only
// out-of-line scalar functions, so no AVX-512 code can leak into the rest of the library (row_table.h).
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 intrinsics read _mm512_undefined_*() and trip a false -W(maybe-)uninitialized at every
// inlined call site (GCC bug 105593, fixed in 12.3 / 13).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/row_table.h"

namespace moe_ep::kernels::internal {
namespace {

constexpr int kRneNoExc = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// Lanes [0, count) of 16; count <= 0 selects none. Masked loads never touch (or fault on) masked-off lanes.
__mmask16 TailMask(int64_t count) {
  if (count >= 16) return 0xFFFF;
  return count <= 0 ? __mmask16{0} : static_cast<__mmask16>((1u << count) - 1u);
}

template <Half kType>
__m512 Widen(__m256i half) {
  if constexpr (kType == Half::kBf16) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
  } else {
    return _mm512_cvtph_ps(half);
  }
}

// FloatToHalf on 16 lanes. bf16: round half to even in integer arithmetic, NaN -> quiet NaN (half.cc).
template <Half kType>
__m256i Narrow(__m512 f) {
  if constexpr (kType == Half::kBf16) {
    const __m512i bits = _mm512_castps_si512(f);
    const __m512i high = _mm512_srli_epi32(bits, 16);
    const __m512i lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
    __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7FFF)), lsb), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
    rounded = _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(high, _mm512_set1_epi32(0x40)));
    return _mm512_cvtepi32_epi16(rounded);
  } else {
    return _mm512_cvtps_ph(f, kRneNoExc);
  }
}

template <Half kType>
__m512 LoadHalf(const uint16_t* p, __mmask16 m) {
  return Widen<kType>(_mm256_maskz_loadu_epi16(m, p));
}

template <Half kType>
void StoreHalf(uint16_t* p, __mmask16 m, __m512 f) {
  _mm256_mask_storeu_epi16(p, m, Narrow<kType>(f));
}

// SaturateRoundToInt8 on 16 lanes, as int32: NaN -> 0, clamp with the same max/min operand order, RNE.
__m512i SaturateRound(__m512 v) {
  v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
  v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-128.0f)), _mm512_set1_ps(127.0f));
  return _mm512_cvttps_epi32(_mm512_roundscale_ps(v, kRneNoExc));
}

// |v| with NaN lanes replaced by 0: the scalar max (a > amax ? a : amax from 0) ignores NaN.
__m512 AbsNoNan(__m512 v) {
  const __m512 a = _mm512_abs_ps(v);
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, a, _CMP_ORD_Q), a);
}

template <Half kType>
void HalfRowToFloatT(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(dst + i, m, LoadHalf<kType>(src + i, m));
  }
}

template <Half kType>
void FloatRowToHalfT(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    StoreHalf<kType>(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
  }
}

template <Half kType, bool kSmooth>
float DynamicQuantRowT(const uint16_t* x, const float* smooth, int64_t h, int8_t* q) {
  // f is recomputed in the second pass (cheaper than a buffer, and deterministic).
  auto load = [&](int64_t i, __mmask16 m) {
    const __m512 f = LoadHalf<kType>(x + i, m);
    if constexpr (kSmooth) return _mm512_mul_ps(f, _mm512_maskz_loadu_ps(m, smooth + i));
    return f;
  };
  __m512 amax = _mm512_setzero_ps();
  for (int64_t i = 0; i < h; i += 16) {
    // Masked-off lanes load 0, which never raises amax. vmaxps(a, amax) keeps amax when a is NaN.
    amax = _mm512_max_ps(_mm512_abs_ps(load(i, TailMask(h - i))), amax);
  }
  const float ds = 127.0f / _mm512_reduce_max_ps(amax);  // max is exact: the lane order does not matter
  const __m512 ds_v = _mm512_set1_ps(ds);
  for (int64_t i = 0; i < h; i += 16) {
    const __mmask16 m = TailMask(h - i);
    _mm_mask_storeu_epi8(q + i, m, _mm512_cvtepi32_epi8(SaturateRound(_mm512_mul_ps(load(i, m), ds_v))));
  }
  return 1.0f / ds;
}

template <Half kType>
void CommQuantRowT(const uint16_t* x, int64_t h, int8_t* q, uint16_t* scales) {
  int64_t i = 0;
  for (; i + 16 <= h; i += 16) {  // two blocks of 8 per iteration
    const __m512 f = LoadHalf<kType>(x + i, 0xFFFF);
    // Block max broadcast within each 8-lane half: swap pairs, swap quads, swap 128-bit lanes.
    __m512 m = AbsNoNan(f);
    m = _mm512_max_ps(_mm512_permute_ps(m, 0xB1), m);
    m = _mm512_max_ps(_mm512_permute_ps(m, 0x4E), m);
    m = _mm512_max_ps(_mm512_shuffle_f32x4(m, m, _MM_SHUFFLE(2, 3, 0, 1)), m);
    const __m512 s = _mm512_mul_ps(m, _mm512_set1_ps(1.0f / 127.0f));
    const __m256i s_half = Narrow<kType>(s);
    scales[i / 8] = static_cast<uint16_t>(_mm256_extract_epi16(s_half, 0));
    scales[i / 8 + 1] = static_cast<uint16_t>(_mm256_extract_epi16(s_half, 8));
    const __m512 ratio = _mm512_div_ps(f, s);
    const __m512 ratio_fp16 = _mm512_cvtph_ps(_mm512_cvtps_ph(ratio, kRneNoExc));
    const __mmask16 nonzero = _mm512_cmp_ps_mask(s, _mm512_setzero_ps(), _CMP_NEQ_OQ);
    const __m512i qi = _mm512_maskz_mov_epi32(nonzero, SaturateRound(ratio_fp16));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(qi));
  }
  ScalarCommQuantRow(kType, x + i, h - i, q + i, scales + i / 8);
}

template <Half kType>
void CommDequantRowT(const int8_t* q, const uint16_t* scales, int64_t h, float* v) {
  const __m512i pick = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  int64_t i = 0;
  for (; i + 16 <= h; i += 16) {
    uint32_t two_scales;
    std::memcpy(&two_scales, scales + i / 8, sizeof(two_scales));
    const __m512 sc = _mm512_permutexvar_ps(
        pick, Widen<kType>(_mm256_castsi128_si256(_mm_cvtsi32_si128(static_cast<int>(two_scales)))));
    const __m128i q8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i));
    const __m512 product = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q8)), sc);
    _mm512_storeu_ps(v + i, Widen<kType>(Narrow<kType>(product)));
  }
  ScalarCommDequantRow(kType, q + i, scales + i / 8, h - i, v + i);
}

template <Half kType, bool kWeighted>
void AccumulateHalfT(const uint16_t* row, float w, int64_t h, float* acc) {
  const __m512 w_v = _mm512_set1_ps(w);
  for (int64_t i = 0; i < h; i += 16) {
    const __mmask16 m = TailMask(h - i);
    __m512 v = LoadHalf<kType>(row + i, m);
    if constexpr (kWeighted) v = _mm512_mul_ps(v, w_v);
    _mm512_mask_storeu_ps(acc + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, acc + i), v));
  }
}

template <Half kType>
void SumHalfRowsT(const uint16_t* const* rows, const float* weights, const uint8_t* weighted, int64_t n, int64_t h,
                  uint16_t* out) {
  for (int64_t i = 0; i < h; i += 16) {
    const __mmask16 m = TailMask(h - i);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      __m512 v = LoadHalf<kType>(rows[j] + i, m);
      if (weighted[j]) v = _mm512_mul_ps(v, _mm512_set1_ps(weights[j]));
      sum = _mm512_add_ps(sum, v);
    }
    StoreHalf<kType>(out + i, m, sum);
  }
}

template <bool kWeighted>
void AccumulateFloatT(const float* src, float w, int64_t h, float* acc) {
  const __m512 w_v = _mm512_set1_ps(w);
  for (int64_t i = 0; i < h; i += 16) {
    const __mmask16 m = TailMask(h - i);
    __m512 v = _mm512_maskz_loadu_ps(m, src + i);
    if constexpr (kWeighted) v = _mm512_mul_ps(v, w_v);
    _mm512_mask_storeu_ps(acc + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, acc + i), v));
  }
}

template <Half kType>
void AddHalfRowsT(const uint16_t* a, const uint16_t* b, int64_t h, uint16_t* out) {
  for (int64_t i = 0; i < h; i += 16) {
    const __mmask16 m = TailMask(h - i);
    StoreHalf<kType>(out + i, m, _mm512_add_ps(LoadHalf<kType>(a + i, m), LoadHalf<kType>(b + i, m)));
  }
}

// The sums of adjacent pairs of a then b, in order: {a0+a1, a2+a3, .., a14+a15, b0+b1, .., b14+b15}.
__m512 PairSums(__m512 a, __m512 b) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  return _mm512_add_ps(_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b));
}

// ReduceChunk64 in registers: each level adds adjacent pairs (the 64 values in four registers, then 32 in two,
// 16 in one; from there the low half of one register holds the next level's values).
float ReduceChunk(const float* c, int64_t count) {
  const __m512 v0 = _mm512_maskz_loadu_ps(TailMask(count), c);
  const __m512 v1 = _mm512_maskz_loadu_ps(TailMask(count - 16), c + 16);  // a negative count masks all
  const __m512 v2 = _mm512_maskz_loadu_ps(TailMask(count - 32), c + 32);
  const __m512 v3 = _mm512_maskz_loadu_ps(TailMask(count - 48), c + 48);
  __m512 s = PairSums(PairSums(v0, v1), PairSums(v2, v3));     // 64 -> 32 -> 16
  for (int level = 0; level < 4; ++level) s = PairSums(s, s);  // 16 -> 8 -> 4 -> 2 -> 1, in the low lanes
  return _mm512_cvtss_f32(s);
}

float AddRmsNormRow512(const float* acc, const uint16_t* residual, const uint16_t* gamma, int64_t h, float eps,
                       uint16_t* x_out, uint16_t* y_out, float* scratch) {
  const __m512 inv_h = _mm512_set1_ps(1.0f / static_cast<float>(h));
  for (int64_t i = 0; i < h; i += 16) {
    const __mmask16 m = TailMask(h - i);
    const __m512 xs = _mm512_add_ps(_mm512_maskz_loadu_ps(m, acc + i), LoadHalf<Half::kBf16>(residual + i, m));
    StoreHalf<Half::kBf16>(x_out + i, m, xs);
    _mm512_mask_storeu_ps(scratch + i, m, _mm512_mul_ps(_mm512_mul_ps(xs, xs), inv_h));
  }
  const float rstd = RstdFromMeanSquare(ReduceSumInOrderWith(scratch, h, ReduceChunk), eps);
  const __m512 rstd_v = _mm512_set1_ps(rstd);
  for (int64_t i = 0; i < h; i += 16) {
    const __mmask16 m = TailMask(h - i);
    const __m512 xs = _mm512_add_ps(_mm512_maskz_loadu_ps(m, acc + i), LoadHalf<Half::kBf16>(residual + i, m));
    const __m512 normed = Widen<Half::kBf16>(Narrow<Half::kBf16>(_mm512_mul_ps(xs, rstd_v)));
    StoreHalf<Half::kBf16>(y_out + i, m, _mm512_mul_ps(normed, LoadHalf<Half::kBf16>(gamma + i, m)));
  }
  return rstd;
}

// ---- Half-type dispatch: one branch per row, none per element --------------------------------------------

void HalfRowToFloat512(Half t, const uint16_t* src, float* dst, int64_t n) {
  t == Half::kBf16 ? HalfRowToFloatT<Half::kBf16>(src, dst, n) : HalfRowToFloatT<Half::kFp16>(src, dst, n);
}
void FloatRowToHalf512(Half t, const float* src, uint16_t* dst, int64_t n) {
  t == Half::kBf16 ? FloatRowToHalfT<Half::kBf16>(src, dst, n) : FloatRowToHalfT<Half::kFp16>(src, dst, n);
}
float DynamicQuantRow512(Half t, const uint16_t* x, const float* smooth, int64_t h, int8_t* q) {
  if (t == Half::kBf16) {
    return smooth != nullptr ? DynamicQuantRowT<Half::kBf16, true>(x, smooth, h, q)
                             : DynamicQuantRowT<Half::kBf16, false>(x, smooth, h, q);
  }
  return smooth != nullptr ? DynamicQuantRowT<Half::kFp16, true>(x, smooth, h, q)
                           : DynamicQuantRowT<Half::kFp16, false>(x, smooth, h, q);
}
void CommQuantRow512(Half t, const uint16_t* x, int64_t h, int8_t* q, uint16_t* scales) {
  t == Half::kBf16 ? CommQuantRowT<Half::kBf16>(x, h, q, scales) : CommQuantRowT<Half::kFp16>(x, h, q, scales);
}
void CommDequantRow512(Half t, const int8_t* q, const uint16_t* scales, int64_t h, float* v) {
  t == Half::kBf16 ? CommDequantRowT<Half::kBf16>(q, scales, h, v) : CommDequantRowT<Half::kFp16>(q, scales, h, v);
}
void AccumulateWeightedHalf512(Half t, const uint16_t* row, float w, int64_t h, float* acc) {
  t == Half::kBf16 ? AccumulateHalfT<Half::kBf16, true>(row, w, h, acc)
                   : AccumulateHalfT<Half::kFp16, true>(row, w, h, acc);
}
void AccumulateWeightedFloat512(const float* v, float w, int64_t h, float* acc) {
  AccumulateFloatT<true>(v, w, h, acc);
}
void AccumulateHalf512(Half t, const uint16_t* row, int64_t h, float* acc) {
  t == Half::kBf16 ? AccumulateHalfT<Half::kBf16, false>(row, 1.0f, h, acc)
                   : AccumulateHalfT<Half::kFp16, false>(row, 1.0f, h, acc);
}
void AccumulateFloat512(const float* v, int64_t h, float* acc) { AccumulateFloatT<false>(v, 1.0f, h, acc); }
void AddHalfRows512(Half t, const uint16_t* a, const uint16_t* b, int64_t h, uint16_t* out) {
  t == Half::kBf16 ? AddHalfRowsT<Half::kBf16>(a, b, h, out) : AddHalfRowsT<Half::kFp16>(a, b, h, out);
}

void SumHalfRows512(Half t, const uint16_t* const* rows, const float* weights, const uint8_t* weighted, int64_t n,
                    int64_t h, uint16_t* out) {
  t == Half::kBf16 ? SumHalfRowsT<Half::kBf16>(rows, weights, weighted, n, h, out)
                   : SumHalfRowsT<Half::kFp16>(rows, weights, weighted, n, h, out);
}

}  // namespace

const RowKernels& Avx512Kernels() {
  static constexpr RowKernels kTable = {
      HalfRowToFloat512,
      FloatRowToHalf512,
      DynamicQuantRow512,
      CommQuantRow512,
      CommDequantRow512,
      AccumulateWeightedHalf512,
      AccumulateWeightedFloat512,
      AccumulateHalf512,
      AccumulateFloat512,
      AddHalfRows512,
      SumHalfRows512,
      AddRmsNormRow512,
      ReduceChunk,
  };
  return kTable;
}

}  // namespace moe_ep::kernels::internal
