// The inside of a Group: the internal communicator every operation runs on (ops/communicator.h).
#pragma once

#include <memory>

#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "ops/communicator.h"

namespace moe_ep {

struct Group::Impl {
  std::unique_ptr<ops::Communicator> comm;
};

/// How the library reaches a Group's communicator (Group keeps it private from users). A Group moved from holds
/// none: using it is an error, not a crash.
struct GroupAccess {
  static ops::Communicator& Comm(const Group& group) {
    if (!group.impl_) {
      throw Error(ErrorCode::kInvalidParam,
                  "Group: used after it was moved from; rule: a moved-from Group holds no group (use the one it was "
                  "moved to)");
    }
    return *group.impl_->comm;
  }
};

}  // namespace moe_ep
