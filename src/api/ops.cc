// The native operations: build the op configuration from a Group and options, validate with the
// native profile, run the operation, and package outputs and the handle.
#include "moe_ep/ops.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "api/group_impl.h"
#include "base/env.h"
#include "moe_ep/error.h"
#include "ops/operations.h"
#include "ops/tensor_access.h"
#include "plan/elastic.h"
#include "plan/layout.h"
#include "plan/validate.h"

namespace moe_ep {
namespace {

plan::MoeConfig BaseConfig(const Group& ep, const Group* tp, const ExpertLayout& experts, const char* op) {
  plan::MoeConfig c;
  c.op = op;
  c.native_names = true;
  c.ep_world_size = ep.size();
  c.ep_rank = ep.rank();
  c.tp_world_size = 1;  // the native API always has a TP dimension: 1 (alone) or 2 (a pair)
  if (tp) {
    const std::string named = std::string(op) + ": parameter 'tp' = tp group '" + tp->name() + "'";
    if (tp->size() != 2) {
      throw Error(ErrorCode::kInvalidConfig, named + " of " + std::to_string(tp->size()) +
                                                 " ranks violates rule: a TP pair is a group of 2 ranks");
    }
    if (tp == &ep) {  // one communicator cannot be both: the operation would wait on itself
      throw Error(ErrorCode::kInvalidConfig,
                  named + " violates rule: the TP pair is a group of its own, not the ep group");
    }
    c.tp_world_size = 2;
    c.tp_rank = tp->rank();
  }
  c.moe_expert_num = experts.moe_expert_num;
  c.shared_expert_num = experts.shared_expert_num;
  c.shared_expert_rank_num = experts.shared_expert_rank_num;
  c.global_bs = experts.global_bs;
  c.zero_expert_num = experts.zero_expert_num;
  c.copy_expert_num = experts.copy_expert_num;
  c.const_expert_num = experts.const_expert_num;
  c.elastic = !experts.survivors.empty();
  return c;
}

Tensor CopyOf(const TensorView& v, int64_t elements) {
  Tensor t(v.dtype, {elements});
  std::memcpy(t.data(), v.data, elements * DTypeSize(v.dtype));
  return t;
}

// Contiguous copy of an input view (the handle keeps routing and mask beyond the caller's buffers).
Tensor DenseCopy(const TensorView& v) {
  Tensor t(v.dtype, v.shape);
  ops::CopyElements(v, t.view());
  return t;
}

// The elasticInfo table's shape; its contents are checked when the operation applies it.
// A per-rank 0/1 mask (survivors, reachable): one entry per rank of `ep`, each 0 or 1.
void CheckRankMask(const Group& ep, std::span<const int32_t> mask, const char* op, const char* param) {
  if (static_cast<int>(mask.size()) != ep.size()) {
    throw Error(ErrorCode::kInvalidConfig, std::string(op) + ": parameter '" + param + "' has " +
                                               std::to_string(mask.size()) + " entries; rule: one per rank (" +
                                               std::to_string(ep.size()) + ")");
  }
  for (int32_t v : mask) {
    if (v != 0 && v != 1) {
      throw Error(ErrorCode::kInvalidConfig, std::string(op) + ": parameter '" + param + "' holds " +
                                                 std::to_string(v) + "; rule: entries are 0 or 1");
    }
  }
}

// The elasticInfo table the operations run under: none without survivors, else the one that keeps the
// ranks marked 1 (in order, roles and experts kept).
std::vector<int32_t> ElasticTable(const Group& ep, const plan::MoeConfig& c, const ExpertLayout& experts,
                                  const char* op) {
  if (experts.survivors.empty()) return {};
  CheckRankMask(ep, experts.survivors, op, "ExpertLayout::survivors");
  if (!experts.survivors[ep.rank()]) {
    throw Error(ErrorCode::kInvalidConfig, std::string(op) + ": parameter 'ExpertLayout::survivors' marks this rank (" +
                                               std::to_string(ep.rank()) + ") 0; rule: only survivors run operations");
  }
  if (c.has_tp()) {
    throw Error(ErrorCode::kInvalidConfig, std::string(op) +
                                               ": parameter 'ExpertLayout::survivors' is set with a "
                                               "TP group; rule: elastic scale-down runs without TP");
  }
  return plan::ElasticInfoFor(c, experts.survivors);
}

ops::Communicator& CommOf(const Group& g) { return GroupAccess::Comm(g); }
ops::Communicator* CommOf(const Group* g) { return g ? &GroupAccess::Comm(*g) : nullptr; }

plan::CombineTensors HandleTensors(const DispatchHandle& h, const TensorView& expert_out,
                                   const TensorView& expert_scales, const CombineOptions& options) {
  plan::CombineTensors t;
  t.expand_x = expert_out;
  t.expert_ids = h.expert_ids.view();
  t.assist_info = h.assist_info.view();
  t.ep_send_counts = h.ep_recv_counts.view();
  t.expert_scales = expert_scales;
  if (h.tp_recv_counts.numel() == 2) t.tp_send_counts = h.tp_recv_counts.view();
  if (h.active_mask.numel() > 0) t.x_active_mask = h.active_mask.view();
  t.shared_expert_x = options.shared_expert_x;
  t.ori_x = options.ori_x;
  t.const_alpha1 = options.const_alpha1;
  t.const_alpha2 = options.const_alpha2;
  t.const_v = options.const_v;
  return t;
}

// A dispatch's configuration before its shapes are known.
plan::MoeConfig DispatchConfig(const Group& ep, const Group* tp, const DispatchOptions& options) {
  plan::MoeConfig c = BaseConfig(ep, tp, options.experts, "Dispatch");
  c.quant_mode = static_cast<int64_t>(options.quant);
  c.expert_token_nums_type = options.cumulative_token_nums ? 0 : 1;
  if (options.expand_idx_layout) c.assist = plan::AssistLayout::kExpandIdx;
  return c;
}

// The configuration of a call with Bs tokens of H and top-K routing, its attributes and the window it needs
// validated: enough to size the outputs before they exist (and never to allocate outputs for a call that
// cannot run).
plan::MoeConfig PlacedConfig(const Group& ep, const Group* tp, const TensorView& x, const TensorView& expert_ids,
                             const DispatchOptions& options) {
  plan::MoeConfig c = DispatchConfig(ep, tp, options);
  plan::DispatchTensors inputs;
  inputs.x = x;
  inputs.expert_ids = expert_ids;
  inputs.scales = options.smooth_scales;
  inputs.x_active_mask = options.active_mask;
  plan::ValidateDispatchInputs(c, inputs, plan::Profile::kNative, ops::CapacityOf(CommOf(ep), CommOf(tp)), "Dispatch");
  return c;
}

// The configuration of a combine call, everything about it validated.
plan::MoeConfig CheckedCombineConfig(const Group& ep, const DispatchHandle& h, const plan::CombineTensors& t,
                                     const CombineOptions& options, const Group* tp, const char* op) {
  // The handle's H and dtype are what dispatch moved: expert outputs of another H are the mistake, and named as
  // such (the rules below take H from them and would blame the output sized from the handle); of another dtype of
  // the same size (fp16 for bf16), their rows would be read by peers as the dispatch's dtype, summing garbage.
  if (t.expand_x.present() && t.expand_x.dim() == 2 && t.expand_x.shape[1] != h.hidden) {
    throw Error(ErrorCode::kInvalidConfig, std::string(op) + ": parameter 'expert_out' = " + t.expand_x.Describe() +
                                               " violates rule: dim1 must equal the dispatch's H = " +
                                               std::to_string(h.hidden) + " (DispatchHandle::hidden)");
  }
  if (t.expand_x.present() && t.expand_x.dtype != h.dtype) {
    throw Error(ErrorCode::kInvalidParam, std::string(op) + ": parameter 'expert_out' = " + t.expand_x.Describe() +
                                              " violates rule: dtype must be the dispatch's x dtype, " +
                                              DTypeName(h.dtype) + " (DispatchHandle::dtype)");
  }
  // Rows routed by another group's dispatch would go to the ranks of this one that hold the same numbers.
  if (h.ep_group != 0 && CommOf(ep).id() != h.ep_group) {
    throw Error(ErrorCode::kInvalidConfig, std::string(op) + ": parameter 'ep' = group '" + ep.name() +
                                               "' violates rule: the handle's dispatch ran on another group; pass "
                                               "that group");
  }
  plan::MoeConfig c = BaseConfig(ep, tp, h.experts, op);
  // A TP pair's combine first adds the peer's partial rows: a combine told of another pair than its dispatch ran
  // with would skip that (a wrong sum, silently), wait for rows never sent, or add another pair's rows.
  const bool dispatched_with_tp = h.tp_pair != 0 || h.tp_recv_counts.numel() == 2;  // (2 counts: made by hand)
  if (dispatched_with_tp != (tp != nullptr) || (tp && h.tp_pair != 0 && CommOf(tp)->id() != h.tp_pair)) {
    throw Error(ErrorCode::kInvalidConfig,
                std::string(op) + ": parameter 'tp' = " + (tp ? "group '" + tp->name() + "'" : std::string("nullptr")) +
                    " violates rule: the handle's dispatch ran " +
                    (!dispatched_with_tp ? "without a TP pair; pass none"
                     : tp                ? "with another TP pair; pass that pair"
                                         : "with a TP pair; pass that pair"));
  }
  c.comm_quant_mode = static_cast<int64_t>(options.comm_quant);
  if (h.expand_idx_layout) c.assist = plan::AssistLayout::kExpandIdx;
  plan::ValidateCombine(c, t, plan::Profile::kNative, ops::CapacityOf(CommOf(ep), CommOf(tp)), op);
  return c;
}

// `op`: "Combine" or "CombineAddRmsNorm", as refusals name the call.
void RunCombine(Group& ep, const DispatchHandle& h, plan::CombineTensors& t, const CombineOptions& options, Group* tp,
                const char* op) {
  const plan::MoeConfig c = CheckedCombineConfig(ep, h, t, options, tp, op);
  plan::CheckOutputsApart(t, plan::Profile::kNative, op);
  const std::vector<int32_t> table = ElasticTable(ep, c, h.experts, op);
  const ops::DenseOutputs dense(t.outputs());
  ops::RunCombine(CommOf(ep), CommOf(tp), c, t, table);
  dense.CopyBack();
}

}  // namespace

int64_t DispatchReceiveRows(const Group& ep, int64_t bs, int64_t top_k, const ExpertLayout& experts) {
  plan::MoeConfig c = BaseConfig(ep, nullptr, experts, "DispatchReceiveRows");
  c.bs = bs;
  c.top_k = top_k;
  c.hidden = 1;  // A does not depend on H
  plan::ValidateAttributes(c, plan::Profile::kNative, "DispatchReceiveRows");
  return plan::ReceiveRows(c);
}

DispatchHandle DispatchInto(Group& ep, const TensorView& x, const TensorView& expert_ids,
                            const DispatchOptions& options, const DispatchOutputs& out, Group* tp) {
  plan::MoeConfig c = DispatchConfig(ep, tp, options);
  plan::DispatchTensors t{x,
                          expert_ids,
                          options.smooth_scales,
                          options.active_mask,
                          out.expand_x,
                          out.dynamic_scales,
                          out.assist_info,
                          out.expert_token_nums,
                          out.ep_recv_counts,
                          out.tp_recv_counts,
                          {}};  // expert_scales: Atlas A2's, not the native API's
  plan::ValidateDispatch(c, t, plan::Profile::kNative, ops::CapacityOf(CommOf(ep), CommOf(tp)), "Dispatch");
  plan::CheckOutputsApart(t, plan::Profile::kNative, "Dispatch");
  const std::vector<int32_t> table = ElasticTable(ep, c, options.experts, "Dispatch");
  const ops::DenseOutputs dense(t.outputs());
  // The survivors' configuration under a scaled-down elasticInfo: it says which counts were written.
  const plan::MoeConfig ran = ops::RunDispatch(CommOf(ep), CommOf(tp), c, t, table);

  DispatchHandle h;
  h.experts = options.experts;
  h.bs = c.bs;
  h.hidden = c.hidden;
  h.top_k = c.top_k;
  h.dtype = c.x_dtype;
  const int64_t entries = c.sized_receive_entries();
  const int64_t written = ran.receive_entries();
  auto* counts = static_cast<int32_t*>(t.ep_recv_counts.data);
  // Scaled down, the survivors' counts fill the front: the entries of the full size after them are 0.
  if (written < entries) std::fill(counts + written * c.tp_size(), counts + entries * c.tp_size(), 0);
  // expertTokenNums too: sized for either role, a shared-expert rank writes its one entry.
  auto* token_nums = static_cast<int64_t*>(t.expert_token_nums.data);
  std::fill(token_nums + ran.token_num_entries(), token_nums + c.sized_token_num_entries(), 0);
  const int64_t own_rows = counts[written - 1];
  h.num_rows = own_rows + (c.has_tp() ? counts[2 * written - 1] : 0);
  h.expert_ids = DenseCopy(expert_ids);
  if (options.active_mask.present()) h.active_mask = DenseCopy(options.active_mask);
  h.expand_idx_layout = c.expand_idx();
  h.assist_info = CopyOf(t.assist_info, c.expand_idx() ? c.bs * c.top_k : 3 * own_rows);  // none for the TP peer's
  h.ep_recv_counts = CopyOf(t.ep_recv_counts, entries * c.tp_size());
  h.tp_recv_counts = CopyOf(t.tp_recv_counts, t.tp_recv_counts.numel());
  h.tp_pair = tp ? CommOf(tp)->id() : 0;
  h.ep_group = CommOf(ep).id();
  dense.CopyBack();
  return h;
}

DispatchSizes DispatchOutputSizes(const Group& ep, const TensorView& x, const TensorView& expert_ids,
                                  const DispatchOptions& options, const Group* tp) {
  const plan::DispatchOutputSizes n = plan::OutputSizesOf(PlacedConfig(ep, tp, x, expert_ids, options));
  return {n.rows, n.assist_entries, n.token_num_entries, n.recv_count_entries};
}

DispatchResult Dispatch(Group& ep, const TensorView& x, const TensorView& expert_ids, const DispatchOptions& options,
                        Group* tp) {
  const DispatchSizes n = DispatchOutputSizes(ep, x, expert_ids, options, tp);
  const bool quant = options.quant == Quant::kDynamicInt8;

  DispatchResult r;
  r.expand_x = Tensor(quant ? DType::kInt8 : x.dtype, {n.rows, x.shape[1]});
  if (quant) r.dynamic_scales = Tensor(DType::kFloat32, {n.rows});
  r.expert_token_nums = Tensor(DType::kInt64, {n.token_num_entries});
  Tensor assist(DType::kInt32, {n.assist_entries});
  Tensor recv(DType::kInt32, {n.recv_count_entries});
  Tensor tp_recv(DType::kInt32, {tp ? 2 : 1});
  const DispatchOutputs out{r.expand_x.view(), quant ? r.dynamic_scales.view() : TensorView{},
                            assist.view(),     r.expert_token_nums.view(),
                            recv.view(),       tp_recv.view()};
  r.handle = DispatchInto(ep, x, expert_ids, options, out, tp);
  return r;
}

void CombineInto(Group& ep, const DispatchHandle& h, const TensorView& expert_out, const TensorView& expert_scales,
                 const CombineOptions& options, const TensorView& x_out, Group* tp) {
  plan::CombineTensors t = HandleTensors(h, expert_out, expert_scales, options);
  t.x = x_out;
  RunCombine(ep, h, t, options, tp, "Combine");
}

Tensor Combine(Group& ep, const DispatchHandle& h, const TensorView& expert_out, const TensorView& expert_scales,
               const CombineOptions& options, Group* tp) {
  // The handle's bs and hidden size the output: the call is checked, with a stand-in of that shape, before
  // it is allocated (a corrupted handle must not allocate gigabytes first).
  alignas(64) static std::byte no_data;  // aligned for any element type: validation checks it
  plan::CombineTensors t = HandleTensors(h, expert_out, expert_scales, options);
  t.x = TensorView(&no_data, expert_out.dtype, {h.bs, h.hidden});
  CheckedCombineConfig(ep, h, t, options, tp, "Combine");
  Tensor x(expert_out.dtype, {h.bs, h.hidden});
  CombineInto(ep, h, expert_out, expert_scales, options, x.view(), tp);
  return x;
}

void CombineAddRmsNormInto(Group& ep, const DispatchHandle& h, const TensorView& expert_out,
                           const TensorView& expert_scales, const TensorView& residual_x, const TensorView& gamma,
                           float norm_eps, const CombineOptions& options, const AddRmsNormOutputs& out, Group* tp) {
  plan::CombineTensors t = HandleTensors(h, expert_out, expert_scales, options);
  t.add_rms_norm = true;
  t.residual_x = residual_x;
  t.gamma = gamma;
  t.norm_eps = norm_eps;
  t.x = out.x;
  t.y = out.y;
  t.rstd = out.rstd;
  RunCombine(ep, h, t, options, tp, "CombineAddRmsNorm");
}

std::vector<int32_t> ProbeReachable(Group& ep, std::chrono::milliseconds wait) {
  if (wait.count() > env::kMaxTimeoutMs) {  // its deadline, now + wait in nanoseconds, would wrap into the past
    throw Error(ErrorCode::kInvalidParam, "ProbeReachable: parameter 'wait' = " + std::to_string(wait.count()) +
                                              " ms violates rule: at most 2^31 ms (0 or less: the group's timeout)");
  }
  return ops::ProbeReachable(CommOf(ep), wait.count() > 0 ? wait : ep.timeout());
}

void Barrier(Group& ep) { ops::RunBarrier(CommOf(ep)); }

void BufferReset(Group& ep, std::span<const int32_t> reachable, bool need_sync) {
  std::vector<int32_t> all(ep.size(), 1);
  if (reachable.empty()) reachable = all;
  CheckRankMask(ep, reachable, "BufferReset", "reachable");
  ops::RunBufferReset(CommOf(ep), reachable, need_sync, "BufferReset");
}

}  // namespace moe_ep
