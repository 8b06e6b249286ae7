// A scenario: one random MoE configuration with every rank's inputs, run through the native API on
// in-process ranks (outputs poisoned first) and compared bit for bit with tests/reference/.
// Used by the property tests and by the `moe-ep run` job; it needs no test framework.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "moe_ep/group.h"
#include "moe_ep/ops.h"
#include "reference/reference.h"

namespace moe_ep::verify {

/// How x is laid out in memory (the operators must read non-contiguous inputs).
enum class InputLayout { kContiguous, kPaddedRows, kStridedColumns };

struct ScenarioSpec {
  moe_ref::Config config;
  moe_ref::MaskKind mask = moe_ref::MaskKind::kNone;
  bool unequal_bs = false;            // ranks draw different Bs (needs global_bs)
  int64_t bs = 1;                     // Bs (the maximum when unequal_bs)
  bool smooth_scales = false;         // with quant_mode 2
  bool smooth_on_even_ranks = false;  // with smooth_scales: only ranks of even g pass them (each rank decides alone)
  bool shared_expert_x = false;
  bool add_rms_norm = false;
  InputLayout layout = InputLayout::kContiguous;
  bool strided_outputs = false;  // outputs with a poisoned gap after each row (1-D: after each element)
  bool special_values = false;   // some rows of x all zero, some with infinities, NaNs, subnormals, the largest floats
};

/// Draws a random spec within the given bounds (ranks <= max_ranks, hidden <= max_hidden, bs <= max_bs).
ScenarioSpec RandomSpec(std::mt19937_64& rng, int max_ranks, int64_t max_hidden, int64_t max_bs);
/// One-line description for logs and failure messages.
std::string Describe(const ScenarioSpec& spec);
/// A spec of routed experts alone: `ranks` ranks, `experts` MoE experts, top-`top_k` of them, hidden size `hidden`,
/// `bs` tokens a rank; every other field as ScenarioSpec has it (bf16, no TP, no shared or special experts, no mask).
ScenarioSpec RoutedSpec(int ranks, int experts, int top_k, int hidden, int64_t bs);

/// The job of the ranks marked 1 in `survivors` once `spec`'s group scales down to them (docs/semantics.md 2.8): they
/// keep their order and roles (ranks [0, S) of `spec` host the shared experts, every MoE rank keeps its experts), so E,
/// S and moe_expert_num shrink with them. MakeInputs draws its inputs for the survivors, by their new ranks.
ScenarioSpec ScaledDown(const ScenarioSpec& spec, const std::vector<int32_t>& survivors);
/// Original rank `rank`'s number among the survivors (-1 when it is none).
int SurvivorRank(const std::vector<int32_t>& survivors, int rank);
/// Expert ids drawn for a scaled-down job (`scaled`, the survivors' numbering) as the operations of the group as made
/// (`original`) take them: the special experts keep their ids from the group's moeExpertNum (docs/semantics.md 2.8).
std::vector<int32_t> GroupExpertIds(const std::vector<int32_t>& ids, const moe_ref::Config& scaled,
                                    const moe_ref::Config& original);

/// Every rank's inputs for a spec, drawn from `rng`. Ranks are numbered g = tp_rank * E + ep_rank.
struct ScenarioInputs {
  std::vector<moe_ref::RankInput> dispatch;
  std::vector<moe_ref::CombineInput> combine;  // expert_out is filled by FillExpertOutputs
};
ScenarioInputs MakeInputs(const ScenarioSpec& spec, std::mt19937_64& rng);

/// A const expert's coefficient as raw bf16 / fp16 bits: magnitudes 2^-14 .. 2^-7, either sign, so that a dot
/// product with a token of random inputs stays near 1 and its softmax is seldom saturated (every step shows).
uint16_t RandomCoefficientHalf(std::mt19937_64& rng, moe_ref::DType dtype);
/// Routes fresh expert ids and masks into existing inputs, and draws every token again as MakeInputs does (new round,
/// same shapes): no two rounds share an x, so a row read from the other parity's stage or an earlier round's shows
/// up.
void RerouteInputs(const ScenarioSpec& spec, std::mt19937_64& rng, ScenarioInputs& inputs);
/// Expert outputs: row i of each rank = a known function of its dispatched row and local expert
/// (so a misrouted row is visible), from the reference's dispatch result.
void FillExpertOutputs(const ScenarioSpec& spec, const std::vector<moe_ref::DispatchOut>& expected,
                       ScenarioInputs& inputs);

/// What each rank produced, copied out of its (poisoned) buffers, whole, so untouched rows can be checked.
struct RankResult {
  std::vector<uint8_t> expand_x;      // whole buffer
  std::vector<float> dynamic_scales;  // whole buffer
  std::vector<int32_t> assist_info;   // whole buffer
  std::vector<int64_t> expert_token_nums;
  std::vector<int32_t> ep_recv_counts;
  std::vector<int32_t> tp_recv_counts;
  std::vector<uint16_t> x, y;  // combine outputs (whole)
  std::vector<float> rstd;
  std::string written_outside;  // with strided outputs: the first gap element written, if any
};

/// How an output's elements compare with the reference's: bit for bit, or, for combine's results, bit for bit except
/// that any two NaNs of the format are equal (docs/numerics.md: which NaN an add or a multiply of NaNs and
/// infinities gives differs between instruction sets; only that it is NaN is decided).
enum class Nans { kBits, kFp16, kBf16, kFp32 };
/// The rule for a half output of this configuration's dtype.
Nans HalfNans(const moe_ref::Config& c);
/// Whether the elements at a and b (of the rule's width) are equal under the rule.
bool SameUnder(Nans nans, const void* a, const void* b, size_t bytes);

/// With ScenarioSpec::strided_outputs, an output of `shape` is laid out with a gap of 3 elements after each row
/// (1-D: one after each element), filled with kPoisonByte: its strides, and the elements of storage it needs.
std::vector<int64_t> GappedStrides(const std::vector<int64_t>& shape);
int64_t GappedStorageElements(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides);
/// Copies a gapped output's elements (of `elem` bytes), row-major, from `storage` into `dense`; returns "" or
/// names the first gap element that no longer holds kPoisonByte.
std::string GatherGapped(const std::vector<uint8_t>& storage, const std::vector<int64_t>& shape,
                         const std::vector<int64_t>& strides, size_t elem, void* dense);

/// One rank's groups in a scenario: its EP group and, with TP 2, its TP pair.
struct RankGroups {
  Group ep;
  std::optional<Group> tp;
};
/// How a scenario's groups are made, i.e. over which transport it runs. Called once per scenario with
/// E, the TP size and the options; returns join(g), which the runner calls on rank g's own thread for
/// every rank at once (g = tp_rank * E + ep_rank), so transports whose joins are collective join there.
using GroupMaker =
    std::function<std::function<RankGroups(int g)>(int ep_size, int tp_size, const GroupOptions& options)>;
/// Thread groups (CreateThreadGroups): the default.
GroupMaker ThreadGroupMaker();
/// Shared-memory groups (JoinProcessGroup over a fresh job token per scenario), every rank a thread of
/// this process: EP groups of the members {t*E .. t*E+E-1}, then TP pairs {e, e+E}.
GroupMaker ShmGroupMaker();

struct RunOptions {
  int rounds = 1;                        // dispatch + combine rounds with fresh routing each round
  uint64_t window_bytes = 0;             // 0: default
  uint64_t seed = 0;                     // for rerouting between rounds
  std::chrono::milliseconds timeout{0};  // the groups' deadline; 0: default
  GroupMaker groups;                     // the transport; empty: ThreadGroupMaker()
  DataPath data_path = DataPath::kAuto;  // the groups' GroupOptions::data_path
  bool peer_visible = false;             // x and expert outputs in the shared heap (RunScenarioRank)
  int threads = 0;                       // the groups' GroupOptions::threads (0: MOE_EP_THREADS or the cores)
  std::function<void()> on_rank_thread;  // run first on each rank's thread, as it joins and in every round
};

/// One rank's dispatch + combine on its own groups (any transport), outputs poisoned first. `rank` is
/// the global rank g = tp_rank * E + ep_rank; combine's expert outputs come from inputs.combine[rank].
/// With `elastic`, the rank runs as a survivor: `spec` and `inputs` describe the scaled-down job (rank =
/// the new rank), `elastic->original` the group's original configuration (it sizes the buffers) and
/// `elastic->survivors` the 0/1 mask over the original ranks passed to the operations.
struct ElasticRun {
  moe_ref::Config original;
  std::vector<int32_t> survivors;
};
/// With `peer_visible`, x and the expert outputs live in the shared heap (Tensor::PeerVisible), where
/// ranks that are processes read them in place (the pull data path); else in ordinary memory.
RankResult RunScenarioRank(const ScenarioSpec& spec, const ScenarioInputs& inputs, int rank, Group& ep, Group* tp,
                           const ElasticRun* elastic = nullptr, bool peer_visible = false);

/// RunScenarioRank's two calls one at a time (it is Dispatch() then Combine()), for tests that run them out of pairs: a
/// dispatch alone, a combine again, a handle altered in between. Every call poisons its outputs first; Result() holds
/// the last dispatch's and the last combine's, for CompareScenarioRank (with an empty CombineOut it compares dispatch's
/// alone). `spec`, `inputs` and the groups must outlive it.
class RankCalls {
 public:
  RankCalls(const ScenarioSpec& spec, const ScenarioInputs& inputs, int rank, Group& ep, Group* tp,
            const ElasticRun* elastic = nullptr, bool peer_visible = false);
  ~RankCalls();
  RankCalls(const RankCalls&) = delete;
  RankCalls& operator=(const RankCalls&) = delete;
  /// DispatchInto inputs.dispatch[rank] (x laid out as the spec says); x is overwritten (0xFF) as soon as the call
  /// returns, as its caller may. The handle is the caller's to alter before Combine().
  DispatchHandle& Dispatch();
  /// CombineInto (CombineAddRmsNormInto with spec.add_rms_norm) with the last Dispatch()'s handle and
  /// inputs.combine[rank]'s expert outputs, which are overwritten as soon as the call returns.
  void Combine();
  /// The outputs of the last calls (strided outputs gathered, and any gap element written named).
  RankResult& Result();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// Compares one rank's outputs with the reference's, bit for bit, and that nothing past them was
/// written; "" when they agree, else the first difference.
std::string CompareScenarioRank(const ScenarioSpec& spec, int rank, const moe_ref::DispatchOut& expected,
                                const moe_ref::CombineOut& expected_combine, const RankResult& result);

/// The reference's outputs of a round: dispatch's, then combine's (CombineAddRmsNorm's with spec.add_rms_norm) of the
/// expert outputs FillExpertOutputs makes from dispatch's (written into inputs.combine[*].expert_out first).
struct Expected {
  std::vector<moe_ref::DispatchOut> dispatch;
  std::vector<moe_ref::CombineOut> combine;
};
Expected ExpectedRound(const ScenarioSpec& spec, ScenarioInputs& inputs);

/// One round of a random configuration for every rank of `ep` (E = ep.size()) and, with `tp`, of the TP pairs (`rank`
/// is then g = tp rank * E + ep rank), drawn from `seed`, so that each rank, calling this with the same seed, draws
/// the same: this rank's outputs (poisoned first) compared with the reference's. "" when they agree, else the first
/// difference with the seed and the configuration.
std::string RandomRoundOnRank(Group& ep, Group* tp, int rank, uint64_t seed);

/// Runs the scenario on in-process ranks (threads; groups from options.groups); returns "" on success or
/// a description of the first mismatch.
std::string RunAndCompare(const ScenarioSpec& spec, ScenarioInputs& inputs, const RunOptions& options);

/// The byte patterns outputs are poisoned with before each run.
inline constexpr uint8_t kPoisonByte = 0xA7;

/// `n` elements that all hold kPoisonByte in every byte: an output before its call.
template <typename T>
std::vector<T> Poisoned(int64_t n) {
  std::vector<T> v(n);
  if (n > 0) std::memset(v.data(), kPoisonByte, n * sizeof(T));
  return v;
}

}  // namespace moe_ep::verify
