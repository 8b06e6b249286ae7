// Window layout arithmetic (docs/semantics.md 1.2 window rule, docs/semantics.md 5.1 slot format).
#include "plan/layout.h"

#include <algorithm>

#include "base/saturating.h"

namespace moe_ep::plan {

namespace {

// A by the rank's own role.
int64_t RoleReceiveRows(const MoeConfig& c) {
  if (c.is_shared_rank()) {
    const int64_t r = c.shared_replicas();
    return SaturatingMul(c.max_bs(), (c.ep_world_size + r - 1) / r);
  }
  return SaturatingMul(SaturatingMul(c.max_bs(), c.ep_world_size), std::min(c.local_expert_num(), c.top_k));
}

}  // namespace

int64_t ReceiveRows(const MoeConfig& c) {
  // Under elasticInfo a rank is sized for either role (docs/semantics.md 1.2): a scaled-down job can
  // leave fewer replicas of a shared expert, and their rows must still fit.
  if (!c.elastic) return RoleReceiveRows(c);
  MoeConfig shared = c, moe = c;
  shared.ep_rank = 0;
  moe.ep_rank = c.shared_expert_rank_num;
  return c.has_shared() ? std::max(RoleReceiveRows(shared), RoleReceiveRows(moe)) : RoleReceiveRows(moe);
}

DispatchOutputSizes OutputSizesOf(const MoeConfig& c) {
  const int64_t a = ReceiveRows(c), tp_a = c.tp_size() * a;
  // Triples of this rank's EP rows only: the TP peer's rows carry none (CANN's tiling asks 3A too).
  const int64_t assist = c.expand_idx() ? SaturatingMul(c.bs, c.top_k) : 3 * a;
  return {tp_a, assist, c.sized_token_num_entries(), c.sized_receive_entries() * c.tp_size()};
}

WindowLayout::WindowLayout(const MoeConfig& c) {
  hidden = c.hidden;
  const uint64_t h = static_cast<uint64_t>(c.hidden);
  dispatch_token_bytes = c.quant_mode == 2 ? h : 2 * h;
  dispatch_scale_offset = AlignUp(dispatch_token_bytes, 32);
  dispatch_triple_offset = dispatch_scale_offset + 32;
  dispatch_slot_bytes = AlignUp(AlignUp(2 * h, 32) + 44, 512);
  combine_slot_bytes = AlignUp(2 * h, 512);
  combine_scale_offset = AlignUp(h, 32);
  combine_payload_bytes = c.comm_quant_mode == 2 ? combine_scale_offset + 2 * ((h + 7) / 8) : 2 * h;

  max_bs = c.max_bs();
  combine_slots_per_token = c.top_k + c.shared_expert_num;
  dispatch_blocks = c.ep_world_size * c.local_expert_num();
  a = ReceiveRows(c);

  // Saturating: attributes that validation has not bounded yet must not wrap to a window that fits.
  const auto mul = SaturatingMul<uint64_t>;
  const auto bs = static_cast<uint64_t>(max_bs), rows = static_cast<uint64_t>(a);
  combine_area_bytes = mul(mul(bs, combine_slots_per_token), combine_slot_bytes);
  dispatch_area_offset = combine_area_bytes;
  ep_half_bytes = SaturatingAdd(combine_area_bytes, mul(mul(dispatch_blocks, bs), dispatch_slot_bytes));
  ep_window_bytes = mul(2, ep_half_bytes);

  tp_combine_offset = mul(rows, dispatch_slot_bytes);
  tp_half_bytes = mul(rows, SaturatingAdd(dispatch_slot_bytes, combine_slot_bytes));
  tp_window_bytes = c.has_tp() ? mul(2, tp_half_bytes) : 0;
}

}  // namespace moe_ep::plan
