// The entries of the operations, shared by both front doors (the native Group and the C API's HcclComm):
// each runs a checked call as elastic -> protocol -> bookkeeping on the internal communicators. The
// checks themselves (plan/validate.h) run first: the native API runs them right before, the C API in
// its phase one.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ops/communicator.h"
#include "plan/config.h"
#include "plan/op_tensors.h"
#include "plan/validate.h"

namespace moe_ep::ops {

/// The window sizes the rule of docs/semantics.md 1.2 is checked against.
plan::WindowCapacity CapacityOf(const Communicator& ep, const Communicator* tp);

/// [collective over ep (and tp)] Dispatch of a checked call. `elastic_info` is empty or V3's table: when
/// it is scaled down the survivors run renumbered (docs/semantics.md 2.8). Holds each communicator's
/// lock; remembers the peers a deadline error names (in the original numbering). Returns the
/// configuration it ran with (the survivors' under a scaled-down table). Refusals name config.op.
plan::MoeConfig RunDispatch(Communicator& ep, Communicator* tp, const plan::MoeConfig& config,
                            const plan::DispatchTensors& tensors, std::span<const int32_t> elastic_info);

/// [collective over ep (and tp)] Combine (or CombineAddRmsNorm: tensors.add_rms_norm) of a checked call,
/// as RunDispatch.
void RunCombine(Communicator& ep, Communicator* tp, const plan::MoeConfig& config, const plan::CombineTensors& tensors,
                std::span<const int32_t> elastic_info);

/// [collective over the reachable ranks of ep] BufferReset (docs/semantics.md 4.2): `reachable` has one
/// 0/1 entry per rank; with need_sync the ranks it marks are forgotten as failed and synced with; the ranks it
/// leaves out are remembered as failed. `op`: the name its errors give the call.
void RunBufferReset(Communicator& ep, std::span<const int32_t> reachable, bool need_sync, const char* op);

/// [collective over every rank of ep] Returns once all have called it (Window::Barrier).
void RunBarrier(Communicator& ep);

/// Which ranks of ep answer within `wait` (docs/semantics.md 4.3); one 0/1 entry per rank.
std::vector<int32_t> ProbeReachable(Communicator& ep, transport::Clock::duration wait);

}  // namespace moe_ep::ops
