// The inside of a Group: its window and settings (shared by the native API and, later, the C API).
#pragma once

#include <chrono>
#include <memory>
#include <set>
#include <string>

#include "moe_ep/group.h"
#include "transport/window.h"

namespace moe_ep {

struct Group::Impl {
  std::unique_ptr<transport::Window> window;
  std::chrono::milliseconds timeout;
  std::string name;
  std::set<int> failed;  // peers an operation timed out waiting for (Group::failed_ranks)

  transport::Clock::time_point Deadline() const { return transport::Clock::now() + timeout; }
};

}  // namespace moe_ep
