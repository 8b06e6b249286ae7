// Worker threads: helpers sleep on a condition variable between calls; each call cuts [0, n) into
// contiguous parts, one per thread.
#include "ops/workers.h"

#include <sched.h>

#include <algorithm>
#include <string>
#include <system_error>

#include "base/env.h"
#include "base/floating_point.h"
#include "moe_ep/error.h"
#include "transport/window.h"

namespace moe_ep::ops {

Workers::Workers(int threads, uint64_t min_part_bytes) : min_part_bytes_(min_part_bytes) {
  try {
    for (int i = 1; i < std::max(threads, 1); ++i) helpers_.emplace_back([this, i] { Serve(i); });
  } catch (const std::system_error& e) {
    // The helpers started must end before their vector goes (a joinable thread's destructor ends the process).
    const size_t started = helpers_.size() + 1;  // the caller's own thread is the first
    Stop();
    throw Error(ErrorCode::kInternal,
                "cannot start worker thread " + std::to_string(started + 1) + " of " + std::to_string(threads) +
                    " (GroupOptions::threads or MOE_EP_THREADS, per rank): " + e.what() +
                    "; rule: the system's limits on threads and memory (ulimit -u, -v, max_map_count) must allow "
                    "every rank's threads");
  } catch (...) {  // memory for the vector or a thread's state
    Stop();
    throw;
  }
}

Workers::~Workers() { Stop(); }

void Workers::Stop() noexcept {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& helper : helpers_) helper.join();
  helpers_.clear();
}

namespace {
// Part `part` of `parts` over [0, n): contiguous, the first n % parts parts one longer.
std::pair<int64_t, int64_t> PartRange(int64_t n, int parts, int part) {
  const int64_t base = n / parts, extra = n % parts;
  const int64_t begin = part * base + std::min<int64_t>(part, extra);
  return {begin, begin + base + (part < extra ? 1 : 0)};
}
}  // namespace

int Workers::PartsFor(int64_t n, uint64_t item_bytes) const {
  const uint64_t items = static_cast<uint64_t>(std::max<int64_t>(n, 1));
  uint64_t parts = std::min<uint64_t>(threads(), items);
  if (min_part_bytes_ > 0) {
    const uint64_t bytes = item_bytes > UINT64_MAX / items ? UINT64_MAX : items * item_bytes;
    parts = std::min(parts, std::max<uint64_t>(1, bytes / min_part_bytes_));
  }
  return static_cast<int>(parts);
}

void Workers::ForEachPart(int64_t n, uint64_t item_bytes,
                          const std::function<void(int part, int64_t begin, int64_t end)>& body) {
  const int parts = PartsFor(n, item_bytes);
  if (parts == 1) {
    body(0, 0, n);
    return;
  }
  {
    const std::lock_guard lock(mutex_);
    n_ = n, parts_ = parts, body_ = &body, error_ = nullptr;
    busy_ = static_cast<int>(helpers_.size());
    ++round_;
  }
  wake_.notify_all();
  std::exception_ptr mine;
  try {
    const auto [begin, end] = PartRange(n, parts, 0);
    body(0, begin, end);
  } catch (...) {
    mine = std::current_exception();
  }
  std::unique_lock lock(mutex_);
  // The parts still running may be waiting for peers. This thread asks the interrupt check meanwhile, as their
  // waits do: a check that answers only on the program's main thread (Python's signal check) reaches them so. An
  // interrupt it was told of ends the call as their waits would, even where their parts then finished.
  bool interrupted = false;
  while (!done_.wait_for(lock, transport::kInterruptCheckEvery, [&] { return busy_ == 0; })) {
    lock.unlock();
    interrupted = transport::InterruptRequested() || interrupted;
    lock.lock();
  }
  body_ = nullptr;
  if (mine) std::rethrow_exception(mine);
  if (error_) std::rethrow_exception(error_);
  if (interrupted) {
    throw InterruptedError(
        "interrupted (the interrupt check said so) while this rank's worker threads ran; reset the "
        "group (BufferReset; aclnnMoeDistributeBufferReset in the C API) before its next operation",
        {});
  }
}

void Workers::Serve(int helper) {
  const DefaultFloatingPoint arithmetic;  // not the settings of the thread that made the group
  uint64_t seen = 0;
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || round_ != seen; });
    if (stopping_) return;
    seen = round_;
    const int parts = parts_;
    const int64_t n = n_;
    const auto* body = body_;
    lock.unlock();
    std::exception_ptr error;
    if (helper < parts) {
      try {
        const auto [begin, end] = PartRange(n, parts, helper);
        (*body)(helper, begin, end);
      } catch (...) {
        error = std::current_exception();
      }
    }
    lock.lock();
    if (error && !error_) error_ = error;
    if (--busy_ == 0) done_.notify_one();
  }
}

int DefaultThreads(int local_ranks) {
  // The cores the calling thread may run on (a container or taskset pins the process to fewer than the machine has).
  cpu_set_t allowed;
  const int cores = sched_getaffinity(0, sizeof allowed, &allowed) == 0
                        ? CPU_COUNT(&allowed)
                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return env::Threads(std::clamp(cores / std::max(local_ranks, 1), 1, env::kMaxThreads));
}

}  // namespace moe_ep::ops
