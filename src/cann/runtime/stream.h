// Stream: a queue of tasks run one at a time in launch order (by a worker thread of its own, or by a
// thread that waits for them), the failures the synchronizes report, and waiting for the tasks with or
// without a deadline, or for one of them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "cann/runtime/runtime.h"

namespace moe_ep::cann::runtime {

class Stream {
 public:
  /// What a synchronize found: ACL_SUCCESS, a task's failure ("op_name: what", reported as is), or a
  /// problem of the wait itself (a timeout; the caller prefixes its API name).
  struct Outcome {
    aclError code = ACL_SUCCESS;
    std::string message;
    bool task_failed = false;
  };

  /// How a launch reaches the worker.
  enum class Sync {
    /// Every launch wakes the worker, which starts the task at once.
    kWakeWorker,
    /// aclrtCreateStreamWithConfig's ACL_STREAM_FAST_SYNC, for a thread that synchronizes right after it
    /// launches: while the stream is in use (a launch in the last kFastSyncIdle), a launch does not wake the
    /// worker. The synchronize runs the task on the calling thread, or the worker, which looks at the queue
    /// every kFastSyncPoll meanwhile, starts it. That saves a thread wake-up and the hand-off back, most of
    /// a small operator's cost on few cores; a task nobody synchronizes may start up to kFastSyncPoll late.
    kFast,
  };
  static constexpr std::chrono::milliseconds kFastSyncPoll{1};
  static constexpr std::chrono::milliseconds kFastSyncIdle{100};

  /// Starts the worker. `name` identifies the stream in messages ("stream 0x..", "default stream of
  /// device 3"). Throws std::system_error when no thread can be started.
  Stream(int32_t device, std::string name, Sync sync = Sync::kWakeWorker);
  /// Shutdown().
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  int32_t device() const { return device_; }
  const std::string& name() const { return name_; }

  /// Appends a task and returns at once; false (nothing queued) once Shutdown() has begun.
  bool Launch(std::string op_name, StreamTask task);

  /// Appends a task, then waits until it has run, as a synchronize without a deadline waits (the calling thread
  /// runs it, and the tasks before it, itself where it can; not the tasks launched after it), and returns the
  /// task's own failure, which no synchronize reports then: the caller does. nullopt (nothing queued) once
  /// Shutdown() has begun. A task of this stream cannot wait for a task behind it: that is an error, as in
  /// Synchronize, and queues nothing.
  std::optional<Outcome> LaunchAndWait(std::string op_name, StreamTask task);

  /// Waits until every task launched before this call has run, for at most `timeout` when given. Returns
  /// a failure of those tasks (the last recorded) and forgets every failure of theirs, or, with `keep_failure` (a
  /// device's synchronize), the one not reported yet, which it reports once and leaves to the stream's own; or a
  /// timeout naming the running task; on a timeout the tasks go on. A worker must not wait for its own stream: that is
  /// an error too. Without a timeout, an application thread runs the tasks that have not started itself, in order and
  /// as the worker would (the stream's device current): a launch followed at once by a synchronize then
  /// costs no hand-off to the worker and back, which is most of a small operator's latency.
  Outcome Synchronize(std::optional<std::chrono::milliseconds> timeout, bool keep_failure = false);

  /// Lets the queued tasks finish, then joins the worker. Later launches are refused. Idempotent. Not for
  /// the stream's own worker (callers check OnStreamWorker()).
  void Shutdown();

  /// The stream whose worker is the calling thread, or nullptr.
  static const Stream* OfCallingThread();

 private:
  struct QueuedTask {
    uint64_t seq = 0;
    std::string op_name;
    StreamTask run;
    // Where its failure goes when a caller waits for this task alone (LaunchAndWait); null: to the synchronizes.
    std::shared_ptr<Outcome> waiter;
  };

  // Appends a task (see QueuedTask::waiter) and wakes the worker as the stream's Sync says; the task's seq, or 0
  // (nothing queued) once Shutdown() has begun.
  uint64_t Enqueue(std::string op_name, StreamTask task, std::shared_ptr<Outcome> waiter);
  // Waits, locked, until the tasks up to seq `target` have run, for at most `timeout` when given; false when it
  // ran out. Without a timeout, an application thread runs the tasks that have not started itself (up to
  // `target`), as Synchronize says.
  bool WaitUntilRan(std::unique_lock<std::mutex>& lock, uint64_t target,
                    std::optional<std::chrono::milliseconds> timeout);

  void WorkerLoop();
  // Runs the first queued task on the calling thread (the worker, or a synchronizer standing in for it)
  // and records its outcome. Called locked, with a task queued and none running; returns locked. Taking the task
  // allocates nothing; noexcept because running out of memory after that (in bookkeeping around the task) would
  // leave it neither run nor finished and every synchronizer waiting for good: the process ends instead.
  void RunFront(std::unique_lock<std::mutex>& lock, bool stand_in) noexcept;
  // Runs one task; returns its failure (ACL_SUCCESS when it returned normally).
  static Outcome Run(QueuedTask& task);

  // Waits, locked, until a task can start or the stream stops; a kFast stream's worker looks every
  // kFastSyncPoll while the stream is in use, then sleeps until a launch wakes it.
  void WaitForWork(std::unique_lock<std::mutex>& lock);

  const int32_t device_;
  const std::string name_;
  const Sync sync_;

  std::mutex mu_;
  std::condition_variable work_ready_;  // the worker waits for tasks or shutdown
  std::condition_variable work_done_;   // synchronizers wait for `completed_`
  std::deque<QueuedTask> queue_;
  uint64_t launched_ = 0;   // seq of the last launched task
  uint64_t completed_ = 0;  // seq of the last finished task
  // The running task's name, in the task; null when none runs (tasks run one at a time, whoever runs them).
  const std::string* running_ = nullptr;
  bool stopping_ = false;
  bool worker_asleep_ = false;  // waiting with no deadline: a launch must wake it
  // The failures no stream synchronize took yet, in launch order: those a device's synchronize reported, then the
  // first since (recorded only when every earlier one was reported). Each stays for the stream's own synchronize that
  // waits for its task, which may have begun before a later failure was recorded; the oldest reported ones give way
  // past kKeptFailures (device synchronizes with no stream synchronize between them).
  struct Failure {
    Outcome outcome;
    uint64_t seq = 0;
    bool reported = false;  // by a device's synchronize (it reports each once)
  };
  static constexpr size_t kKeptFailures = 16;
  std::deque<Failure> failures_;

  std::mutex shutdown_mu_;  // one joiner at a time
  std::thread worker_;      // last: starts after every other member exists
};

}  // namespace moe_ep::cann::runtime
