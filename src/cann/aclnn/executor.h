// The two phases of every aclnn operator: phase one validates and captures the work in an executor, phase
// two hands the executor to a stream. Each operator's entry points guard them (cann/guard.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "acl/acl.h"
#include "aclnn/aclnn_base.h"
#include "cann/runtime/runtime.h"

struct aclOpExecutor {
  std::string op;                       // "aclnnMoeDistributeDispatchV2", ...
  std::function<void()> work;           // the operation with its inputs captured; throws moe_ep::Error to fail
  std::function<void()> launchable;     // checked by each launch (its groups still live); throws to refuse it
  std::atomic<bool> repeatable{false};  // aclSetAclOpExecutorRepeatable: launched any number of times, until destroyed
  int32_t device = -1;                  // phase one's, where the communicators are: its launches' streams must be too
  std::vector<moe_ep::cann::AllocationId> memory;  // what phase one's tensors point into: each launch holds it
};

namespace moe_ep::cann {

/// What phase one captures: the operation, and the check each launch makes first (null: none).
struct OpWork {
  std::function<void()> run;
  std::function<void()> launchable;
};

/// Notes the memory of a tensor phase one takes (OptionalTensor calls it) for the executor BuildExecutor makes: its
/// launches keep that memory from being given back until they ran (MemoryHold).
void NoteTensorMemory(const void* data);

/// The workspace size phase one reports: 16 MiB, the least CANN's tiling of these operators asks for, so that a
/// program that allocates the workspace whatever its size (aclrtMalloc refuses 0 bytes) runs unchanged. moe_ep
/// uses none of it: phase two takes any workspace pointer, null included, and touches none of its pages.
inline constexpr uint64_t kWorkspaceBytes = uint64_t{16} << 20;

/// Phase one: checks the out-parameters, runs `build` (which validates and returns the work), and
/// returns ACLNN_SUCCESS with a new executor. What `build` throws (a moe_ep::Error naming the broken rule)
/// is for the entry point's guard to report. The workspace size is kWorkspaceBytes.
aclnnStatus BuildExecutor(const char* op, uint64_t* workspace_size, aclOpExecutor** executor,
                          const std::function<OpWork()>& build);

/// Phase two: checks the executor may be launched (what `launchable` throws is the caller's error, and the executor
/// stays), enqueues its work on `stream` and takes ownership of it (a repeatable one stays live for the next launch).
aclnnStatus LaunchExecutor(const char* op, aclOpExecutor* executor, aclrtStream stream);

}  // namespace moe_ep::cann
