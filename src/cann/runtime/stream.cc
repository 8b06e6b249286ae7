// Stream: the worker loop, failure recording and (timed) synchronization.
#include "cann/runtime/stream.h"

#include <algorithm>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "cann/guard.h"
#include "cann/runtime/internal.h"
#include "moe_ep/error.h"

namespace moe_ep::cann::runtime {
namespace {

thread_local const Stream* t_worker_of = nullptr;

}  // namespace

Stream::Stream(int32_t device, std::string name, Sync sync) : device_(device), name_(std::move(name)), sync_(sync) {
  worker_ = std::thread([this] { WorkerLoop(); });
}

Stream::~Stream() { Shutdown(); }

const Stream* Stream::OfCallingThread() { return t_worker_of; }

bool Stream::Launch(std::string op_name, StreamTask task) {
  return Enqueue(std::move(op_name), std::move(task), nullptr) != 0;
}

uint64_t Stream::Enqueue(std::string op_name, StreamTask task, std::shared_ptr<Outcome> waiter) {
  bool wake = true;
  uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return 0;
    // Count the task only once it is queued: a push_back that throws must not leave a task to wait for.
    queue_.push_back(QueuedTask{launched_ + 1, std::move(op_name), std::move(task), std::move(waiter)});
    seq = ++launched_;
    wake = sync_ == Sync::kWakeWorker || worker_asleep_;
  }
  if (wake) work_ready_.notify_one();
  return seq;
}

std::optional<Stream::Outcome> Stream::LaunchAndWait(std::string op_name, StreamTask task) {
  if (t_worker_of == this) {
    return Outcome{ACL_ERROR_INVALID_PARAM, "a task of " + name_ + " cannot wait for a task launched behind it on " +
                                                name_ + ": it would wait for itself forever"};
  }
  // Shared with the queued task: RunFront writes the outcome before the task counts as run, whoever runs it.
  auto outcome = std::make_shared<Outcome>();
  const uint64_t seq = Enqueue(std::move(op_name), std::move(task), outcome);
  if (seq == 0) return std::nullopt;
  std::unique_lock<std::mutex> lock(mu_);
  WaitUntilRan(lock, seq, std::nullopt);
  return std::move(*outcome);
}

bool Stream::WaitUntilRan(std::unique_lock<std::mutex>& lock, uint64_t target,
                          std::optional<std::chrono::milliseconds> timeout) {
  auto done = [&] { return completed_ >= target; };
  // With a deadline it only waits: a task it ran itself could not be interrupted at the deadline. A
  // worker of another stream only waits too, keeping its own device.
  if (!timeout && t_worker_of == nullptr) {
    while (!done() && !running_ && !queue_.empty()) RunFront(lock, /*stand_in=*/true);
  }
  // A waiter that does not run the tasks itself wakes a kFast stream's worker rather than leave them to
  // its next look at the queue.
  if (sync_ == Sync::kFast && !done() && !running_) work_ready_.notify_one();
  if (timeout) return work_done_.wait_until(lock, std::chrono::steady_clock::now() + *timeout, done);
  WaitAskingTheInterruptCheck(work_done_, lock, done);
  return true;
}

Stream::Outcome Stream::Synchronize(std::optional<std::chrono::milliseconds> timeout, bool keep_failure) {
  if (t_worker_of == this) {
    return {ACL_ERROR_INVALID_PARAM,
            "a task of " + name_ + " cannot wait for " + name_ + ": it would wait for itself forever"};
  }
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t target = launched_;
  if (!WaitUntilRan(lock, target, timeout)) {
    const std::string running = running_ ? "'" + *running_ + "'" : std::string("no task");
    return {ACL_ERROR_RT_STREAM_SYNC_TIMEOUT,
            name_ + " (device " + std::to_string(device_) + ") did not finish within " +
                std::to_string(timeout->count()) + " ms: " + running + " is running with " +
                std::to_string(queue_.size()) + " more task(s) queued; the tasks go on running"};
  }
  // A failure of a task launched after this call stays for the synchronize that waits for that task.
  const auto after_target =
      std::find_if(failures_.begin(), failures_.end(), [&](const Failure& f) { return f.seq > target; });
  if (after_target == failures_.begin()) return {};
  Failure& last = *std::prev(after_target);
  if (keep_failure) {
    if (std::exchange(last.reported, true)) return {};
    return last.outcome;
  }
  Outcome failure = std::move(last.outcome);
  failures_.erase(failures_.begin(), after_target);
  return failure;
}

void Stream::Shutdown() {
  std::lock_guard<std::mutex> joiner(shutdown_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_ready_.notify_one();
  // The callers (aclrtDestroyStream, aclFinalize) refuse to run on a stream worker, so this never joins
  // the calling thread; the check only turns that mistake into a no-op instead of a deadlock.
  if (!worker_.joinable() || t_worker_of == this) return;
  worker_.join();
}

Stream::Outcome Stream::Run(QueuedTask& task) {
  try {
    task.run();
    return {};
  } catch (const moe_ep::Error& e) {
    return {static_cast<aclError>(e.code()), NamedByEntryPoint(task.op_name, e.what()), /*task_failed=*/true};
  } catch (const std::exception& e) {
    return {ACL_ERROR_RT_INTERNAL_ERROR, NamedByEntryPoint(task.op_name, e.what()), /*task_failed=*/true};
  } catch (...) {
    return {ACL_ERROR_RT_INTERNAL_ERROR, task.op_name + ": unknown exception", /*task_failed=*/true};
  }
}

void Stream::RunFront(std::unique_lock<std::mutex>& lock, bool stand_in) noexcept {
  // Taking the task allocates nothing (a task's move does not): the name shown while it runs is the task's own.
  QueuedTask task = std::move(queue_.front());
  queue_.pop_front();
  running_ = &task.op_name;  // read by a timed-out synchronize, under the lock
  lock.unlock();
  Outcome outcome;
  if (stand_in) {
    // As on the worker: the stream's device, the rule that a task cannot wait for its own stream, and
    // messages of the task's own (its failure reaches the caller as the synchronize's).
    t_worker_of = this;
    RunAsWorkerOf(device_, [&] { RunWithOwnRecentError([&] { outcome = Run(task); }); });
    t_worker_of = nullptr;
  } else {
    outcome = Run(task);
  }
  // Release what the task captured before anyone learns it finished: a synchronize that returns may
  // free memory the captures still point to.
  task.run = nullptr;
  lock.lock();
  running_ = nullptr;
  if (task.waiter != nullptr) {
    *task.waiter = std::move(outcome);  // its caller reports it
  } else if (outcome.code != ACL_SUCCESS && (failures_.empty() || failures_.back().reported)) {
    // After a reported one, so that a later device synchronize reports it and the stream's own gives its message.
    failures_.push_back({std::move(outcome), task.seq, false});
    if (failures_.size() > kKeptFailures) failures_.pop_front();
  }
  completed_ = task.seq;
  work_done_.notify_all();
  // The worker may have found the stream busy with tasks queued, or stopping (a destroy waits to join it).
  if (stand_in && (!queue_.empty() || stopping_)) work_ready_.notify_one();
}

void Stream::WaitForWork(std::unique_lock<std::mutex>& lock) {
  auto ready = [&] { return !running_ && (!queue_.empty() || stopping_); };
  if (sync_ == Sync::kFast) {
    uint64_t seen = launched_;
    auto quiet_until = std::chrono::steady_clock::now() + kFastSyncIdle;
    while (!ready() && std::chrono::steady_clock::now() < quiet_until) {
      work_ready_.wait_for(lock, kFastSyncPoll);
      if (launched_ != seen) {  // still in use, even if every task was run by its synchronizer
        seen = launched_;
        quiet_until = std::chrono::steady_clock::now() + kFastSyncIdle;
      }
    }
    if (ready()) return;
  }
  worker_asleep_ = true;
  work_ready_.wait(lock, ready);
  worker_asleep_ = false;
}

void Stream::WorkerLoop() {
  t_worker_of = this;
  PinWorkerDevice(device_);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    WaitForWork(lock);
    if (queue_.empty()) return;  // stopping, and every task has run
    RunFront(lock, /*stand_in=*/false);
  }
}

}  // namespace moe_ep::cann::runtime
