// Window layout arithmetic (docs/semantics.md 1.2 window rule, docs/semantics.md 5.1 slot format).
#include "plan/layout.h"

#include <algorithm>

namespace moe_ep::plan {

int64_t ReceiveRows(const MoeConfig& c) {
  if (c.is_shared_rank()) {
    const int64_t r = c.shared_replicas();
    return c.max_bs() * ((c.ep_world_size + r - 1) / r);
  }
  return c.effective_global_bs() * std::min(c.local_expert_num(), c.top_k);
}

DispatchOutputSizes OutputSizesOf(const MoeConfig& c) {
  const int64_t tp_a = c.tp_size() * ReceiveRows(c);
  return {tp_a, 3 * tp_a, c.token_num_entries(), c.receive_entries() * c.tp_size()};
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

  combine_area_bytes = static_cast<uint64_t>(max_bs) * combine_slots_per_token * combine_slot_bytes;
  dispatch_area_offset = combine_area_bytes;
  ep_half_bytes = combine_area_bytes + static_cast<uint64_t>(dispatch_blocks) * max_bs * dispatch_slot_bytes;
  ep_window_bytes = 2 * ep_half_bytes;

  tp_combine_offset = static_cast<uint64_t>(a) * dispatch_slot_bytes;
  tp_half_bytes = static_cast<uint64_t>(a) * (dispatch_slot_bytes + combine_slot_bytes);
  tp_window_bytes = c.has_tp() ? 2 * tp_half_bytes : 0;
}

}  // namespace moe_ep::plan
