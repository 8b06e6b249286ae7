// The internal communicator: construction and the failed-ranks bookkeeping.
#include "ops/communicator.h"

#include <atomic>

#include "base/env.h"
#include "kernels/kernels.h"
#include "moe_ep/error.h"

namespace moe_ep::ops {

void CheckCommunicatorVariables(DataPath data_path, int threads, std::optional<env::Refusal>& first) {
  if (data_path == DataPath::kAuto)
    data_path = env::ReadOrRefuse("MOE_EP_DATA_PATH", env::DataPathChoice, data_path, first);
  if (data_path == DataPath::kAuto) {
    env::ReadOrRefuse("MOE_EP_CROSS_MEMORY", env::CrossMemoryChoice, env::CrossMemory::kAuto, first);
  }
  if (threads == 0)
    env::ReadOrRefuse(
        "MOE_EP_THREADS", [] { return env::Threads(1); }, 1, first);
  env::ReadOrRefuse(
      "MOE_EP_THREAD_MIN_BYTES", [] { return env::ThreadMinBytes(0); }, uint64_t{0}, first);
  env::ReadOrRefuse("MOE_EP_ISA", kernels::ActiveIsa, kernels::Isa::kScalar, first);
}

namespace {

uint64_t NextId() {
  static std::atomic<uint64_t> last{0};
  return ++last;
}

}  // namespace

Communicator::Communicator(std::unique_ptr<transport::Window> window, std::chrono::milliseconds timeout,
                           std::string name, DataPath data_path, int threads)
    : window_(std::move(window)),
      id_(NextId()),
      timeout_(timeout),
      name_(std::move(name)),
      workers_(std::make_unique<Workers>(threads > 0 ? threads : DefaultThreads(window_->LocalRanks()),
                                         env::ThreadMinBytes(kMinPartBytes))) {
  window_->Relabel("group '" + name_ + "'");
  if (data_path == DataPath::kAuto) data_path = env::DataPathChoice();
  if (data_path == DataPath::kPull) {
    pull_min_bytes_ = {0, 0};
  } else if (data_path == DataPath::kAuto) {
    const bool copy_as_pull = env::CrossMemoryChoice() == env::CrossMemory::kOn;
    pull_min_bytes_ = {kPullMinBytes, copy_as_pull ? kPullMinBytes : kCopyMinBytes};
  }
  if (window_->flag_count() != kWindowFlagCount) {
    throw Error(ErrorCode::kInternal, "communicator '" + name_ + "': its window has " +
                                          std::to_string(window_->flag_count()) + " flags, the operations need " +
                                          std::to_string(kWindowFlagCount));
  }
}

Communicator::~Communicator() {
  state_.dispatch_stage.Settle(*window_,
                               transport::Clock::now() + std::min<transport::Clock::duration>(kSettleTime, timeout_));
}

std::vector<int> Communicator::failed_ranks() const {
  std::lock_guard lock(failed_mutex_);
  return {failed_.begin(), failed_.end()};
}

void Communicator::RememberFailed(const std::vector<int>& ranks) {
  std::lock_guard lock(failed_mutex_);
  failed_.insert(ranks.begin(), ranks.end());
}

void Communicator::ForgetFailed(int rank) {
  std::lock_guard lock(failed_mutex_);
  failed_.erase(rank);
}

}  // namespace moe_ep::ops
