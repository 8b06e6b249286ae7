// Runs a scenario on thread ranks through the native API with poisoned outputs, and compares every
// output element (and every untouched element) with the reference.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

#include "moe_ep/ops.h"
#include "verify/run_ranks.h"
#include "verify/scenario.h"

namespace moe_ep::verify {
namespace {

DType HalfDType(const moe_ref::Config& c) { return c.dtype == moe_ref::DType::kBf16 ? DType::kBf16 : DType::kFp16; }

// Memory for a (rows, h) half input in the requested layout; view() points into it.
class LaidOutRows {
 public:
  // `peer_visible`: in the shared heap (Tensor::PeerVisible), where process ranks read rows in place.
  LaidOutRows(const std::vector<uint16_t>& dense, int64_t rows, int64_t h, DType dtype, InputLayout layout,
              bool peer_visible) {
    int64_t row_stride = h, col_stride = 1;
    if (layout == InputLayout::kPaddedRows) row_stride = h + 3;
    if (layout == InputLayout::kStridedColumns) col_stride = 2, row_stride = 2 * h + 1;
    const int64_t elements = rows * row_stride + 1;
    storage_ = peer_visible ? Tensor::PeerVisible(DType::kBf16, {elements}) : Tensor(DType::kBf16, {elements});
    uint16_t* s = storage_.data_as<uint16_t>();
    std::fill(s, s + elements, 0x7FFF);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < h; ++j) s[r * row_stride + j * col_stride] = dense[r * h + j];
    }
    view_ = TensorView(s, dtype, {rows, h}, {row_stride, col_stride});
  }
  const TensorView& view() const { return view_; }
  // What a caller may do as soon as the operation that read the rows returned: peers that read them in
  // place must be done by then.
  void Overwrite() { std::memset(storage_.data(), 0xFF, storage_.bytes()); }

 private:
  Tensor storage_;
  TensorView view_;
};

template <typename T>
bool IsPoison(const T& v) {
  T p;
  std::memset(&p, kPoisonByte, sizeof(T));
  return std::memcmp(&v, &p, sizeof(T)) == 0;
}

}  // namespace

// The outputs as the library sees them: each rank's dense buffers themselves or, with strided_outputs, gapped
// storage standing for them, whose elements Gather() copies back into the dense buffers after the calls. Outside the
// anonymous namespace: RankCalls::State, of the header's class, holds two.
class OutputViews {
 public:
  explicit OutputViews(bool strided) : strided_(strided) {}

  // A view of `dense` with `shape` in elements of `dtype`: dense itself, or gapped storage standing for it.
  template <typename T>
  TensorView Of(std::vector<T>& dense, DType dtype, std::vector<int64_t> shape) {
    const TensorView plain(dense.data(), dtype, shape);
    if (!strided_ || plain.numel() == 0) return plain;
    std::vector<int64_t> strides = GappedStrides(shape);
    const size_t elem = DTypeSize(dtype);
    auto& gapped = gapped_.emplace_back(
        Gapped{dense.data(), elem, Poisoned<uint8_t>(GappedStorageElements(shape, strides) * elem), {}});
    gapped.view = TensorView(gapped.storage.data(), dtype, std::move(shape), std::move(strides));
    return gapped.view;
  }

  // "" or the first gap element the library wrote.
  std::string Gather() const {
    for (const Gapped& g : gapped_) {
      const std::string m = GatherGapped(g.storage, g.view.shape, g.view.strides, g.elem, g.dense);
      if (!m.empty()) return m;
    }
    return "";
  }

 private:
  struct Gapped {
    void* dense;
    size_t elem;
    std::vector<uint8_t> storage;
    TensorView view;
  };
  bool strided_;
  std::deque<Gapped> gapped_;  // a deque: views handed out stay where they are
};

namespace {

// Entries of epRecvCounts past the group's full size: they must stay poison.
constexpr size_t kCountsSlack = 2;

// Compares the first `defined` elements (by `nans`) and checks every later one is still poison; a buffer shorter
// than `defined` is a difference too (the library sized it too small and dropped the rest).
template <typename T, typename U>
std::string CompareBuffer(const char* what, int rank, const std::vector<T>& expected, const std::vector<U>& got,
                          size_t defined, Nans nans = Nans::kBits) {
  static_assert(sizeof(T) == sizeof(U));
  if (defined > got.size()) {
    return "rank " + std::to_string(rank) + " " + what + ": the buffer holds " + std::to_string(got.size()) +
           " elements, the reference defines " + std::to_string(defined);
  }
  // Fast path: the defined prefix matches as a block and the rest is still poison.
  bool clean = defined == 0 || std::memcmp(expected.data(), got.data(), defined * sizeof(T)) == 0;
  for (size_t i = defined; clean && i < got.size(); ++i) clean = IsPoison(got[i]);
  if (clean) return "";
  for (size_t i = 0; i < got.size(); ++i) {
    const bool bad = i < defined ? !SameUnder(nans, &expected[i], &got[i], sizeof(T)) : !IsPoison(got[i]);
    if (!bad) continue;
    std::ostringstream o;
    o << "rank " << rank << " " << what << "[" << i << "]: ";
    if (i < defined) {
      o << "expected " << +expected[i] << " got " << +got[i];
    } else {
      o << "written past the " << defined << " defined elements (must stay untouched)";
    }
    return o.str();
  }
  return "";
}

}  // namespace

Nans HalfNans(const moe_ref::Config& c) { return c.dtype == moe_ref::DType::kBf16 ? Nans::kBf16 : Nans::kFp16; }

bool SameUnder(Nans nans, const void* a, const void* b, size_t bytes) {
  if (std::memcmp(a, b, bytes) == 0) return true;
  const auto is_nan = [&](const void* p) {
    uint64_t bits = 0;
    std::memcpy(&bits, p, std::min<size_t>(bytes, sizeof bits));
    switch (nans) {
      case Nans::kFp16:
        return bytes == 2 && (bits & 0x7C00) == 0x7C00 && (bits & 0x3FF) != 0;
      case Nans::kBf16:
        return bytes == 2 && (bits & 0x7F80) == 0x7F80 && (bits & 0x7F) != 0;
      case Nans::kFp32:
        return bytes == 4 && (bits & 0x7F800000) == 0x7F800000 && (bits & 0x7FFFFF) != 0;
      case Nans::kBits:
        break;
    }
    return false;
  };
  return is_nan(a) && is_nan(b);
}

std::vector<int64_t> GappedStrides(const std::vector<int64_t>& shape) {
  const int64_t n = static_cast<int64_t>(shape.size());
  std::vector<int64_t> strides(n, 2);  // 1-D: every other element
  if (n >= 2) {
    strides[n - 1] = 1;
    strides[n - 2] = shape[n - 1] + 3;
    for (int64_t d = n - 3; d >= 0; --d) strides[d] = strides[d + 1] * shape[d + 1];
  }
  return strides;
}

int64_t GappedStorageElements(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
  int64_t reach = 1;
  for (size_t d = 0; d < shape.size(); ++d) reach += (shape[d] - 1) * strides[d];
  return reach + 3;  // and a gap after the last row
}

std::string GatherGapped(const std::vector<uint8_t>& storage, const std::vector<int64_t>& shape,
                         const std::vector<int64_t>& strides, size_t elem, void* dense) {
  std::vector<bool> in_view(storage.size() / elem, false);
  int64_t numel = 1;
  for (int64_t extent : shape) numel *= extent;
  for (int64_t i = 0; i < numel; ++i) {
    int64_t offset = 0;
    for (int64_t d = static_cast<int64_t>(shape.size()) - 1, rest = i; d >= 0; rest /= shape[d], --d) {
      offset += rest % shape[d] * strides[d];
    }
    in_view[offset] = true;
    std::memcpy(static_cast<uint8_t*>(dense) + i * elem, storage.data() + offset * elem, elem);
  }
  for (size_t e = 0; e < in_view.size(); ++e) {
    const auto first = storage.begin() + static_cast<std::ptrdiff_t>(e * elem);
    const bool poison =
        std::all_of(first, first + static_cast<std::ptrdiff_t>(elem), [](uint8_t b) { return b == kPoisonByte; });
    if (!in_view[e] && !poison) return "element " + std::to_string(e) + " of a strided output's gaps was written";
  }
  return "";
}

std::string CompareScenarioRank(const ScenarioSpec& s, int g, const moe_ref::DispatchOut& e,
                                const moe_ref::CombineOut& ce, const RankResult& r) {
  const int64_t h = s.config.hidden;
  if (!r.written_outside.empty()) return "rank " + std::to_string(g) + ": " + r.written_outside;
  std::string m;
  if (s.config.quant_mode == 2) {
    std::vector<uint8_t> q(e.expand_x_q.begin(), e.expand_x_q.end());
    m = CompareBuffer("expandX", g, q, r.expand_x, e.rows * h);
    if (m.empty()) m = CompareBuffer("dynamicScales", g, e.dynamic_scales, r.dynamic_scales, e.rows);
  } else {
    std::vector<uint16_t> got(r.expand_x.size() / 2);
    std::memcpy(got.data(), r.expand_x.data(), got.size() * 2);
    m = CompareBuffer("expandX", g, e.expand_x, got, e.rows * h);
  }
  if (m.empty() && s.config.a2) {
    m = CompareBuffer("assistInfo (expandIdx)", g, e.expand_idx, r.assist_info, e.expand_idx.size());
  } else if (m.empty()) {
    m = CompareBuffer("assistInfo", g, e.assist_info, r.assist_info, 3 * e.own_rows);  // the TP peer's rows: none
  }
  if (m.empty()) {
    // Sized for either role under survivors, a shared-expert rank's one count is followed by zeros (DispatchInto).
    std::vector<int64_t> token_nums = e.expert_token_nums;
    token_nums.resize(std::max(token_nums.size(), r.expert_token_nums.size()), 0);
    m = CompareBuffer("expertTokenNums", g, token_nums, r.expert_token_nums, token_nums.size());
  }
  if (m.empty()) {
    // Scaled down, the survivors' counts come first and the rest of the full size is 0 (DispatchInto).
    std::vector<int32_t> counts = e.ep_recv_counts;
    counts.resize(std::max(counts.size(), r.ep_recv_counts.size() - kCountsSlack), 0);
    m = CompareBuffer("epRecvCounts", g, counts, r.ep_recv_counts, counts.size());
  }
  if (m.empty()) {  // written only with a TP pair: otherwise it must stay poison
    m = CompareBuffer("tpRecvCounts", g, e.tp_recv_counts, r.tp_recv_counts, s.config.tp_world_size == 2 ? 2 : 0);
  }
  for (size_t t = 0; m.empty() && t < ce.written.size(); ++t) {
    const size_t defined = ce.written[t] ? h : 0;
    auto slice = [&](const std::vector<uint16_t>& v) {
      return v.empty() ? v : std::vector<uint16_t>(v.begin() + t * h, v.begin() + (t + 1) * h);
    };
    const std::string what = "x(token " + std::to_string(t) + ")";
    m = CompareBuffer(what.c_str(), g, slice(ce.x), slice(r.x), defined, HalfNans(s.config));
    if (m.empty() && s.add_rms_norm) {
      const std::string ywhat = "y(token " + std::to_string(t) + ")";
      m = CompareBuffer(ywhat.c_str(), g, slice(ce.y), slice(r.y), defined, HalfNans(s.config));
      const std::vector<float> er(ce.written[t] ? 1 : 0, ce.written[t] ? ce.rstd[t] : 0.0f);
      if (m.empty()) m = CompareBuffer("rstd", g, er, std::vector<float>{r.rstd[t]}, er.size(), Nans::kFp32);
    }
  }
  return m;
}

struct RankCalls::State {
  State(const ScenarioSpec& spec, const ScenarioInputs& inputs, int rank, Group& ep_group, Group* tp_group,
        bool in_shared_heap)
      : s(spec), in(inputs), g(rank), ep(ep_group), tp(tp_group), peer_visible(in_shared_heap) {}
  const ScenarioSpec& s;
  const ScenarioInputs& in;
  int g;
  Group& ep;
  Group* tp;
  bool peer_visible;
  ExpertLayout experts;
  int64_t a = 0;              // rows A this rank may receive from its EP group
  int64_t count_experts = 0;  // entries of expertTokenNums
  int64_t recv_entries = 0;   // entries of epRecvCounts (before kCountsSlack)
  // The group as made (scaled down: before, where the spec is the survivors' job), and the last dispatch's expert ids
  // and smooth scales as its operations take them (GroupExpertIds; combine reads the ids too).
  moe_ref::Config original;
  std::vector<int32_t> expert_ids;
  std::vector<float> smooth_scales;
  RankResult r;
  OutputViews dispatch_views{false}, combine_views{false};
  DispatchHandle handle;
};

RankCalls::RankCalls(const ScenarioSpec& s, const ScenarioInputs& in, int g, Group& ep, Group* tp,
                     const ElasticRun* elastic, bool peer_visible)
    : state_(std::make_unique<State>(s, in, g, ep, tp, peer_visible)) {
  const auto& c = s.config;
  const auto& oc = elastic ? elastic->original : c;  // the group's own configuration sizes the buffers
  State& st = *state_;
  st.experts = ExpertLayout{oc.moe_expert_num,  oc.shared_expert_num, oc.shared_expert_rank_num, oc.global_bs,
                            oc.zero_expert_num, oc.copy_expert_num,   oc.const_expert_num,       {}};
  if (elastic) st.experts.survivors = elastic->survivors;
  st.original = oc;
  st.a = DispatchReceiveRows(ep, in.dispatch[g].bs, c.top_k, st.experts);
  const bool shared_rank = ep.rank() < oc.shared_expert_rank_num;
  const int64_t l = oc.moe_expert_num / (oc.ep_world_size - oc.shared_expert_rank_num);
  // Survivors (elasticInfo) size the counts for either role, as CANN does.
  st.count_experts = elastic ? std::max<int64_t>(l, 1) : shared_rank ? 1 : l;
  st.recv_entries = oc.ep_world_size * st.count_experts * c.tp_world_size;
}

RankCalls::~RankCalls() = default;

DispatchHandle& RankCalls::Dispatch() {
  State& st = *state_;
  const auto& s = st.s;
  const auto& c = s.config;
  const auto& d = st.in.dispatch[st.g];
  const int64_t h = c.hidden, tp_size = c.tp_world_size, a = st.a;
  const bool quant = c.quant_mode == 2;
  RankResult& r = st.r;
  r.expand_x = Poisoned<uint8_t>(tp_size * a * h * (quant ? 1 : 2) + 7 * h);  // extra rows: must stay poison
  r.dynamic_scales = Poisoned<float>(quant ? tp_size * a + 3 : 0);
  // 3A as CANN's tiling asks, TP or not (the TP peer's rows carry no triple); 5 more that must stay poison.
  r.assist_info = Poisoned<int32_t>(std::max(3 * a, d.bs * c.top_k) + 5);
  r.expert_token_nums = Poisoned<int64_t>(st.count_experts);
  r.ep_recv_counts = Poisoned<int32_t>(st.recv_entries + kCountsSlack);
  r.tp_recv_counts = Poisoned<int32_t>(tp_size);
  const int64_t expand_rows = static_cast<int64_t>(r.expand_x.size()) / (h * (quant ? 1 : 2));

  LaidOutRows x(d.x, d.bs, h, HalfDType(c), s.layout, st.peer_visible);
  DispatchOptions options;
  options.experts = st.experts;
  options.quant = quant ? Quant::kDynamicInt8 : Quant::kNone;
  options.cumulative_token_nums = c.expert_token_nums_type == 0;
  options.expand_idx_layout = c.a2;
  if (!d.smooth_scales.empty()) {
    // Scaled down, the operations take the group's (n_s + moeExpertNum, H): the survivors' experts are its first rows
    // (their new ids), and the rows of the experts that left, never read, hold a value that would show.
    st.smooth_scales = d.smooth_scales;
    const int64_t rows = c.shared_expert_num + st.original.moe_expert_num;
    st.smooth_scales.resize(rows * h, 1e30f);
    options.smooth_scales = TensorView(st.smooth_scales.data(), DType::kFloat32, {rows, h});
  }
  if (d.mask_kind == moe_ref::MaskKind::kTokens) options.active_mask = TensorView(d.mask.data(), DType::kBool, {d.bs});
  if (d.mask_kind == moe_ref::MaskKind::kPairs) {
    options.active_mask = TensorView(d.mask.data(), DType::kBool, {d.bs, c.top_k});
  }
  st.dispatch_views = OutputViews(s.strided_outputs);
  OutputViews& views = st.dispatch_views;
  const auto whole = [](const auto& v) { return std::vector<int64_t>{static_cast<int64_t>(v.size())}; };
  const DispatchOutputs outs{
      views.Of(r.expand_x, quant ? DType::kInt8 : HalfDType(c), {expand_rows, h}),
      quant ? views.Of(r.dynamic_scales, DType::kFloat32, whole(r.dynamic_scales)) : TensorView{},
      views.Of(r.assist_info, DType::kInt32, whole(r.assist_info)),
      views.Of(r.expert_token_nums, DType::kInt64, whole(r.expert_token_nums)),
      views.Of(r.ep_recv_counts, DType::kInt32, whole(r.ep_recv_counts)),
      views.Of(r.tp_recv_counts, DType::kInt32, {tp_size})};
  st.expert_ids = GroupExpertIds(d.expert_ids, c, st.original);
  st.handle = DispatchInto(st.ep, x.view(), TensorView(st.expert_ids.data(), DType::kInt32, {d.bs, c.top_k}), options,
                           outs, st.tp);
  x.Overwrite();
  return st.handle;
}

void RankCalls::Combine() {
  State& st = *state_;
  const auto& s = st.s;
  const auto& c = s.config;
  const auto& d = st.in.dispatch[st.g];
  const auto& m = st.in.combine[st.g];
  const int64_t h = c.hidden, tp_size = c.tp_world_size;
  RankResult& r = st.r;
  // Expert outputs: the reference's rows, in a buffer of tp*A rows (rows past them hold junk).
  std::vector<uint16_t> expert_out = Poisoned<uint16_t>(tp_size * st.a * h);
  std::copy(m.expert_out.begin(), m.expert_out.end(), expert_out.begin());
  LaidOutRows expert_view(expert_out, tp_size * st.a, h, HalfDType(c), s.layout, st.peer_visible);
  const TensorView scales(m.expert_scales.data(), DType::kFloat32, {d.bs, c.top_k});
  CombineOptions combine;
  combine.comm_quant = c.comm_quant_mode == 2 ? Quant::kDynamicInt8 : Quant::kNone;
  if (!m.shared_expert_x.empty() && !c.a2)  // the reference's A2 model ignores it, as A2's kernel does
    combine.shared_expert_x = TensorView(m.shared_expert_x.data(), HalfDType(c), {d.bs, h});
  if (!m.ori_x.empty()) combine.ori_x = TensorView(m.ori_x.data(), HalfDType(c), {d.bs, h});
  if (c.const_expert_num > 0) {
    combine.const_alpha1 = TensorView(m.const_alpha1.data(), HalfDType(c), {c.const_expert_num, h});
    combine.const_alpha2 = TensorView(m.const_alpha2.data(), HalfDType(c), {c.const_expert_num, h});
    combine.const_v = TensorView(m.const_v.data(), HalfDType(c), {c.const_expert_num, h});
  }
  st.combine_views = OutputViews(s.strided_outputs);
  OutputViews& views = st.combine_views;
  r.x = Poisoned<uint16_t>(d.bs * h);
  if (s.add_rms_norm) {
    r.y = Poisoned<uint16_t>(d.bs * h);
    r.rstd = Poisoned<float>(d.bs);
    const AddRmsNormOutputs o{views.Of(r.y, DType::kBf16, {d.bs, 1, h}),
                              views.Of(r.rstd, DType::kFloat32, {d.bs, 1, 1}),
                              views.Of(r.x, DType::kBf16, {d.bs, 1, h})};
    CombineAddRmsNormInto(st.ep, st.handle, expert_view.view(), scales,
                          TensorView(m.residual_x.data(), DType::kBf16, {d.bs, 1, h}),
                          TensorView(m.gamma.data(), DType::kBf16, {h}), c.norm_eps, combine, o, st.tp);
  } else {
    CombineInto(st.ep, st.handle, expert_view.view(), scales, combine, views.Of(r.x, HalfDType(c), {d.bs, h}), st.tp);
  }
  expert_view.Overwrite();
}

RankResult& RankCalls::Result() {
  State& st = *state_;
  st.r.written_outside = st.dispatch_views.Gather();
  if (st.r.written_outside.empty()) st.r.written_outside = st.combine_views.Gather();
  return st.r;
}

RankResult RunScenarioRank(const ScenarioSpec& s, const ScenarioInputs& in, int g, Group& ep, Group* tp,
                           const ElasticRun* elastic, bool peer_visible) {
  RankCalls calls(s, in, g, ep, tp, elastic, peer_visible);
  calls.Dispatch();
  calls.Combine();
  return std::move(calls.Result());
}

GroupMaker ThreadGroupMaker() {
  return [](int ep_size, int tp_size, const GroupOptions& options) {
    // Every group made here, up front; rank g's thread takes its own out.
    struct Made {
      std::vector<std::vector<Group>> ep, tp;  // ep[t][e], tp[e][t]
    };
    auto made = std::make_shared<Made>();
    GroupOptions o = options;
    for (int t = 0; t < tp_size; ++t) {
      o.name = "ep" + std::to_string(t);
      made->ep.push_back(CreateThreadGroups(ep_size, o));
    }
    if (tp_size == 2) {
      for (int e = 0; e < ep_size; ++e) {
        o.name = "tp" + std::to_string(e);
        made->tp.push_back(CreateThreadGroups(2, o));
      }
    }
    return [made, ep_size, tp_size](int g) {
      const int t = g / ep_size, e = g % ep_size;
      RankGroups mine{std::move(made->ep[t][e]), std::nullopt};
      if (tp_size == 2) mine.tp.emplace(std::move(made->tp[e][t]));
      return mine;
    };
  };
}

GroupMaker ShmGroupMaker() {
  return [](int ep_size, int tp_size, const GroupOptions& options) {
    static std::atomic<uint64_t> jobs{0};
    const std::string token = "verify" + std::to_string(getpid()) + "x" + std::to_string(jobs++);
    return [=](int g) {
      const LaunchEnvironment job{g, ep_size * tp_size, token};
      const int t = g / ep_size, e = g % ep_size;
      std::vector<int> ep_members;
      for (int r = 0; r < ep_size; ++r) ep_members.push_back(t * ep_size + r);
      GroupOptions o = options;
      o.name = "ep";
      RankGroups mine{JoinProcessGroup(job, ep_members, o), std::nullopt};
      if (tp_size == 2) {
        o.name = "tp";
        const std::vector<int> tp_members = {e, e + ep_size};
        mine.tp.emplace(JoinProcessGroup(job, tp_members, o));
      }
      return mine;
    };
  };
}

Expected ExpectedRound(const ScenarioSpec& s, ScenarioInputs& in) {
  Expected e{moe_ref::Dispatch(s.config, in.dispatch), {}};
  FillExpertOutputs(s, e.dispatch, in);
  e.combine = s.add_rms_norm ? moe_ref::CombineAddRmsNorm(s.config, in.dispatch, in.combine)
                             : moe_ref::Combine(s.config, in.dispatch, in.combine);
  return e;
}

std::string RandomRoundOnRank(Group& ep, Group* tp, int rank, uint64_t seed) {
  // RandomSpec draws E from [2, ranks / tp]: a group of one rank is never drawn.
  if (ep.size() < 2) throw std::invalid_argument("RandomRoundOnRank needs an EP group of 2 ranks or more");
  std::mt19937_64 rng(seed);
  const int tp_size = tp ? 2 : 1, ranks = ep.size() * tp_size;
  ScenarioSpec s = RandomSpec(rng, ranks, 256, 16);
  while (s.config.ep_world_size != ep.size() || s.config.tp_world_size != tp_size) s = RandomSpec(rng, ranks, 256, 16);
  ScenarioInputs in = MakeInputs(s, rng);
  const Expected expected = ExpectedRound(s, in);
  const std::string m = CompareScenarioRank(s, rank, expected.dispatch[rank], expected.combine[rank],
                                            RunScenarioRank(s, in, rank, ep, tp));
  return m.empty() ? m : "seed " + std::to_string(seed) + ", " + Describe(s) + ": " + m;
}

std::string RunAndCompare(const ScenarioSpec& s, ScenarioInputs& in, const RunOptions& options) {
  const auto& c = s.config;
  const int ep_size = c.ep_world_size, tp_size = c.tp_world_size, ranks = ep_size * tp_size;
  GroupOptions group_options;
  group_options.window_bytes = options.window_bytes;
  group_options.timeout = options.timeout;
  group_options.data_path = options.data_path;
  group_options.threads = options.threads;
  const auto join = (options.groups ? options.groups : ThreadGroupMaker())(ep_size, tp_size, group_options);
  std::vector<std::optional<RankGroups>> groups(ranks);
  RunRanks(ranks, [&](int g) {
    if (options.on_rank_thread) options.on_rank_thread();
    groups[g].emplace(join(g));
  });
  std::mt19937_64 rng(options.seed);
  for (int round = 0; round < options.rounds; ++round) {
    if (round > 0) RerouteInputs(s, rng, in);
    const Expected expected = ExpectedRound(s, in);
    std::vector<RankResult> results(ranks);
    RunRanks(ranks, [&](int g) {
      if (options.on_rank_thread) options.on_rank_thread();
      RankGroups& mine = *groups[g];
      results[g] = RunScenarioRank(s, in, g, mine.ep, mine.tp ? &*mine.tp : nullptr, nullptr, options.peer_visible);
    });
    for (int g = 0; g < ranks; ++g) {
      const std::string m = CompareScenarioRank(s, g, expected.dispatch[g], expected.combine[g], results[g]);
      if (!m.empty()) return "round " + std::to_string(round) + ": " + m;
    }
  }
  return "";
}

}  // namespace moe_ep::verify
