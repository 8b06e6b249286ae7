// Load/store window: puts copied in place (CopyBytes), release/acquire flags with a futex doorbell for napping
// waits, page-dropping clear.
#include "transport/load_store_window.h"

#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>

#include "base/copy.h"
#include "moe_ep/error.h"

namespace moe_ep::transport {
namespace {

std::atomic_ref<uint64_t> FlagRef(uint64_t* flags, uint64_t index) { return std::atomic_ref<uint64_t>(flags[index]); }

// Zeroes [p, p + bytes): whole pages are dropped (they read back as zero and stop costing memory),
// the unaligned edges are written.
void ZeroRange(uint8_t* p, uint64_t bytes) {
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));  // 64 KiB on some aarch64 kernels
  const auto begin = reinterpret_cast<uintptr_t>(p);
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = (begin + bytes) / page * page;
  if (last <= first) {
    std::memset(p, 0, bytes);
    return;
  }
  std::memset(p, 0, first - begin);
  std::memset(reinterpret_cast<void*>(last), 0, begin + bytes - last);
  // Shared memory needs MADV_REMOVE (DONTNEED would bring the old contents back); a private anonymous
  // mapping refuses REMOVE with EINVAL (no file) and zero-fills after DONTNEED. Any other refusal may be a shared
  // mapping's (a file system that cannot punch holes): written over then.
  void* pages = reinterpret_cast<void*>(first);
  if (madvise(pages, last - first, MADV_REMOVE) != 0 &&
      (errno != EINVAL || madvise(pages, last - first, MADV_DONTNEED) != 0)) {
    std::memset(reinterpret_cast<void*>(first), 0, last - first);
  }
}

}  // namespace

void LoadStoreWindow::CheckPeer(int peer, const char* what) const {
  if (peer < 0 || peer >= size()) {
    throw Error(ErrorCode::kInternal, std::string(what) + " to rank " + std::to_string(peer) + " of a " +
                                          std::to_string(size()) + "-rank window (" + name() + ")");
  }
}

// The doorbell after the flags: a futex word (its rings) and a count of the threads napping on it, on the next cache
// line of their own (a napper's count does not share a line with the flags peers store).
constexpr uint64_t kCacheLine = 64;

uint64_t FlagAreaBytes(uint64_t flag_count, int size) {
  return (flag_count + Window::TransportFlagCount(size)) * sizeof(uint64_t) + 2 * kCacheLine;
}

uint32_t* LoadStoreWindow::Doorbell(int r) const {
  const auto end_of_flags = reinterpret_cast<uintptr_t>(regions_[r].flags + all_flag_count());
  return reinterpret_cast<uint32_t*>((end_of_flags + kCacheLine - 1) / kCacheLine * kCacheLine);
}

void LoadStoreWindow::CheckFlag(int peer, uint64_t index, const char* what) const {
  if (index >= all_flag_count()) {
    throw Error(ErrorCode::kInternal, std::string(what) + " of flag " + std::to_string(index) + " beyond the " +
                                          std::to_string(all_flag_count()) + " flags of rank " + std::to_string(peer) +
                                          "'s window");
  }
}

LoadStoreWindow::LoadStoreWindow(int rank, std::vector<RankRegion> regions, uint64_t data_bytes, uint64_t flag_count,
                                 std::string name, std::shared_ptr<void> keepalive, bool one_address_space)
    : Window(rank, static_cast<int>(regions.size()), data_bytes, flag_count, std::move(name)),
      regions_(std::move(regions)),
      keepalive_(std::move(keepalive)),
      one_address_space_(one_address_space) {}

void LoadStoreWindow::Put(int peer, uint64_t offset, const void* src, uint64_t bytes) {
  CheckPeer(peer, "put");
  if (offset > data_bytes() || bytes > data_bytes() - offset) {  // written so that it cannot wrap
    throw Error(ErrorCode::kInternal, "put of " + std::to_string(bytes) + " bytes at offset " + std::to_string(offset) +
                                          " overruns the " + std::to_string(data_bytes()) + "-byte window of rank " +
                                          std::to_string(peer));
  }
  CopyBytes(regions_[peer].data + offset, src, bytes);
}

void LoadStoreWindow::Signal(int peer, uint64_t index, uint64_t value) {
  CheckPeer(peer, "signal");
  CheckFlag(peer, index, "signal");
  FlagRef(regions_[peer].flags, index).store(value, std::memory_order_release);
  Ring(peer);
}

void LoadStoreWindow::SignalAll(std::span<const FlagWrite> writes) {
  for (const FlagWrite& w : writes) {
    CheckPeer(w.peer, "signal");
    CheckFlag(w.peer, w.index, "signal");
    FlagRef(regions_[w.peer].flags, w.index).store(w.value, std::memory_order_release);
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);  // one for every write (see Ring)
  // Once per run of writes to one peer (dispatch's counts come grouped by peer); a second ring costs a load, or a
  // wake-up if the peer naps.
  for (size_t i = 0; i < writes.size(); ++i) {
    if (i == 0 || writes[i].peer != writes[i - 1].peer) Ring(writes[i].peer, /*fenced=*/true);
  }
}

uint64_t LoadStoreWindow::CompareExchangeFlag(int peer, uint64_t index, uint64_t expected, uint64_t desired) {
  CheckPeer(peer, "compare-exchange");
  CheckFlag(peer, index, "compare-exchange");
  FlagRef(regions_[peer].flags, index).compare_exchange_strong(expected, desired, std::memory_order_acq_rel);
  Ring(peer);
  return expected;  // what the flag held: `desired` was stored only if that is what the caller expected
}

uint64_t LoadStoreWindow::Expose(int peer, const void* p, uint64_t bytes) const {
  CheckPeer(peer, "expose");
  (void)bytes;
  return one_address_space_ ? reinterpret_cast<uintptr_t>(p) : 0;
}

const uint8_t* LoadStoreWindow::Resolve(int peer, uint64_t token, uint64_t bytes) const {
  CheckPeer(peer, "resolve");
  (void)bytes;
  return one_address_space_ ? reinterpret_cast<const uint8_t*>(static_cast<uintptr_t>(token)) : nullptr;
}

uint64_t LoadStoreWindow::ReadFlag(uint64_t index) const {
  assert(index < all_flag_count());
  return FlagRef(regions_[rank()].flags, index).load(std::memory_order_acquire);
}

// The futex calls are not private to the process: a doorbell in shared memory is rung from other processes.
void LoadStoreWindow::Ring(int peer, bool fenced) const {
  uint32_t* bell = Doorbell(peer);
  // Against NapUnless's count-then-check: either the napping thread's check sees the flag just stored, or this
  // load sees it counted (and the ring ends its nap, or its futex wait finds the word changed).
  if (!fenced) std::atomic_thread_fence(std::memory_order_seq_cst);
  if (std::atomic_ref<uint32_t>(bell[1]).load(std::memory_order_relaxed) == 0) return;
  std::atomic_ref<uint32_t>(bell[0]).fetch_add(1, std::memory_order_release);
  syscall(SYS_futex, bell, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

bool LoadStoreWindow::NapUnless(const std::function<bool()>& done, Clock::duration nap) const {
  uint32_t* bell = Doorbell(rank());
  std::atomic_ref<uint32_t> rings(bell[0]), nappers(bell[1]);
  const uint32_t seen = rings.load(std::memory_order_acquire);
  nappers.fetch_add(1, std::memory_order_seq_cst);
  struct Uncount {  // also when done() throws: a napper counted for good would cost every later Signal a syscall
    std::atomic_ref<uint32_t>& nappers;
    ~Uncount() { nappers.fetch_sub(1, std::memory_order_release); }
  } uncount{nappers};
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (done()) return true;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(nap).count();
  const timespec timeout{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  // Returns at a ring, at once if one came since `seen`, or after the nap (or a signal to the thread).
  syscall(SYS_futex, bell, FUTEX_WAIT, seen, &timeout, nullptr, 0);
  return false;
}

void LoadStoreWindow::ClearLocal(uint64_t cleared_flags) {
  ZeroRange(regions_[rank()].data, data_bytes());
  ZeroRange(reinterpret_cast<uint8_t*>(regions_[rank()].flags),
            std::min(cleared_flags, flag_count()) * sizeof(uint64_t));
}

}  // namespace moe_ep::transport
