// Helpers for the C API tests: aclInit once, scoped environment variables, poisoned aclTensors over
// aclrtMalloc memory (contiguous or strided), HCCL communicator sets for EP x TP jobs, and a scenario
// runner that drives dispatch + combine through the CANN-compatible C API only and compares every
// output element bit for bit with tests/reference/.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "acl/acl.h"
#include "aclnn/aclnn_base.h"
#include "aclnnop/aclnn_moe_distribute_buffer_reset.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v3.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"
#include "hccl/hccl.h"
#include "verify/scenario.h"

namespace moe_ep::capi_testing {

using moe_ep::verify::InputLayout;
using moe_ep::verify::ScenarioInputs;
using moe_ep::verify::ScenarioSpec;

/// Poison byte of every output buffer (and of the rows of inputs past the defined ones).
inline constexpr uint8_t kPoison = 0xA7;

/// Compares the first `defined` elements (of `elem` bytes) of `got` (from byte `got_offset`, at most `got_elems`) with
/// `expected` byte for byte; every later element must still be poison. Returns "" or a description of the first
/// difference. `nans`: combine's results, where two NaNs are equal (moe_ep::verify::Nans).
std::string CompareElements(const std::string& what, const void* expected, size_t defined, size_t elem,
                            const std::vector<uint8_t>& got, size_t got_offset = 0, size_t got_elems = SIZE_MAX,
                            moe_ep::verify::Nans nans = moe_ep::verify::Nans::kBits);
/// Padding byte of strided input storage (never part of a view).
inline constexpr uint8_t kPadding = 0xA5;
/// The workspace size phase one reports: 16 MiB, the least CANN's tiling asks for (moe_ep uses none of it).
inline constexpr uint64_t kWorkspaceBytes = uint64_t{16} << 20;

/// aclInit once per process (and aclFinalize at exit); MOE_EP_TIMEOUT_MS defaults to 20 s in these
/// tests so that a hang becomes a failure, unless the caller set it.
void EnsureAclReady();

/// The calling thread's recent error message ("" when none); reading clears it.
std::string RecentErrMsg();

/// `name` appears in `msg` as a whole identifier, optionally followed by "Out" or "Optional".
bool NamesParam(const std::string& msg, const std::string& name);
/// Case-insensitive; a number must not be part of a longer number; "a|b" accepts either.
bool ContainsValue(const std::string& msg, const std::string& value);
/// "rank N" with no digit after it.
bool NamesRank(const std::string& msg, int rank);

/// Sets (value != nullptr) or unsets an environment variable for the scope, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

/// A size line of /proc/self/status in bytes, e.g. "VmRSS" or "VmSize" (-1 when missing).
int64_t ProcStatusBytes(const char* key);

/// An aclTensor over its own aclrtMalloc storage. Contiguous tensors are poisoned unless given data.
class Tensor {
 public:
  Tensor() = default;
  /// Contiguous (row-major) tensor; `data` (dense, numel elements) or poison when null.
  Tensor(aclDataType dtype, std::vector<int64_t> dims, const void* data = nullptr, aclFormat format = ACL_FORMAT_ND);
  /// A 2-D view in the given layout over larger storage (padded rows or every other column, with an
  /// element offset), holding the dense `data`; storage outside the view holds kPadding.
  static Tensor Strided(aclDataType dtype, int64_t rows, int64_t cols, const void* data, InputLayout layout);
  /// Any view: strides and offset in elements over `storage_elems` elements of storage (poisoned).
  static Tensor View(aclDataType dtype, std::vector<int64_t> dims, std::vector<int64_t> strides, int64_t offset,
                     int64_t storage_elems, aclFormat format = ACL_FORMAT_ND);
  /// An output: contiguous, or with `gapped` laid out as verify::GappedStrides says (a poisoned gap after
  /// every row), which Elements() gathers back.
  static Tensor Output(aclDataType dtype, std::vector<int64_t> dims, bool gapped);
  ~Tensor();
  Tensor(Tensor&& other) noexcept;
  Tensor& operator=(Tensor&& other) noexcept;

  aclTensor* get() const { return tensor_; }
  void* data() const { return data_; }
  size_t storage_bytes() const { return bytes_; }
  /// The whole storage, copied out with aclrtMemcpy.
  std::vector<uint8_t> Bytes() const;
  /// The whole storage as elements of T (contiguous tensors: exactly the elements).
  template <typename T>
  std::vector<T> Read() const {
    const std::vector<uint8_t> b = Bytes();
    std::vector<T> out(b.size() / sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), b.data(), out.size() * sizeof(T));
    return out;
  }
  /// The elements row-major: the storage of a contiguous tensor, the gathered view of a gapped Output (a gap
  /// element that no longer holds kPoison is named in `*gap_error`).
  std::vector<uint8_t> Elements(std::string* gap_error) const;
  /// True when every storage byte still holds `byte`.
  bool AllBytesAre(uint8_t byte) const;
  void Fill(uint8_t byte);

 private:
  void Release();
  aclTensor* tensor_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  std::vector<int64_t> gapped_dims_;  // a gapped Output's shape
  size_t elem_ = 0;                   // and its element size
};

/// Creates one HCCL group with HcclCommInitAll; comm i on devices[i]. Fails the test on error.
std::vector<HcclComm> CreateGroup(std::vector<int32_t> devices);
std::string CommName(HcclComm comm);

/// The communicators of an EP x TP job: EP group t = ranks with tp rank t, TP group e = the pair of EP
/// rank e. The rank (ep, tp) lives on device ep * tp_size + tp (the seeds' sample layout).
class Comms {
 public:
  Comms(int ep_size, int tp_size);
  /// One rank's communicators made by the caller (say, over MPI in a process per rank): ep(tp_rank, ep_rank)
  /// and tp(ep_rank, tp_rank) are `ep` and `tp` (null with tp_size 1); the other ranks' are null. Not owned.
  Comms(int ep_size, int tp_size, int ep_rank, int tp_rank, HcclComm ep, HcclComm tp);
  ~Comms();
  Comms(const Comms&) = delete;
  Comms& operator=(const Comms&) = delete;
  int ep_size() const { return ep_size_; }
  int tp_size() const { return tp_size_; }
  int Device(int ep_rank, int tp_rank) const { return ep_rank * tp_size_ + tp_rank; }
  HcclComm ep(int tp_rank, int ep_rank) const { return ep_[tp_rank][ep_rank]; }
  HcclComm tp(int ep_rank, int tp_rank) const { return tp_size_ == 2 ? tp_[ep_rank][tp_rank] : nullptr; }

 private:
  int ep_size_, tp_size_;
  bool owned_ = true;
  std::vector<std::vector<HcclComm>> ep_, tp_;
};

/// How a scenario drives the C API beyond the spec itself.
struct CapiCase {
  ScenarioSpec spec;                   // config.zero/copy/const_expert_num > 0 need use_v3
  bool use_v3 = false;                 // DispatchV3 + CombineV3 (with AddRmsNorm: CombineAddRmsNormV2)
  int no_tp_attr = 0;                  // tpWorldSize passed without TP: 0 or 1 (tpRecvCounts then has that length)
  bool default_shared_num = false;     // pass sharedExpertNum 1 with S == 0 (silently 0)
  bool pass_a2_params = false;         // dispatch expertScalesOptional and expandScalesOut (ignored on A3)
  bool null_comm_alg = false;          // commAlg nullptr instead of ""
  bool shared_x_3d = false;            // sharedExpertX as (Bs, 1, H)
  bool pass_zero_ori_x = false;        // oriX given although only zero experts exist
  int64_t group_list_type = 0;         // combine groupListType (not checked)
  bool strict_tp_recv_counts = false;  // also check tpRecvCounts stays poisoned with tpWorldSize 1
  // Atlas A2 quantizes exactly when expandXOut is int8 (config.quant_mode 2): the quantMode attribute passed when it
  // says otherwise, or -1 to pass config.quant_mode.
  int a2_quant_mode_attr = -1;
};
std::string Describe(const CapiCase& c);

/// The DispatchV2 seed sample's configuration: EP 8 x TP 2, one shared expert rank, 7 MoE experts,
/// K 3, H 7168, Bs 8, globalBs = Bs * E, groupListType 1, the A2-only parameters passed.
CapiCase SeedSampleCase();

/// Draws V3 routing over [0, moe + zero + copy + const) for every rank (K distinct ids per token) and
/// the special-expert combine inputs (oriX, alpha1/2, V); masks stay as drawn.
void RouteSpecialExperts(const CapiCase& c, std::mt19937_64& rng, ScenarioInputs& inputs);

enum class Launch {
  kThreadPerRank,          // each rank thread: aclrtSetDevice
  kThreadPerRankContexts,  // contexts made by the main thread, aclrtSetCurrentContext in each rank thread
  kSingleThread,           // one thread launches every rank (switching contexts), then syncs all streams
};

struct CapiRunOptions {
  Launch launch = Launch::kThreadPerRank;
  bool two_streams = false;  // dispatch and combine on separate streams of each rank
  int32_t sync_timeout_ms = 30000;
};

/// Runs dispatch + combine of one scenario through the C API on `comms` (created for the case when
/// null) and compares with the reference; returns "" or the first failure.
std::string RunCapiCase(const CapiCase& c, ScenarioInputs& inputs, const CapiRunOptions& options,
                        const Comms* comms = nullptr);

// ---------------------------------------------------------------------------------------------------
// Ranks whose communicators the caller made (root info, other processes, elastic survivors)
// ---------------------------------------------------------------------------------------------------

/// Every rank's reference outputs for a scenario (combine: CombineAddRmsNorm's with spec.add_rms_norm);
/// fills inputs.combine[*].expert_out first (from the reference dispatch), so compute it once per round
/// before any rank runs.
struct CapiExpected {
  std::vector<moe_ref::DispatchOut> dispatch;
  std::vector<moe_ref::CombineOut> combine;
};
CapiExpected ExpectedOutputs(const CapiCase& c, ScenarioInputs& inputs);

/// One rank (ep_rank, tp_rank) of any case RunCapiCase runs (EP x TP, AddRmsNorm, every CapiCase option),
/// with the communicators the caller made (`tp` null without TP), on the calling thread's current device:
/// dispatch + combine on its own stream(s), outputs poisoned, then compared bit for bit with expected's
/// entry of global rank tp_rank * E + ep_rank (the index of `inputs`). Returns "" or the first failure.
std::string RunCapiCaseRank(const CapiCase& c, const ScenarioInputs& inputs, const CapiExpected& expected, int ep_rank,
                            int tp_rank, HcclComm ep, HcclComm tp, const CapiRunOptions& options = {});

/// A survivor of a scaled-down job (V3 elasticInfo, docs/semantics.md 2.8): the operators get the group's original
/// attributes and this table, and every output buffer is sized for the original configuration.
struct CapiElastic {
  moe_ref::Config original;           // epWorldSize, moeExpertNum, sharedExpertRankNum, globalBs: as created
  int original_rank = 0;              // epRankId passed to the operators
  std::vector<int32_t> elastic_info;  // 4 + 2E entries
};

/// The scale-down table for the ranks marked 1 in `alive` (they keep their order and their roles; ranks
/// [0, S) of `original` are the shared-expert ranks): [1, newE, newS, L * (newE - newS), Table1, Table2].
std::vector<int32_t> ScaleDownTable(const moe_ref::Config& original, const std::vector<int32_t>& alive);

/// The token of a root info (hccl.h: it names the group's shared-memory segments, "/moe_ep.<token>.*"):
/// the hex digits after the first ':' of its text; "" when there are none.
std::string RootInfoToken(const HcclRootInfo& root);

/// How one rank's run went: the first C API call that failed (its status and aclGetRecentErrMsg), or the
/// first difference from the reference.
struct CapiRankOutcome {
  std::string failed_call;  // "" when every call succeeded
  int32_t status = 0;       // that call's status
  std::string message;      // aclGetRecentErrMsg() after it
  std::string mismatch;     // "" when the outputs equal the reference (not compared after a failed call)
  /// "" when all is well, else a one-line description.
  std::string Summary() const;
};

/// One rank's dispatch + combine of `c` (EP only: no TP, no AddRmsNorm; V2 or V3 per c.use_v3) through the
/// C API, on the calling thread's current device, on its own stream, with `ep`'s group; outputs poisoned,
/// then compared bit for bit with expected.{dispatch,combine}[rank]. `rank` indexes `inputs` and
/// `expected` (the EP rank of `c`); with `elastic` it is the survivor's new rank, `c` describes the
/// scaled-down job and the call uses elastic's original attributes, rank and table.
CapiRankOutcome RunCapiRank(const CapiCase& c, const ScenarioInputs& inputs, int rank, HcclComm ep,
                            const CapiExpected& expected, const CapiElastic* elastic = nullptr,
                            int32_t sync_timeout_ms = 30000);

/// Every rank of `c` on its own thread: rank i sets devices[i] current and runs RunCapiRank with comms[i]
/// (and (*elastic)[i] when given). Computes the reference first. Returns each rank's outcome.
std::vector<CapiRankOutcome> RunCapiRanks(const CapiCase& c, ScenarioInputs& inputs, const std::vector<HcclComm>& comms,
                                          const std::vector<int32_t>& devices,
                                          const std::vector<CapiElastic>* elastic = nullptr);

}  // namespace moe_ep::capi_testing
