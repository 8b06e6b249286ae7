// The inside of a Group: the internal communicator every operation runs on (ops/communicator.h).
#pragma once

#include <memory>

#include "moe_ep/group.h"
#include "ops/communicator.h"

namespace moe_ep {

struct Group::Impl {
  std::unique_ptr<ops::Communicator> comm;
};

/// How the library reaches a Group's communicator (Group keeps it private from users).
struct GroupAccess {
  static ops::Communicator& Comm(const Group& group) { return *group.impl_->comm; }
};

}  // namespace moe_ep
