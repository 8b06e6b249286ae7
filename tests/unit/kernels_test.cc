// Row kernel tests: exhaustive half conversions against an independent model, every ISA bit-identical to
// scalar, the scalar path equal to naive formulas written here from kernels.h / docs/semantics.md, and hand-worked
// rows.
//
// Cases:
//   HalfConversion.*  all 65536 bf16 / fp16 patterns; random floats (ties, subnormals, overflow, NaN)
//                     against a rounding model that searches the table of half values.
//   RowKernels.*      random rows of length 0..9000 at unaligned offsets, outputs poisoned (0xAB) and
//                     guarded: scalar == naive formula (NaNs compared as NaN), every vector ISA == scalar (bits).
//   HandWorked.*      DynamicQuantRow / CommQuantRow / CommDequantRow / ReduceSumTree / ReduceSumInOrder by hand.
// Seeds: fresh each run (support/test_seed.h); MOE_EP_TEST_SEED=<n> replays one (it is in every failure trace).
#include "kernels/kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "support/test_seed.h"

namespace moe_ep::kernels {
namespace {

using Rng = std::mt19937_64;
constexpr Half kTypes[] = {Half::kBf16, Half::kFp16};

// ---- independent model of the half formats: decode with ldexp, encode by searching the value table ------------

struct Format {
  int man_bits;
  int bias;
  uint16_t max_finite;  // its successor pattern is +inf
  double past_max;      // the value the successor would have with an unbounded exponent
};
Format Fmt(Half t) { return t == Half::kBf16 ? Format{7, 127, 0x7F7F, 0x1p128} : Format{10, 15, 0x7BFF, 65536.0}; }

bool IsNanHalf(Half t, uint16_t b) { return (b & 0x7FFF) > Fmt(t).max_finite + 1; }

double Decode(Half t, uint16_t b) {  // finite patterns only
  const Format f = Fmt(t);
  const int man = b & ((1 << f.man_bits) - 1);
  const int exp = (b & 0x7FFF) >> f.man_bits;
  const double mag = exp == 0 ? std::ldexp(man, 1 - f.bias - f.man_bits)
                              : std::ldexp(man + (1 << f.man_bits), exp - f.bias - f.man_bits);
  return (b & 0x8000) ? -mag : mag;
}

float RefHalfToFloat(Half t, uint16_t b) {
  const float sign = (b & 0x8000) ? -1.0f : 1.0f;
  if (IsNanHalf(t, b)) return std::copysign(std::numeric_limits<float>::quiet_NaN(), sign);
  if ((b & 0x7FFF) == Fmt(t).max_finite + 1) return sign * std::numeric_limits<float>::infinity();
  return static_cast<float>(Decode(t, b));
}

// Round to nearest, ties to the even pattern: find the largest pattern p with value <= |v| and compare 2|v|
// with value(p) + value(p + 1); both sides are exact in double.
uint16_t RefFloatToHalf(Half t, float v) {
  const Format f = Fmt(t);
  const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  if (std::isnan(v)) return sign | static_cast<uint16_t>(f.max_finite + 1) | (1 << (f.man_bits - 1));
  const double a = std::fabs(static_cast<double>(v));
  uint32_t lo = 0, hi = f.max_finite;
  while (lo < hi) {
    const uint32_t mid = (lo + hi + 1) / 2;
    if (Decode(t, static_cast<uint16_t>(mid)) <= a)
      lo = mid;
    else
      hi = mid - 1;
  }
  const double below = Decode(t, static_cast<uint16_t>(lo));
  if (below == a) return static_cast<uint16_t>(sign | lo);
  const double above = lo == f.max_finite ? f.past_max : Decode(t, static_cast<uint16_t>(lo + 1));
  const double twice = 2.0 * a, sum = below + above;
  const uint32_t r = twice < sum ? lo : twice > sum ? lo + 1 : (lo & 1) ? lo + 1 : lo;
  return static_cast<uint16_t>(sign | r);
}

// The int8 conversion (kernels.h): NaN -> 0, saturate to [-128, 127], round half to even.
int8_t RefInt8(float v) {
  if (std::isnan(v)) return 0;
  return static_cast<int8_t>(std::nearbyint(std::fmin(std::fmax(v, -128.0f), 127.0f)));
}

float RefFp16Round(float v) { return RefHalfToFloat(Half::kFp16, RefFloatToHalf(Half::kFp16, v)); }

// The sums of the chunks of 64 of v (the last padded with +0), each as the definition reads: replace the chunk by
// the sums of its adjacent pairs until one value is left.
std::vector<float> RefChunkSums(std::vector<float> v) {
  v.resize((v.size() + 63) / 64 * 64, 0.0f);
  std::vector<float> sums;
  for (size_t c = 0; c < v.size(); c += 64) {
    std::vector<float> level(v.begin() + c, v.begin() + c + 64);
    while (level.size() > 1) {
      std::vector<float> next;
      for (size_t i = 0; i < level.size(); i += 2) next.push_back(level[i] + level[i + 1]);
      level = next;
    }
    sums.push_back(level[0]);
  }
  return sums;
}
// ReduceSumTree: chunk sums of chunk sums, until one value is left.
float RefReduceSumTree(std::vector<float> v) {
  if (v.empty()) return 0.0f;
  do v = RefChunkSums(v);
  while (v.size() > 1);
  return v[0];
}
// ReduceSumInOrder: the chunk sums added one after another to 0.
float RefReduceSumInOrder(const std::vector<float>& v) {
  float sum = 0.0f;
  for (float chunk : RefChunkSums(v)) sum = sum + chunk;
  return sum;
}

// ---- random inputs --------------------------------------------------------------------------------------

// kClean: moderate values, zeros, subnormals. kWide: adds huge and tiny finite values. kSpecial: adds inf/NaN.
enum class Profile { kClean, kWide, kSpecial };

Profile RandomProfile(Rng& rng) {
  const int p = static_cast<int>(rng() % 10);
  return p < 5 ? Profile::kClean : p < 8 ? Profile::kWide : Profile::kSpecial;
}

// A pattern with `exp_bits` exponent bits drawn from the profile (shared by the half and float generators).
uint32_t RandomBits(Rng& rng, int man_bits, int bias, int exp_max, Profile profile) {
  const uint32_t sign = (rng() & 1) << (man_bits + std::bit_width(static_cast<uint32_t>(exp_max)));
  uint32_t man = static_cast<uint32_t>(rng()) & ((1u << man_bits) - 1);
  const int pick = static_cast<int>(rng() % 100);
  int exp = bias - 5 + static_cast<int>(rng() % 11);  // |x| in [2^-5, 2^6)
  if (pick < 8) return sign;                          // +-0
  if (pick < 14) exp = 0;                             // subnormal
  if (profile != Profile::kClean) {
    if (pick >= 86 && pick < 91) exp = exp_max - 1 - static_cast<int>(rng() % 3);  // huge
    if (pick >= 91 && pick < 95) exp = 1 + static_cast<int>(rng() % 3);            // tiny normal
    if (pick >= 95) exp = 1 + static_cast<int>(rng() % (exp_max - 1));             // any finite
  }
  if (profile == Profile::kSpecial && pick >= 97) {
    exp = exp_max;
    if (pick == 97)
      man = 0;
    else
      man |= 1u << (rng() % man_bits);  // inf, or NaN (quiet or signalling)
  }
  return sign | (static_cast<uint32_t>(exp) << man_bits) | man;
}

uint16_t RandomHalf(Rng& rng, Half t, Profile p) {
  return static_cast<uint16_t>(t == Half::kBf16 ? RandomBits(rng, 7, 127, 255, p) : RandomBits(rng, 10, 15, 31, p));
}
float RandomFloat(Rng& rng, Profile p) { return std::bit_cast<float>(RandomBits(rng, 23, 127, 255, p)); }

std::vector<uint16_t> HalfRow(Rng& rng, Half t, int64_t n, Profile p) {
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = RandomHalf(rng, t, p);
  return v;
}
std::vector<float> FloatRow(Rng& rng, int64_t n, Profile p) {
  std::vector<float> v(n);
  for (auto& x : v) x = RandomFloat(rng, p);
  return v;
}

int64_t RandomLength(Rng& rng) {
  static constexpr int64_t kEdges[] = {0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 7168, 7175};
  const int pick = static_cast<int>(rng() % 10);
  if (pick < 2) return kEdges[rng() % std::size(kEdges)];
  if (pick < 5) return 1 + static_cast<int64_t>(rng() % 140);
  return 1 + static_cast<int64_t>(rng() % 9000);
}

// ---- guarded buffers and output comparison ----------------------------------------------------------------

constexpr int64_t kGuard = 40;

// n elements at a random element offset (so pointers are unaligned), every other byte poisoned with 0xAB.
template <typename T>
class Guarded {
 public:
  Guarded(int64_t n, Rng& rng) : n_(n), offset_(static_cast<int64_t>(rng() % 17)), storage_(n + offset_ + kGuard) {
    std::memset(storage_.data(), 0xAB, storage_.size() * sizeof(T));
  }
  Guarded(const std::vector<T>& init, Rng& rng) : Guarded(static_cast<int64_t>(init.size()), rng) {
    if (!init.empty()) std::memcpy(data(), init.data(), init.size() * sizeof(T));
  }
  T* data() { return storage_.data() + offset_; }
  const T& operator[](int64_t i) const { return storage_[offset_ + i]; }
  bool GuardsIntact() const {
    const auto* bytes = reinterpret_cast<const unsigned char*>(storage_.data());
    for (size_t b = 0; b < storage_.size() * sizeof(T); ++b) {
      const bool inside = b >= offset_ * sizeof(T) && b < (offset_ + n_) * sizeof(T);
      if (!inside && bytes[b] != 0xAB) return false;
    }
    return true;
  }
  int64_t size() const { return n_; }

 private:
  int64_t n_, offset_;
  std::vector<T> storage_;
};

// Outputs flattened to bit patterns, with a NaN flag so the naive formulas can be compared NaN-for-NaN.
struct Outputs {
  std::vector<uint32_t> bits;
  std::vector<bool> nan;
  bool guards_ok = true;
  void Add(float v) { bits.push_back(std::bit_cast<uint32_t>(v)), nan.push_back(std::isnan(v)); }
  void Add(Half t, uint16_t h) { bits.push_back(h), nan.push_back(IsNanHalf(t, h)); }
  void Add(int8_t q) { bits.push_back(static_cast<uint8_t>(q)), nan.push_back(false); }
  void AddFloats(const Guarded<float>& g) {
    for (int64_t i = 0; i < g.size(); ++i) Add(g[i]);
    Guard(g);
  }
  void AddHalves(Half t, const Guarded<uint16_t>& g) {
    for (int64_t i = 0; i < g.size(); ++i) Add(t, g[i]);
    Guard(g);
  }
  void AddInt8s(const Guarded<int8_t>& g) {
    for (int64_t i = 0; i < g.size(); ++i) Add(g[i]);
    Guard(g);
  }
  template <typename T>
  void Guard(const Guarded<T>& g) {
    guards_ok = guards_ok && g.GuardsIntact();
  }
};

int64_t FirstMismatch(const Outputs& want, const Outputs& got, bool nan_equal) {
  if (want.bits.size() != got.bits.size()) return 0;
  for (size_t i = 0; i < want.bits.size(); ++i) {
    if (want.bits[i] != got.bits[i] && !(nan_equal && want.nan[i] && got.nan[i])) return static_cast<int64_t>(i);
  }
  return -1;
}

// The vector instruction sets this CPU runs; the first call says which it cannot (their paths go untested here).
std::vector<Isa> VectorIsas() {
  static const std::vector<Isa> isas = [] {
    std::vector<Isa> runnable;
    for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
      if (static_cast<int>(isa) <= static_cast<int>(DetectedIsa())) {
        runnable.push_back(isa);
      } else {
        std::printf("[kernels] this CPU lacks %s: its path is not tested here\n", IsaName(isa));
      }
    }
    return runnable;
  }();
  return isas;
}

// How the vector paths must match scalar on NaN outputs. Conversions keep payloads deterministically, so they
// must match exactly. When two NaNs meet in an add or multiply, x86 keeps the first operand's payload and the
// compiler may swap the operands of a commutative operation, so only "it is a NaN" is specified (kernels.h).
enum class NanPayload { kExact, kAnyWhenNansMeet };

// Runs `run` on the scalar path and checks it against the naive `want` (NaN == NaN), then on each vector ISA
// and checks it against scalar bit for bit. Every run must leave the guard bytes alone.
void ExpectKernel(const std::string& what, const Outputs& want, const std::function<Outputs()>& run,
                  NanPayload nan_payload = NanPayload::kExact) {
  SetActiveIsa(Isa::kScalar);
  const Outputs scalar = run();
  EXPECT_TRUE(scalar.guards_ok) << what << ": scalar wrote outside its outputs";
  if (const int64_t i = FirstMismatch(want, scalar, true); i >= 0) {
    ADD_FAILURE() << what << ": scalar differs from the naive formula at output " << i << " of " << want.bits.size()
                  << std::hex << ": got 0x" << (i < (int64_t)scalar.bits.size() ? scalar.bits[i] : 0) << " want 0x"
                  << want.bits[i];
  }
  for (Isa isa : VectorIsas()) {
    SetActiveIsa(isa);
    const Outputs got = run();
    EXPECT_TRUE(got.guards_ok) << what << ": " << IsaName(isa) << " wrote outside its outputs";
    if (const int64_t i = FirstMismatch(scalar, got, nan_payload == NanPayload::kAnyWhenNansMeet); i >= 0) {
      ADD_FAILURE() << what << ": " << IsaName(isa) << " differs from scalar at output " << i << std::hex << ": got 0x"
                    << (i < (int64_t)got.bits.size() ? got.bits[i] : 0) << " want 0x" << scalar.bits[i];
    }
  }
  SetActiveIsa(DetectedIsa());
}

// Each test draws from the run's base seed (support/test_seed.h: fresh, or MOE_EP_TEST_SEED) mixed with its
// name, and keeps the base seed in every failure message.
class Seeded : public ::testing::Test {
 protected:
  void SetUp() override {
    const uint64_t base = moe_ep::testing::BaseSeed();
    std::seed_seq mix{base & 0xFFFFFFFFu, base >> 32,
                      std::hash<std::string>{}(::testing::UnitTest::GetInstance()->current_test_info()->name())};
    rng_.seed(mix);
    RecordProperty("seed", std::to_string(base));
    trace_ = std::make_unique<::testing::ScopedTrace>(__FILE__, __LINE__, "MOE_EP_TEST_SEED=" + std::to_string(base));
  }
  void TearDown() override { SetActiveIsa(DetectedIsa()); }
  Rng rng_;
  std::unique_ptr<::testing::ScopedTrace> trace_;
};

std::string Name(const char* kernel, Half t, int64_t n) {
  return std::string(kernel) + (t == Half::kBf16 ? " bf16" : " fp16") + " n=" + std::to_string(n);
}

// Runs `body` once on every ISA this CPU has, scalar included.
void ForEachIsa(const std::function<void()>& body) {
  std::vector<Isa> isas = VectorIsas();
  isas.insert(isas.begin(), Isa::kScalar);
  for (Isa isa : isas) {
    SetActiveIsa(isa);
    SCOPED_TRACE(IsaName(isa));
    body();
  }
  SetActiveIsa(DetectedIsa());
}

std::vector<uint16_t> Halves(Half t, const std::vector<float>& values) {
  std::vector<uint16_t> out;
  for (float v : values) out.push_back(RefFloatToHalf(t, v));
  return out;
}

// ---- HalfConversion ---------------------------------------------------------------------------------------

TEST(HalfConversion, EveryPatternWidensExactlyAndRoundTrips) {
  for (Half t : kTypes) {
    const uint16_t quiet = t == Half::kBf16 ? 0x0040 : 0x0200;
    for (uint32_t b = 0; b < 65536; ++b) {
      const auto h = static_cast<uint16_t>(b);
      const float f = HalfToFloat(t, h);
      SCOPED_TRACE(Name("pattern", t, b));
      if (IsNanHalf(t, h)) {
        ASSERT_TRUE(std::isnan(f));
        ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0);
        ASSERT_EQ(FloatToHalf(t, f), h | quiet) << "a NaN keeps its sign and payload and becomes quiet";
      } else {
        ASSERT_EQ(std::bit_cast<uint32_t>(f), std::bit_cast<uint32_t>(RefHalfToFloat(t, h)));
        ASSERT_EQ(FloatToHalf(t, f), h);
      }
    }
  }
}

TEST(HalfConversion, EveryPatternIsTheSameOnEveryIsa) {
  std::vector<uint16_t> all(65536);
  for (uint32_t b = 0; b < 65536; ++b) all[b] = static_cast<uint16_t>(b);
  for (Half t : kTypes) {
    std::vector<float> want_f(65536);
    std::vector<uint16_t> want_h(65536);
    for (uint32_t b = 0; b < 65536; ++b) want_f[b] = HalfToFloat(t, all[b]), want_h[b] = FloatToHalf(t, want_f[b]);
    ForEachIsa([&] {
      std::vector<float> f(65536);
      std::vector<uint16_t> h(65536);
      HalfRowToFloat(t, all.data(), f.data(), 65536);
      FloatRowToHalf(t, f.data(), h.data(), 65536);
      EXPECT_EQ(std::memcmp(f.data(), want_f.data(), f.size() * sizeof(float)), 0) << Name("widen", t, 65536);
      EXPECT_EQ(h, want_h) << Name("narrow", t, 65536);
    });
  }
}

TEST(HalfConversion, HandPickedRoundings) {
  using std::bit_cast;
  EXPECT_EQ(FloatToHalf(Half::kFp16, 65504.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(Half::kFp16, std::nextafter(65520.0f, 0.0f)), 0x7BFF);
  EXPECT_EQ(FloatToHalf(Half::kFp16, 65520.0f), 0x7C00);  // tie between odd 65504 and 65536: inf
  EXPECT_EQ(FloatToHalf(Half::kFp16, -1e30f), 0xFC00);
  EXPECT_EQ(FloatToHalf(Half::kFp16, 0x1p-24f), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToHalf(Half::kFp16, 0x1p-25f), 0x0000);  // half of it: tie, 0 is even
  EXPECT_EQ(FloatToHalf(Half::kFp16, 0x1.000002p-25f), 0x0001);
  EXPECT_EQ(FloatToHalf(Half::kFp16, 0x1.8p-24f), 0x0002);    // 1.5 units: tie, 2 is even
  EXPECT_EQ(FloatToHalf(Half::kFp16, 0x1.ffcp-15f), 0x0400);  // 1023.5 units: tie, the smallest normal
  EXPECT_EQ(FloatToHalf(Half::kFp16, -0x1p-140f), 0x8000);    // fp32 subnormal -> -0
  EXPECT_EQ(FloatToHalf(Half::kBf16, 1.00390625f), 0x3F80);   // 1 + 2^-8: tie, 1.0 is even
  EXPECT_EQ(FloatToHalf(Half::kBf16, 1.01171875f), 0x3F82);   // 1 + 3 * 2^-8: tie, 1 + 2^-6 is even
  EXPECT_EQ(FloatToHalf(Half::kBf16, std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(FloatToHalf(Half::kBf16, bit_cast<float>(0x7F800001u)), 0x7FC0);  // payload below bit 16: stays NaN
  EXPECT_EQ(FloatToHalf(Half::kBf16, bit_cast<float>(0xFF800001u)), 0xFFC0);
  EXPECT_EQ(FloatToHalf(Half::kFp16, bit_cast<float>(0x7F800001u)), 0x7E00);
  EXPECT_EQ(HalfToFloat(Half::kFp16, 0x0001), 0x1p-24f);
  EXPECT_EQ(HalfToFloat(Half::kFp16, 0x7BFF), 65504.0f);
  EXPECT_EQ(HalfToFloat(Half::kBf16, 0x0001), 0x1p-133f);
}

TEST_F(Seeded, FloatToHalfMatchesTheRoundingModel) {
  for (Half t : kTypes) {
    const Format fmt = Fmt(t);
    for (int i = 0; i < 200000; ++i) {
      float v = 0.0f;
      const auto p = static_cast<uint16_t>(rng_() % fmt.max_finite);
      switch (rng_() % 6) {
        case 0:  // any pattern at all
          v = std::bit_cast<float>(static_cast<uint32_t>(rng_()));
          break;
        case 1:  // a tie between two neighbouring halves (exact in fp32), or one fp32 step either side
          v = static_cast<float>((Decode(t, p) + Decode(t, static_cast<uint16_t>(p + 1))) / 2);
          v = std::nextafter(v, (rng_() & 1) ? 0.0f : INFINITY);
          if (rng_() % 3 == 0) v = static_cast<float>((Decode(t, p) + Decode(t, static_cast<uint16_t>(p + 1))) / 2);
          break;
        case 2:  // around the overflow threshold
          v = static_cast<float>((Decode(t, fmt.max_finite) + fmt.past_max) / 2);
          for (int k = static_cast<int>(rng_() % 7); k > 0; --k) v = std::nextafter(v, (rng_() & 1) ? 0.0f : INFINITY);
          break;
        case 3:  // the fp16 subnormal range and just above
          v = std::bit_cast<float>(static_cast<uint32_t>((100 + rng_() % 15) << 23 | (rng_() & 0x7FFFFF)));
          break;
        case 4:  // fp32 subnormals
          v = std::bit_cast<float>(static_cast<uint32_t>(rng_() & 0x7FFFFF));
          break;
        default:  // inf and NaN with any payload
          v = std::bit_cast<float>(static_cast<uint32_t>(0x7F800000u | ((rng_() & 3) == 0 ? 0 : rng_() & 0x7FFFFF)));
          break;
      }
      if (rng_() & 1) v = -v;
      const uint16_t got = FloatToHalf(t, v);
      if (std::isnan(v)) {
        ASSERT_TRUE(IsNanHalf(t, got) && (got & (1 << (fmt.man_bits - 1))) && (got >> 15) == std::signbit(v))
            << Name("NaN", t, 0) << std::hex << " bits 0x" << std::bit_cast<uint32_t>(v) << " -> 0x" << got;
      } else {
        ASSERT_EQ(got, RefFloatToHalf(t, v)) << Name("float", t, 0) << " " << std::hexfloat << v;
      }
    }
  }
}

// ---- RowKernels: random rows, scalar == naive formula, vector == scalar -------------------------------------

constexpr int kTrials = 24;

TEST_F(Seeded, ConversionRows) {
  for (int trial = 0; trial < kTrials && !HasFailure(); ++trial) {
    for (Half t : kTypes) {
      const int64_t n = RandomLength(rng_);
      const Profile p = RandomProfile(rng_);
      const auto x = HalfRow(rng_, t, n, p);
      Outputs want_f;
      for (uint16_t h : x) want_f.Add(RefHalfToFloat(t, h));
      ExpectKernel(Name("HalfRowToFloat", t, n), want_f, [&] {
        Guarded<uint16_t> in(x, rng_);
        Guarded<float> out(n, rng_);
        HalfRowToFloat(t, in.data(), out.data(), n);
        Outputs o;
        o.AddFloats(out);
        return o;
      });
      auto f = FloatRow(rng_, n, p);
      for (float& v : f) {  // a quarter of them exact ties of the target format
        const uint32_t tie_mask = t == Half::kBf16 ? 0xFFFF : 0x1FFF;
        if (rng_() % 4 == 0) v = std::bit_cast<float>((std::bit_cast<uint32_t>(v) & ~tie_mask) | (tie_mask + 1) / 2);
      }
      Outputs want_h;
      for (float v : f) want_h.Add(t, RefFloatToHalf(t, v));
      ExpectKernel(Name("FloatRowToHalf", t, n), want_h, [&] {
        Guarded<float> in(f, rng_);
        Guarded<uint16_t> out(n, rng_);
        FloatRowToHalf(t, in.data(), out.data(), n);
        Outputs o;
        o.AddHalves(t, out);
        return o;
      });
    }
  }
}

TEST_F(Seeded, DynamicQuantRows) {
  for (int trial = 0; trial < kTrials && !HasFailure(); ++trial) {
    for (Half t : kTypes) {
      const int64_t n = RandomLength(rng_);
      const Profile p = RandomProfile(rng_);
      const auto x = HalfRow(rng_, t, n, p);
      const bool with_smooth = rng_() & 1;
      const auto smooth = FloatRow(rng_, n, p);
      // Naive docs/semantics.md 2.4: f = x (* smooth); amax over the non-NaN |f|; ds = 127 / amax; q = int8(f * ds).
      std::vector<float> f(n);
      float amax = 0.0f;
      for (int64_t i = 0; i < n; ++i) {
        f[i] = with_smooth ? RefHalfToFloat(t, x[i]) * smooth[i] : RefHalfToFloat(t, x[i]);
        if (!std::isnan(f[i])) amax = std::fmax(amax, std::fabs(f[i]));
      }
      const float ds = 127.0f / amax;
      Outputs want;
      for (int64_t i = 0; i < n; ++i) want.Add(RefInt8(f[i] * ds));
      want.Add(1.0f / ds);
      ExpectKernel(Name(with_smooth ? "DynamicQuantRow+smooth" : "DynamicQuantRow", t, n), want, [&] {
        Guarded<uint16_t> in(x, rng_);
        Guarded<float> sm(smooth, rng_);
        Guarded<int8_t> q(n, rng_);
        const float scale = DynamicQuantRow(t, in.data(), with_smooth ? sm.data() : nullptr, n, q.data());
        Outputs o;
        o.AddInt8s(q);
        o.Add(scale);
        return o;
      });
    }
  }
}

TEST_F(Seeded, CommQuantRows) {
  for (int trial = 0; trial < kTrials && !HasFailure(); ++trial) {
    for (Half t : kTypes) {
      const int64_t n = RandomLength(rng_);
      const Profile p = RandomProfile(rng_);
      const auto x = HalfRow(rng_, t, n, p);
      // Naive docs/semantics.md 3.3: per block of 8, s = amax * (1/127); q = int8(rint(fp16(x / s))); s == 0 -> q = 0.
      Outputs want, want_scales;
      for (int64_t b = 0; b * 8 < n; ++b) {
        const int64_t end = std::min(n, b * 8 + 8);
        float amax = 0.0f;
        for (int64_t i = b * 8; i < end; ++i) {
          if (!IsNanHalf(t, x[i])) amax = std::fmax(amax, std::fabs(RefHalfToFloat(t, x[i])));
        }
        const float s = amax * (1.0f / 127.0f);
        want_scales.Add(t, RefFloatToHalf(t, s));
        for (int64_t i = b * 8; i < end; ++i) {
          want.Add(s == 0.0f ? int8_t{0} : RefInt8(RefFp16Round(RefHalfToFloat(t, x[i]) / s)));
        }
      }
      want.bits.insert(want.bits.end(), want_scales.bits.begin(), want_scales.bits.end());
      want.nan.insert(want.nan.end(), want_scales.nan.begin(), want_scales.nan.end());
      ExpectKernel(Name("CommQuantRow", t, n), want, [&] {
        Guarded<uint16_t> in(x, rng_);
        Guarded<int8_t> q(n, rng_);
        Guarded<uint16_t> scales(CommQuantScaleCount(n), rng_);
        CommQuantRow(t, in.data(), n, q.data(), scales.data());
        Outputs o;
        o.AddInt8s(q);
        o.AddHalves(t, scales);
        return o;
      });

      // Dequantize random int8 values with random scales (any profile, so NaN / inf scales too).
      std::vector<int8_t> qv(n);
      for (auto& v : qv) v = static_cast<int8_t>(rng_());
      const auto sc = HalfRow(rng_, t, CommQuantScaleCount(n), p);
      Outputs want_v;
      for (int64_t i = 0; i < n; ++i) {
        want_v.Add(RefHalfToFloat(t, RefFloatToHalf(t, static_cast<float>(qv[i]) * RefHalfToFloat(t, sc[i / 8]))));
      }
      ExpectKernel(Name("CommDequantRow", t, n), want_v, [&] {
        Guarded<int8_t> q(qv, rng_);
        Guarded<uint16_t> scales(sc, rng_);
        Guarded<float> v(n, rng_);
        CommDequantRow(t, q.data(), scales.data(), n, v.data());
        Outputs o;
        o.AddFloats(v);
        return o;
      });
    }
  }
}

TEST_F(Seeded, AccumulateAndAddRows) {
  for (int trial = 0; trial < kTrials && !HasFailure(); ++trial) {
    for (Half t : kTypes) {
      const int64_t n = RandomLength(rng_);
      const Profile p = RandomProfile(rng_);
      const auto row = HalfRow(rng_, t, n, p);
      const auto row2 = HalfRow(rng_, t, n, p);
      const auto v = FloatRow(rng_, n, p);
      const auto acc0 = FloatRow(rng_, n, p);
      const float w = RandomFloat(rng_, p);
      // docs/semantics.md 3.2: acc + (x * w), two roundings: the product is a separate statement.
      Outputs want_wh, want_wf, want_h, want_f, want_add;
      for (int64_t i = 0; i < n; ++i) {
        const float xh = RefHalfToFloat(t, row[i]);
        const float ph = xh * w, pf = v[i] * w;
        want_wh.Add(acc0[i] + ph);
        want_wf.Add(acc0[i] + pf);
        want_h.Add(acc0[i] + xh);
        want_f.Add(acc0[i] + v[i]);
        want_add.Add(t, RefFloatToHalf(t, xh + RefHalfToFloat(t, row2[i])));
      }
      auto acc_kernel = [&](const std::function<void(const uint16_t*, const float*, float*)>& call) {
        return [&, call] {
          Guarded<uint16_t> r(row, rng_);
          Guarded<float> src(v, rng_);
          Guarded<float> acc(acc0, rng_);
          call(r.data(), src.data(), acc.data());
          Outputs o;
          o.AddFloats(acc);
          return o;
        };
      };
      ExpectKernel(
          Name("AccumulateWeightedHalf", t, n), want_wh,
          acc_kernel([&](const uint16_t* r, const float*, float* a) { AccumulateWeightedHalf(t, r, w, n, a); }),
          NanPayload::kAnyWhenNansMeet);
      ExpectKernel(Name("AccumulateWeightedFloat", t, n), want_wf,
                   acc_kernel([&](const uint16_t*, const float* s, float* a) { AccumulateWeightedFloat(s, w, n, a); }),
                   NanPayload::kAnyWhenNansMeet);
      ExpectKernel(Name("AccumulateHalf", t, n), want_h,
                   acc_kernel([&](const uint16_t* r, const float*, float* a) { AccumulateHalf(t, r, n, a); }),
                   NanPayload::kAnyWhenNansMeet);
      ExpectKernel(Name("AccumulateFloat", t, n), want_f,
                   acc_kernel([&](const uint16_t*, const float* s, float* a) { AccumulateFloat(s, n, a); }),
                   NanPayload::kAnyWhenNansMeet);
      ExpectKernel(
          Name("AddHalfRows", t, n), want_add,
          [&] {
            Guarded<uint16_t> a(row, rng_), b(row2, rng_), out(n, rng_);
            AddHalfRows(t, a.data(), b.data(), n, out.data());
            Outputs o;
            o.AddHalves(t, out);
            return o;
          },
          NanPayload::kAnyWhenNansMeet);
    }
  }
}

// The one-pass token sum: 0..9 rows, each weighted or not, summed from +0 in order with every multiply and add
// rounded to fp32, then rounded to the row type (docs/semantics.md 3.2).
TEST_F(Seeded, SumHalfRows) {
  for (int trial = 0; trial < kTrials && !HasFailure(); ++trial) {
    for (Half t : kTypes) {
      const int64_t n = RandomLength(rng_);
      const Profile p = RandomProfile(rng_);
      const int64_t count = static_cast<int64_t>(rng_() % 10);
      std::vector<std::vector<uint16_t>> rows;
      std::vector<float> weights;
      std::vector<uint8_t> weighted;
      for (int64_t j = 0; j < count; ++j) {
        rows.push_back(HalfRow(rng_, t, n, p));
        weights.push_back(RandomFloat(rng_, p));
        weighted.push_back(rng_() % 3 != 0 ? 1 : 0);
      }
      Outputs want;
      for (int64_t i = 0; i < n; ++i) {
        float sum = 0.0f;
        for (int64_t j = 0; j < count; ++j) {
          const float x = RefHalfToFloat(t, rows[j][i]);
          const float product = x * weights[j];
          sum = sum + (weighted[j] ? product : x);
        }
        want.Add(t, RefFloatToHalf(t, sum));
      }
      ExpectKernel(
          Name("SumHalfRows", t, n) + " rows=" + std::to_string(count), want,
          [&] {
            std::vector<std::unique_ptr<Guarded<uint16_t>>> guarded;
            std::vector<const uint16_t*> pointers;
            for (const auto& row : rows) {
              guarded.push_back(std::make_unique<Guarded<uint16_t>>(row, rng_));
              pointers.push_back(guarded.back()->data());
            }
            Guarded<uint16_t> out(n, rng_);
            SumHalfRows(t, pointers.data(), weights.data(), weighted.data(), count, n, out.data());
            Outputs o;
            o.AddHalves(t, out);
            return o;
          },
          NanPayload::kAnyWhenNansMeet);
    }
  }
}

TEST_F(Seeded, RmsNormAndReduceRows) {
  constexpr Half kB = Half::kBf16;
  for (int trial = 0; trial < 2 * kTrials && !HasFailure(); ++trial) {
    const int64_t n = trial == 0 ? 64 * 64 * 64 + 1 : RandomLength(rng_);  // trial 0 needs four tree levels
    const Profile p = RandomProfile(rng_);
    const auto acc = FloatRow(rng_, n, p);
    const auto residual = HalfRow(rng_, kB, n, p);
    const auto gamma = HalfRow(rng_, kB, n, p);
    const float eps = (rng_() & 1) ? 1e-6f : RandomFloat(rng_, Profile::kClean);
    // docs/semantics.md 3.5, straight from the formula.
    std::vector<float> xs(n), sq(n);
    Outputs want;
    for (int64_t i = 0; i < n; ++i) {
      xs[i] = acc[i] + RefHalfToFloat(kB, residual[i]);
      const float square = xs[i] * xs[i];
      sq[i] = square * (1.0f / static_cast<float>(n));
      want.Add(kB, RefFloatToHalf(kB, xs[i]));
    }
    const float rstd = 1.0f / std::sqrt(RefReduceSumInOrder(sq) + eps);
    for (int64_t i = 0; i < n; ++i) {
      const float normed = RefHalfToFloat(kB, RefFloatToHalf(kB, xs[i] * rstd));
      want.Add(kB, RefFloatToHalf(kB, normed * RefHalfToFloat(kB, gamma[i])));
    }
    want.Add(rstd);
    ExpectKernel(
        Name("AddRmsNormRow", kB, n), want,
        [&] {
          Guarded<float> a(acc, rng_), scratch(n, rng_);
          Guarded<uint16_t> r(residual, rng_), g(gamma, rng_), x_out(n, rng_), y_out(n, rng_);
          const float got =
              AddRmsNormRow(a.data(), r.data(), g.data(), n, eps, x_out.data(), y_out.data(), scratch.data());
          Outputs o;
          o.AddHalves(kB, x_out);
          o.AddHalves(kB, y_out);
          o.Add(got);
          o.Guard(scratch);
          return o;
        },
        NanPayload::kAnyWhenNansMeet);
    Outputs want_sums;
    want_sums.Add(RefReduceSumTree(acc));
    want_sums.Add(RefReduceSumInOrder(acc));
    ExpectKernel(
        Name("ReduceSumTree+InOrder", kB, n), want_sums,
        [&] {
          Guarded<float> in(acc, rng_);
          Outputs o;
          o.Add(ReduceSumTree(in.data(), n));
          o.Add(ReduceSumInOrder(in.data(), n));
          return o;
        },
        NanPayload::kAnyWhenNansMeet);
  }
}

// ---- HandWorked: expected values derived by hand (see the comments) ---------------------------------------

TEST(HandWorked, DynamicQuantAllZeroRowGivesZeroQAndZeroScale) {
  for (Half t : kTypes) {
    std::vector<uint16_t> x(37);
    for (size_t i = 0; i < x.size(); ++i) x[i] = (i % 3 == 0) ? 0x8000 : 0x0000;  // +0 and -0
    ForEachIsa([&] {
      std::vector<int8_t> q(x.size(), 99);
      const float scale = DynamicQuantRow(t, x.data(), nullptr, static_cast<int64_t>(x.size()), q.data());
      EXPECT_EQ(std::bit_cast<uint32_t>(scale), 0u) << "1 / (127 / 0) = +0";
      EXPECT_EQ(q, std::vector<int8_t>(x.size(), 0));
    });
  }
}

TEST(HandWorked, DynamicQuantTinyAmaxSaturates) {
  // bf16 {2^-133, -2^-132, 0, 2^-130}: amax = 2^-130, 127 / amax overflows to inf, so f * ds is +-inf for the
  // nonzero elements (saturating to 127 / -128) and 0 * inf = NaN for the zero (-> 0); the scale is 1/inf = 0.
  // Repeated to 20 elements (and 4 alone): every instruction set's vector body and its tail saturate.
  const std::vector<uint16_t> pattern = {0x0001, 0x8002, 0x0000, 0x0008};
  const std::vector<int8_t> q_pattern = {127, -128, 0, 127};
  for (const size_t n : {size_t{4}, size_t{20}}) {
    std::vector<uint16_t> x;
    std::vector<int8_t> want;
    for (size_t i = 0; i < n; ++i) x.push_back(pattern[i % 4]), want.push_back(q_pattern[i % 4]);
    ForEachIsa([&] {
      std::vector<int8_t> q(n, 99);  // poison: the expected 0 must be written
      const auto h = static_cast<int64_t>(n);
      EXPECT_EQ(std::bit_cast<uint32_t>(DynamicQuantRow(Half::kBf16, x.data(), nullptr, h, q.data())), 0u);
      EXPECT_EQ(q, want) << n << " elements";
    });
  }
}

// Quantizes `pattern` three times over (24 elements: a vector body plus a tail on every instruction set) in both
// half types on every instruction set: q is `q_pattern` three times over, the scale's bits `scale_bits`.
void ExpectDynamicQuantRow(const std::vector<float>& pattern, const std::vector<int8_t>& q_pattern,
                           uint32_t scale_bits) {
  std::vector<float> row;
  std::vector<int8_t> want;
  for (int rep = 0; rep < 3; ++rep) {
    row.insert(row.end(), pattern.begin(), pattern.end());
    want.insert(want.end(), q_pattern.begin(), q_pattern.end());
  }
  for (Half t : kTypes) {
    const auto x = Halves(t, row);
    ForEachIsa([&] {
      std::vector<int8_t> q(x.size(), 99);
      const float scale = DynamicQuantRow(t, x.data(), nullptr, static_cast<int64_t>(x.size()), q.data());
      EXPECT_EQ(std::bit_cast<uint32_t>(scale), scale_bits) << Name("DynamicQuantRow", t, 24);
      EXPECT_EQ(q, want) << Name("DynamicQuantRow", t, 24);
    });
  }
}

TEST(HandWorked, DynamicQuantRowByHand) {
  // amax = 2, so ds = 127 / 2 = 63.5 exactly and f * ds is exact: 63.5 (tie -> 64), -127, 31.75, 15.875,
  // -47.625, 0, 95.25, 7.9375. The scale 1 / 63.5 = 2/127 rounds to 0x3C810204.
  ExpectDynamicQuantRow({1, -2, 0.5, 0.25, -0.75, 0, 1.5, 0.125}, {64, -127, 32, 16, -48, 0, 95, 8}, 0x3C810204u);
  for (Half t : kTypes) {
    // With smooth scales: f = {1*2, 2*0.5, -3*0.25} = {2, 1, -0.75}: the same ds, q = {127, 64, -48}.
    const auto xs = Halves(t, {1, 2, -3});
    const std::vector<float> smooth = {2, 0.5, 0.25};
    ForEachIsa([&] {
      std::vector<int8_t> q(3, 99);
      EXPECT_EQ(std::bit_cast<uint32_t>(DynamicQuantRow(t, xs.data(), smooth.data(), 3, q.data())), 0x3C810204u);
      EXPECT_EQ(q, (std::vector<int8_t>{127, 64, -48}));
    });
  }
}

TEST(HandWorked, DynamicQuantRowRoundsTiesToEvenInEveryVectorBody) {
  // amax = 127, so ds = 1 exactly and q = rint(f), the scale 1: ties of both signs go to even (-0.5, 2.5, -2.5, -126.5
  // and 0.5 would round away from zero to -1, 3, -3, -127 and 1; 3.5 and -1.5 give 4 and -2 either way). Every
  // instruction set's vector body has them all.
  ExpectDynamicQuantRow({127, -0.5, 2.5, -2.5, 3.5, -126.5, 0.5, -1.5}, {127, 0, 2, -2, 4, -126, 0, -2}, 0x3F800000u);
}

TEST(HandWorked, CommQuantZeroBlockDoubleRoundingAndPaddedTail) {
  // Block 0: all zeros -> s = 0, scale 0, q = 0.
  // Block 1: amax 1.0703125, s = 1.0703125 * fp32(1/127) = 0x3C0A1428 (bf16 0x3C0A, fp16 0x2051).
  //   1.015625 / s = 120.5109... -> fp16 120.5 -> rint 120 (a single rounding would give 121).
  // Block 2 (4 elements, zero padded): amax 127, s = 127 * fp32(1/127) = 1.0 exactly;
  //   -63.5 -> -64 and 0.5 -> 0 (ties to even).
  const std::vector<float> row = {0,         -0.0f, 0, 0, -0.0f, 0, 0,   0,     1.0703125, 1.015625,
                                  -1.015625, 0,     0, 0, 0,     0, 127, -63.5, 1,         0.5};
  const std::vector<int8_t> want_q = {0, 0, 0, 0, 0, 0, 0, 0, 127, 120, -120, 0, 0, 0, 0, 0, 127, -64, 1, 0};
  for (Half t : kTypes) {
    const auto x = Halves(t, row);
    const std::vector<uint16_t> want_scales = t == Half::kBf16 ? std::vector<uint16_t>{0x0000, 0x3C0A, 0x3F80}
                                                               : std::vector<uint16_t>{0x0000, 0x2051, 0x3C00};
    ForEachIsa([&] {
      std::vector<int8_t> q(20, 99);
      std::vector<uint16_t> scales(3, 0xABAB);
      CommQuantRow(t, x.data(), 20, q.data(), scales.data());
      EXPECT_EQ(q, want_q);
      EXPECT_EQ(scales, want_scales);
    });
  }
}

TEST(HandWorked, CommDequantByHand) {
  // bf16 scales 1.0 and 0.0084228515625 (0x3C0A). 120 * 0.0084228515625 = 1.0107421875 rounds to bf16
  // 1.0078125; 127 * it = 1.0697021484375 rounds to 1.0703125; -128 * it = -1.078125 is exact.
  const std::vector<int8_t> q = {127, -64, 1, 0, -128, 5, 0, 0, 120, -120, 127, 1, -128, 0, 0, 0, 3};
  const std::vector<uint16_t> scales = {0x3F80, 0x3C0A, 0x3F80};
  const std::vector<float> want = {
      127, -64, 1, 0, -128, 5, 0, 0, 1.0078125, -1.0078125, 1.0703125, 0.0084228515625, -1.078125, 0, 0, 0, 3};
  ForEachIsa([&] {
    std::vector<float> v(q.size(), 99.0f);  // poison: the expected zeros must be written
    CommDequantRow(Half::kBf16, q.data(), scales.data(), static_cast<int64_t>(q.size()), v.data());
    EXPECT_EQ(v, want);
  });
}

TEST(HandWorked, ReduceSumOrders) {
  // B = 2^24: fp32 spacing at B is 2, so B + 1 is a tie that rounds to B, and the result shows exactly which
  // partial sums meet B. Worked by hand from adjacent pairs within a chunk (c[i] = c[2i] + c[2i+1]), the chunk
  // sums then reduced the same way (Tree) or added in order from 0 (InOrder).
  // v = {B, 1, 1, ...} of length n: the two orders agree on these.
  //   n = 1:    B + padding zeros                                             -> B
  //   n = 64:   B+1 -> B; B+2; B+2+4 = B+6; B+14; B+30; B+30+32               -> B+62
  //   n = 63:   the pair (c62, c63 = padding) gives 1, so the last sums of each level are 1, 3, 7, 15, 31:
  //             B, B+2, B+6, B+14, B+30, then B+30+31 = B+61 -> tie, rounds to even B+60
  //   n = 65:   chunk sums {B+62, 1}: B+63 -> tie, rounds to even B+64
  //   n = 200:  chunk sums {B+62, 64, 64, 8}: Tree: B+126, 72, then B+198; InOrder: B+126, B+190, B+198
  //   n = 4097: 65 chunk sums {B+62, 64 x 63, 1}: Tree: the first 64 reduce to B+62+64+128+...+2048 = B+4094,
  //             then {B+4094, 1}; InOrder: B+62+63*64 = B+4094, then + 1: B+4095 -> tie, rounds to B+4096
  const float b = 0x1p24f;
  const std::vector<std::pair<int64_t, float>> cases = {{1, b},       {63, b + 60},   {64, b + 62},
                                                        {65, b + 64}, {200, b + 198}, {4097, b + 4096}};
  // Where the orders part:
  //   pairs = {B, 0, 1, 1} (n = 4): adjacent pairs give B, 2, then B+2; halving (c[i] += c[i+w]) would meet
  //           each 1 with B alone and give B.
  //   chunks = v[0] = B and v[64] = v[128] = v[192] = 1 (n = 193), chunk sums {B, 1, 1, 1}: Tree pairs them,
  //           (B+1 -> B) + (1+1) = B+2; InOrder adds each 1 to B alone: B.
  std::vector<float> pairs = {b, 0.0f, 1.0f, 1.0f}, chunks(193, 0.0f);
  chunks[0] = b, chunks[64] = chunks[128] = chunks[192] = 1.0f;
  ForEachIsa([&] {
    for (const auto& [n, want] : cases) {
      std::vector<float> v(n, 1.0f);
      v[0] = b;
      EXPECT_EQ(ReduceSumTree(v.data(), n), want) << "Tree n=" << n;
      EXPECT_EQ(ReduceSumInOrder(v.data(), n), want) << "InOrder n=" << n;
    }
    EXPECT_EQ(ReduceSumTree(pairs.data(), 4), b + 2);
    EXPECT_EQ(ReduceSumInOrder(pairs.data(), 4), b + 2);
    EXPECT_EQ(ReduceSumTree(chunks.data(), 193), b + 2);
    EXPECT_EQ(ReduceSumInOrder(chunks.data(), 193), b);
    const float minus_zero = -0.0f;
    EXPECT_EQ(std::bit_cast<uint32_t>(ReduceSumTree(&minus_zero, 1)), 0u) << "-0 + padding zeros = +0";
    EXPECT_EQ(std::bit_cast<uint32_t>(ReduceSumInOrder(&minus_zero, 1)), 0u);
    EXPECT_EQ(std::bit_cast<uint32_t>(ReduceSumTree(nullptr, 0)), 0u);
    EXPECT_EQ(std::bit_cast<uint32_t>(ReduceSumInOrder(nullptr, 0)), 0u);
  });
}

TEST(HandWorked, SoftmaxOfTwo) {
  // Equal scores share evenly (exp(0) = 1 each); a gap of 256 or more saturates (exp(-256) rounds to 0 in fp32), in
  // either order, and -inf against a finite score; a NaN score, or an infinite maximum (inf - inf), make both
  // coefficients NaN, as the kernel's max, subtraction and exp do.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(SoftmaxOfTwo(3.0f, 3.0f), std::make_pair(0.5f, 0.5f));
  EXPECT_EQ(SoftmaxOfTwo(-7.5f, -7.5f), std::make_pair(0.5f, 0.5f));
  EXPECT_EQ(SoftmaxOfTwo(256.0f, 0.0f), std::make_pair(1.0f, 0.0f));
  EXPECT_EQ(SoftmaxOfTwo(-300.0f, 1.0f), std::make_pair(0.0f, 1.0f));
  EXPECT_EQ(SoftmaxOfTwo(-inf, 0.0f), std::make_pair(0.0f, 1.0f));  // exp(-inf) = 0 and exp(0)
  for (const auto& [a1, a2] : {std::pair{nan, 1.0f}, {1.0f, nan}, {inf, 0.0f}, {inf, inf}, {-inf, -inf}}) {
    const auto [p1, p2] = SoftmaxOfTwo(a1, a2);
    EXPECT_TRUE(std::isnan(p1) && std::isnan(p2)) << a1 << ", " << a2 << " -> " << p1 << ", " << p2;
  }
  // Worked by hand (numpy's float32): m = 1, e1 = exp(0) = 1, e2 = fp32(exp(-1)) = 0x3EBC5AB2, e1 + e2 rounds to
  // 0x3FAF16AC, and the two quotients round to 0x3F3B26A8 and 0x3E89B2B1.
  const auto [p1, p2] = SoftmaxOfTwo(1.0f, 0.0f);
  EXPECT_EQ(std::bit_cast<uint32_t>(p1), 0x3F3B26A8u);
  EXPECT_EQ(std::bit_cast<uint32_t>(p2), 0x3E89B2B1u);
}

TEST(Isa, SetActiveIsaFallsBackToWhatTheCpuHas) {
  ::testing::Test::RecordProperty("detected_isa", IsaName(DetectedIsa()));
  SetActiveIsa(Isa::kAvx512);
  EXPECT_LE(static_cast<int>(ActiveIsa()), static_cast<int>(DetectedIsa()));
  SetActiveIsa(Isa::kScalar);
  EXPECT_EQ(ActiveIsa(), Isa::kScalar);
  SetActiveIsa(DetectedIsa());
  EXPECT_EQ(ActiveIsa(), DetectedIsa());
  EXPECT_STREQ(IsaName(Isa::kAvx2), "avx2");
}

}  // namespace
}  // namespace moe_ep::kernels
