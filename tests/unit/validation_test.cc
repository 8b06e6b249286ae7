// Validation tests: plan::ValidateDispatch / plan::ValidateCombine against docs/semantics.md 1.1-1.4 and
// docs/semantics.md 0, and the native API's behaviour on bad calls.
//
// Cases:
//   DispatchA3Rules/*      one row per docs/semantics.md 1.1 / 1.2 dispatch rule: start from a valid A3 call (E=16,
//   moe=16,
//                          H=7168, Bs=8, K=8, bf16; or a TP / quant / shared-rank variant), change one thing,
//                          and expect the exact code (161001 null, 161002 dtype, 561002 rule) and a message that
//                          names the parameter and the offending value (and the required size for windows).
//   DispatchA3Accepts/*    valid A3 dispatch calls: the base, every boundary of every range, the variants.
//   DispatchA3.*           the silent n_s=1,S=0 -> 0 rule; the deliberate deviations from docs/semantics.md 1.2
//   (stricter
//                          expandX / assistInfo minimums that keep writes in bounds).
//   CombineA3Rules/*       the same for CombineV2 (docs/semantics.md 1.3) and CombineAddRmsNorm
//   (docs/semantics.md 1.4). CombineA3Accepts/*     valid combine / CombineAddRmsNorm calls, boundaries and variants.
//   CombineA3.*            rules that need more than one row, message-naming discrepancies (skipped: BUG), and
//                          normEps judged in the default floating-point environment.
//   NativeProfile*/*       Profile::kNative accepts what docs/semantics.md 0 relaxes (E=1, E>768, H=7, Bs>512, K>16,
//   moe>1024,
//                          L*E>2048, small assistInfo) and still rejects nonsense (zero / negative sizes, S>=E,
//                          windows too small, quantMode 1, ...).
//   TensorView.*           which views are present: a shape of no elements is, even without an address
//                          (torch gives a (0,) tensor none); a default view or a null one with elements is not.
//   NativeApi.*            DispatchInto / CombineInto / CombineAddRmsNormInto on 4 thread ranks: bad calls throw
//                          moe_ep::Error with a clear message and leave poisoned outputs byte-for-byte unchanged;
//                          an out-of-range expert id on one rank makes the others fail with TimeoutError naming
//                          that rank (300 ms group timeout); an exactly-sized window works end to end.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/ops.h"
#include "moe_ep/tensor.h"
#include "plan/config.h"
#include "plan/op_tensors.h"
#include "plan/validate.h"
#include "support/hostile_floating_point.h"
#include "support/scoped_env.h"
#include "support/test_seed.h"
#include "support/thrown_error.h"
#include "verify/run_ranks.h"

namespace moe_ep::plan {
namespace {

constexpr ErrorCode kOk = ErrorCode::kOk;
constexpr ErrorCode kNull = ErrorCode::kNullPointer;    // 161001
constexpr ErrorCode kDtype = ErrorCode::kInvalidParam;  // 161002
constexpr ErrorCode kRule = ErrorCode::kInvalidConfig;  // 561002

// Validation reads shapes and dtypes only: every view points at this buffer.
alignas(64) std::byte g_storage[64];
void* Data() { return g_storage; }
TensorView View(DType dtype, std::vector<int64_t> shape) { return TensorView(Data(), dtype, std::move(shape)); }

constexpr uint64_t kBigWindow = uint64_t{4} << 30;

// ---- the call under test, built from attributes with every output sized by the docs/semantics.md 1.2 formulas
// ----------------

enum class Mask { kNone, kTokens, kPairs };

struct Params {
  int64_t e = 16, rank = 5, tp = 0, tp_rank = 0;
  int64_t moe = 16, n_s = 1, s = 0, shard = 0;  // n_s = 1 is the op-def default
  int64_t bs = 8, h = 7168, k = 8, global_bs = 0;
  int64_t quant = 0, token_nums_type = 1, comm_quant = 0;
  DType dtype = DType::kBf16;
  Mask mask = Mask::kNone;
  bool scales = false;
  bool rms = false;  // combine: CombineAddRmsNorm
};

// A of docs/semantics.md 1.2, written here from the formula (not from plan::ReceiveRows). Guards keep invalid
// attributes from dividing by zero: those calls fail validation before sizes matter.
struct Sizes {
  int64_t n_s = 0, l = 1, a = 0, tp = 1;
  bool shared_rank = false;
};
Sizes SizesOf(const Params& p) {
  Sizes z;
  z.n_s = (p.s == 0 && p.n_s == 1) ? 0 : p.n_s;
  z.tp = p.tp == 2 ? 2 : 1;
  z.l = (p.e - p.s) > 0 ? std::max<int64_t>(p.moe / (p.e - p.s), 1) : 1;
  z.shared_rank = p.rank < p.s;
  const int64_t e = std::max<int64_t>(p.e, 1);
  const int64_t global_bs = p.global_bs == 0 ? p.bs * e : p.global_bs;
  const int64_t max_bs = global_bs / e;
  if (z.shared_rank) {
    const int64_t r = z.n_s > 0 ? std::max<int64_t>(p.s / z.n_s, 1) : 1;
    z.a = max_bs * ((e + r - 1) / r);
  } else {
    z.a = global_bs * std::min(z.l, p.k);
  }
  return z;
}

MoeConfig ConfigOf(const Params& p) {
  MoeConfig c;
  c.ep_world_size = p.e;
  c.ep_rank = p.rank;
  c.tp_world_size = p.tp;
  c.tp_rank = p.tp_rank;
  c.moe_expert_num = p.moe;
  c.shared_expert_num = p.n_s;
  c.shared_expert_rank_num = p.s;
  c.expert_shard_type = p.shard;
  c.global_bs = p.global_bs;
  c.quant_mode = p.quant;
  c.expert_token_nums_type = p.token_nums_type;
  c.comm_quant_mode = p.comm_quant;
  return c;
}

TensorView MaskView(const Params& p) {
  if (p.mask == Mask::kTokens) return View(DType::kBool, {p.bs});
  if (p.mask == Mask::kPairs) return View(DType::kBool, {p.bs, p.k});
  return {};
}

struct DispatchCall {
  MoeConfig config;
  DispatchTensors t;
  Profile profile = Profile::kA3;
  WindowCapacity window{kBigWindow, kBigWindow};
};

DispatchCall MakeDispatch(const Params& p) {
  const Sizes z = SizesOf(p);
  DispatchCall call;
  call.config = ConfigOf(p);
  DispatchTensors& t = call.t;
  t.x = View(p.dtype, {p.bs, p.h});
  t.expert_ids = View(DType::kInt32, {p.bs, p.k});
  if (p.scales) t.scales = View(DType::kFloat32, {z.n_s + p.moe, p.h});
  t.x_active_mask = MaskView(p);
  t.expand_x = View(p.quant == 2 ? DType::kInt8 : p.dtype, {z.tp * z.a, p.h});
  if (p.quant == 2) t.dynamic_scales = View(DType::kFloat32, {z.tp * z.a});
  t.assist_info = View(DType::kInt32, {3 * z.tp * z.a});
  t.expert_token_nums = View(DType::kInt64, {z.shared_rank ? 1 : z.l});
  t.ep_recv_counts = View(DType::kInt32, {p.e * (z.shared_rank ? 1 : z.l) * z.tp});
  t.tp_recv_counts = View(DType::kInt32, {p.tp});
  return call;
}

struct CombineCall {
  MoeConfig config;
  CombineTensors t;
  Profile profile = Profile::kA3;
  WindowCapacity window{kBigWindow, kBigWindow};
};

CombineCall MakeCombine(const Params& p) {
  const Sizes z = SizesOf(p);
  CombineCall call;
  call.config = ConfigOf(p);
  CombineTensors& t = call.t;
  t.expand_x = View(p.dtype, {z.tp * z.a, p.h});
  t.expert_ids = View(DType::kInt32, {p.bs, p.k});
  t.assist_info = View(DType::kInt32, {z.a * 128});
  t.ep_send_counts = View(DType::kInt32, {p.e * (z.shared_rank ? 1 : z.l) * z.tp});
  t.expert_scales = View(DType::kFloat32, {p.bs, p.k});
  if (p.tp == 2) t.tp_send_counts = View(DType::kInt32, {2});
  t.x_active_mask = MaskView(p);
  if (p.rms) {
    t.add_rms_norm = true;
    t.x = View(p.dtype, {p.bs, 1, p.h});
    t.residual_x = View(DType::kBf16, {p.bs, 1, p.h});
    t.gamma = View(DType::kBf16, {p.h});
    t.y = View(DType::kBf16, {p.bs, 1, p.h});
    t.rstd = View(DType::kFloat32, {p.bs, 1, 1});
  } else {
    t.x = View(p.dtype, {p.bs, p.h});
  }
  return call;
}

// Runs `f` and checks the outcome: no exception for kOk, else a moe_ep::Error with `code` whose message
// contains every needle.
void ExpectOutcome(const std::function<void()>& f, ErrorCode code, const std::vector<std::string>& needles) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(static_cast<int>(e.code()), static_cast<int>(code)) << e.what();
    for (const std::string& n : needles) {
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << "message lacks \"" << n << "\": " << e.what();
    }
    return;
  }
  EXPECT_EQ(code, kOk) << "no error; expected code " << static_cast<int>(code);
}

void RunDispatch(DispatchCall& call) {
  ValidateDispatch(call.config, call.t, call.profile, call.window, "MoeDistributeDispatchV2");
}
void RunCombine(CombineCall& call) {
  ValidateCombine(call.config, call.t, call.profile, call.window,
                  call.t.add_rms_norm ? "MoeDistributeCombineAddRmsNorm" : "MoeDistributeCombineV2");
}

// One rule: attributes (on top of the defaults), then one change to the built call, and the expected outcome.
struct DispatchRow {
  const char* name;
  std::function<void(Params&)> params;
  std::function<void(DispatchCall&)> tweak;
  ErrorCode code;
  std::vector<std::string> needles;
};
struct CombineRow {
  const char* name;
  std::function<void(Params&)> params;
  std::function<void(CombineCall&)> tweak;
  ErrorCode code;
  std::vector<std::string> needles;
};

// gtest prints a failing row by its name.
void PrintTo(const DispatchRow& row, std::ostream* os) { *os << row.name; }
void PrintTo(const CombineRow& row, std::ostream* os) { *os << row.name; }

template <typename Row>
std::string RowName(const ::testing::TestParamInfo<Row>& info) {
  return info.param.name;
}

void CheckDispatchRow(const DispatchRow& row, Profile profile) {
  Params p;
  if (row.params) row.params(p);
  DispatchCall call = MakeDispatch(p);
  call.profile = profile;
  if (row.tweak) row.tweak(call);
  ExpectOutcome([&] { RunDispatch(call); }, row.code, row.needles);
}
void CheckCombineRow(const CombineRow& row, Profile profile) {
  Params p;
  if (row.params) row.params(p);
  CombineCall call = MakeCombine(p);
  call.profile = profile;
  if (row.tweak) row.tweak(call);
  ExpectOutcome([&] { RunCombine(call); }, row.code, row.needles);
}

// Attribute presets.
void QuantMode2(Params& p) { p.quant = 2; }
void QuantMode2Scales(Params& p) { p.quant = 2, p.scales = true; }
void Tp(Params& p) { p.tp = 2, p.tp_rank = 1; }
void TpQuantMode2(Params& p) { Tp(p), QuantMode2(p); }
void TwoLocal(Params& p) { p.moe = 32; }                           // L = 2 on every MoE rank
void SharedMoeRank(Params& p) { p.s = 2, p.n_s = 1, p.moe = 28; }  // R = 2, L = 2, rank 5 is a MoE rank
void SharedRank(Params& p) { SharedMoeRank(p), p.rank = 0; }       // A = maxBs * ceil(E/R) = 64
void Tokens(Params& p) { p.mask = Mask::kTokens; }
void Pairs(Params& p) { p.mask = Mask::kPairs; }
void Rms(Params& p) { p.rms = true; }

TEST(TensorView, ZeroElementsWithoutAddressArePresent) {
  void* const none = nullptr;
  EXPECT_FALSE(TensorView().present());
  EXPECT_FALSE(TensorView(none, DType::kInt32, {2}).present());
  EXPECT_FALSE(TensorView(none, DType::kInt32, {}).present());  // a scalar has an element
  const TensorView empty(none, DType::kInt32, {0});
  EXPECT_TRUE(empty.present());
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_TRUE(TensorView(none, DType::kBf16, {3, 0}).present());
  EXPECT_EQ(TensorView(Data(), DType::kInt32, {0}).data, Data());  // an address given is kept
}

// An empty Tensor (dispatch's dynamic_scales without quantization, a handle's mask without one) has no elements and
// no bytes: it said one element of a null address, which a caller copying bytes() from data() read.
TEST(Tensor, ADefaultConstructedOneHasNoElements) {
  const Tensor empty;
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(empty.bytes(), 0u);
  EXPECT_EQ(empty.data(), nullptr);
  EXPECT_FALSE(empty.view().present());
  const Tensor scalar(DType::kFloat32, {});
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_NE(scalar.data(), nullptr);
}

// A moved-from Tensor is empty, as a default-constructed one: it kept the address its storage went away with (a
// present view of one element, numel() 0).
TEST(Tensor, AMovedFromOneIsEmpty) {
  Tensor from(DType::kInt32, {4});
  const void* const data = from.data();
  Tensor to(std::move(from));
  EXPECT_EQ(to.data(), data);
  EXPECT_EQ(to.numel(), 4);
  EXPECT_EQ(from.data(), nullptr);  // NOLINT(bugprone-use-after-move): what is left is the point
  EXPECT_FALSE(from.view().present());
  EXPECT_EQ(from.numel(), 0);
  Tensor assigned;
  assigned = std::move(to);
  EXPECT_EQ(assigned.data(), data);
  EXPECT_EQ(to.data(), nullptr);  // NOLINT(bugprone-use-after-move)
  EXPECT_FALSE(to.view().present());
}

TEST(TensorView, ANegativeDimensionHasStrideZero) {
  EXPECT_EQ(TensorView(Data(), DType::kInt32, {2, 3}).stride(-3), 0);
  EXPECT_EQ(TensorView(Data(), DType::kInt32, {2, 3}, {3, 1}).stride(-1), 0);
  EXPECT_EQ(TensorView(Data(), DType::kInt32, {2, 3}).stride(0), 3);
}

// ==== dispatch, A3 profile ========================================================================================

TEST(DispatchA3, BaseCallPassesAndFillsShapes) {
  DispatchCall call = MakeDispatch(Params{});
  ASSERT_NO_THROW(RunDispatch(call));
  EXPECT_EQ(call.config.bs, 8);
  EXPECT_EQ(call.config.hidden, 7168);
  EXPECT_EQ(call.config.top_k, 8);
  EXPECT_EQ(call.config.x_dtype, DType::kBf16);
  EXPECT_EQ(call.config.mask, MaskKind::kNone);
}

// docs/semantics.md 1.2: "If S==0 and n_s==1, n_s is silently set to 0." The call passes and later sizes use n_s = 0.
TEST(DispatchA3, DefaultSharedExpertNumIsSilentlyDroppedWithoutSharedRanks) {
  Params p;
  p.n_s = 1, p.s = 0;
  DispatchCall call = MakeDispatch(p);
  ASSERT_NO_THROW(RunDispatch(call));
  EXPECT_EQ(call.config.shared_expert_num, 0);
  // With the quirk, the smooth scales have moe rows (no shared row); moe + 1 rows is rejected.
  p.quant = 2, p.scales = true;
  DispatchCall scaled = MakeDispatch(p);
  ASSERT_EQ(scaled.t.scales.shape[0], 16);
  EXPECT_NO_THROW(RunDispatch(scaled));
  scaled = MakeDispatch(p);
  scaled.t.scales.shape = {17, 7168};
  ExpectOutcome([&] { RunDispatch(scaled); }, kRule, {"'scales' = (17, 7168)", "(16, 7168)"});
}

// The mask kind is read from the mask's rank.
TEST(DispatchA3, MaskKindIsRecorded) {
  Params p;
  Tokens(p);
  DispatchCall call = MakeDispatch(p);
  ASSERT_NO_THROW(RunDispatch(call));
  EXPECT_EQ(call.config.mask, MaskKind::kTokens);
  Pairs(p);
  call = MakeDispatch(p);
  ASSERT_NO_THROW(RunDispatch(call));
  EXPECT_EQ(call.config.mask, MaskKind::kPairs);
}

// DEVIATION (deliberate, stricter than docs/semantics.md 1.2): docs/semantics.md checks expandX.dim0 >= tpWorldSize*A
// with the raw tpWorldSize, so tp=0 disables the check in CANN tiling. moe_ep writes every received row into expandX,
// so it demands >= A rows whatever tpWorldSize is (a smaller buffer would be overrun, not rejected).
TEST(DispatchA3, ExpandXNeedsARowsEvenWithTpWorldSize0) {
  DispatchCall call = MakeDispatch(Params{});
  call.t.expand_x.shape = {1, 7168};
  ExpectOutcome([&] { RunDispatch(call); }, kRule, {"'expandXOut' = (1, 7168)", ">= 128"});
}

// assistInfoForCombineOut holds three ints per row of this rank's EP group, as CANN's tiling asks (3A): with tp=2 the
// kernel's all-gather copies the TP peer's rows without triples.
TEST(DispatchA3, AssistInfoNeedsThreeIntsPerRowOfItsOwnEpGroup) {
  Params p;
  Tp(p);
  DispatchCall call = MakeDispatch(p);
  call.t.assist_info.shape = {3 * 128};
  EXPECT_NO_THROW(RunDispatch(call));
  call = MakeDispatch(p);
  call.t.assist_info.shape = {3 * 128 - 1};
  ExpectOutcome([&] { RunDispatch(call); }, kRule, {"'assistInfoForCombineOut' = (383,)", "3 * A = 384"});
}

// A strided dispatch output (moe_ep's own rule, not docs/semantics.md's) is rejected naming that output.
// Outputs may be strided, as CANN's are (the operations write contiguous stand-ins), but not overlap.
TEST(DispatchA3, StridedOutputsPassAndOverlappingOnesAreNamed) {
  DispatchCall call = MakeDispatch(Params{});
  call.t.expand_x.strides = {7169, 1};
  call.t.assist_info.strides = {2};
  EXPECT_NO_THROW(RunDispatch(call));
  // Rows of every other element, each starting right after the last element of the row before: apart (a row's
  // span is 2 * 7167 + 1 elements, not 2 * 7168). One element less, and a row's first is the last row's last.
  call.t.expand_x.strides = {14335, 2};
  EXPECT_NO_THROW(RunDispatch(call));
  call.t.expand_x.strides = {14334, 2};
  ExpectOutcome([&] { RunDispatch(call); }, kRule, {"'expandXOut'", "strided (14334, 2)", "must not overlap"});
  call.t.expand_x.strides = {0, 1};
  ExpectOutcome([&] { RunDispatch(call); }, kRule, {"'expandXOut'", "strided (0, 1)", "must not overlap"});
}

class DispatchA3Rules : public ::testing::TestWithParam<DispatchRow> {};
TEST_P(DispatchA3Rules, FailsWithCodeNamingParameterAndValue) { CheckDispatchRow(GetParam(), Profile::kA3); }

const DispatchRow kDispatchRules[] = {
    // -- 161001: required tensors (docs/semantics.md 1.1) --
    {"NullX", nullptr, [](DispatchCall& c) { c.t.x.data = nullptr; }, kNull, {"'x' = nullptr"}},
    {"NullExpertIds",
     nullptr,
     [](DispatchCall& c) { c.t.expert_ids.data = nullptr; },
     kNull,
     {"'expertIds' = nullptr"}},
    {"NullExpandXOut",
     nullptr,
     [](DispatchCall& c) { c.t.expand_x.data = nullptr; },
     kNull,
     {"'expandXOut' = nullptr"}},
    {"NullAssistInfoOut",
     nullptr,
     [](DispatchCall& c) { c.t.assist_info.data = nullptr; },
     kNull,
     {"'assistInfoForCombineOut' = nullptr"}},
    {"NullExpertTokenNumsOut",
     nullptr,
     [](DispatchCall& c) { c.t.expert_token_nums.data = nullptr; },
     kNull,
     {"'expertTokenNumsOut' = nullptr"}},
    {"NullEpRecvCountsOut",
     nullptr,
     [](DispatchCall& c) { c.t.ep_recv_counts.data = nullptr; },
     kNull,
     {"'epRecvCountsOut' = nullptr"}},
    {"NullTpRecvCountsOutEvenWithoutTp",
     nullptr,
     [](DispatchCall& c) { c.t.tp_recv_counts.data = nullptr; },
     kNull,
     {"'tpRecvCountsOut' = nullptr"}},
    {"NullDynamicScalesWithQuantMode2",
     QuantMode2,
     [](DispatchCall& c) { c.t.dynamic_scales = {}; },
     kNull,
     {"'dynamicScalesOut' = nullptr"}},
    // -- 161002: dtypes (docs/semantics.md 1.2 dtype list) --
    {"XFloat32", nullptr, [](DispatchCall& c) { c.t.x.dtype = DType::kFloat32; }, kDtype, {"'x' = float32"}},
    {"XInt8", nullptr, [](DispatchCall& c) { c.t.x.dtype = DType::kInt8; }, kDtype, {"'x' = int8"}},
    {"ExpertIdsInt64",
     nullptr,
     [](DispatchCall& c) { c.t.expert_ids.dtype = DType::kInt64; },
     kDtype,
     {"'expertIds' = int64", "int32"}},
    {"ScalesFp16",
     QuantMode2Scales,
     [](DispatchCall& c) { c.t.scales.dtype = DType::kFp16; },
     kDtype,
     {"'scales' = fp16", "float32"}},
    {"MaskInt8",
     Tokens,
     [](DispatchCall& c) { c.t.x_active_mask.dtype = DType::kInt8; },
     kDtype,
     {"'xActiveMask' = int8", "bool"}},
    {"ExpandXOutFp16ForBf16X",
     nullptr,
     [](DispatchCall& c) { c.t.expand_x.dtype = DType::kFp16; },
     kDtype,
     {"'expandXOut' = fp16", "bf16"}},
    {"ExpandXOutBf16WithQuantMode2",
     QuantMode2,
     [](DispatchCall& c) { c.t.expand_x.dtype = DType::kBf16; },
     kRule,
     {"'expandXOut' = bf16", "int8"}},
    {"DynamicScalesOutBf16",
     QuantMode2,
     [](DispatchCall& c) { c.t.dynamic_scales.dtype = DType::kBf16; },
     kDtype,
     {"'dynamicScalesOut' = bf16", "float32"}},
    {"AssistInfoOutInt64",
     nullptr,
     [](DispatchCall& c) { c.t.assist_info.dtype = DType::kInt64; },
     kDtype,
     {"'assistInfoForCombineOut' = int64", "int32"}},
    {"ExpertTokenNumsOutInt32",
     nullptr,
     [](DispatchCall& c) { c.t.expert_token_nums.dtype = DType::kInt32; },
     kDtype,
     {"'expertTokenNumsOut' = int32", "int64"}},
    {"EpRecvCountsOutInt64",
     nullptr,
     [](DispatchCall& c) { c.t.ep_recv_counts.dtype = DType::kInt64; },
     kDtype,
     {"'epRecvCountsOut' = int64"}},
    {"TpRecvCountsOutInt64",
     nullptr,
     [](DispatchCall& c) { c.t.tp_recv_counts.dtype = DType::kInt64; },
     kDtype,
     {"'tpRecvCountsOut' = int64"}},
    // -- quantMode, scales, expertTokenNumsType --
    {"QuantMode3", [](Params& p) { p.quant = 3; }, nullptr, kRule, {"'quantMode' = 3", "[0, 2]"}},
    {"QuantModeMinus1", [](Params& p) { p.quant = -1; }, nullptr, kRule, {"'quantMode' = -1"}},
    {"QuantMode1StaticRejected", [](Params& p) { p.quant = 1; }, nullptr, kRule, {"'quantMode' = 1", "static"}},
    {"ScalesWithQuantMode0",
     [](Params& p) { p.scales = true; },
     nullptr,
     kRule,
     {"'scales' = (16, 7168) float32", "quantMode == 0"}},
    {"ExpertTokenNumsType2", [](Params& p) { p.token_nums_type = 2; }, nullptr, kRule, {"'expertTokenNumsType' = 2"}},
    // -- ranks of every tensor --
    {"X3D",
     nullptr,
     [](DispatchCall& c) {
       c.t.x.shape = {8, 1, 7168};
     },
     kRule,
     {"'x' = (8, 1, 7168)", "2 dim"}},
    {"ExpertIds1D",
     nullptr,
     [](DispatchCall& c) { c.t.expert_ids.shape = {64}; },
     kRule,
     {"'expertIds' = (64,)", "2 dim"}},
    {"Scales1D",
     QuantMode2Scales,
     [](DispatchCall& c) { c.t.scales.shape = {16 * 7168}; },
     kRule,
     {"'scales' = (114688,)", "2 dim"}},
    {"Mask3D",
     Tokens,
     [](DispatchCall& c) {
       c.t.x_active_mask.shape = {8, 8, 1};
     },
     kRule,
     {"'xActiveMask' = (8, 8, 1)", "1-D"}},
    {"Mask1DDim0NotBs",
     Tokens,
     [](DispatchCall& c) { c.t.x_active_mask.shape = {7}; },
     kRule,
     {"'xActiveMask' = (7,)", "Bs = 8"}},
    {"Mask2DDim0NotBs",
     Pairs,
     [](DispatchCall& c) {
       c.t.x_active_mask.shape = {9, 8};
     },
     kRule,
     {"'xActiveMask' = (9, 8)", "Bs = 8"}},
    {"Mask2DDim1NotK",
     Pairs,
     [](DispatchCall& c) {
       c.t.x_active_mask.shape = {8, 7};
     },
     kRule,
     {"'xActiveMask' = (8, 7)", "K = 8"}},
    {"ExpandXOut1D",
     nullptr,
     [](DispatchCall& c) { c.t.expand_x.shape = {128 * 7168}; },
     kRule,
     {"'expandXOut' = (917504,)", "2 dim"}},
    {"DynamicScalesOut2D",
     QuantMode2,
     [](DispatchCall& c) {
       c.t.dynamic_scales.shape = {128, 1};
     },
     kRule,
     {"'dynamicScalesOut' = (128, 1)", "1 dim"}},
    {"AssistInfoOut2D",
     nullptr,
     [](DispatchCall& c) {
       c.t.assist_info.shape = {384, 1};
     },
     kRule,
     {"'assistInfoForCombineOut' = (384, 1)", "1 dim"}},
    {"ExpertTokenNumsOut2D",
     nullptr,
     [](DispatchCall& c) {
       c.t.expert_token_nums.shape = {1, 1};
     },
     kRule,
     {"'expertTokenNumsOut' = (1, 1)", "1 dim"}},
    {"EpRecvCountsOut2D",
     nullptr,
     [](DispatchCall& c) {
       c.t.ep_recv_counts.shape = {16, 1};
     },
     kRule,
     {"'epRecvCountsOut' = (16, 1)", "1 dim"}},
    {"TpRecvCountsOut2D",
     [](Params& p) { p.tp = 1; },
     [](DispatchCall& c) {
       c.t.tp_recv_counts.shape = {1, 1};
     },
     kRule,
     {"'tpRecvCountsOut' = (1, 1)", "1 dim"}},
    // -- epWorldSize in [2, 768], tpWorldSize in [0, 2], rank ids --
    {"EpWorldSize1", [](Params& p) { p.e = 1, p.rank = 0; }, nullptr, kRule, {"'epWorldSize' = 1", "[2, 768]"}},
    {"EpWorldSize0", [](Params& p) { p.e = 0, p.rank = 0; }, nullptr, kRule, {"'epWorldSize' = 0"}},
    {"EpWorldSize769", [](Params& p) { p.e = 769, p.moe = 769; }, nullptr, kRule, {"'epWorldSize' = 769"}},
    {"EpRankIdEqualsE", [](Params& p) { p.rank = 16; }, nullptr, kRule, {"'epRankId' = 16", "epWorldSize = 16"}},
    {"EpRankIdMinus1", [](Params& p) { p.rank = -1; }, nullptr, kRule, {"'epRankId' = -1"}},
    {"TpWorldSize3", [](Params& p) { p.tp = 3; }, nullptr, kRule, {"'tpWorldSize' = 3", "[0, 2]"}},
    {"TpWorldSizeMinus1", [](Params& p) { p.tp = -1; }, nullptr, kRule, {"'tpWorldSize' = -1"}},
    {"TpRankId1WithoutTp",
     [](Params& p) { p.tp_rank = 1; },
     nullptr,
     kRule,
     {"'tpRankId' = 1", "must be 0 when tpWorldSize < 2"}},
    {"TpRankId1WithTpWorldSize1", [](Params& p) { p.tp = 1, p.tp_rank = 1; }, nullptr, kRule, {"'tpRankId' = 1"}},
    {"TpRankId2WithTp", [](Params& p) { Tp(p), p.tp_rank = 2; }, nullptr, kRule, {"'tpRankId' = 2", "[0, "}},
    {"TpRankIdMinus1WithTp", [](Params& p) { Tp(p), p.tp_rank = -1; }, nullptr, kRule, {"'tpRankId' = -1"}},
    {"ExpertShardType1", [](Params& p) { p.shard = 1; }, nullptr, kRule, {"'expertShardType' = 1", "must be 0"}},
    // -- shared experts --
    {"SharedExpertNum5",
     [](Params& p) { p.n_s = 5, p.s = 5, p.moe = 11; },
     nullptr,
     kRule,
     {"'sharedExpertNum' = 5", "[0, 4]"}},
    {"SharedExpertNumMinus1", [](Params& p) { p.n_s = -1; }, nullptr, kRule, {"'sharedExpertNum' = -1"}},
    {"SharedExpertRankNumEqualsE",
     [](Params& p) { p.s = 16; },
     nullptr,
     kRule,
     {"'sharedExpertRankNum' = 16", "epWorldSize = 16"}},
    {"SharedExpertRankNumMinus1", [](Params& p) { p.s = -1; }, nullptr, kRule, {"'sharedExpertRankNum' = -1"}},
    {"SharedExpertsWithoutSharedRanks",
     [](Params& p) { p.n_s = 2, p.s = 0; },
     nullptr,
     kRule,
     {"'sharedExpertNum' = 2", "sharedExpertRankNum (0)"}},
    {"SharedRanksWithoutSharedExperts",
     [](Params& p) { p.n_s = 0, p.s = 2, p.moe = 14; },
     nullptr,
     kRule,
     {"'sharedExpertNum' = 0", "sharedExpertRankNum (2)"}},
    {"SharedRankNumNotMultipleOfSharedExpertNum",
     [](Params& p) { p.n_s = 2, p.s = 3, p.moe = 26; },
     nullptr,
     kRule,
     {"'sharedExpertRankNum' = 3", "multiple of sharedExpertNum (2)"}},
    // -- moeExpertNum, L --
    {"MoeExpertNum0", [](Params& p) { p.moe = 0; }, nullptr, kRule, {"'moeExpertNum' = 0", "(0, 1024]"}},
    {"MoeExpertNum1025", [](Params& p) { p.moe = 1025; }, nullptr, kRule, {"'moeExpertNum' = 1025", "(0, 1024]"}},
    {"MoeExpertNumNotMultipleOfMoeRanks",
     [](Params& p) { p.moe = 24; },
     nullptr,
     kRule,
     {"'moeExpertNum' = 24", "multiple of epWorldSize - sharedExpertRankNum (16)"}},
    {"LocalExpertsTimesEAbove2048",
     [](Params& p) { p.e = 64, p.s = 48, p.moe = 1024; },
     nullptr,
     kRule,
     {"'moeExpertNum' = 1024", "(4096)", "2048"}},
    {"TpNeedsOneLocalExpert",
     [](Params& p) { Tp(p), p.moe = 32; },
     nullptr,
     kRule,
     {"'moeExpertNum' = 32", "localExpertNum == 1"}},
    // -- Bs, globalBs, H, K --
    {"Bs0", [](Params& p) { p.bs = 0; }, nullptr, kRule, {"'Bs (x.dim0)' = 0", "[1, 512]"}},
    {"Bs513", [](Params& p) { p.bs = 513; }, nullptr, kRule, {"'Bs (x.dim0)' = 513", "[1, 512]"}},
    {"GlobalBsNotMultipleOfE",
     [](Params& p) { p.global_bs = 129; },
     nullptr,
     kRule,
     {"'globalBs' = 129", "multiple of epWorldSize"}},
    {"GlobalBsBelowBsTimesE", [](Params& p) { p.global_bs = 112; }, nullptr, kRule, {"'globalBs' = 112", "(128)"}},
    {"GlobalBsAboveBsTimesEWith1DMask",
     [](Params& p) { p.global_bs = 256, Tokens(p); },
     nullptr,
     kRule,
     {"'globalBs' = 256", "xActiveMask"}},
    {"GlobalBsAboveBsTimesEWith2DMask",
     [](Params& p) { p.global_bs = 256, Pairs(p); },
     nullptr,
     kRule,
     {"'globalBs' = 256", "xActiveMask"}},
    {"H1023", [](Params& p) { p.h = 1023; }, nullptr, kRule, {"'H (x.dim1)' = 1023", "[1024, 8192]"}},
    {"H8193", [](Params& p) { p.h = 8193; }, nullptr, kRule, {"'H (x.dim1)' = 8193", "[1024, 8192]"}},
    {"ExpertIdsDim0NotBs",
     nullptr,
     [](DispatchCall& c) {
       c.t.expert_ids.shape = {7, 8};
     },
     kRule,
     {"'expertIds' = (7, 8) int32", "Bs = 8"}},
    {"K0", [](Params& p) { p.k = 0; }, nullptr, kRule, {"'K (expertIds.dim1)' = 0"}},
    {"K17", [](Params& p) { p.k = 17, p.moe = 32; }, nullptr, kRule, {"'K (expertIds.dim1)' = 17", "16"}},
    {"KAboveMoeExpertNum",
     [](Params& p) { p.e = 4, p.moe = 4, p.k = 5, p.rank = 1; },
     nullptr,
     kRule,
     {"'K (expertIds.dim1)' = 5", "moeExpertNum = 4"}},
    // -- scales shape (n_s + moe, H) --
    {"ScalesRowsNotSharedPlusMoe",
     QuantMode2Scales,
     [](DispatchCall& c) {
       c.t.scales.shape = {17, 7168};
     },
     kRule,
     {"'scales' = (17, 7168)", "(16, 7168)"}},
    {"ScalesColsNotH",
     QuantMode2Scales,
     [](DispatchCall& c) {
       c.t.scales.shape = {16, 1024};
     },
     kRule,
     {"'scales' = (16, 1024)", "(16, 7168)"}},
    {"ScalesMissingSharedRow",
     [](Params& p) { QuantMode2Scales(p), SharedMoeRank(p); },
     [](DispatchCall& c) {
       c.t.scales.shape = {28, 7168};
     },
     kRule,
     {"'scales' = (28, 7168)", "(29, 7168)"}},
    // -- output sizes (A = 128 on the base, 64 on the shared rank, 256 with L = 2 and on shared MoE ranks) --
    {"ExpandXOutRowsBelowA",
     nullptr,
     [](DispatchCall& c) {
       c.t.expand_x.shape = {127, 7168};
     },
     kRule,
     {"'expandXOut' = (127, 7168)", "128"}},
    {"ExpandXOutRowsBelowTpTimesA",
     Tp,
     [](DispatchCall& c) {
       c.t.expand_x.shape = {255, 7168};
     },
     kRule,
     {"'expandXOut' = (255, 7168)", "256"}},
    {"ExpandXOutRowsBelowAOnSharedRank",
     SharedRank,
     [](DispatchCall& c) {
       c.t.expand_x.shape = {63, 7168};
     },
     kRule,
     {"'expandXOut' = (63, 7168)", "64"}},
    {"ExpandXOutRowsBelowAWithTwoLocalExperts",
     TwoLocal,
     [](DispatchCall& c) {
       c.t.expand_x.shape = {255, 7168};
     },
     kRule,
     {"'expandXOut' = (255, 7168)", "256"}},
    {"ExpandXOutColsNotH",
     nullptr,
     [](DispatchCall& c) {
       c.t.expand_x.shape = {128, 7167};
     },
     kRule,
     {"'expandXOut' = (128, 7167)", "H = 7168"}},
    {"DynamicScalesOutBelowA",
     QuantMode2,
     [](DispatchCall& c) { c.t.dynamic_scales.shape = {127}; },
     kRule,
     {"'dynamicScalesOut' = (127,)", "128"}},
    {"DynamicScalesOutBelowTpTimesA",
     TpQuantMode2,
     [](DispatchCall& c) { c.t.dynamic_scales.shape = {255}; },
     kRule,
     {"'dynamicScalesOut' = (255,)", "256"}},
    {"AssistInfoOutBelow3A",
     nullptr,
     [](DispatchCall& c) { c.t.assist_info.shape = {383}; },
     kRule,
     {"'assistInfoForCombineOut' = (383,)", "384"}},
    {"AssistInfoOutBelow3AOnSharedRank",
     SharedRank,
     [](DispatchCall& c) { c.t.assist_info.shape = {191}; },
     kRule,
     {"'assistInfoForCombineOut' = (191,)", "192"}},
    {"ExpertTokenNumsOutNotL",
     nullptr,
     [](DispatchCall& c) { c.t.expert_token_nums.shape = {2}; },
     kRule,
     {"'expertTokenNumsOut' = (2,)", "localExpertNum"}},
    {"ExpertTokenNumsOutNotLWithTwoLocalExperts",
     TwoLocal,
     [](DispatchCall& c) { c.t.expert_token_nums.shape = {1}; },
     kRule,
     {"'expertTokenNumsOut' = (1,)", "2"}},
    {"ExpertTokenNumsOutNot1OnSharedRank",
     SharedRank,
     [](DispatchCall& c) { c.t.expert_token_nums.shape = {2}; },
     kRule,
     {"'expertTokenNumsOut' = (2,)", "shared"}},
    {"EpRecvCountsOutBelowEL",
     nullptr,
     [](DispatchCall& c) { c.t.ep_recv_counts.shape = {15}; },
     kRule,
     {"'epRecvCountsOut' = (15,)", ">= epWorldSize * localExpertNum = 16"}},
    {"EpRecvCountsOutBelowELWithTwoLocalExperts",
     TwoLocal,
     [](DispatchCall& c) { c.t.ep_recv_counts.shape = {31}; },
     kRule,
     {"'epRecvCountsOut' = (31,)", ">= epWorldSize * localExpertNum = 32"}},
    {"EpRecvCountsOutBelowELOnSharedMoeRank",
     SharedMoeRank,
     [](DispatchCall& c) { c.t.ep_recv_counts.shape = {31}; },
     kRule,
     {"'epRecvCountsOut' = (31,)", ">= epWorldSize * localExpertNum = 32"}},
    {"EpRecvCountsOutBelowEOnSharedRank",
     SharedRank,
     [](DispatchCall& c) { c.t.ep_recv_counts.shape = {15}; },
     kRule,
     {"'epRecvCountsOut' = (15,)", ">= epWorldSize = 16"}},
    {"EpRecvCountsOutBelow2EWithTp",
     Tp,
     [](DispatchCall& c) { c.t.ep_recv_counts.shape = {31}; },
     kRule,
     {"'epRecvCountsOut' = (31,)", ">= epWorldSize * localExpertNum * tpWorldSize = 32"}},
    {"TpRecvCountsOutNotTpWorldSize0",
     nullptr,
     [](DispatchCall& c) { c.t.tp_recv_counts.shape = {1}; },
     kRule,
     {"'tpRecvCountsOut' = (1,)", "tpWorldSize = 0"}},
    {"TpRecvCountsOutNotTpWorldSize1",
     [](Params& p) { p.tp = 1; },
     [](DispatchCall& c) { c.t.tp_recv_counts.shape = {2}; },
     kRule,
     {"'tpRecvCountsOut' = (2,)", "tpWorldSize = 1"}},
    {"TpRecvCountsOutNotTpWorldSize2",
     Tp,
     [](DispatchCall& c) { c.t.tp_recv_counts.shape = {1}; },
     kRule,
     {"'tpRecvCountsOut' = (1,)", "tpWorldSize = 2"}},
    {"OutputRowsOnOneAnother",
     nullptr,
     [](DispatchCall& c) {
       c.t.expand_x.strides = {0, 1};
     },
     kRule,
     {"'expandXOut'", "strided", "must not overlap"}},
    {"OutputDimensionsFolded",
     nullptr,
     [](DispatchCall& c) {
       c.t.expand_x.strides = {7168, 2};
     },
     kRule,
     {"'expandXOut'", "must not overlap"}},
    {"CountsOutputBroadcast",
     nullptr,
     [](DispatchCall& c) { c.t.ep_recv_counts.strides = {0}; },
     kRule,
     {"'epRecvCountsOut'", "must not overlap"}},
    // -- window (docs/semantics.md 1.2): E=16, L=1, maxBs=8, H=7168 -> 2*(8*14848*16 + 8*14336*8) = 5636096 --
    {"EpWindowOneByteShort",
     nullptr,
     [](DispatchCall& c) { c.window.ep_bytes = 5636095; },
     kRule,
     {"HCCL_BUFFSIZE", "= 5636095 bytes", "5636096 bytes"}},
    // TP: 2*A*(tokD + tokC) = 2*128*(14848 + 14336) = 7471104.
    {"TpWindowOneByteShort",
     Tp,
     [](DispatchCall& c) { c.window.tp_bytes = 7471103; },
     kRule,
     {"HCCL_BUFFSIZE (TP window)", "= 7471103 bytes", "7471104 bytes"}},
};
INSTANTIATE_TEST_SUITE_P(Rules, DispatchA3Rules, ::testing::ValuesIn(kDispatchRules), RowName<DispatchRow>);

class DispatchA3Accepts : public ::testing::TestWithParam<DispatchRow> {};
TEST_P(DispatchA3Accepts, Passes) { CheckDispatchRow(GetParam(), Profile::kA3); }

const DispatchRow kDispatchPasses[] = {
    {"Base", nullptr, nullptr, kOk, {}},
    {"Fp16", [](Params& p) { p.dtype = DType::kFp16; }, nullptr, kOk, {}},
    {"QuantMode2", QuantMode2, nullptr, kOk, {}},
    {"QuantMode2WithScales", QuantMode2Scales, nullptr, kOk, {}},
    {"QuantMode2WithScalesSharedRow", [](Params& p) { QuantMode2Scales(p), SharedMoeRank(p); }, nullptr, kOk, {}},
    {"DynamicScalesAbsentWithoutQuant", nullptr, nullptr, kOk, {}},
    {"ExpertTokenNumsType0", [](Params& p) { p.token_nums_type = 0; }, nullptr, kOk, {}},
    {"Mask1D", Tokens, nullptr, kOk, {}},
    {"Mask2D", Pairs, nullptr, kOk, {}},
    {"MaskWithGlobalBsEqualBsTimesE", [](Params& p) { Tokens(p), p.global_bs = 128; }, nullptr, kOk, {}},
    {"SharedExpertNum0SharedRanks0", [](Params& p) { p.n_s = 0; }, nullptr, kOk, {}},
    {"EpWorldSize2", [](Params& p) { p.e = 2, p.moe = 2, p.k = 2, p.rank = 1; }, nullptr, kOk, {}},
    {"EpWorldSize768", [](Params& p) { p.e = 768, p.moe = 768, p.rank = 767; }, nullptr, kOk, {}},
    {"TpWorldSize1", [](Params& p) { p.tp = 1; }, nullptr, kOk, {}},
    {"TpWorldSize2Rank0", [](Params& p) { p.tp = 2; }, nullptr, kOk, {}},
    {"TpWorldSize2Rank1", Tp, nullptr, kOk, {}},
    {"TpWorldSize2Quant", TpQuantMode2, nullptr, kOk, {}},
    {"SharedRank", SharedRank, nullptr, kOk, {}},
    {"SharedRankLast", [](Params& p) { SharedMoeRank(p), p.rank = 1; }, nullptr, kOk, {}},
    {"SharedMoeRank", SharedMoeRank, nullptr, kOk, {}},
    {"FourSharedExpertsOnFourRanks", [](Params& p) { p.n_s = 4, p.s = 4, p.moe = 12, p.rank = 3; }, nullptr, kOk, {}},
    {"TwoSharedExpertsOnSixRanks", [](Params& p) { p.n_s = 2, p.s = 6, p.moe = 20, p.rank = 4; }, nullptr, kOk, {}},
    {"SharedRankNumEMinus1", [](Params& p) { p.s = 15, p.moe = 1, p.k = 1; }, nullptr, kOk, {}},
    {"MoeExpertNum1024", [](Params& p) { p.moe = 1024; }, nullptr, kOk, {}},
    {"LocalExpertsTimesE2048",
     [](Params& p) { p.e = 64, p.s = 32, p.moe = 1024, p.rank = 40, p.h = 1024; },
     nullptr,
     kOk,
     {}},
    {"Bs1", [](Params& p) { p.bs = 1; }, nullptr, kOk, {}},
    {"Bs512", [](Params& p) { p.bs = 512, p.h = 1024; }, nullptr, kOk, {}},
    {"GlobalBsEqualBsTimesE", [](Params& p) { p.global_bs = 128; }, nullptr, kOk, {}},
    {"GlobalBsAboveBsTimesE", [](Params& p) { p.global_bs = 256; }, nullptr, kOk, {}},
    {"GlobalBsAboveBsTimesEOnSharedRank", [](Params& p) { SharedRank(p), p.global_bs = 256; }, nullptr, kOk, {}},
    {"H1024", [](Params& p) { p.h = 1024; }, nullptr, kOk, {}},
    {"H8192", [](Params& p) { p.h = 8192; }, nullptr, kOk, {}},
    {"H1063NotMultipleOf32", [](Params& p) { p.h = 1056 + 7; }, nullptr, kOk, {}},
    {"K1", [](Params& p) { p.k = 1; }, nullptr, kOk, {}},
    {"K16", [](Params& p) { p.k = 16, p.moe = 32; }, nullptr, kOk, {}},
    {"KEqualsMoeExpertNum", [](Params& p) { p.e = 4, p.moe = 4, p.k = 4, p.rank = 1; }, nullptr, kOk, {}},
    {"OutputsLargerThanNeeded",
     nullptr,
     [](DispatchCall& c) {
       c.t.expand_x.shape = {1000, 7168};
       c.t.assist_info.shape = {128 * 128};
       c.t.ep_recv_counts.shape = {100};
     },
     kOk,
     {}},
    {"EpWindowExactlyTheRule", nullptr, [](DispatchCall& c) { c.window.ep_bytes = 5636096; }, kOk, {}},
    // A3's floor of 2 MB (HCCL_BUFFSIZE >= 2), for a call whose layout needs far less.
    {"EpWindowUnderTwoMb",
     [](Params& p) { p.e = 2, p.rank = 1, p.moe = 2, p.bs = 1, p.h = 1024, p.k = 1; },
     [](DispatchCall& c) { c.window.ep_bytes = (2 << 20) - 1; },
     kRule,
     {"HCCL_BUFFSIZE", "= 2097151 bytes", "at least 2 MB on Atlas A3"}},
    {"EpWindowOfTwoMb",
     [](Params& p) { p.e = 2, p.rank = 1, p.moe = 2, p.bs = 1, p.h = 1024, p.k = 1; },
     [](DispatchCall& c) { c.window.ep_bytes = 2 << 20; },
     kOk,
     {}},
    {"TpWindowExactlyTheRule", Tp, [](DispatchCall& c) { c.window.tp_bytes = 7471104; }, kOk, {}},
    // docs/semantics.md 1.2 demands assistInfo >= 3A in dispatch (not the A*128 of combine).
    {"AssistInfoOutExactly3A", nullptr, [](DispatchCall& c) { c.t.assist_info.shape = {384}; }, kOk, {}},
};
INSTANTIATE_TEST_SUITE_P(Valid, DispatchA3Accepts, ::testing::ValuesIn(kDispatchPasses), RowName<DispatchRow>);

// ==== combine and CombineAddRmsNorm, A3 profile ===================================================================

TEST(CombineA3, BaseCallPassesAndFillsShapes) {
  CombineCall call = MakeCombine(Params{});
  ASSERT_NO_THROW(RunCombine(call));
  EXPECT_EQ(call.config.bs, 8);
  EXPECT_EQ(call.config.hidden, 7168);
  EXPECT_EQ(call.config.top_k, 8);
  EXPECT_EQ(call.config.shared_expert_num, 0);  // the silent n_s=1,S=0 rule applies to combine too
}

// docs/semantics.md 1.3 keeps the raw tpWorldSize in "expandX.dim0 >= tp*A": with tp=0 any row count passes, and
// moe_ep's combine only reads the rows epSendCounts names.
TEST(CombineA3, ExpandXRowsUncheckedWithTpWorldSize0) {
  CombineCall call = MakeCombine(Params{});
  call.t.expand_x.shape = {1, 7168};
  EXPECT_NO_THROW(RunCombine(call));
}

// In combine Bs is expertIds.dim0 and H is expandX.dim1: range messages name those tensors.
TEST(CombineA3, BsAndHMessagesNameTheCombineTensors) {
  Params p;
  p.bs = 513;
  CombineCall call = MakeCombine(p);
  ExpectOutcome([&] { RunCombine(call); }, kRule, {"expertIds", "513"});
  p = Params{};
  p.h = 1023;
  call = MakeCombine(p);
  ExpectOutcome([&] { RunCombine(call); }, kRule, {"expandX", "1023"});
}

class CombineA3Rules : public ::testing::TestWithParam<CombineRow> {};
TEST_P(CombineA3Rules, FailsWithCodeNamingParameterAndValue) { CheckCombineRow(GetParam(), Profile::kA3); }

// normEps is judged in the default floating-point environment: a caller whose thread takes subnormals for zero
// (denormals-are-zero, as a -ffast-math library's start-up code sets) still has a negative one refused (it would
// make rstd NaN), named by its value.
TEST(CombineA3, ANegativeSubnormalEpsIsRefusedUnderDenormalsAreZero) {
  const moe_ep::testing::HostileFloatingPoint hostile;
  CheckCombineRow({"RmsNormEpsNegativeSubnormalUnderDaz",
                   Rms,
                   [](CombineCall& c) { c.t.norm_eps = -1e-40f; },
                   kRule,
                   {"'normEps' = -9.99995e-41 violates rule: must be finite and >= 0"}},
                  Profile::kA3);
}

const CombineRow kCombineRules[] = {
    // -- 161001 --
    {"NullExpandX", nullptr, [](CombineCall& c) { c.t.expand_x.data = nullptr; }, kNull, {"'expandX' = nullptr"}},
    {"NullExpertIds", nullptr, [](CombineCall& c) { c.t.expert_ids.data = nullptr; }, kNull, {"'expertIds' = nullptr"}},
    {"NullAssistInfo",
     nullptr,
     [](CombineCall& c) { c.t.assist_info.data = nullptr; },
     kNull,
     {"'assistInfoForCombine' = nullptr"}},
    {"NullEpSendCounts",
     nullptr,
     [](CombineCall& c) { c.t.ep_send_counts.data = nullptr; },
     kNull,
     {"'epSendCounts' = nullptr"}},
    {"NullExpertScales",
     nullptr,
     [](CombineCall& c) { c.t.expert_scales.data = nullptr; },
     kNull,
     {"'expertScales' = nullptr"}},
    {"NullXOut", nullptr, [](CombineCall& c) { c.t.x.data = nullptr; }, kNull, {"'xOut' = nullptr"}},
    {"RmsNullResidualX", Rms, [](CombineCall& c) { c.t.residual_x.data = nullptr; }, kNull, {"'residualX' = nullptr"}},
    {"RmsNullGamma", Rms, [](CombineCall& c) { c.t.gamma.data = nullptr; }, kNull, {"'gamma' = nullptr"}},
    {"RmsNullYOut", Rms, [](CombineCall& c) { c.t.y.data = nullptr; }, kNull, {"'yOut' = nullptr"}},
    {"RmsNullRstdOut", Rms, [](CombineCall& c) { c.t.rstd.data = nullptr; }, kNull, {"'rstdOut' = nullptr"}},
    // -- 161002 --
    {"ExpandXFloat32",
     nullptr,
     [](CombineCall& c) { c.t.expand_x.dtype = DType::kFloat32; },
     kDtype,
     {"'expandX' = float32", "bf16 or fp16"}},
    {"ExpertIdsInt64",
     nullptr,
     [](CombineCall& c) { c.t.expert_ids.dtype = DType::kInt64; },
     kDtype,
     {"'expertIds' = int64"}},
    {"AssistInfoInt64",
     nullptr,
     [](CombineCall& c) { c.t.assist_info.dtype = DType::kInt64; },
     kDtype,
     {"'assistInfoForCombine' = int64"}},
    {"EpSendCountsInt64",
     nullptr,
     [](CombineCall& c) { c.t.ep_send_counts.dtype = DType::kInt64; },
     kDtype,
     {"'epSendCounts' = int64"}},
    {"ExpertScalesBf16",
     nullptr,
     [](CombineCall& c) { c.t.expert_scales.dtype = DType::kBf16; },
     kDtype,
     {"'expertScales' = bf16", "float32"}},
    {"TpSendCountsInt64",
     Tp,
     [](CombineCall& c) { c.t.tp_send_counts.dtype = DType::kInt64; },
     kDtype,
     {"'tpSendCounts' = int64"}},
    {"MaskInt32",
     Tokens,
     [](CombineCall& c) { c.t.x_active_mask.dtype = DType::kInt32; },
     kDtype,
     {"'xActiveMask' = int32"}},
    {"SharedExpertXFp16ForBf16",
     nullptr,
     [](CombineCall& c) {
       c.t.shared_expert_x = View(DType::kFp16, {8, 7168});
     },
     kDtype,
     {"'sharedExpertX' = fp16", "bf16"}},
    {"XOutFp16ForBf16", nullptr, [](CombineCall& c) { c.t.x.dtype = DType::kFp16; }, kDtype, {"'xOut' = fp16", "bf16"}},
    {"RmsExpandXFp16",
     [](Params& p) { Rms(p), p.dtype = DType::kFp16; },
     nullptr,
     kDtype,
     {"'expandX' = fp16", "bf16"}},
    {"RmsResidualXFp16",
     Rms,
     [](CombineCall& c) { c.t.residual_x.dtype = DType::kFp16; },
     kDtype,
     {"'residualX' = fp16"}},
    {"RmsGammaFloat32", Rms, [](CombineCall& c) { c.t.gamma.dtype = DType::kFloat32; }, kDtype, {"'gamma' = float32"}},
    {"RmsYOutFp16", Rms, [](CombineCall& c) { c.t.y.dtype = DType::kFp16; }, kDtype, {"'yOut' = fp16"}},
    {"RmsRstdOutBf16",
     Rms,
     [](CombineCall& c) { c.t.rstd.dtype = DType::kBf16; },
     kDtype,
     {"'rstdOut' = bf16", "float32"}},
    {"RmsXOutFp16", Rms, [](CombineCall& c) { c.t.x.dtype = DType::kFp16; }, kDtype, {"'xOut' = fp16"}},
    // -- commQuantMode --
    {"CommQuantMode1", [](Params& p) { p.comm_quant = 1; }, nullptr, kRule, {"'commQuantMode' = 1", "0 or 2"}},
    {"CommQuantMode3", [](Params& p) { p.comm_quant = 3; }, nullptr, kRule, {"'commQuantMode' = 3"}},
    {"CommQuantModeMinus1", [](Params& p) { p.comm_quant = -1; }, nullptr, kRule, {"'commQuantMode' = -1"}},
    {"CommQuantMode2WithTp",
     [](Params& p) { Tp(p), p.comm_quant = 2; },
     nullptr,
     kRule,
     {"'commQuantMode' = 2", "tpWorldSize == 2"}},
    {"RmsCommQuantMode2",
     [](Params& p) { Rms(p), p.comm_quant = 2; },
     nullptr,
     kRule,
     {"'commQuantMode' = 2", "CombineAddRmsNorm"}},
    // -- ranks --
    {"ExpandX3D",
     nullptr,
     [](CombineCall& c) {
       c.t.expand_x.shape = {128, 1, 7168};
     },
     kRule,
     {"'expandX' = (128, 1, 7168)", "2 dim"}},
    {"ExpertIds1D",
     nullptr,
     [](CombineCall& c) { c.t.expert_ids.shape = {64}; },
     kRule,
     {"'expertIds' = (64,)", "2 dim"}},
    {"ExpertScales1D",
     nullptr,
     [](CombineCall& c) { c.t.expert_scales.shape = {64}; },
     kRule,
     {"'expertScales' = (64,)", "2 dim"}},
    {"AssistInfo2D",
     nullptr,
     [](CombineCall& c) {
       c.t.assist_info.shape = {16384, 1};
     },
     kRule,
     {"'assistInfoForCombine' = (16384, 1)", "1 dim"}},
    {"EpSendCounts2D",
     nullptr,
     [](CombineCall& c) {
       c.t.ep_send_counts.shape = {16, 1};
     },
     kRule,
     {"'epSendCounts' = (16, 1)", "1 dim"}},
    {"TpSendCounts2D",
     Tp,
     [](CombineCall& c) {
       c.t.tp_send_counts.shape = {2, 1};
     },
     kRule,
     {"'tpSendCounts' = (2, 1)", "1 dim"}},
    {"Mask3D",
     Tokens,
     [](CombineCall& c) {
       c.t.x_active_mask.shape = {8, 1, 1};
     },
     kRule,
     {"'xActiveMask' = (8, 1, 1)"}},
    {"Mask1DDim0NotBs",
     Tokens,
     [](CombineCall& c) { c.t.x_active_mask.shape = {9}; },
     kRule,
     {"'xActiveMask' = (9,)", "Bs = 8"}},
    {"Mask2DDim1NotK",
     Pairs,
     [](CombineCall& c) {
       c.t.x_active_mask.shape = {8, 9};
     },
     kRule,
     {"'xActiveMask' = (8, 9)", "K = 8"}},
    {"XOut3D",
     nullptr,
     [](CombineCall& c) {
       c.t.x.shape = {8, 1, 7168};
     },
     kRule,
     {"'xOut' = (8, 1, 7168)", "2 dim"}},
    // -- attribute rules shared with dispatch --
    {"EpWorldSize1", [](Params& p) { p.e = 1, p.rank = 0; }, nullptr, kRule, {"'epWorldSize' = 1", "[2, 768]"}},
    {"EpWorldSize769", [](Params& p) { p.e = 769, p.moe = 769; }, nullptr, kRule, {"'epWorldSize' = 769"}},
    {"EpRankIdEqualsE", [](Params& p) { p.rank = 16; }, nullptr, kRule, {"'epRankId' = 16"}},
    {"TpWorldSize3", [](Params& p) { p.tp = 3; }, nullptr, kRule, {"'tpWorldSize' = 3"}},
    {"TpRankId1WithoutTp", [](Params& p) { p.tp_rank = 1; }, nullptr, kRule, {"'tpRankId' = 1"}},
    {"TpRankId2WithTp", [](Params& p) { Tp(p), p.tp_rank = 2; }, nullptr, kRule, {"'tpRankId' = 2"}},
    {"ExpertShardType1", [](Params& p) { p.shard = 1; }, nullptr, kRule, {"'expertShardType' = 1"}},
    {"SharedExpertNum5", [](Params& p) { p.n_s = 5, p.s = 5, p.moe = 11; }, nullptr, kRule, {"'sharedExpertNum' = 5"}},
    {"SharedExpertRankNumEqualsE", [](Params& p) { p.s = 16; }, nullptr, kRule, {"'sharedExpertRankNum' = 16"}},
    {"SharedExpertsWithoutSharedRanks",
     [](Params& p) { p.n_s = 2; },
     nullptr,
     kRule,
     {"'sharedExpertNum' = 2", "sharedExpertRankNum (0)"}},
    {"SharedRanksWithoutSharedExperts",
     [](Params& p) { p.n_s = 0, p.s = 2, p.moe = 14; },
     nullptr,
     kRule,
     {"'sharedExpertNum' = 0", "sharedExpertRankNum (2)"}},
    {"SharedRankNumNotMultipleOfSharedExpertNum",
     [](Params& p) { p.n_s = 2, p.s = 3, p.moe = 26; },
     nullptr,
     kRule,
     {"'sharedExpertRankNum' = 3"}},
    {"MoeExpertNum0", [](Params& p) { p.moe = 0; }, nullptr, kRule, {"'moeExpertNum' = 0"}},
    {"MoeExpertNum1025", [](Params& p) { p.moe = 1025; }, nullptr, kRule, {"'moeExpertNum' = 1025"}},
    {"MoeExpertNumNotMultipleOfMoeRanks",
     [](Params& p) { p.moe = 24; },
     nullptr,
     kRule,
     {"'moeExpertNum' = 24", "multiple"}},
    {"LocalExpertsTimesEAbove2048",
     [](Params& p) { p.e = 64, p.s = 48, p.moe = 1024; },
     nullptr,
     kRule,
     {"'moeExpertNum' = 1024", "(4096)"}},
    {"TpNeedsOneLocalExpert",
     [](Params& p) { Tp(p), p.moe = 32; },
     nullptr,
     kRule,
     {"'moeExpertNum' = 32", "localExpertNum == 1"}},
    {"Bs0", [](Params& p) { p.bs = 0; }, nullptr, kRule, {"Bs", "= 0", "[1, 512]"}},
    {"Bs513", [](Params& p) { p.bs = 513; }, nullptr, kRule, {"Bs", "= 513", "[1, 512]"}},
    {"H1023", [](Params& p) { p.h = 1023; }, nullptr, kRule, {"H", "= 1023", "[1024, 8192]"}},
    {"H8193", [](Params& p) { p.h = 8193; }, nullptr, kRule, {"H", "= 8193", "[1024, 8192]"}},
    {"K0", [](Params& p) { p.k = 0; }, nullptr, kRule, {"'K (expertIds.dim1)' = 0"}},
    {"K17", [](Params& p) { p.k = 17, p.moe = 32; }, nullptr, kRule, {"'K (expertIds.dim1)' = 17"}},
    {"GlobalBsNotMultipleOfE", [](Params& p) { p.global_bs = 129; }, nullptr, kRule, {"'globalBs' = 129"}},
    {"GlobalBsBelowBsTimesE", [](Params& p) { p.global_bs = 112; }, nullptr, kRule, {"'globalBs' = 112"}},
    {"GlobalBsAboveBsTimesEWithMask",
     [](Params& p) { p.global_bs = 256, Tokens(p); },
     nullptr,
     kRule,
     {"'globalBs' = 256", "xActiveMask"}},
    // -- shapes --
    {"ExpertScalesNotBsK",
     nullptr,
     [](CombineCall& c) {
       c.t.expert_scales.shape = {8, 7};
     },
     kRule,
     {"'expertScales' = (8, 7)", "(8, 8)"}},
    {"ExpertScalesDim0NotBs",
     nullptr,
     [](CombineCall& c) {
       c.t.expert_scales.shape = {9, 8};
     },
     kRule,
     {"'expertScales' = (9, 8)", "(8, 8)"}},
    {"AssistInfoBelowATimes128",
     nullptr,
     [](CombineCall& c) { c.t.assist_info.shape = {16383}; },
     kRule,
     {"'assistInfoForCombine' = (16383,)", "16384"}},
    {"AssistInfoBelowATimes128OnSharedRank",
     SharedRank,
     [](CombineCall& c) { c.t.assist_info.shape = {64 * 128 - 1}; },
     kRule,
     {"'assistInfoForCombine' = (8191,)", "8192"}},
    {"AssistInfoOnly3A",
     nullptr,
     [](CombineCall& c) { c.t.assist_info.shape = {384}; },
     kRule,
     {"'assistInfoForCombine' = (384,)", "A * 128 = 16384"}},
    {"EpSendCountsBelowEL",
     nullptr,
     [](CombineCall& c) { c.t.ep_send_counts.shape = {15}; },
     kRule,
     {"'epSendCounts' = (15,)", ">= epWorldSize * localExpertNum = 16"}},
    {"EpSendCountsBelowELWithTwoLocalExperts",
     TwoLocal,
     [](CombineCall& c) { c.t.ep_send_counts.shape = {31}; },
     kRule,
     {"'epSendCounts' = (31,)", ">= epWorldSize * localExpertNum = 32"}},
    {"EpSendCountsBelowEOnSharedRank",
     SharedRank,
     [](CombineCall& c) { c.t.ep_send_counts.shape = {15}; },
     kRule,
     {"'epSendCounts' = (15,)", ">= epWorldSize = 16"}},
    {"EpSendCountsBelowELTimesTp",
     Tp,
     [](CombineCall& c) { c.t.ep_send_counts.shape = {31}; },
     kRule,
     {"'epSendCounts' = (31,)", ">= epWorldSize * localExpertNum * tpWorldSize = 32"}},
    {"TpSendCountsNullWithTp",  // the tiling's check (the wrapper lets an optional input through)
     Tp,
     [](CombineCall& c) { c.t.tp_send_counts = {}; },
     kRule,
     {"'tpSendCounts' = nullptr", "required when tpWorldSize == 2"}},
    {"TpSendCountsNotTp",
     Tp,
     [](CombineCall& c) { c.t.tp_send_counts.shape = {1}; },
     kRule,
     {"'tpSendCounts' = (1,)", "tpWorldSize = 2"}},
    {"ExpandXRowsBelowTpTimesA",
     Tp,
     [](CombineCall& c) {
       c.t.expand_x.shape = {255, 7168};
     },
     kRule,
     {"'expandX' = (255, 7168)", "256"}},
    {"XOutDim0NotBs",
     nullptr,
     [](CombineCall& c) {
       c.t.x.shape = {7, 7168};
     },
     kRule,
     {"'xOut' = (7, 7168)", "(Bs, H)"}},
    {"XOutDim1NotH",
     nullptr,
     [](CombineCall& c) {
       c.t.x.shape = {8, 7167};
     },
     kRule,
     {"'xOut' = (8, 7167)", "(Bs, H)"}},
    {"XOutOverlapping",
     nullptr,
     [](CombineCall& c) {
       c.t.x.strides = {7200, 0};
     },
     kRule,
     {"'xOut'", "strided", "must not overlap"}},
    {"SharedExpertXWithSharedRanks",
     SharedMoeRank,
     [](CombineCall& c) {
       c.t.shared_expert_x = View(DType::kBf16, {8, 7168});
     },
     kRule,
     {"'sharedExpertX' = (8, 7168)", "sharedExpertRankNum == 0"}},
    {"SharedExpertX2DColsNotH",
     nullptr,
     [](CombineCall& c) {
       c.t.shared_expert_x = View(DType::kBf16, {8, 7167});
     },
     kRule,
     {"'sharedExpertX' = (8, 7167)", "(Bs, H)"}},
    {"SharedExpertX2DRowsNotBs",
     nullptr,
     [](CombineCall& c) {
       c.t.shared_expert_x = View(DType::kBf16, {4, 7168});
     },
     kRule,
     {"'sharedExpertX' = (4, 7168)"}},
    {"SharedExpertX3DProductNotBs",
     nullptr,
     [](CombineCall& c) {
       c.t.shared_expert_x = View(DType::kBf16, {3, 3, 7168});
     },
     kRule,
     {"'sharedExpertX' = (3, 3, 7168)", "d0*d1 == Bs"}},
    {"SharedExpertX3DLastNotH",
     nullptr,
     [](CombineCall& c) {
       c.t.shared_expert_x = View(DType::kBf16, {2, 4, 7000});
     },
     kRule,
     {"'sharedExpertX' = (2, 4, 7000)"}},
    // d0 * d1 past int64: 8 * (2^61 + 1) = 2^64 + 8, which wrapped to Bs = 8 and passed the shape rule (a signed
    // overflow); refused by it now.
    {"SharedExpertX3DProductOverflows",
     nullptr,
     [](CombineCall& c) {
       c.t.shared_expert_x = View(DType::kBf16, {8, (int64_t{1} << 61) + 1, 7168});
     },
     kRule,
     {"'sharedExpertX' = (8, 2305843009213693953, 7168)", "d0*d1 == Bs"}},
    {"SharedExpertX1D",
     nullptr,
     [](CombineCall& c) { c.t.shared_expert_x = View(DType::kBf16, {8 * 7168}); },
     kRule,
     {"'sharedExpertX' = (57344,)"}},
    // -- CombineAddRmsNorm (docs/semantics.md 1.4) --
    {"RmsSharedRanks",
     [](Params& p) { Rms(p), SharedMoeRank(p); },
     nullptr,
     kRule,
     {"'sharedExpertRankNum' = 2", "CombineAddRmsNorm"}},
    {"RmsNormEpsNegative",
     Rms,
     [](CombineCall& c) { c.t.norm_eps = -1e-6f; },
     kRule,
     {"'normEps' = -1e-06 violates rule: must be finite and >= 0"}},
    {"RmsNormEpsNegativeSubnormal",
     Rms,
     [](CombineCall& c) { c.t.norm_eps = -1e-40f; },
     kRule,
     {"'normEps' = -9.99995e-41 violates rule: must be finite and >= 0"}},
    {"RmsNormEpsNan",
     Rms,
     [](CombineCall& c) { c.t.norm_eps = std::numeric_limits<float>::quiet_NaN(); },
     kRule,
     {"'normEps' = nan violates rule: must be finite and >= 0"}},
    {"RmsNormEpsInfinite",
     Rms,
     [](CombineCall& c) { c.t.norm_eps = std::numeric_limits<float>::infinity(); },
     kRule,
     {"'normEps' = inf violates rule: must be finite and >= 0"}},
    {"RmsResidualX2D",
     Rms,
     [](CombineCall& c) {
       c.t.residual_x.shape = {8, 7168};
     },
     kRule,
     {"'residualX' = (8, 7168)", "(Bs, 1, H)"}},
    {"RmsResidualXMiddleNot1",
     Rms,
     [](CombineCall& c) {
       c.t.residual_x.shape = {4, 2, 7168};
     },
     kRule,
     {"'residualX' = (4, 2, 7168)"}},
    {"RmsResidualXLastNotH",
     Rms,
     [](CombineCall& c) {
       c.t.residual_x.shape = {8, 1, 7167};
     },
     kRule,
     {"'residualX' = (8, 1, 7167)"}},
    {"RmsGammaNotH",
     Rms,
     [](CombineCall& c) { c.t.gamma.shape = {7167}; },
     kRule,
     {"'gamma' = (7167,)", "(H,) = (7168,)"}},
    {"RmsGamma2D",
     Rms,
     [](CombineCall& c) {
       c.t.gamma.shape = {1, 7168};
     },
     kRule,
     {"'gamma' = (1, 7168)"}},
    {"RmsYOut2D",
     Rms,
     [](CombineCall& c) {
       c.t.y.shape = {8, 7168};
     },
     kRule,
     {"'yOut' = (8, 7168)", "(Bs, 1, H) = (8, 1, 7168)"}},
    {"RmsYOutDim0NotBs",
     Rms,
     [](CombineCall& c) {
       c.t.y.shape = {7, 1, 7168};
     },
     kRule,
     {"'yOut' = (7, 1, 7168)"}},
    {"RmsRstdOut2D",
     Rms,
     [](CombineCall& c) {
       c.t.rstd.shape = {8, 1};
     },
     kRule,
     {"'rstdOut' = (8, 1)", "(Bs, 1, 1) = (8, 1, 1)"}},
    {"RmsRstdOutLastNot1",
     Rms,
     [](CombineCall& c) {
       c.t.rstd.shape = {8, 1, 2};
     },
     kRule,
     {"'rstdOut' = (8, 1, 2)"}},
    {"RmsXOut2D",
     Rms,
     [](CombineCall& c) {
       c.t.x.shape = {8, 7168};
     },
     kRule,
     {"'xOut' = (8, 7168)", "3 dim"}},
    {"RmsXOutMiddleNot1",
     Rms,
     [](CombineCall& c) {
       c.t.x.shape = {4, 2, 7168};
     },
     kRule,
     {"'xOut' = (4, 2, 7168)", "(Bs, 1, H) = (8, 1, 7168)"}},
    {"RmsEpWorldSize1", [](Params& p) { Rms(p), p.e = 1, p.rank = 0; }, nullptr, kRule, {"'epWorldSize' = 1"}},
    // -- window --
    {"EpWindowOneByteShort",
     nullptr,
     [](CombineCall& c) { c.window.ep_bytes = 5636095; },
     kRule,
     {"HCCL_BUFFSIZE", "= 5636095 bytes", "5636096 bytes"}},
    {"TpWindowOneByteShort",
     Tp,
     [](CombineCall& c) { c.window.tp_bytes = 7471103; },
     kRule,
     {"HCCL_BUFFSIZE (TP window)", "7471104 bytes"}},
};
INSTANTIATE_TEST_SUITE_P(Rules, CombineA3Rules, ::testing::ValuesIn(kCombineRules), RowName<CombineRow>);

class CombineA3Accepts : public ::testing::TestWithParam<CombineRow> {};
TEST_P(CombineA3Accepts, Passes) { CheckCombineRow(GetParam(), Profile::kA3); }

const CombineRow kCombinePasses[] = {
    {"Base", nullptr, nullptr, kOk, {}},
    {"Fp16", [](Params& p) { p.dtype = DType::kFp16; }, nullptr, kOk, {}},
    {"CommQuantMode2", [](Params& p) { p.comm_quant = 2; }, nullptr, kOk, {}},
    {"Tp", Tp, nullptr, kOk, {}},
    {"Mask1D", Tokens, nullptr, kOk, {}},
    {"Mask2D", Pairs, nullptr, kOk, {}},
    {"SharedRank", SharedRank, nullptr, kOk, {}},
    {"SharedMoeRank", SharedMoeRank, nullptr, kOk, {}},
    {"TwoLocalExperts", TwoLocal, nullptr, kOk, {}},
    {"GlobalBsAboveBsTimesE", [](Params& p) { p.global_bs = 256; }, nullptr, kOk, {}},
    {"EpWorldSize2", [](Params& p) { p.e = 2, p.moe = 2, p.k = 2, p.rank = 1; }, nullptr, kOk, {}},
    {"EpWorldSize768", [](Params& p) { p.e = 768, p.moe = 768, p.rank = 767; }, nullptr, kOk, {}},
    {"Bs512H1024", [](Params& p) { p.bs = 512, p.h = 1024; }, nullptr, kOk, {}},
    {"H8192K16", [](Params& p) { p.h = 8192, p.k = 16, p.moe = 32; }, nullptr, kOk, {}},
    {"SharedExpertX2D",
     nullptr,
     [](CombineCall& c) {
       c.t.shared_expert_x = View(DType::kBf16, {8, 7168});
     },
     kOk,
     {}},
    {"SharedExpertX3D",
     nullptr,
     [](CombineCall& c) {
       c.t.shared_expert_x = View(DType::kBf16, {2, 4, 7168});
     },
     kOk,
     {}},
    {"SharedExpertX3DLeading1",
     nullptr,
     [](CombineCall& c) {
       c.t.shared_expert_x = View(DType::kBf16, {1, 8, 7168});
     },
     kOk,
     {}},
    {"AssistInfoExactlyATimes128", nullptr, [](CombineCall& c) { c.t.assist_info.shape = {16384}; }, kOk, {}},
    {"TpSendCountsAbsentWithoutTp", nullptr, [](CombineCall& c) { c.t.tp_send_counts = {}; }, kOk, {}},
    {"EpWindowExactlyTheRule", nullptr, [](CombineCall& c) { c.window.ep_bytes = 5636096; }, kOk, {}},
    {"Rms", Rms, nullptr, kOk, {}},
    {"RmsWithMask", [](Params& p) { Rms(p), Tokens(p); }, nullptr, kOk, {}},
    {"RmsWithSharedExpertX",
     Rms,
     [](CombineCall& c) {
       c.t.shared_expert_x = View(DType::kBf16, {8, 7168});
     },
     kOk,
     {}},
    {"RmsTp", [](Params& p) { Rms(p), Tp(p); }, nullptr, kOk, {}},
    {"RmsNormEpsZero", Rms, [](CombineCall& c) { c.t.norm_eps = 0.0f; }, kOk, {}},
    {"RmsNormEpsLargest", Rms, [](CombineCall& c) { c.t.norm_eps = std::numeric_limits<float>::max(); }, kOk, {}},
};
INSTANTIATE_TEST_SUITE_P(Valid, CombineA3Accepts, ::testing::ValuesIn(kCombinePasses), RowName<CombineRow>);

// ==== native profile (docs/semantics.md 0): product limits relaxed, nonsense still rejected
// =================================

// Small native base: E=4, moe=8, Bs=4, H=32, K=2.
void NativeSmall(Params& p) { p.e = 4, p.rank = 1, p.moe = 8, p.bs = 4, p.h = 32, p.k = 2, p.tp = 1; }

class NativeProfileDispatch : public ::testing::TestWithParam<DispatchRow> {};
TEST_P(NativeProfileDispatch, Outcome) { CheckDispatchRow(GetParam(), Profile::kNative); }

const DispatchRow kNativeDispatch[] = {
    // Relaxed: each of these fails under kA3 (see NativeRelaxationsFailUnderA3).
    {"AcceptsSmallCall", NativeSmall, nullptr, kOk, {}},
    {"AcceptsEpWorldSize1", [](Params& p) { NativeSmall(p), p.e = 1, p.rank = 0; }, nullptr, kOk, {}},
    {"AcceptsEpWorldSize1024",
     [](Params& p) { NativeSmall(p), p.e = 1024, p.moe = 1024, p.rank = 1000; },
     nullptr,
     kOk,
     {}},
    {"AcceptsH7", [](Params& p) { NativeSmall(p), p.h = 7; }, nullptr, kOk, {}},
    {"AcceptsH1", [](Params& p) { NativeSmall(p), p.h = 1; }, nullptr, kOk, {}},
    {"AcceptsH10000", [](Params& p) { NativeSmall(p), p.h = 10000; }, nullptr, kOk, {}},
    {"AcceptsBs1000", [](Params& p) { NativeSmall(p), p.bs = 1000; }, nullptr, kOk, {}},
    {"AcceptsK20", [](Params& p) { NativeSmall(p), p.moe = 32, p.k = 20; }, nullptr, kOk, {}},
    {"AcceptsMoeExpertNum2048", [](Params& p) { NativeSmall(p), p.moe = 2048; }, nullptr, kOk, {}},
    {"AcceptsLocalExpertsTimesEAbove2048",
     [](Params& p) { NativeSmall(p), p.e = 64, p.s = 48, p.moe = 1024; },
     nullptr,
     kOk,
     {}},
    // Still rejected: zero / negative sizes and inconsistent attributes.
    {"RejectsEpWorldSize0",
     [](Params& p) { NativeSmall(p), p.e = 0, p.rank = 0; },
     nullptr,
     kRule,
     {"'ep.size()' = 0"}},
    {"RejectsEpWorldSizeMinus2",
     [](Params& p) { NativeSmall(p), p.e = -2, p.rank = 0; },
     nullptr,
     kRule,
     {"'ep.size()' = -2"}},
    {"RejectsEpWorldSizeAboveFlagArea",
     [](Params& p) { NativeSmall(p), p.e = 65537; },
     nullptr,
     kRule,
     {"'ep.size()' = 65537"}},
    {"RejectsEpRankIdEqualsE", [](Params& p) { NativeSmall(p), p.rank = 4; }, nullptr, kRule, {"'ep.rank()' = 4"}},
    {"RejectsBs0", [](Params& p) { NativeSmall(p), p.bs = 0; }, nullptr, kRule, {"'Bs (x.dim0)' = 0"}},
    {"RejectsNegativeBs", [](Params& p) { NativeSmall(p), p.bs = -3; }, nullptr, kRule, {"'Bs (x.dim0)' = -3"}},
    {"RejectsH0", [](Params& p) { NativeSmall(p), p.h = 0; }, nullptr, kRule, {"'H (x.dim1)' = 0"}},
    {"RejectsNegativeH", [](Params& p) { NativeSmall(p), p.h = -32; }, nullptr, kRule, {"'H (x.dim1)' = -32"}},
    {"RejectsK0", [](Params& p) { NativeSmall(p), p.k = 0; }, nullptr, kRule, {"'K (expert_ids.dim1)' = 0"}},
    {"RejectsKAboveMoeExpertNum",
     [](Params& p) { NativeSmall(p), p.k = 9; },
     nullptr,
     kRule,
     {"'K (expert_ids.dim1)' = 9", "moeExpertNum = 8"}},
    {"RejectsMoeExpertNum0",
     [](Params& p) { NativeSmall(p), p.moe = 0; },
     nullptr,
     kRule,
     {"'ExpertLayout::moe_expert_num' = 0"}},
    {"RejectsNegativeMoeExpertNum",
     [](Params& p) { NativeSmall(p), p.moe = -8; },
     nullptr,
     kRule,
     {"'ExpertLayout::moe_expert_num' = -8"}},
    {"RejectsMoeExpertNumNotMultiple",
     [](Params& p) { NativeSmall(p), p.moe = 6; },
     nullptr,
     kRule,
     {"'ExpertLayout::moe_expert_num' = 6"}},
    {"RejectsSharedRankNumEqualsE",
     [](Params& p) { NativeSmall(p), p.s = 4; },
     nullptr,
     kRule,
     {"'ExpertLayout::shared_expert_rank_num' = 4"}},
    {"RejectsNegativeGlobalBs",
     [](Params& p) { NativeSmall(p), p.global_bs = -16; },
     nullptr,
     kRule,
     {"'ExpertLayout::global_bs' = -16"}},
    {"RejectsGlobalBsBeyondCombineFlags",
     [](Params& p) { NativeSmall(p), p.global_bs = int64_t{4} << 22; },
     nullptr,
     kRule,
     {"'ExpertLayout::global_bs' = 16777216", "4194304"}},
    {"RejectsTpWorldSize3", [](Params& p) { NativeSmall(p), p.tp = 3; }, nullptr, kRule, {"'tp.size()' = 3"}},
    {"RejectsQuantMode1",
     [](Params& p) { NativeSmall(p), p.quant = 1; },
     nullptr,
     kRule,
     {"'DispatchOptions::quant' = 1"}},
    {"RejectsNullX", NativeSmall, [](DispatchCall& c) { c.t.x = {}; }, kNull, {"'x' = nullptr"}},
    {"RejectsWrongDtype",
     NativeSmall,
     [](DispatchCall& c) { c.t.expert_ids.dtype = DType::kInt8; },
     kDtype,
     {"'expert_ids' = int8"}},
    {"RejectsExpandXBelowA",
     NativeSmall,
     [](DispatchCall& c) {
       c.t.expand_x.shape = {31, 32};
     },
     kRule,
     {"'DispatchOutputs::expand_x' = (31, 32)", "32"}},
    // Window: E=4, L=2, maxBs=4, H=32 (tokC = tokD = 512), K=2 -> 2*(4*512*8 + 4*512*2) = 40960.
    {"RejectsWindowTooSmall",
     NativeSmall,
     [](DispatchCall& c) { c.window.ep_bytes = 40959; },
     kRule,
     {"GroupOptions::window_bytes (MOE_EP_WINDOW_MB)", "40960 bytes"}},
    {"AcceptsWindowExactlyTheRule", NativeSmall, [](DispatchCall& c) { c.window.ep_bytes = 40960; }, kOk, {}},
    {"RejectsHugeHAgainstWindow",
     [](Params& p) { NativeSmall(p), p.h = int64_t{1} << 30; },
     nullptr,
     kRule,
     {"GroupOptions::window_bytes (MOE_EP_WINDOW_MB)"}},
    {"RejectsHAboveInt32",
     [](Params& p) { NativeSmall(p), p.h = int64_t{1} << 40; },
     nullptr,
     kRule,
     {"'H (x.dim1)' = 1099511627776", "INT32_MAX"}},
};
INSTANTIATE_TEST_SUITE_P(Native, NativeProfileDispatch, ::testing::ValuesIn(kNativeDispatch), RowName<DispatchRow>);

// The "Accepts" rows of the native table are product-limit violations: A3 rejects each (the small base excepted).
TEST(NativeProfile, NativeRelaxationsFailUnderA3) {
  for (const DispatchRow& row : kNativeDispatch) {
    const std::string name = row.name;
    if (name.rfind("Accepts", 0) != 0 || name == "AcceptsSmallCall" || name == "AcceptsWindowExactlyTheRule") {
      continue;
    }
    Params p;
    row.params(p);
    DispatchCall call = MakeDispatch(p);
    call.profile = Profile::kA3;
    try {
      RunDispatch(call);
      ADD_FAILURE() << name << " passes under kA3";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), kRule) << name << ": " << e.what();
    }
  }
}

class NativeProfileCombine : public ::testing::TestWithParam<CombineRow> {};
TEST_P(NativeProfileCombine, Outcome) { CheckCombineRow(GetParam(), Profile::kNative); }

const CombineRow kNativeCombine[] = {
    {"AcceptsSmallCall", NativeSmall, nullptr, kOk, {}},
    {"AcceptsEpWorldSize1", [](Params& p) { NativeSmall(p), p.e = 1, p.rank = 0; }, nullptr, kOk, {}},
    {"AcceptsH7", [](Params& p) { NativeSmall(p), p.h = 7; }, nullptr, kOk, {}},
    {"AcceptsBs1000", [](Params& p) { NativeSmall(p), p.bs = 1000; }, nullptr, kOk, {}},
    // Native handles keep only the triples that exist: no A*128 minimum.
    {"AcceptsAssistInfoOfTheRowsOnly", NativeSmall, [](CombineCall& c) { c.t.assist_info.shape = {0}; }, kOk, {}},
    {"AcceptsRmsH7", [](Params& p) { NativeSmall(p), Rms(p), p.h = 7; }, nullptr, kOk, {}},
    {"RejectsEpWorldSize0",
     [](Params& p) { NativeSmall(p), p.e = 0, p.rank = 0; },
     nullptr,
     kRule,
     {"'ep.size()' = 0"}},
    {"RejectsBs0", [](Params& p) { NativeSmall(p), p.bs = 0; }, nullptr, kRule, {"= 0", ">= 1"}},
    {"RejectsH0", [](Params& p) { NativeSmall(p), p.h = 0; }, nullptr, kRule, {"= 0", "in [1, INT32_MAX]"}},
    {"RejectsK0", [](Params& p) { NativeSmall(p), p.k = 0; }, nullptr, kRule, {"'K (expert_ids.dim1)' = 0"}},
    {"RejectsCommQuantMode1",
     [](Params& p) { NativeSmall(p), p.comm_quant = 1; },
     nullptr,
     kRule,
     {"'CombineOptions::comm_quant' = 1"}},
    {"RejectsRmsFp16",
     [](Params& p) { NativeSmall(p), Rms(p), p.dtype = DType::kFp16; },
     nullptr,
     kDtype,
     {"'expert_out' = fp16"}},
    {"RejectsWindowTooSmall",
     NativeSmall,
     [](CombineCall& c) { c.window.ep_bytes = 40959; },
     kRule,
     {"GroupOptions::window_bytes (MOE_EP_WINDOW_MB)", "40960 bytes"}},
};
INSTANTIATE_TEST_SUITE_P(Native, NativeProfileCombine, ::testing::ValuesIn(kNativeCombine), RowName<CombineRow>);

}  // namespace
}  // namespace moe_ep::plan

// ==== the native API on thread ranks ==============================================================================

namespace moe_ep {
namespace {

using std::chrono::milliseconds;

constexpr int kRanks = 4;
constexpr int64_t kBs = 4, kHidden = 32, kTopK = 2, kMoe = 8;
constexpr int64_t kRows = kBs * kRanks * kTopK;  // A = globalBs * min(L, K) = 16 * 2
constexpr uint8_t kPoison = 0xA7;
const ExpertLayout kExperts{kMoe, 0, 0, 0, 0, 0, 0, {}};

DispatchOptions Options() {
  DispatchOptions options;
  options.experts = kExperts;
  return options;
}

std::vector<Group> MakeGroups(milliseconds timeout = milliseconds(2000), uint64_t window = 16 << 20) {
  GroupOptions options;
  options.timeout = timeout;
  options.window_bytes = window;
  options.name = "validation";
  return CreateThreadGroups(kRanks, options);
}

// One rank's inputs: x random normal bf16 numbers (from the run's seed and the rank: alike each time they are made),
// two distinct experts per token, weights 0.5, so that a combine gives x back bit for bit (0.5x + 0.5x is x exactly)
// and a row that went astray shows.
struct RankInputs {
  std::vector<uint16_t> x;
  std::vector<int32_t> ids;
  std::vector<float> weights = std::vector<float>(kBs * kTopK, 0.5f);
  explicit RankInputs(int rank) {
    std::mt19937_64 rng(moe_ep::testing::BaseSeed() ^ (0x7A11Dull * 1000003 + static_cast<uint64_t>(rank)));
    for (int64_t i = 0; i < kBs * kHidden; ++i) {
      const uint64_t sign = rng() & 1, exponent = 100 + rng() % 50, mantissa = rng() & 0x7F;
      x.push_back(static_cast<uint16_t>(sign << 15 | exponent << 7 | mantissa));
    }
    for (int64_t t = 0; t < kBs; ++t) {
      for (int64_t k = 0; k < kTopK; ++k) ids.push_back(static_cast<int32_t>((rank + t + 3 * k) % kMoe));
    }
  }
  TensorView X() { return TensorView(x.data(), DType::kBf16, {kBs, kHidden}); }
  TensorView Ids() { return TensorView(ids.data(), DType::kInt32, {kBs, kTopK}); }
  TensorView Weights() { return TensorView(weights.data(), DType::kFloat32, {kBs, kTopK}); }
};

// Poisoned output buffers of one rank (dispatch and combine), checked byte for byte afterwards.
struct PoisonedOutputs {
  std::vector<std::vector<uint8_t>> buffers;
  DispatchOutputs dispatch;
  TensorView x_out, y, rstd, x_rms;

  void* Buffer(size_t bytes) {
    buffers.emplace_back(bytes, kPoison);
    return buffers.back().data();
  }
  PoisonedOutputs() {
    buffers.reserve(16);
    dispatch.expand_x = TensorView(Buffer(kRows * kHidden * 2), DType::kBf16, {kRows, kHidden});
    dispatch.assist_info = TensorView(Buffer(3 * kRows * 4), DType::kInt32, {3 * kRows});
    dispatch.expert_token_nums = TensorView(Buffer(2 * 8), DType::kInt64, {2});
    dispatch.ep_recv_counts = TensorView(Buffer(kRanks * 2 * 4), DType::kInt32, {kRanks * 2});
    dispatch.tp_recv_counts = TensorView(Buffer(4), DType::kInt32, {1});
    x_out = TensorView(Buffer(kBs * kHidden * 2), DType::kBf16, {kBs, kHidden});
    y = TensorView(Buffer(kBs * kHidden * 2), DType::kBf16, {kBs, 1, kHidden});
    rstd = TensorView(Buffer(kBs * 4), DType::kFloat32, {kBs, 1, 1});
    x_rms = TensorView(Buffer(kBs * kHidden * 2), DType::kBf16, {kBs, 1, kHidden});
  }
  // Index of the first buffer holding a byte other than the poison, or -1.
  int FirstTouched() const {
    for (size_t i = 0; i < buffers.size(); ++i) {
      if (std::any_of(buffers[i].begin(), buffers[i].end(), [](uint8_t b) { return b != kPoison; })) {
        return static_cast<int>(i);
      }
    }
    return -1;
  }
};

// Rethrows `error` and checks it is a moe_ep::Error (not a timeout) with `code` and every needle.
void ExpectRankError(const std::exception_ptr& error, int rank, ErrorCode code,
                     const std::vector<std::string>& needles) {
  ASSERT_TRUE(error) << "rank " << rank << " did not throw";
  try {
    std::rethrow_exception(error);
  } catch (const TimeoutError& e) {
    ADD_FAILURE() << "rank " << rank << " timed out instead of failing validation: " << e.what();
  } catch (const Error& e) {
    EXPECT_EQ(static_cast<int>(e.code()), static_cast<int>(code)) << "rank " << rank << ": " << e.what();
    for (const std::string& n : needles) {
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << "rank " << rank << ": " << e.what();
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "rank " << rank << " threw a non-moe_ep exception: " << e.what();
  }
}

// Every rank calls DispatchInto with the same kind of mistake: all fail at validation, before any wait.
void ExpectDispatchRejectedEverywhere(
    const std::function<void(RankInputs&, PoisonedOutputs&, TensorView&, TensorView&)>& spoil, ErrorCode code,
    const std::vector<std::string>& needles) {
  auto groups = MakeGroups();
  std::vector<PoisonedOutputs> outs(kRanks);
  const auto start = std::chrono::steady_clock::now();
  const auto errors = moe_ep::verify::RunRanksCollect(kRanks, [&](int r) {
    RankInputs in(r);
    TensorView x = in.X(), ids = in.Ids();
    spoil(in, outs[r], x, ids);
    DispatchInto(groups[r], x, ids, Options(), outs[r].dispatch);
  });
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000)) << "validation must not wait";
  for (int r = 0; r < kRanks; ++r) {
    ExpectRankError(errors[r], r, code, needles);
    EXPECT_EQ(outs[r].FirstTouched(), -1) << "rank " << r << " wrote into an output of a rejected call";
  }
}

TEST(NativeApi, WrongDtypeThrowsAndLeavesOutputsUntouched) {
  std::vector<float> x32(kBs * kHidden, 1.0f);
  ExpectDispatchRejectedEverywhere(
      [&](RankInputs&, PoisonedOutputs&, TensorView& x, TensorView&) {
        x = TensorView(x32.data(), DType::kFloat32, {kBs, kHidden});
      },
      ErrorCode::kInvalidParam, {"Dispatch", "'x' = float32", "bf16 or fp16"});
}

TEST(NativeApi, WrongExpertIdsShapeThrowsAndLeavesOutputsUntouched) {
  ExpectDispatchRejectedEverywhere(
      [](RankInputs& in, PoisonedOutputs&, TensorView&, TensorView& ids) {
        ids = TensorView(in.ids.data(), DType::kInt32, {kBs - 1, kTopK});
      },
      ErrorCode::kInvalidConfig, {"Dispatch", "'expert_ids' = (3, 2) int32", "Bs = 4"});
}

TEST(NativeApi, TooSmallOutputThrowsAndLeavesOutputsUntouched) {
  ExpectDispatchRejectedEverywhere(
      [](RankInputs&, PoisonedOutputs& out, TensorView&, TensorView&) {
        out.dispatch.expand_x.shape = {kRows - 1, kHidden};
      },
      ErrorCode::kInvalidConfig, {"Dispatch", "'DispatchOutputs::expand_x' = (31, 32)", "32"});
}

TEST(NativeApi, WrongOutputDtypeThrowsAndLeavesOutputsUntouched) {
  ExpectDispatchRejectedEverywhere(
      [](RankInputs&, PoisonedOutputs& out, TensorView&, TensorView&) {
        out.dispatch.ep_recv_counts.dtype = DType::kInt64;
        out.dispatch.ep_recv_counts.shape = {kRanks};  // same bytes
      },
      ErrorCode::kInvalidParam, {"Dispatch", "'DispatchOutputs::ep_recv_counts' = int64"});
}

TEST(NativeApi, NegativeExpertIdOnEveryRankThrowsEverywhereWithoutWaiting) {
  ExpectDispatchRejectedEverywhere(
      [](RankInputs& in, PoisonedOutputs&, TensorView&, TensorView&) { in.ids[1 * kTopK + 0] = -1; },
      ErrorCode::kInvalidParam, {"'expert_ids'", "-1", "[1, 0]", "ExpertLayout::moe_expert_num (8)"});
}

// Window rule for this call: E=4, L=2, maxBs=4, H=32 -> tokC = tokD = 512: 2*(4*512*8 + 4*512*2) = 40960 bytes.
TEST(NativeApi, WindowTooSmallNamesTheRequiredSize) {
  auto groups = MakeGroups(milliseconds(2000), 36864);  // 9 pages; the thread transport rounds up to 4096
  std::vector<PoisonedOutputs> outs(kRanks);
  const auto errors = moe_ep::verify::RunRanksCollect(kRanks, [&](int r) {
    RankInputs in(r);
    DispatchInto(groups[r], in.X(), in.Ids(), Options(), outs[r].dispatch);
  });
  for (int r = 0; r < kRanks; ++r) {
    ExpectRankError(errors[r], r, ErrorCode::kInvalidConfig,
                    {"GroupOptions::window_bytes (MOE_EP_WINDOW_MB)", "36864 bytes", "40960 bytes"});
    EXPECT_EQ(outs[r].FirstTouched(), -1) << "rank " << r;
  }
}

// Options out of their ranges are refused when the group is made, naming the field, its value and its range: a
// window past 2^40 bytes would wrap the size of each rank's segment (a process group then wrote past it); a process
// group's name with a '/' failed in the shared-memory transport, naming neither the option nor its value.
TEST(NativeApi, GroupOptionsOutOfRangeAreRefusedByName) {
  struct Bad {
    const char* field;
    std::function<void(GroupOptions&)> set;
    const char* value;
  };
  const std::vector<Bad> bad = {
      {"window_bytes", [](GroupOptions& o) { o.window_bytes = ~uint64_t{0} << 20; }, "18446744073708503040"},
      {"window_bytes", [](GroupOptions& o) { o.window_bytes = (uint64_t{1} << 40) + 1; }, "1099511627777"},
      {"threads", [](GroupOptions& o) { o.threads = -1; }, "-1"},
      {"threads", [](GroupOptions& o) { o.threads = 1025; }, "1025"},
      {"timeout", [](GroupOptions& o) { o.timeout = milliseconds(-5); }, "-5 ms"},
      {"timeout", [](GroupOptions& o) { o.timeout = milliseconds::max(); }, "9223372036854775807 ms"},
      {"data_path", [](GroupOptions& o) { o.data_path = static_cast<DataPath>(7); }, "7"},
  };
  for (const Bad& b : bad) {
    GroupOptions options;
    b.set(options);
    SCOPED_TRACE(std::string(b.field) + " = " + b.value);
    try {
      CreateThreadGroups(2, options);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidParam);
      EXPECT_NE(std::string(e.what()).find(std::string("GroupOptions::") + b.field + " = " + b.value + ": must be"),
                std::string::npos)
          << e.what();
    }
    try {
      JoinProcessGroup({0, 2, "optionstest"}, options);
      ADD_FAILURE() << "a process group accepted it";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidParam) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::string("GroupOptions::") + b.field), std::string::npos) << e.what();
    }
  }
  // A process group's name names its shared-memory segments: no '/', no NUL. A thread group's is a label.
  for (const std::string& name : {std::string("a/b"), std::string("a\0b", 3)}) {
    GroupOptions options;
    options.name = name;
    EXPECT_NO_THROW(CreateThreadGroups(2, options));
    try {
      JoinProcessGroup({0, 2, "optionstest"}, options);
      ADD_FAILURE() << "a process group accepted it";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidParam) << e.what();
      const std::string shown = name == "a/b" ? "'a/b'" : "'a\\0b'";
      EXPECT_NE(std::string(e.what()).find("GroupOptions::name = " + shown + ": must be without '/' and NUL"),
                std::string::npos)
          << e.what();
    }
  }
}

// A process group's join reads the variables its communicator reads before it meets its peers: a rank that refuses
// one fails at once naming it (it used to join, then fail alone, leaving its peers a group short of a rank).
TEST(NativeApi, AJoinRefusesABadCommunicatorVariableBeforeMeetingItsPeers) {
  for (const auto& [variable, value] : {std::pair{"MOE_EP_THREADS", "abc"}, std::pair{"MOE_EP_DATA_PATH", "fast"},
                                        std::pair{"MOE_EP_THREAD_MIN_BYTES", "-1"}}) {
    SCOPED_TRACE(variable);
    const moe_ep::testing::ScopedEnv bad(variable, value);
    GroupOptions options;
    options.timeout = milliseconds(2000);  // rank 1 never comes: a join that waited for it fails otherwise
    try {
      JoinProcessGroup({0, 2, "envjointest"}, options);
      ADD_FAILURE() << "joined";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidParam) << e.what();
      EXPECT_NE(std::string(e.what()).find(variable), std::string::npos) << e.what();
    }
    EXPECT_TRUE(moe_ep::testing::ThrowsError([] { CreateThreadGroups(2); }, ErrorCode::kInvalidParam, variable));
  }
  // A variable the options override is not read, so not refused either.
  const moe_ep::testing::ScopedEnv threads("MOE_EP_THREADS", "abc"), path("MOE_EP_DATA_PATH", "fast"),
      cross("MOE_EP_CROSS_MEMORY", "maybe");
  GroupOptions given;
  given.threads = 2;
  given.data_path = DataPath::kPush;
  EXPECT_NO_THROW(CreateThreadGroups(2, given));
}

// Groups are told apart by name and members: "ep-2" of job rank 3 alone and "ep" of ranks 2 and 3 once shared one
// string ("ep-2-3"), so rank 3, a member of both, counted them as one and took another segment index than rank 2: the
// second join timed out.
TEST(NativeApi, ProcessGroupsOfNamesAndMembersThatReadAlikeAreApart) {
  const std::string job = "apart" + std::to_string(getpid());
  GroupOptions pair_options, alone_options;
  pair_options.timeout = alone_options.timeout = milliseconds(5000);
  pair_options.name = "ep";
  alone_options.name = "ep-2";
  std::exception_ptr error;
  std::thread rank2([&] {
    try {
      Group pair = JoinProcessGroup({2, 4, job}, std::vector<int>{2, 3}, pair_options);
      Barrier(pair);
    } catch (...) {
      error = std::current_exception();
    }
  });
  try {
    Group alone = JoinProcessGroup({3, 4, job}, std::vector<int>{3}, alone_options);
    Group pair = JoinProcessGroup({3, 4, job}, std::vector<int>{2, 3}, pair_options);
    Barrier(pair);
    EXPECT_EQ(pair.size(), 2);
    EXPECT_EQ(alone.size(), 1);
  } catch (const Error& e) {
    ADD_FAILURE() << "rank 3: " << e.what();
  }
  rank2.join();
  if (error) std::rethrow_exception(error);
}

// A Group moved from is an error to use, not a crash; the one it moved to works.
TEST(NativeApi, AMovedFromGroupIsRefused) {
  std::vector<Group> groups = CreateThreadGroups(1);
  Group moved = std::move(groups[0]);
  for (const auto& use : std::vector<std::function<void()>>{
           [&] { (void)groups[0].rank(); }, [&] { (void)groups[0].name(); }, [&] { Barrier(groups[0]); },
           [&] { BufferReset(groups[0]); }, [&] { (void)ProbeReachable(groups[0]); }}) {
    try {
      use();
      ADD_FAILURE() << "a moved-from group was used";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidParam);
      EXPECT_NE(std::string(e.what()).find("Group: used after it was moved from"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(moved.size(), 1);
  EXPECT_NO_THROW(Barrier(moved));
}

// ProbeReachable's wait is bounded as GroupOptions::timeout is: milliseconds::max() wrapped its deadline into the past,
// and the probe marked every peer unreachable at once.
TEST(NativeApi, ProbeReachableRefusesAWaitPastTheLongest) {
  std::vector<Group> groups = CreateThreadGroups(1);
  for (const milliseconds wait : {milliseconds::max(), milliseconds((int64_t{1} << 31) + 1)}) {
    try {
      (void)ProbeReachable(groups[0], wait);
      ADD_FAILURE() << "accepted " << wait.count() << " ms";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidParam);
      EXPECT_NE(std::string(e.what()).find("ProbeReachable: parameter 'wait' = " + std::to_string(wait.count())),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(ProbeReachable(groups[0], milliseconds(int64_t{1} << 31)), std::vector<int32_t>{1});
}

// A group size outside [1, kMaxGroupRanks] is refused before any window is made, naming it: a group of more ranks
// than a window has flags per step could not run a collective (and one of 2^20 thread ranks failed as an internal
// error of the allocation).
TEST(NativeApi, GroupsThatCannotBeMadeAreRefusedByName) {
  for (const int size : {0, -3, kMaxGroupRanks + 1, 1 << 20}) {
    SCOPED_TRACE("size = " + std::to_string(size));
    try {
      CreateThreadGroups(size);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidParam);
      EXPECT_NE(std::string(e.what()).find("parameter 'size' = " + std::to_string(size) + " must be in [1, 65536]"),
                std::string::npos)
          << e.what();
    }
  }
  // Of the job's world, of a member list, a job whose rendezvous cannot name its segments (as MOE_EP_RENDEZVOUS
  // would be refused), a rank outside its job, members outside it, repeated or without this rank: each refused before
  // anything is made (the default member list of a job of 2^31 - 1 ranks was allocated before its size was checked),
  // naming what is wrong.
  std::vector<int> members(kMaxGroupRanks + 1);
  std::iota(members.begin(), members.end(), 0);
  const std::string long_token(129, 't');
  const struct {
    std::function<void()> join;
    std::string named;
  } joins[] = {
      {[] {
         JoinProcessGroup({0, kMaxGroupRanks + 1, "sizetest"});
       },
       "JoinProcessGroup: job.world_size = 65537 (no members given: the group is the whole job) violates rule: at "
       "most 65536 ranks"},
      {[] {
         JoinProcessGroup({0, std::numeric_limits<int>::max(), "sizetest"});
       },
       "JoinProcessGroup: job.world_size = 2147483647 violates rule: in [1, 1048576]"},
      {[] {
         JoinProcessGroup({0, 0, "sizetest"});
       },
       "JoinProcessGroup: job.world_size = 0 violates rule"},
      {[] {
         JoinProcessGroup({2, 2, "sizetest"});
       },
       "JoinProcessGroup: job.rank = 2 violates rule: in [0, job.world_size = 2)"},
      {[] {
         JoinProcessGroup({-1, 2, "sizetest"});
       },
       "JoinProcessGroup: job.rank = -1 violates rule"},
      {[&] {
         JoinProcessGroup({0, kMaxGroupRanks, "sizetest"}, members);
       },
       "JoinProcessGroup: parameter 'members' (65537 ranks) violates rule: at most 65536 ranks"},
      {[] {
         JoinProcessGroup({0, 4, "sizetest"}, std::vector<int>{0, 2, 4});
       },
       "JoinProcessGroup: parameter 'members[2]' = 4 violates rule: a job rank in [0, job.world_size = 4)"},
      {[] {
         JoinProcessGroup({0, 4, "sizetest"}, std::vector<int>{0, 2, 1, 2});
       },
       "JoinProcessGroup: parameter 'members[3]' = 2 violates rule: the members are distinct; it repeats members[1]"},
      {[] {
         JoinProcessGroup({0, 4, "sizetest"}, std::vector<int>{3, 1});
       },
       "JoinProcessGroup: parameter 'members' (2 ranks) violates rule: must include this rank, job.rank = 0"},
      {[&] {
         JoinProcessGroup({0, 2, long_token});
       },
       "JoinProcessGroup: job.rendezvous (129 characters: 'tttttttttttttttttttttttttttttttt...') must be 1 to 128 "
       "characters without '/' and NUL"},
      {[] {
         JoinProcessGroup({0, 2, "a/b"});
       },
       "JoinProcessGroup: job.rendezvous (3 characters: 'a/b') must be"},
      {[] {  // shm_open would cut the name there: jobs "a\0b" and "a\0c" would meet as "a"
         JoinProcessGroup({0, 2, std::string("a\0b", 3)});
       },
       "JoinProcessGroup: job.rendezvous (3 characters: 'a\\0b') must be"},
  };
  for (const auto& j : joins) {
    SCOPED_TRACE(j.named);
    try {
      j.join();
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig) << e.what();
      EXPECT_NE(std::string(e.what()).find(j.named), std::string::npos) << e.what();
    }
  }
}

// Sizing the outputs checks the window too: Dispatch sizes its outputs that way, so it never allocates the
// outputs of a call that cannot run (a fuzzer once had it allocate 16 GiB for one).
TEST(NativeApi, OutputSizesRefuseACallTheWindowCannotHold) {
  auto groups = MakeGroups(milliseconds(2000), 36864);
  RankInputs in(0);
  std::exception_ptr error;
  try {
    DispatchOutputSizes(groups[0], in.X(), in.Ids(), Options());
  } catch (...) {
    error = std::current_exception();
  }
  ExpectRankError(error, 0, ErrorCode::kInvalidConfig,
                  {"GroupOptions::window_bytes (MOE_EP_WINDOW_MB)", "36864 bytes", "40960 bytes"});
}

// The same call in a window of exactly the rule's size runs end to end (the layout fits the rule it checks).
TEST(NativeApi, WindowOfExactlyTheRuleRuns) {
  auto groups = MakeGroups(milliseconds(2000), 40960);
  moe_ep::verify::RunRanks(kRanks, [&](int r) {
    RankInputs in(r);
    DispatchResult res = Dispatch(groups[r], in.X(), in.Ids(), Options());
    const Tensor x = Combine(groups[r], res.handle, res.expand_x.view(), in.Weights());
    for (int64_t i = 0; i < x.numel(); ++i)
      ASSERT_EQ(x.data_as<uint16_t>()[i], in.x[i]) << "rank " << r << " element " << i;
  });
}

// An out-of-range id on one rank: that rank fails before sending anything; the others wait for its counts
// and fail at the deadline with a TimeoutError naming it. No rank writes its outputs.
TEST(NativeApi, ExpertIdOutOfRangeOnOneRankTimesOutTheOthersNamingIt) {
  constexpr int kBad = 2;
  auto groups = MakeGroups(milliseconds(300));
  std::vector<PoisonedOutputs> outs(kRanks);
  const auto start = std::chrono::steady_clock::now();
  const auto errors = moe_ep::verify::RunRanksCollect(kRanks, [&](int r) {
    RankInputs in(r);
    if (r == kBad) in.ids[1 * kTopK + 1] = static_cast<int32_t>(kMoe);
    DispatchInto(groups[r], in.X(), in.Ids(), Options(), outs[r].dispatch);
  });
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(3000)) << "waits must end at the deadline";
  ExpectRankError(errors[kBad], kBad, ErrorCode::kInvalidParam,
                  {"'expert_ids'", "value 8", "[1, 1]", "ExpertLayout::moe_expert_num (8)"});
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(outs[r].FirstTouched(), -1) << "rank " << r << " wrote into its outputs";
    if (r == kBad) continue;
    ASSERT_TRUE(errors[r]) << "rank " << r << " should have timed out";
    try {
      std::rethrow_exception(errors[r]);
    } catch (const TimeoutError& e) {
      EXPECT_EQ(e.code(), ErrorCode::kTimeout);
      EXPECT_EQ(e.missing_ranks(), std::vector<int>{kBad}) << e.what();
      EXPECT_NE(std::string(e.what()).find("rank 2"), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "rank " << r << " threw something else: " << e.what();
    }
  }
}

// Bad combine calls (after a good dispatch) fail at validation on every rank, leave x / y / rstd untouched,
// and leave the group usable: a correct combine afterwards succeeds.
TEST(NativeApi, BadCombineCallsThrowLeaveOutputsUntouchedAndGroupUsable) {
  auto groups = MakeGroups();
  std::vector<PoisonedOutputs> outs(kRanks);
  std::vector<DispatchResult> results(kRanks);
  moe_ep::verify::RunRanks(kRanks, [&](int r) {
    RankInputs in(r);
    results[r] = Dispatch(groups[r], in.X(), in.Ids(), Options());
  });

  struct BadCall {
    const char* what;
    ErrorCode code;
    std::vector<std::string> needles;
    std::function<void(int, RankInputs&, PoisonedOutputs&)> call;
  };
  std::vector<float> wide_weights(kBs * (kTopK + 1), 0.5f);
  std::vector<uint16_t> residual(kBs * kHidden, 0), gamma(kHidden, 0x3F80);
  const BadCall bad_calls[] = {
      {"expertScales (Bs, K+1)",
       ErrorCode::kInvalidConfig,
       {"Combine", "'expert_scales' = (4, 3)", "(4, 2)"},
       [&](int r, RankInputs&, PoisonedOutputs& o) {
         CombineInto(groups[r], results[r].handle, results[r].expand_x.view(),
                     TensorView(wide_weights.data(), DType::kFloat32, {kBs, kTopK + 1}), {}, o.x_out);
       }},
      {"xOut float32",
       ErrorCode::kInvalidParam,
       {"'x_out' = float32", "bf16"},
       [&](int r, RankInputs& in, PoisonedOutputs& o) {
         TensorView x = o.x_out;
         x.dtype = DType::kFloat32;
         x.shape = {kBs, kHidden / 2};
         CombineInto(groups[r], results[r].handle, results[r].expand_x.view(), in.Weights(), {}, x);
       }},
      {"xOut (Bs, H - 1)",
       ErrorCode::kInvalidConfig,
       {"'x_out' = (4, 31)"},
       [&](int r, RankInputs& in, PoisonedOutputs& o) {
         TensorView x = o.x_out;
         x.shape = {kBs, kHidden - 1};
         CombineInto(groups[r], results[r].handle, results[r].expand_x.view(), in.Weights(), {}, x);
       }},
      {"Combine with handle.hidden 2^40 (it sizes the output Combine allocates)",
       ErrorCode::kInvalidConfig,
       {"'expert_out' = (", "the dispatch's H = 1099511627776"},
       [&](int r, RankInputs& in, PoisonedOutputs&) {
         DispatchHandle& h = results[r].handle;
         const int64_t hidden = h.hidden;
         h.hidden = int64_t{1} << 40;
         try {
           Combine(groups[r], h, results[r].expand_x.view(), in.Weights());
         } catch (...) {
           h.hidden = hidden;
           throw;
         }
         h.hidden = hidden;
       }},
      {"sharedExpertX (Bs, H / 2)",
       ErrorCode::kInvalidConfig,
       {"'CombineOptions::shared_expert_x' = (4, 16)"},
       [&](int r, RankInputs& in, PoisonedOutputs& o) {
         CombineOptions options;
         options.shared_expert_x = TensorView(residual.data(), DType::kBf16, {kBs, kHidden / 2});
         CombineInto(groups[r], results[r].handle, results[r].expand_x.view(), in.Weights(), options, o.x_out);
       }},
      {"AddRmsNorm gamma (H - 1,)",
       ErrorCode::kInvalidConfig,
       {"'gamma' = (31,)", "(H,)"},
       [&](int r, RankInputs& in, PoisonedOutputs& o) {
         CombineAddRmsNormInto(groups[r], results[r].handle, results[r].expand_x.view(), in.Weights(),
                               TensorView(residual.data(), DType::kBf16, {kBs, 1, kHidden}),
                               TensorView(gamma.data(), DType::kBf16, {kHidden - 1}), 1e-6f, {},
                               {o.y, o.rstd, o.x_rms});
       }},
      {"AddRmsNorm rstd (Bs, 1)",
       ErrorCode::kInvalidConfig,
       {"'AddRmsNormOutputs::rstd' = (4, 1)"},
       [&](int r, RankInputs& in, PoisonedOutputs& o) {
         TensorView rstd = o.rstd;
         rstd.shape = {kBs, 1};
         CombineAddRmsNormInto(groups[r], results[r].handle, results[r].expand_x.view(), in.Weights(),
                               TensorView(residual.data(), DType::kBf16, {kBs, 1, kHidden}),
                               TensorView(gamma.data(), DType::kBf16, {kHidden}), 1e-6f, {}, {o.y, rstd, o.x_rms});
       }},
      {"AddRmsNorm x (Bs, H)",
       ErrorCode::kInvalidConfig,
       {"CombineAddRmsNorm: parameter 'AddRmsNormOutputs::x' = (4, 32)"},
       [&](int r, RankInputs& in, PoisonedOutputs& o) {
         TensorView x = o.x_rms;
         x.shape = {kBs, kHidden};
         CombineAddRmsNormInto(groups[r], results[r].handle, results[r].expand_x.view(), in.Weights(),
                               TensorView(residual.data(), DType::kBf16, {kBs, 1, kHidden}),
                               TensorView(gamma.data(), DType::kBf16, {kHidden}), 1e-6f, {}, {o.y, o.rstd, x});
       }},
  };
  for (const BadCall& bad : bad_calls) {
    SCOPED_TRACE(bad.what);
    const auto errors = moe_ep::verify::RunRanksCollect(kRanks, [&](int r) {
      RankInputs in(r);
      bad.call(r, in, outs[r]);
    });
    for (int r = 0; r < kRanks; ++r) {
      ExpectRankError(errors[r], r, bad.code, bad.needles);
      EXPECT_EQ(outs[r].FirstTouched(), -1) << "rank " << r << " wrote into an output of a rejected call";
    }
  }

  moe_ep::verify::RunRanks(kRanks, [&](int r) {
    RankInputs in(r);
    CombineInto(groups[r], results[r].handle, results[r].expand_x.view(), in.Weights(), {}, outs[r].x_out);
    const auto* x = static_cast<const uint16_t*>(outs[r].x_out.data);
    for (int64_t i = 0; i < kBs * kHidden; ++i) ASSERT_EQ(x[i], in.x[i]) << "rank " << r << " element " << i;
  });
}

}  // namespace
}  // namespace moe_ep
