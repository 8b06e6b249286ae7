// Phase one / phase two plumbing shared by every aclnn operator: building, tracking and launching executors.
#include "cann/aclnn/executor.h"

#include <memory>
#include <mutex>
#include <set>

#include "cann/runtime/runtime.h"

namespace moe_ep::cann {
namespace {

// Executors built and not yet launched: launching anything else is an error, not a crash.
class LiveExecutors {
 public:
  void Add(aclOpExecutor* e) {
    std::lock_guard lock(mutex_);
    live_.insert(e);
  }
  bool Take(aclOpExecutor* e) {
    std::lock_guard lock(mutex_);
    return live_.erase(e) > 0;
  }

 private:
  std::mutex mutex_;
  std::set<aclOpExecutor*> live_;
};

LiveExecutors& Executors() {
  static LiveExecutors* executors = new LiveExecutors;
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
  auto built = std::make_unique<aclOpExecutor>(aclOpExecutor{name, build()});
  Executors().Add(built.get());
  *workspace_size = 0;
  *executor = built.release();
  return ACLNN_SUCCESS;
}

aclnnStatus LaunchExecutor(const char* op, aclOpExecutor* executor, aclrtStream stream) {
  if (!executor) {
    return Fail(ACLNN_ERR_PARAM_NULLPTR,
                std::string(op) + ": parameter 'executor' = nullptr violates rule: the executor phase one returned");
  }
  if (!Executors().Take(executor)) {
    return Fail(ACLNN_ERR_PARAM_INVALID,
                std::string(op) + ": the executor is not one phase one returned, or it ran already");
  }
  std::shared_ptr<aclOpExecutor> owned(executor);
  if (owned->op != op) {
    return Fail(ACLNN_ERR_PARAM_INVALID, std::string(op) + ": the executor was built by " + owned->op);
  }
  return LaunchOnStream(stream, op, [owned] { owned->work(); });
}

}  // namespace moe_ep::cann
