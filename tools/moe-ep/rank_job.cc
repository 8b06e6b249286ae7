// One rank's part of the main job: buffers sized as the CANN docs size them, the two operations, and
// the memcpy baselines.
#include "moe-ep/rank_job.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace moe_ep::tools {

using verify::ScenarioInputs;
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

int64_t DispatchRowBytes(const JobOptions& o) { return o.quant_int8 ? o.hidden + 4 : 2 * o.hidden; }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

void PrintRow(const char* name, double seconds, uint64_t bytes, double memcpy_seconds) {
  std::printf("  %-10s median %9.1f us   %7.2f GB/s   memcpy of the same bytes %9.1f us   ratio %.2fx\n", name,
              seconds * 1e6, bytes / seconds / 1e9, memcpy_seconds * 1e6, seconds / memcpy_seconds);
}

RankJob::RankJob(const JobOptions& o, const ScenarioSpec& s, const ScenarioInputs& in, int rank, int64_t received_rows,
                 Group& group)
    : o_(o), s_(s), in_(in), rank_(rank), group_(group) {
  const auto& c = s.config;
  const int64_t h = c.hidden;
  const DType dtype = o.fp16 ? DType::kFp16 : DType::kBf16;
  ExpertLayout experts;
  experts.moe_expert_num = c.moe_expert_num;
  experts.shared_expert_num = c.shared_expert_num;
  experts.shared_expert_rank_num = c.shared_expert_rank_num;
  const auto& d = in.dispatch[rank];
  const int64_t a = DispatchReceiveRows(group, d.bs, c.top_k, experts);
  const int64_t l = c.moe_expert_num / (c.ep_world_size - c.shared_expert_rank_num);
  const bool shared_rank = rank < c.shared_expert_rank_num;
  expand_x_.resize(a * h * 2);
  scales_.resize(a);
  assist_.resize(3 * a);
  recv_.resize(c.ep_world_size * l);
  tp_recv_.resize(1);
  token_nums_.resize(shared_rank ? 1 : l);
  expert_out_.assign(in.combine[rank].expert_out.begin(), in.combine[rank].expert_out.end());
  expert_out_.resize(a * h);
  x_out_.resize(d.bs * h);
  dispatch_options_.experts = experts;
  dispatch_options_.quant = o.quant_int8 ? Quant::kDynamicInt8 : Quant::kNone;
  combine_options_.comm_quant = o.comm_quant_int8 ? Quant::kDynamicInt8 : Quant::kNone;
  outs_ = DispatchOutputs{TensorView(expand_x_.data(), o.quant_int8 ? DType::kInt8 : dtype, {a, h}),
                          o.quant_int8 ? TensorView(scales_.data(), DType::kFloat32, {a}) : TensorView{},
                          TensorView(assist_.data(), DType::kInt32, {3 * a}),
                          TensorView(token_nums_.data(), DType::kInt64, {static_cast<int64_t>(token_nums_.size())}),
                          TensorView(recv_.data(), DType::kInt32, {static_cast<int64_t>(recv_.size())}),
                          TensorView(tp_recv_.data(), DType::kInt32, {1})};
  copy_dispatch_bytes_ = received_rows * DispatchRowBytes(o);
  copy_combine_bytes_ = received_rows * 2 * h;
  // A quantized row (H + 4 bytes) outgrows a 16-bit one (2H) when H < 4: size for the larger. At least one
  // byte, so that a rank receiving no rows still passes memcpy valid pointers.
  const size_t copy_bytes = std::max<size_t>({copy_dispatch_bytes_, copy_combine_bytes_, 1});
  copy_src_.assign(copy_bytes, 1);
  copy_dst_.assign(copy_bytes, 2);
}

void RankJob::Dispatch() {
  const auto& c = s_.config;
  const auto& d = in_.dispatch[rank_];
  const DType dtype = o_.fp16 ? DType::kFp16 : DType::kBf16;
  handle_ = DispatchInto(group_, TensorView(d.x.data(), dtype, {d.bs, c.hidden}),
                         TensorView(d.expert_ids.data(), DType::kInt32, {d.bs, c.top_k}), dispatch_options_, outs_);
}

void RankJob::Combine() {
  const auto& c = s_.config;
  const auto& d = in_.dispatch[rank_];
  const DType dtype = o_.fp16 ? DType::kFp16 : DType::kBf16;
  const int64_t a = outs_.expand_x.shape[0];
  CombineInto(group_, handle_, TensorView(expert_out_.data(), dtype, {a, c.hidden}),
              TensorView(in_.combine[rank_].expert_scales.data(), DType::kFloat32, {d.bs, c.top_k}), combine_options_,
              TensorView(x_out_.data(), dtype, {d.bs, c.hidden}));
}

void RankJob::CopyDispatchBytes() { std::memcpy(copy_dst_.data(), copy_src_.data(), copy_dispatch_bytes_); }
void RankJob::CopyCombineBytes() { std::memcpy(copy_dst_.data(), copy_src_.data(), copy_combine_bytes_); }

}  // namespace moe_ep::tools
