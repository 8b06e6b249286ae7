// Phase one / phase two plumbing shared by every aclnn operator: building, tracking and launching executors.
#include "cann/aclnn/executor.h"

#include <memory>

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

}  // namespace

aclnnStatus BuildExecutor(const char* op, uint64_t* workspace_size, aclOpExecutor** executor,
                          const std::function<std::function<void()>()>& build) {
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
  auto built = std::make_shared<aclOpExecutor>(aclOpExecutor{name, build()});
  *workspace_size = kWorkspaceBytes;
  *executor = static_cast<aclOpExecutor*>(Executors().Add(std::move(built)));
  return ACLNN_SUCCESS;
}

aclnnStatus LaunchExecutor(const char* op, aclOpExecutor* executor, aclrtStream stream) {
  if (!executor) {
    return Fail(ACLNN_ERR_PARAM_NULLPTR,
                std::string(op) + ": parameter 'executor' = nullptr violates rule: the executor phase one returned");
  }
  std::shared_ptr<aclOpExecutor> owned = Executors().Remove(executor);
  if (!owned) {
    return Fail(ACLNN_ERR_PARAM_INVALID,
                std::string(op) + ": the executor is not one phase one returned, or it ran already");
  }
  // What did not launch is given back: the caller may launch it again (on a good stream, with the right op).
  if (owned->op != op) {
    const std::string message = std::string(op) + ": the executor was built by " + owned->op;
    Executors().Restore(executor, std::move(owned));
    return Fail(ACLNN_ERR_PARAM_INVALID, message);
  }
  aclnnStatus status = ACLNN_SUCCESS;
  try {
    status = LaunchOnStream(stream, op, [owned] { owned->work(); });
  } catch (...) {  // not launched either (say, no memory for the task)
    Executors().Restore(executor, std::move(owned));
    throw;
  }
  if (status != ACLNN_SUCCESS) Executors().Restore(executor, std::move(owned));
  return status;
}

}  // namespace moe_ep::cann
