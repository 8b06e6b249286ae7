// Explains the bus error of a write into a shared-memory window whose file system is full: a SIGBUS handler
// that says why before the process dies as it would have.
#include "transport/shm/full_shm.h"

#include <signal.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

namespace moe_ep::transport {
namespace {

constexpr int kRanges = 4096;
// Range i is watched while begin[i] is nonzero; its end is stored before its begin is published. A slot is
// taken (taken[i]) before either is written, so two threads never write one slot.
std::atomic<bool> g_taken[kRanges];
std::atomic<uintptr_t> g_begin[kRanges];
std::atomic<uintptr_t> g_end[kRanges];
std::atomic<bool> g_explained{false};
struct sigaction g_before {};  // the handler before ours: written once, before ours is installed
std::once_flag g_installed;

bool Watched(uintptr_t address) {
  for (int i = 0; i < kRanges; ++i) {
    const uintptr_t begin = g_begin[i].load(std::memory_order_acquire);
    if (begin != 0 && begin <= address && address < g_end[i].load(std::memory_order_relaxed)) return true;
  }
  return false;
}

// A message built without allocating: what a signal handler may do.
class Message {
 public:
  void Add(const char* text) {
    for (; *text && size_ < sizeof(text_); ++text) text_[size_++] = *text;
  }
  void Add(uint64_t n) {
    char digits[20];
    int count = 0;
    do digits[count++] = static_cast<char>('0' + n % 10);
    while ((n /= 10) != 0);
    while (count > 0 && size_ < sizeof(text_)) text_[size_++] = digits[--count];
  }
  void Write() const {
    for (size_t done = 0; done < size_;) {
      const ssize_t n = write(STDERR_FILENO, text_ + done, size_ - done);
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }

 private:
  char text_[640];
  size_t size_ = 0;
};

void Explain() {
  Message m;
  m.Add("moe_ep: bus error writing a shared-memory window: /dev/shm is full");
  struct statfs fs {};
  if (statfs("/dev/shm", &fs) == 0) {  // a system call: safe here, unlike statvfs
    m.Add(" (");
    m.Add(static_cast<uint64_t>(fs.f_blocks) * static_cast<uint64_t>(fs.f_bsize) >> 20);
    m.Add(" MiB, ");
    m.Add(static_cast<uint64_t>(fs.f_bavail) * static_cast<uint64_t>(fs.f_bsize) >> 20);
    m.Add(" MiB free)");
  }
  m.Add(
      ". A window's pages are taken as rows land in it, up to the window's size (MOE_EP_WINDOW_MB, "
      "GroupOptions::window_bytes, HCCL_BUFFSIZE) for each rank of this host: give /dev/shm room for them (docker "
      "run --shm-size, or mount -o remount,size=... /dev/shm) or send fewer tokens per call.\n");
  m.Write();
}

void OnBusError(int signal, siginfo_t* info, void* context) {
  if (info != nullptr && info->si_code == BUS_ADRERR && Watched(reinterpret_cast<uintptr_t>(info->si_addr)) &&
      !g_explained.exchange(true)) {
    Explain();
  }
  // Then whatever the handler before ours does. Under the default action (or an ignored SIGBUS, which a fault
  // cannot be) a faulting write runs again on return, and the process dies of it as it would have; a SIGBUS sent
  // (kill) is raised again, to the default action.
  const bool handler = g_before.sa_handler != SIG_DFL && g_before.sa_handler != SIG_IGN;
  if (handler && (g_before.sa_flags & SA_SIGINFO) != 0) {
    g_before.sa_sigaction(signal, info, context);
  } else if (handler) {
    g_before.sa_handler(signal);
  } else {
    struct sigaction fallback {};
    fallback.sa_handler = SIG_DFL;
    sigemptyset(&fallback.sa_mask);
    sigaction(SIGBUS, &fallback, nullptr);
    if (info == nullptr || info->si_code <= 0) raise(SIGBUS);
  }
}

void Install() {
  struct sigaction ours {};
  ours.sa_sigaction = OnBusError;
  ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&ours.sa_mask);
  sigaction(SIGBUS, &ours, &g_before);
}

}  // namespace

void WatchForFullShm(const void* begin, uint64_t bytes) {
  std::call_once(g_installed, Install);
  const auto first = reinterpret_cast<uintptr_t>(begin);
  for (int i = 0; i < kRanges; ++i) {
    if (g_taken[i].exchange(true, std::memory_order_acq_rel)) continue;
    g_end[i].store(first + bytes, std::memory_order_relaxed);
    g_begin[i].store(first, std::memory_order_release);
    return;
  }
}

void UnwatchForFullShm(const void* begin) {
  const auto first = reinterpret_cast<uintptr_t>(begin);
  for (int i = 0; i < kRanges; ++i) {
    uintptr_t expected = first;
    if (first != 0 && g_begin[i].compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) {
      g_taken[i].store(false, std::memory_order_release);
      return;
    }
  }
}

}  // namespace moe_ep::transport
