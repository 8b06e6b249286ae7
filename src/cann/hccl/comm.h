// HCCL communicators of the C API: one rank's window of a group, found by the group name that the aclnn
// operators take and the device they run on.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "transport/window.h"

namespace moe_ep::cann {

struct Comm {
  std::string name;  // HcclGetCommName: the same on every rank of the group
  int rank = 0;
  int size = 0;
  int32_t device = -1;
  std::unique_ptr<transport::Window> window;
  std::chrono::milliseconds timeout{0};  // deadline of every wait of an operation on this communicator
  // Operations on one rank's communicator run one at a time, whichever streams launch them.
  std::mutex op_mutex;

  transport::Clock::time_point Deadline() const { return transport::Clock::now() + timeout; }
};

/// The live communicator of group `name` on `device`, or nullptr. Holding the pointer keeps it alive
/// after HcclCommDestroy (an operation already launched finishes).
std::shared_ptr<Comm> FindComm(const std::string& name, int32_t device);

/// HCCL_BUFFSIZE in bytes (MB in the environment, default 200): each communicator's data window.
uint64_t CommWindowBytes();

}  // namespace moe_ep::cann
