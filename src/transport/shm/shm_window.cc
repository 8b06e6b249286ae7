// Shared-memory transport: segment creation (0600, O_EXCL, locked while its creator lives), mapping peers as they
// appear, the join barrier, and unlinking names as soon as everyone is mapped so killed ranks leave nothing behind.
#include "transport/shm/shm_window.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "base/env.h"
#include "base/hash.h"
#include "moe_ep/error.h"
#include "transport/load_store_window.h"
#include "transport/shm/full_shm.h"
#include "transport/shm/shared_heap.h"

namespace moe_ep::transport {
namespace {

[[noreturn]] void SystemError(const std::string& what) {
  throw Error(ErrorCode::kInternal, "shared-memory transport: " + what + ": " + std::strerror(errno));
}

// Owns this process's mappings of every rank's segment, each watched for a full /dev/shm while mapped.
class ShmMappings {
 public:
  explicit ShmMappings(uint64_t bytes) : bytes_(bytes) {}
  ~ShmMappings() {
    for (uint8_t* p : maps_) {
      UnwatchForFullShm(p);
      munmap(p, bytes_);
    }
  }
  void Add(uint8_t* p) {
    maps_.push_back(p);
    WatchForFullShm(p, bytes_);
  }
  uint8_t* at(size_t i) const { return maps_[i]; }

 private:
  uint64_t bytes_;
  std::vector<uint8_t*> maps_;
};

// Maps a segment and closes its descriptor, whether or not the mapping worked (the mapping keeps it).
uint8_t* MapAndClose(int fd, uint64_t bytes, const std::string& name) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  const int map_errno = errno;
  close(fd);
  errno = map_errno;
  if (p == MAP_FAILED) SystemError("cannot map " + name);
  return static_cast<uint8_t*>(p);
}

// A segment's locks (open-file-description locks, which a mapping keeps after its descriptor is closed, until the
// process unmaps it or ends). Byte 0: its creator's, from right after creating it, for as long as it lives; a name
// whose byte 0 is free was left by a process that died in its join (or one a few instructions from locking it).
// Byte 1: held by a process deciding whether the file a name names is a dead one to remove, and by a creator
// checking that its name still names its file (it waits for a decider to finish): of two processes creating one
// name at once, exactly one goes on, as O_EXCL alone made sure. Peers look at byte 0 only, so a file being removed
// never looks alive.
constexpr off_t kAliveByte = 0;
constexpr off_t kDecidingByte = 1;

struct flock ByteLock(short type, off_t byte) {
  struct flock lock {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = byte;
  lock.l_len = 1;
  return lock;
}

bool HeldByALiveProcess(int fd) {
  struct flock lock = ByteLock(F_WRLCK, kAliveByte);
  // Without open-file-description locks (Linux before 3.15) every name counts as live, as it did before them.
  return fcntl(fd, F_OFD_GETLK, &lock) != 0 || lock.l_type != F_UNLCK;
}

bool SameFile(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

// Whether `name` still names the file open as `fd` (a name is removed and made again by the next job's rank).
bool StillNamed(int fd, const std::string& name) {
  struct stat open_file {
  }, named{};
  return fstat(fd, &open_file) == 0 && stat(("/dev/shm" + name).c_str(), &named) == 0 && SameFile(open_file, named);
}

[[noreturn]] void NotOurs(const std::string& name, const std::string& why) {
  throw Error(ErrorCode::kInternal, "shared-memory transport: cannot create " + name + ": " + why +
                                        " (another job with the same rendezvous?)");
}

// Removes `name` when the file open as `fd` (which it named) was left by a process that died in its join. Returns why
// it is not one to remove; empty when it was removed, or another file took the name meanwhile. The caller closes `fd`
// next, and with it lets go of the deciding lock this may have taken.
std::string RemoveIfLeftByTheDead(int fd, const std::string& name) {
  struct stat st {};
  struct flock deciding = ByteLock(F_WRLCK, kDecidingByte);
  std::string why;
  if (fstat(fd, &st) != 0) {
    why = std::string("it cannot be inspected: ") + std::strerror(errno);
  } else if (st.st_uid != geteuid()) {
    why = "it belongs to uid " + std::to_string(st.st_uid);
  } else if (fcntl(fd, F_OFD_SETLK, &deciding) != 0) {
    why = errno == EINVAL ? "it exists, and without open-file-description locks a name a dead process left cannot "
                            "be told from a live one's"
                          : "another process is deciding whether to remove it";
  } else if (HeldByALiveProcess(fd)) {
    why = "a live process holds it";
  } else if (StillNamed(fd, name)) {
    shm_unlink(name.c_str());
  }
  return why;
}

// Takes the deciding lock (byte 1) of `fd`, this rank's new file, waiting for a process deciding about it: true
// once taken. A decider holds it for a few system calls, but a fork() in another of its threads meanwhile leaves
// the lock with the child, and a stopped decider keeps it: the wait has the join's deadline and asks the interrupt
// check.
bool TakeDecidingLock(int fd, const std::string& name, Clock::time_point deadline) {
  // A join whose deadline is (nearly) past still waits the few system calls a decider holds the lock for.
  deadline = std::max(deadline, Clock::now() + std::chrono::milliseconds(100));
  struct flock deciding = ByteLock(F_WRLCK, kDecidingByte);
  for (auto pause = std::chrono::microseconds(50);; pause = std::min(pause * 2, std::chrono::microseconds(20000))) {
    if (fcntl(fd, F_OFD_SETLK, &deciding) == 0) return true;
    if (errno != EAGAIN && errno != EACCES && errno != EINTR) return false;
    if (Clock::now() >= deadline) {
      throw TimeoutError("shared-memory transport: creating " + name +
                             ": another process kept deciding whether to remove it past the deadline "
                             "(MOE_EP_TIMEOUT_MS, GroupOptions::timeout); a stopped process, or one forked meanwhile, "
                             "holds its lock",
                         {});
    }
    if (pause >= std::chrono::milliseconds(5) && InterruptRequested()) {
      throw InterruptedError("shared-memory transport: creating " + name +
                                 ": interrupted while another process decided whether to remove it",
                             {});
    }
    std::this_thread::sleep_for(pause);
  }
}

// Creates this rank's segment, 0600, and locks its byte 0. A name a process that died in its join left behind (a
// job killed while it waited for a missing rank, under a rank table's fixed names) is removed first; one that a
// live process holds is another job's.
int CreateSegment(const std::string& name, Clock::time_point deadline) {
  for (bool removed_a_dead_one = false, lost_the_name = false;;) {
    const int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) {
      struct flock alive = ByteLock(F_WRLCK, kAliveByte);
      if (fcntl(fd, F_OFD_SETLK, &alive) != 0) {
        const int lock_errno = errno;
        if (lock_errno == EINVAL) return fd;  // no open-file-description locks: names work as before them
        close(fd);
        if (lock_errno == EAGAIN || lock_errno == EACCES) NotOurs(name, "another process took it as it was made");
        errno = lock_errno;
        SystemError("cannot lock " + name);
      }
      // Waits for a process deciding about this file: once it is done, the name is this rank's if it still names
      // this file.
      bool decided = false;
      try {
        decided = TakeDecidingLock(fd, name, deadline);
      } catch (...) {
        if (StillNamed(fd, name)) shm_unlink(name.c_str());  // this rank's file (its byte 0 still held): not left
        close(fd);
        throw;
      }
      const bool ours = decided && StillNamed(fd, name);
      struct flock unlock = ByteLock(F_UNLCK, kDecidingByte);
      fcntl(fd, F_OFD_SETLK, &unlock);
      if (ours) return fd;
      close(fd);
      // Its name went as it was made: a process deciding about it took it for a dead join's (a member giving up
      // removes those). Made again, once: now a live process holds whichever file the name names.
      if (!decided || std::exchange(lost_the_name, true)) NotOurs(name, "another process took it as it was made");
      continue;
    }
    if (errno != EEXIST || removed_a_dead_one) {
      SystemError("cannot create " + name + " (another job with the same rendezvous?)");
    }
    const int old = shm_open(name.c_str(), O_RDWR, 0);
    if (old < 0 && errno == ENOENT) continue;  // removed meanwhile
    if (old < 0) {
      const int open_errno = errno;
      struct stat st {};
      if (stat(("/dev/shm" + name).c_str(), &st) == 0 && st.st_uid != geteuid()) {
        NotOurs(name, "it belongs to uid " + std::to_string(st.st_uid));
      }
      errno = open_errno;
      SystemError("cannot create " + name + " (another job with the same rendezvous?)");
    }
    const std::string why = RemoveIfLeftByTheDead(old, name);
    close(old);
    if (!why.empty()) NotOurs(name, why);
    removed_a_dead_one = true;
  }
}

// Whether /dev/shm's `name` is there and this process's effective user's.
bool OwnedByThisUser(const std::string& name) {
  struct stat st {};
  return stat(("/dev/shm" + name).c_str(), &st) == 0 && st.st_uid == geteuid();
}

// Opens a peer's segment once it exists with its full size, held by a live process (its creator locks and sizes it
// right after creating it; a name left by a dead one is not there yet); -1 when it is not by `deadline`.
int OpenPeer(const std::string& name, uint64_t bytes, Clock::time_point deadline, int peer, const std::string& group) {
  for (auto pause = std::chrono::microseconds(50);; pause = std::min(pause * 2, std::chrono::microseconds(20000))) {
    const int fd = shm_open(name.c_str(), O_RDWR, 0);
    if (fd >= 0) {
      struct stat st {};
      if (fstat(fd, &st) != 0) {
        close(fd);
        SystemError("cannot inspect " + name);
      }
      // A rank of this job made it 0600 as this user (creation modes only lose bits to the umask): a name that
      // another user made first, or that others may open, would hand this rank's rows to them.
      if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        close(fd);
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw Error(ErrorCode::kInvalidConfig, "joining shared-memory group '" + group + "': " + name + ", rank " +
                                                   std::to_string(peer) + "'s segment, belongs to uid " +
                                                   std::to_string(st.st_uid) + " with mode " + mode + ", not to uid " +
                                                   std::to_string(geteuid()) +
                                                   " with mode 0600: not made by this job; refusing to map it");
      }
      const bool live = HeldByALiveProcess(fd);
      const bool sized = live && st.st_size != 0;
      if (sized && static_cast<uint64_t>(st.st_size) == bytes) return fd;
      close(fd);
      // Its creator sizes a segment right after creating it: another nonzero size is a disagreement.
      if (sized) {
        throw Error(ErrorCode::kInvalidConfig,
                    "joining shared-memory group '" + group + "': rank " + std::to_string(peer) +
                        "'s segment (its window, flags and "
                        "cross-memory page) is " +
                        std::to_string(st.st_size) + " bytes and this rank's " + std::to_string(bytes) +
                        "; every rank must ask for the same window size (MOE_EP_WINDOW_MB, GroupOptions::window_bytes, "
                        "HCCL_BUFFSIZE) in a group of the same number of ranks (HcclCommInitRootInfo's nRanks, "
                        "the members), which sizes the segment's flags");
      }
    } else if (errno != ENOENT && !(errno == EACCES && OwnedByThisUser(name))) {
      // EACCES on this user's name: its creator has not given it mode 0600 yet (a umask took the owner's bits).
      SystemError("cannot open " + name);
    }
    if (Clock::now() >= deadline) return -1;
    if (pause >= std::chrono::milliseconds(5) && InterruptRequested()) {  // asked once the join takes a while
      throw InterruptedError("joining shared-memory group '" + group + "': interrupted while waiting for rank " +
                                 std::to_string(peer) + " to create its segment",
                             {peer});
    }
    std::this_thread::sleep_for(pause);
  }
}

// Whether process `pid` has ended: gone, or a zombie its parent has not reaped yet.
bool ProcessGone(pid_t pid) {
  if (kill(pid, 0) != 0) return errno == ESRCH;
  char state = 0;
  if (std::FILE* file = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r")) {
    // "pid (comm) state ...": comm may hold spaces and parentheses, so the state follows the last ')'.
    char line[512] = {};
    const size_t n = std::fread(line, 1, sizeof line - 1, file);
    std::fclose(file);
    const char* close = std::strrchr(line, ')');
    if (n > 0 && close != nullptr && close[1] == ' ') state = close[2];
  }
  return state == 'Z' || state == 'X';
}

// What decides whether a peer can map a process's heap chunks, which it opens as /proc/<pid>/fd/<n> under the pid
// the process has in its own pid namespace. Ranks of one /dev/shm may be in other pid namespaces (containers that
// share IPC but not pids), or under a /proc of another namespace than theirs.
struct HeapAccess {
  uint64_t pid_namespace;  // its inode number (the same for two processes of one namespace); 0: unknown
  uint32_t dumpable;       // others may open its descriptors (PR_GET_DUMPABLE 1)
  uint32_t own_proc;       // its /proc shows its own namespace's pids: it finds a peer of that namespace there
};

HeapAccess HeapAccessOfThisProcess() {
  HeapAccess access{0, prctl(PR_GET_DUMPABLE) == 1, 0};
  char self[32] = {};
  const ssize_t n = readlink("/proc/self", self, sizeof self - 1);
  access.own_proc = n > 0 && std::string(self, static_cast<size_t>(n)) == std::to_string(getpid());
  if (struct stat ns{}; stat("/proc/self/ns/pid", &ns) == 0) access.pid_namespace = ns.st_ino;
  return access;
}

// Whether a process with `reader` can map the heap chunks of one with `owner`.
bool MapsHeapOf(const HeapAccess& reader, const HeapAccess& owner) {
  return owner.dumpable && reader.own_proc && owner.pid_namespace != 0 && owner.pid_namespace == reader.pid_namespace;
}

// What each rank's segment carries after its flags, for reaching each other's memory: its pid, heap id and what
// decides who can map its heap (HeapAccess); for reading private memory by copy (process_vm_readv), a word peers read
// to check that they can; then one byte per rank r, nonzero once r checked that it can read this rank's memory
// (Readers).
struct CrossMemoryInfo {
  uint64_t pid;
  uint64_t probe_address;  // where `pid` is in the rank's own process
  uint64_t heap_id;        // SharedHeap::Owner::id of the rank's process: with pid, whose heap its tokens name
  HeapAccess heap_access;  // of the rank's process
};

uint64_t CrossMemoryInfoBytes(int size) { return (sizeof(CrossMemoryInfo) + size + 7) / 8 * 8; }
uint8_t* Readers(CrossMemoryInfo* info) { return reinterpret_cast<uint8_t*>(info + 1); }

// Reads `reads` out of process `pid` at `address` + offset; returns false with errno set when the kernel
// did not copy all of them.
bool ReadProcess(pid_t pid, uint64_t address, std::span<const Window::ExposedRead> reads) {
  constexpr size_t kBatch = 1024;  // IOV_MAX
  iovec local[kBatch], remote[kBatch];
  for (size_t first = 0; first < reads.size(); first += kBatch) {
    const size_t n = std::min(kBatch, reads.size() - first);
    uint64_t expected = 0;
    for (size_t i = 0; i < n; ++i) {
      const Window::ExposedRead& read = reads[first + i];
      local[i] = {read.dst, read.bytes};
      remote[i] = {reinterpret_cast<void*>(static_cast<uintptr_t>(address + read.offset)), read.bytes};
      expected += read.bytes;
    }
    const ssize_t got = process_vm_readv(pid, local, n, remote, n, 0);
    if (got < 0) return false;
    if (static_cast<uint64_t>(got) != expected) {  // an iovec failed part way: its memory is gone
      errno = EFAULT;
      return false;
    }
  }
  return true;
}

// Processes reach each other's memory where it is in a shared heap (SharedHeap), by token, and any other
// memory by copy where the kernel lets them (tokens: the address with its low bit set, where heap tokens
// of the 2-byte-aligned rows that are exposed are even).
class ShmWindow final : public LoadStoreWindow {
 public:
  ShmWindow(int rank, std::vector<RankRegion> regions, std::vector<CrossMemoryInfo*> info, bool cross_memory,
            uint64_t data_bytes, uint64_t flag_count, std::string name, std::shared_ptr<void> keepalive)
      : LoadStoreWindow(rank, std::move(regions), data_bytes, flag_count, std::move(name), std::move(keepalive)),
        info_(std::move(info)),
        cross_memory_(cross_memory) {}
  ~ShmWindow() override {
    if (!holds_peer_heaps_) return;
    for (int peer = 0; peer < size(); ++peer) {
      if (peer != rank()) SharedHeap::Release(HeapOf(peer));
    }
  }
  ShmWindow(const ShmWindow&) = delete;
  ShmWindow& operator=(const ShmWindow&) = delete;

  // Once every rank has written its segment's CrossMemoryInfo: each peer's heap chunks this rank maps stay
  // mapped while the window lives, and go with it (a dead peer's pages are freed then).
  void HoldPeerHeaps() {
    for (int peer = 0; peer < size(); ++peer) {
      if (peer != rank()) SharedHeap::Hold(HeapOf(peer));
    }
    holds_peer_heaps_ = true;
  }

  uint64_t Expose(int peer, const void* p, uint64_t bytes) const override {
    CheckPeer(peer, "expose");
    const auto address = reinterpret_cast<uintptr_t>(p);
    if (address % 2 != 0) return 0;
    if (const uint64_t token = SharedHeap::Process().TokenOf(p, bytes); token != 0 && MapsHeapOfThisRank(peer)) {
      return token;
    }
    if (!cross_memory_) return 0;
    // This rank reads its own memory in place (Resolve); a peer that checked it can, by copy.
    const bool readable =
        peer == rank() || std::atomic_ref<uint8_t>(Readers(info_[rank()])[peer]).load(std::memory_order_acquire) != 0;
    return readable ? address | 1 : 0;
  }
  const uint8_t* Resolve(int peer, uint64_t token, uint64_t bytes) const override {
    CheckPeer(peer, "resolve");
    if (token % 2 != 0) {
      return peer == rank() ? reinterpret_cast<const uint8_t*>(static_cast<uintptr_t>(token - 1)) : nullptr;
    }
    const uint8_t* mapped = SharedHeap::Map(token, bytes, HeapOf(peer));
    // A chunk not mapped here yet cannot be once its process is gone (its descriptors went with it).
    if (mapped == nullptr && ProcessGone(static_cast<pid_t>(info_[peer]->pid))) {
      throw TimeoutError(
          "mapping the rows rank " + std::to_string(peer) + " of " + name() + " exposed: its process is gone", {peer});
    }
    return mapped;
  }
  bool ExposedByCopy(int peer, uint64_t token) const override {
    CheckPeer(peer, "check a token of");
    return token % 2 != 0 && peer != rank();
  }
  void ReadExposed(int peer, uint64_t token, std::span<const ExposedRead> reads) const override {
    if (!ExposedByCopy(peer, token)) Window::ReadExposed(peer, token, reads);  // throws
    if (ReadProcess(static_cast<pid_t>(info_[peer]->pid), token - 1, reads)) return;
    if (errno == ESRCH) {
      throw TimeoutError(
          "reading the rows rank " + std::to_string(peer) + " of " + name() + " exposed: its process is gone", {peer});
    }
    throw Error(ErrorCode::kInternal, "reading the rows rank " + std::to_string(peer) + " of " + name() +
                                          " exposed (pid " + std::to_string(info_[peer]->pid) +
                                          "): " + std::strerror(errno) + "; it must keep them until this rank is done");
  }

  // Marks, in each peer's segment, whether this rank can read that peer's memory: it reads the peer's
  // pid where the peer said it is and compares it with the one in the peer's segment.
  void CheckCrossMemory() {
    for (int peer = 0; peer < size(); ++peer) {
      if (peer == rank()) continue;
      uint64_t seen = 0;
      const ExposedRead read{&seen, 0, sizeof seen};
      const CrossMemoryInfo& info = *info_[peer];
      if (ReadProcess(static_cast<pid_t>(info.pid), info.probe_address, {&read, 1}) && seen == info.pid) {
        Readers(info_[peer])[rank()] = 1;  // published by the barrier that follows
      }
    }
  }

 private:
  SharedHeap::Owner HeapOf(int peer) const { return {info_[peer]->pid, info_[peer]->heap_id}; }
  // Whether `peer` can map this rank's heap chunks: else heap memory goes as any other memory does.
  bool MapsHeapOfThisRank(int peer) const {
    const CrossMemoryInfo &mine = *info_[rank()], &theirs = *info_[peer];
    const bool same_process = theirs.pid == mine.pid && theirs.heap_id == mine.heap_id;  // no /proc needed
    return peer == rank() || same_process || MapsHeapOf(theirs.heap_access, mine.heap_access);
  }

  std::vector<CrossMemoryInfo*> info_;  // each rank's, as mapped here
  bool cross_memory_;                   // whether peers may copy rows out of this process (MOE_EP_CROSS_MEMORY, Yama)
  bool holds_peer_heaps_ = false;
};

// Yama's ptrace_scope (/proc/sys/kernel/yama/ptrace_scope), -1 without Yama.
int PtraceScope() {
  std::FILE* file = std::fopen("/proc/sys/kernel/yama/ptrace_scope", "r");
  if (!file) return -1;
  int scope = -1;
  if (std::fscanf(file, "%d", &scope) != 1) scope = -1;
  std::fclose(file);
  return scope;
}

}  // namespace

std::string ShmSegmentName(const std::string& job, const std::string& group, int rank) {
  // A name is at most NAME_MAX (255) bytes, and a group's string grows with its member list (a default group
  // of 72 ranks passes it): a long one is named by its first characters and a 64-bit FNV-1a hash of all of it.
  constexpr size_t kReadable = 64;
  std::string part = group;
  if (part.size() > kReadable) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash::Fnv1a(group)));
    part = group.substr(0, kReadable - 17) + "~" + hex;
  }
  return "/moe_ep." + job + "." + part + "." + std::to_string(rank);
}

std::unique_ptr<Window> JoinShmGroup(const std::string& job, const std::string& group, int rank, int size,
                                     uint64_t data_bytes, uint64_t flag_count, Clock::time_point deadline) {
  if (job.empty() || !env::RendezvousProblem(job, "job").empty() || group.find('/') != std::string::npos) {
    const auto shown = [](const std::string& name) { return name.size() > 64 ? name.substr(0, 64) + "..." : name; };
    throw Error(ErrorCode::kInvalidParam, "shared-memory transport: job '" + shown(job) + "' and group '" +
                                              shown(group) + "' must be non-empty names without '/', the job's at " +
                                              "most " + std::to_string(env::kMaxRendezvousChars) + " characters");
  }
  // By default only where Yama leaves sibling processes free to read each other (no Yama, or ptrace_scope 0):
  // under 1 the check would fail (and the kernel log it) unless this process may ptrace anyway.
  const env::CrossMemory cross_memory_choice = env::CrossMemoryChoice();
  const int ptrace_scope = PtraceScope();
  const bool cross_memory = cross_memory_choice == env::CrossMemory::kOn ||
                            (cross_memory_choice == env::CrossMemory::kAuto && ptrace_scope <= 0);
  if (data_bytes > env::kMaxWindowBytes) {  // the sum below must not wrap: a segment smaller than its areas
    throw Error(ErrorCode::kInvalidParam,
                "shared-memory transport: a data area of " + std::to_string(data_bytes) + " bytes; at most 2^40");
  }
  data_bytes = (data_bytes + 4095) / 4096 * 4096;
  const uint64_t flag_bytes = FlagAreaBytes(flag_count, size);
  const uint64_t bytes = data_bytes + flag_bytes + CrossMemoryInfoBytes(size);
  auto maps = std::make_shared<ShmMappings>(bytes);
  const std::string own = ShmSegmentName(job, group, rank);
  const int own_fd = CreateSegment(own, deadline);
  // If the join fails, our own name goes (when it still names our file), and so does every name of the group a
  // process that died in its join left: a rank killed after it created its segment (outside `moe-ep launch`, which
  // cleans up after its ranks), or after the first barrier but before it removed its name, leaves none behind once a
  // member gives up. A live member's name stays: it may be joining again already, its retry's file under that name.
  struct Unlinker {
    const std::string& job;
    const std::string& group;
    int rank;
    int size;
    struct stat own_file {};
    bool armed = true;
    ~Unlinker() {
      if (!armed) return;
      try {
        for (int r = 0; r < size; ++r) {
          const std::string name = ShmSegmentName(job, group, r);
          const int fd = shm_open(name.c_str(), O_RDWR, 0);
          if (fd < 0) continue;
          struct stat named {};
          try {
            if (r != rank) {
              RemoveIfLeftByTheDead(fd, name);
            } else if (fstat(fd, &named) == 0 && SameFile(named, own_file)) {
              shm_unlink(name.c_str());
            }
          } catch (...) {  // out of memory saying why a name stays: it stays
          }
          close(fd);
        }
      } catch (...) {  // out of memory naming a segment: the rest stays, for the next creator of each name
      }
    }
  } unlink_on_error{job, group, rank, size};
  if (fstat(own_fd, &unlink_on_error.own_file) != 0) {
    const int fstat_errno = errno;
    shm_unlink(own.c_str());  // this rank's since CreateSegment (its lock held until the close), which the clean-up
    close(own_fd);            // cannot tell now
    errno = fstat_errno;
    SystemError("cannot inspect " + own);
  }
  // fchmod: the creation mode is filtered by the umask, the job's segments are 0600 whatever it is.
  if (fchmod(own_fd, 0600) != 0 || ftruncate(own_fd, static_cast<off_t>(bytes)) != 0) {
    close(own_fd);
    SystemError("cannot size " + own);
  }
  // Map our own segment first, closing its descriptor, so no failure below can leak it.
  uint8_t* own_base = MapAndClose(own_fd, bytes, own);
  // Until its name is gone, a child forked meanwhile (a worker process) must not inherit the mapping, which would
  // keep the segment's lock, and so its name, looking alive after this process died.
  madvise(own_base, bytes, MADV_DONTFORK);
  maps->Add(own_base);
  std::vector<RankRegion> regions(size);
  std::vector<CrossMemoryInfo*> info(size);
  const auto place = [&](int r, uint8_t* base) {
    regions[r] = {base, reinterpret_cast<uint64_t*>(base + data_bytes)};
    info[r] = reinterpret_cast<CrossMemoryInfo*>(base + data_bytes + flag_bytes);
  };
  place(rank, own_base);
  if (cross_memory) {
    // Under Yama's ptrace_scope 1 only ancestors may read a process, and peers are siblings: with
    // MOE_EP_CROSS_MEMORY=1 (asked for, never by default), let any process of this user read this one, for the
    // life of the process (docs/architecture.md, the Window).
    if (cross_memory_choice == env::CrossMemory::kOn && ptrace_scope == 1) {
      prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
    }
    info[rank]->probe_address = reinterpret_cast<uintptr_t>(&info[rank]->pid);
  }
  const SharedHeap::Owner self = SharedHeap::Self();  // whose heap this rank's tokens name, for its peers
  info[rank]->pid = self.pid;
  info[rank]->heap_id = self.id;
  info[rank]->heap_access = HeapAccessOfThisProcess();
  std::vector<int> missing;  // once the deadline passed, each later rank is looked for once
  for (int r = 0; r < size; ++r) {
    if (r == rank) continue;
    const std::string name = ShmSegmentName(job, group, r);
    const int fd = OpenPeer(name, bytes, deadline, r, group);
    if (fd < 0) {
      missing.push_back(r);
      continue;
    }
    uint8_t* base = MapAndClose(fd, bytes, name);
    maps->Add(base);
    place(r, base);
  }
  if (!missing.empty()) {
    throw TimeoutError("joining shared-memory group '" + group + "' on rank " + std::to_string(rank) + ": " +
                           RanksNamed(missing) +
                           " did not create a segment in time (MOE_EP_TIMEOUT_MS, GroupOptions::timeout)",
                       missing);
  }
  auto window = std::make_unique<ShmWindow>(rank, regions, info, cross_memory, data_bytes, flag_count,
                                            "shared-memory group '" + group + "'", maps);
  window->Barrier(deadline, "every rank mapping every segment");
  window->HoldPeerHeaps();
  shm_unlink(own.c_str());
  madvise(own_base, bytes, MADV_DOFORK);
  if (cross_memory) window->CheckCrossMemory();
  // Every rank's checks land before any call exposes memory: a group's ranks read each other by copy from its
  // first call on, or never. Every rank was there a moment ago, so this barrier waits a little past the deadline:
  // ranks that began the join apart have different deadlines, and one whose deadline fell in between could fail
  // the join the others finished (giving its group number back, it would never meet them again). The grace makes
  // that unlikely, not impossible: a peer more than 2 s late here still leaves this rank failing alone.
  constexpr auto kLastBarrierGrace = std::chrono::seconds(2);
  window->Barrier(std::max(deadline, Clock::now() + kLastBarrierGrace),
                  "every rank checking whether it can read its peers' memory");
  unlink_on_error.armed = false;  // every rank is past removing its own name
  return window;
}

int RemoveJobSegments(const std::string& job) {
  const std::string prefix = "moe_ep." + job + ".";
  int removed = 0;
  DIR* dir = opendir("/dev/shm");
  if (!dir) return 0;
  while (dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.rfind(prefix, 0) == 0 && shm_unlink(("/" + name).c_str()) == 0) ++removed;
  }
  closedir(dir);
  return removed;
}

}  // namespace moe_ep::transport
