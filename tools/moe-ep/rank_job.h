// One rank's part of a timed job (`moe-ep run`, `moe-ep bench`): its buffers, dispatch, combine, a barrier of
// the transport, and the memcpy of the same bytes that each operation is measured against.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "moe-ep/rank_times.h"
#include "moe-ep/run_job.h"
#include "moe_ep/ops.h"
#include "verify/scenario.h"

namespace moe_ep::tools {

/// The scenario `moe-ep run` runs for these options.
verify::ScenarioSpec SpecOf(const JobOptions& o);

/// `seed`, or when it is 0 a fresh random one (printed by the caller, so the run can be replayed).
uint64_t SeedOr(uint64_t seed);

/// Bytes one received dispatch row carries: the token (int8 plus its fp32 scale when quantized).
int64_t DispatchRowBytes(const JobOptions& o);

/// Prints which data path each operation took on how many ranks, then the timings table: dispatch and combine
/// (SlowestRankMedians(times, one_clock)) next to a memcpy of the same bytes.
void PrintTimings(const JobOptions& o, std::span<const RankTimes> times, bool one_clock = true);

/// What one rank feeds its operations; expert_out may be empty (then the rank makes up finite values).
struct RankInputs {
  std::span<const uint16_t> x;           // (bs, hidden), bf16 or fp16 bits
  std::span<const int32_t> expert_ids;   // (bs, top_k)
  std::span<const float> expert_scales;  // (bs, top_k)
  std::span<const uint16_t> expert_out;  // (rows received, hidden), or empty
};

/// A tensor's memory and its view; touched only where written (see rank_job.cc).
struct UntouchedTensor {
  std::shared_ptr<std::byte> storage;
  TensorView view;
  void* data() const { return view.data; }
};

/// Rank `rank`'s inputs in a verified job's (expert outputs included once FillExpertOutputs ran).
RankInputs InputsOf(const verify::ScenarioInputs& in, int rank);

/// The verified job as one rank process sees it: every rank's inputs drawn from `seed` and what the
/// reference computes of them.
struct VerifiedJob {
  verify::ScenarioSpec spec;
  verify::ScenarioInputs inputs;
  std::vector<moe_ref::DispatchOut> expected;
  std::vector<moe_ref::CombineOut> expected_combine;
};
VerifiedJob MakeVerifiedJob(const JobOptions& o, uint64_t seed);
/// Runs one dispatch + combine of rank `rank` on `group` (x and expert outputs in the shared heap when
/// `peer_visible`, else in private memory; outputs poisoned first) and compares every output with the reference; ""
/// when equal, else the first difference.
std::string VerifyRank(const VerifiedJob& job, int rank, Group& group, bool peer_visible);

/// The timed operations of a round, in order (TimeRounds' ops).
enum TimedOp { kDispatch, kCombine, kMemcpyDispatch, kMemcpyCombine, kBarrier, kTimedOps };

class RankJob {
 public:
  /// Rank `rank` of `group` (its EP rank). x and the expert outputs are copied into the shared heap
  /// (Tensor::PeerVisible), so that rank processes of one host move them with one copy (the pull path).
  /// (Through the library's allocator: the shared heap moe-ep links in statically is another heap, whose
  /// memory the library's windows cannot name.)
  RankJob(const JobOptions& o, int rank, const RankInputs& in, Group& group);

  void Dispatch();
  void Combine();  // of the last Dispatch
  /// The baselines: a memcpy of the bytes this rank received in the last dispatch / sends back in combine.
  void CopyDispatchBytes();
  void CopyCombineBytes();
  /// One barrier round trip of the group's transport.
  void Barrier();
  /// Lines this rank up with the others right before a timed op (Time's `sync` for ranks of one host).
  void LineUp();
  /// Rows the last dispatch handed this rank.
  int64_t rows() const { return handle_.num_rows; }

  /// One warm-up dispatch + combine, then TimeRounds of the kTimedOps operations (with `barrier`: the
  /// barrier round trip too, else kTimedOps - 1 of them). `sync` lines up the ranks before each op.
  RankTimes Time(const std::function<void()>& sync, bool barrier);

 private:
  const JobOptions& o_;
  Group& group_;
  DispatchOptions dispatch_options_;
  CombineOptions combine_options_;
  std::span<const int32_t> expert_ids_;
  std::span<const float> expert_scales_;
  bool expert_out_given_;
  Tensor x_, expert_out_;  // Tensor::PeerVisible
  UntouchedTensor expand_x_, scales_, assist_, recv_, tp_recv_, token_nums_, x_out_;
  DispatchOutputs outs_;
  DispatchHandle handle_;
  std::vector<uint8_t> copy_to_;           // the memcpy baselines' destination, sized by the first dispatch
  std::span<const uint16_t> x_source_;     // what x_ is rewritten from before every timed dispatch
  std::vector<uint16_t> expert_out_rows_;  // what expert_out_'s rows are rewritten from before every timed combine
};

/// Runs RankJob::Time on `o.ranks` thread ranks of one group made with `group_options` (rank r fed inputs(r)),
/// RankJob::LineUp lining them up before every op (as process ranks); returns each rank's times.
std::vector<RankTimes> TimeThreadRanks(const JobOptions& o, const GroupOptions& group_options,
                                       const std::function<RankInputs(int)>& inputs, bool barrier);

}  // namespace moe_ep::tools
