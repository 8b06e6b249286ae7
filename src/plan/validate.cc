// Validation of dispatch / combine calls (docs/semantics.md 1.1-1.4): null inputs, dtypes, attribute ranges, shapes,
// window size. Profile::kA3 enforces the product limits; Profile::kNative relaxes them (docs/semantics.md 0).
#include "plan/validate.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <limits>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "base/floating_point.h"
#include "base/saturating.h"
#include "moe_ep/error.h"
#include "plan/layout.h"

namespace moe_ep::plan {
namespace {

constexpr ErrorCode kNull = ErrorCode::kNullPointer;
constexpr ErrorCode kDtype = ErrorCode::kInvalidParam;
constexpr ErrorCode kRule = ErrorCode::kInvalidConfig;

// The native API's name of each CANN parameter (and of the window knob), so a native caller reads the
// names of the fields it set. Parameters not listed keep their name.
constexpr std::pair<const char*, const char*> kNativeNames[] = {
    {"expertIds", "expert_ids"},
    {"scales", "DispatchOptions::smooth_scales"},
    {"xActiveMask", "active_mask"},
    {"expandXOut", "DispatchOutputs::expand_x"},
    {"dynamicScalesOut", "DispatchOutputs::dynamic_scales"},
    {"assistInfoForCombineOut", "DispatchOutputs::assist_info"},
    {"expertTokenNumsOut", "DispatchOutputs::expert_token_nums"},
    {"epRecvCountsOut", "DispatchOutputs::ep_recv_counts"},
    {"tpRecvCountsOut", "DispatchOutputs::tp_recv_counts"},
    {"expandX", "expert_out"},
    {"assistInfoForCombine", "DispatchHandle::assist_info"},
    {"epSendCounts", "DispatchHandle::ep_recv_counts"},
    {"tpSendCounts", "DispatchHandle::tp_recv_counts"},
    {"expertScales", "expert_scales"},
    {"sharedExpertX", "CombineOptions::shared_expert_x"},
    {"oriX", "CombineOptions::ori_x"},
    {"constExpertAlpha1", "CombineOptions::const_alpha1"},
    {"constExpertAlpha2", "CombineOptions::const_alpha2"},
    {"constExpertV", "CombineOptions::const_v"},
    {"residualX", "residual_x"},
    {"normEps", "norm_eps"},
    {"xOut", "x_out"},
    {"yOut", "AddRmsNormOutputs::y"},
    {"rstdOut", "AddRmsNormOutputs::rstd"},
    {"epWorldSize", "ep.size()"},
    {"epRankId", "ep.rank()"},
    {"tpWorldSize", "tp.size()"},
    {"tpRankId", "tp.rank()"},
    {"moeExpertNum", "ExpertLayout::moe_expert_num"},
    {"sharedExpertNum", "ExpertLayout::shared_expert_num"},
    {"sharedExpertRankNum", "ExpertLayout::shared_expert_rank_num"},
    {"globalBs", "ExpertLayout::global_bs"},
    {"zeroExpertNum", "ExpertLayout::zero_expert_num"},
    {"copyExpertNum", "ExpertLayout::copy_expert_num"},
    {"constExpertNum", "ExpertLayout::const_expert_num"},
    {"quantMode", "DispatchOptions::quant"},
    {"commQuantMode", "CombineOptions::comm_quant"},
    {"expertTokenNumsType", "DispatchOptions::cumulative_token_nums"},
    {"elasticInfo", "ExpertLayout::survivors"},
    {"HCCL_BUFFSIZE", "GroupOptions::window_bytes (MOE_EP_WINDOW_MB)"},
};

// `param` with every CANN identifier in it replaced by its native name ("K (expertIds.dim1)" ->
// "K (expert_ids.dim1)").
std::string NativeName(const std::string& param) {
  std::string out;
  for (size_t i = 0; i < param.size();) {
    size_t j = i;
    while (j < param.size() && (std::isalnum(static_cast<unsigned char>(param[j])) || param[j] == '_')) ++j;
    if (j == i) {
      out += param[i++];
      continue;
    }
    const std::string word = param.substr(i, j - i);
    const auto* hit = std::find_if(std::begin(kNativeNames), std::end(kNativeNames),
                                   [&](const auto& entry) { return word == entry.first; });
    out += hit == std::end(kNativeNames) ? word : hit->second;
    i = j;
  }
  return out;
}

// Collects the operation name and the caller's naming so every failure message starts the same way.
class Checker {
 public:
  Checker(const char* op, Profile profile) : op_(op), profile_(profile) {}

  // `param` = `value` must satisfy `rule`. The value and the rule's pieces (text, numbers, tensors, or
  // callables giving text) are formatted only on failure: validation runs on every call, and building its
  // messages cost more than a few-token operation's own work.
  template <typename Value, typename... Rule>
  void Require(bool ok, ErrorCode code, std::string_view param, const Value& value, const Rule&... rule) const {
    if (!ok) Fail(code, param, Text(value), (std::string() + ... + Text(rule)));
  }
  template <typename Value, typename... Rule>
  void Require(bool ok, std::string_view param, const Value& value, const Rule&... rule) const {
    Require(ok, kRule, param, value, rule...);
  }
  void Present(const TensorView& t, const char* param) const {
    Require(t.present(), kNull, param, "nullptr", "this tensor is required");
  }
  void Dtype(const TensorView& t, const char* param, DType want) const {
    Require(t.dtype == want, kDtype, param, DTypeName(t.dtype), "dtype must be ", DTypeName(want));
  }
  void Dim(const TensorView& t, const char* param, int64_t dims) const {
    Require(t.dim() == dims, kRule, param, t, "must have ", dims, " dimensions");
  }
  template <typename... Rule>
  void Shape(bool ok, const TensorView& t, const char* param, const Rule&... rule) const {
    Require(ok, kRule, param, t, rule...);
  }
  const char* op() const { return op_; }
  /// `param` as the caller knows it (for a rule that names another parameter).
  std::string Name(std::string_view param) const {
    if (profile_ != Profile::kNative) return std::string(param);
    // CombineAddRmsNorm's xOut is a field of its outputs, where Combine's is its x_out argument.
    if (param == "xOut" && std::string_view(op_) == "CombineAddRmsNorm") return "AddRmsNormOutputs::x";
    return NativeName(std::string(param));
  }

 private:
  template <typename Piece>
  static std::string Text(const Piece& piece) {
    if constexpr (std::is_arithmetic_v<Piece>) {
      return std::to_string(piece);
    } else if constexpr (std::is_same_v<Piece, TensorView>) {
      return piece.Describe();
    } else if constexpr (std::is_invocable_v<const Piece&>) {
      return piece();
    } else {
      return std::string(piece);
    }
  }
  [[noreturn]] void Fail(ErrorCode code, std::string_view param, const std::string& value,
                         const std::string& rule) const {
    throw Error(code, std::string(op_) + ": parameter '" + Name(param) + "' = " + value + " violates rule: " + rule);
  }

  const char* op_;
  Profile profile_;
};

std::string Str(int64_t v) { return std::to_string(v); }

// The bound on expert ids and K: moeExpertNum, plus the V3 special experts when there are any.
std::string ExpertBound(const MoeConfig& c) {
  return (c.special_expert_num() ? "moeExpertNum + zero/copy/const experts = " : "moeExpertNum = ") +
         Str(c.all_expert_num());
}

bool IsHalf(DType d) { return d == DType::kBf16 || d == DType::kFp16; }

// Which tensor dimension each shape quantity came from, for messages.
struct ShapeNames {
  const char* bs;
  const char* hidden;
};
constexpr ShapeNames kDispatchShapes{"Bs (x.dim0)", "H (x.dim1)"};
constexpr ShapeNames kCombineShapes{"Bs (expertIds.dim0)", "H (expandX.dim1)"};

// A view's own arithmetic: dims and strides non-negative, one stride per dimension, and the element
// count and the furthest element within int64. aclCreateTensor checks the same for the C API; native
// callers build views by hand, and every later index computation relies on this.
void CheckView(const Checker& ck, const TensorView& v, const char* param) {
  if (!v.present()) return;
  bool ok = v.strides.empty() || v.strides.size() == v.shape.size();
  int64_t numel = 1, reach = 0;
  for (size_t d = 0; ok && d < v.shape.size(); ++d) {
    const int64_t extent = v.shape[d], stride = v.strides.empty() ? 0 : v.strides[d];
    int64_t step = 0;
    ok = extent >= 0 && stride >= 0 && !__builtin_mul_overflow(numel, extent, &numel) &&
         !__builtin_mul_overflow(extent > 0 ? extent - 1 : 0, stride, &step) &&
         !__builtin_add_overflow(reach, step, &reach);
  }
  int64_t span = 0;  // elements from the first to one past the furthest (which may be INT64_MAX itself)
  ok = ok && !__builtin_add_overflow(reach, 1, &span) &&
       !__builtin_mul_overflow(std::max(numel, span), static_cast<int64_t>(DTypeSize(v.dtype)), &reach);
  ck.Shape(ok, v, param,
           "a view has non-negative dimensions and strides, one stride per dimension, and its size in bytes fits "
           "int64");
  // Elements are read and written as their type (a float through a float*), which needs them aligned to its size;
  // device memory always is, a numpy array made from a buffer at an odd offset may not be.
  const size_t element = DTypeSize(v.dtype);
  ck.Shape(reinterpret_cast<uintptr_t>(v.data) % element == 0, v, param,
           "its address is a multiple of its element size (" + std::to_string(element) + " bytes)");
}

// An output may be strided (CANN's operators take non-contiguous outputs), but no two of its elements may share
// memory: a stride of 0, or strides that fold one dimension onto another, would have the operation write one
// place twice. Dimensions of one element do not matter; a view CheckView refuses is left to it.
void CheckOutputView(const Checker& ck, const TensorView& v, const char* param) {
  CheckView(ck, v, param);
  if (!v.present() || v.numel() == 0) return;
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, extent) of each dimension of more than one element
  for (int64_t d = 0; d < v.dim(); ++d) {
    if (v.shape[d] > 1) dims.emplace_back(v.stride(d), v.shape[d]);
  }
  std::sort(dims.begin(), dims.end());
  bool apart = true;
  int64_t reach = 1;  // elements the dimensions so far span, from the first: the next stride must step past them
  for (const auto& [stride, extent] : dims) {
    apart = apart && stride >= reach;
    reach = SaturatingAdd(reach, SaturatingMul(stride, extent - 1));
  }
  ck.Shape(apart, v, param,
           "an output's elements must not overlap (no stride of 0, no stride smaller than the span of the dimensions "
           "with smaller strides)");
}

// An input: a view, and one of no address is absent only without elements. An optional input given a null address
// and a shape (memory that was never allocated) would otherwise be taken for absent: a mask for none, no shared
// expert's rows.
void CheckInputView(const Checker& ck, const TensorView& v, const char* param) {
  ck.Require(v.present() || v.shape.empty() || v.numel() == 0, ErrorCode::kNullPointer, param, v,
             "a tensor of elements needs their address (a view of no address is absent only with no shape)");
  CheckView(ck, v, param);
}

void CheckInputViews(const Checker& ck, std::initializer_list<std::pair<const TensorView*, const char*>> views) {
  for (const auto& [v, param] : views) CheckInputView(ck, *v, param);
}

using NamedView = std::pair<const TensorView*, const char*>;

// Combine's (and CombineAddRmsNorm's) inputs, named.
std::array<NamedView, 14> CombineInputs(const CombineTensors& t) {
  return {{{&t.expand_x, "expandX"},
           {&t.expert_ids, "expertIds"},
           {&t.assist_info, "assistInfoForCombine"},
           {&t.ep_send_counts, "epSendCounts"},
           {&t.expert_scales, "expertScales"},
           {&t.tp_send_counts, "tpSendCounts"},
           {&t.x_active_mask, "xActiveMask"},
           {&t.shared_expert_x, "sharedExpertX"},
           {&t.ori_x, "oriX"},
           {&t.const_alpha1, "constExpertAlpha1"},
           {&t.const_alpha2, "constExpertAlpha2"},
           {&t.const_v, "constExpertV"},
           {&t.residual_x, "residualX"},
           {&t.gamma, "gamma"}}};
}

// [first byte, one past the last) of a view CheckView accepted; empty for an absent view or one of no elements.
std::pair<uintptr_t, uintptr_t> SpanOf(const TensorView& v) {
  if (!v.present() || v.numel() == 0) return {0, 0};
  uint64_t last = 0;
  for (int64_t d = 0; d < v.dim(); ++d) last += static_cast<uint64_t>(v.shape[d] - 1) * v.stride(d);
  const auto first = reinterpret_cast<uintptr_t>(v.data);
  return {first, first + (last + 1) * DTypeSize(v.dtype)};
}

void CheckApart(const Checker& ck, std::span<const NamedView> outputs, std::span<const NamedView> inputs,
                MemoryFilter compared) {
  const auto span_of = [compared](const TensorView& v) {
    return compared == nullptr || compared(v.data) ? SpanOf(v) : std::pair<uintptr_t, uintptr_t>{0, 0};
  };
  for (auto out = outputs.begin(); out != outputs.end(); ++out) {
    const std::pair<uintptr_t, uintptr_t> span = span_of(*out->first);  // not bound by name: clang 14's lambdas
    const auto refuse_shared = [&](const NamedView& other, const char* why) {
      const std::pair<uintptr_t, uintptr_t> other_span = span_of(*other.first);
      ck.Require(
          !(span.first < other_span.second && other_span.first < span.second), ErrorCode::kInvalidParam, out->second,
          *out->first, "must not share memory with '", [&] { return ck.Name(other.second); }, "' = ", *other.first,
          why);
    };
    if (span.first == span.second) continue;
    for (auto later = std::next(out); later != outputs.end(); ++later) {
      refuse_shared(*later, " (an output written over another loses one of them)");
    }
    for (const auto& in : inputs) refuse_shared(in, " (the call reads its inputs, peers too, while it writes)");
  }
}

// The product limits of a profile (docs/semantics.md 1.2, docs/a2.md). Atlas A2's per-rank expert limit holds
// for dispatch with "fullmesh" only: the kernel sources check it nowhere else.
struct Limits {
  int64_t ep_min, ep_max, ep_multiple;
  int64_t moe_max, per_rank_max, blocks_max;
  int64_t bs_max;
  int64_t hidden_min, hidden_max, hidden_multiple;
  int64_t top_k_max;
  const char* product;  // appended to rules: where the limit comes from
};

Limits LimitsOf(Profile p, bool dispatch) {
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  switch (p) {
    case Profile::kA3:
      return {2, 768, 1, 1024, kNone, 2048, 512, 1024, 8192, 1, 16, ""};
    case Profile::kA2Fullmesh:
      return {8, 256, 8, 512, dispatch ? 24 : kNone, kNone, 256, 32, 7168, 32, 16, " on Atlas A2 (commAlg fullmesh)"};
    case Profile::kA2Hierarchy:
      return {8, 64, 8, 512, kNone, kNone, 256, 32, 10240, 32, 16, " on Atlas A2 (commAlg hierarchy)"};
    case Profile::kNative:
      break;
  }
  return {1,         static_cast<int64_t>(kMaxSyncFlags),
          1,         kInt32Max,
          kNone,     static_cast<int64_t>(kMaxDispatchFlags),
          kNone,     1,
          kInt32Max, 1,
          kNone,     ""};
}

// "in [min, max]" (and "a multiple of m"), with the product the limit belongs to; a rule piece, formatted
// only on failure.
auto RangeRule(int64_t min, int64_t max, int64_t multiple, const char* product) {
  return [=] {
    const std::string top = max == std::numeric_limits<int32_t>::max() ? "INT32_MAX" : Str(max);
    return (multiple > 1 ? "a multiple of " + Str(multiple) + " in [" : "in [") + Str(min) + ", " + top + "]" + product;
  };
}

// Atlas A2 has no TP, no shared-expert ranks and no const experts (docs/a2.md).
void CheckA2Structure(const Checker& ck, const MoeConfig& c, const char* product) {
  ck.Require(c.tp_world_size <= 1, "tpWorldSize", c.tp_world_size, "0 or 1: no TP", product);
  ck.Require(c.shared_expert_rank_num == 0, "sharedExpertRankNum", c.shared_expert_rank_num,
             "must be 0: no shared-expert ranks", product);
  ck.Require(c.const_expert_num == 0, "constExpertNum", c.const_expert_num, "must be 0: no const experts", product);
}

// Rules shared by dispatch and combine: group, experts, batch, hidden, top-k (docs/semantics.md 1.2 / 1.3).
void CheckCommonAttributes(const Checker& ck, MoeConfig& c, Profile p, ShapeNames names, bool dispatch) {
  const Limits lim = LimitsOf(p, dispatch);
  ck.Require(c.ep_world_size >= lim.ep_min && c.ep_world_size <= lim.ep_max && c.ep_world_size % lim.ep_multiple == 0,
             "epWorldSize", c.ep_world_size, RangeRule(lim.ep_min, lim.ep_max, lim.ep_multiple, lim.product));
  ck.Require(c.ep_rank >= 0 && c.ep_rank < c.ep_world_size, "epRankId", c.ep_rank,
             "in [0, epWorldSize = ", c.ep_world_size, ")");
  ck.Require(c.tp_world_size >= 0 && c.tp_world_size <= 2, "tpWorldSize", c.tp_world_size, "in [0, 2]");
  if (IsA2(p)) CheckA2Structure(ck, c, lim.product);
  if (c.expand_idx()) {  // what Atlas A2 has: no TP, no shared or const experts, no renumbering, 1-D masks
    const char* layout = p == Profile::kNative ? "with Atlas A2's expandIdx layout (DispatchOptions::expand_idx_layout)"
                                               : "with Atlas A2's expandIdx layout";
    ck.Require(c.tp_world_size <= 1, "tpWorldSize", c.tp_world_size, "no TP group ", layout);
    ck.Require(c.shared_expert_rank_num == 0, "sharedExpertRankNum", c.shared_expert_rank_num, "must be 0 ", layout);
    ck.Require(c.const_expert_num == 0, "constExpertNum", c.const_expert_num, "must be 0 ", layout);
    ck.Require(!c.elastic, kRule, "elasticInfo", "given", "must be absent ", layout);
    ck.Require(c.mask != MaskKind::kPairs, kRule, "xActiveMask", "2-D", "must be 1-D ", layout);
  }
  if (c.has_tp()) {
    ck.Require(c.tp_rank >= 0 && c.tp_rank < 2, "tpRankId", c.tp_rank, "in [0, tpWorldSize = 2)");
  } else {
    ck.Require(c.tp_rank == 0, "tpRankId", c.tp_rank, "must be 0 when tpWorldSize < 2");
  }
  ck.Require(c.expert_shard_type == 0, "expertShardType", c.expert_shard_type, "must be 0");
  // CANN quietly drops the default sharedExpertNum=1 when no rank hosts a shared expert.
  if (c.shared_expert_rank_num == 0 && c.shared_expert_num == 1) c.shared_expert_num = 0;
  ck.Require(c.shared_expert_num >= 0 && c.shared_expert_num <= 4, "sharedExpertNum", c.shared_expert_num, "in [0, 4]");
  ck.Require(c.shared_expert_rank_num >= 0 && c.shared_expert_rank_num < c.ep_world_size, "sharedExpertRankNum",
             c.shared_expert_rank_num, "in [0, epWorldSize = ", c.ep_world_size, ")");
  ck.Require((c.shared_expert_num == 0) == (c.shared_expert_rank_num == 0), "sharedExpertNum", c.shared_expert_num,
             "sharedExpertNum and sharedExpertRankNum (", c.shared_expert_rank_num, ") are both 0 or both > 0");
  if (c.shared_expert_num > 0) {
    ck.Require(c.shared_expert_rank_num % c.shared_expert_num == 0, "sharedExpertRankNum", c.shared_expert_rank_num,
               "must be a multiple of sharedExpertNum (", c.shared_expert_num, ")");
  }
  const std::pair<int64_t, const char*> specials[] = {{c.zero_expert_num, "zeroExpertNum"},
                                                      {c.copy_expert_num, "copyExpertNum"},
                                                      {c.const_expert_num, "constExpertNum"}};
  for (const auto& [count, name] : specials) {
    ck.Require(count >= 0 && count <= std::numeric_limits<int32_t>::max(), name, count, "in [0, INT32_MAX]");
  }
  ck.Require(c.moe_expert_num > 0 && c.moe_expert_num <= lim.moe_max, "moeExpertNum", c.moe_expert_num, "in (0, ",
             lim.moe_max, "]", lim.product);
  ck.Require(c.moe_expert_num % c.moe_rank_num() == 0, "moeExpertNum", c.moe_expert_num,
             "must be a multiple of epWorldSize - sharedExpertRankNum (", c.moe_rank_num(), ")");
  ck.Require(c.all_expert_num() <= std::numeric_limits<int32_t>::max(), "moeExpertNum", c.moe_expert_num,
             "moeExpertNum + zero + copy + const experts (", c.all_expert_num(), ") <= INT32_MAX");
  ck.Require(c.local_expert_num() <= lim.per_rank_max, "moeExpertNum", c.moe_expert_num, "at most ", lim.per_rank_max,
             " experts per rank (moeExpertNum / epWorldSize = ", c.local_expert_num(), ")", lim.product);
  const int64_t blocks = c.local_expert_num() * c.ep_world_size;
  ck.Require(blocks > 0 && blocks <= lim.blocks_max, "moeExpertNum", c.moe_expert_num, "localExpertNum * epWorldSize (",
             blocks, ") in (0, ", lim.blocks_max, "]");
  if (c.has_tp()) {
    ck.Require(c.local_expert_num() == 1, "moeExpertNum", c.moe_expert_num,
               "one expert per MoE rank (localExpertNum == 1) when tpWorldSize == 2");
  }

  const auto bs_rule = RangeRule(1, lim.bs_max, 1, lim.product);
  ck.Require(c.bs >= 1 && c.bs <= lim.bs_max, names.bs, c.bs,
             [&] { return lim.bs_max == std::numeric_limits<int64_t>::max() ? ">= 1" : bs_rule(); });
  ck.Require(c.hidden >= lim.hidden_min && c.hidden <= lim.hidden_max && c.hidden % lim.hidden_multiple == 0,
             names.hidden, c.hidden, RangeRule(lim.hidden_min, lim.hidden_max, lim.hidden_multiple, lim.product));
  const int64_t k_max = std::min(lim.top_k_max, c.all_expert_num());
  ck.Require(c.top_k > 0 && c.top_k <= k_max, "K (expertIds.dim1)", c.top_k, [&] {
    return lim.top_k_max == std::numeric_limits<int64_t>::max()
               ? "in (0, " + ExpertBound(c) + "]"
               : "in (0, min(" + Str(lim.top_k_max) + ", " + ExpertBound(c) + ")]";
  });
  // Bounded before anything is multiplied: a huge globalBs must fail here, not wrap the sizes below.
  const int64_t full = SaturatingMul(c.bs, c.ep_world_size);
  const auto global_rule = [&] {
    return "0, or >= Bs * epWorldSize (" + Str(full) + ") and a multiple of epWorldSize";
  };
  ck.Require(c.global_bs >= 0 && c.global_bs % c.ep_world_size == 0, "globalBs", c.global_bs, global_rule);
  const int64_t slots_per_token = c.top_k + c.shared_expert_num;
  const int64_t max_bs_limit = static_cast<int64_t>(kMaxCombineFlags) / slots_per_token;
  ck.Require(c.max_bs() <= max_bs_limit, "globalBs", c.global_bs,
             "maxBs (globalBs / epWorldSize, or Bs when globalBs is 0) = ", c.max_bs(), " times K + sharedExpertNum (",
             slots_per_token, ") must be <= ", kMaxCombineFlags, ", so maxBs <= ", max_bs_limit);
  ck.Require(c.global_bs == 0 || c.max_bs() >= c.bs, "globalBs", c.global_bs, global_rule);
  // Atlas A3's tiling rule; A2's code never reads globalBs, and its ranks may mask tokens whatever their Bs.
  ck.Require(IsA2(p) || !(c.global_bs > full && c.mask != MaskKind::kNone), "globalBs", c.global_bs,
             "must not exceed Bs * epWorldSize (", full, ") when xActiveMask is given");
}

// How many entries epRecvCounts / epSendCounts need, as a rule's words (MoeConfig::sized_receive_entries() * tp).
std::string CountEntriesRule(const MoeConfig& c) {
  const char* per_tp_rank = c.elastic            ? "max(epWorldSize, epWorldSize * localExpertNum)"
                            : c.is_shared_rank() ? "epWorldSize"
                                                 : "epWorldSize * localExpertNum";
  return std::string(per_tp_rank) + (c.has_tp() ? " * tpWorldSize = " : " = ");
}

void CheckMask(const Checker& ck, MoeConfig& c, const TensorView& mask, Profile p) {
  c.mask = MaskKind::kNone;
  if (!mask.present()) return;
  if (IsA2(p)) ck.Shape(mask.dim() == 1, mask, "xActiveMask", "must be 1-D (Bs,) on Atlas A2");
  ck.Shape(mask.dim() == 1 || mask.dim() == 2, mask, "xActiveMask", "must be 1-D (Bs,) or 2-D (Bs, K)");
  ck.Shape(mask.shape[0] == c.bs, mask, "xActiveMask", "dim0 must equal Bs = ", c.bs);
  if (mask.dim() == 2) {
    ck.Shape(mask.shape[1] == c.top_k, mask, "xActiveMask", "dim1 must equal K = ", c.top_k);
  }
  c.mask = mask.dim() == 1 ? MaskKind::kTokens : MaskKind::kPairs;
}

void CheckWindow(const Checker& ck, const MoeConfig& c, const WindowLayout& layout, WindowCapacity window, Profile p) {
  constexpr uint64_t kMb = uint64_t{1} << 20;
  const auto ep_bytes = [&] { return Str(window.ep_bytes) + " bytes"; };
  if (p == Profile::kA2Hierarchy) {
    // Atlas A2's documented rule for hierarchy (its kernels do not check it). The call is refused once its rules
    // passed, so its window is never laid out.
    const uint64_t per_token = SaturatingAdd<uint64_t>(SaturatingMul<uint64_t>(c.hidden, DTypeSize(c.x_dtype)),
                                                       uint64_t{4} * ((c.top_k + 7) / 8 * 8) * 4);
    const uint64_t need = SaturatingAdd<uint64_t>(
        SaturatingMul<uint64_t>(SaturatingMul<uint64_t>(c.moe_expert_num, c.bs), per_token), 104 * kMb);
    ck.Require(need <= window.ep_bytes, kRule, "HCCL_BUFFSIZE (EP window)", ep_bytes,
               "needs moeExpertNum * Bs * (H * sizeof(x) + 4 * Align8(K) * 4) + 4 MB + 100 MB = ", need,
               " bytes on Atlas A2 (commAlg hierarchy)");
    return;
  }
  if (p == Profile::kA2Fullmesh) {
    // Atlas A2's documented rule (its kernels do not check it); moe_ep's own layout is checked below.
    const uint64_t rows = SaturatingMul<uint64_t>(SaturatingMul<uint64_t>(c.bs, c.ep_world_size),
                                                  std::min(c.local_expert_num(), c.top_k));
    const uint64_t need = SaturatingMul<uint64_t>(
        2, SaturatingAdd<uint64_t>(SaturatingMul<uint64_t>(rows, 2 * static_cast<uint64_t>(c.hidden)), 2 * kMb));
    ck.Require(need <= window.ep_bytes, kRule, "HCCL_BUFFSIZE (EP window)", ep_bytes,
               "needs 2 * (Bs * epWorldSize * min(localExpertNum, K) * H * 2 + 2 MB) = ", need,
               " bytes on Atlas A2 (commAlg fullmesh)");
  }
  ck.Require(layout.ep_window_bytes <= window.ep_bytes, kRule, "HCCL_BUFFSIZE (EP window)", ep_bytes,
             "needs 2 * (maxBs*tokD*E*L + maxBs*tokC*(K+n_s)) = ", layout.ep_window_bytes, " bytes (",
             (layout.ep_window_bytes + (1 << 20) - 1) >> 20, " MB)");
  if (p == Profile::kA3) {  // the operator's documented floor, whatever the layout needs
    ck.Require(window.ep_bytes >= 2 * kMb, kRule, "HCCL_BUFFSIZE (EP window)", ep_bytes,
               "must be at least 2 MB on Atlas A3");
  }
  if (c.has_tp()) {
    ck.Require(
        layout.tp_window_bytes <= window.tp_bytes, kRule, "HCCL_BUFFSIZE (TP window)",
        [&] { return Str(window.tp_bytes) + " bytes"; }, "needs 2 * A * (tokD + tokC) = ", layout.tp_window_bytes,
        " bytes");
  }
}

// docs/semantics.md 1.3 (V3): copy experts need oriX; const experts need oriX, alpha1, alpha2 and V (their dtype,
// expandX's, is checked with the other dtypes, first).
void CheckSpecialExpertInputs(const Checker& ck, const MoeConfig& c, const CombineTensors& t) {
  const bool need_ori = c.copy_expert_num > 0 || c.const_expert_num > 0;
  const bool need_const = c.const_expert_num > 0;
  const auto require = [&](bool needed, const TensorView& v, const char* name) {
    ck.Require(!needed || v.present(), kRule, name, "nullptr", "required when ",
               need_const ? "constExpertNum" : "copyExpertNum", " > 0");
  };
  require(need_ori, t.ori_x, "oriX");
  require(need_const, t.const_alpha1, "constExpertAlpha1");
  require(need_const, t.const_alpha2, "constExpertAlpha2");
  require(need_const, t.const_v, "constExpertV");
  if (t.ori_x.present()) {
    ck.Shape(t.ori_x.dim() == 2 && t.ori_x.shape[0] == c.bs && t.ori_x.shape[1] == c.hidden, t.ori_x, "oriX",
             "shape must be (Bs, H) = (", c.bs, ", ", c.hidden, ")");
  }
  // Checked whenever given, as CANN's tiling does (with constExpertNum 0 too: a (0, H) tensor passes).
  for (const auto& [v, name] : {std::pair{&t.const_alpha1, "constExpertAlpha1"},
                                {&t.const_alpha2, "constExpertAlpha2"},
                                {&t.const_v, "constExpertV"}}) {
    if (!v->present()) continue;
    ck.Shape(v->dim() == 2 && v->shape[0] == c.const_expert_num && v->shape[1] == c.hidden, *v, name,
             "shape must be (constExpertNum, H) = (", c.const_expert_num, ", ", c.hidden, ")");
  }
}

// expertScales: (Bs, K), combine's routing weights (Atlas A2's dispatch takes them too, and never reads them).
void CheckExpertScalesShape(const Checker& ck, const MoeConfig& c, const TensorView& scales) {
  ck.Dim(scales, "expertScales", 2);
  ck.Shape(scales.shape[0] == c.bs && scales.shape[1] == c.top_k, scales, "expertScales", "shape must be (Bs, K) = (",
           c.bs, ", ", c.top_k, ")");
}

// The op-def's dtypes of dispatch's inputs (161002), matched before any tiling rule (docs/semantics.md 1.1).
void CheckDispatchInputDtypes(const Checker& ck, const DispatchTensors& t) {
  ck.Require(IsHalf(t.x.dtype), kDtype, "x", DTypeName(t.x.dtype), "dtype must be bf16 or fp16");
  ck.Dtype(t.expert_ids, "expertIds", DType::kInt32);
  if (t.scales.present()) ck.Dtype(t.scales, "scales", DType::kFloat32);
  if (t.x_active_mask.present()) ck.Dtype(t.x_active_mask, "xActiveMask", DType::kBool);
}

// Everything else about dispatch's inputs and attributes; fills the shape fields of `c`.
void CheckDispatchInputs(const Checker& ck, MoeConfig& c, const DispatchTensors& t, Profile p) {
  ck.Require(c.quant_mode >= 0 && c.quant_mode <= 2, "quantMode", c.quant_mode, "in [0, 2]");
  ck.Require(c.quant_mode != 1, "quantMode", c.quant_mode, "1 (static quantization) is not supported");
  ck.Require(!(t.scales.present() && c.quant_mode == 0), kRule, "scales", t.scales,
             "must be absent when quantMode == 0");
  ck.Require(c.expert_token_nums_type == 0 || c.expert_token_nums_type == 1, "expertTokenNumsType",
             c.expert_token_nums_type, "0 or 1");

  ck.Dim(t.x, "x", 2);
  ck.Dim(t.expert_ids, "expertIds", 2);
  c.bs = t.x.shape[0];
  c.hidden = t.x.shape[1];
  c.top_k = t.expert_ids.shape[1];
  c.x_dtype = t.x.dtype;
  ck.Shape(t.expert_ids.shape[0] == c.bs, t.expert_ids, "expertIds", "dim0 must equal Bs = ", c.bs);
  CheckMask(ck, c, t.x_active_mask, p);
  CheckCommonAttributes(ck, c, p, kDispatchShapes, /*dispatch=*/true);

  if (t.scales.present()) {
    ck.Dim(t.scales, "scales", 2);
    ck.Shape(t.scales.shape[0] == c.shared_expert_num + c.moe_expert_num && t.scales.shape[1] == c.hidden, t.scales,
             "scales", "shape must be (sharedExpertNum + moeExpertNum, H) = (", c.shared_expert_num + c.moe_expert_num,
             ", ", c.hidden, ")");
  }
  CheckInputViews(
      ck, {{&t.x, "x"}, {&t.expert_ids, "expertIds"}, {&t.scales, "scales"}, {&t.x_active_mask, "xActiveMask"}});
}

}  // namespace

std::string ParamNames(const MoeConfig& config, const std::string& text) {
  return config.native_names ? NativeName(text) : text;
}

void ValidateAttributes(MoeConfig& c, Profile p, const char* op) {
  CheckCommonAttributes(Checker(op, p), c, p, {"Bs", "H"}, /*dispatch=*/true);
}

void ValidateDispatchInputs(MoeConfig& c, const DispatchTensors& t, Profile p, WindowCapacity window, const char* op) {
  const Checker ck(op, p);
  ck.Present(t.x, "x");
  ck.Present(t.expert_ids, "expertIds");
  CheckDispatchInputDtypes(ck, t);
  CheckDispatchInputs(ck, c, t, p);
  CheckWindow(ck, c, WindowLayout(c), window, p);
}

void ValidateDispatch(MoeConfig& c, const DispatchTensors& t, Profile p, WindowCapacity window, const char* op) {
  const Checker ck(op, p);
  ck.Present(t.x, "x");
  ck.Present(t.expert_ids, "expertIds");
  ck.Present(t.expand_x, "expandXOut");
  ck.Present(t.assist_info, "assistInfoForCombineOut");
  ck.Present(t.expert_token_nums, "expertTokenNumsOut");
  ck.Present(t.ep_recv_counts, "epRecvCountsOut");
  ck.Present(t.tp_recv_counts, "tpRecvCountsOut");
  if (c.quant_mode == 2) ck.Present(t.dynamic_scales, "dynamicScalesOut");
  // The op-def's dtype combinations are matched before any tiling rule (161002 first: docs/semantics.md 1.1);
  // expandXOut's agreement with quantMode is the tiling's (below). On Atlas A2 its dtype decides the quantization.
  CheckDispatchInputDtypes(ck, t);
  ck.Require(t.expand_x.dtype == t.x.dtype || t.expand_x.dtype == DType::kInt8, kDtype, "expandXOut",
             DTypeName(t.expand_x.dtype), "dtype must be x's (", DTypeName(t.x.dtype), ") or int8");
  if (IsA2(p) && t.expert_scales.present()) ck.Dtype(t.expert_scales, "expertScales", DType::kFloat32);
  // Read where the call quantizes: Atlas A2 does exactly when expandXOut is int8, whatever quantMode says (below).
  const bool quantizes = IsA2(p) ? t.expand_x.dtype == DType::kInt8 : c.quant_mode == 2;
  if (quantizes && t.dynamic_scales.present()) ck.Dtype(t.dynamic_scales, "dynamicScalesOut", DType::kFloat32);
  ck.Dtype(t.assist_info, "assistInfoForCombineOut", DType::kInt32);
  ck.Dtype(t.expert_token_nums, "expertTokenNumsOut", DType::kInt64);
  ck.Dtype(t.ep_recv_counts, "epRecvCountsOut", DType::kInt32);
  ck.Dtype(t.tp_recv_counts, "tpRecvCountsOut", DType::kInt32);
  CheckDispatchInputs(ck, c, t, p);
  if (IsA2(p) && t.expert_scales.present()) {  // documented as (Bs, K) fp32; the fullmesh kernel never reads it
    CheckExpertScalesShape(ck, c, t.expert_scales);
  }
  if (IsA2(p)) {
    // Atlas A2's kernel quantizes exactly when expandX is int8, whatever quantMode says (docs/a2.md).
    c.quant_mode = t.expand_x.dtype == DType::kInt8 ? 2 : 0;
    ck.Require(c.quant_mode == 0 || t.dynamic_scales.present(), kRule, "dynamicScalesOut", "nullptr",
               "required when expandXOut is int8 (Atlas A2 quantizes by expandX's dtype)");
  }

  const WindowLayout layout(c);
  const DispatchOutputSizes sizes = OutputSizesOf(c);
  const DType out_dtype = c.quant_mode == 2 ? DType::kInt8 : c.x_dtype;
  // A dtype the op-def's combinations allow (checked first) but quantMode rules out, e.g. bf16 with quantMode 2: the
  // tiling's re-check rejects it (561002, docs/semantics.md 1.2).
  ck.Require(t.expand_x.dtype == out_dtype, kRule, "expandXOut", DTypeName(t.expand_x.dtype), "dtype must be ",
             DTypeName(out_dtype));
  ck.Dim(t.expand_x, "expandXOut", 2);
  // CANN multiplies by the raw tpWorldSize (0 switches the check off); every received row is written,
  // so moe_ep demands max(tpWorldSize, 1) * A rows (docs/validation.md).
  ck.Shape(t.expand_x.shape[0] >= sizes.rows && t.expand_x.shape[1] == c.hidden, t.expand_x, "expandXOut",
           "shape must be (max(tpWorldSize, 1) * A rows, i.e. >= ", sizes.rows, ", H = ", c.hidden, ")");
  if (c.quant_mode == 2) {
    ck.Dim(t.dynamic_scales, "dynamicScalesOut", 1);
    ck.Shape(t.dynamic_scales.shape[0] >= sizes.rows, t.dynamic_scales, "dynamicScalesOut",
             "dim0 must be >= A * tp = ", sizes.rows);
  }
  ck.Dim(t.assist_info, "assistInfoForCombineOut", 1);
  ck.Shape(t.assist_info.shape[0] >= sizes.assist_entries, t.assist_info, "assistInfoForCombineOut",
           c.expand_idx() ? "dim0 must be >= Bs * K = " : "dim0 must be >= 3 * A = ", sizes.assist_entries);
  const int64_t token_nums = sizes.token_num_entries;
  ck.Dim(t.expert_token_nums, "expertTokenNumsOut", 1);
  ck.Shape(t.expert_token_nums.shape[0] == token_nums, t.expert_token_nums, "expertTokenNumsOut", "dim0 must be ",
           token_nums,
           c.elastic            ? " (max(localExpertNum, 1): elasticInfo sizes a rank for either role)"
           : c.is_shared_rank() ? " on a shared-expert rank"
                                : " (localExpertNum)");
  const int64_t recv = sizes.recv_count_entries;
  ck.Dim(t.ep_recv_counts, "epRecvCountsOut", 1);
  ck.Shape(t.ep_recv_counts.shape[0] >= recv, t.ep_recv_counts, "epRecvCountsOut",
           "dim0 must be >= ", CountEntriesRule(c), recv);
  ck.Dim(t.tp_recv_counts, "tpRecvCountsOut", 1);
  if (!IsA2(p)) {  // A2 forces tpWorldSize to 0 and never writes it
    ck.Shape(t.tp_recv_counts.shape[0] == c.tp_world_size, t.tp_recv_counts, "tpRecvCountsOut",
             "dim0 must equal tpWorldSize = ", c.tp_world_size);
  }
  const std::pair<const TensorView*, const char*> outputs[] = {{&t.expand_x, "expandXOut"},
                                                               {&t.dynamic_scales, "dynamicScalesOut"},
                                                               {&t.assist_info, "assistInfoForCombineOut"},
                                                               {&t.expert_token_nums, "expertTokenNumsOut"},
                                                               {&t.ep_recv_counts, "epRecvCountsOut"},
                                                               {&t.tp_recv_counts, "tpRecvCountsOut"}};
  for (const auto& [out, name] : outputs) CheckOutputView(ck, *out, name);
  CheckWindow(ck, c, layout, window, p);
}

void ValidateCombine(MoeConfig& c, const CombineTensors& t, Profile p, WindowCapacity window, const char* op) {
  const Checker ck(op, p);
  ck.Present(t.expand_x, "expandX");
  ck.Present(t.expert_ids, "expertIds");
  ck.Present(t.assist_info, "assistInfoForCombine");
  ck.Present(t.ep_send_counts, "epSendCounts");
  ck.Present(t.expert_scales, "expertScales");
  ck.Present(t.x, "xOut");
  if (t.add_rms_norm) {
    ck.Present(t.residual_x, "residualX");
    ck.Present(t.gamma, "gamma");
    ck.Present(t.y, "yOut");
    ck.Present(t.rstd, "rstdOut");
  }

  ck.Require(IsHalf(t.expand_x.dtype), kDtype, "expandX", DTypeName(t.expand_x.dtype), "dtype must be bf16 or fp16");
  if (t.add_rms_norm) ck.Dtype(t.expand_x, "expandX", DType::kBf16);
  ck.Dtype(t.expert_ids, "expertIds", DType::kInt32);
  ck.Dtype(t.assist_info, "assistInfoForCombine", DType::kInt32);
  ck.Dtype(t.ep_send_counts, "epSendCounts", DType::kInt32);
  ck.Dtype(t.expert_scales, "expertScales", DType::kFloat32);
  if (t.tp_send_counts.present()) ck.Dtype(t.tp_send_counts, "tpSendCounts", DType::kInt32);
  if (t.shared_expert_x.present()) ck.Dtype(t.shared_expert_x, "sharedExpertX", t.expand_x.dtype);
  ck.Dtype(t.x, "xOut", t.expand_x.dtype);
  if (t.add_rms_norm) {
    ck.Dtype(t.residual_x, "residualX", DType::kBf16);
    ck.Dtype(t.gamma, "gamma", DType::kBf16);
    ck.Dtype(t.y, "yOut", DType::kBf16);
    ck.Dtype(t.rstd, "rstdOut", DType::kFloat32);
  }
  if (t.x_active_mask.present()) ck.Dtype(t.x_active_mask, "xActiveMask", DType::kBool);
  for (const auto& [v, name] : {std::pair{&t.ori_x, "oriX"},
                                {&t.const_alpha1, "constExpertAlpha1"},
                                {&t.const_alpha2, "constExpertAlpha2"},
                                {&t.const_v, "constExpertV"}}) {
    if (v->present()) ck.Dtype(*v, name, t.expand_x.dtype);
  }

  ck.Require(c.comm_quant_mode == 0 || c.comm_quant_mode == 2, "commQuantMode", c.comm_quant_mode, "0 or 2");
  ck.Require(!(c.comm_quant_mode != 0 && p == Profile::kA2Fullmesh), "commQuantMode", c.comm_quant_mode,
             "must be 0 on Atlas A2 with commAlg fullmesh (2 needs hierarchy)");
  if (IsA2(p)) {
    for (const auto& [v, name] : {std::pair{&t.const_alpha1, "constExpertAlpha1"},
                                  {&t.const_alpha2, "constExpertAlpha2"},
                                  {&t.const_v, "constExpertV"}}) {
      ck.Require(!v->present(), kRule, name, *v, "must be absent on Atlas A2 (no const experts)");
    }
  }
  ck.Require(!(c.comm_quant_mode != 0 && c.has_tp()), "commQuantMode", c.comm_quant_mode,
             "must be 0 when tpWorldSize == 2");
  if (t.add_rms_norm) {
    ck.Require(c.comm_quant_mode == 0, "commQuantMode", c.comm_quant_mode, "must be 0 for CombineAddRmsNorm");
    // A NaN, infinite or negative epsilon would make rstd NaN (or infinite) for some rows, silently. Judged and shown
    // in the default floating-point environment: under the caller's denormals-are-zero a negative subnormal would
    // pass as -0.
    const DefaultFloatingPoint arithmetic;
    const auto eps_text = [&] {
      char text[32];
      std::snprintf(text, sizeof text, "%g", static_cast<double>(t.norm_eps));
      return std::string(text);
    };
    ck.Require(std::isfinite(t.norm_eps) && t.norm_eps >= 0.0f, "normEps", eps_text, "must be finite and >= 0");
  }

  ck.Dim(t.expand_x, "expandX", 2);
  ck.Dim(t.expert_ids, "expertIds", 2);
  c.bs = t.expert_ids.shape[0];
  c.top_k = t.expert_ids.shape[1];
  c.hidden = t.expand_x.shape[1];
  c.x_dtype = t.expand_x.dtype;
  CheckMask(ck, c, t.x_active_mask, p);
  CheckCommonAttributes(ck, c, p, kCombineShapes, /*dispatch=*/false);
  if (t.add_rms_norm) {
    ck.Require(c.shared_expert_rank_num == 0, "sharedExpertRankNum", c.shared_expert_rank_num,
               "must be 0 for CombineAddRmsNorm");
    ck.Require(!c.expand_idx(), kRule, "DispatchHandle::expand_idx_layout", "true",
               "CombineAddRmsNorm exists on Atlas A3 only");
  }
  if (c.expand_idx()) {  // Atlas A2's combine never reads it
    ck.Require(!t.shared_expert_x.present(), kRule, "sharedExpertX", t.shared_expert_x,
               "must be absent with Atlas A2's expandIdx layout");
  }

  const WindowLayout layout(c);
  const int64_t a = layout.a, tp = c.tp_size();
  if (!IsA2(p)) {  // A2 forces tpWorldSize to 0, which switches this check off
    ck.Shape(t.expand_x.shape[0] >= c.tp_world_size * a, t.expand_x, "expandX",
             "dim0 must be >= tpWorldSize * A = ", c.tp_world_size * a);
  }
  CheckExpertScalesShape(ck, c, t.expert_scales);
  ck.Dim(t.assist_info, "assistInfoForCombine", 1);
  // Native handles keep only the rows that exist; the ops check each triple before use. Atlas A2 reads one
  // expandIdx per (token, k).
  const int64_t assist_min = c.expand_idx() ? c.bs * c.top_k : p == Profile::kA3 ? a * 128 : 0;
  ck.Shape(t.assist_info.shape[0] >= assist_min, t.assist_info, "assistInfoForCombine",
           c.expand_idx() ? "dim0 must be >= Bs * K = " : "dim0 must be >= A * 128 = ", assist_min);
  const int64_t send = c.sized_receive_entries() * tp;
  ck.Dim(t.ep_send_counts, "epSendCounts", 1);
  ck.Shape(t.ep_send_counts.shape[0] >= send, t.ep_send_counts, "epSendCounts", "dim0 must be >= ", CountEntriesRule(c),
           send);
  // The tiling's check, not the wrapper's (which lets an optional input through): 561002.
  ck.Require(!c.has_tp() || t.tp_send_counts.present(), kRule, "tpSendCounts", "nullptr",
             "required when tpWorldSize == 2");
  // Optional without TP (the documents: nullptr), but then as A3's tiling sizes it; A2's never reads it.
  if (t.tp_send_counts.present() && p == Profile::kA3) {
    ck.Dim(t.tp_send_counts, "tpSendCounts", 1);
    ck.Shape(t.tp_send_counts.shape[0] == c.tp_world_size, t.tp_send_counts, "tpSendCounts",
             "dim0 must equal tpWorldSize = ", c.tp_world_size);
  }
  if (t.shared_expert_x.present()) {
    ck.Require(c.shared_expert_rank_num == 0, kRule, "sharedExpertX", t.shared_expert_x,
               "only allowed when sharedExpertRankNum == 0");
    const auto& s = t.shared_expert_x.shape;
    const bool ok2 = s.size() == 2 && s[0] == c.bs && s[1] == c.hidden;
    int64_t rows = 0;  // the views are checked below: d0 * d1 may overflow here
    const bool ok3 = s.size() == 3 && !__builtin_mul_overflow(s[0], s[1], &rows) && rows == c.bs && s[2] == c.hidden;
    ck.Shape(ok2 || ok3, t.shared_expert_x, "sharedExpertX", "shape must be (Bs, H) = (", c.bs, ", ", c.hidden,
             ") or (d0, d1, H) with d0*d1 == Bs");
  }
  CheckSpecialExpertInputs(ck, c, t);
  const int64_t out_rank = t.add_rms_norm ? 3 : 2;
  ck.Dim(t.x, "xOut", out_rank);
  const bool x_ok = t.x.shape.front() == c.bs && t.x.shape.back() == c.hidden && (out_rank == 2 || t.x.shape[1] == 1);
  ck.Shape(x_ok, t.x, "xOut", "shape must be ", t.add_rms_norm ? "(Bs, 1, H) = (" : "(Bs, H) = (", c.bs,
           t.add_rms_norm ? ", 1, " : ", ", c.hidden, ")");
  CheckOutputView(ck, t.x, "xOut");
  if (t.add_rms_norm) {
    const auto bs1h = [&](const TensorView& v) {
      return v.dim() == 3 && v.shape[0] == c.bs && v.shape[1] == 1 && v.shape[2] == c.hidden;
    };
    ck.Shape(bs1h(t.residual_x), t.residual_x, "residualX", "shape must be (Bs, 1, H) = (", c.bs, ", 1, ", c.hidden,
             ")");
    ck.Shape(t.gamma.dim() == 1 && t.gamma.shape[0] == c.hidden, t.gamma, "gamma", "shape must be (H,) = (", c.hidden,
             ",)");
    ck.Shape(bs1h(t.y), t.y, "yOut", "shape must be (Bs, 1, H) = (", c.bs, ", 1, ", c.hidden, ")");
    CheckOutputView(ck, t.y, "yOut");
    const bool rstd_ok = t.rstd.dim() == 3 && t.rstd.shape[0] == c.bs && t.rstd.shape[1] == 1 && t.rstd.shape[2] == 1;
    ck.Shape(rstd_ok, t.rstd, "rstdOut", "shape must be (Bs, 1, 1) = (", c.bs, ", 1, 1)");
    CheckOutputView(ck, t.rstd, "rstdOut");
  }
  for (const auto& [v, param] : CombineInputs(t)) CheckInputView(ck, *v, param);  // the outputs: CheckOutputView
  CheckWindow(ck, c, layout, window, p);
}

void CheckOutputsApart(const DispatchTensors& t, Profile profile, const char* op, MemoryFilter compared) {
  const NamedView outputs[] = {{&t.expand_x, "expandXOut"},
                               {&t.dynamic_scales, "dynamicScalesOut"},
                               {&t.assist_info, "assistInfoForCombineOut"},
                               {&t.expert_token_nums, "expertTokenNumsOut"},
                               {&t.ep_recv_counts, "epRecvCountsOut"},
                               {&t.tp_recv_counts, "tpRecvCountsOut"}};
  const NamedView inputs[] = {{&t.x, "x"},
                              {&t.expert_ids, "expertIds"},
                              {&t.scales, "scales"},
                              {&t.x_active_mask, "xActiveMask"},
                              {&t.expert_scales, "expertScales"}};
  CheckApart(Checker(op, profile), outputs, inputs, compared);
}

void CheckOutputsApart(const CombineTensors& t, Profile profile, const char* op, MemoryFilter compared) {
  const NamedView outputs[] = {{&t.x, "xOut"}, {&t.y, "yOut"}, {&t.rstd, "rstdOut"}};
  CheckApart(Checker(op, profile), outputs, CombineInputs(t), compared);
}

}  // namespace moe_ep::plan
