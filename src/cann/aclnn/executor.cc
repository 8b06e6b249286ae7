// Phase one / phase two plumbing shared by every aclnn operator: building, tracking and launching executors.
#include "cann/aclnn/executor.h"

#include <memory>
#include <vector>

#include "cann/guard.h"
#include "cann/runtime/handle_registry.h"
#include "cann/runtime/runtime.h"

namespace moe_ep::cann {
namespace {

// Executors built and not yet launched. Their handles are tokens that never repeat: launching anything
// else (a made-up pointer, an executor that ran already, even once a new one took its memory) is an error,
// never a crash or another executor's work.
runtime::HandleRegistry<aclOpExecutor>& Executors() {
  static auto* const executors = new runtime::HandleRegistry<aclOpExecutor>(runtime::kExecutorHandleTag);
  return *executors;
}

// The tensor memory phase one noted on this thread, while BuildExecutor runs `build`.
thread_local std::vector<const void*>* g_noted_memory = nullptr;

}  // namespace

void NoteTensorMemory(const void* data) {
  if (g_noted_memory != nullptr) g_noted_memory->push_back(data);
}

aclnnStatus BuildExecutor(const char* op, uint64_t* workspace_size, aclOpExecutor** executor,
                          const std::function<OpWork()>& build) {
  const std::string name = op;
  if (!workspace_size) {
    return Fail(
        ACLNN_ERR_PARAM_NULLPTR,
        name + ": parameter 'workspaceSize' = nullptr violates rule: phase one writes the workspace size there");
  }
  if (!executor) {
    return Fail(ACLNN_ERR_PARAM_NULLPTR,
                name + ": parameter 'executor' = nullptr violates rule: phase one writes the executor there");
  }
  auto built = std::make_shared<aclOpExecutor>();
  std::vector<const void*> noted;
  struct Noting {
    explicit Noting(std::vector<const void*>* to) { g_noted_memory = to; }
    ~Noting() { g_noted_memory = nullptr; }
  } noting(&noted);
  OpWork work = build();
  built->memory = AllocationsHolding(noted, name);
  built->work = std::move(work.run);
  built->launchable = std::move(work.launchable);
  built->op = name;
  built->device = CurrentDevice();
  *workspace_size = kWorkspaceBytes;
  *executor = static_cast<aclOpExecutor*>(Executors().Add(std::move(built)));
  return ACLNN_SUCCESS;
}

aclnnStatus LaunchExecutor(const char* op, aclOpExecutor* executor, aclrtStream stream) {
  if (!executor) {
    return Fail(ACLNN_ERR_PARAM_NULLPTR,
                std::string(op) + ": parameter 'executor' = nullptr violates rule: the executor phase one returned");
  }
  if (std::shared_ptr<aclOpExecutor> kept = Executors().Find(executor); kept && kept->repeatable) {
    if (kept->op != op) {
      return Fail(ACLNN_ERR_PARAM_INVALID, std::string(op) + ": the executor was built by " + kept->op);
    }
    if (kept->launchable) kept->launchable();
    auto hold = std::make_shared<const MemoryHold>(kept->memory, op);
    return LaunchOnStream(
        stream, op, [kept, hold] { kept->work(); }, nullptr, kept->device);
  }
  std::shared_ptr<aclOpExecutor> owned = Executors().Remove(executor);
  if (!owned) {
    return Fail(ACLNN_ERR_PARAM_INVALID, std::string(op) +
                                             ": the executor is not one phase one returned, or it ran already (only "
                                             "one made repeatable with aclSetAclOpExecutorRepeatable runs again)");
  }
  // What did not launch is given back: the caller may launch it again (on a good stream, with the right op).
  if (owned->op != op) {
    const std::string message = std::string(op) + ": the executor was built by " + owned->op;
    Executors().Restore(executor, std::move(owned));
    return Fail(ACLNN_ERR_PARAM_INVALID, message);
  }
  aclnnStatus status = ACLNN_SUCCESS;
  try {
    if (owned->launchable) owned->launchable();
    auto hold = std::make_shared<const MemoryHold>(owned->memory, op);
    status = LaunchOnStream(
        stream, op, [owned, hold] { owned->work(); }, nullptr, owned->device);
  } catch (...) {  // not launched either (refused, or no memory for the task)
    Executors().Restore(executor, std::move(owned));
    throw;
  }
  if (status != ACLNN_SUCCESS) Executors().Restore(executor, std::move(owned));
  return status;
}

}  // namespace moe_ep::cann

using moe_ep::cann::ApiFamily;
using moe_ep::cann::Fail;
using moe_ep::cann::Guarded;

// As CANN's: a repeatable executor runs at each launch, with its tensors' contents at that time, until destroyed.
// A null executor is 561103 (ACLNN_ERR_INNER_NULLPTR) for both, as CANN documents; one that is not live, 161002.
extern "C" aclnnStatus aclSetAclOpExecutorRepeatable(aclOpExecutor* executor) {
  return Guarded("aclSetAclOpExecutorRepeatable", ApiFamily::kAclnn, [&]() -> aclnnStatus {
    if (!executor) {
      return Fail(ACLNN_ERR_INNER_NULLPTR, "aclSetAclOpExecutorRepeatable: parameter 'executor' is nullptr");
    }
    std::shared_ptr<aclOpExecutor> found = moe_ep::cann::Executors().Find(executor);
    if (!found) {
      return Fail(ACLNN_ERR_PARAM_INVALID,
                  "aclSetAclOpExecutorRepeatable: parameter 'executor' is not a live executor "
                  "(phase one returned it, and it has not run or been destroyed)");
    }
    found->repeatable = true;
    return ACLNN_SUCCESS;
  });
}

// Any live executor: one not launched yet (its work never runs), or a repeatable one (launches already made run).
extern "C" aclnnStatus aclDestroyAclOpExecutor(aclOpExecutor* executor) {
  return Guarded("aclDestroyAclOpExecutor", ApiFamily::kAclnn, [&]() -> aclnnStatus {
    if (!executor) return Fail(ACLNN_ERR_INNER_NULLPTR, "aclDestroyAclOpExecutor: parameter 'executor' is nullptr");
    if (!moe_ep::cann::Executors().Remove(executor)) {
      return Fail(ACLNN_ERR_PARAM_INVALID,
                  "aclDestroyAclOpExecutor: parameter 'executor' is not a live executor "
                  "(phase one returned it, and it has not run or been destroyed)");
    }
    return ACLNN_SUCCESS;
  });
}
