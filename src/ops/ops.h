// The operations, written once against the Window interface: DispatchV2, CombineV2,
// CombineAddRmsNorm and BufferReset. Callers validate first (plan/validate.h); these assume a valid call.
#pragma once

#include <cstdint>
#include <span>

#include "plan/config.h"
#include "plan/op_tensors.h"
#include "transport/window.h"

namespace moe_ep::ops {

/// The group(s) an operation runs on and its deadline.
struct OpContext {
  transport::Window& ep;
  transport::Window* tp = nullptr;        // the TP pair's window when tp_world_size == 2
  transport::Clock::time_point deadline;  // every wait of the call ends by then
};

/// Collective over ctx.ep (and ctx.tp): docs/semantics.md 2 / 5.2.
void Dispatch(const plan::MoeConfig& config, const plan::DispatchTensors& tensors, OpContext& ctx);

/// Collective over ctx.ep (and ctx.tp): docs/semantics.md 3 / 5.3; tensors.add_rms_norm selects CombineAddRmsNorm.
void Combine(const plan::MoeConfig& config, const plan::CombineTensors& tensors, OpContext& ctx);

/// docs/semantics.md 4.2: clears the local window and, with need_sync, waits for every rank marked 1 in
/// `reachable` (E entries of 0/1) to have cleared its own.
void BufferReset(transport::Window& ep, std::span<const int32_t> reachable, bool need_sync,
                 transport::Clock::time_point deadline);

}  // namespace moe_ep::ops
