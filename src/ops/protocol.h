// The protocols of the operations, written once against the Window interface: DispatchV2, CombineV2 /
// CombineAddRmsNorm and BufferReset. They assume a validated call; operations.h is their entry.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "moe_ep/error.h"
#include "ops/communicator.h"
#include "ops/workers.h"
#include "plan/config.h"
#include "plan/op_tensors.h"
#include "transport/window.h"

namespace moe_ep::ops::protocol {

/// The windows one call runs on, the operations' state of each, and the call's deadline.
struct Link {
  transport::Window& ep;
  OpState& ep_state;
  transport::Window* tp = nullptr;  // the TP pair's window when tp_world_size == 2
  OpState* tp_state = nullptr;
  transport::Clock::time_point deadline;  // every wait of the call ends by then
  PullMinBytes pull_min_bytes;            // Communicator::pull_min_bytes
  Workers* workers = nullptr;             // Communicator::workers; null: the caller's thread alone

  /// body(part, begin, end) over [0, n), items of about `item_bytes` each, split among the workers
  /// (ops/workers.h).
  void ForEachPart(int64_t n, uint64_t item_bytes,
                   const std::function<void(int part, int64_t begin, int64_t end)>& body) const {
    if (workers) return workers->ForEachPart(n, item_bytes, body);
    body(0, 0, n);
  }
};

/// A deadline error of a wait on the TP pair: its missing ranks are TP ranks, which the operation must not remember as
/// failed in the EP group (where those numbers name other ranks).
class TpPeerTimeout : public TimeoutError {
 public:
  using TimeoutError::TimeoutError;
};

/// Runs `wait`, a wait on the TP window, turning its TimeoutError (not an interrupt) into a TpPeerTimeout.
template <typename Wait>
decltype(auto) WaitOnTpPeer(Wait&& wait) {
  try {
    return wait();
  } catch (const InterruptedError&) {
    throw;
  } catch (const TimeoutError& e) {
    throw TpPeerTimeout(e.what(), e.missing_ranks());
  }
}

/// Collective over link.ep (and link.tp): docs/semantics.md 2 / 5.2.
void Dispatch(const plan::MoeConfig& config, const plan::DispatchTensors& tensors, const Link& link);

/// Collective over link.ep (and link.tp): docs/semantics.md 3 / 5.3; tensors.add_rms_norm selects
/// CombineAddRmsNorm.
void Combine(const plan::MoeConfig& config, const plan::CombineTensors& tensors, const Link& link);

/// docs/semantics.md 4.2: clears the local window and, with need_sync, waits for every rank marked 1 in
/// `reachable` (E entries of 0/1) to have cleared its own. A timeout names `op`.
void BufferReset(transport::Window& ep, OpState& state, std::span<const int32_t> reachable, bool need_sync,
                 transport::Clock::time_point deadline, const char* op);

}  // namespace moe_ep::ops::protocol
