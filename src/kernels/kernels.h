// Numeric row kernels of the MoE operators: half <-> float, quantization, weighted sums, RMSNorm.
//
// Every function is pure, works on unaligned pointers, and gives bit-identical results on every
// instruction set (scalar, AVX2+F16C, AVX-512): the vector paths use the same per-element operation
// order as the scalar one. The whole project is built with -ffp-contract=off so no multiply-add is
// ever fused. Formulas and their sources: docs/semantics.md sections 2.4 (dynamic quant), 3.2 (combine sum),
// 3.3 (communication quant), 3.5 (AddRmsNorm); decisions on edge cases are in docs/numerics.md.
//
// Degenerate inputs (inf / NaN / all-subnormal rows), decided here so every ISA agrees:
// - "int8(...)" in the quantizers is a saturating conversion: NaN -> 0, values clamped to [-128, 127],
//   then round half to even. In range (|v| <= 127, every normal row) it is plain rint.
// - "max |x|" ignores NaN elements (a running max from 0 that a NaN never replaces).
// - One exception to bit-identity: when two NaNs meet in an add or multiply (e.g. a NaN accumulator plus a
//   NaN row), which payload survives may differ between ISAs (x86 keeps the first operand's and compilers
//   may swap commutative operands); the result is a NaN on every ISA. Conversions keep a NaN's sign and
//   payload (its top bits, narrowing) and make it quiet, as x86's conversion instructions do.
#pragma once

#include <cstdint>
#include <utility>

namespace moe_ep::kernels {

// The 16-bit floating formats the operators carry.
enum class Half : uint8_t { kBf16, kFp16 };

// Instruction sets the row kernels can run on.
enum class Isa : uint8_t { kScalar, kAvx2, kAvx512 };

// The best instruction set this CPU supports (cached after the first call).
Isa DetectedIsa();
// The instruction set the row kernels use now: the one SetActiveIsa forced, else MOE_EP_ISA (throws Error
// naming it when it is not one this CPU has), else DetectedIsa().
Isa ActiveIsa();
// Forces the row kernels onto `isa` (tests and benchmarks); an unsupported isa falls back to the best
// supported one below it. Not thread-safe against concurrent kernel calls.
void SetActiveIsa(Isa isa);
const char* IsaName(Isa isa);

// ---- scalar conversions --------------------------------------------------------------------------
float HalfToFloat(Half type, uint16_t bits);   // exact
uint16_t FloatToHalf(Half type, float value);  // round-half-even; NaN stays NaN (quiet); fp16 overflow -> inf

// ---- row conversions -----------------------------------------------------------------------------
void HalfRowToFloat(Half type, const uint16_t* src, float* dst, int64_t n);
void FloatRowToHalf(Half type, const float* src, uint16_t* dst, int64_t n);

// ---- dispatch: dynamic per-row int8 quantization (docs/semantics.md 2.4) --------------------------------------
// f = float(x[i]) (* smooth[i] when smooth != nullptr, one fp32 multiply); amax = max |f|;
// ds = 127.0f / amax; q[i] = int8(rint_half_even(f * ds)); returns the row scale 1.0f / ds.
// amax == 0 (an all-zero row): q = 0 and the scale is 1.0f / inf = 0.0f (docs/numerics.md); this falls out
// of the formula (0 * inf = NaN -> 0). A row with 0 < amax < ~3.7e-37 (127 / FLT_MAX: tiny bf16 values, or
// any row after the smooth multiply) also gets ds = inf: its nonzero elements saturate to +127 / -128 and the
// scale is 0.0f. Rows with an inf element get ds = 0: q = 0 and the scale is inf.
float DynamicQuantRow(Half type, const uint16_t* x, const float* smooth, int64_t h, int8_t* q);

// ---- combine: int8 communication quantization (docs/semantics.md 3.3) -----------------------------------------
// Blocks of 8 elements (the last one zero-padded). Per block: s = max|x| * (1.0f/127.0f) in fp32;
// scales[b] = FloatToHalf(type, s); q[i] = int8(rint(fp16_rint(float(x[i]) / s))).
// A block whose max is 0 gets s = 0, q = 0 (docs/numerics.md). fp16_rint rounds to binary16 half to even;
// the int8 step is the saturating conversion above. Writes h values to q and CommQuantScaleCount(h) values
// to scales.
inline int64_t CommQuantScaleCount(int64_t h) { return (h + 7) / 8; }
void CommQuantRow(Half type, const uint16_t* x, int64_t h, int8_t* q, uint16_t* scales);
// v[i] = float(FloatToHalf(type, float(fp16(q[i])) * float(scales[i / 8]))): the dequantized row,
// rounded to the row type and widened back to fp32, ready for the combine sum.
void CommDequantRow(Half type, const int8_t* q, const uint16_t* scales, int64_t h, float* v);

// ---- combine sum (docs/semantics.md 3.2), two fp32 roundings per element, never fused ------------------------
// The product is rounded to fp32, then the sum (so +0 acc plus a -0 product gives +0, as IEEE requires).
// acc[i] = acc[i] + float(row[i]) * w
void AccumulateWeightedHalf(Half type, const uint16_t* row, float w, int64_t h, float* acc);
// acc[i] = acc[i] + v[i] * w
void AccumulateWeightedFloat(const float* v, float w, int64_t h, float* acc);
// acc[i] = acc[i] + float(row[i])          (shared experts and sharedExpertX: unweighted)
void AccumulateHalf(Half type, const uint16_t* row, int64_t h, float* acc);
// acc[i] = acc[i] + v[i]
void AccumulateFloat(const float* v, int64_t h, float* acc);

// The whole sum of one token in one pass, for rows that are all half rows (no float rows): with s = +0,
// s = s + (weighted[j] ? float(rows[j][i]) * weights[j] : float(rows[j][i])) for j = 0 .. n-1, each multiply
// and add rounded to fp32; out[i] = FloatToHalf(type, s). The same bits as FloatRowToHalf of an acc zeroed and
// then given AccumulateWeightedHalf / AccumulateHalf row by row in that order, but every row is read once per
// block of columns with the sum held in registers (no acc round trip per row).
void SumHalfRows(Half type, const uint16_t* const* rows, const float* weights, const uint8_t* weighted, int64_t n,
                 int64_t h, uint16_t* out);

// ---- TP reduce-scatter add (docs/semantics.md 3.1): out[i] = FloatToHalf(float(a[i]) + float(b[i])) ------------
void AddHalfRows(Half type, const uint16_t* a, const uint16_t* b, int64_t h, uint16_t* out);

// ---- CombineAddRmsNorm tail (docs/semantics.md 3.5), bf16 only -------------------------------------------------
// xs = acc + float(residual); x_out = bf16(xs); ms = ReduceSumInOrder((xs*xs) * (1.0f/h));
// rstd = 1.0f / sqrtf(ms + eps); y = bf16(float(bf16(xs * rstd)) * float(gamma)). Returns rstd.
// (xs*xs) * (1.0f/h) is two roundings with the factor computed once as 1.0f / (float)h. `scratch` must hold
// h floats; its contents afterwards are unspecified.
float AddRmsNormRow(const float* acc, const uint16_t* residual, const uint16_t* gamma, int64_t h, float eps,
                    uint16_t* x_out, uint16_t* y_out, float* scratch);

// A const expert's coefficients (docs/semantics.md 3.2): the softmax of (a1, a2) as the kernel computes it,
// m = a1 > a2 ? a1 : a2; e_i = exp(a_i - m) rounded to fp32 (docs/numerics.md: from the double exp); then
// p_i = e_i / (e1 + e2), each step rounded to fp32. Returns {p1, p2}.
std::pair<float, float> SoftmaxOfTwo(float a1, float a2);

// The NPU's fp32 reductions (docs/numerics.md). Both split v into chunks of 64 (the last one padded with +0)
// and reduce each chunk as the vector unit does within one repeat, adding adjacent pairs level by level:
// c[i] = c[2i] + c[2i + 1] for i < 32, then i < 16, .., i < 1. n == 0 gives 0.0f.
// ReduceSumTree (AscendC's Sum, the const experts' dot products): the chunk sums are reduced the same way, a
// level at a time, until one value is left.
float ReduceSumTree(const float* v, int64_t n);
// ReduceSumInOrder (AscendC's ReduceSum of `count` elements, RMSNorm's mean square): the chunk sums are added
// one after another to a sum that starts at 0.0f.
float ReduceSumInOrder(const float* v, int64_t n);

}  // namespace moe_ep::kernels
