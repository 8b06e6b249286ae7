// Pins the reference model itself with small cases worked out by hand (the expected values in the
// comments were derived on paper from docs/semantics.md, not by running the model).
//
// Cases:
//   Numerics        bf16 / fp16 rounding, RINT, the ReduceSum tree order.
//   DispatchOrder   2 ranks, L = 2: expandX row order, triples, epRecvCounts, expertTokenNums types 0/1.
//   SharedReplicas  E = 4, S = 2, n_s = 1 (R = 2): shared-rank rows, replica choice src % R; combine.
//   TokenMask       1-D mask (prefix) with a shared expert; combine's written flags.
//   PairMask        2-D mask: masked pairs dropped, shared rank gets any-true tokens; combine.
//   TpPair          tp = 2: [own][peer] rows and counts, tpRecvCounts by TP rank; reduce-scatter combine.
//   Quant           quant_mode 2: smooth rows n_s + e / i, RINT ties, amax == 0.
//   CombineSum      fp32 order without FMA, shared_expert_x, fp16 output rounding.
//   CommQuant       comm_quant_mode 2: blocks of 8, double rounding via fp16, s == 0.
//   AddRmsNorm      x, y and rstd of one token by hand.
//   SpecialExperts  V3 zero / copy / const experts: never dispatched (counts, rows, slots), combine
//                   arithmetic with fp32 rounding by hand, 2-D mask over special pairs, tokens whose
//                   experts are all special, fp16, comm-quant (specials stay exact), input checks.
//   A2              Atlas A2 fullmesh: no triples, expandIdx on the sender (repeated experts, 1-D mask,
//                   zero / copy experts), combine ignores shared_expert_x, A2 preconditions.
#include <gtest/gtest.h>

#include <bit>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

#include "reference/numerics.h"
#include "reference/reference.h"
#include "support/test_seed.h"

namespace moe_ref {
namespace {

using numerics::Bf16ToFloat;
using numerics::FloatToBf16;
using numerics::FloatToHalf;
using numerics::HalfToFloat;

// bf16 bits of a value that bf16 holds exactly (the tests only use such values).
uint16_t Bf(float value) {
  const uint16_t bits = FloatToBf16(value);
  EXPECT_EQ(Bf16ToFloat(bits), value) << value << " is not a bf16 value";
  return bits;
}

// x of global rank g: token t, column h holds 16 * g + 4 * t + h (exact in bf16 for the sizes used here),
// so every expandX row names its source.
float Code(int g, int t, int h) { return static_cast<float>(16 * g + 4 * t + h); }

RankInput MakeRank(int g, int64_t bs, int hidden, std::vector<int32_t> ids) {
  RankInput input;
  input.bs = bs;
  input.expert_ids = std::move(ids);
  for (int64_t t = 0; t < bs; ++t) {
    for (int h = 0; h < hidden; ++h) input.x.push_back(Bf(Code(g, static_cast<int>(t), h)));
  }
  return input;
}

using Triple = std::vector<int32_t>;  // flattened (src, token, kIdx) triples

// Checks that expandX row i is x[token] of global rank `sources[i].first` / `.second`.
void ExpectRowsFrom(const DispatchOut& out, int hidden, std::initializer_list<std::pair<int, int>> sources) {
  ASSERT_EQ(out.rows, static_cast<int64_t>(sources.size()));
  ASSERT_EQ(out.expand_x.size(), sources.size() * hidden);
  int64_t row = 0;
  for (const auto& [g, t] : sources) {
    for (int h = 0; h < hidden; ++h) {
      EXPECT_EQ(out.expand_x[row * hidden + h], Bf(Code(g, t, h))) << "row " << row << " h " << h;
    }
    ++row;
  }
}

// expert_out where row i of rank `holder` holds [16 * holder + i, -(16 * holder + i), ...].
std::vector<uint16_t> CodedExpertOut(int holder, int64_t rows, int hidden) {
  std::vector<uint16_t> out;
  for (int64_t i = 0; i < rows; ++i) {
    for (int h = 0; h < hidden; ++h) {
      const float v = static_cast<float>(16 * holder + i);
      out.push_back(Bf(h % 2 == 0 ? v : -v));
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------------------
// Numerics
// ------------------------------------------------------------------------------------------------------

TEST(Numerics, Bf16RoundsHalfToEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3F80);
  EXPECT_EQ(FloatToBf16(1.0f + 0x1p-8f), 0x3F80);             // tie between 0x3F80 and 0x3F81: even
  EXPECT_EQ(FloatToBf16(1.0f + 0x3p-8f), 0x3F82);             // tie between 0x3F81 and 0x3F82: even
  EXPECT_EQ(FloatToBf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);  // just above the tie
  EXPECT_EQ(FloatToBf16(-2.5f), 0xC020);
  EXPECT_EQ(FloatToBf16(3.4028234664e38f), 0x7F80);  // FLT_MAX rounds up to +inf
  EXPECT_EQ(FloatToBf16(0x1p-133f), 0x0001);         // fp32 subnormal -> smallest bf16 subnormal
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::nanf("")))));
  EXPECT_EQ(Bf16ToFloat(0xBF80), -1.0f);
}

// Property check: the result is a nearest bf16, and on ties the even one.
TEST(Numerics, Bf16IsNearestOnRandomFloats) {
  std::mt19937 rng(static_cast<uint32_t>(moe_ep::testing::BaseSeed() + 7));
  for (int i = 0; i < 200000; ++i) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(rng()) & 0x7F7FFFFF);  // finite, >= 0
    const uint16_t r = FloatToBf16(f);
    const uint16_t down = static_cast<uint16_t>(std::bit_cast<uint32_t>(f) >> 16);
    const double d_down = static_cast<double>(f) - Bf16ToFloat(down);
    // Above the largest finite bf16 (0x7F7F) the next step is 2^128, which encodes as infinity.
    const double up = down == 0x7F7F ? 0x1p128 : Bf16ToFloat(static_cast<uint16_t>(down + 1));
    const double d_up = up - f;
    if (d_down < d_up) {
      EXPECT_EQ(r, down);
    } else if (d_down > d_up) {
      EXPECT_EQ(r, down + 1);
    } else {
      EXPECT_EQ(r, (down & 1) ? down + 1 : down);
    }
  }
}

TEST(Numerics, HalfByHand) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(FloatToHalf(1.0f / 3.0f), 0x3555);  // 0.33333334 -> 1365 * 2^-12 = 0.333251953125
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);       // tie with 65536 (odd 0x7BFF): rounds to inf
  EXPECT_EQ(FloatToHalf(0x1p-24f), 0x0001);       // smallest subnormal
  EXPECT_EQ(FloatToHalf(0x1p-25f), 0x0000);       // tie between 0 and 2^-24: even (0)
  EXPECT_EQ(FloatToHalf(0x3p-25f), 0x0002);       // 1.5 * 2^-24: tie, even (2)
  EXPECT_EQ(FloatToHalf(-0x1.ffcp-15f), 0x8400);  // -1023.5 * 2^-24: tie, even 1024 = smallest normal
  EXPECT_EQ(FloatToHalf(120.51095581f), 0x5788);  // 120.5: spacing 1/16 in [64, 128)
  EXPECT_EQ(HalfToFloat(0x0001), 0x1p-24f);
  EXPECT_EQ(HalfToFloat(0xC000), -2.0f);
  EXPECT_TRUE(std::isinf(HalfToFloat(0x7C00)));
}

// NaNs (docs/numerics.md): a half NaN widens quiet with its payload in the top mantissa bits, and an fp32 NaN
// narrows to its top 10 payload bits, quiet, so a quiet half NaN comes back unchanged (bf16 is a shift both ways
// but for the quiet bit the narrowing forces).
TEST(Numerics, HalfNansKeepTheirSignAndPayloadAndComeOutQuiet) {
  for (uint32_t bits = 0x7C01; bits < 0x10000; bits += (bits == 0x7FFF ? 0xFC01 - 0x7FFF : 1)) {
    const auto h = static_cast<uint16_t>(bits);
    const uint32_t widened = std::bit_cast<uint32_t>(HalfToFloat(h));
    ASSERT_EQ(widened, ((bits & 0x8000u) << 16) | 0x7FC00000u | ((bits & 0x3FFu) << 13)) << std::hex << bits;
    ASSERT_EQ(FloatToHalf(std::bit_cast<float>(widened)), h | 0x0200) << std::hex << bits;
  }
  EXPECT_EQ(FloatToHalf(std::bit_cast<float>(0x7F800001u)), 0x7E00);  // payload below the kept bits: still NaN
  EXPECT_EQ(FloatToHalf(std::bit_cast<float>(0xFFA46000u)), 0xFF23);
  EXPECT_EQ(numerics::FloatToBf16(std::bit_cast<float>(0x7F812345u)), 0x7FC1);
}

#if defined(__FLT16_MAX__)
// Cross-check against the compiler's _Float16 (the compiler, not src/, is the second opinion here).
TEST(Numerics, HalfMatchesCompilerFloat16) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const _Float16 h = std::bit_cast<_Float16>(static_cast<uint16_t>(bits));
    const float expected = static_cast<float>(h);
    if (std::isnan(expected)) continue;
    EXPECT_EQ(std::bit_cast<uint32_t>(HalfToFloat(static_cast<uint16_t>(bits))), std::bit_cast<uint32_t>(expected));
  }
  for (uint64_t bits = 0; bits < (1ull << 32); bits += 4099) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(bits));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), std::bit_cast<uint16_t>(static_cast<_Float16>(f))) << std::hexfloat << f;
  }
}
#endif

// The branch-free fp16 grid rounding used by the comm-quant path equals the two conversions above.
TEST(Numerics, RoundToHalfGridMatchesConversions) {
  for (uint64_t bits = 0; bits < (1ull << 32); bits += 997) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(bits));
    const float expected = HalfToFloat(FloatToHalf(f));
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(numerics::RoundToHalfGrid(f)));
      continue;
    }
    ASSERT_EQ(std::bit_cast<uint32_t>(numerics::RoundToHalfGrid(f)), std::bit_cast<uint32_t>(expected))
        << std::hexfloat << f;
  }
  for (float f : {0x1p-25f, 0x3p-25f, -0x1.ffcp-15f, 65519.0f, 65520.0f, -65520.0f, 120.51095581f, 0.0f, -0.0f}) {
    EXPECT_EQ(std::bit_cast<uint32_t>(numerics::RoundToHalfGrid(f)),
              std::bit_cast<uint32_t>(HalfToFloat(FloatToHalf(f))))
        << std::hexfloat << f;
  }
}

TEST(Numerics, RoundHalfEven) {
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  EXPECT_EQ(numerics::RoundHalfEven(2.5f), 2.0f);
  EXPECT_EQ(numerics::RoundHalfEven(3.5f), 4.0f);
  EXPECT_EQ(numerics::RoundHalfEven(-0.5f), 0.0f);
  EXPECT_EQ(numerics::RoundHalfEven(-1.5f), -2.0f);
  EXPECT_EQ(numerics::RoundHalfEven(31.75f), 32.0f);
  EXPECT_EQ(numerics::IntegralFloatToInt8(-127.0f), -127);
  // Second opinion: the C library's nearbyint in the default FE_TONEAREST mode.
  std::mt19937 rng(static_cast<uint32_t>(moe_ep::testing::BaseSeed() + 11));
  std::uniform_real_distribution<float> wide(-300.0f, 300.0f);
  for (int i = 0; i < 200000; ++i) {
    const float v = i % 2 == 0 ? wide(rng) : std::round(wide(rng) * 2.0f) / 2.0f;  // odd i: exact halves
    ASSERT_EQ(std::bit_cast<uint32_t>(numerics::RoundHalfEven(v)), std::bit_cast<uint32_t>(std::nearbyint(v))) << v;
  }
  for (float v : {0x1p23f, -0x1p23f - 2.0f, 0x1.fffffep22f, -0x1.fffffep22f, 1e30f}) {
    EXPECT_EQ(numerics::RoundHalfEven(v), std::nearbyint(v)) << v;
  }
}

TEST(Numerics, ReduceSumOrders) {
  EXPECT_EQ(numerics::ReduceSumTree({}), 0.0f);
  EXPECT_EQ(numerics::ReduceSumInOrder({}), 0.0f);
  EXPECT_EQ(numerics::ReduceSumTree({5.0f}), 5.0f);
  EXPECT_EQ(numerics::ReduceSumInOrder({5.0f}), 5.0f);
  const float b = 0x1p24f;  // b + 1 ties, and rounds to even: b
  // One chunk, neighbours first: {b, 0, 1, 1} pairs to {b, 2}, then b + 2 (exact). Halving (c[i] += c[i + 2],
  // then c[i] += c[i + 1]) would add each 1 to b alone and keep b.
  std::vector<float> p(64, 0.0f);
  p[0] = b, p[2] = 1.0f, p[3] = 1.0f;
  EXPECT_EQ(numerics::ReduceSumTree(p), b + 2.0f);
  EXPECT_EQ(numerics::ReduceSumInOrder(p), b + 2.0f);
  // {b, 1} are neighbours and tie to b; the 1 at 33 meets b only at the last level: b again.
  std::vector<float> q(64, 0.0f);
  q[0] = b, q[1] = 1.0f, q[33] = 1.0f;
  EXPECT_EQ(numerics::ReduceSumTree(q), b);
  // Four chunks summing to {b, 1, 1, 1}: the tree pairs them, (b + 1 -> b) + (1 + 1) = b + 2; in order each 1
  // meets b alone: b.
  std::vector<float> r(193, 0.0f);
  r[0] = b, r[64] = 1.0f, r[128] = 1.0f, r[192] = 1.0f;
  EXPECT_EQ(numerics::ReduceSumTree(r), b + 2.0f);
  EXPECT_EQ(numerics::ReduceSumInOrder(r), b);
}

// ------------------------------------------------------------------------------------------------------
// Dispatch layouts
// ------------------------------------------------------------------------------------------------------

// E = 2, moe = 4 (L = 2: experts 0, 1 on rank 0; 2, 3 on rank 1), K = 2, no shared experts.
// rank 0 (bs 2): t0 -> {1, 2}, t1 -> {3, 0};  rank 1 (bs 3): t0 -> {0, 1}, t1 -> {2, 3}, t2 -> {1, 0}.
// Rank 0, expert 0: src 0 (t1,k1); src 1 (t0,k0), (t2,k1).  expert 1: src 0 (t0,k0); src 1 (t0,k1), (t2,k0).
//   epRecvCounts (status e_local * E + src) = [1, 3, 4, 6]; per expert [3, 3]; cumulative [3, 6].
// Rank 1, expert 2: src 0 (t0,k1); src 1 (t1,k0).  expert 3: src 0 (t1,k0); src 1 (t1,k1).
//   epRecvCounts = [1, 2, 3, 4]; per expert [2, 2]; cumulative [2, 4].
TEST(DispatchOrder, TwoRanksTwoLocalExperts) {
  for (int type : {0, 1}) {
    Config config;
    config.ep_world_size = 2;
    config.moe_expert_num = 4;
    config.top_k = 2;
    config.hidden = 4;
    config.expert_token_nums_type = type;
    const std::vector<RankInput> inputs = {MakeRank(0, 2, 4, {1, 2, 3, 0}), MakeRank(1, 3, 4, {0, 1, 2, 3, 1, 0})};
    const std::vector<DispatchOut> outs = Dispatch(config, inputs);
    ASSERT_EQ(outs.size(), 2u);

    EXPECT_EQ(outs[0].assist_info, (Triple{0, 1, 1, 1, 0, 0, 1, 2, 1, 0, 0, 0, 1, 0, 1, 1, 2, 0}));
    ExpectRowsFrom(outs[0], 4, {{0, 1}, {1, 0}, {1, 2}, {0, 0}, {1, 0}, {1, 2}});
    EXPECT_EQ(outs[0].ep_recv_counts, (std::vector<int32_t>{1, 3, 4, 6}));
    EXPECT_EQ(outs[0].expert_token_nums, (type == 1 ? std::vector<int64_t>{3, 3} : std::vector<int64_t>{3, 6}));

    EXPECT_EQ(outs[1].assist_info, (Triple{0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1}));
    ExpectRowsFrom(outs[1], 4, {{0, 0}, {1, 1}, {0, 1}, {1, 1}});
    EXPECT_EQ(outs[1].ep_recv_counts, (std::vector<int32_t>{1, 2, 3, 4}));
    EXPECT_EQ(outs[1].expert_token_nums, (type == 1 ? std::vector<int64_t>{2, 2} : std::vector<int64_t>{2, 4}));
    EXPECT_TRUE(outs[0].tp_recv_counts.empty());
    EXPECT_TRUE(outs[0].dynamic_scales.empty());
  }
}

// E = 4, S = 2, n_s = 1 (R = 2: shared expert 0 on ranks 0 and 1), moe = 2 (L = 1: expert 0 on rank 2,
// expert 1 on rank 3), K = 1, bs = 2 everywhere. ids: r0 {0, 1}, r1 {1, 1}, r2 {0, 0}, r3 {1, 0}.
// Source r uses shared rank r % 2: rank 0 gets srcs 0 and 2, rank 1 gets srcs 1 and 3, kIdx = K + 0 = 1.
Config SharedConfig() {
  Config config;
  config.ep_world_size = 4;
  config.shared_expert_num = 1;
  config.shared_expert_rank_num = 2;
  config.moe_expert_num = 2;
  config.top_k = 1;
  config.hidden = 2;
  return config;
}
std::vector<RankInput> SharedInputs() {
  return {MakeRank(0, 2, 2, {0, 1}), MakeRank(1, 2, 2, {1, 1}), MakeRank(2, 2, 2, {0, 0}), MakeRank(3, 2, 2, {1, 0})};
}

TEST(SharedReplicas, DispatchLayout) {
  const std::vector<DispatchOut> outs = Dispatch(SharedConfig(), SharedInputs());
  // Rank 0: src 0 t0, t1; src 2 t0, t1. epRecvCounts over src (non-matching src add 0) = [2, 2, 4, 4].
  EXPECT_EQ(outs[0].assist_info, (Triple{0, 0, 1, 0, 1, 1, 2, 0, 1, 2, 1, 1}));
  ExpectRowsFrom(outs[0], 2, {{0, 0}, {0, 1}, {2, 0}, {2, 1}});
  EXPECT_EQ(outs[0].ep_recv_counts, (std::vector<int32_t>{2, 2, 4, 4}));
  EXPECT_EQ(outs[0].expert_token_nums, (std::vector<int64_t>{4}));
  // Rank 1: src 1 t0, t1; src 3 t0, t1 -> [0, 2, 2, 4].
  EXPECT_EQ(outs[1].assist_info, (Triple{1, 0, 1, 1, 1, 1, 3, 0, 1, 3, 1, 1}));
  EXPECT_EQ(outs[1].ep_recv_counts, (std::vector<int32_t>{0, 2, 2, 4}));
  EXPECT_EQ(outs[1].expert_token_nums, (std::vector<int64_t>{4}));
  // Rank 2 (expert 0): r0 t0; r1 none; r2 t0, t1; r3 t1 -> [1, 1, 3, 4].
  EXPECT_EQ(outs[2].assist_info, (Triple{0, 0, 0, 2, 0, 0, 2, 1, 0, 3, 1, 0}));
  ExpectRowsFrom(outs[2], 2, {{0, 0}, {2, 0}, {2, 1}, {3, 1}});
  EXPECT_EQ(outs[2].ep_recv_counts, (std::vector<int32_t>{1, 1, 3, 4}));
  EXPECT_EQ(outs[2].expert_token_nums, (std::vector<int64_t>{4}));
  // Rank 3 (expert 1): r0 t1; r1 t0, t1; r2 none; r3 t0 -> [1, 3, 3, 4].
  EXPECT_EQ(outs[3].assist_info, (Triple{0, 1, 0, 1, 0, 0, 1, 1, 0, 3, 0, 0}));
  EXPECT_EQ(outs[3].ep_recv_counts, (std::vector<int32_t>{1, 3, 3, 4}));
}

// Combine on the same routing: expert_out row i of rank g = [16g + i, -(16g + i)], every weight 0.5.
//   r0 t0: expert 0 row (0,0,0) = rank 2 row 0 = 32 -> 16; shared (0,0,1) = rank 0 row 0 = 0.  x = 16.
//   r1 t0: expert 1 row (1,0,0) = rank 3 row 1 = 49 -> 24.5; shared = rank 1 row 0 = 16.      x = 40.5.
//   r2 t1: expert 0 row (2,1,0) = rank 2 row 2 = 34 -> 17; shared (2 % 2 = 0) rank 0 row 3 = 3. x = 20.
//   r3 t1: expert 0 row (3,1,0) = rank 2 row 3 = 35 -> 17.5; shared rank 1 row 3 = 19.         x = 36.5.
TEST(SharedReplicas, Combine) {
  const Config config = SharedConfig();
  const std::vector<RankInput> inputs = SharedInputs();
  std::vector<CombineInput> combine(4);
  for (int g = 0; g < 4; ++g) {
    combine[g].expert_out = CodedExpertOut(g, 4, 2);
    combine[g].expert_scales = {0.5f, 0.5f};
  }
  const std::vector<CombineOut> outs = Combine(config, inputs, combine);
  EXPECT_EQ(outs[0].written, (std::vector<uint8_t>{1, 1}));
  EXPECT_EQ(outs[0].x[0], Bf(16.0f));
  EXPECT_EQ(outs[0].x[1], Bf(-16.0f));
  EXPECT_EQ(outs[1].x[0], Bf(40.5f));
  EXPECT_EQ(outs[2].x[2], Bf(20.0f));
  EXPECT_EQ(outs[3].x[2], Bf(36.5f));
  EXPECT_EQ(outs[3].x[3], Bf(-36.5f));
}

// 1-D mask. E = 3, S = 1, n_s = 1 (R = 1), moe = 2 (expert 0 on rank 1, expert 1 on rank 2), K = 2, bs 3.
// masks: r0 [1,1,0] (2 active), r1 [0,0,0] (none), r2 [1,1,1].
// ids: r0 {0,1 | 1,0 | 0,1}, r1 {0,1 | 0,1 | 0,1}, r2 {1,0 | 0,1 | 1,0}.
// Rank 0 (shared, kIdx 2): src 0 t0, t1; src 2 t0, t1, t2 -> counts [2, 2, 5].
// Rank 1 (expert 0): (0,0,0) (0,1,1) | (2,0,1) (2,1,0) (2,2,1) -> counts [2, 2, 5].
// Rank 2 (expert 1): (0,0,1) (0,1,0) | (2,0,0) (2,1,1) (2,2,0) -> counts [2, 2, 5].
TEST(TokenMask, DispatchAndCombine) {
  Config config;
  config.ep_world_size = 3;
  config.shared_expert_num = 1;
  config.shared_expert_rank_num = 1;
  config.moe_expert_num = 2;
  config.top_k = 2;
  config.hidden = 2;
  config.expert_token_nums_type = 0;  // L == 1: [total] for both types
  std::vector<RankInput> inputs = {MakeRank(0, 3, 2, {0, 1, 1, 0, 0, 1}), MakeRank(1, 3, 2, {0, 1, 0, 1, 0, 1}),
                                   MakeRank(2, 3, 2, {1, 0, 0, 1, 1, 0})};
  const std::vector<std::vector<uint8_t>> masks = {{1, 1, 0}, {0, 0, 0}, {1, 1, 1}};
  for (int g = 0; g < 3; ++g) {
    inputs[g].mask_kind = MaskKind::kTokens;
    inputs[g].mask = masks[g];
  }
  const std::vector<DispatchOut> outs = Dispatch(config, inputs);
  EXPECT_EQ(outs[0].assist_info, (Triple{0, 0, 2, 0, 1, 2, 2, 0, 2, 2, 1, 2, 2, 2, 2}));
  ExpectRowsFrom(outs[0], 2, {{0, 0}, {0, 1}, {2, 0}, {2, 1}, {2, 2}});
  EXPECT_EQ(outs[0].ep_recv_counts, (std::vector<int32_t>{2, 2, 5}));
  EXPECT_EQ(outs[0].expert_token_nums, (std::vector<int64_t>{5}));
  EXPECT_EQ(outs[1].assist_info, (Triple{0, 0, 0, 0, 1, 1, 2, 0, 1, 2, 1, 0, 2, 2, 1}));
  EXPECT_EQ(outs[1].ep_recv_counts, (std::vector<int32_t>{2, 2, 5}));
  EXPECT_EQ(outs[1].expert_token_nums, (std::vector<int64_t>{5}));
  EXPECT_EQ(outs[2].assist_info, (Triple{0, 0, 1, 0, 1, 0, 2, 0, 0, 2, 1, 1, 2, 2, 0}));
  EXPECT_EQ(outs[2].ep_recv_counts, (std::vector<int32_t>{2, 2, 5}));

  // Combine, weights [1, 0.5] per token: r0 t1 = expert 1 row (0,1,0) = rank 2 row 1 (33) * 1
  //   + expert 0 row (0,1,1) = rank 1 row 1 (17) * 0.5 + shared rank 0 row 1 (1) = 33 + 8.5 + 1 = 42.5.
  std::vector<CombineInput> combine(3);
  for (int g = 0; g < 3; ++g) {
    combine[g].expert_out = CodedExpertOut(g, 5, 2);
    combine[g].expert_scales = {1.0f, 0.5f, 1.0f, 0.5f, 1.0f, 0.5f};
  }
  const std::vector<CombineOut> results = Combine(config, inputs, combine);
  EXPECT_EQ(results[0].written, (std::vector<uint8_t>{1, 1, 0}));
  EXPECT_EQ(results[1].written, (std::vector<uint8_t>{0, 0, 0}));
  EXPECT_EQ(results[2].written, (std::vector<uint8_t>{1, 1, 1}));
  EXPECT_EQ(results[0].x[2], Bf(42.5f));
  EXPECT_EQ(results[0].x[3], Bf(-42.5f));
}

// 2-D mask. E = 3, S = 1, n_s = 1, moe = 2 (expert 0 on rank 1, expert 1 on rank 2), K = 2.
// r0 (bs 2): ids {0,1 | 1,0}, mask {1,0 | 0,0}: t0 valid via (t0,k0) -> e0 only; t1 invalid.
// r1 (bs 2): ids {1,0 | 0,1}, mask {0,1 | 1,1}: t0 via (t0,k1) -> e0; t1 via (t1,k0) -> e0, (t1,k1) -> e1.
// r2 (bs 1): ids {0,1}, mask {0,0}: nothing.
// Rank 0 (shared): (0,0,2) | (1,0,2) (1,1,2) -> counts [1, 3, 3].
// Rank 1 (e0): (0,0,0) | (1,0,1) (1,1,0) -> [1, 3, 3].   Rank 2 (e1): (1,1,1) -> [0, 1, 1].
TEST(PairMask, DispatchAndCombine) {
  Config config;
  config.ep_world_size = 3;
  config.shared_expert_num = 1;
  config.shared_expert_rank_num = 1;
  config.moe_expert_num = 2;
  config.top_k = 2;
  config.hidden = 2;
  std::vector<RankInput> inputs = {MakeRank(0, 2, 2, {0, 1, 1, 0}), MakeRank(1, 2, 2, {1, 0, 0, 1}),
                                   MakeRank(2, 1, 2, {0, 1})};
  const std::vector<std::vector<uint8_t>> masks = {{1, 0, 0, 0}, {0, 1, 1, 1}, {0, 0}};
  for (int g = 0; g < 3; ++g) {
    inputs[g].mask_kind = MaskKind::kPairs;
    inputs[g].mask = masks[g];
  }
  const std::vector<DispatchOut> outs = Dispatch(config, inputs);
  EXPECT_EQ(outs[0].assist_info, (Triple{0, 0, 2, 1, 0, 2, 1, 1, 2}));
  ExpectRowsFrom(outs[0], 2, {{0, 0}, {1, 0}, {1, 1}});
  EXPECT_EQ(outs[0].ep_recv_counts, (std::vector<int32_t>{1, 3, 3}));
  EXPECT_EQ(outs[0].expert_token_nums, (std::vector<int64_t>{3}));
  EXPECT_EQ(outs[1].assist_info, (Triple{0, 0, 0, 1, 0, 1, 1, 1, 0}));
  EXPECT_EQ(outs[1].ep_recv_counts, (std::vector<int32_t>{1, 3, 3}));
  EXPECT_EQ(outs[2].assist_info, (Triple{1, 1, 1}));
  EXPECT_EQ(outs[2].ep_recv_counts, (std::vector<int32_t>{0, 1, 1}));
  EXPECT_EQ(outs[2].expert_token_nums, (std::vector<int64_t>{1}));

  // Combine, weight 0.5 everywhere. r1 t0: only (t0,k1): rank 1 row 1 (17) * 0.5 = 8.5, + shared rank 0
  // row 1 (1) = 9.5. r1 t1: (t1,k0) rank 1 row 2 (18) -> 9, (t1,k1) rank 2 row 0 (32) -> 16, shared rank 0
  // row 2 (2): 27.
  std::vector<CombineInput> combine(3);
  const int64_t rows[] = {3, 3, 1};
  for (int g = 0; g < 3; ++g) {
    combine[g].expert_out = CodedExpertOut(g, rows[g], 2);
    combine[g].expert_scales.assign(inputs[g].bs * 2, 0.5f);
  }
  const std::vector<CombineOut> results = Combine(config, inputs, combine);
  EXPECT_EQ(results[0].written, (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(results[1].written, (std::vector<uint8_t>{1, 1}));
  EXPECT_EQ(results[2].written, (std::vector<uint8_t>{0}));
  EXPECT_EQ(results[1].x[0], Bf(9.5f));
  EXPECT_EQ(results[1].x[2], Bf(27.0f));
}

// S == 0 with the op-def default shared_expert_num = 1 means "no shared experts" (docs/semantics.md 1.2).
TEST(DispatchOrder, DefaultSharedExpertNumIsIgnoredWithoutSharedRanks) {
  Config config;
  config.shared_expert_num = 1;
  config.hidden = 1;
  const std::vector<DispatchOut> outs = Dispatch(config, {MakeRank(0, 1, 1, {1}), MakeRank(1, 1, 1, {1})});
  EXPECT_EQ(outs[0].rows, 0);
  EXPECT_EQ(outs[1].assist_info, (Triple{0, 0, 0, 1, 0, 0}));
}

// ------------------------------------------------------------------------------------------------------
// TP = 2
// ------------------------------------------------------------------------------------------------------

// E = 2, tp = 2, moe = 2 (L = 1), K = 1, H = 1. Global ranks: g0 (ep0,tp0), g1 (ep1,tp0), g2 (ep0,tp1),
// g3 (ep1,tp1). ids: g0 {0, 1}, g1 {0, 0}, g2 {1}, g3 {0, 0}.
// EP group tp0: ep0 gets (0,0,0) (1,0,0) (1,1,0), counts [1, 3]; ep1 gets (0,1,0), counts [1, 1].
// EP group tp1: ep0 gets (1,0,0) (1,1,0) from g3, counts [0, 2]; ep1 gets (0,0,0) from g2, counts [1, 1].
Config TpConfig() {
  Config config;
  config.ep_world_size = 2;
  config.tp_world_size = 2;
  config.moe_expert_num = 2;
  config.top_k = 1;
  config.hidden = 1;
  return config;
}
std::vector<RankInput> TpInputs() {
  return {MakeRank(0, 2, 1, {0, 1}), MakeRank(1, 2, 1, {0, 0}), MakeRank(2, 1, 1, {1}), MakeRank(3, 2, 1, {0, 0})};
}

TEST(TpPair, DispatchAllGather) {
  const std::vector<DispatchOut> outs = Dispatch(TpConfig(), TpInputs());
  // g0: [own 3][peer g2's 2]; epRecvCounts [1, 3 | 0, 2]; tpRecvCounts [tp0 = 3, tp1 = 2]; tokens 5.
  EXPECT_EQ(outs[0].assist_info, (Triple{0, 0, 0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0}));
  ExpectRowsFrom(outs[0], 1, {{0, 0}, {1, 0}, {1, 1}, {3, 0}, {3, 1}});
  EXPECT_EQ(outs[0].ep_recv_counts, (std::vector<int32_t>{1, 3, 0, 2}));
  EXPECT_EQ(outs[0].tp_recv_counts, (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(outs[0].expert_token_nums, (std::vector<int64_t>{5}));
  // g2: [own 2][peer g0's 3]; epRecvCounts [0, 2 | 1, 3]; tpRecvCounts indexed by TP rank: [3, 2].
  EXPECT_EQ(outs[2].assist_info, (Triple{1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0}));
  ExpectRowsFrom(outs[2], 1, {{3, 0}, {3, 1}, {0, 0}, {1, 0}, {1, 1}});
  EXPECT_EQ(outs[2].ep_recv_counts, (std::vector<int32_t>{0, 2, 1, 3}));
  EXPECT_EQ(outs[2].tp_recv_counts, (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(outs[2].expert_token_nums, (std::vector<int64_t>{5}));
  // g1: own (0,1,0) from g0, peer (0,0,0) from g2. g3: own (0,0,0) from g2, peer (0,1,0) from g0.
  ExpectRowsFrom(outs[1], 1, {{0, 1}, {2, 0}});
  EXPECT_EQ(outs[1].ep_recv_counts, (std::vector<int32_t>{1, 1, 1, 1}));
  EXPECT_EQ(outs[1].tp_recv_counts, (std::vector<int32_t>{1, 1}));
  ExpectRowsFrom(outs[3], 1, {{2, 0}, {0, 1}});
  EXPECT_EQ(outs[3].expert_token_nums, (std::vector<int64_t>{2}));
}

// Reduce-scatter: own row i += peer row (peer_own_rows + i), fp32 add then bf16 RINT. Weights 1.
//   g0 out [1, 1, 2 | 10, 20], g2 out [0.5, 0.25 | 2^-8, 3*2^-8, 0.5], g1 out [4 | 8], g3 out [0.125 | 0.0625].
//   g0 rows: 1 + 2^-8 -> 1 (tie, even); 1 + 3*2^-8 -> 1 + 2^-6 (tie, even); 2 + 0.5 = 2.5.
//   g2 rows: 0.5 + 10 = 10.5; 0.25 + 20 = 20.25.   g1 row: 4 + 0.0625 = 4.0625.   g3 row: 0.125 + 8 = 8.125.
//   Owners: g0 t0 <- g0 row 0 = 1, g0 t1 <- g1 row 0 = 4.0625; g1 t0, t1 <- g0 rows 1, 2 = 1.015625, 2.5;
//   g2 t0 <- g3 row 0 = 8.125; g3 t0, t1 <- g2 rows 0, 1 = 10.5, 20.25.
TEST(TpPair, CombineReduceScatter) {
  std::vector<CombineInput> combine(4);
  combine[0].expert_out = {Bf(1.0f), Bf(1.0f), Bf(2.0f), Bf(10.0f), Bf(20.0f)};
  combine[1].expert_out = {Bf(4.0f), Bf(8.0f)};
  combine[2].expert_out = {Bf(0.5f), Bf(0.25f), Bf(0x1p-8f), Bf(0x3p-8f), Bf(0.5f)};
  combine[3].expert_out = {Bf(0.125f), Bf(0.0625f)};
  const std::vector<RankInput> inputs = TpInputs();
  for (int g = 0; g < 4; ++g) combine[g].expert_scales.assign(inputs[g].bs, 1.0f);
  const std::vector<CombineOut> outs = Combine(TpConfig(), inputs, combine);
  EXPECT_EQ(outs[0].x, (std::vector<uint16_t>{Bf(1.0f), Bf(4.0625f)}));
  EXPECT_EQ(outs[1].x, (std::vector<uint16_t>{Bf(1.015625f), Bf(2.5f)}));
  EXPECT_EQ(outs[2].x, (std::vector<uint16_t>{Bf(8.125f)}));
  EXPECT_EQ(outs[3].x, (std::vector<uint16_t>{Bf(10.5f), Bf(20.25f)}));
}

// ------------------------------------------------------------------------------------------------------
// Dynamic quantization (quant_mode 2)
// ------------------------------------------------------------------------------------------------------

// E = 3, S = 2, n_s = 2 (R = 1: shared expert 0 on rank 0, 1 on rank 1), moe = 1 (rank 2), K = 1, H = 4.
// Rank 0's token x = [1, -2, 0.5, 0.25] goes to rank 0 (kIdx 1, smooth row 0 = [1,1,1,1]), rank 1 (kIdx 2,
// smooth row 1 = [0.5,1,1,1]) and rank 2 (kIdx 0, smooth row n_s + 0 = 2 = [2,1,1,1]). amax = 2 every time,
// ds = 127 / 2 = 63.5, scale = 1 / 63.5 (fp32 0x3C810204):
//   row 0: f * ds = [63.5, -127, 31.75, 15.875] -> [64 (tie, even), -127, 32, 16]
//   row 1: f = [0.5, -2, 0.5, 0.25]   -> [31.75, -127, 31.75, 15.875] -> [32, -127, 32, 16]
//   row 2: f = [2, -2, 0.5, 0.25]     -> [127, -127, 31.75, 15.875]   -> [127, -127, 32, 16]
// Ranks 1 and 2 send an all-zero token: amax == 0 -> q = 0 and scale = 0 (the model's decision).
TEST(Quant, SmoothRowsAndZeroRows) {
  Config config;
  config.ep_world_size = 3;
  config.shared_expert_num = 2;
  config.shared_expert_rank_num = 2;
  config.moe_expert_num = 1;
  config.top_k = 1;
  config.hidden = 4;
  config.quant_mode = 2;
  const std::vector<float> smooth = {1, 1, 1, 1, 0.5f, 1, 1, 1, 2, 1, 1, 1};
  std::vector<RankInput> inputs(3);
  for (int g = 0; g < 3; ++g) {
    inputs[g].bs = 1;
    inputs[g].expert_ids = {0};
    inputs[g].smooth_scales = smooth;
    inputs[g].x = {Bf(0), Bf(0), Bf(0), Bf(0)};
  }
  inputs[0].x = {Bf(1.0f), Bf(-2.0f), Bf(0.5f), Bf(0.25f)};
  const std::vector<DispatchOut> outs = Dispatch(config, inputs);
  const float scale = std::bit_cast<float>(0x3C810204u);
  for (int g = 0; g < 3; ++g) {
    ASSERT_EQ(outs[g].rows, 3);
    EXPECT_TRUE(outs[g].expand_x.empty());
    EXPECT_EQ(outs[g].dynamic_scales, (std::vector<float>{scale, 0.0f, 0.0f}));
    EXPECT_EQ(outs[g].assist_info, (Triple{0, 0, (g + 1) % 3, 1, 0, (g + 1) % 3, 2, 0, (g + 1) % 3}));
  }
  EXPECT_EQ(outs[0].expand_x_q, (std::vector<int8_t>{64, -127, 32, 16, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(outs[1].expand_x_q, (std::vector<int8_t>{32, -127, 32, 16, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(outs[2].expand_x_q, (std::vector<int8_t>{127, -127, 32, 16, 0, 0, 0, 0, 0, 0, 0, 0}));
}

// No smooth scales: x = [127, 2.5, 3.5, -0.5] has amax 127, ds = 1, scale = 1; RINT ties go to even:
// q = [127, 2, 4, 0]. fp16 input x = [-3, 1.5, 0, 0.75]: amax 3, ds = 127/3 = 42.333332 (fp32),
// f * ds rounds in fp32 to [-127 (from -126.999996), 63.5 (from 63.499998), 0, 31.75 (from 31.749999)]
// -> RINT [-127, 64 (tie, even), 0, 32]; scale = 1 / 42.333332.
TEST(Quant, RintTiesAndFp16) {
  Config config;
  config.moe_expert_num = 2;
  config.hidden = 4;
  config.quant_mode = 2;
  std::vector<RankInput> inputs(2);
  inputs[0] = {1, {Bf(127.0f), Bf(2.5f), Bf(3.5f), Bf(-0.5f)}, {0}, MaskKind::kNone, {}, {}};
  inputs[1] = {0, {}, {}, MaskKind::kNone, {}, {}};
  const std::vector<DispatchOut> outs = Dispatch(config, inputs);
  EXPECT_EQ(outs[0].expand_x_q, (std::vector<int8_t>{127, 2, 4, 0}));
  EXPECT_EQ(outs[0].dynamic_scales, (std::vector<float>{1.0f}));

  config.dtype = DType::kFp16;
  inputs[0].x = {FloatToHalf(-3.0f), FloatToHalf(1.5f), FloatToHalf(0.0f), FloatToHalf(0.75f)};
  const std::vector<DispatchOut> half_outs = Dispatch(config, inputs);
  const float ds = 127.0f / 3.0f;
  EXPECT_EQ(ds, 42.333332f);
  EXPECT_EQ(1.5f * ds, 63.5f);
  EXPECT_EQ(half_outs[0].expand_x_q, (std::vector<int8_t>{-127, 64, 0, 32}));
  EXPECT_EQ(half_outs[0].dynamic_scales, (std::vector<float>{1.0f / ds}));
}

// ------------------------------------------------------------------------------------------------------
// Combine arithmetic
// ------------------------------------------------------------------------------------------------------

// E = 2, moe = 2 (expert 0 on rank 0, 1 on rank 1), K = 2, H = 2.
// Rank 0 token: ids {0, 1}; rows: rank 0 row 0 = (0,0,0), rank 1 row 0 = (0,0,1).
// Rank 1 token: ids {1, 0}; rows: rank 1 row 1 = (1,0,0), rank 0 row 1 = (1,0,1).
// Rank 0 checks "no FMA": v1 = -1, w1 = P = fp32((1 + 2^-7) * (1 + 2^-23)) = 1 + 2^-7 + 2^-23 (the exact
//   product has an extra 2^-30); v2 = 1 + 2^-7, w2 = 1 + 2^-23. acc = 0 + (-P) = -P; then
//   acc = -P + fp32(v2 * w2) = -P + P = +0 -> x = 0x0000. A fused multiply-add would give 2^-30 (0x3080).
// Rank 1: v(1,0,0) = [3, 1] * 0.5 = [1.5, 0.5]; v(1,0,1) = [0.25, -1] * 2 = [0.5, -2]; sum [2, -1.5];
//   + shared_expert_x [1, 0.0078125] = [3, -1.4921875].
TEST(CombineSum, NoFmaAndSharedExpertX) {
  Config config;
  config.moe_expert_num = 2;
  config.top_k = 2;
  config.hidden = 2;
  const std::vector<RankInput> inputs = {MakeRank(0, 1, 2, {0, 1}), MakeRank(1, 1, 2, {1, 0})};
  const float w2 = 1.0f + 0x1p-23f;
  const float p = 1.0f + 0x1p-7f + 0x1p-23f;
  ASSERT_EQ((1.0f + 0x1p-7f) * w2, p);
  std::vector<CombineInput> combine(2);
  combine[0].expert_out = {Bf(-1.0f), Bf(-1.0f), Bf(0.25f), Bf(-1.0f)};
  combine[1].expert_out = {Bf(1.0f + 0x1p-7f), Bf(1.0f + 0x1p-7f), Bf(3.0f), Bf(1.0f)};
  combine[0].expert_scales = {p, w2};
  combine[1].expert_scales = {0.5f, 2.0f};
  combine[1].shared_expert_x = {Bf(1.0f), Bf(0.0078125f)};
  const std::vector<CombineOut> outs = Combine(config, inputs, combine);
  EXPECT_EQ(outs[0].x, (std::vector<uint16_t>{0x0000, 0x0000}));
  EXPECT_EQ(outs[1].x, (std::vector<uint16_t>{Bf(3.0f), Bf(-1.4921875f)}));
}

// fp16 output: one token, expert row [1, 1] times w = fp32(1/3) = 0.33333334 -> fp16 0x3555
// (1365 * 2^-12 = 0.333251953125; 0.33333334 / 2^-12 = 1365.33 rounds down).
TEST(CombineSum, Fp16Rounding) {
  Config config;
  config.dtype = DType::kFp16;
  config.hidden = 2;
  std::vector<RankInput> inputs(2);
  inputs[0] = {1, {FloatToHalf(1.0f), FloatToHalf(1.0f)}, {0}, MaskKind::kNone, {}, {}};
  inputs[1] = {0, {}, {}, MaskKind::kNone, {}, {}};
  std::vector<CombineInput> combine(2);
  combine[0].expert_out = {FloatToHalf(1.0f), FloatToHalf(1.0f)};
  combine[0].expert_scales = {1.0f / 3.0f};
  const std::vector<CombineOut> outs = Combine(config, inputs, combine);
  EXPECT_EQ(outs[0].x, (std::vector<uint16_t>{0x3555, 0x3555}));
}

// comm_quant_mode 2, bf16, H = 10 (blocks [0, 8) and [8, 10) + 6 zero pads). E = 2, moe = 2, K = 1, w = 1.
// Rank 0: t0 -> expert 1, t1 -> expert 1 (rank 1 rows 0 and 1). Rank 1: t0 -> expert 0 (rank 0 row 0).
// Rank 1 row 0, block 0 = [127, 1, -0.5, 64, 0, 3, 2.5, -127]: s = 127 * fp32(1/127) = 1.0 exactly, so
//   q = rint(fp16(x)) = [127, 1, 0 (-0.5 ties to even), 64, 0, 3, 2 (tie), -127], scale bf16(1) = 1, v = q.
// Block 1 = [0.53515625, 0.5078125]: s = fp32(0.53515625 * 0.0078740157) = 0.0042138286 (0x3B8A1428);
//   transmitted bf16(s) = 0x3B8A = 0.00421142578125.
//   0.53515625 / s = 127.0000005 -> fp16 127 -> q 127; v = bf16(127 * 0.00421142578125 = 0.53485107421875)
//     = 0x3F09 = 0.53515625.
//   0.5078125 / s = 120.51096 -> fp16 120.5 (spacing 1/16) -> RINT tie -> 120 (a single rounding would give
//     121); v = bf16(120 * 0.00421142578125 = 0.50537109375) = 0x3F01 = 0.50390625.
// Rank 1 row 1 is all zeros (s = 0 -> q = 0 -> v = 0). Rank 0 row 0 = [3, 0, ...]: s = 3/127, q = [127, 0...],
//   v0 = bf16(127 * bf16(fp32(3 * 0.0078740157))), checked against that formula.
TEST(CommQuant, BlocksOfEightByHand) {
  Config config;
  config.moe_expert_num = 2;
  config.hidden = 10;
  config.comm_quant_mode = 2;
  const std::vector<RankInput> inputs = {MakeRank(0, 2, 10, {1, 1}), MakeRank(1, 1, 10, {0})};
  std::vector<CombineInput> combine(2);
  combine[0].expert_out.assign(10, Bf(0.0f));
  combine[0].expert_out[0] = Bf(3.0f);
  const std::vector<float> row0 = {127, 1, -0.5f, 64, 0, 3, 2.5f, -127, 0.53515625f, 0.5078125f};
  for (float v : row0) combine[1].expert_out.push_back(Bf(v));
  for (int h = 0; h < 10; ++h) combine[1].expert_out.push_back(Bf(0.0f));
  combine[0].expert_scales = {1.0f, 1.0f};
  combine[1].expert_scales = {1.0f};
  const std::vector<CombineOut> outs = Combine(config, inputs, combine);
  const std::vector<float> expected = {127, 1, 0, 64, 0, 3, 2, -127, 0.53515625f, 0.50390625f};
  for (int h = 0; h < 10; ++h) EXPECT_EQ(Bf16ToFloat(outs[0].x[h]), expected[h]) << h;
  for (int h = 0; h < 10; ++h) EXPECT_EQ(outs[0].x[10 + h], 0x0000) << h;
  const float s3 = 3.0f * (1.0f / 127.0f);
  EXPECT_EQ(outs[1].x[0], FloatToBf16(127.0f * Bf16ToFloat(FloatToBf16(s3))));
}

// ------------------------------------------------------------------------------------------------------
// CombineAddRmsNorm
// ------------------------------------------------------------------------------------------------------

// One token on rank 0 (expert 0 on rank 0), w = 1, H = 4, eps = 0.
// expert row [2, 4, 0, -1] + residual [1, 0, 0, 1] -> xs = [3, 4, 0, 0] = x.
// p = xs^2 * 0.25 = [2.25, 4, 0, 0]; ms = 6.25; rstd = 1 / sqrt(6.25) = fp32(0.4) = 0x3ECCCCCD.
// xs * rstd = [1.2000000477, 1.6000000238, 0, 0] -> bf16 [1.203125 (154/128), 1.6015625 (205/128), 0, 0];
// times gamma [1, 2, 1, 1] -> y = [1.203125, 3.203125, 0, 0].
TEST(AddRmsNorm, OneTokenByHand) {
  Config config;
  config.moe_expert_num = 2;
  config.hidden = 4;
  config.norm_eps = 0.0f;
  const std::vector<RankInput> inputs = {MakeRank(0, 1, 4, {0}), MakeRank(1, 1, 4, {1})};
  std::vector<CombineInput> combine(2);
  combine[0].expert_out = {Bf(2), Bf(4), Bf(0), Bf(-1)};
  combine[1].expert_out = {Bf(0), Bf(0), Bf(0), Bf(0)};
  for (int g = 0; g < 2; ++g) {
    combine[g].expert_scales = {1.0f};
    combine[g].residual_x = {Bf(1), Bf(0), Bf(0), Bf(1)};
    combine[g].gamma = {Bf(1), Bf(2), Bf(1), Bf(1)};
  }
  const std::vector<CombineOut> outs = CombineAddRmsNorm(config, inputs, combine);
  EXPECT_EQ(outs[0].x, (std::vector<uint16_t>{Bf(3), Bf(4), Bf(0), Bf(0)}));
  EXPECT_EQ(std::bit_cast<uint32_t>(outs[0].rstd[0]), 0x3ECCCCCDu);
  EXPECT_EQ(outs[0].y, (std::vector<uint16_t>{Bf(1.203125f), Bf(3.203125f), Bf(0), Bf(0)}));
  // Rank 1: xs = [1, 0, 0, 1], ms = 0.5, rstd = 1/sqrt(0.5) = fp32(1.4142135) (sqrt(0.5) = 0.70710677);
  // 1 * rstd -> bf16(1.4142135) = 1.4140625 (181/128); y = [1.4140625, 0, 0, 1.4140625].
  EXPECT_EQ(outs[1].rstd[0], 1.0f / std::sqrt(0.5f));
  EXPECT_EQ(outs[1].y, (std::vector<uint16_t>{Bf(1.4140625f), Bf(0), Bf(0), Bf(1.4140625f)}));
}

// ------------------------------------------------------------------------------------------------------
// Special experts (V3: zero / copy / const, docs/semantics.md 2.8 and 3.2)
// ------------------------------------------------------------------------------------------------------

// E = 3, S = 1, n_s = 1 (R = 1: shared expert 0 on rank 0), moe = 2 (expert 0 on rank 1, expert 1 on
// rank 2), zero = 1 (id 2), copy = 1 (id 3), const = 2 (ids 4, 5), K = 2, H = 2, no mask.
// ids: r0 (bs 3) {0,2 | 3,4 | 1,0}, r1 (bs 2) {5,1 | 1,3}, r2 (bs 1) {2,0}.
// Special pairs are never sent; every token is still active (the mask alone decides) and reaches the
// shared expert, including r0 t1 whose experts are all special.
// Rank 0 (shared, kIdx 2): (0,0,2) (0,1,2) (0,2,2) | (1,0,2) (1,1,2) | (2,0,2) -> counts [3, 5, 6], [6].
// Rank 1 (e0): src 0 (t0,k0) (t2,k1) | src 1 none | src 2 (t0,k1) -> (0,0,0) (0,2,1) (2,0,1), [2, 2, 3], [3].
// Rank 2 (e1): src 0 (t2,k0) | src 1 (t0,k1) (t1,k0) | src 2 none -> (0,2,0) (1,0,1) (1,1,0), [1, 3, 3], [3].
Config SpecialConfig() {
  Config config;
  config.ep_world_size = 3;
  config.shared_expert_num = 1;
  config.shared_expert_rank_num = 1;
  config.moe_expert_num = 2;
  config.zero_expert_num = 1;
  config.copy_expert_num = 1;
  config.const_expert_num = 2;
  config.top_k = 2;
  config.hidden = 2;
  return config;
}
std::vector<RankInput> SpecialInputs() {
  return {MakeRank(0, 3, 2, {0, 2, 3, 4, 1, 0}), MakeRank(1, 2, 2, {5, 1, 1, 3}), MakeRank(2, 1, 2, {2, 0})};
}

TEST(SpecialExperts, DispatchSkipsSpecialIds) {
  const std::vector<DispatchOut> outs = Dispatch(SpecialConfig(), SpecialInputs());
  EXPECT_EQ(outs[0].assist_info, (Triple{0, 0, 2, 0, 1, 2, 0, 2, 2, 1, 0, 2, 1, 1, 2, 2, 0, 2}));
  ExpectRowsFrom(outs[0], 2, {{0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}, {2, 0}});
  EXPECT_EQ(outs[0].ep_recv_counts, (std::vector<int32_t>{3, 5, 6}));
  EXPECT_EQ(outs[0].expert_token_nums, (std::vector<int64_t>{6}));
  EXPECT_EQ(outs[1].assist_info, (Triple{0, 0, 0, 0, 2, 1, 2, 0, 1}));
  ExpectRowsFrom(outs[1], 2, {{0, 0}, {0, 2}, {2, 0}});
  EXPECT_EQ(outs[1].ep_recv_counts, (std::vector<int32_t>{2, 2, 3}));
  EXPECT_EQ(outs[1].expert_token_nums, (std::vector<int64_t>{3}));
  EXPECT_EQ(outs[2].assist_info, (Triple{0, 2, 0, 1, 0, 1, 1, 1, 0}));
  ExpectRowsFrom(outs[2], 2, {{0, 2}, {1, 0}, {1, 1}});
  EXPECT_EQ(outs[2].ep_recv_counts, (std::vector<int32_t>{1, 3, 3}));
  EXPECT_EQ(outs[2].expert_token_nums, (std::vector<int64_t>{3}));
  for (const DispatchOut& out : outs) EXPECT_TRUE(out.tp_recv_counts.empty());
}

// L = 2 (E = 2, moe = 4: experts 0, 1 on rank 0; 2, 3 on rank 1), zero = 1 (id 4), copy = 1 (id 5), K = 3.
// r0 (bs 2): {4,1,0 | 2,5,1}; r1 (bs 2): {0,5,3 | 4,5,2}. The per-expert slots count MoE pairs only:
// rank 0 e0: src 0 (t0,k2) | src 1 (t0,k0); e1: src 0 (t0,k1) (t1,k2) | src 1 none -> counts [1, 2, 4, 4],
//   per expert [2, 2] (type 1).
// rank 1 e2: src 0 (t1,k0) | src 1 (t1,k2); e3: src 0 none | src 1 (t0,k2) -> counts [1, 2, 2, 3], [2, 1].
// An id past moe + zero + copy = 6 is invalid input.
TEST(SpecialExperts, DispatchSlotsCountMoePairsOnly) {
  Config config;
  config.ep_world_size = 2;
  config.moe_expert_num = 4;
  config.zero_expert_num = 1;
  config.copy_expert_num = 1;
  config.top_k = 3;
  config.hidden = 4;
  std::vector<RankInput> inputs = {MakeRank(0, 2, 4, {4, 1, 0, 2, 5, 1}), MakeRank(1, 2, 4, {0, 5, 3, 4, 5, 2})};
  const std::vector<DispatchOut> outs = Dispatch(config, inputs);
  EXPECT_EQ(outs[0].assist_info, (Triple{0, 0, 2, 1, 0, 0, 0, 0, 1, 0, 1, 2}));
  ExpectRowsFrom(outs[0], 4, {{0, 0}, {1, 0}, {0, 0}, {0, 1}});
  EXPECT_EQ(outs[0].ep_recv_counts, (std::vector<int32_t>{1, 2, 4, 4}));
  EXPECT_EQ(outs[0].expert_token_nums, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(outs[1].assist_info, (Triple{0, 1, 0, 1, 1, 2, 1, 0, 2}));
  ExpectRowsFrom(outs[1], 4, {{0, 1}, {1, 1}, {1, 0}});
  EXPECT_EQ(outs[1].ep_recv_counts, (std::vector<int32_t>{1, 2, 2, 3}));
  EXPECT_EQ(outs[1].expert_token_nums, (std::vector<int64_t>{2, 1}));

  inputs[1].expert_ids[4] = 6;  // past the last special expert
  EXPECT_THROW(Dispatch(config, inputs), std::invalid_argument);
  inputs[1].expert_ids[4] = -1;
  EXPECT_THROW(Dispatch(config, inputs), std::invalid_argument);
}

// Combine arithmetic, bf16, H = 4. E = 2, moe = 2 (expert 0 on rank 0, expert 1 on rank 1), zero = 1 (id 2),
// copy = 1 (id 3), const = 2 (ids 4 = c0, 5 = c1), K = 3. Rank 0 has 5 tokens, rank 1 none.
// Zero experts carry the weight +inf: a model that multiplied 0 * inf would produce NaN.
// Dispatch: rank 0 (e0) rows (0,1,1) (0,2,0) (0,3,0) (0,4,2); rank 1 (e1) row (0,0,0).
// expert_out: rank 0 rows [1, 1, 1, 1], [-(1 + 2^-6), -2, 0.5, 0], [-1, 0, 0, 0], [-3, 0, 0, 0];
// rank 1 row [4, 8, -4, 2].
// oriX: t0 [0.5, 1, -1, 2], t1 [1, -2, 0.5, 3], t2 [1 + 2^-6, 2, -1, 0], t3 [1 + 2^-7, 1, 0, -4], t4 [2, 0, 0, 0].
// const (a_i = oriX . alpha_i[c], (p1, p2) = softmax(a1, a2), v = oriX * p1 + V[c] * p2): alpha1 = [[0, 0, 0, 0],
// [256, 256, 0, 0]], alpha2 = [[256, 0, 0, 0], [256, 0, 0, 0]], V = [[1, 2, 4, -8], [2^-22, 0, 0, 4]]. The
// softmax is exact where a1 == a2 (p = 1/2 each) or where they differ by 256 or more (exp(-256) rounds to 0).
//   t0 ids {1, 2, 3}, w {0.5, inf, 2}: e1 [4, 8, -4, 2] * 0.5 = [2, 4, -2, 1]; zero skipped;
//      copy [0.5, 1, -1, 2] * 2 = [1, 2, -2, 4]  -> x = [3, 6, -4, 5].
//   t1 ids {4, 0, 2}, w {0.25, 1, inf}: c0 a1 = 0, a2 = 256: p = (0, 1), v = V[c0] = [1, 2, 4, -8] (a swapped
//      softmax would give oriX), * 0.25 = [0.25, 0.5, 1, -2]; e0 [1, 1, 1, 1] -> x = [1.25, 1.5, 2, -1].
//   t2 ids {0, 5, 2}, w {1, 1, inf}: c1 a1 = 260 + 512 = 772, a2 = 260: p = (1, 0), v = oriX; acc = e0 row
//      [-(1 + 2^-6), -2, 0.5, 0] + [1 + 2^-6, 2, -1, 0] -> x = [0, 0, -0.5, 0].
//   t3 ids {0, 3, 2}, w {P, 1 + 2^-23, inf} with P = 1 + 2^-7 + 2^-23 (fp32):
//      column 0: e0 (-1) * P = -P exactly; copy (1 + 2^-7) * (1 + 2^-23) = 1 + 2^-7 + 2^-23 + 2^-30 rounds
//      to P, so acc = -P + P = 0 (an FMA would leave 2^-30). Column 1: 0 * P + 1 * (1 + 2^-23) = 1 + 2^-23
//      -> bf16 1. Column 2: 0. Column 3: 0 + (-4) * (1 + 2^-23) = -4 - 2^-21 -> bf16 -4.
//   t4 ids {3, 5, 0}, w {1, 1, 1} (k order matters): c1 a1 = a2 = 512: p = (1/2, 1/2), v = [1 + 2^-23, 0, 0, 2].
//      Column 0: copy 2; + v = 3 + 2^-23, a tie at ulp 2^-22 -> 3 (even); + e0 row -3 -> 0. (Taking the MoE row
//      first would give (-3 + 2) + (1 + 2^-23) = 2^-23.) Column 3: 0 + 2 + 0 = 2.
TEST(SpecialExperts, CombineZeroCopyConstByHand) {
  const float inf = std::numeric_limits<float>::infinity();
  const float p = 1.0f + 0x1p-7f + 0x1p-23f;
  const float w_copy = 1.0f + 0x1p-23f;
  {  // The fp32 roundings the expected values rely on, recomputed step by step.
    volatile float a = 1.0f + 0x1p-7f;
    volatile float b = w_copy;
    volatile float product = a * b;
    EXPECT_EQ(product, p);
    EXPECT_EQ(static_cast<double>(a) * static_cast<double>(b), static_cast<double>(p) + 0x1p-30);  // not exact
    volatile float two = 2.0f, v = 1.0f + 0x1p-23f;
    volatile float tie = two + v;
    EXPECT_EQ(tie, 3.0f);
    EXPECT_EQ(static_cast<float>(std::exp(-256.0)), 0.0f);
  }
  Config config;
  config.moe_expert_num = 2;
  config.zero_expert_num = 1;
  config.copy_expert_num = 1;
  config.const_expert_num = 2;
  config.top_k = 3;
  config.hidden = 4;
  std::vector<RankInput> inputs = {MakeRank(0, 5, 4, {1, 2, 3, 4, 0, 2, 0, 5, 2, 0, 3, 2, 3, 5, 0}),
                                   MakeRank(1, 0, 4, {})};
  const std::vector<DispatchOut> dispatched = Dispatch(config, inputs);
  ASSERT_EQ(dispatched[0].assist_info, (Triple{0, 1, 1, 0, 2, 0, 0, 3, 0, 0, 4, 2}));
  ASSERT_EQ(dispatched[1].assist_info, (Triple{0, 0, 0}));

  std::vector<CombineInput> combine(2);
  for (float v : {1.0f, 1.0f, 1.0f, 1.0f, -(1.0f + 0x1p-6f), -2.0f, 0.5f, 0.0f, -1.0f, 0.0f, 0.0f, 0.0f, -3.0f, 0.0f,
                  0.0f, 0.0f}) {
    combine[0].expert_out.push_back(Bf(v));
  }
  combine[1].expert_out = {Bf(4), Bf(8), Bf(-4), Bf(2)};
  combine[0].expert_scales = {0.5f, inf, 2.0f, 0.25f, 1.0f, inf, 1.0f, 1.0f, inf, p, w_copy, inf, 1.0f, 1.0f, 1.0f};
  for (float v : {0.5f,  1.0f, -1.0f,          2.0f, 1.0f, -2.0f, 0.5f, 3.0f, 1.0f + 0x1p-6f, 2.0f,
                  -1.0f, 0.0f, 1.0f + 0x1p-7f, 1.0f, 0.0f, -4.0f, 2.0f, 0.0f, 0.0f,           0.0f}) {
    combine[0].ori_x.push_back(Bf(v));
  }
  for (CombineInput& input : combine) {
    input.const_alpha1 = {Bf(0), Bf(0), Bf(0), Bf(0), Bf(256), Bf(256), Bf(0), Bf(0)};
    input.const_alpha2 = {Bf(256), Bf(0), Bf(0), Bf(0), Bf(256), Bf(0), Bf(0), Bf(0)};
    input.const_v = {Bf(1), Bf(2), Bf(4), Bf(-8), Bf(0x1p-22f), Bf(0), Bf(0), Bf(4)};
  }
  const std::vector<CombineOut> outs = Combine(config, inputs, combine);
  EXPECT_EQ(outs[0].written, (std::vector<uint8_t>{1, 1, 1, 1, 1}));
  EXPECT_EQ(outs[1].written, (std::vector<uint8_t>{}));
  const std::vector<uint16_t> expected = {Bf(3),     Bf(6),    Bf(-4),    Bf(5),   // t0
                                          Bf(1.25f), Bf(1.5f), Bf(2),     Bf(-1),  // t1
                                          Bf(0),     Bf(0),    Bf(-0.5f), Bf(0),   // t2
                                          Bf(0),     Bf(1),    Bf(0),     Bf(-4),  // t3
                                          Bf(0),     Bf(0),    Bf(0),     Bf(2)};  // t4
  EXPECT_EQ(outs[0].x, expected);

  // CombineAddRmsNorm accumulates the same way: with a zero residual, x = bf16(acc) is the same.
  for (CombineInput& input : combine) {
    input.residual_x.assign(input.ori_x.size(), Bf(0));
    input.gamma.assign(4, Bf(1));
  }
  const std::vector<CombineOut> norm_outs = CombineAddRmsNorm(config, inputs, combine);
  EXPECT_EQ(norm_outs[0].written, (std::vector<uint8_t>{1, 1, 1, 1, 1}));
  EXPECT_EQ(norm_outs[0].x, expected);
}

// fp16: copy = 1 (id 2), const = 1 (id 3), moe = 2, K = 2, H = 2; rank 0's token ids {2, 3}, w {fp32(1/3), 1}.
// oriX [1, 1], alpha1 [[0.5, 0.5]], alpha2 [[1, 0]]: a1 = a2 = 1, p = (1/2, 1/2); V [[1, -1]]:
// const v = [0.5 + 0.5, 0.5 - 0.5] = [1, 0].
// acc = [0.33333334 + 1 = 1.3333334, 0.33333334] -> fp16 [1365/1024 = 0x3D55, 1365/4096 = 0x3555].
TEST(SpecialExperts, Fp16CopyAndConst) {
  Config config;
  config.dtype = DType::kFp16;
  config.moe_expert_num = 2;
  config.copy_expert_num = 1;
  config.const_expert_num = 1;
  config.top_k = 2;
  config.hidden = 2;
  std::vector<RankInput> inputs(2);
  inputs[0] = {1, {FloatToHalf(7.0f), FloatToHalf(7.0f)}, {2, 3}, MaskKind::kNone, {}, {}};
  inputs[1] = {0, {}, {}, MaskKind::kNone, {}, {}};
  std::vector<CombineInput> combine(2);
  combine[0].expert_scales = {1.0f / 3.0f, 1.0f};
  combine[0].ori_x = {FloatToHalf(1.0f), FloatToHalf(1.0f)};
  for (CombineInput& input : combine) {
    input.const_alpha1 = {FloatToHalf(0.5f), FloatToHalf(0.5f)};
    input.const_alpha2 = {FloatToHalf(1.0f), FloatToHalf(0.0f)};
    input.const_v = {FloatToHalf(1.0f), FloatToHalf(-1.0f)};
  }
  EXPECT_EQ(Dispatch(config, inputs)[0].rows, 0);
  const std::vector<CombineOut> outs = Combine(config, inputs, combine);
  EXPECT_EQ(outs[0].written, (std::vector<uint8_t>{1}));
  EXPECT_EQ(outs[0].x, (std::vector<uint16_t>{0x3D55, 0x3555}));
}

// 2-D mask over special experts. E = 2, moe = 2 (e0 on rank 0, e1 on rank 1), zero = 1 (id 2), copy = 1
// (id 3), const = 1 (id 4), K = 3, H = 2.
// r0 (bs 3): t0 ids {0, 3, 4} mask {1, 0, 1}: e0 and c0; the copy pair is masked.
//            t1 ids {3, 99, 1} mask {1, 0, 0}: only the copy pair (the masked id 99 is never looked at).
//            t2 ids {4, 3, 0} mask {0, 0, 0}: inactive, not sent, output row not written.
// r1 (bs 1): t0 ids {2, 3, 1} mask {1, 1, 0}: zero and copy; e1 masked.
// Dispatch: rank 0 (e0) gets (0,0,0) only, counts [1, 1]; rank 1 (e1) gets nothing, counts [0, 0].
// Combine: r0 oriX t0 [1, 2], t1 [3, -1], t2 [5, 5]; r1 oriX [4, -8]; alpha1 = alpha2 = [[1, 0]] (so a1 = a2 and
// p = (1/2, 1/2)), V [[2, 2.5]]; rank 0 expert_out row 0 = [8, 16].
//   r0 t0, w {1, 1, 1}: [8, 16] + (masked copy [1, 2] skipped) + c0 ([1, 2] / 2 + [2, 2.5] / 2) = [9.5, 18.25].
//   r0 t1, w {2, 1, 1}: copy [3, -1] * 2 = [6, -2].
//   r1 t0, w {inf, 0.5, 1}: zero skipped; copy [4, -8] * 0.5 = [2, -4].
TEST(SpecialExperts, PairMaskOverSpecialExperts) {
  Config config;
  config.moe_expert_num = 2;
  config.zero_expert_num = 1;
  config.copy_expert_num = 1;
  config.const_expert_num = 1;
  config.top_k = 3;
  config.hidden = 2;
  std::vector<RankInput> inputs = {MakeRank(0, 3, 2, {0, 3, 4, 3, 99, 1, 4, 3, 0}), MakeRank(1, 1, 2, {2, 3, 1})};
  inputs[0].mask_kind = MaskKind::kPairs;
  inputs[0].mask = {1, 0, 1, 1, 0, 0, 0, 0, 0};
  inputs[1].mask_kind = MaskKind::kPairs;
  inputs[1].mask = {1, 1, 0};
  const std::vector<DispatchOut> outs = Dispatch(config, inputs);
  EXPECT_EQ(outs[0].assist_info, (Triple{0, 0, 0}));
  ExpectRowsFrom(outs[0], 2, {{0, 0}});
  EXPECT_EQ(outs[0].ep_recv_counts, (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(outs[1].rows, 0);
  EXPECT_EQ(outs[1].ep_recv_counts, (std::vector<int32_t>{0, 0}));
  EXPECT_EQ(outs[1].expert_token_nums, (std::vector<int64_t>{0}));

  const float inf = std::numeric_limits<float>::infinity();
  std::vector<CombineInput> combine(2);
  combine[0].expert_out = {Bf(8), Bf(16)};
  combine[0].expert_scales = {1, 1, 1, 2, 1, 1, 1, 1, 1};
  combine[0].ori_x = {Bf(1), Bf(2), Bf(3), Bf(-1), Bf(5), Bf(5)};
  combine[1].expert_scales = {inf, 0.5f, 1};
  combine[1].ori_x = {Bf(4), Bf(-8)};
  for (CombineInput& input : combine) {
    input.const_alpha1 = {Bf(1), Bf(0)};
    input.const_alpha2 = {Bf(1), Bf(0)};
    input.const_v = {Bf(2), Bf(2.5f)};
  }
  const std::vector<CombineOut> results = Combine(config, inputs, combine);
  EXPECT_EQ(results[0].written, (std::vector<uint8_t>{1, 1, 0}));
  EXPECT_EQ(results[0].x[0], Bf(9.5f));
  EXPECT_EQ(results[0].x[1], Bf(18.25f));
  EXPECT_EQ(results[0].x[2], Bf(6));
  EXPECT_EQ(results[0].x[3], Bf(-2));
  EXPECT_EQ(results[1].written, (std::vector<uint8_t>{1}));
  EXPECT_EQ(results[1].x, (std::vector<uint16_t>{Bf(2), Bf(-4)}));
}

// Tokens whose experts are all special are active and written.
// (a) With a shared expert: SpecialConfig / SpecialInputs (see DispatchSkipsSpecialIds), expert_out coded
//     (row i of rank g = [16g + i, -(16g + i)]), w = 0.5 for k = 0 and 1 for k = 1.
//     oriX: r0 t0 [9, 9], t1 [1, 2], t2 [9, 9]; r1 t0 [2, -2], t1 [9, 9]; r2 t0 [9, 9].
//     alpha1 = [[1, 0], [0, 1]], alpha2 the same: a1 = a2, so p = (1/2, 1/2); V [[9, 18], [8, -4]].
//     r0 t1 ids {3, 4} (copy, c0): [1, 2] * 0.5 + ([1, 2] / 2 + [9, 18] / 2) * 1 = [5.5, 11]; + shared row
//       (rank 0 row 1 = [1, -1]) = [6.5, 10].
//     r1 t0 ids {5, 1}: c1 = [2, -2] / 2 + [8, -4] / 2 = [5, -3], * 0.5 = [2.5, -1.5]; e1 row (1,0,1) = rank 2
//       row 1 = [33, -33] -> [35.5, -34.5]; shared rank 0 row 3 = [3, -3] -> [38.5, -37.5].
//     r2 t0 ids {2, 0}: zero skipped; e0 row (2,0,1) = rank 1 row 2 = [18, -18]; shared rank 0 row 5 = [5, -5]
//       -> [23, -23].
// (b) No shared expert, no MoE pair at all: E = 2, moe = 2, zero = 2 (ids 2, 3), copy = 1 (id 4), K = 2, H = 2.
//     r0 t0 ids {2, 4}, w {inf, 2}: copy [1.5, -3] * 2 = [3, -6]; + shared_expert_x [0.25, 0.5] = [3.25, -5.5].
//     r1 t0 ids {3, 2}: zero experts only -> written, x = [0, 0].
TEST(SpecialExperts, TokensWithOnlySpecialExperts) {
  {
    const Config config = SpecialConfig();
    const std::vector<RankInput> inputs = SpecialInputs();
    const int64_t rows[] = {6, 3, 3};
    const std::vector<std::vector<float>> ori_x = {{9, 9, 1, 2, 9, 9}, {2, -2, 9, 9}, {9, 9}};
    std::vector<CombineInput> combine(3);
    for (int g = 0; g < 3; ++g) {
      combine[g].expert_out = CodedExpertOut(g, rows[g], 2);
      for (int64_t t = 0; t < inputs[g].bs; ++t)
        combine[g].expert_scales.insert(combine[g].expert_scales.end(), {0.5f, 1.0f});
      for (float v : ori_x[g]) combine[g].ori_x.push_back(Bf(v));
      combine[g].const_alpha1 = {Bf(1), Bf(0), Bf(0), Bf(1)};
      combine[g].const_alpha2 = {Bf(1), Bf(0), Bf(0), Bf(1)};
      combine[g].const_v = {Bf(9), Bf(18), Bf(8), Bf(-4)};
    }
    const std::vector<CombineOut> outs = Combine(config, inputs, combine);
    EXPECT_EQ(outs[0].written, (std::vector<uint8_t>{1, 1, 1}));
    EXPECT_EQ(outs[0].x[2], Bf(6.5f));
    EXPECT_EQ(outs[0].x[3], Bf(10));
    EXPECT_EQ(outs[1].written, (std::vector<uint8_t>{1, 1}));
    EXPECT_EQ(outs[1].x[0], Bf(38.5f));
    EXPECT_EQ(outs[1].x[1], Bf(-37.5f));
    EXPECT_EQ(outs[2].written, (std::vector<uint8_t>{1}));
    EXPECT_EQ(outs[2].x, (std::vector<uint16_t>{Bf(23), Bf(-23)}));
  }
  {
    Config config;
    config.moe_expert_num = 2;
    config.zero_expert_num = 2;
    config.copy_expert_num = 1;
    config.top_k = 2;
    config.hidden = 2;
    const std::vector<RankInput> inputs = {MakeRank(0, 1, 2, {2, 4}), MakeRank(1, 1, 2, {3, 2})};
    const std::vector<DispatchOut> dispatched = Dispatch(config, inputs);
    EXPECT_EQ(dispatched[0].rows, 0);
    EXPECT_EQ(dispatched[1].rows, 0);
    EXPECT_EQ(dispatched[0].ep_recv_counts, (std::vector<int32_t>{0, 0}));
    EXPECT_EQ(dispatched[1].expert_token_nums, (std::vector<int64_t>{0}));
    std::vector<CombineInput> combine(2);
    combine[0].expert_scales = {std::numeric_limits<float>::infinity(), 2.0f};
    combine[0].ori_x = {Bf(1.5f), Bf(-3)};
    combine[0].shared_expert_x = {Bf(0.25f), Bf(0.5f)};
    combine[1].expert_scales = {1.0f, 1.0f};
    combine[1].ori_x = {Bf(7), Bf(7)};
    const std::vector<CombineOut> outs = Combine(config, inputs, combine);
    EXPECT_EQ(outs[0].written, (std::vector<uint8_t>{1}));
    EXPECT_EQ(outs[0].x, (std::vector<uint16_t>{Bf(3.25f), Bf(-5.5f)}));
    EXPECT_EQ(outs[1].written, (std::vector<uint8_t>{1}));
    EXPECT_EQ(outs[1].x, (std::vector<uint16_t>{Bf(0), Bf(0)}));
  }
}

// comm_quant_mode 2 quantizes only the returned MoE rows; special experts are computed locally, exactly.
// E = 2, moe = 2, copy = 1 (id 2), K = 2, H = 2; rank 0's token ids {0, 2}, w {1, 1}.
// e0 row (rank 0 row 0) = [127, 2.5]: s = 127 * fp32(1/127) = 1, q = [127, 2] (2.5 ties to even), v = [127, 2].
// copy oriX [127, 1.5] unquantized -> x = [254, 3.5] (a quantized copy would give [254, 4]).
TEST(SpecialExperts, CommQuantLeavesSpecialExpertsExact) {
  Config config;
  config.moe_expert_num = 2;
  config.copy_expert_num = 1;
  config.top_k = 2;
  config.hidden = 2;
  config.comm_quant_mode = 2;
  const std::vector<RankInput> inputs = {MakeRank(0, 1, 2, {0, 2}), MakeRank(1, 0, 2, {})};
  std::vector<CombineInput> combine(2);
  combine[0].expert_out = {Bf(127), Bf(2.5f)};
  combine[0].expert_scales = {1.0f, 1.0f};
  combine[0].ori_x = {Bf(127), Bf(1.5f)};
  const std::vector<CombineOut> outs = Combine(config, inputs, combine);
  EXPECT_EQ(outs[0].x, (std::vector<uint16_t>{Bf(254), Bf(3.5f)}));
}

// Input checks for the special-expert tensors: ori_x is required with copy or const experts; the const
// tensors must match const_expert_num.
TEST(SpecialExperts, CombineInputSizesChecked) {
  Config config;
  config.moe_expert_num = 2;
  config.const_expert_num = 1;
  config.hidden = 2;
  const std::vector<RankInput> inputs = {MakeRank(0, 1, 2, {2}), MakeRank(1, 0, 2, {})};
  std::vector<CombineInput> combine(2);
  combine[0].expert_scales = {1.0f};
  for (CombineInput& input : combine) {  // a1 = a2 = oriX[0]: p = (1/2, 1/2)
    input.const_alpha1 = {Bf(1), Bf(0)};
    input.const_alpha2 = {Bf(1), Bf(0)};
    input.const_v = {Bf(5), Bf(8)};
  }
  EXPECT_THROW(Combine(config, inputs, combine), std::invalid_argument);  // ori_x missing on rank 0
  combine[0].ori_x = {Bf(3), Bf(4)};
  EXPECT_EQ(Combine(config, inputs, combine)[0].x, (std::vector<uint16_t>{Bf(4), Bf(6)}));
  combine[1].const_v = {Bf(1)};
  EXPECT_THROW(Combine(config, inputs, combine), std::invalid_argument);  // const_v must hold const * H
  combine[1].const_v = {Bf(5), Bf(8)};
  combine[1].const_alpha2 = {Bf(1)};
  EXPECT_THROW(Combine(config, inputs, combine), std::invalid_argument);  // an alpha must hold const * H
}

// ------------------------------------------------------------------------------------------------------
// A2 (Atlas A2 fullmesh)
// ------------------------------------------------------------------------------------------------------

// E = 2, moe = 4 (L = 2: experts 0, 1 on rank 0; 2, 3 on rank 1), zero = 1 (id 4), copy = 1 (id 5), K = 2, H = 2.
// r0 (bs 4, no mask): ids {1,0 | 1,4 | 0,1 | 5,1}.
//   expandIdx (earlier pairs of r0 with the same MoE id; special ids 0):
//   i0 e1 -> 0, i1 e0 -> 0, i2 e1 -> 1, i3 zero -> 0, i4 e0 -> 1, i5 e1 -> 2, i6 copy -> 0, i7 e1 -> 3.
// r1 (bs 3, 1-D mask {1, 1, 0}: activeBs = 2): ids {2,2 | 3,2 | 2,99} (the masked token's ids are never read).
//   expandIdx has activeBs * K = 4 entries: i0 e2 -> 0, i1 e2 -> 1, i2 e3 -> 0, i3 e2 -> 2.
// The rest is A3's layout: rank 0 e0: src 0 (t0,k1) (t2,k0) | src 1 none; e1: src 0 (t0,k0) (t1,k0) (t2,k1)
//   (t3,k1) | src 1 none -> counts [2, 2, 6, 6], per expert [2, 4].
// rank 1 e2: src 0 none | src 1 (t0,k0) (t0,k1) (t1,k1); e3: src 0 none | src 1 (t1,k0) -> [0, 3, 3, 4], [3, 1].
Config A2Config() {
  Config config;
  config.a2 = true;
  config.ep_world_size = 2;
  config.moe_expert_num = 4;
  config.zero_expert_num = 1;
  config.copy_expert_num = 1;
  config.top_k = 2;
  config.hidden = 2;
  return config;
}
std::vector<RankInput> A2Inputs() {
  std::vector<RankInput> inputs = {MakeRank(0, 4, 2, {1, 0, 1, 4, 0, 1, 5, 1}), MakeRank(1, 3, 2, {2, 2, 3, 2, 2, 99})};
  inputs[1].mask_kind = MaskKind::kTokens;
  inputs[1].mask = {1, 1, 0};
  return inputs;
}

TEST(A2, DispatchExpandIdxAndNoTriples) {
  const Config config = A2Config();
  const std::vector<RankInput> inputs = A2Inputs();
  const std::vector<DispatchOut> outs = Dispatch(config, inputs);
  ASSERT_EQ(outs.size(), 2u);
  EXPECT_EQ(outs[0].expand_idx, (std::vector<int32_t>{0, 0, 1, 0, 1, 2, 0, 3}));
  EXPECT_EQ(outs[1].expand_idx, (std::vector<int32_t>{0, 1, 0, 2}));  // entries past activeBs * K absent
  for (const DispatchOut& out : outs) {
    EXPECT_TRUE(out.assist_info.empty());
    EXPECT_TRUE(out.tp_recv_counts.empty());
  }
  ExpectRowsFrom(outs[0], 2, {{0, 0}, {0, 2}, {0, 0}, {0, 1}, {0, 2}, {0, 3}});
  EXPECT_EQ(outs[0].ep_recv_counts, (std::vector<int32_t>{2, 2, 6, 6}));
  EXPECT_EQ(outs[0].expert_token_nums, (std::vector<int64_t>{2, 4}));
  ExpectRowsFrom(outs[1], 2, {{1, 0}, {1, 0}, {1, 1}, {1, 1}});
  EXPECT_EQ(outs[1].ep_recv_counts, (std::vector<int32_t>{0, 3, 3, 4}));
  EXPECT_EQ(outs[1].expert_token_nums, (std::vector<int64_t>{3, 1}));

  // A3 on the same routing: the same rows and counts, with triples and no expandIdx.
  Config a3 = config;
  a3.a2 = false;
  const std::vector<DispatchOut> a3_outs = Dispatch(a3, inputs);
  for (int g = 0; g < 2; ++g) {
    EXPECT_TRUE(a3_outs[g].expand_idx.empty());
    EXPECT_EQ(a3_outs[g].assist_info.size(), 3 * static_cast<size_t>(outs[g].rows));
    EXPECT_EQ(a3_outs[g].rows, outs[g].rows);
    EXPECT_EQ(a3_outs[g].expand_x, outs[g].expand_x);
    EXPECT_EQ(a3_outs[g].ep_recv_counts, outs[g].ep_recv_counts);
    EXPECT_EQ(a3_outs[g].expert_token_nums, outs[g].expert_token_nums);
  }
}

// quant_mode 2 on A2 quantizes exactly as on A3 (same rows, same scales); still no triples.
TEST(A2, QuantizedDispatchMatchesA3Rows) {
  Config config = A2Config();
  config.quant_mode = 2;
  const std::vector<RankInput> inputs = A2Inputs();
  const std::vector<DispatchOut> outs = Dispatch(config, inputs);
  config.a2 = false;
  const std::vector<DispatchOut> a3_outs = Dispatch(config, inputs);
  for (int g = 0; g < 2; ++g) {
    EXPECT_TRUE(outs[g].assist_info.empty());
    EXPECT_FALSE(outs[g].expand_x_q.empty());
    EXPECT_EQ(outs[g].expand_x_q, a3_outs[g].expand_x_q);
    EXPECT_EQ(outs[g].dynamic_scales, a3_outs[g].dynamic_scales);
  }
  EXPECT_EQ(outs[0].expand_idx, (std::vector<int32_t>{0, 0, 1, 0, 1, 2, 0, 3}));
}

// Combine on A2 ignores shared_expert_x. E = 2, moe = 2 (e0 on rank 0, e1 on rank 1), zero = 1 (id 2),
// copy = 1 (id 3), K = 2, H = 2.
// r0 (bs 2): t0 ids {0, 1}, t1 ids {3, 2}.  r1 (bs 2, 1-D mask {1, 0}): t0 ids {1, 0}; t1 inactive.
// Rows: rank 0 (e0) (0,0,0) (1,0,1) = [1, 2], [3, 4]; rank 1 (e1) (0,0,1) (1,0,0) = [5, 6], [7, 8].
// w: r0 {0.5, 2 | 4, inf}, r1 {1, 0.25 | 9, 9}; oriX r0 t1 [1.5, -2]; shared_expert_x rows [0.25, 0.5].
//   r0 t0: [1, 2] * 0.5 + [5, 6] * 2 = [10.5, 13].   r0 t1: copy [1.5, -2] * 4 = [6, -8]; zero skipped.
//   r1 t0: [7, 8] * 1 + [3, 4] * 0.25 = [7.75, 9].   r1 t1: not written.
// A3 (same inputs) adds shared_expert_x: [10.75, 13.5], [6.25, -7.5], [8, 9.5].
TEST(A2, CombineIgnoresSharedExpertX) {
  Config config;
  config.a2 = true;
  config.moe_expert_num = 2;
  config.zero_expert_num = 1;
  config.copy_expert_num = 1;
  config.top_k = 2;
  config.hidden = 2;
  std::vector<RankInput> inputs = {MakeRank(0, 2, 2, {0, 1, 3, 2}), MakeRank(1, 2, 2, {1, 0, 0, 0})};
  inputs[1].mask_kind = MaskKind::kTokens;
  inputs[1].mask = {1, 0};
  const std::vector<DispatchOut> dispatched = Dispatch(config, inputs);
  EXPECT_EQ(dispatched[0].expand_idx, (std::vector<int32_t>{0, 0, 0, 0}));
  EXPECT_EQ(dispatched[1].expand_idx, (std::vector<int32_t>{0, 0}));
  ExpectRowsFrom(dispatched[0], 2, {{0, 0}, {1, 0}});
  ExpectRowsFrom(dispatched[1], 2, {{0, 0}, {1, 0}});
  EXPECT_TRUE(dispatched[0].assist_info.empty());

  const float inf = std::numeric_limits<float>::infinity();
  std::vector<CombineInput> combine(2);
  combine[0].expert_out = {Bf(1), Bf(2), Bf(3), Bf(4)};
  combine[1].expert_out = {Bf(5), Bf(6), Bf(7), Bf(8)};
  combine[0].expert_scales = {0.5f, 2.0f, 4.0f, inf};
  combine[1].expert_scales = {1.0f, 0.25f, 9.0f, 9.0f};
  combine[0].ori_x = {Bf(9), Bf(9), Bf(1.5f), Bf(-2)};
  combine[1].ori_x = {Bf(9), Bf(9), Bf(9), Bf(9)};
  for (CombineInput& input : combine) input.shared_expert_x = {Bf(0.25f), Bf(0.5f), Bf(0.25f), Bf(0.5f)};
  const std::vector<CombineOut> outs = Combine(config, inputs, combine);
  EXPECT_EQ(outs[0].written, (std::vector<uint8_t>{1, 1}));
  EXPECT_EQ(outs[0].x, (std::vector<uint16_t>{Bf(10.5f), Bf(13), Bf(6), Bf(-8)}));
  EXPECT_EQ(outs[1].written, (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(outs[1].x[0], Bf(7.75f));
  EXPECT_EQ(outs[1].x[1], Bf(9));

  // Without shared_expert_x: the same result.
  std::vector<CombineInput> no_shared = combine;
  for (CombineInput& input : no_shared) input.shared_expert_x.clear();
  const std::vector<CombineOut> no_shared_outs = Combine(config, inputs, no_shared);
  EXPECT_EQ(no_shared_outs[0].x, outs[0].x);
  EXPECT_EQ(no_shared_outs[1].x[0], outs[1].x[0]);
  EXPECT_EQ(no_shared_outs[1].x[1], outs[1].x[1]);

  // A3 adds it.
  config.a2 = false;
  const std::vector<CombineOut> a3_outs = Combine(config, inputs, combine);
  EXPECT_EQ(a3_outs[0].x, (std::vector<uint16_t>{Bf(10.75f), Bf(13.5f), Bf(6.25f), Bf(-7.5f)}));
  EXPECT_EQ(a3_outs[1].x[0], Bf(8));
  EXPECT_EQ(a3_outs[1].x[1], Bf(9.5f));
}

// A2 preconditions: no TP, no shared experts, no const experts, no 2-D mask, no CombineAddRmsNorm.
// shared_expert_num = 1 with shared_expert_rank_num = 0 is the op-def default meaning "none" and is accepted.
TEST(A2, PreconditionsChecked) {
  const std::vector<RankInput> inputs = {MakeRank(0, 1, 2, {0}), MakeRank(1, 1, 2, {1})};
  Config config;
  config.a2 = true;
  config.moe_expert_num = 2;
  config.hidden = 2;
  EXPECT_EQ(Dispatch(config, inputs)[0].expand_idx, (std::vector<int32_t>{0}));
  config.shared_expert_num = 1;  // S == 0: no shared experts
  EXPECT_EQ(Dispatch(config, inputs)[1].expand_idx, (std::vector<int32_t>{0}));

  Config tp = config;
  tp.tp_world_size = 2;
  EXPECT_THROW(Dispatch(tp, {inputs[0], inputs[1], inputs[0], inputs[1]}), std::invalid_argument);
  Config shared = config;
  shared.ep_world_size = 3;
  shared.shared_expert_rank_num = 1;
  EXPECT_THROW(Dispatch(shared, {inputs[0], inputs[1], inputs[1]}), std::invalid_argument);
  shared.a2 = false;  // the same job is fine on A3
  EXPECT_NO_THROW(Dispatch(shared, {inputs[0], inputs[1], inputs[1]}));
  Config with_const = config;
  with_const.const_expert_num = 1;
  EXPECT_THROW(Dispatch(with_const, inputs), std::invalid_argument);

  std::vector<RankInput> pair_masked = inputs;
  pair_masked[0].mask_kind = MaskKind::kPairs;
  pair_masked[0].mask = {1};
  EXPECT_THROW(Dispatch(config, pair_masked), std::invalid_argument);

  std::vector<CombineInput> combine(2);
  for (CombineInput& input : combine) {
    input.expert_out = {Bf(1), Bf(1)};
    input.expert_scales = {1.0f};
    input.residual_x = {Bf(0), Bf(0)};
    input.gamma = {Bf(1), Bf(1)};
  }
  EXPECT_EQ(Combine(config, inputs, combine)[0].x, (std::vector<uint16_t>{Bf(1), Bf(1)}));
  EXPECT_THROW(CombineAddRmsNorm(config, inputs, combine), std::invalid_argument);
}

}  // namespace
}  // namespace moe_ref
