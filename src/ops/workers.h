// Worker threads inside one rank: an operation splits its row copies and token sums over them (as the
// NPU splits rows over its cores). Each piece of work writes its own rows, so results are the same bits
// for every thread count.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moe_ep::ops {

class Workers {
 public:
  /// `threads` >= 1 in all, the caller's own thread included (threads - 1 are started here); a helper is
  /// woken only for a part of at least `min_part_bytes` of rows.
  Workers(int threads, uint64_t min_part_bytes);
  ~Workers();
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  int threads() const { return static_cast<int>(helpers_.size()) + 1; }

  /// Runs body(part, begin, end) over [0, n), items of about `item_bytes` each, cut into PartsFor(n,
  /// item_bytes) contiguous parts, part 0 on the calling thread, and returns when all are done; the first
  /// exception a part threw is rethrown then. While it waits for the helpers the calling thread asks the interrupt
  /// check, and one that said yes ends the call with InterruptedError (naming no rank) where no part threw.
  /// One call at a time (an operation holds its communicator's lock).
  void ForEachPart(int64_t n, uint64_t item_bytes,
                   const std::function<void(int part, int64_t begin, int64_t end)>& body);

  /// How many parts [0, n) is cut into: at most threads() and n, each of at least min_part_bytes (at
  /// least 1). Waking a helper and waiting for it costs about as much as copying 100 KiB (tens of
  /// microseconds), so a few tokens' rows are copied by the calling thread alone.
  int PartsFor(int64_t n, uint64_t item_bytes) const;

 private:
  void Serve(int helper);
  // Wakes every helper to end, and joins them.
  void Stop() noexcept;

  uint64_t min_part_bytes_;
  std::vector<std::thread> helpers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  uint64_t round_ = 0;  // counts calls; a helper runs each round once
  int busy_ = 0;        // helpers still running this round's parts
  bool stopping_ = false;
  int64_t n_ = 0;
  int parts_ = 0;
  const std::function<void(int, int64_t, int64_t)>* body_ = nullptr;
  std::exception_ptr error_;
};

/// The default thread count of a rank: the cores the calling thread may run on (its CPU affinity, the process's
/// unless the program pinned the thread) shared out among `local_ranks` ranks, 1 to env::kMaxThreads (MOE_EP_THREADS
/// overrides it).
int DefaultThreads(int local_ranks);

/// The least work a helper is woken for, in bytes of rows (MOE_EP_THREAD_MIN_BYTES overrides it).
inline constexpr uint64_t kMinPartBytes = 128 << 10;

}  // namespace moe_ep::ops
