// libFuzzer target for the native C++ API (include/moe_ep/): decodes each input into Dispatch / Combine /
// CombineAddRmsNormInto / BufferReset / ProbeReachable / CreateThreadGroups / Tensor calls made by 2 or 4 thread
// ranks of this process, and checks the contract: every call returns or throws moe_ep::Error (no crash, no
// out-of-bounds access, no other exception, no leak), no operation writes its inputs, and nothing waits past its
// deadline.
//
// Input format: as capi_fuzz (fuzz_support.h; README.md has the table): ops of key/value settings, opcode % 7
// (round, dispatch, combine, reset, groups, env, tensor); native_fuzz_keys.h names every key and value code.
// An op without settings is a valid call: `00 00` is a Dispatch + Combine round on 2 ranks.
//
// Ranks: 4 persistent threads. The topology's groups (CreateThreadGroups, 100 ms deadline, 64 MiB windows) are
// reused across inputs; after an operation that failed, or that some rank sat out, every rank runs BufferReset so the
// next op starts clean, and the groups are made again if even that fails (or the group options / environment
// changed). Views are backed by exactly the bytes they reach, in the harness's own heap memory, so ASan sees one
// byte past them; a view too large to back has its first dimension shrunk until it fits.
#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <typeinfo>
#include <vector>

#include "fuzz_support.h"
#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/ops.h"
#include "moe_ep/options.h"
#include "moe_ep/tensor.h"
#include "native_fuzz_keys.h"

namespace moe_ep_fuzz::native {
namespace {

using moe_ep::DType;

constexpr int64_t kMaxViewBytes = int64_t{16} << 20;
// A view that does not fit is shrunk to this (filling the maximum would make such inputs slow to no purpose).
constexpr int64_t kShrunkViewBytes = int64_t{1} << 20;

// ---------------------------------------------------------------------------------------------------
// Environment and group options
// ---------------------------------------------------------------------------------------------------

const std::optional<std::string> kUnset;

// Index 0 is the harness's value. Every valid choice keeps deadlines at a few seconds at most.
const EnvKnob kKnobs[] = {
    {"MOE_EP_TIMEOUT_MS", "100", {"100", "1", "0", "-1", "abc", "2147483649", "50", "300x", "1000"}},
    {"MOE_EP_WINDOW_MB", "64", {"64", "1", "0", "-1", "x", "1048577", "99999999999999999999", "4096", kUnset}},
};
const int kKnobKeys[] = {kEnvTimeoutMs, kEnvWindowMb};

/// The options the harness's own groups are made with (kGroups changes them for the rest of the input). The
/// choices keep every deadline short; a throwaway group (kGroupSize) takes raw values instead.
struct HarnessOptions {
  int64_t timeout_ms = 100;
  uint64_t window_bytes = uint64_t{64} << 20;
  int name = kNameDefault;
  bool operator==(const HarnessOptions&) const = default;
};
const int64_t kTimeoutChoices[] = {100, 1, 0, 50, 1000, -5};
const uint64_t kWindowChoices[] = {uint64_t{64} << 20, 1, 0, uint64_t{1} << 30, uint64_t{1} << 62, 4096};

std::string GroupNameFor(int code) {
  switch (static_cast<unsigned>(code) % 4) {
    case kNameEmpty:
      return "";
    case kNameLong:
      return std::string(5000, 'n');
    case kNameBinary:
      return std::string("a\0b\xff\n%s%n", 10);
    default:
      return "fuzz";
  }
}

moe_ep::GroupOptions ToGroupOptions(const HarnessOptions& h) {
  moe_ep::GroupOptions o;
  o.timeout = std::chrono::milliseconds(h.timeout_ms);
  o.window_bytes = h.window_bytes;
  o.name = GroupNameFor(h.name);
  return o;
}

// ---------------------------------------------------------------------------------------------------
// Outcomes: moe_ep::Error is a result; anything else escaping is a broken contract.
// ---------------------------------------------------------------------------------------------------

struct Outcome {
  bool called = false;
  bool ok = false;
  int32_t code = 0;
  std::string message;
};

/// Runs `body`; records success or the moe_ep::Error it threw; dies on any other exception.
template <typename Body>
Outcome Attempt(const char* what, int rank, Body&& body) {
  Outcome out;
  out.called = true;
  try {
    body();
    out.ok = true;
  } catch (const moe_ep::Error& e) {
    out.code = static_cast<int32_t>(e.code());
    out.message = e.what();
  } catch (const std::exception& e) {
    Die("contract: %s on rank %d threw %s, not moe_ep::Error: %s", what, rank, typeid(e).name(), e.what());
  } catch (...) {
    Die("contract: %s on rank %d threw something that is not a std::exception", what, rank);
  }
  if (Verbose()) {
    std::fprintf(stderr, "[native_fuzz] rank %d: %s -> %d %s\n", rank, what, out.code, out.message.c_str());
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------------------

/// The groups of one topology: worker g's EP group and (with TP) its TP pair.
struct GroupSet {
  Topology topology{2, 1};
  std::vector<std::vector<moe_ep::Group>> owners;  // every CreateThreadGroups result, kept alive
  std::array<moe_ep::Group*, kMaxRanks> ep{}, tp{};
  HarnessOptions options;
  std::string environment;
};

std::string CreationEnvironment() {
  return GetEnv("MOE_EP_TIMEOUT_MS").value_or("<unset>") + "|" + GetEnv("MOE_EP_WINDOW_MB").value_or("<unset>");
}

RankThreads& Workers() {
  static RankThreads* threads = new RankThreads([](int) {});  // never destroyed: the workers live until exit
  return *threads;
}

class Groups {
 public:
  static Groups& Get() {
    static Groups* groups = new Groups;  // reachable until exit
    return *groups;
  }

  /// The topology's groups under `options`, made (again) when missing or stale; nullptr when the library
  /// refuses the options or the environment (a result, not a bug).
  GroupSet* For(int topology, const HarnessOptions& options) {
    auto& slot = sets_[topology];
    if (slot && (slot->options != options || slot->environment != CreationEnvironment())) slot.reset();
    if (slot) return slot.get();
    auto set = std::make_unique<GroupSet>();
    set->topology = kTopologies[topology];
    set->options = options;
    set->environment = CreationEnvironment();
    const Topology& t = set->topology;
    const moe_ep::GroupOptions o = ToGroupOptions(options);
    const Outcome made = Attempt("CreateThreadGroups", -1, [&] {
      for (int tp = 0; tp < t.tp_size; ++tp) {
        set->owners.push_back(moe_ep::CreateThreadGroups(t.ep_size, o));
        for (int e = 0; e < t.ep_size; ++e) set->ep[tp * t.ep_size + e] = &set->owners.back()[e];
      }
      for (int e = 0; t.tp_size == 2 && e < t.ep_size; ++e) {
        set->owners.push_back(moe_ep::CreateThreadGroups(2, o));
        set->tp[e] = &set->owners.back()[0];
        set->tp[e + t.ep_size] = &set->owners.back()[1];
      }
    });
    if (!made.ok) return nullptr;
    slot = std::move(set);
    return slot.get();
  }

  void Drop(int topology) { sets_[topology].reset(); }

 private:
  std::array<std::unique_ptr<GroupSet>, 3> sets_;
};

/// Every rank of the set runs BufferReset on its groups, so the next op finds equal call counters; the groups
/// are made again when that fails too.
void Recover(int topology, GroupSet& set) {
  Watchdog::Get().Doing("recovering with BufferReset on every rank");
  std::array<bool, kMaxRanks> ok{};
  std::vector<int> all;
  for (int g = 0; g < set.topology.ranks(); ++g) all.push_back(g);
  Workers().Run(all, [&](int g) {
    ok[g] = Attempt("BufferReset (recovery)", g, [&] {
              moe_ep::BufferReset(*set.ep[g]);
              if (set.tp[g] != nullptr) moe_ep::BufferReset(*set.tp[g]);
            }).ok;
  });
  for (int g : all) {
    if (!ok[g]) {
      Groups::Get().Drop(topology);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Views over the harness's memory
// ---------------------------------------------------------------------------------------------------

DType RawDtype(int64_t v) { return static_cast<DType>(static_cast<uint8_t>(v)); }  // any byte is a DType value

/// A TensorView over exactly the bytes it reaches (so ASan sees one byte past it). Inputs keep a snapshot,
/// and the harness checks that no operation changed them.
class HostView {
 public:
  HostView(const char* name, DType dtype, std::vector<int64_t> shape, int mode, bool input)
      : name_(name), input_(input) {
    elem_ = moe_ep::DTypeSize(dtype);
    std::vector<int64_t> strides;
    const size_t n = shape.size();
    auto row_major = [&] {
      std::vector<int64_t> s(n, 1);
      for (size_t d = n; d-- > 1;) s[d - 1] = s[d] * std::max<int64_t>(shape[d], 1);
      return s;
    };
    // A shape with a negative dimension, or one whose element count overflows int64, is no view at all: it
    // goes over 64 bytes, and the library must refuse it unread. Any other shape is shrunk, first dimension
    // first, until three times its dense bytes fit (the strides of the odd modes need up to that): the shapes of a
    // call then disagree, which the library must notice.
    bool sane = true;
    __int128 count = 1;
    for (int64_t d : shape) {
      sane = sane && d >= 0;
      count *= d < 0 ? 0 : d;
      if (count > INT64_MAX) sane = false;
    }
    for (size_t d = 0; sane && d < n; ++d) {
      __int128 rest = __int128(elem_) * 3;
      for (size_t e = d + 1; e < n; ++e)
        rest = std::min<__int128>(rest * std::max<int64_t>(shape[e], 1), kMaxViewBytes + 1);
      if (__int128(shape[d]) * rest > kMaxViewBytes) shape[d] = static_cast<int64_t>(kShrunkViewBytes / rest);
    }
    int64_t base_offset = 0;  // elements from the storage start to data
    if (sane && n > 0) {
      strides = row_major();
      switch (mode) {
        case kViewPaddedRows:
          if (n >= 2) strides[0] += 3;
          break;
        case kViewStridedCols:
          strides[n - 1] = 2;
          for (size_t d = n - 1; d-- > 0;) strides[d] = strides[d + 1] * std::max<int64_t>(shape[d + 1], 1) + 1;
          break;
        case kViewBroadcastRows:
          strides[0] = 0;
          break;
        case kViewColumnMajor:
          if (n == 2) strides = {1, std::max<int64_t>(shape[0], 1)};
          break;
        case kViewNegativeRows:
          base_offset = std::max<int64_t>(shape[0] - 1, 0) * strides[0];
          strides[0] = -strides[0];
          break;
        case kViewNegativeDim:
          shape[0] = -1;
          sane = false;
          break;
        case kViewOverflowDims:
          shape[0] = int64_t{1} << 62;
          sane = false;
          break;
        case kViewShortStrides:
          strides.pop_back();
          break;
        case kViewFlat: {
          int64_t all = 1;
          for (int64_t d : shape) all *= d;
          shape = {all};
          strides.clear();
          break;
        }
        default:
          strides.clear();  // the usual contiguous view: no strides given
          break;
      }
    }
    shape_ = shape;
    strides_ = strides;
    // The reach: the largest element offset (from data), with negative strides going before data.
    int64_t numel = sane ? 1 : 0;
    for (int64_t d : shape) numel = sane ? numel * d : 0;
    numel_ = numel;
    int64_t max_off = 0;
    for (size_t d = 0; sane && numel > 0 && d < shape.size(); ++d) {
      const int64_t s = d < strides.size() ? strides[d] : (strides.empty() ? row_major()[d] : 0);
      if (s > 0) max_off += (shape[d] - 1) * s;
    }
    const int64_t storage_elems = sane && numel > 0 ? base_offset + max_off + 1 : 0;
    bytes_ = std::max<size_t>(static_cast<size_t>(storage_elems) * elem_, 64);
    storage_ = static_cast<uint8_t*>(std::malloc(bytes_));
    std::memset(storage_, input ? 0xA5 : 0xA7, bytes_);
    view_ = moe_ep::TensorView(static_cast<void*>(storage_ + base_offset * elem_), dtype, shape_, strides_);
    sane_ = sane;
  }
  ~HostView() { std::free(storage_); }
  HostView(const HostView&) = delete;
  HostView& operator=(const HostView&) = delete;

  const moe_ep::TensorView& view() const { return view_; }
  int64_t numel() const { return numel_; }
  size_t elem() const { return elem_; }
  const std::vector<int64_t>& shape() const { return shape_; }

  /// Writes dense row-major contents (numel * elem bytes) through the view.
  void Store(const std::vector<uint8_t>& dense) {
    if (!sane_ || numel_ <= 0 || dense.size() != static_cast<size_t>(numel_) * elem_) return;
    if (strides_.empty()) {  // row-major without gaps: one piece
      std::memcpy(view_.data, dense.data(), dense.size());
      return;
    }
    ForEach([&](int64_t i, uint8_t* p) { std::memcpy(p, dense.data() + i * elem_, elem_); });
  }
  std::vector<uint8_t> Load() const {
    if (!sane_ || numel_ <= 0) return {};
    std::vector<uint8_t> dense(static_cast<size_t>(numel_) * elem_);
    if (strides_.empty()) {
      std::memcpy(dense.data(), view_.data, dense.size());
      return dense;
    }
    ForEach([&](int64_t i, uint8_t* p) { std::memcpy(dense.data() + i * elem_, p, elem_); });
    return dense;
  }
  void Snapshot() {
    if (input_) snapshot_.assign(storage_, storage_ + bytes_);
  }
  bool Changed() const { return input_ && !snapshot_.empty() && std::memcmp(snapshot_.data(), storage_, bytes_) != 0; }
  const char* name() const { return name_; }

 private:
  template <typename F>
  void ForEach(F&& f) const {
    const size_t n = shape_.size();
    std::vector<int64_t> index(n, 0), strides(n, 1);
    for (size_t d = n; d-- > 1;) strides[d - 1] = strides[d] * std::max<int64_t>(shape_[d], 1);
    for (size_t d = 0; d < n && !strides_.empty(); ++d) strides[d] = d < strides_.size() ? strides_[d] : 0;
    auto* data = static_cast<uint8_t*>(view_.data);
    for (int64_t i = 0; i < numel_; ++i) {
      int64_t off = 0;
      for (size_t d = 0; d < n; ++d) off += index[d] * strides[d];
      f(i, data + off * static_cast<int64_t>(elem_));
      for (size_t d = n; d-- > 0;) {
        if (++index[d] < shape_[d]) break;
        index[d] = 0;
      }
    }
  }

  const char* name_;
  bool input_;
  bool sane_ = false;
  size_t elem_ = 1;
  int64_t numel_ = 0;
  std::vector<int64_t> shape_, strides_;
  size_t bytes_ = 0;
  uint8_t* storage_ = nullptr;
  std::vector<uint8_t> snapshot_;
  moe_ep::TensorView view_;
};

/// Dense contents for `dtype`: floating types per Fill, others random bytes.
std::vector<uint8_t> Contents(Rng& rng, DType dtype, int64_t numel, int64_t fill_code) {
  const Fill fill = static_cast<Fill>(static_cast<uint64_t>(fill_code) % 6);
  const size_t elem = moe_ep::DTypeSize(dtype);
  if (numel <= 0) return {};
  std::vector<uint8_t> v(static_cast<size_t>(numel) * elem);
  for (int64_t i = 0; i < numel; ++i) {
    if (dtype == DType::kBf16 || dtype == DType::kFp16) {
      const uint16_t bits = HalfBits(rng, dtype == DType::kBf16, fill);
      std::memcpy(&v[i * 2], &bits, 2);
    } else if (dtype == DType::kFloat32) {
      const uint32_t bits = FloatBits(rng, fill);
      std::memcpy(&v[i * 4], &bits, 4);
    } else {
      for (size_t b = 0; b < elem; ++b) v[i * elem + b] = static_cast<uint8_t>(rng.Next());
    }
  }
  return v;
}

// ---------------------------------------------------------------------------------------------------
// One rank's operations
// ---------------------------------------------------------------------------------------------------

/// One rank's part of a round: its views, its handle, and how each step went.
class RankCall {
 public:
  RankCall(const Op& op, const Topology& t, GroupSet& set, int g) : op_(op), t_(t), set_(set), g_(g) {
    rng_ = std::make_unique<Rng>(Mix(static_cast<uint64_t>(op.Get(kSeed, g, 0)), g, 11));
    const bool tp = t.tp_size == 2;
    const int64_t shared_ranks = op.Get(kSharedRankNum, g, 0);
    layout_.moe_expert_num =
        op.Get(kMoeExpertNum, g, std::max<int64_t>(t.ep_size - std::max<int64_t>(shared_ranks, 0), 1) * (tp ? 1 : 2));
    layout_.shared_expert_num = op.Get(kSharedExpertNum, g, 0);
    layout_.shared_expert_rank_num = shared_ranks;
    layout_.global_bs = op.Get(kGlobalBs, g, 0);
    layout_.zero_expert_num = op.Get(kZeroExperts, g, 0);
    layout_.copy_expert_num = op.Get(kCopyExperts, g, 0);
    layout_.const_expert_num = op.Get(kConstExperts, g, 0);
    layout_.survivors = Survivors(op.Get(kSurvivors, g, kSurvivorsNone), op.Get(kSurvivorsValue, g, 1));
    bs_ = op.Get(kBs, g, 4);
    h_ = op.Get(kHidden, g, 64);
    k_ = op.Get(kTopK, g, 2);
    x_dtype_ = RawDtype(op.Get(kXDtype, g, 0));
  }

  /// ExpertLayout::survivors per SurvivorsMode, over the EP group's ranks.
  std::vector<int32_t> Survivors(int64_t mode, int64_t value) {
    const int e = t_.ep_size;
    const uint64_t dropped = static_cast<uint64_t>(op_.Get(kDropped, g_, 0));
    std::vector<int32_t> s(e);
    for (int r = 0; r < e; ++r) s[r] = (dropped >> r) & 1 ? 0 : 1;
    switch (static_cast<int>(static_cast<uint64_t>(mode) % 7)) {
      case kSurvivorsNone:
        return {};
      case kSurvivorsRandom:
        for (auto& v : s) v = static_cast<int32_t>(rng_->Range(-1, 2));
        break;
      case kSurvivorsLonger:
        s.push_back(1);
        break;
      case kSurvivorsAll:
        for (auto& v : s) v = static_cast<int32_t>(value);
        break;
      case kSurvivorsAllOnes:
        for (auto& v : s) v = 1;
        break;
      case kSurvivorsSelfOut:
        s[t_.EpRank(g_)] = 0;
        break;
      default:
        break;
    }
    return s;
  }

  HostView* Input(int slot, const char* name, DType dtype, std::vector<int64_t> shape, int64_t fill) {
    const int mode = (static_cast<uint64_t>(op_.Get(kViewTargets, g_, -1)) >> slot) & 1
                         ? op_.Pick(kView, g_, kViewContiguous, 10)
                         : kViewContiguous;
    auto v = std::make_unique<HostView>(name, dtype, std::move(shape), mode, true);
    v->Store(Contents(*rng_, dtype, v->numel(), fill));
    v->Snapshot();
    return Keep(slot, std::move(v));
  }
  HostView* InputBytes(int slot, const char* name, DType dtype, std::vector<int64_t> shape,
                       const std::vector<uint8_t>& dense) {
    const int mode = (static_cast<uint64_t>(op_.Get(kViewTargets, g_, -1)) >> slot) & 1
                         ? op_.Pick(kView, g_, kViewContiguous, 10)
                         : kViewContiguous;
    auto v = std::make_unique<HostView>(name, dtype, std::move(shape), mode, true);
    v->Store(dense);
    v->Snapshot();
    return Keep(slot, std::move(v));
  }
  HostView* Output(int slot, const char* name, DType dtype, std::vector<int64_t> shape) {
    const int mode = op_.Pick(kOutView, g_, kViewContiguous, 10);
    return Keep(slot, std::make_unique<HostView>(name, dtype, std::move(shape), mode, false));
  }
  /// The view the library receives for `slot`: absent when kNullTensors says so or when never made.
  moe_ep::TensorView Arg(int slot) const {
    if ((static_cast<uint64_t>(op_.Get(kNullTensors, g_, 0)) >> slot) & 1) return {};
    return slots_[slot] ? slots_[slot]->view() : moe_ep::TensorView{};
  }
  const char* WrittenInput() const {
    for (const auto& v : owned_) {
      if (v->Changed()) return v->name();
    }
    return nullptr;
  }

  /// The routed experts a valid call draws from: all, or the survivors' when some ranks left (each MoE rank keeps
  /// its experts, so their number is L times the MoE survivors).
  int64_t RoutedExperts() const {
    int64_t routed = std::clamp<int64_t>(layout_.moe_expert_num, 0, INT32_MAX);
    const int64_t e = t_.ep_size, s = layout_.shared_expert_rank_num;
    if (!layout_.survivors.empty() && static_cast<int64_t>(layout_.survivors.size()) == e && s >= 0 && s < e) {
      int64_t moe_survivors = 0;
      for (int64_t r = s; r < e; ++r) moe_survivors += layout_.survivors[r] == 1;
      routed = routed / (e - s) * moe_survivors;
    }
    return routed;
  }

  /// How many expert ids a valid call draws from: the routed ones and the special ones.
  int64_t TotalExperts() const {
    return RoutedExperts() + std::clamp<int64_t>(layout_.zero_expert_num, 0, INT32_MAX) +
           std::clamp<int64_t>(layout_.copy_expert_num, 0, INT32_MAX) +
           std::clamp<int64_t>(layout_.const_expert_num, 0, INT32_MAX);
  }

  /// When some ranks left, the special experts keep their ids past the routed experts that left with them.
  RetiredExperts Retired() const {
    const int64_t routed = RoutedExperts(), all = std::clamp<int64_t>(layout_.moe_expert_num, 0, INT32_MAX);
    return routed < all ? RetiredExperts{routed, all - routed} : RetiredExperts{};
  }

  void RunDispatch() {
    const int64_t total = TotalExperts();
    Input(kSlotX, "x", x_dtype_, {bs_, h_}, op_.Get(kXFill, g_, 0));
    const DType ids_dtype = RawDtype(op_.Get(kIdsDtype, g_, static_cast<int64_t>(DType::kInt32)));
    const bool ids_fit = bs_ > 0 && k_ > 0 && __int128(bs_) * k_ * 4 <= kMaxViewBytes;
    const std::vector<int32_t> ids =
        ExpertIds(*rng_, ids_fit ? bs_ : 0, ids_fit ? k_ : 0, total, op_.Get(kIdsMode, g_, kIdsDistinct),
                  op_.Get(kIdsValue, g_, 0), Retired());
    if (ids_dtype == DType::kInt32) {
      InputBytes(kSlotIds, "expert_ids", ids_dtype, {bs_, k_}, Int32Bytes(ids));
    } else {
      Input(kSlotIds, "expert_ids", ids_dtype, {bs_, k_}, 5);
    }
    moe_ep::DispatchOptions options;
    options.experts = layout_;
    options.quant = static_cast<moe_ep::Quant>(op_.Get(kQuant, g_, 0));
    options.cumulative_token_nums = op_.Flag(kCumulative, g_, 0);
    options.expand_idx_layout = op_.Flag(kExpandIdx, g_, 0);
    if (op_.Flag(kSmoothScales, g_, 0)) {
      Input(kSlotScales, "smooth_scales", DType::kFloat32,
            {Clamp(__int128(layout_.shared_expert_num) + layout_.moe_expert_num), h_}, op_.Get(kScalesFill, g_, 0));
      options.smooth_scales = Arg(kSlotScales);
    }
    MakeMask();
    options.active_mask = Arg(kSlotMask);
    moe_ep::Group* tp = set_.tp[g_];
    if (op_.Flag(kInto, g_, 0)) {
      dispatch_ = Attempt("DispatchInto", g_, [&] {
        const int64_t rows =
            Clamp(__int128(moe_ep::DispatchReceiveRows(*set_.ep[g_], bs_, k_, layout_)) * (tp ? 2 : 1));
        const bool quant = options.quant == moe_ep::Quant::kDynamicInt8;
        const int64_t rows_out = Clamp(rows + __int128(op_.Get(kExpandRowsDelta, g_, 0)));
        expand_rows_ = rows;
        Output(kSlotExpandXOut, "expand_x", quant ? DType::kInt8 : x_dtype_, {rows_out, h_});
        Output(kSlotDynScalesOut, "dynamic_scales", DType::kFloat32, {rows_out});
        const __int128 assist = options.expand_idx_layout ? __int128(bs_) * k_ : __int128(rows) * 3;
        Output(kSlotAssistOut, "assist_info", DType::kInt32, {Clamp(assist + op_.Get(kAssistLenDelta, g_, 0))});
        const int e = t_.ep_size;
        const int64_t s = layout_.shared_expert_rank_num;
        const bool shared = t_.EpRank(g_) < s;
        const int64_t local = e - s > 0 ? layout_.moe_expert_num / (e - s) : 1;
        Output(kSlotTokenNumsOut, "expert_token_nums", DType::kInt64,
               {Clamp(__int128(shared ? 1 : local) + op_.Get(kTokenNumsDelta, g_, 0))});
        Output(kSlotRecvOut, "ep_recv_counts", DType::kInt32,
               {Clamp(__int128(shared ? 1 : local) * e * (tp ? 2 : 1) + op_.Get(kRecvLenDelta, g_, 0))});
        Output(kSlotTpRecvOut, "tp_recv_counts", DType::kInt32, {op_.Get(kTpRecvLen, g_, tp ? 2 : 1)});
        moe_ep::DispatchOutputs out{Arg(kSlotExpandXOut), quant ? Arg(kSlotDynScalesOut) : moe_ep::TensorView{},
                                    Arg(kSlotAssistOut),  Arg(kSlotTokenNumsOut),
                                    Arg(kSlotRecvOut),    Arg(kSlotTpRecvOut)};
        handle_ = moe_ep::DispatchInto(*set_.ep[g_], Arg(kSlotX), Arg(kSlotIds), options, out, tp);
      });
    } else {
      dispatch_ = Attempt("Dispatch", g_, [&] {
        moe_ep::DispatchResult r = moe_ep::Dispatch(*set_.ep[g_], Arg(kSlotX), Arg(kSlotIds), options, tp);
        handle_ = std::move(r.handle);
        expand_rows_ = r.expand_x.shape().empty() ? 0 : r.expand_x.shape()[0];
      });
    }
    if (const char* written = WrittenInput())
      Die("contract: dispatch on rank %d wrote into its input '%s'", g_, written);
  }

  /// Corrupts the handle per the op's settings (a round), or makes one up (a combine op).
  void PrepareHandle(bool made_up) {
    if (made_up) {
      handle_ = moe_ep::DispatchHandle{};
      handle_.experts = layout_;
      handle_.bs = bs_;
      handle_.hidden = h_;
      handle_.top_k = k_;
      handle_.dtype = x_dtype_;
      handle_.num_rows = 0;
      handle_.expand_idx_layout = op_.Flag(kExpandIdx, g_, 0);
      const int64_t ids_n = bs_ > 0 && k_ > 0 && __int128(bs_) * k_ <= (1 << 22) ? bs_ * k_ : 0;
      handle_.expert_ids = moe_ep::Tensor(DType::kInt32, {ids_n ? bs_ : 0, ids_n ? k_ : 0});
      const std::vector<int32_t> ids =
          ExpertIds(*rng_, ids_n ? bs_ : 0, ids_n ? k_ : 0, TotalExperts(), op_.Get(kIdsMode, g_, kIdsDistinct),
                    op_.Get(kIdsValue, g_, 0), Retired());
      if (!ids.empty()) std::memcpy(handle_.expert_ids.data(), ids.data(), ids.size() * 4);
      const int e = t_.ep_size;
      handle_.ep_recv_counts = moe_ep::Tensor(DType::kInt32, {2 * e});
      handle_.tp_recv_counts = moe_ep::Tensor(DType::kInt32, {t_.tp_size == 2 ? 2 : 1});
      handle_.assist_info = moe_ep::Tensor(DType::kInt32, {0});
      Attempt("DispatchReceiveRows", g_, [&] {
        expand_rows_ = Clamp(__int128(moe_ep::DispatchReceiveRows(*set_.ep[g_], bs_, k_, layout_)) * t_.tp_size);
      });
    }
    handle_.num_rows = op_.Get(kHandleNumRows, g_, handle_.num_rows);
    handle_.bs = op_.Get(kHandleBs, g_, handle_.bs);
    handle_.hidden = op_.Get(kHandleHidden, g_, handle_.hidden);
    handle_.top_k = op_.Get(kHandleTopK, g_, handle_.top_k);
    handle_.expand_idx_layout = op_.Flag(kHandleExpandIdx, g_, handle_.expand_idx_layout);
    handle_.dtype = RawDtype(op_.Get(kHandleDtype, g_, static_cast<int64_t>(handle_.dtype)));
    handle_.experts.moe_expert_num = op_.Get(kHandleMoe, g_, handle_.experts.moe_expert_num);
    handle_.experts.shared_expert_rank_num = op_.Get(kHandleShared, g_, handle_.experts.shared_expert_rank_num);
    handle_.experts.global_bs = op_.Get(kHandleGlobalBs, g_, handle_.experts.global_bs);
    if (op_.Has(kHandleSurvivors, g_)) {
      handle_.experts.survivors = Survivors(op_.Get(kHandleSurvivors, g_, 0), op_.Get(kSurvivorsValue, g_, 1));
    }
    CorruptInt32(handle_.assist_info, op_.Get(kCorruptAssist, g_, 0));
    CorruptInt32(handle_.ep_recv_counts, op_.Get(kCorruptCounts, g_, 0));
    CorruptInt32(handle_.tp_recv_counts, op_.Get(kCorruptTpCounts, g_, 0));
    if (op_.Has(kCombineIdsMode, g_) && handle_.expert_ids.dtype() == DType::kInt32) {
      const auto& shape = handle_.expert_ids.shape();
      const int64_t rows = shape.size() == 2 ? shape[0] : 0, cols = shape.size() == 2 ? shape[1] : 0;
      const int64_t total = std::clamp<int64_t>(handle_.experts.moe_expert_num, 0, INT32_MAX);
      const std::vector<int32_t> ids =
          ExpertIds(*rng_, rows, cols, total, op_.Get(kCombineIdsMode, g_, 0), op_.Get(kCombineIdsValue, g_, 0));
      if (!ids.empty()) std::memcpy(handle_.expert_ids.data(), ids.data(), ids.size() * 4);
    }
    switch (op_.Pick(kHandleTensors, g_, kHandleKeep, 7)) {
      case kHandleEmpty:
        handle_.expert_ids = {};
        handle_.active_mask = {};
        handle_.assist_info = {};
        handle_.ep_recv_counts = {};
        handle_.tp_recv_counts = {};
        break;
      case kHandleIdsInt64:
        handle_.expert_ids = moe_ep::Tensor(DType::kInt64, handle_.expert_ids.shape());
        break;
      case kHandleAssistShort:
        handle_.assist_info = Resized(handle_.assist_info, -1);
        break;
      case kHandleCountsShort:
        handle_.ep_recv_counts = Resized(handle_.ep_recv_counts, -1);
        break;
      case kHandleIds1d:
        handle_.expert_ids = Resized(handle_.expert_ids, 0);
        break;
      case kHandleMaskWrong:
        handle_.active_mask = moe_ep::Tensor(DType::kBool, {std::max<int64_t>(bs_, 0) + 1});
        break;
      default:
        break;
    }
  }

  void RunCombine() {
    const DType half = x_dtype_;
    const int64_t fill = op_.Get(kXFill, g_, 0);
    // Expert outputs have the rows of dispatch's expand_x (tp * A), whatever num_rows says.
    const int64_t rows = Clamp(__int128(expand_rows_) + op_.Get(kExpertRowsDelta, g_, 0));
    Input(kSlotExpertOut, "expert_out", half, {rows, h_}, fill);
    Input(kSlotExpertScales, "expert_scales", DType::kFloat32, {bs_, k_}, op_.Get(kScalesFill, g_, 0));
    moe_ep::CombineOptions options;
    options.comm_quant = static_cast<moe_ep::Quant>(op_.Get(kCommQuant, g_, 0));
    const int64_t shared_x = op_.Pick(kSharedX, g_, 0, 3);
    if (shared_x == 1) Input(kSlotSharedX, "shared_expert_x", half, {bs_, h_}, fill);
    if (shared_x == 2) Input(kSlotSharedX, "shared_expert_x", half, {bs_, 1, h_}, fill);
    options.shared_expert_x = Arg(kSlotSharedX);
    if (layout_.copy_expert_num != 0 || layout_.const_expert_num != 0 || op_.Flag(kOriX, g_, 0)) {
      Input(kSlotOriX, "ori_x", half, {bs_, h_}, fill);
      options.ori_x = Arg(kSlotOriX);
    }
    if (layout_.const_expert_num != 0 || op_.Flag(kConstTensors, g_, 0)) {
      const int64_t n = std::clamp<int64_t>(layout_.const_expert_num, -1, int64_t{1} << 40);
      const int64_t sfill = op_.Get(kScalesFill, g_, 0);
      Input(kSlotAlpha1, "const_alpha1", half, {n, h_}, sfill);
      Input(kSlotAlpha2, "const_alpha2", half, {n, h_}, sfill);
      Input(kSlotConstV, "const_v", half, {n, h_}, sfill);
      options.const_alpha1 = Arg(kSlotAlpha1);
      options.const_alpha2 = Arg(kSlotAlpha2);
      options.const_v = Arg(kSlotConstV);
    }
    moe_ep::Group* tp = set_.tp[g_];
    const bool rms = op_.Pick(kCombineOp, g_, kCombinePlain, 2) == kCombineAddRmsNorm;
    if (rms) {
      const int shapes = op_.Pick(kRmsShapes, g_, kRmsRight, 4);
      Input(kSlotResidual, "residual_x", half,
            shapes == kRmsResidual2d ? std::vector<int64_t>{bs_, h_} : std::vector<int64_t>{bs_, 1, h_}, fill);
      Input(kSlotGamma, "gamma", half, {shapes == kRmsGammaLong ? h_ + 1 : h_}, fill);
      Output(kSlotYOut, "y", half, {bs_, 1, h_});
      Output(kSlotRstdOut, "rstd", DType::kFloat32,
             shapes == kRmsRstdWide ? std::vector<int64_t>{bs_, 1, 2} : std::vector<int64_t>{bs_, 1, 1});
      Output(kSlotXOut, "x", half, {bs_, 1, h_});
      float eps = 1e-6f;
      if (op_.Has(kNormEpsBits, g_)) {
        const uint32_t bits = static_cast<uint32_t>(op_.Get(kNormEpsBits, g_, 0));
        std::memcpy(&eps, &bits, 4);
      }
      combine_ = Attempt("CombineAddRmsNormInto", g_, [&] {
        moe_ep::CombineAddRmsNormInto(*set_.ep[g_], handle_, Arg(kSlotExpertOut), Arg(kSlotExpertScales),
                                      Arg(kSlotResidual), Arg(kSlotGamma), eps, options,
                                      {Arg(kSlotYOut), Arg(kSlotRstdOut), Arg(kSlotXOut)}, tp);
      });
    } else if (op_.Flag(kInto, g_, 0)) {
      Output(kSlotXOut, "x", half, {bs_, h_});
      combine_ = Attempt("CombineInto", g_, [&] {
        moe_ep::CombineInto(*set_.ep[g_], handle_, Arg(kSlotExpertOut), Arg(kSlotExpertScales), options, Arg(kSlotXOut),
                            tp);
      });
    } else {
      combine_ = Attempt("Combine", g_, [&] {
        moe_ep::Tensor x =
            moe_ep::Combine(*set_.ep[g_], handle_, Arg(kSlotExpertOut), Arg(kSlotExpertScales), options, tp);
      });
    }
    if (const char* written = WrittenInput())
      Die("contract: combine on rank %d wrote into its input '%s'", g_, written);
  }

  /// The survivors' BufferReset before a scaled-down round (ExpertLayout::survivors asks for it).
  void ResetForSurvivors() {
    reset_ = Attempt("BufferReset (survivors)", g_, [&] { moe_ep::BufferReset(*set_.ep[g_], layout_.survivors); });
  }

  const moe_ep::ExpertLayout& layout() const { return layout_; }
  const Outcome& dispatch() const { return dispatch_; }
  const Outcome& combine() const { return combine_; }
  const Outcome& reset() const { return reset_; }

 private:
  static int64_t Clamp(__int128 v) { return v < -1 ? -1 : v > (int64_t{1} << 40) ? int64_t{1} << 40 : int64_t(v); }

  void MakeMask() {
    const int mask = op_.Pick(kMask, g_, kMaskNone, 5);
    if (mask == kMaskNone) return;
    const std::vector<int64_t> shape = mask == kMask2d        ? std::vector<int64_t>{bs_, k_}
                                       : mask == kMaskWrong1d ? std::vector<int64_t>{bs_ + 1}
                                       : mask == kMask3d      ? std::vector<int64_t>{bs_, k_, 1}
                                                              : std::vector<int64_t>{bs_};
    __int128 numel = 1;
    for (int64_t d : shape) numel *= std::max<int64_t>(d, 0);
    InputBytes(kSlotMask, "active_mask", DType::kBool, shape,
               MaskBytes(*rng_, numel <= kMaxViewBytes ? static_cast<int64_t>(numel) : 0,
                         op_.Get(kMaskFill, g_, kMaskAllTrue)));
  }

  void CorruptInt32(moe_ep::Tensor& t, int64_t mode) {
    if (mode == kCorruptNone || t.dtype() != DType::kInt32 || t.numel() <= 0) return;
    std::vector<int32_t> v(static_cast<size_t>(t.numel()));
    std::memcpy(v.data(), t.data(), v.size() * 4);
    ApplyCorruption(v, *rng_, mode, op_.Get(kCorruptValue, g_, 0), op_.Get(kCorruptIndex, g_, 0));
    std::memcpy(t.data(), v.data(), v.size() * 4);
  }

  /// A 1-D copy of `t` with `delta` more elements (the contents kept where they fit).
  static moe_ep::Tensor Resized(const moe_ep::Tensor& t, int64_t delta) {
    const int64_t n = std::max<int64_t>(t.numel() + delta, 0);
    moe_ep::Tensor r(t.dtype(), {n});
    if (t.data() != nullptr && n > 0) {
      std::memcpy(r.data(), t.data(), std::min(t.bytes(), r.bytes()));
    }
    return r;
  }

  HostView* Keep(int slot, std::unique_ptr<HostView> v) {
    HostView* raw = v.get();
    owned_.push_back(std::move(v));
    slots_[slot] = raw;
    return raw;
  }

  const Op& op_;
  Topology t_;
  GroupSet& set_;
  int g_;
  std::unique_ptr<Rng> rng_;
  moe_ep::ExpertLayout layout_;
  int64_t bs_ = 0, h_ = 0, k_ = 0;
  int64_t expand_rows_ = 0;  // rows of dispatch's expand_x
  DType x_dtype_ = DType::kBf16;
  std::vector<std::unique_ptr<HostView>> owned_;
  std::array<HostView*, kSlotCount> slots_{};
  moe_ep::DispatchHandle handle_;
  Outcome dispatch_, combine_, reset_;
};

// ---------------------------------------------------------------------------------------------------
// The ops
// ---------------------------------------------------------------------------------------------------

const char* kOpNames[] = {"round", "dispatch", "combine", "reset", "groups", "env", "tensor"};

/// The ranks of the topology that take part: not skipped, not dropped by a survivors mask.
std::vector<int> Participants(const Op& op, const Topology& t) {
  std::vector<int> ranks;
  for (int g = 0; g < t.ranks(); ++g) {
    if (op.Flag(kSkip, g, 0)) continue;
    const int mode = op.Pick(kSurvivors, g, kSurvivorsNone, 7);
    const bool drops = mode == kSurvivorsValid || mode == kSurvivorsLonger || mode == kSurvivorsAllOnes;
    if (drops && ((static_cast<uint64_t>(op.Get(kDropped, g, 0)) >> t.EpRank(g)) & 1)) continue;
    ranks.push_back(g);
  }
  return ranks;
}

void RunMoe(const Op& op, const HarnessOptions& options) {
  const int topology = op.Pick(kTopology, 0, 3);
  Watchdog::Get().Doing("making the groups of topology %d", topology);
  GroupSet* set = Groups::Get().For(topology, options);
  if (set == nullptr) return;
  const Topology t = set->topology;
  std::array<std::unique_ptr<RankCall>, kMaxRanks> calls;
  for (int g = 0; g < t.ranks(); ++g) calls[g] = std::make_unique<RankCall>(op, t, *set, g);
  const std::vector<int> ranks = Participants(op, t);
  bool clean = static_cast<int>(ranks.size()) == t.ranks();
  const bool survivors = !calls[0]->layout().survivors.empty();
  if (survivors && op.Flag(kResetFirst, 0, 1)) {
    Watchdog::Get().Doing("BufferReset of the survivors");
    Workers().Run(ranks, [&](int g) { calls[g]->ResetForSurvivors(); });
    for (int g : ranks) clean = clean && calls[g]->reset().ok;
  }
  bool dispatched = op.opcode != kCombine;
  if (op.opcode == kRound || op.opcode == kDispatch) {
    Watchdog::Get().Doing("dispatch on %zu ranks", ranks.size());
    Workers().Run(ranks, [&](int g) { calls[g]->RunDispatch(); });
    for (int g : ranks) dispatched = dispatched && calls[g]->dispatch().ok;
    clean = clean && dispatched;
  }
  if (op.opcode == kCombine || (op.opcode == kRound && dispatched)) {
    Watchdog::Get().Doing("combine on %zu ranks", ranks.size());
    Workers().Run(ranks, [&](int g) {
      calls[g]->PrepareHandle(op.opcode == kCombine);
      calls[g]->RunCombine();
    });
    for (int g : ranks) clean = clean && calls[g]->combine().ok;
  }
  calls = {};  // the views and handles go before the groups might
  if (!clean) Recover(topology, *set);
}

void RunReset(const Op& op, const HarnessOptions& options) {
  const int topology = op.Pick(kTopology, 0, 3);
  GroupSet* set = Groups::Get().For(topology, options);
  if (set == nullptr) return;
  const Topology t = set->topology;
  std::vector<int> ranks;
  for (int g = 0; g < t.ranks(); ++g) {
    if (!(op.Flag(kSkip, g, 0))) ranks.push_back(g);
  }
  std::array<bool, kMaxRanks> ok{};
  Watchdog::Get().Doing("BufferReset / ProbeReachable on %zu ranks", ranks.size());
  Workers().Run(ranks, [&](int g) {
    Rng rng(Mix(static_cast<uint64_t>(op.Get(kSeed, g, 0)), g, 13));
    const int e = t.ep_size;
    std::vector<int32_t> mask;
    switch (op.Pick(kResetMask, g, kResetDefault, 7)) {
      case kResetParticipants:
        for (int r = 0; r < e; ++r) {
          const int worker = t.TpRank(g) * e + r;
          mask.push_back(std::find(ranks.begin(), ranks.end(), worker) != ranks.end());
        }
        break;
      case kResetRandom:
        for (int r = 0; r < e; ++r) mask.push_back(static_cast<int32_t>(rng.Range(-1, 2)));
        break;
      case kResetAll:
        mask.assign(e, static_cast<int32_t>(op.Get(kCorruptValue, g, 1)));
        break;
      case kResetLonger:
        mask.assign(e + 1, 1);
        break;
      case kResetShorter:
        mask.assign(e - 1, 1);
        break;
      case kResetSelf:
        mask.assign(e, 0);
        mask[t.EpRank(g)] = 1;
        break;
      default:
        break;
    }
    bool all_ok = true;
    if (op.Flag(kProbe, g, 0)) {
      static const int64_t kWaits[] = {0, 1, 50, 1000, -1};
      const int64_t wait = kWaits[static_cast<uint64_t>(op.Get(kProbeWaitMs, g, 0)) % 5];
      all_ok = Attempt("ProbeReachable", g, [&] {
                 const std::vector<int32_t> alive =
                     moe_ep::ProbeReachable(*set->ep[g], std::chrono::milliseconds(wait));
                 if (static_cast<int>(alive.size()) != e)
                   Die("contract: ProbeReachable returned %zu entries", alive.size());
               }).ok;
    }
    const bool need_sync = op.Flag(kNeedSync, g, 1);
    all_ok = Attempt("BufferReset", g, [&] { moe_ep::BufferReset(*set->ep[g], mask, need_sync); }).ok && all_ok;
    ok[g] = all_ok;
  });
  bool clean = static_cast<int>(ranks.size()) == t.ranks();
  for (int g : ranks) clean = clean && ok[g];
  if (!clean) Recover(topology, *set);
}

void RunGroups(const Op& op, HarnessOptions& options) {
  if (op.Has(kTimeoutMs)) options.timeout_ms = kTimeoutChoices[static_cast<uint64_t>(op.Get(kTimeoutMs, 0)) % 6];
  if (op.Has(kWindowBytes)) options.window_bytes = kWindowChoices[static_cast<uint64_t>(op.Get(kWindowBytes, 0)) % 6];
  if (op.Has(kGroupName)) options.name = op.Pick(kGroupName, 0, 4);
  if (!op.Has(kGroupSize)) return;
  // A throwaway group with raw options: nothing runs on it, so any deadline is safe. Sizes between 65 and 2^20
  // are cut to 64: the library would rightly make that many windows, slowly; beyond 2^20 a size is absurd and the
  // library must refuse it rather than try.
  int64_t size = op.Get(kGroupSize, 0);
  if (size > 64 && size < (int64_t{1} << 20)) size = 64;
  moe_ep::GroupOptions raw;
  raw.timeout = std::chrono::milliseconds(op.Get(kTimeoutMs, 0));
  // Plausible windows over 64 GiB are cut to 64 GiB (64 ranks of them would crowd ASan's own address space); the
  // absurd ones (2^50 and up) stay, for the library to refuse.
  raw.window_bytes = static_cast<uint64_t>(op.Get(kWindowBytes, int64_t{1} << 20));
  if (raw.window_bytes > (uint64_t{1} << 36) && raw.window_bytes < (uint64_t{1} << 50))
    raw.window_bytes = uint64_t{1} << 36;
  raw.name = GroupNameFor(options.name);
  Watchdog::Get().Doing("CreateThreadGroups(%lld)", static_cast<long long>(size));
  Attempt("CreateThreadGroups (throwaway)", -1, [&] {
    std::vector<moe_ep::Group> groups = moe_ep::CreateThreadGroups(static_cast<int>(size), raw);
    for (const moe_ep::Group& g : groups) {
      if (g.size() != static_cast<int>(groups.size()) || g.failed_ranks().size() != 0) {
        Die("contract: a fresh group of %zu reports size %d", groups.size(), g.size());
      }
      (void)g.timeout();
      (void)g.window_bytes();
      (void)g.name();
    }
  });
}

void RunEnv(const Op& op) {
  ApplyEnvKnobs(op, kKnobs, kKnobKeys);
  Attempt("DefaultTimeout / DefaultWindowBytes", -1, [] {
    (void)moe_ep::DefaultTimeout();
    (void)moe_ep::DefaultWindowBytes();
  });
}

void RunTensor(const Op& op) {
  const DType dtype = RawDtype(op.Get(kTensorDtype, 0));
  const int ndim = op.Pick(kTensorDims, 2, 5);
  std::vector<int64_t> shape;
  for (int d = 0; d < ndim; ++d) shape.push_back(op.Get(kTensorDim0 + d, 3));
  (void)moe_ep::DTypeSize(dtype);
  (void)moe_ep::DTypeName(dtype);
  // Shapes whose bytes the library would rightly allocate (64 MiB .. 2^48) are not asked for: only small ones,
  // and those it must refuse (negative, or past 2^48 bytes, products that overflow included).
  __int128 bytes = moe_ep::DTypeSize(dtype);
  bool negative = false;
  for (int64_t d : shape) {
    negative = negative || d < 0;
    bytes = std::min<__int128>(bytes, __int128{1} << 60) * (d < 0 ? 0 : d);
  }
  const bool affordable = negative || bytes <= kMaxViewBytes || bytes > (__int128{1} << 48);
  if (affordable) {
    Attempt("Tensor", -1, [&] {
      moe_ep::Tensor t(dtype, shape);
      if (t.data() == nullptr) Die("contract: a Tensor was made without storage");
      (void)t.view().Describe();
      if (t.numel() > 0) std::memset(t.data(), 0x5A, t.bytes());  // ASan checks that the storage is all there
    });
  }
  // A TensorView's arithmetic on any shape and strides (it never dereferences).
  moe_ep::TensorView view(static_cast<void*>(nullptr), dtype, shape);
  for (int d = 0; d < 4 && op.Has(kTensorStride0 + d); ++d) view.strides.push_back(op.Get(kTensorStride0 + d, 1));
  Attempt("TensorView", -1, [&] {
    (void)view.numel();
    (void)view.contiguous();
    (void)view.Describe();
    for (int64_t d = 0; d < view.dim() + 2; ++d) (void)view.stride(d);
  });
}

}  // namespace
}  // namespace moe_ep_fuzz::native

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moe_ep_fuzz;
  using namespace moe_ep_fuzz::native;
  static const bool ready = [] {
    RestoreHarnessEnvironment(kKnobs);
    Workers();
    Watchdog::Get();
    return true;
  }();
  (void)ready;
  WatchdogScope watchdog;
  RestoreHarnessEnvironment(kKnobs);
  HarnessOptions options;  // every input starts from the harness's group options
  RunOps(data, size, kOpcodeCount, kOpNames, [&](const Op& op) {
    switch (op.opcode) {
      case kRound:
      case kDispatch:
      case kCombine:
        RunMoe(op, options);
        break;
      case kReset:
        RunReset(op, options);
        break;
      case kGroups:
        RunGroups(op, options);
        break;
      case kEnv:
        RunEnv(op);
        break;
      case kTensor:
        RunTensor(op);
        break;
      default:
        break;
    }
  });
  return 0;
}
