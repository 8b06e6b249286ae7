// HCCL communicators of the C API: one rank's internal communicator (ops/communicator.h) of a group,
// found by the group name that the aclnn operators take and the device they run on.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "ops/communicator.h"

namespace moe_ep::cann {

struct Comm {
  std::string name;  // HcclGetCommName: the same on every rank of the group
  int32_t device = -1;
  std::unique_ptr<ops::Communicator> comm;  // window, deadline (HCCL_EXEC_TIMEOUT), failed ranks, lock
  // The product (env::Product) of the last dispatch this rank ran on the group; -1 before the first. Its combine
  // must read assistInfoForCombine as that dispatch wrote it (triples on A3, expandIdx on A2).
  std::atomic<int> dispatched_as{-1};
  // HcclCommDestroy ran: an executor built on the group before is refused at its launch (one launched before
  // runs).
  std::atomic<bool> destroyed{false};
};

/// The live communicator of group `name` on `device`, or nullptr. Holding the pointer keeps it alive
/// after HcclCommDestroy (an operation launched on it before runs; one launched later is refused: `destroyed`).
std::shared_ptr<Comm> FindComm(const std::string& name, int32_t device);

/// HCCL_BUFFSIZE in bytes (MB in the environment, default 200): each communicator's data window.
uint64_t CommWindowBytes();

}  // namespace moe_ep::cann
