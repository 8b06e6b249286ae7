// One rank's part of a timed job: buffers sized as the CANN docs size them (touched only where rows land, so a
// large receive bound costs no memory), the two operations, a barrier, and the memcpy baselines.
#include "moe-ep/rank_job.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <random>
#include <thread>

#include "api/group_impl.h"
#include "base/entropy.h"
#include "base/env.h"

namespace moe_ep::tools {

using verify::ScenarioSpec;

ScenarioSpec SpecOf(const JobOptions& o) {
  ScenarioSpec s;
  auto& c = s.config;
  c.ep_world_size = o.ranks;
  c.moe_expert_num = static_cast<int>(o.experts);
  c.top_k = static_cast<int>(o.top_k);
  c.hidden = static_cast<int>(o.hidden);
  c.dtype = o.fp16 ? moe_ref::DType::kFp16 : moe_ref::DType::kBf16;
  c.quant_mode = o.quant_int8 ? 2 : 0;
  c.comm_quant_mode = o.comm_quant_int8 ? 2 : 0;
  if (o.shared_expert_ranks > 0) {
    c.shared_expert_num = 1;
    c.shared_expert_rank_num = static_cast<int>(o.shared_expert_ranks);
  }
  s.bs = o.bs;
  return s;
}

uint64_t SeedOr(uint64_t seed) { return seed ? seed : entropy::NonZero64(); }

int64_t DispatchRowBytes(const JobOptions& o) { return o.quant_int8 ? o.hidden + 4 : 2 * o.hidden; }

namespace {

void PrintRow(const char* name, double seconds, uint64_t bytes, double memcpy_seconds) {
  std::printf("  %-10s median %9.1f us   %7.2f GB/s   memcpy of the same bytes %9.1f us   ratio %.2fx\n", name,
              seconds * 1e6, bytes / seconds / 1e9, memcpy_seconds * 1e6, seconds / memcpy_seconds);
}

// From which size process ranks copy rows out of each other's private memory (MOE_EP_CROSS_MEMORY).
std::string ByCopyRule() {
  switch (env::CrossMemoryChoice()) {
    case env::CrossMemory::kOff:
      return "none by copy (MOE_EP_CROSS_MEMORY=0)";
    case env::CrossMemory::kOn:
      return "by copy from " + std::to_string(kPullMinBytes >> 10) + " KiB (MOE_EP_CROSS_MEMORY=1)";
    case env::CrossMemory::kAuto:
      break;
  }
  return "by copy from " + std::to_string(kCopyMinBytes >> 20) + " MiB where no Yama ptrace restriction is set";
}

}  // namespace

void PrintTimings(const JobOptions& o, std::span<const RankTimes> times, bool one_clock) {
  const std::vector<double> medians = SlowestRankMedians(times, one_clock);
  uint64_t rows = 0;
  int dispatch_pulled = 0, combine_pulled = 0, combine_senders = 0, dispatch_copied = 0, combine_copied = 0;
  for (const RankTimes& rank : times) {
    rows += rank.rows;
    dispatch_copied += rank.dispatch_copy_readers > 0 ? 1 : 0;
    combine_copied += rank.combine_copy_readers > 0 ? 1 : 0;
    dispatch_pulled += rank.dispatch_readers > 0 ? 1 : 0;
    combine_pulled += rank.combine_readers > 0 ? 1 : 0;
    combine_senders += rank.rows > 0 ? 1 : 0;  // a rank that received no rows gives none back
  }
  const uint64_t h = o.hidden;
  std::printf(
      "  data path: the rows of %d of %d ranks were pulled in dispatch (read in place by their receivers, or copied "
      "out of "
      "private memory: %d ranks), of %d of %d ranks with rows in combine (copied out: %d); the others' were pushed "
      "(%s)\n",
      dispatch_pulled, o.ranks, dispatch_copied, combine_pulled, combine_senders, combine_copied,
      env::DataPathChoice() == DataPath::kAuto ? ("by size: from " + std::to_string(kPullMinBytes >> 10) +
                                                  " KiB of rows per call where peers reach the tensors in place, " +
                                                  ByCopyRule() + "; MOE_EP_DATA_PATH=push|pull forces one")
                                                     .c_str()
                                               : "as MOE_EP_DATA_PATH forces");
  std::printf(
      "timings (medians of %d rounds after %d warm-up, a round %s; bytes = rows received x row bytes, all "
      "ranks):\n",
      o.repeats, o.warmup,
      one_clock ? "from the first rank's start to the last rank's end" : "the slowest rank's time");
  PrintRow("dispatch", medians[kDispatch], rows * DispatchRowBytes(o), medians[kMemcpyDispatch]);
  PrintRow("combine", medians[kCombine], rows * 2 * h, medians[kMemcpyCombine]);
}

RankInputs InputsOf(const verify::ScenarioInputs& in, int rank) {
  const auto& d = in.dispatch[rank];
  const auto& c = in.combine[rank];
  return {d.x, d.expert_ids, c.expert_scales, c.expert_out};
}

VerifiedJob MakeVerifiedJob(const JobOptions& o, uint64_t seed) {
  VerifiedJob job;
  job.spec = SpecOf(o);
  std::mt19937_64 rng(seed);
  job.inputs = verify::MakeInputs(job.spec, rng);
  job.expected = moe_ref::Dispatch(job.spec.config, job.inputs.dispatch);
  verify::FillExpertOutputs(job.spec, job.expected, job.inputs);
  job.expected_combine = moe_ref::Combine(job.spec.config, job.inputs.dispatch, job.inputs.combine);
  return job;
}

std::string VerifyRank(const VerifiedJob& job, int rank, Group& group, bool peer_visible) {
  const verify::RankResult result =
      verify::RunScenarioRank(job.spec, job.inputs, rank, group, nullptr, nullptr, peer_visible);
  return verify::CompareScenarioRank(job.spec, rank, job.expected[rank], job.expected_combine[rank], result);
}

// A tensor whose memory is not touched before it is written: the receive bound A is the worst case, and rows
// that never arrive should cost nothing.
UntouchedTensor Untouched(DType dtype, std::vector<int64_t> shape) {
  const TensorView shape_only(static_cast<void*>(nullptr), dtype, shape);
  const size_t bytes = std::max<size_t>(static_cast<size_t>(shape_only.numel()) * DTypeSize(dtype), 1);
  UntouchedTensor t;
  t.storage.reset(new std::byte[bytes], std::default_delete<std::byte[]>());
  t.view = TensorView(static_cast<void*>(t.storage.get()), dtype, std::move(shape));
  return t;
}

RankJob::RankJob(const JobOptions& o, int rank, const RankInputs& in, Group& group)
    : o_(o),
      group_(group),
      expert_ids_(in.expert_ids),
      expert_scales_(in.expert_scales),
      expert_out_given_(!in.expert_out.empty()),
      x_source_(in.x) {
  const int64_t h = o.hidden;
  const DType dtype = o.fp16 ? DType::kFp16 : DType::kBf16;
  ExpertLayout& experts = dispatch_options_.experts;
  experts.moe_expert_num = o.experts;
  experts.shared_expert_num = o.shared_expert_ranks > 0 ? 1 : 0;
  experts.shared_expert_rank_num = o.shared_expert_ranks;
  const int64_t a = DispatchReceiveRows(group, o.bs, o.top_k, experts);
  const int64_t l = o.experts / (o.ranks - o.shared_expert_ranks);
  const bool shared_rank = rank < o.shared_expert_ranks;
  // In the library's shared heap (a large tensor gets a chunk of its own, untouched until written), or with
  // --private where process peers copy rows out of them (or have them pushed).
  const auto input = [&](std::vector<int64_t> shape) {
    return o.private_inputs ? Tensor(dtype, std::move(shape)) : Tensor::PeerVisible(dtype, std::move(shape));
  };
  x_ = input({o.bs, h});
  std::memcpy(x_.data(), in.x.data(), x_.bytes());
  expert_out_ = input({a, h});
  if (!in.expert_out.empty()) {
    std::memcpy(expert_out_.data(), in.expert_out.data(), std::min(in.expert_out.size_bytes(), expert_out_.bytes()));
  }
  expand_x_ = Untouched(o.quant_int8 ? DType::kInt8 : dtype, {a, h});
  scales_ = Untouched(DType::kFloat32, {a});
  assist_ = Untouched(DType::kInt32, {3 * a});
  recv_ = Untouched(DType::kInt32, {o.ranks * l});
  tp_recv_ = Untouched(DType::kInt32, {1});
  token_nums_ = Untouched(DType::kInt64, {shared_rank ? 1 : l});
  x_out_ = Untouched(dtype, {o.bs, h});
  dispatch_options_.quant = o.quant_int8 ? Quant::kDynamicInt8 : Quant::kNone;
  combine_options_.comm_quant = o.comm_quant_int8 ? Quant::kDynamicInt8 : Quant::kNone;
  outs_ = DispatchOutputs{expand_x_.view, o.quant_int8 ? scales_.view : TensorView{},
                          assist_.view,   token_nums_.view,
                          recv_.view,     tp_recv_.view};
}

void RankJob::Dispatch() {
  handle_ = DispatchInto(group_, x_.view(), TensorView(expert_ids_.data(), DType::kInt32, {o_.bs, o_.top_k}),
                         dispatch_options_, outs_);
}

void RankJob::Combine() {
  CombineInto(group_, handle_, expert_out_.view(),
              TensorView(expert_scales_.data(), DType::kFloat32, {o_.bs, o_.top_k}), combine_options_, x_out_.view);
}

// The bytes dispatch received: the rows, and under quantization their scales (kept apart in expandX and
// dynamicScales, as dispatch writes them).
void RankJob::CopyDispatchBytes() {
  const size_t rows = handle_.num_rows * o_.hidden * (o_.quant_int8 ? 1 : 2);
  std::memcpy(copy_to_.data(), expand_x_.data(), rows);
  if (o_.quant_int8) std::memcpy(copy_to_.data() + rows, scales_.data(), handle_.num_rows * sizeof(float));
}
void RankJob::CopyCombineBytes() { std::memcpy(copy_to_.data(), expert_out_.data(), handle_.num_rows * 2 * o_.hidden); }

void RankJob::Barrier() { moe_ep::Barrier(group_); }

// Two of the group's barriers, which poll: the first can wait long (the others still rewriting their inputs), long
// enough for its back-off to sleep, and a rank that slept leaves it late; the second then starts with every rank
// within that much of the others, waits too briefly to sleep, and lets them all go within a poll of each other.
void RankJob::LineUp() {
  Barrier();
  Barrier();
}

RankTimes RankJob::Time(const std::function<void()>& sync, bool barrier) {
  Dispatch();
  if (!expert_out_given_) {
    // Finite values of the right dtype in every received row: the combine sums real numbers, not NaNs.
    auto* out = static_cast<uint16_t*>(expert_out_.data());
    const uint16_t one = o_.fp16 ? 0x3C00 : 0x3F80;
    for (int64_t i = 0; i < handle_.num_rows * o_.hidden; ++i) out[i] = static_cast<uint16_t>(one + (i % 61));
  }
  Combine();
  const size_t copy_bytes = handle_.num_rows * std::max(DispatchRowBytes(o_), 2 * o_.hidden);
  copy_to_.assign(std::max<size_t>(copy_bytes, 1), 0);
  const auto* out = static_cast<const uint16_t*>(expert_out_.data());
  expert_out_rows_.assign(out, out + handle_.num_rows * o_.hidden);
  // x and the expert outputs as the layers before the two operations leave them: just written by this rank.
  const auto refresh_x = [this] { std::memcpy(x_.data(), x_source_.data(), x_.bytes()); };
  const auto refresh_expert_out = [this] {
    // A rank may receive no rows (no data() to copy from).
    if (!expert_out_rows_.empty()) {
      std::memcpy(expert_out_.data(), expert_out_rows_.data(), expert_out_rows_.size() * sizeof(uint16_t));
    }
  };
  std::vector<TimedStep> steps = {{refresh_x, [this] { Dispatch(); }},
                                  {refresh_expert_out, [this] { Combine(); }},
                                  {{}, [this] { CopyDispatchBytes(); }},
                                  {{}, [this] { CopyCombineBytes(); }}};
  if (barrier) steps.push_back({{}, [this] { Barrier(); }});
  RankTimes times = TimeRounds(o_.warmup, o_.repeats, sync, steps);
  times.rows = handle_.num_rows;
  const ops::OpState& state = GroupAccess::Comm(group_).state();
  times.dispatch_readers = state.dispatch_readers;
  times.combine_readers = state.combine_readers;
  times.dispatch_copy_readers = state.dispatch_copy_readers;
  times.combine_copy_readers = state.combine_copy_readers;
  return times;
}

std::vector<RankTimes> TimeThreadRanks(const JobOptions& o, const GroupOptions& group_options,
                                       const std::function<RankInputs(int)>& inputs, bool barrier) {
  std::vector<Group> groups = CreateThreadGroups(o.ranks, group_options);
  std::vector<RankTimes> times(o.ranks);
  std::vector<std::exception_ptr> errors(o.ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < o.ranks; ++r) {
    threads.emplace_back([&, r] {
      try {
        RankJob job(o, r, inputs(r), groups[r]);
        // Lined up by the group's own barriers, as process ranks are: a sleeping std::barrier wakes its threads
        // one by one, microseconds apart, and the span of each op would include that.
        times[r] = job.Time([&] { job.LineUp(); }, barrier);
      } catch (...) {  // the others then fail their own waits by the group's deadline
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& th : threads) th.join();
  // The cause, not the others' timeouts waiting for the rank it stopped.
  for (const auto& error : errors) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const TimeoutError&) {
    } catch (...) {
      throw;
    }
  }
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  return times;
}

}  // namespace moe_ep::tools
