// The shared heap: memfd chunks carved first-fit (freed blocks merge with their neighbours and are
// reused; a large chunk's pages go back to the system when it is wholly free), tokens that name a chunk by
// (pid, descriptor, offset), and peers' chunks mapped on demand.
#include "transport/shm/shared_heap.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "base/entropy.h"
#include "moe_ep/error.h"

namespace moe_ep::transport {

// The heap's own records, named (not file-local): SharedHeap::State holds them.
namespace heap {
struct Chunk {
  int fd = -1;
  uint8_t* base = nullptr;
  size_t size = 0;
  std::map<size_t, size_t> free;  // offset -> bytes, never two adjacent
  bool zero = true;               // wholly free and reading as zeros: new, or its pages given back
};

struct Block {
  Chunk* chunk;
  size_t offset, size;
};
}  // namespace heap
using heap::Block;
using heap::Chunk;

namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kChunkBytes = size_t{64} << 20;  // address space only: pages cost memory once touched
constexpr size_t kChunkRounding = size_t{2} << 20;
// A chunk's memory file is named "moe_ep heap <pid>.<id>" after its owner (/proc/<pid>/fd/<fd> reads
// "/memfd:moe_ep heap <pid>.<id> (deleted)"): a peer maps it only when both are those of the owner it expects.
constexpr char kChunkName[] = "moe_ep heap";

// A token: pid (22 bits) | descriptor (10 bits) | offset in the chunk (32 bits).
constexpr int kPidBits = 22, kFdBits = 10, kOffsetBits = 32;

uint64_t TokenFor(uint64_t pid, uint64_t fd, uint64_t offset) {
  return pid << (kFdBits + kOffsetBits) | fd << kOffsetBits | offset;
}

// This process's pid, read once: getpid() is a system call each time (glibc no longer caches it), and
// every exposed buffer asks. A fork child, the one place it changes, forgets it (0) and reads it again. The
// fork handlers (HeapForkHandlers, below) are registered as the library loads, before any thread of the program
// can fork; should that fail, every call asks the kernel.
std::atomic<uint64_t> g_own_pid{0};
std::atomic<uint64_t> g_own_id{0};  // SharedHeap::Owner::id, drawn on first use

extern const bool g_fork_handlers_registered;  // below: the handlers need the heap's state

uint64_t OwnPid() {
  uint64_t pid = g_own_pid.load(std::memory_order_relaxed);
  if (pid != 0) return pid;
  pid = static_cast<uint64_t>(getpid());
  if (g_fork_handlers_registered) g_own_pid.store(pid, std::memory_order_relaxed);
  return pid;
}

uint64_t OwnId() {
  uint64_t id = g_own_id.load(std::memory_order_relaxed);
  if (id != 0) return id;
  id = entropy::NonZero64();
  uint64_t none = 0;  // two threads drawing at once keep the first one's
  return g_own_id.compare_exchange_strong(none, id, std::memory_order_relaxed) ? id : none;
}

std::string ChunkName(uint64_t pid, uint64_t id) {
  return std::string(kChunkName) + " " + std::to_string(pid) + "." + std::to_string(id);
}

[[noreturn]] void Fail(const std::string& what) {
  throw Error(ErrorCode::kInternal, "shared heap: " + what + ": " + std::strerror(errno));
}

// A chunk one request larger than the default made, with nothing live in it: its pages can go back, and it can
// grow for the next such request.
bool IsFreeLargeChunk(const Chunk& chunk) {
  return chunk.size > kChunkBytes && chunk.free.size() == 1 && chunk.free.begin()->second == chunk.size;
}

size_t ChunkBytesFor(size_t bytes) {
  return std::max(kChunkBytes, (bytes + kChunkRounding - 1) / kChunkRounding * kChunkRounding);
}

std::unique_ptr<Chunk> NewChunk(size_t bytes) {
  auto chunk = std::make_unique<Chunk>();
  chunk->size = ChunkBytesFor(bytes);
  int fd = memfd_create(ChunkName(OwnPid(), OwnId()).c_str(), MFD_CLOEXEC);
  if (fd < 0) Fail("cannot create a memory file");
  if (fd >= (1 << kFdBits)) {  // a token names descriptors below 1024: take the lowest free one
    const int low = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (low >= 0) close(fd), fd = low;
  }
  if (fchmod(fd, 0600) != 0 || ftruncate(fd, static_cast<off_t>(chunk->size)) != 0) {
    close(fd);
    Fail("cannot size a " + std::to_string(chunk->size) + "-byte chunk");
  }
  void* p = mmap(nullptr, chunk->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) {
    close(fd);
    Fail("cannot map a " + std::to_string(chunk->size) + "-byte chunk");
  }
  chunk->fd = fd;  // kept open: peers open it through /proc/<pid>/fd
  chunk->base = static_cast<uint8_t*>(p);
  chunk->free[0] = chunk->size;
  return chunk;
}

// Gives the pages of a wholly free chunk larger than the default (one request made it) back to the system.
// The file keeps its size and descriptor, and the next large request reuses both (GrowChunk): a peer still
// mapping it (a reader given up on) reads zeros instead of faulting past the end of a truncated file, and the
// process never holds more descriptors than it once held large blocks at a time.
void GivePagesBack(Chunk& chunk) {
  if (fallocate(chunk.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(chunk.size)) == 0) {
    chunk.zero = true;
  }  // else the pages stay until the chunk is reused or the process exits; nothing depends on it
}

// Makes a wholly free chunk large enough for `bytes`. The file only grows: peers' mappings of its smaller
// size stay valid, and SharedHeap::Map maps it again for a range past them.
void GrowChunk(Chunk& chunk, size_t bytes) {
  const size_t size = ChunkBytesFor(bytes);
  if (ftruncate(chunk.fd, static_cast<off_t>(size)) != 0) Fail("cannot size a " + std::to_string(size) + "-byte chunk");
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, chunk.fd, 0);
  if (p == MAP_FAILED) Fail("cannot map a " + std::to_string(size) + "-byte chunk");
  // The old mapping is left in place for good (address space only): a reader of this process given up on may still
  // hold a pointer into it. It maps the start of the same file, so such a reader reads whatever the chunk's new
  // blocks hold; its call has failed already, and what it read is never used.
  chunk.base = static_cast<uint8_t*>(p);
  chunk.size = size;
  chunk.free = {{0, size}};
}

// Other processes' chunks as mapped here, by (pid, id, descriptor), and how many windows hold each owner.
struct Mapped {
  const uint8_t* base;
  size_t size;
};
struct PeerChunks {
  std::map<std::tuple<uint64_t, uint64_t, uint64_t>, Mapped> mapped;
  // Mappings of chunks that have grown since: a pointer into one may still be read, so each stays until the
  // owner's last Release.
  std::multimap<std::pair<uint64_t, uint64_t>, Mapped> outgrown;
  std::map<std::pair<uint64_t, uint64_t>, int> holds;
};
std::mutex mapped_mutex;
PeerChunks& Peers() {
  static auto* const peers = new PeerChunks;
  return *peers;
}

// Maps chunk `fd` of process `pid` whose heap is `id`'s; nullopt when it is not a heap chunk of that owner (a
// process given a gone owner's pid names its chunks with an id of its own) that this process may open.
std::optional<Mapped> MapPeerChunk(uint64_t pid, uint64_t id, uint64_t fd) {
  const std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  char target[256] = {};
  const ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
  const std::string expected = "/memfd:" + ChunkName(pid, id);
  if (n < 0 || std::strncmp(target, expected.c_str(), expected.size()) != 0) return std::nullopt;
  if (target[expected.size()] != '\0' && target[expected.size()] != ' ') return std::nullopt;  // a longer id
  // Read-only: peers' rows are only ever read here, and a stray write must not reach a peer's tensors.
  const int chunk_fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (chunk_fd < 0) return std::nullopt;
  struct stat st {};
  void* p = MAP_FAILED;
  if (fstat(chunk_fd, &st) == 0 && st.st_size > 0) {
    p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED | MAP_NORESERVE, chunk_fd, 0);
  }
  close(chunk_fd);  // the mapping keeps the memory
  if (p == MAP_FAILED) return std::nullopt;
  return Mapped{static_cast<const uint8_t*>(p), static_cast<size_t>(st.st_size)};
}

}  // namespace

struct SharedHeap::State {
  mutable std::mutex mutex;
  std::vector<std::unique_ptr<Chunk>> chunks;
  std::map<const uint8_t*, Block> live;  // by start address
  // In a fork child: the parent's chunks, as mapped here. Their blocks are the parent's: freeing one does nothing.
  std::vector<std::pair<const uint8_t*, size_t>> inherited;
};

struct HeapForkHandlers {
  static void Prepare();
  static void Parent();
  static void Child();
};

// A fork child inherits the parent's chunks, mapped shared: allocating from them would hand out memory the
// parent uses, and a peer could take them for the child's. The child forgets them (the mappings stay, so what
// it inherited still reads; its descriptors close) and makes chunks of its own, named after its own pid and id.
// Both locks are held across the fork, so the child never inherits one that another thread held.
void HeapForkHandlers::Prepare() {
  SharedHeap::Process().state().mutex.lock();
  mapped_mutex.lock();
}

void HeapForkHandlers::Parent() {
  mapped_mutex.unlock();
  SharedHeap::Process().state().mutex.unlock();
}

void HeapForkHandlers::Child() {
  g_own_pid.store(0, std::memory_order_relaxed);
  g_own_id.store(0, std::memory_order_relaxed);
  SharedHeap::State& s = SharedHeap::Process().state();
  for (const auto& chunk : s.chunks) {
    close(chunk->fd);
    s.inherited.emplace_back(chunk->base, chunk->size);
  }
  s.chunks.clear();
  s.live.clear();
  mapped_mutex.unlock();
  s.mutex.unlock();
}

namespace {
const bool g_fork_handlers_registered =
    pthread_atfork(&HeapForkHandlers::Prepare, &HeapForkHandlers::Parent, &HeapForkHandlers::Child) == 0;
}  // namespace

SharedHeap& SharedHeap::Process() {
  static auto* const heap = new SharedHeap;
  return *heap;
}

SharedHeap::State& SharedHeap::state() const {
  static auto* const state = new State;
  return *state;
}

void* SharedHeap::Allocate(size_t bytes) {
  bool fresh = false;
  return AllocateFrom(bytes, &fresh);
}

void* SharedHeap::AllocateZeroed(size_t bytes) {
  bool fresh = false;
  void* p = AllocateFrom(bytes, &fresh);
  if (!fresh) std::memset(p, 0, bytes);
  return p;
}

// Sets *fresh when the block comes from a chunk made for it (a new memory file reads as zeros).
void* SharedHeap::AllocateFrom(size_t bytes, bool* fresh) {
  // Chunks are reserved, not committed, so a request larger than the machine would still succeed and
  // fail only once touched: refuse it now, as an allocator would.
  const uint64_t memory = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (bytes == 0 || bytes > memory) {
    throw Error(ErrorCode::kInvalidParam, "shared heap: " + std::to_string(bytes) +
                                              " bytes requested; the size must be in [1, this machine's memory = " +
                                              std::to_string(memory) + "]");
  }
  const size_t size = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  State& s = state();
  const std::lock_guard lock(s.mutex);
  for (;;) {
    for (const auto& chunk : s.chunks) {
      for (auto it = chunk->free.begin(); it != chunk->free.end(); ++it) {
        if (it->second < size) continue;
        const size_t offset = it->first, left = it->second - size;
        chunk->free.erase(it);
        if (left > 0) chunk->free[offset + size] = left;
        uint8_t* p = chunk->base + offset;
        s.live[p] = Block{chunk.get(), offset, size};
        *fresh = chunk->zero;
        chunk->zero = false;
        return p;
      }
    }
    // No room: grow a large chunk whose pages went back (its descriptor is reused), else make one.
    const auto given_back =
        std::find_if(s.chunks.begin(), s.chunks.end(), [](const auto& chunk) { return IsFreeLargeChunk(*chunk); });
    if (given_back != s.chunks.end()) {
      GrowChunk(**given_back, size);  // the loop takes it: the only free range large enough
    } else {
      s.chunks.push_back(NewChunk(size));
    }
  }
}

void SharedHeap::Free(const void* p) {
  State& s = state();
  const std::lock_guard lock(s.mutex);
  const auto it = s.live.find(static_cast<const uint8_t*>(p));
  if (it == s.live.end()) {
    const auto* at = static_cast<const uint8_t*>(p);
    for (const auto& [base, size] : s.inherited) {
      if (at >= base && at < base + size) return;  // the parent's block (a fork child ending drops what it inherited)
    }
    char address[32];
    std::snprintf(address, sizeof address, "%p", p);
    throw Error(ErrorCode::kInvalidParam, std::string("shared heap: ") + address +
                                              " is not the start of live shared-heap memory (never allocated there, "
                                              "or already freed); nothing was freed");
  }
  Chunk& chunk = *it->second.chunk;
  size_t offset = it->second.offset, size = it->second.size;
  s.live.erase(it);
  // Merge with the free block after, then with the one before.
  if (const auto next = chunk.free.find(offset + size); next != chunk.free.end()) {
    size += next->second;
    chunk.free.erase(next);
  }
  if (auto prev = chunk.free.lower_bound(offset);
      prev != chunk.free.begin() && std::prev(prev)->first + std::prev(prev)->second == offset) {
    --prev;
    prev->second += size;
  } else {
    chunk.free[offset] = size;
  }
  if (IsFreeLargeChunk(chunk)) GivePagesBack(chunk);
}

size_t SharedHeap::RoomAt(const void* p) const {
  State& s = state();
  const auto* at = static_cast<const uint8_t*>(p);
  const std::lock_guard lock(s.mutex);
  auto it = s.live.upper_bound(at);
  if (it == s.live.begin()) return 0;
  --it;
  const size_t offset = static_cast<size_t>(at - it->first);
  return offset < it->second.size ? it->second.size - offset : 0;
}

uint64_t SharedHeap::TokenOf(const void* p, uint64_t bytes) const {
  State& s = state();
  const auto* at = static_cast<const uint8_t*>(p);
  const uint64_t pid = OwnPid();
  if (pid >= (uint64_t{1} << kPidBits)) return 0;
  const std::lock_guard lock(s.mutex);
  for (const auto& chunk : s.chunks) {
    if (at < chunk->base || at >= chunk->base + chunk->size) continue;
    const uint64_t offset = static_cast<uint64_t>(at - chunk->base);
    const bool fits = bytes <= chunk->size - offset;
    const bool named = chunk->fd < (1 << kFdBits) && offset < (uint64_t{1} << kOffsetBits);
    return fits && named ? TokenFor(pid, static_cast<uint64_t>(chunk->fd), offset) : 0;
  }
  return 0;
}

SharedHeap::Owner SharedHeap::Self() { return {OwnPid(), OwnId()}; }

const uint8_t* SharedHeap::Map(uint64_t token, uint64_t bytes, Owner owner) {
  const uint64_t pid = token >> (kFdBits + kOffsetBits);
  const uint64_t fd = (token >> kOffsetBits) & ((uint64_t{1} << kFdBits) - 1);
  const uint64_t offset = token & ((uint64_t{1} << kOffsetBits) - 1);
  if (pid != owner.pid) return nullptr;
  if (pid == OwnPid()) {  // one of ours: no second mapping
    if (owner.id != OwnId()) return nullptr;
    State& s = Process().state();
    const std::lock_guard lock(s.mutex);
    for (const auto& chunk : s.chunks) {
      if (static_cast<uint64_t>(chunk->fd) != fd) continue;
      return offset <= chunk->size && bytes <= chunk->size - offset ? chunk->base + offset : nullptr;
    }
  }
  const std::lock_guard lock(mapped_mutex);
  auto& mapped = Peers().mapped;
  auto it = mapped.find({pid, owner.id, fd});
  const auto fits = [&](const Mapped& m) { return offset <= m.size && bytes <= m.size - offset; };
  if (it == mapped.end() || !fits(it->second)) {  // not mapped yet, or the chunk grew since
    const std::optional<Mapped> chunk = MapPeerChunk(pid, owner.id, fd);
    if (!chunk) return nullptr;
    if (it != mapped.end()) {
      if (chunk->size <= it->second.size) {  // it did not grow: the range is past its end
        munmap(const_cast<uint8_t*>(chunk->base), chunk->size);
        return nullptr;
      }
      Peers().outgrown.emplace(std::pair{pid, owner.id}, it->second);
      it->second = *chunk;
    } else {
      it = mapped.emplace(std::tuple{pid, owner.id, fd}, *chunk).first;
    }
  }
  const Mapped& chunk = it->second;
  return offset <= chunk.size && bytes <= chunk.size - offset ? chunk.base + offset : nullptr;
}

void SharedHeap::Hold(Owner owner) {
  if (owner.pid == OwnPid()) return;
  const std::lock_guard lock(mapped_mutex);
  ++Peers().holds[{owner.pid, owner.id}];
}

void SharedHeap::Release(Owner owner) {
  if (owner.pid == OwnPid()) return;
  const std::lock_guard lock(mapped_mutex);
  PeerChunks& peers = Peers();
  const auto hold = peers.holds.find({owner.pid, owner.id});
  if (hold == peers.holds.end() || --hold->second > 0) return;
  peers.holds.erase(hold);
  auto it = peers.mapped.lower_bound({owner.pid, owner.id, 0});
  while (it != peers.mapped.end() && std::get<0>(it->first) == owner.pid && std::get<1>(it->first) == owner.id) {
    munmap(const_cast<uint8_t*>(it->second.base), it->second.size);
    it = peers.mapped.erase(it);
  }
  const auto [first, last] = peers.outgrown.equal_range({owner.pid, owner.id});
  for (auto old = first; old != last; ++old) munmap(const_cast<uint8_t*>(old->second.base), old->second.size);
  peers.outgrown.erase(first, last);
}

}  // namespace moe_ep::transport
