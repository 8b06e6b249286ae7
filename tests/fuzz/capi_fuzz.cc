// libFuzzer target for the CANN-compatible C API: decodes each input into aclnn / Hccl / aclrt calls made by 2 or 4
// rank threads of this process and checks the contract: every call returns a status (no crash, no out-of-bounds
// access, no escaped exception, no leak), no operator writes its inputs, and nothing waits past its deadline.
//
// Input format (README.md has the full table; capi_fuzz_keys.h names every opcode, key and value code):
//   input   := op*                                   (at most 8 ops are decoded; the rest is ignored)
//   op      := opcode:u8 setting* 0x00               (opcode % 7: round, dispatch, combine, reset, env, join, tensor)
//   setting := key:u8 Int                            (key 1..127: applies to every rank)
//            | (key | 0x80):u8 rank:u8 Int           (applies to rank % 4 only)
//   Int     := one selector byte (0x00-0xDF: that value) or a selector for -1, -n, 2/4/8 little-endian bytes,
//              INT64_MAX, INT64_MIN, INT32_MAX/MIN, UINT32_MAX, 2^61, 2^62, 2^30..2^32, 1024, 7168, 8192, ...
// An op without settings is a valid call: `00 00` is a DispatchV2 + CombineV2 round on 2 ranks.
//
// Ranks: 4 persistent threads on devices 0-3, each with its own stream. The topology's communicators come from
// HcclGetRootInfo + HcclCommInitRootInfo and are reused across inputs; they are recreated after any operation that
// left the ranks' call counters unequal (a failure after launch, a rank that stayed away) and whenever an input
// changed an environment variable that is read when a communicator is created. Deadlines are short
// (MOE_EP_TIMEOUT_MS=100), so a rank whose peer failed early times out quickly; the watchdog (fuzz_support.h)
// aborts an input that runs past 10 s.
#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "acl/acl.h"
#include "aclnn/aclnn_base.h"
#include "aclnnop/aclnn_moe_distribute_buffer_reset.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v3.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"
#include "capi_fuzz_keys.h"
#include "fuzz_support.h"
#include "hccl/hccl.h"

namespace moe_ep_fuzz::capi {
namespace {

// No tensor's storage is larger. A view that would need more is shrunk to kShrunkTensorBytes (filling the maximum
// would make such inputs slow to no purpose), except the deliberately huge views, which get one element of storage
// that aclCreateTensor must refuse (and if it does not, ASan sees the operator read past it).
constexpr int64_t kMaxTensorBytes = int64_t{16} << 20;
constexpr int64_t kShrunkTensorBytes = int64_t{1} << 20;
constexpr int32_t kBf16 = 27, kFp16 = 1, kFloat = 0, kInt8 = 2, kInt32 = 3, kInt64 = 9, kBool = 12;
constexpr int32_t kFormatNd = 2;

// ---------------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------------

const std::optional<std::string> kUnset;

// Index 0 of each list is the harness's own value. Every valid choice keeps deadlines at a few seconds at most.
const EnvKnob kKnobs[] = {
    {"HCCL_BUFFSIZE",
     "64",
     {"64", "1", "0", "-1", "abc", "", " 64", "64x", "4096", "1048577", "99999999999999999999", "2", kUnset}},
    {"HCCL_EXEC_TIMEOUT", kUnset, {kUnset, "1", "0", "-1", "x", "99999999999999999999", "2147483648", "1.5", ""}},
    {"MOE_EP_TIMEOUT_MS", "100", {"100", "1", "0", "-1", "abc", "2147483649", "50", "300x", "1000"}},
    {"HCCL_CONNECT_TIMEOUT", "1", {"1", "0", "-1", "x", "99999999999999999999", "2147484", "2"}},
    {"MOE_EP_SOC_NAME", kUnset, {kUnset, "Ascend910B3", "Ascend910_9382", "Ascend910B", "", "Ascend910B4-1"}},
    {"HCCL_INTRA_PCIE_ENABLE", kUnset, {kUnset, "1", "0", "x"}},
    {"HCCL_INTRA_ROCE_ENABLE", kUnset, {kUnset, "0", "1", ""}},
};
const int kKnobKeys[] = {kEnvBuffSize, kEnvExecTimeout, kEnvTimeoutMs, kEnvConnectTimeout,
                         kEnvSocName,  kEnvIntraPcie,   kEnvIntraRoce};

// The variables a communicator reads when it is created: one made under other values must be made again.
std::string CreationEnvironment() {
  std::string stamp;
  for (const char* name : {"HCCL_BUFFSIZE", "HCCL_EXEC_TIMEOUT", "MOE_EP_TIMEOUT_MS"}) {
    stamp += GetEnv(name).value_or("<unset>") + "|";
  }
  return stamp;
}

std::string TakeErrMsg() {
  const char* m = aclGetRecentErrMsg();
  return m ? m : "";
}

/// Takes the calling thread's message after `what` returned `status`; prints both with MOE_EP_FUZZ_VERBOSE.
void Note(int rank, const char* what, long long status) {
  const std::string message = TakeErrMsg();
  if (Verbose()) std::fprintf(stderr, "[capi_fuzz] rank %d: %s -> %lld %s\n", rank, what, status, message.c_str());
}

// ---------------------------------------------------------------------------------------------------
// Rank threads
// ---------------------------------------------------------------------------------------------------

/// Worker g's stream (made by the worker itself, on device g).
std::array<aclrtStream, kMaxRanks> g_streams{};

/// The four rank threads: worker g sets device g current and makes its stream before its first job.
RankThreads& Workers() {
  static RankThreads* threads = new RankThreads([](int g) {  // never destroyed: the workers live until exit
    if (aclrtSetDevice(g) != ACL_SUCCESS || aclrtCreateStream(&g_streams[g]) != ACL_SUCCESS) {
      Die("harness: worker %d could not set its device or create its stream: %s", g, TakeErrMsg().c_str());
    }
  });
  return *threads;
}

// ---------------------------------------------------------------------------------------------------
// Communicators
// ---------------------------------------------------------------------------------------------------

/// The communicators of one topology: worker g's EP communicator (and TP pair with TP), with their names.
struct CommSet {
  Topology topology{2, 1};
  std::array<HcclComm, kMaxRanks> ep{}, tp{};
  std::array<std::string, kMaxRanks> ep_name, tp_name;
  std::string environment;  // CreationEnvironment() when they were made
};

void DestroyComm(HcclComm comm) {
  if (comm != nullptr && HcclCommDestroy(comm) != HCCL_SUCCESS) {
    Die("harness: HcclCommDestroy of a live communicator failed: %s", TakeErrMsg().c_str());
  }
}

/// One root-info group over `workers` (rank i = workers[i]); false (and nothing left) when any rank fails.
bool JoinGroup(const std::vector<int>& workers, std::array<HcclComm, kMaxRanks>& comms,
               std::array<std::string, kMaxRanks>& names) {
  HcclRootInfo root;
  if (HcclGetRootInfo(&root) != HCCL_SUCCESS) Die("harness: HcclGetRootInfo failed: %s", TakeErrMsg().c_str());
  std::array<HcclResult, kMaxRanks> result{};
  Workers().Run(workers, [&](int g) {
    const uint32_t rank = static_cast<uint32_t>(std::find(workers.begin(), workers.end(), g) - workers.begin());
    comms[g] = nullptr;
    result[g] = HcclCommInitRootInfo(static_cast<uint32_t>(workers.size()), &root, rank, &comms[g]);
    Note(g, "HcclCommInitRootInfo", result[g]);
  });
  bool ok = true;
  for (int g : workers) ok = ok && result[g] == HCCL_SUCCESS;
  for (int g : workers) {
    if (!ok) {
      if (result[g] == HCCL_SUCCESS) DestroyComm(comms[g]);
      comms[g] = nullptr;
      continue;
    }
    char name[COMM_NAME_MAX_LENGTH] = {0};
    if (HcclGetCommName(comms[g], name) != HCCL_SUCCESS) Die("harness: HcclGetCommName of a live communicator failed");
    names[g] = name;
  }
  return ok;
}

/// Every communicator the harness holds: one set per topology and a 16-rank group for BufferReset.
class Communicators {
 public:
  static Communicators& Get() {
    static Communicators* comms = new Communicators;  // reachable until exit: LSan does not count it
    return *comms;
  }

  /// The topology's communicators, made (again) if missing, stale or marked unusable; nullptr when they
  /// cannot be made (an input's environment can make HcclCommInitRootInfo fail: that is a result, not a bug).
  CommSet* For(int topology) {
    auto& slot = sets_[topology];
    if (slot && slot->environment != CreationEnvironment()) Drop(topology);
    if (!slot) {
      auto set = std::make_unique<CommSet>();
      set->topology = kTopologies[topology];
      set->environment = CreationEnvironment();
      const Topology& t = set->topology;
      bool ok = true;
      for (int tp = 0; ok && tp < t.tp_size; ++tp) {
        std::vector<int> workers;
        for (int e = 0; e < t.ep_size; ++e) workers.push_back(tp * t.ep_size + e);
        ok = JoinGroup(workers, set->ep, set->ep_name);
      }
      for (int e = 0; ok && t.tp_size == 2 && e < t.ep_size; ++e) {
        ok = JoinGroup({e, e + t.ep_size}, set->tp, set->tp_name);
      }
      if (!ok) {
        for (HcclComm c : set->ep) DestroyComm(c);
        for (HcclComm c : set->tp) DestroyComm(c);
        return nullptr;
      }
      slot = std::move(set);
    }
    return slot.get();
  }

  /// Destroys a topology's set (its ranks' call counters disagree, or it was made under another environment).
  void Drop(int topology) {
    auto& slot = sets_[topology];
    if (!slot) return;
    for (HcclComm c : slot->ep) DestroyComm(c);
    for (HcclComm c : slot->tp) DestroyComm(c);
    slot.reset();
  }

  /// The 16-rank group (HcclCommInitAll on devices 0-15): BufferReset's epWorldSize must be a multiple of 16.
  /// Workers 0-3 are its ranks 0-3. Empty when it cannot be made.
  const std::vector<HcclComm>* Reset16() {
    if (!reset16_.empty() && reset16_environment_ != CreationEnvironment()) DropReset16();
    if (reset16_.empty()) {
      std::vector<int32_t> devices = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
      std::vector<HcclComm> comms(16, nullptr);
      if (HcclCommInitAll(16, devices.data(), comms.data()) != HCCL_SUCCESS) {
        Note(-1, "HcclCommInitAll", 1);
        return nullptr;
      }
      reset16_ = comms;
      reset16_environment_ = CreationEnvironment();
      char name[COMM_NAME_MAX_LENGTH] = {0};
      if (HcclGetCommName(comms[0], name) != HCCL_SUCCESS) Die("harness: HcclGetCommName failed");
      reset16_name_ = name;
    }
    return &reset16_;
  }
  const std::string& reset16_name() const { return reset16_name_; }
  void DropReset16() {
    for (HcclComm c : reset16_) DestroyComm(c);
    reset16_.clear();
  }

  /// The name of some other live group (for kGroupOther), "" when none.
  std::string OtherName(const std::string& own) const {
    for (const auto& set : sets_) {
      if (set && set->ep_name[0] != own) return set->ep_name[0];
    }
    return reset16_name_ != own ? reset16_name_ : "";
  }

 private:
  std::array<std::unique_ptr<CommSet>, 3> sets_;
  std::vector<HcclComm> reset16_;
  std::string reset16_environment_, reset16_name_;
};

// ---------------------------------------------------------------------------------------------------
// Tensors
// ---------------------------------------------------------------------------------------------------

// The harness stands in for a C caller, for whom any int is an aclDataType / aclFormat (this file is compiled
// with -fno-sanitize=enum for that reason; the library is not).
aclDataType AsDtype(int64_t raw) {
  const int32_t v = static_cast<int32_t>(raw);
  aclDataType d;
  std::memcpy(&d, &v, sizeof(d));
  return d;
}
aclFormat AsFormat(int64_t raw) {
  const int32_t v = static_cast<int32_t>(raw);
  aclFormat f;
  std::memcpy(&f, &v, sizeof(f));
  return f;
}

/// Bytes per element as aclDataTypeSize answers for every type it knows (1 for the rest, which no operator
/// accepts). The harness keeps its own table: it must not trip over out-of-range values itself.
size_t ElementBytes(int32_t dtype) {
  switch (dtype) {
    case 0:
    case 3:
    case 8:
    case 33:
      return 4;  // float, int32, uint32, complex32
    case 1:
    case 6:
    case 7:
    case 27:
      return 2;  // float16, int16, uint16, bf16
    case 9:
    case 10:
    case 11:
    case 16:
      return 8;  // int64, uint64, double, complex64
    case 17:
      return 16;  // complex128
    default:
      return 1;  // int8, uint8, bool, fp8 kinds; and no fixed size
  }
}

int64_t Clamp(__int128 v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : static_cast<int64_t>(v); }

/// Row-major strides (saturating: hostile dims must not overflow the harness's own arithmetic).
std::vector<int64_t> RowMajor(const std::vector<int64_t>& dims) {
  std::vector<int64_t> s(dims.size(), 1);
  for (size_t d = dims.size(); d-- > 1;) s[d - 1] = Clamp(__int128(s[d]) * std::max<int64_t>(dims[d], 1), 0, INT64_MAX);
  return s;
}

// A junk "tensor" for kBogusTensors: never made by aclCreateTensor, so the library must refuse it unread.
alignas(64) unsigned char g_bogus_tensor[256] = {0xDE, 0xAD, 0xBE, 0xEF};

/// A tensor over storage exactly as large as its view reaches, in the harness's own heap memory (aclCreateTensor
/// takes any host pointer), so ASan reports one byte read or written past it. Inputs remember their bytes, and
/// the harness checks that no operator changed them.
class HostTensor {
 public:
  /// `shrink`: a view too large to back loses rows (dim 0, then everything) until it fits, so that the operator
  /// meets a real but inconsistent tensor; without it (the deliberate huge views) it gets one element of storage,
  /// which aclCreateTensor must refuse.
  HostTensor(const char* name, int32_t dtype, std::vector<int64_t> dims, std::vector<int64_t> strides, int64_t offset,
             int32_t format, bool input, bool shrink = true)
      : name_(name), dims_(std::move(dims)), strides_(std::move(strides)), input_(input) {
    elem_ = ElementBytes(dtype);
    bool sane = offset >= 0;
    for (size_t d = 0; d < dims_.size(); ++d) sane = sane && dims_[d] >= 0 && strides_[d] >= 0;
    __int128 storage = Reach(offset);
    if (sane && shrink && storage * elem_ > kMaxTensorBytes && !dims_.empty()) {
      const __int128 room = kShrunkTensorBytes / static_cast<int64_t>(elem_);
      const int64_t old = dims_[0];
      dims_[0] = 1;
      const __int128 rest = Reach(offset);  // one row
      dims_[0] = strides_[0] > 0 && rest <= room
                     ? static_cast<int64_t>(std::min<__int128>((room - rest) / strides_[0] + 1, old))
                     : 0;
      storage = Reach(offset);
    }
    __int128 numel = 1;
    for (int64_t d : dims_) numel = std::min<__int128>(numel, __int128{1} << 62) * std::max<int64_t>(d, 0);
    numel_ = sane ? Clamp(numel, 0, INT64_MAX) : 0;
    backed_ = sane && storage * elem_ <= kMaxTensorBytes;
    storage_elems_ = backed_ ? static_cast<int64_t>(storage) : 1;
    bytes_ = storage_elems_ * elem_;
    data_ = static_cast<uint8_t*>(std::malloc(bytes_));
    std::memset(data_, input ? 0xA5 : 0xA7, bytes_);  // padding of inputs, poison of outputs
    const int64_t storage_dims[1] = {storage_elems_};
    tensor_ = aclCreateTensor(dims_.data(), dims_.size(), AsDtype(dtype), strides_.data(), offset, AsFormat(format),
                              storage_dims, 1, data_);
    TakeErrMsg();
    offset_ = offset;
  }
  ~HostTensor() {
    if (tensor_ != nullptr && aclDestroyTensor(tensor_) != ACLNN_SUCCESS) {
      Die("harness: aclDestroyTensor of a live tensor (%s) failed: %s", name_, TakeErrMsg().c_str());
    }
    std::free(data_);
  }
  HostTensor(const HostTensor&) = delete;
  HostTensor& operator=(const HostTensor&) = delete;

  aclTensor* get() const { return tensor_; }
  const char* name() const { return name_; }
  /// The view's dims after any shrinking.
  const std::vector<int64_t>& dims() const { return dims_; }
  bool backed() const { return backed_; }
  int64_t numel() const { return numel_; }
  size_t elem() const { return elem_; }

  /// Writes the dense row-major contents (numel * elem bytes) through the view; repeated storage (stride 0)
  /// keeps the last element written there.
  void Store(const std::vector<uint8_t>& dense) {
    if (!backed_ || numel_ == 0 || dense.size() != static_cast<size_t>(numel_) * elem_) return;
    if (Dense()) {
      std::memcpy(data_ + offset_ * elem_, dense.data(), dense.size());
      return;
    }
    std::vector<int64_t> index(dims_.size(), 0);
    for (int64_t i = 0; i < numel_; ++i) {
      int64_t off = offset_;
      for (size_t d = 0; d < dims_.size(); ++d) off += index[d] * strides_[d];
      std::memcpy(data_ + off * elem_, dense.data() + i * elem_, elem_);
      for (size_t d = dims_.size(); d-- > 0;) {
        if (++index[d] < dims_[d]) break;
        index[d] = 0;
      }
    }
  }
  /// The dense contents read back through the view (empty when not backed).
  std::vector<uint8_t> Load() const {
    if (!backed_ || numel_ == 0) return {};
    std::vector<uint8_t> dense(static_cast<size_t>(numel_) * elem_);
    if (Dense()) {
      std::memcpy(dense.data(), data_ + offset_ * elem_, dense.size());
      return dense;
    }
    std::vector<int64_t> index(dims_.size(), 0);
    for (int64_t i = 0; i < numel_; ++i) {
      int64_t off = offset_;
      for (size_t d = 0; d < dims_.size(); ++d) off += index[d] * strides_[d];
      std::memcpy(dense.data() + i * elem_, data_ + off * elem_, elem_);
      for (size_t d = dims_.size(); d-- > 0;) {
        if (++index[d] < dims_[d]) break;
        index[d] = 0;
      }
    }
    return dense;
  }
  void Snapshot() {
    if (input_) snapshot_.assign(data_, data_ + bytes_);
  }
  /// An operator wrote into this input (its storage, padding included, changed).
  bool Changed() const { return input_ && !snapshot_.empty() && std::memcmp(snapshot_.data(), data_, bytes_) != 0; }

 private:
  /// Row-major without gaps: copied in one piece.
  bool Dense() const { return strides_ == RowMajor(dims_); }

  /// Elements of storage the view needs (1 when it has none; unbounded values saturate far above any limit).
  __int128 Reach(int64_t offset) const {
    __int128 last = offset;
    for (size_t d = 0; d < dims_.size(); ++d) {
      if (dims_[d] <= 0) return 1;
      last += __int128(dims_[d] - 1) * strides_[d];
      if (last > (__int128{1} << 100)) return __int128{1} << 100;
    }
    return last + 1;
  }

  const char* name_;
  std::vector<int64_t> dims_, strides_;
  int64_t offset_ = 0;
  bool input_;
  size_t elem_ = 1;
  int64_t numel_ = 0, storage_elems_ = 1;
  size_t bytes_ = 0;
  bool backed_ = false;
  uint8_t* data_ = nullptr;
  aclTensor* tensor_ = nullptr;
  std::vector<uint8_t> snapshot_;
};

// ---------------------------------------------------------------------------------------------------
// One rank's call: attributes, sizes, tensors
// ---------------------------------------------------------------------------------------------------

/// Everything of one rank's call that is not a tensor, from the op's settings and the rank's place.
struct Attrs {
  int g = 0;  // worker
  int64_t ep_world_size, ep_rank_id, moe, shared_num, shared_rank_num, global_bs, quant, token_nums_type, tp_world_size,
      tp_rank_id, shard_type, comm_quant, out_dtype, group_list_type, zero, copy, cnst;
  float norm_eps = 1e-6f;
  int64_t bs, h, k;
  int32_t x_dtype, ids_dtype, format;
  bool dispatch_v3;
  int combine_op;
  // The group names as passed (nullopt: nullptr). Held by value so that copies of Attrs stay valid.
  std::optional<std::string> group_ep, group_tp;
  const char* comm_alg = nullptr;  // a literal
  const char* group_ep_arg() const { return group_ep ? group_ep->c_str() : nullptr; }
  const char* group_tp_arg() const { return group_tp ? group_tp->c_str() : nullptr; }
  // Sizes of a valid call under these attributes (clamped; garbage attributes give garbage but bounded sizes).
  int64_t a = 1, local = 1, receive_rows = 1;
  bool shared_rank = false;
};

/// groupEp / groupTp per GroupName (nullopt: pass nullptr); `own` is the right name ("" when there is none).
std::optional<std::string> GroupArg(int64_t code, const std::string& own) {
  switch (static_cast<int>(static_cast<uint64_t>(code) % 7)) {
    case kGroupNull:
      return std::nullopt;
    case kGroupEmpty:
      return "";
    case kGroupUnknown:
      return "no_such_group";
    case kGroupTooLong:
      return std::string(200, 'g');
    case kGroupOther:
      return Communicators::Get().OtherName(own);
    case kGroup127:
      return std::string(127, 'h');
    default:
      return own;
  }
}

const char* CommAlgArg(int64_t code) {
  switch (static_cast<int>(static_cast<uint64_t>(code) % 6)) {
    case kAlgNull:
      return nullptr;
    case kAlgFullmeshV1:
      return "fullmesh_v1";
    case kAlgFullmeshV2:
      return "fullmesh_v2";
    case kAlgHierarchy:
      return "hierarchy";
    case kAlgJunk:
      return "\xff\xfe fullmesh";
    default:
      return "";
  }
}

void ComputeSizes(Attrs& a) {
  const int64_t e = a.ep_world_size, s = a.shared_rank_num, ns = a.shared_num;
  const bool placed = e > 0 && s >= 0 && e - s > 0 && a.moe > 0;
  a.local = placed ? std::max<int64_t>(a.moe / (e - s), 1) : 1;
  a.shared_rank = placed && a.ep_rank_id >= 0 && a.ep_rank_id < s;
  // A (docs/semantics.md 1.2) for either role, and the larger of the two: outputs may be larger than the rule asks,
  // and under elasticInfo moe_ep sizes a rank for both roles.
  const __int128 max_bs = a.global_bs > 0 && e > 0 ? __int128(a.global_bs) / e : a.bs;
  const __int128 replicas = ns > 0 && s > 0 && s % ns == 0 ? s / ns : 1;
  const __int128 shared_rows = s > 0 ? max_bs * ((std::max<int64_t>(e, 1) + replicas - 1) / replicas) : 0;
  const __int128 global = a.global_bs > 0 ? __int128(a.global_bs) : __int128(a.bs) * std::max<int64_t>(e, 1);
  const __int128 moe_rows =
      std::min<__int128>(global, __int128{1} << 62) * std::min<int64_t>(a.local, std::max<int64_t>(a.k, 1));
  a.a = Clamp(std::max(shared_rows, moe_rows), 1, int64_t{1} << 40);
  a.receive_rows = Clamp(__int128(a.a) * (a.tp_world_size == 2 ? 2 : 1), 1, int64_t{1} << 40);
}

Attrs AttrsFor(const Op& op, const Topology& t, const CommSet* comms, int g) {
  Attrs a;
  a.g = g;
  const bool tp = t.tp_size == 2;
  a.ep_world_size = op.Get(kEpWorldSize, g, t.ep_size);
  a.ep_rank_id = op.Get(kEpRankId, g, t.EpRank(g));
  a.shared_num = op.Get(kSharedExpertNum, g, 0);
  a.shared_rank_num = op.Get(kSharedRankNum, g, 0);
  const int64_t moe_ranks = std::max<int64_t>(t.ep_size - std::max<int64_t>(a.shared_rank_num, 0), 1);
  a.moe = op.Get(kMoeExpertNum, g, moe_ranks * (tp ? 1 : 2));
  a.global_bs = op.Get(kGlobalBs, g, 0);
  a.quant = op.Get(kQuantMode, g, 0);
  a.token_nums_type = op.Get(kTokenNumsType, g, 1);
  a.tp_world_size = op.Get(kTpWorldSize, g, tp ? 2 : 0);
  a.tp_rank_id = op.Get(kTpRankId, g, tp ? t.TpRank(g) : 0);
  a.shard_type = op.Get(kExpertShardType, g, 0);
  a.comm_quant = op.Get(kCommQuantMode, g, 0);
  a.out_dtype = op.Get(kOutDtype, g, 0);
  a.group_list_type = op.Get(kGroupListType, g, 0);
  a.zero = op.Get(kZeroExperts, g, 0);
  a.copy = op.Get(kCopyExperts, g, 0);
  a.cnst = op.Get(kConstExperts, g, 0);
  if (op.Has(kNormEpsBits, g)) {
    const uint32_t bits = static_cast<uint32_t>(op.Get(kNormEpsBits, g, 0));
    std::memcpy(&a.norm_eps, &bits, 4);
  }
  a.bs = op.Get(kBs, g, 4);
  a.h = op.Get(kHidden, g, 1024);
  a.k = op.Get(kTopK, g, 2);
  a.x_dtype = static_cast<int32_t>(op.Get(kXDtype, g, kBf16));
  a.ids_dtype = static_cast<int32_t>(op.Get(kIdsDtype, g, kInt32));
  a.format = static_cast<int32_t>(op.Get(kFormat, g, kFormatNd));
  const bool v3_features = op.Get(kElastic, g, 0) != 0 || a.zero != 0 || a.copy != 0 || a.cnst != 0;
  a.dispatch_v3 = op.Flag(kDispatchV3, g, v3_features ? 1 : 0);
  a.combine_op = op.Pick(kCombineOp, g, a.dispatch_v3 ? kCombineV3 : kCombineV2, 3);
  const std::string own_ep = comms ? comms->ep_name[g] : "";
  const std::string own_tp = comms && tp ? comms->tp_name[g] : "";
  a.group_ep = GroupArg(op.Get(kGroupEp, g, kGroupOwn), own_ep);
  a.group_tp = GroupArg(op.Get(kGroupTp, g, kGroupOwn), own_tp);
  a.comm_alg = CommAlgArg(op.Get(kCommAlg, g, kAlgEmpty));
  ComputeSizes(a);
  return a;
}

// Contents -------------------------------------------------------------------------------------------

/// Dense contents of a floating tensor of `dtype` (bf16 / fp16 / fp32 by Fill; any other dtype: random bytes).
std::vector<uint8_t> FloatingContents(Rng& rng, int32_t dtype, int64_t numel, int64_t fill_code) {
  const Fill fill = static_cast<Fill>(static_cast<uint64_t>(fill_code) % 6);
  if (dtype == kBf16 || dtype == kFp16) {
    std::vector<uint8_t> v(numel * 2);
    for (int64_t i = 0; i < numel; ++i) {
      const uint16_t bits = HalfBits(rng, dtype == kBf16, fill);
      std::memcpy(&v[i * 2], &bits, 2);
    }
    return v;
  }
  if (dtype == kFloat) {
    std::vector<uint8_t> v(numel * 4);
    for (int64_t i = 0; i < numel; ++i) {
      const uint32_t bits = FloatBits(rng, fill);
      std::memcpy(&v[i * 4], &bits, 4);
    }
    return v;
  }
  return RandomBytes(rng, numel * static_cast<int64_t>(ElementBytes(dtype)));
}

/// The elasticInfo table (4 + 2E entries) that keeps the ranks not in `dropped` (docs/semantics.md 2.8).
std::vector<int32_t> ScaleDownTable(int64_t e, int64_t s, int64_t moe, uint64_t dropped) {
  std::vector<int32_t> table(4 + 2 * e, -1);
  int32_t new_e = 0, new_s = 0;
  for (int64_t r = 0; r < e; ++r) {
    if (r < 64 && ((dropped >> r) & 1)) continue;
    table[4 + r] = new_e;
    table[4 + e + new_e] = static_cast<int32_t>(r);
    ++new_e;
    if (r < s) ++new_s;
  }
  const int64_t local = e - s > 0 ? moe / (e - s) : 1;
  table[0] = 1;
  table[1] = new_e;
  table[2] = new_s;
  table[3] = static_cast<int32_t>(Clamp(__int128(local) * (new_e - new_s), INT32_MIN, INT32_MAX));
  return table;
}

/// elasticInfo per ElasticMode for the group the op runs on (original size e), or empty for none.
std::vector<int32_t> ElasticTable(const Op& op, int g, Rng& rng, int64_t e, int64_t s, int64_t moe) {
  const int mode = op.Pick(kElastic, g, kElasticNone, 8);
  if (mode == kElasticNone || e <= 0 || e > 64) return {};
  const uint64_t dropped = static_cast<uint64_t>(op.Get(kElasticDrop, g, 0));
  std::vector<int32_t> table = ScaleDownTable(e, s, moe, dropped);
  const int64_t value = op.Get(kElasticValue, g, 0);
  switch (mode) {
    case kElasticRandom:
      for (auto& v : table) v = static_cast<int32_t>(rng.Range(-2, e + 2));
      break;
    case kElasticSwapped:
      if (table[1] >= 2) std::swap(table[4 + e], table[4 + e + 1]);
      break;
    case kElasticPoke:
      table[static_cast<uint64_t>(op.Get(kElasticIndex, g, 0)) % table.size()] = static_cast<int32_t>(value);
      break;
    case kElasticAll:
      for (auto& v : table) v = static_cast<int32_t>(value);
      break;
    case kElasticLonger:
      table.push_back(0);
      break;
    case kElasticNotScaled:
      table[0] = 0;
      break;
    default:
      break;
  }
  return table;
}

/// Ranks the op's elastic table leaves out: they make no call.
uint64_t ElasticDropped(const Op& op, const Attrs& a) {
  if (!a.dispatch_v3 && a.combine_op == kCombineV2) return 0;
  const int mode = op.Pick(kElastic, a.g, kElasticNone, 8);
  const bool drops = mode == kElasticValid || mode == kElasticSwapped || mode == kElasticPoke ||
                     mode == kElasticLonger || mode == kElasticNotScaled;
  return drops ? static_cast<uint64_t>(op.Get(kElasticDrop, a.g, 0)) : 0;
}

// ---------------------------------------------------------------------------------------------------
// A rank's operator call: its tensors, phase one, phase two
// ---------------------------------------------------------------------------------------------------

/// The tensors of one call, by slot, and what phase one and two returned.
class Call {
 public:
  Call(const Op& op, const Attrs& attrs) : op_(op), a_(attrs) {
    view_ = op.Pick(kView, attrs.g, kViewContiguous, 8);
    view_targets_ = static_cast<uint64_t>(op.Get(kViewTargets, attrs.g, kDataInputs));
    nulls_ = static_cast<uint64_t>(op.Get(kNullTensors, attrs.g, 0));
    bogus_ = static_cast<uint64_t>(op.Get(kBogusTensors, attrs.g, 0));
    reserved_ = static_cast<uint64_t>(op.Get(kReservedTensors, attrs.g, 0));
  }

  /// Contents of an input for its final dims (dense row-major, numel * elem bytes).
  using Contents = std::function<std::vector<uint8_t>(const std::vector<int64_t>& dims)>;

  /// An input in the op's view mode (when its slot is a view target), filled by `contents`.
  HostTensor* Input(int slot, const char* name, int32_t dtype, std::vector<int64_t> dims, const Contents& contents,
                    int32_t format = kFormatNd) {
    std::vector<int64_t> strides = RowMajor(dims);
    int64_t offset = 0;
    const int mode = (view_targets_ >> slot) & 1 ? view_ : kViewContiguous;
    const size_t n = dims.size();
    if (n > 0) {
      switch (mode) {
        case kViewPaddedRows:
          if (n >= 2) strides[0] += 3;
          offset = 5;
          break;
        case kViewStridedCols:
          strides[n - 1] = 2;
          for (size_t d = n - 1; d-- > 0;) {
            strides[d] = Clamp(__int128(strides[d + 1]) * std::max<int64_t>(dims[d + 1], 1) + 1, 0, INT64_MAX);
          }
          offset = 1;
          break;
        case kViewBroadcastRows:
          strides[0] = 0;
          break;
        case kViewColumnMajor:
          if (n == 2) strides = {1, std::max<int64_t>(dims[0], 1)};
          break;
        case kViewHugeDims:
          dims[0] = int64_t{1} << 62;
          break;
        case kViewEmpty:
          dims[0] = 0;
          break;
        case kViewOverflowStride:
          strides[0] = int64_t{1} << 62;
          break;
        default:
          break;
      }
    }
    const bool deliberate = mode == kViewHugeDims || mode == kViewOverflowStride;
    auto t = std::make_unique<HostTensor>(name, dtype, std::move(dims), std::move(strides), offset, format, true,
                                          !deliberate);
    if (t->backed()) t->Store(contents(t->dims()));
    t->Snapshot();
    return Keep(slot, std::move(t));
  }

  /// A contiguous output, poisoned.
  HostTensor* Output(int slot, const char* name, int32_t dtype, std::vector<int64_t> dims) {
    std::vector<int64_t> strides = RowMajor(dims);
    return Keep(slot,
                std::make_unique<HostTensor>(name, dtype, std::move(dims), std::move(strides), 0, kFormatNd, false));
  }

  /// What the operator receives for `slot`: nullptr / a bogus pointer when the op says so, else the tensor.
  aclTensor* Arg(int slot) const {
    if ((nulls_ >> slot) & 1) return nullptr;
    if ((bogus_ >> slot) & 1) return reinterpret_cast<aclTensor*>(g_bogus_tensor);
    const HostTensor* t = slots_[slot];
    return t ? t->get() : nullptr;
  }
  HostTensor* Slot(int slot) const { return slots_[slot]; }
  /// A reserved parameter's tensor when kReservedTensors asks for it, else nullptr.
  aclTensor* ReservedArg(int bit, int32_t dtype, std::vector<int64_t> dims) {
    if (!((reserved_ >> bit) & 1)) return nullptr;
    owned_.push_back(std::make_unique<HostTensor>("reserved", dtype, dims, RowMajor(dims), 0, kFormatNd, false));
    return owned_.back()->get();
  }

  /// The name of an input the operator wrote into, or nullptr.
  const char* WrittenInput() const {
    for (const auto& t : owned_) {
      if (t->Changed()) return t->name();
    }
    return nullptr;
  }

  const Attrs& attrs() const { return a_; }
  const Op& op() const { return op_; }

  int32_t phase_one = -1;     // status of GetWorkspaceSize (-1: not called)
  int32_t phase_two = -1;     // status of the launch (-1: not launched)
  int32_t synchronized = -1;  // status of aclrtSynchronizeStream after the launch
  aclOpExecutor* executor = nullptr;
  bool is_reset = false;

 private:
  HostTensor* Keep(int slot, std::unique_ptr<HostTensor> t) {
    HostTensor* raw = t.get();
    owned_.push_back(std::move(t));
    if (slot >= 0 && slot < kSlotCount) slots_[slot] = raw;
    return raw;
  }

  const Op& op_;
  Attrs a_;
  int view_ = 0;
  uint64_t view_targets_ = 0, nulls_ = 0, bogus_ = 0, reserved_ = 0;
  std::vector<std::unique_ptr<HostTensor>> owned_;
  std::array<HostTensor*, kSlotCount> slots_{};
};

bool ScaledDown(const std::vector<int32_t>& table) { return table.size() >= 4 && table[0] == 1 && table[3] > 0; }

/// How many expert ids a valid call draws from: the routed experts (the survivors' under a scale-down table) and, in
/// V3, the special ones.
int64_t TotalExperts(const Attrs& a, const std::vector<int32_t>& table) {
  const __int128 special = a.dispatch_v3 || a.combine_op == kCombineV3 ? __int128(a.zero) + a.copy + a.cnst : 0;
  return Clamp((ScaledDown(table) ? __int128(table[3]) : __int128(a.moe)) + special, 0, INT32_MAX);
}

/// Under a scale-down table, the special experts keep their ids past the routed experts that left.
RetiredExperts Retired(const Attrs& a, const std::vector<int32_t>& table) {
  if (!ScaledDown(table) || a.moe <= table[3]) return {};
  return {table[3], Clamp(__int128(a.moe) - table[3], 0, INT32_MAX)};
}

/// The number of elements of `dims` (all backed tensors are small).
int64_t Numel(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= std::max<int64_t>(d, 0);
  return n;
}

/// Contents generators for Call::Input: each draws for the tensor's final dims from the call's own stream.
Call::Contents Floating(Rng& rng, int32_t dtype, int64_t fill) {
  return
      [&rng, dtype, fill](const std::vector<int64_t>& dims) { return FloatingContents(rng, dtype, Numel(dims), fill); };
}
Call::Contents Bytes(std::vector<uint8_t> dense) {
  return [dense = std::move(dense)](const std::vector<int64_t>&) { return dense; };
}
/// Expert ids (rows, K) for the final dims; other dtypes get random bytes.
Call::Contents Ids(Rng& rng, int32_t dtype, int64_t total, int64_t mode, int64_t value, RetiredExperts retired) {
  return [&rng, dtype, total, mode, value, retired](const std::vector<int64_t>& dims) {
    if (dtype != kInt32 || dims.size() != 2)
      return RandomBytes(rng, Numel(dims) * static_cast<int64_t>(ElementBytes(dtype)));
    return Int32Bytes(ExpertIds(rng, dims[0], dims[1], total, mode, value, retired));
  };
}
Call::Contents Mask(Rng& rng, int64_t fill) {
  return [&rng, fill](const std::vector<int64_t>& dims) { return MaskBytes(rng, Numel(dims), fill); };
}
std::vector<int64_t> MaskDims(int kind, int64_t bs, int64_t k) {
  switch (kind) {
    case kMask2d:
      return {bs, k};
    case kMaskWrong1d:
      return {bs + 1};
    case kMask3d:
      return {bs, k, 1};
    default:
      return {bs};
  }
}

/// Dispatch tensors of one rank, then phase one.
void DispatchPhaseOne(Call& c) {
  const Attrs& a = c.attrs();
  const Op& op = c.op();
  Rng rng(Mix(static_cast<uint64_t>(op.Get(kSeed, a.g, 0)), a.g, 1));
  const int64_t bs = a.bs, h = a.h, k = a.k;
  std::vector<int32_t> table;
  if (a.dispatch_v3) table = ElasticTable(op, a.g, rng, a.ep_world_size, a.shared_rank_num, a.moe);
  c.Input(kSlotX, "x", a.x_dtype, {bs, h}, Floating(rng, a.x_dtype, op.Get(kXFill, a.g, 0)), a.format);
  c.Input(kSlotIds, "expertIds", a.ids_dtype, {bs, k},
          Ids(rng, a.ids_dtype, TotalExperts(a, table), op.Get(kIdsMode, a.g, kIdsDistinct), op.Get(kIdsValue, a.g, 0),
              Retired(a, table)));
  if (op.Flag(kSmoothScales, a.g, 0)) {
    c.Input(kSlotScales, "scales", kFloat, {Clamp(__int128(a.shared_num) + a.moe, -1, INT64_MAX), h},
            Floating(rng, kFloat, op.Get(kScalesFill, a.g, 0)));
  }
  const int mask = op.Pick(kMask, a.g, kMaskNone, 5);
  if (mask != kMaskNone) {
    c.Input(kSlotMask, "xActiveMask", kBool, MaskDims(mask, bs, k), Mask(rng, op.Get(kMaskFill, a.g, kMaskAllTrue)));
  }
  if (!table.empty()) {
    c.Input(kSlotElastic, "elasticInfo", kInt32, {static_cast<int64_t>(table.size())}, Bytes(Int32Bytes(table)));
  }
  // Outputs sized for a valid call, then moved by the deltas.
  const bool quant = a.quant == 2;
  const int64_t rows = Clamp(__int128(a.receive_rows) + op.Get(kExpandRowsDelta, a.g, 0), 0, int64_t{1} << 40);
  c.Output(kSlotExpandXOut, "expandXOut", quant ? kInt8 : a.x_dtype, {rows, h});
  c.Output(kSlotDynScalesOut, "dynamicScalesOut", kFloat, {rows});
  const int64_t assist = Clamp(__int128(a.a) * 128 + op.Get(kAssistLenDelta, a.g, 0), 0, int64_t{1} << 40);
  c.Output(kSlotAssistOut, "assistInfoForCombineOut", kInt32, {assist});
  const int64_t token_nums =
      Clamp(__int128(a.shared_rank ? 1 : a.local) + op.Get(kTokenNumsDelta, a.g, 0), 0, int64_t{1} << 40);
  c.Output(kSlotTokenNumsOut, "expertTokenNumsOut", kInt64, {token_nums});
  const int64_t tp_factor = a.tp_world_size == 2 ? 2 : 1;
  const int64_t recv =
      Clamp(__int128(Clamp(__int128(a.shared_rank ? 1 : a.local) * std::max<int64_t>(a.ep_world_size, 0), 0,
                           int64_t{1} << 62)) *
                    tp_factor +
                op.Get(kRecvLenDelta, a.g, 0),
            0, int64_t{1} << 40);
  c.Output(kSlotRecvOut, "epRecvCountsOut", kInt32, {recv});
  c.Output(kSlotTpRecvOut, "tpRecvCountsOut", kInt32, {op.Get(kTpRecvLen, a.g, std::max<int64_t>(a.tp_world_size, 0))});

  aclTensor* expert_scales = c.ReservedArg(kReservedDispatchExpertScales, kFloat, {bs, k});
  aclTensor* expand_scales = c.ReservedArg(kReservedDispatchExpandScalesOut, kFloat, {rows});
  uint64_t ws = 0;
  if (a.dispatch_v3) {
    c.phase_one = aclnnMoeDistributeDispatchV3GetWorkspaceSize(
        c.Arg(kSlotX), c.Arg(kSlotIds), c.Arg(kSlotScales), c.Arg(kSlotMask), expert_scales, c.Arg(kSlotElastic),
        a.group_ep_arg(), a.ep_world_size, a.ep_rank_id, a.moe, a.group_tp_arg(), a.tp_world_size, a.tp_rank_id,
        a.shard_type, a.shared_num, a.shared_rank_num, a.quant, a.global_bs, a.token_nums_type, a.comm_alg, a.zero,
        a.copy, a.cnst, c.Arg(kSlotExpandXOut), c.Arg(kSlotDynScalesOut), c.Arg(kSlotAssistOut),
        c.Arg(kSlotTokenNumsOut), c.Arg(kSlotRecvOut), c.Arg(kSlotTpRecvOut), expand_scales, &ws, &c.executor);
  } else {
    c.phase_one = aclnnMoeDistributeDispatchV2GetWorkspaceSize(
        c.Arg(kSlotX), c.Arg(kSlotIds), c.Arg(kSlotScales), c.Arg(kSlotMask), expert_scales, a.group_ep_arg(),
        a.ep_world_size, a.ep_rank_id, a.moe, a.group_tp_arg(), a.tp_world_size, a.tp_rank_id, a.shard_type,
        a.shared_num, a.shared_rank_num, a.quant, a.global_bs, a.token_nums_type, a.comm_alg, c.Arg(kSlotExpandXOut),
        c.Arg(kSlotDynScalesOut), c.Arg(kSlotAssistOut), c.Arg(kSlotTokenNumsOut), c.Arg(kSlotRecvOut),
        c.Arg(kSlotTpRecvOut), expand_scales, &ws, &c.executor);
  }
  Note(a.g, a.dispatch_v3 ? "DispatchV3GetWorkspaceSize" : "DispatchV2GetWorkspaceSize", c.phase_one);
}

/// Combine tensors of one rank (over dispatch's outputs when `from` is given), then phase one.
void CombinePhaseOne(Call& c, const Call* from) {
  const Attrs& a = c.attrs();
  const Op& op = c.op();
  Rng rng(Mix(static_cast<uint64_t>(op.Get(kSeed, a.g, 0)), a.g, 2));
  const int64_t bs = a.bs, h = a.h, k = a.k;
  const int32_t half = a.x_dtype;
  const int64_t xfill = op.Get(kXFill, a.g, 0);
  const bool v3 = a.combine_op == kCombineV3;
  std::vector<int32_t> table;
  if (v3) table = ElasticTable(op, a.g, rng, a.ep_world_size, a.shared_rank_num, a.moe);
  // Expert outputs: the rows of a valid call, moved by the delta.
  const int64_t rows = Clamp(__int128(a.receive_rows) + op.Get(kExpertRowsDelta, a.g, 0), 0, int64_t{1} << 40);
  c.Input(kSlotExpertOut, "expandX", half, {rows, h}, Floating(rng, half, xfill), a.format);
  // Routing: dispatch's ids unchanged, or drawn per kCombineIdsMode.
  if (from != nullptr && from->Slot(kSlotIds) && from->Slot(kSlotIds)->backed() && !op.Has(kCombineIdsMode, a.g)) {
    c.Input(kSlotCombineIds, "expertIds", a.ids_dtype, from->Slot(kSlotIds)->dims(),
            Bytes(from->Slot(kSlotIds)->Load()));
  } else {
    c.Input(
        kSlotCombineIds, "expertIds", a.ids_dtype, {bs, k},
        Ids(rng, a.ids_dtype, TotalExperts(a, table), op.Get(kCombineIdsMode, a.g, op.Get(kIdsMode, a.g, kIdsDistinct)),
            op.Get(kCombineIdsValue, a.g, op.Get(kIdsValue, a.g, 0)), Retired(a, table)));
  }
  // The handle: dispatch's outputs (or zeros), then corrupted.
  auto handle = [&](int from_slot, int64_t corrupt) {
    return [&, from_slot, corrupt](const std::vector<int64_t>& dims) {
      std::vector<int32_t> v;
      if (from != nullptr && from->Slot(from_slot)) v = AsInt32(from->Slot(from_slot)->Load());
      v.resize(Numel(dims), 0);
      ApplyCorruption(v, rng, corrupt, op.Get(kCorruptValue, a.g, 0), op.Get(kCorruptIndex, a.g, 0));
      return Int32Bytes(v);
    };
  };
  c.Input(kSlotAssist, "assistInfoForCombine", kInt32,
          {Clamp(__int128(a.a) * 128 + op.Get(kAssistLenDelta, a.g, 0), 0, int64_t{1} << 40)},
          handle(kSlotAssistOut, op.Get(kCorruptAssist, a.g, 0)));
  const int64_t tp_factor = a.tp_world_size == 2 ? 2 : 1;
  c.Input(kSlotSendCounts, "epSendCounts", kInt32,
          {Clamp(__int128(Clamp(__int128(a.shared_rank ? 1 : a.local) * std::max<int64_t>(a.ep_world_size, 0), 0,
                                int64_t{1} << 62)) *
                         tp_factor +
                     op.Get(kRecvLenDelta, a.g, 0),
                 0, int64_t{1} << 40)},
          handle(kSlotRecvOut, op.Get(kCorruptCounts, a.g, 0)));
  c.Input(kSlotExpertScales, "expertScales", kFloat, {bs, k}, Floating(rng, kFloat, op.Get(kScalesFill, a.g, 0)));
  if (a.tp_world_size == 2 || op.Has(kTpRecvLen, a.g) || op.Has(kCorruptTpCounts, a.g)) {
    c.Input(kSlotTpSendCounts, "tpSendCounts", kInt32, {op.Get(kTpRecvLen, a.g, std::max<int64_t>(a.tp_world_size, 0))},
            handle(kSlotTpRecvOut, op.Get(kCorruptTpCounts, a.g, 0)));
  }
  const int mask = op.Pick(kMask, a.g, kMaskNone, 5);
  if (from != nullptr && from->Slot(kSlotMask) && from->Slot(kSlotMask)->backed()) {
    c.Input(kSlotCombineMask, "xActiveMask", kBool, from->Slot(kSlotMask)->dims(),
            Bytes(from->Slot(kSlotMask)->Load()));
  } else if (mask != kMaskNone) {
    c.Input(kSlotCombineMask, "xActiveMask", kBool, MaskDims(mask, bs, k),
            Mask(rng, op.Get(kMaskFill, a.g, kMaskAllTrue)));
  }
  const int64_t shared_x = op.Pick(kSharedX, a.g, 0, 3);
  if (shared_x == 1) c.Input(kSlotSharedX, "sharedExpertX", half, {bs, h}, Floating(rng, half, xfill));
  if (shared_x == 2) c.Input(kSlotSharedX, "sharedExpertX", half, {bs, 1, h}, Floating(rng, half, xfill));
  if (v3) {
    if (!table.empty()) {
      c.Input(kSlotCombineElastic, "elasticInfo", kInt32, {static_cast<int64_t>(table.size())},
              Bytes(Int32Bytes(table)));
    }
    if (a.copy != 0 || a.cnst != 0 || op.Flag(kOriX, a.g, 0)) {
      c.Input(kSlotOriX, "oriX", half, {bs, h}, Floating(rng, half, xfill));
    }
    if (a.cnst != 0 || op.Flag(kConstTensors, a.g, 0)) {
      const int64_t n = a.cnst;
      const int64_t sfill = op.Get(kScalesFill, a.g, 0);
      c.Input(kSlotAlpha1, "constExpertAlpha1", half, {n, h}, Floating(rng, half, sfill));
      c.Input(kSlotAlpha2, "constExpertAlpha2", half, {n, h}, Floating(rng, half, sfill));
      c.Input(kSlotConstV, "constExpertV", half, {n, h}, Floating(rng, half, sfill));
    }
  }
  if (a.combine_op == kCombineAddRmsNorm) {
    const int shapes = op.Pick(kRmsShapes, a.g, kRmsRight, 4);
    c.Input(kSlotResidual, "residualX", half,
            shapes == kRmsResidual2d ? std::vector<int64_t>{bs, h} : std::vector<int64_t>{bs, 1, h},
            Floating(rng, half, xfill));
    c.Input(kSlotGamma, "gamma", half, {shapes == kRmsGammaLong ? h + 1 : h}, Floating(rng, half, xfill));
    c.Output(kSlotYOut, "yOut", half, {bs, 1, h});
    c.Output(kSlotRstdOut, "rstdOut", kFloat,
             shapes == kRmsRstdWide ? std::vector<int64_t>{bs, 1, 2} : std::vector<int64_t>{bs, 1, 1});
    c.Output(kSlotXOut, "xOut", half, {bs, 1, h});
  } else {
    c.Output(kSlotXOut, "xOut", half, {bs, h});
  }

  aclTensor* activation_scale = c.ReservedArg(kReservedActivationScale, kFloat, {rows});
  aclTensor* weight_scale = c.ReservedArg(kReservedWeightScale, kFloat, {rows});
  aclTensor* group_list = c.ReservedArg(kReservedGroupList, kInt64, {a.local});
  aclTensor* expand_scales = c.ReservedArg(kReservedCombineExpandScales, kFloat, {rows});
  uint64_t ws = 0;
  switch (a.combine_op) {
    case kCombineV3:
      c.phase_one = aclnnMoeDistributeCombineV3GetWorkspaceSize(
          c.Arg(kSlotExpertOut), c.Arg(kSlotCombineIds), c.Arg(kSlotAssist), c.Arg(kSlotSendCounts),
          c.Arg(kSlotExpertScales), c.Arg(kSlotTpSendCounts), c.Arg(kSlotCombineMask), activation_scale, weight_scale,
          group_list, expand_scales, c.Arg(kSlotSharedX), c.Arg(kSlotCombineElastic), c.Arg(kSlotOriX),
          c.Arg(kSlotAlpha1), c.Arg(kSlotAlpha2), c.Arg(kSlotConstV), a.group_ep_arg(), a.ep_world_size, a.ep_rank_id,
          a.moe, a.group_tp_arg(), a.tp_world_size, a.tp_rank_id, a.shard_type, a.shared_num, a.shared_rank_num,
          a.global_bs, a.out_dtype, a.comm_quant, a.group_list_type, a.comm_alg, a.zero, a.copy, a.cnst,
          c.Arg(kSlotXOut), &ws, &c.executor);
      break;
    case kCombineAddRmsNorm:
      c.phase_one = aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize(
          c.Arg(kSlotExpertOut), c.Arg(kSlotCombineIds), c.Arg(kSlotAssist), c.Arg(kSlotSendCounts),
          c.Arg(kSlotExpertScales), c.Arg(kSlotResidual), c.Arg(kSlotGamma), c.Arg(kSlotTpSendCounts),
          c.Arg(kSlotCombineMask), activation_scale, weight_scale, group_list, expand_scales, c.Arg(kSlotSharedX),
          a.group_ep_arg(), a.ep_world_size, a.ep_rank_id, a.moe, a.group_tp_arg(), a.tp_world_size, a.tp_rank_id,
          a.shard_type, a.shared_num, a.shared_rank_num, a.global_bs, a.out_dtype, a.comm_quant, a.group_list_type,
          a.comm_alg, a.norm_eps, c.Arg(kSlotYOut), c.Arg(kSlotRstdOut), c.Arg(kSlotXOut), &ws, &c.executor);
      break;
    default:
      c.phase_one = aclnnMoeDistributeCombineV2GetWorkspaceSize(
          c.Arg(kSlotExpertOut), c.Arg(kSlotCombineIds), c.Arg(kSlotAssist), c.Arg(kSlotSendCounts),
          c.Arg(kSlotExpertScales), c.Arg(kSlotTpSendCounts), c.Arg(kSlotCombineMask), activation_scale, weight_scale,
          group_list, expand_scales, c.Arg(kSlotSharedX), a.group_ep_arg(), a.ep_world_size, a.ep_rank_id, a.moe,
          a.group_tp_arg(), a.tp_world_size, a.tp_rank_id, a.shard_type, a.shared_num, a.shared_rank_num, a.global_bs,
          a.out_dtype, a.comm_quant, a.group_list_type, a.comm_alg, c.Arg(kSlotXOut), &ws, &c.executor);
      break;
  }
  Note(a.g, "CombineGetWorkspaceSize", c.phase_one);
}

enum class Kind { kDispatch, kCombine, kReset };

aclnnStatus Launch(Kind kind, const Attrs& a, aclOpExecutor* exec, aclrtStream stream) {
  switch (kind) {
    case Kind::kDispatch:
      return a.dispatch_v3 ? aclnnMoeDistributeDispatchV3(nullptr, 0, exec, stream)
                           : aclnnMoeDistributeDispatchV2(nullptr, 0, exec, stream);
    case Kind::kCombine:
      return a.combine_op == kCombineV3           ? aclnnMoeDistributeCombineV3(nullptr, 0, exec, stream)
             : a.combine_op == kCombineAddRmsNorm ? aclnnMoeDistributeCombineAddRmsNorm(nullptr, 0, exec, stream)
                                                  : aclnnMoeDistributeCombineV2(nullptr, 0, exec, stream);
    case Kind::kReset:
      return aclnnMoeDistributeBufferReset(nullptr, 0, exec, stream);
  }
  return -1;
}

/// Phase two of one rank: launch, then synchronize. An executor that is not to run is handed to another
/// operator's launch, which must refuse it and give it back (executor.cc); it is then destroyed, as any executor a
/// launch did not take.
void PhaseTwo(Kind kind, Call& c, bool run, aclrtStream stream) {
  if (c.executor == nullptr) return;
  if (!run) {
    const aclnnStatus st = kind == Kind::kReset ? aclnnMoeDistributeDispatchV2(nullptr, 0, c.executor, stream)
                                                : aclnnMoeDistributeBufferReset(nullptr, 0, c.executor, stream);
    TakeErrMsg();
    if (st == ACLNN_SUCCESS) Die("contract: an executor built by one operator was launched by another");
    aclDestroyAclOpExecutor(c.executor);
    c.executor = nullptr;
    return;
  }
  c.phase_two = Launch(kind, c.attrs(), c.executor, stream);
  Note(c.attrs().g, "launch", c.phase_two);
  if (c.phase_two != ACLNN_SUCCESS) aclDestroyAclOpExecutor(c.executor);
  c.executor = nullptr;
  if (c.phase_two == ACLNN_SUCCESS) {
    c.synchronized = aclrtSynchronizeStream(stream);
    Note(c.attrs().g, "aclrtSynchronizeStream", c.synchronized);
  }
}

// ---------------------------------------------------------------------------------------------------
// The ops
// ---------------------------------------------------------------------------------------------------

const char* kOpNames[] = {"round", "dispatch", "combine", "reset", "env", "join", "tensor"};

const char* KindName(Kind kind) {
  return kind == Kind::kDispatch ? "dispatch" : kind == Kind::kCombine ? "combine" : "BufferReset";
}

/// One collective step on `ranks`: phase one everywhere, phase two where allowed, then the checks. Returns
/// whether the group's ranks now disagree on their call counters (the communicators must be made again).
bool Collective(Kind kind, const Op& op, std::array<std::unique_ptr<Call>, kMaxRanks>& calls,
                const std::vector<int>& ranks, int group_size, const std::function<void(Call&)>& phase_one) {
  RankThreads& threads = Workers();
  Watchdog::Get().Doing("%s phase one on %zu ranks", KindName(kind), ranks.size());
  threads.Run(ranks, [&](int g) { phase_one(*calls[g]); });
  bool all_passed = true;
  for (int g : ranks) all_passed = all_passed && calls[g]->phase_one == ACLNN_SUCCESS;
  const bool anyway = op.Flag(kLaunchAnyway, 0);
  Watchdog::Get().Doing("%s phase two on %zu ranks", KindName(kind), ranks.size());
  threads.Run(ranks, [&](int g) {
    Call& c = *calls[g];
    PhaseTwo(kind, c, all_passed || anyway, g_streams[g]);
  });
  int launched = 0;
  bool all_ran = true;
  for (int g : ranks) {
    const Call& c = *calls[g];
    if (const char* written = c.WrittenInput()) {
      Die("contract: %s on rank %d wrote into its input '%s'", kOpNames[op.opcode], g, written);
    }
    if (c.phase_two >= 0) ++launched;
    all_ran = all_ran && c.phase_two == ACLNN_SUCCESS && c.synchronized == ACL_SUCCESS;
  }
  return launched > 0 && (!all_ran || static_cast<int>(ranks.size()) != group_size || launched != group_size);
}

std::vector<int> Participants(const Op& op, int group_ranks, const std::function<uint64_t(int)>& dropped) {
  std::vector<int> ranks;
  for (int g = 0; g < group_ranks; ++g) {
    if (op.Flag(kSkip, g, 0)) continue;
    if (g < 64 && ((dropped(g) >> g) & 1)) continue;
    ranks.push_back(g);
  }
  return ranks;
}

void RunMoe(const Op& op) {
  const int topology = op.Pick(kTopology, 0, 3);
  Communicators& comms = Communicators::Get();
  Watchdog::Get().Doing("making the communicators of topology %d", topology);
  CommSet* set = comms.For(topology);
  if (set == nullptr) return;  // the input's environment refused them; HcclCommInitRootInfo said so
  const Topology t = set->topology;
  std::array<std::unique_ptr<Call>, kMaxRanks> dispatch, combine;
  for (int g = 0; g < t.ranks(); ++g) {
    const Attrs a = AttrsFor(op, t, set, g);
    dispatch[g] = std::make_unique<Call>(op, a);
    combine[g] = std::make_unique<Call>(op, a);
  }
  // A rank that the elastic table drops (in the EP numbering of its own group) stays away, as a dead rank would.
  const std::vector<int> ranks = Participants(op, t.ranks(), [&](int g) {
    const uint64_t ep_dropped = ElasticDropped(op, dispatch[g]->attrs());
    return ((ep_dropped >> t.EpRank(g)) & 1) ? uint64_t{1} << g : uint64_t{0};
  });
  bool unequal = false;
  bool dispatched = false;
  if (op.opcode == kRound || op.opcode == kDispatch) {
    unequal = Collective(Kind::kDispatch, op, dispatch, ranks, t.ranks(), DispatchPhaseOne);
    dispatched = !ranks.empty();
    for (int g : ranks) dispatched = dispatched && dispatch[g]->synchronized == ACL_SUCCESS;
  }
  // Survivors of an elastic scale-down combine too: the dropped ranks' counters are behind either way.
  const bool combine_now = op.opcode == kCombine || (op.opcode == kRound && dispatched);
  if (combine_now) {
    unequal |= Collective(Kind::kCombine, op, combine, ranks, t.ranks(), [&](Call& c) {
      CombinePhaseOne(c, op.opcode == kRound ? dispatch[c.attrs().g].get() : nullptr);
    });
  }
  if (unequal) comms.Drop(topology);
}

void RunReset(const Op& op) {
  Communicators& comms = Communicators::Get();
  const bool big = op.Flag(kResetGroup, 0);
  const int topology = op.Pick(kTopology, 0, 3);
  Watchdog::Get().Doing("making the communicators for BufferReset");
  CommSet* set = big ? nullptr : comms.For(topology);
  const std::vector<HcclComm>* group16 = big ? comms.Reset16() : nullptr;
  if (big ? group16 == nullptr : set == nullptr) return;
  const int workers = big ? kMaxRanks : set->topology.ranks();
  const int64_t group_size = big ? 16 : set->topology.ep_size;
  const std::vector<int> ranks = Participants(op, workers, [](int) { return uint64_t{0}; });
  std::array<std::unique_ptr<Call>, kMaxRanks> calls;
  for (int g = 0; g < workers; ++g) {
    Attrs a;
    a.g = g;
    const std::string own = big ? comms.reset16_name() : set->ep_name[g];
    a.group_ep = GroupArg(op.Get(kGroupEp, g, kGroupOwn), own);
    a.ep_world_size = op.Get(kEpWorldSize, g, group_size);
    calls[g] = std::make_unique<Call>(op, a);
    calls[g]->is_reset = true;
  }
  auto phase_one = [&](Call& c) {
    const Attrs& a = c.attrs();
    Rng rng(Mix(static_cast<uint64_t>(op.Get(kSeed, a.g, 0)), a.g, 3));
    const int mode = op.Pick(kResetMask, a.g, kResetParticipants, 8);
    const int64_t e = std::clamp<int64_t>(a.ep_world_size, 0, 4096);
    const int64_t my_rank = big ? a.g : set->topology.EpRank(a.g);
    std::vector<int32_t> mask(e, 0);
    for (int64_t r = 0; r < e; ++r) {
      switch (mode) {
        case kResetRandom:
          mask[r] = rng.Next() & 1;
          break;
        case kResetAll:
          mask[r] = static_cast<int32_t>(op.Get(kCorruptValue, a.g, 1));
          break;
        case kResetAllOnes:
          mask[r] = 1;
          break;
        case kResetSelf:
          mask[r] = r == my_rank;
          break;
        default: {
          // Rank r of the group is worker r (16-group) or the worker with that EP rank in this TP slice.
          const int worker = big ? static_cast<int>(r) : static_cast<int>(set->topology.TpRank(a.g) * group_size + r);
          mask[r] = worker < kMaxRanks && std::find(ranks.begin(), ranks.end(), worker) != ranks.end();
        }
      }
    }
    if (mode == kResetLonger) mask.push_back(1);
    if (mode == kResetInt64) {
      std::vector<uint8_t> wide(mask.size() * 8);
      for (size_t i = 0; i < mask.size(); ++i) {
        const int64_t v = mask[i];
        std::memcpy(&wide[i * 8], &v, 8);
      }
      c.Input(kSlotElastic, "elasticInfo", kInt64, {static_cast<int64_t>(mask.size())}, Bytes(wide));
    } else if (mode == kReset2d) {
      c.Input(kSlotElastic, "elasticInfo", kInt32, {static_cast<int64_t>(mask.size()), 1}, Bytes(Int32Bytes(mask)));
    } else {
      c.Input(kSlotElastic, "elasticInfo", kInt32, {static_cast<int64_t>(mask.size())}, Bytes(Int32Bytes(mask)));
    }
    uint64_t ws = 0;
    c.phase_one = aclnnMoeDistributeBufferResetGetWorkspaceSize(
        c.Arg(kSlotElastic), a.group_ep_arg(), static_cast<int32_t>(a.ep_world_size),
        static_cast<int32_t>(op.Get(kNeedSync, a.g, 1)), &ws, &c.executor);
    Note(a.g, "BufferResetGetWorkspaceSize", c.phase_one);
  };
  const bool unequal = Collective(Kind::kReset, op, calls, ranks, workers, phase_one);
  // Any failed reset may leave flags half cleared: make the group again rather than guess.
  bool failed = false;
  for (int g : ranks) failed = failed || (calls[g]->phase_two >= 0 && calls[g]->synchronized != ACL_SUCCESS);
  if (unequal || failed) {
    if (big) {
      comms.DropReset16();
    } else {
      comms.Drop(topology);
    }
  }
}

void RunEnv(const Op& op) { ApplyEnvKnobs(op, kKnobs, kKnobKeys); }

void RunJoin(const Op& op) {
  const uint32_t n_ranks = static_cast<uint32_t>(op.Get(kJoinRanks, 2));
  const int joiners = static_cast<int>(static_cast<uint64_t>(op.Get(kJoiners, std::min<uint32_t>(n_ranks, 4))) % 5);
  const int root_mode = op.Pick(kJoinRoot, kRootGood, 6);
  Rng rng(Mix(static_cast<uint64_t>(op.Get(kSeed, 0)), 9, 5));
  HcclRootInfo root;
  if (HcclGetRootInfo(&root) != HCCL_SUCCESS) Die("harness: HcclGetRootInfo failed");
  switch (root_mode) {
    case kRootRandomBytes:
      for (char& ch : root.internal) ch = static_cast<char>(rng.Next());
      break;
    case kRootMagicOnly:
      root.internal[std::min<size_t>(std::strlen(root.internal), 20)] = '\0';  // "moe_ep-hccl-root-v1:"
      break;
    case kRootZeros:
      std::memset(root.internal, 0, sizeof(root.internal));
      break;
    case kRootUnterminated:
      std::memset(root.internal + std::strlen(root.internal), 'a', sizeof(root.internal) - std::strlen(root.internal));
      break;
    default:
      break;
  }
  Watchdog::Get().Doing("HcclCommInitRootInfo: nRanks %u, %d joiners, root mode %d", n_ranks, joiners, root_mode);
  // Plain threads, not the workers: a joiner may share a device with another, or have none.
  std::vector<std::thread> threads;
  for (int j = 0; j < joiners; ++j) {
    threads.emplace_back([&, j] {
      const int64_t device = op.Get(kJoinDevice, j, j);
      if (device != -2) aclrtSetDevice(static_cast<int32_t>(device));
      TakeErrMsg();
      HcclRootInfo mine = root;
      if (root_mode == kRootPerJoiner && HcclGetRootInfo(&mine) != HCCL_SUCCESS) Die("harness: HcclGetRootInfo");
      HcclComm comm = nullptr;
      const uint32_t rank = static_cast<uint32_t>(op.Get(kJoinRank, j, j));
      const HcclResult joined = HcclCommInitRootInfo(n_ranks, &mine, rank, &comm);
      Note(j, "HcclCommInitRootInfo", joined);
      if (joined != HCCL_SUCCESS) return;
      uint32_t id = 0, size = 0;
      char name[COMM_NAME_MAX_LENGTH];
      if (HcclGetRankId(comm, &id) != HCCL_SUCCESS || HcclGetRankSize(comm, &size) != HCCL_SUCCESS ||
          HcclGetCommName(comm, name) != HCCL_SUCCESS) {
        Die("contract: a communicator HcclCommInitRootInfo returned is not usable: %s", TakeErrMsg().c_str());
      }
      if (id != rank || size != n_ranks)
        Die("contract: joined as rank %u of %u, reports %u of %u", rank, n_ranks, id, size);
      if (HcclCommDestroy(comm) != HCCL_SUCCESS) Die("contract: HcclCommDestroy of a live communicator failed");
      if (HcclCommDestroy(comm) == HCCL_SUCCESS) Die("contract: HcclCommDestroy succeeded twice on one communicator");
      TakeErrMsg();
    });
  }
  for (auto& t : threads) t.join();
}

void RunTensor(const Op& op) {
  const uint64_t ndim = static_cast<uint64_t>(op.Get(kTensorDims, 2)) % 9;
  int64_t dims[8], strides[8];
  for (int d = 0; d < 8; ++d) dims[d] = d < 4 ? op.Get(kTensorDim0 + d, 4) : 1;
  int64_t running = 1;
  for (int d = static_cast<int>(ndim); d-- > 0;) {
    strides[d] = d < 4 ? op.Get(kTensorStride0 + d, running) : running;
    running = static_cast<int64_t>(Clamp(__int128(running) * std::max<int64_t>(dims[d], 1), 0, INT64_MAX));
  }
  const int64_t offset = op.Get(kTensorOffset, 0);
  const int32_t dtype = static_cast<int32_t>(op.Get(kTensorDtype, kBf16));
  const int32_t format = static_cast<int32_t>(op.Get(kTensorFormat, kFormatNd));
  // What the view reaches (no overflow); the storage declared is what the harness really allocates, or none.
  __int128 reach = offset;
  for (uint64_t d = 0; d < ndim; ++d) {
    reach = std::min<__int128>(reach + __int128(std::max<int64_t>(dims[d] - 1, 0)) * strides[d], __int128{1} << 100);
  }
  const int64_t storage = op.Get(kTensorStorage, 0, Clamp(reach + 1, 0, INT64_MAX));
  (void)aclDataTypeSize(AsDtype(dtype));  // a C caller may ask about any int
  const size_t elem = ElementBytes(dtype);
  const bool backed = storage >= 0 && __int128(storage) * elem <= kMaxTensorBytes;
  std::vector<uint8_t> memory(backed ? std::max<size_t>(storage * elem, 1) : 0, 0x5A);
  const int64_t storage_dims[1] = {storage};
  Watchdog::Get().Doing("aclCreateTensor with %llu dims", static_cast<unsigned long long>(ndim));
  aclTensor* t = aclCreateTensor(dims, ndim, AsDtype(dtype), strides, offset, AsFormat(format), storage_dims, 1,
                                 backed ? memory.data() : nullptr);
  Note(-1, "aclCreateTensor", t == nullptr);
  if (t != nullptr) {
    int64_t* view = nullptr;
    uint64_t n = 0;
    if (aclGetViewShape(t, &view, &n) != ACLNN_SUCCESS || n != ndim) Die("contract: aclGetViewShape of a live tensor");
    delete[] view;
    aclDataType got_dtype;
    aclFormat got_format;
    if (aclGetDataType(t, &got_dtype) != ACLNN_SUCCESS || aclGetFormat(t, &got_format) != ACLNN_SUCCESS) {
      Die("contract: aclGetDataType / aclGetFormat of a live tensor failed");
    }
    if (aclDestroyTensor(t) != ACLNN_SUCCESS) Die("contract: aclDestroyTensor of a live tensor failed");
    if (aclDestroyTensor(t) == ACLNN_SUCCESS) Die("contract: aclDestroyTensor succeeded twice on one tensor");
    view = nullptr;
    if (aclGetViewShape(t, &view, &n) == ACLNN_SUCCESS) Die("contract: aclGetViewShape of a destroyed tensor worked");
    TakeErrMsg();
  }
  // The runtime's memory calls: a fuzzed size, then copies and fills whose count may exceed it (never destMax,
  // which is the truth: lying about it would be the caller's overflow, not the library's).
  // Sizes between 64 MiB and the emulation's 1 TiB limit are skipped: the library would rightly allocate them,
  // and libFuzzer's malloc limit would call that an out-of-memory crash of the caller's making.
  const int64_t size = op.Get(kMallocSize, 64);
  const uint64_t usize = static_cast<uint64_t>(size);
  void* device = nullptr;
  const bool affordable = usize <= static_cast<uint64_t>(kMaxTensorBytes) || usize > (uint64_t{1} << 40);
  if (affordable && aclrtMalloc(&device, static_cast<size_t>(size), ACL_MEM_MALLOC_HUGE_FIRST) == ACL_SUCCESS) {
    if (usize > static_cast<uint64_t>(kMaxTensorBytes)) {
      Die("contract: aclrtMalloc of %llu bytes (over its 1 TiB limit) succeeded",
          static_cast<unsigned long long>(usize));
    } else {
      std::vector<uint8_t> host(static_cast<size_t>(size), 0x3C);
      const size_t count = static_cast<size_t>(op.Get(kCopyCount, size));
      aclrtMemcpyKind kind;
      const int32_t raw_kind = static_cast<int32_t>(op.Get(kCopyKind, 1));
      std::memcpy(&kind, &raw_kind, sizeof(kind));
      aclrtMemcpy(device, static_cast<size_t>(size), host.data(), count, kind);
      aclrtMemcpy(host.data(), host.size(), device, count, kind);
      aclrtMemset(device, static_cast<size_t>(size), 0x11, count);
      if (aclrtFree(device) != ACL_SUCCESS) Die("contract: aclrtFree of live memory failed");
      if (aclrtFree(device) == ACL_SUCCESS) Die("contract: aclrtFree succeeded twice on one pointer");
    }
  }
  TakeErrMsg();
}

void Setup() {
  static const bool ready = [] {
    RestoreHarnessEnvironment(kKnobs);
    const aclError e = aclInit(nullptr);
    if (e != ACL_SUCCESS && e != ACL_ERROR_REPEAT_INITIALIZE) Die("harness: aclInit returned %d", e);
    Workers();
    Watchdog::Get();
    return true;
  }();
  (void)ready;
}

}  // namespace
}  // namespace moe_ep_fuzz::capi

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moe_ep_fuzz;
  using namespace moe_ep_fuzz::capi;
  Setup();
  WatchdogScope watchdog;
  RestoreHarnessEnvironment(kKnobs);
  RunOps(data, size, kOpcodeCount, kOpNames, [&](const Op& op) {
    switch (op.opcode) {
      case kRound:
      case kDispatch:
      case kCombine:
        RunMoe(op);
        break;
      case kReset:
        RunReset(op);
        break;
      case kEnv:
        RunEnv(op);
        break;
      case kJoin:
        RunJoin(op);
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
