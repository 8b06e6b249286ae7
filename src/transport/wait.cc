// Waiting on flags with a deadline: spin, then yield, then sleep; on expiry (or when the interrupt check says so)
// name the missing ranks.
#include <algorithm>
#include <atomic>
#include <cassert>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "transport/window.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace moe_ep::transport {
namespace {

// Escalating back-off: the first polls spin (the common case on an idle core is a flag that lands
// within microseconds), later ones give the core away so oversubscribed ranks still progress, then nap:
// 5 us at first, doubling every 64 naps up to the window's longest.
class Backoff {
 public:
  explicit Backoff(Clock::duration longest_nap) : longest_nap_(longest_nap) {}
  // Spins or yields once, or returns how long to nap (NapUnless).
  Clock::duration Pause() {
    ++polls_;
    if (polls_ < 64) {
#if defined(__x86_64__)
      _mm_pause();
#endif
      return Clock::duration::zero();
    }
    if (polls_ < 256) {
      std::this_thread::yield();
      return Clock::duration::zero();
    }
    const uint64_t doublings = std::min<uint64_t>((polls_ - 256) / 64, 20);
    return std::min<Clock::duration>(std::chrono::microseconds(5) * (uint64_t{1} << doublings), longest_nap_);
  }
  // A message advanced: poll again soon, as more of it may be there.
  void KeepAwake() { polls_ = std::min<uint64_t>(polls_, 64); }

 private:
  Clock::duration longest_nap_;
  uint64_t polls_ = 0;
};

std::atomic<bool (*)()> g_interrupt_check{nullptr};

// "<op>: <how> on rank R of <window> waiting for <what> (call E) from <ranks>", how a failed wait begins.
std::string FailedWait(const Window& window, const std::vector<int>& ranks, const char* op, const char* how,
                       const char* what, uint64_t epoch) {
  std::ostringstream msg;
  msg << op << ": " << how << " on rank " << window.rank() << " of " << window.name() << " waiting for " << what;
  if (epoch) msg << " (call " << epoch << ")";
  msg << " from " << RanksNamed(ranks);
  return msg.str();
}

[[noreturn]] void ThrowInterrupted(const Window& window, const std::vector<int>& ranks, const char* op,
                                   const char* what, uint64_t epoch) {
  // A barrier leaves nothing part-way (the native Barrier is the only caller): no reset to advise.
  const bool barrier = std::string_view(op) == "Barrier";
  throw InterruptedError(
      FailedWait(window, ranks, op, "interrupted", what, epoch) +
          (barrier ? ""
                   : "; reset the group (BufferReset; aclnnMoeDistributeBufferReset in the C API) before its next "
                     "operation"),
      ranks);
}

[[noreturn]] void ThrowTimeout(const Window& window, const std::vector<int>& ranks, const char* op, const char* what,
                               uint64_t epoch) {
  throw TimeoutError(FailedWait(window, ranks, op, "timed out", what, epoch) +
                         "; they did not arrive before the deadline (MOE_EP_TIMEOUT_MS, GroupOptions::timeout, or for "
                         "the C API HCCL_EXEC_TIMEOUT)" +
                         window.ExplainMissing(ranks),
                     ranks);
}

}  // namespace

bool InterruptRequested() noexcept {
  bool (*check)() = g_interrupt_check.load(std::memory_order_acquire);
  // A check that throws asks for the interrupt: its exception must not leave a wait whose worker threads still run
  // the caller's code (Workers::ForEachPart), nor a destructor's or a noexcept function's.
  try {
    return check != nullptr && check();
  } catch (...) {
    return true;
  }
}

void WaitUntil(const Window& window, Clock::time_point deadline, const char* op, const char* what, uint64_t epoch,
               const std::function<bool()>& done, const std::function<std::vector<int>()>& missing,
               const Window* also_progress) {
  // Flags that are there already need no poll: with more ranks than cores an MPI poll that finds nothing
  // gives the core away, and combine waits once per token.
  if (done()) return window.Flush();
  // A nap must not leave the other window's messages unlanded for longer than it allows.
  Backoff backoff(also_progress == nullptr ? window.LongestNap()
                                           : std::min(window.LongestNap(), also_progress->LongestNap()));
  Clock::time_point next_interrupt_check = Clock::now() + kInterruptCheckEvery;
  for (;;) {
    // Both windows progress on every poll (not ||: the second must not wait for the first to be idle).
    const bool advanced_here = window.Progress();
    const bool advanced = (also_progress != nullptr && also_progress->Progress()) || advanced_here;
    if (done()) return;
    const Clock::time_point now = Clock::now();
    if (now >= deadline) ThrowTimeout(window, missing(), op, what, epoch);
    if (now >= next_interrupt_check) {
      next_interrupt_check = now + kInterruptCheckEvery;
      if (InterruptRequested()) ThrowInterrupted(window, missing(), op, what, epoch);
    }
    if (advanced) {
      // Poll again at once: what made a message advance (one landed, a send finished) often lets
      // the next one start.
      backoff.KeepAwake();
      continue;
    }
    // Messages still moving need no hot loop: the kernel's socket buffers keep a link busy between polls,
    // and the core a hot loop burns is what the ranks with work to do, and the network stack, lack.
    const Clock::duration nap = std::min({backoff.Pause(), deadline - now, next_interrupt_check - now});
    if (nap > Clock::duration::zero() && window.NapUnless(done, nap)) return;
  }
}

void WaitFlags(const Window& window, std::span<const uint64_t> indices, uint32_t epoch, Clock::time_point deadline,
               const std::function<int(uint64_t)>& rank_of, const char* op, const char* what,
               const Window* also_progress) {
  assert(epoch != 0 && "zeroed flags carry epoch 0: waiting for it would pass at once");
  std::vector<uint64_t> pending(indices.begin(), indices.end());
  const auto done = [&] {
    std::erase_if(pending, [&](uint64_t i) { return FlagEpoch(window.ReadFlag(i)) == epoch; });
    return pending.empty();
  };
  const auto missing = [&] {
    std::set<int> ranks;
    for (uint64_t i : pending) ranks.insert(rank_of(i));
    return std::vector<int>(ranks.begin(), ranks.end());
  };
  WaitUntil(window, deadline, op, what, epoch, done, missing, also_progress);
}

uint64_t WaitFlag(const Window& window, uint64_t index, uint32_t epoch, Clock::time_point deadline, int from_rank,
                  const char* op, const char* what) {
  assert(epoch != 0 && "zeroed flags carry epoch 0: waiting for it would pass at once");
  WaitUntil(
      window, deadline, op, what, epoch, [&] { return FlagEpoch(window.ReadFlag(index)) == epoch; },
      [&] { return std::vector<int>{from_rank}; });
  return window.ReadFlag(index);
}

}  // namespace moe_ep::transport

void moe_ep::SetInterruptCheck(bool (*check)()) {
  transport::g_interrupt_check.store(check, std::memory_order_release);
}
