// The shared heap (src/transport/shm/shared_heap.h): memory another process reads in place (mapped read-only)
// through a token, chunks private to the user (0600) and never named in /dev/shm, freed blocks reused,
// and bad pointers or tokens an error or a null, never a crash.
#include "transport/shm/shared_heap.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "moe_ep/error.h"
#include "moe_ep/tensor.h"
#include "support/test_seed.h"
#include "support/thrown_error.h"

namespace moe_ep::transport {
namespace {

std::vector<uint8_t> RandomBytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Reads a whole message of `n` bytes from a pipe.
bool ReadAll(int fd, void* p, size_t n) {
  auto* at = static_cast<uint8_t*>(p);
  while (n > 0) {
    const ssize_t got = read(fd, at, n);
    if (got <= 0) return false;
    at += got, n -= static_cast<size_t>(got);
  }
  return true;
}

// A child process that allocated 4096 bytes of `fill` in its heap and waits to be killed: its pid (0 when the fork
// or the pipe failed), the token of those bytes and its heap's owner.
struct HeapChild {
  pid_t pid = 0;
  uint64_t token = 0;
  SharedHeap::Owner owner;
};
HeapChild ForkHeapChild(uint8_t fill) {
  int to_parent[2];
  if (pipe(to_parent) != 0) return {};
  const pid_t child = fork();
  if (child == 0) {
    void* p = SharedHeap::Process().Allocate(4096);
    std::memset(p, fill, 4096);
    const uint64_t said[] = {SharedHeap::Process().TokenOf(p, 4096), SharedHeap::Self().pid, SharedHeap::Self().id};
    if (write(to_parent[1], said, sizeof said) != sizeof said) _exit(1);
    pause();
    _exit(0);
  }
  uint64_t said[3] = {};
  const bool told = child > 0 && ReadAll(to_parent[0], said, sizeof said);
  close(to_parent[0]), close(to_parent[1]);
  if (!told) return {};
  return {child, said[0], {said[1], said[2]}};
}

// The line of /proc/self/maps whose mapping holds `p`, "" when none does.
std::string MapsLineOf(const void* p) {
  std::ifstream maps("/proc/self/maps");
  const auto at = reinterpret_cast<uintptr_t>(p);
  for (std::string line; std::getline(maps, line);) {
    uintptr_t begin = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &begin, &end) == 2 && at >= begin && at < end) return line;
  }
  return "";
}

// The mapping of /proc/self/maps that holds `p` (its path), "" when none does.
std::string MappingOf(const void* p) {
  const std::string line = MapsLineOf(p);
  const size_t path = line.find('/');
  if (line.empty()) return "";
  return path == std::string::npos ? "(anonymous)" : line.substr(path);
}

TEST(SharedHeap, AnotherProcessReadsInPlaceThroughAReadOnlyMapping) {
  std::mt19937_64 rng(moe_ep::testing::BaseSeed());
  SharedHeap& heap = SharedHeap::Process();
  const size_t n = 1 + rng() % (3 << 20);
  const std::vector<uint8_t> bytes = RandomBytes(rng, n);
  auto* p = static_cast<uint8_t*>(heap.Allocate(n));
  std::memcpy(p, bytes.data(), n);
  const size_t at = rng() % n;  // a token may name any range inside the chunk
  const uint64_t token = heap.TokenOf(p + at, n - at);
  ASSERT_NE(token, 0u);
  const SharedHeap::Owner parent = SharedHeap::Self();
  EXPECT_EQ(SharedHeap::Map(token, n - at, parent), p + at);  // this process: its own mapping

  int to_parent[2], to_child[2];
  ASSERT_EQ(pipe(to_parent), 0);
  ASSERT_EQ(pipe(to_child), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // another process: maps the parent's chunk through the token, checks it, reads a change
    const uint8_t* q = SharedHeap::Map(token, n - at, parent);
    const std::string maps_line = q ? MapsLineOf(q) : "";
    const uint8_t said[2] = {q && std::memcmp(q, bytes.data() + at, n - at) == 0,
                             maps_line.find(" r--s ") != std::string::npos};  // read-only, shared
    uint8_t changed = 0;
    if (write(to_parent[1], said, sizeof said) != sizeof said || !ReadAll(to_child[0], &changed, 1)) _exit(1);
    const uint8_t seen = q ? q[0] : 0;
    _exit(write(to_parent[1], &seen, 1) == 1 ? 0 : 1);
  }
  close(to_parent[1]), close(to_child[0]);  // a child that dies ends the parent's reads
  uint8_t said[2] = {}, seen = 0;
  const bool told = ReadAll(to_parent[0], said, sizeof said);
  p[at] ^= 0xFF;
  const bool changed = told && write(to_child[1], "c", 1) == 1;
  const bool saw = changed && ReadAll(to_parent[0], &seen, 1);
  int status = 0;
  waitpid(child, &status, 0);
  close(to_parent[0]), close(to_child[1]);
  ASSERT_TRUE(told && saw) << "the child ended with status " << status;
  EXPECT_EQ(said[0], 1) << "the child read other bytes through the token";
  EXPECT_EQ(said[1], 1) << "the child's mapping of the chunk is not read-only";
  EXPECT_EQ(seen, static_cast<uint8_t>(bytes[at] ^ 0xFF)) << "the child reads a copy, not the parent's memory";
  heap.Free(p);
}

// A fork child leaves the parent's chunks to the parent: what each then allocates is its own memory (they once
// carved the same free offsets of the same shared chunk, and wrote over each other), and the child's tokens name
// the child. What the child inherited still reads the parent's bytes, and freeing it there does nothing.
TEST(SharedHeap, AForkChildAllocatesMemoryOfItsOwn) {
  SharedHeap& heap = SharedHeap::Process();
  auto* inherited = static_cast<uint8_t*>(heap.Allocate(4096));
  std::memset(inherited, 0xAA, 4096);
  int to_parent[2], to_child[2];
  ASSERT_EQ(pipe(to_parent), 0);
  ASSERT_EQ(pipe(to_child), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // allocates and fills a block, lets the parent allocate and fill one, then checks its own
    auto* mine = static_cast<uint8_t*>(heap.Allocate(4096));
    std::memset(mine, 0xCC, 4096);
    uint8_t step = 1;
    if (write(to_parent[1], &step, 1) != 1 || !ReadAll(to_child[0], &step, 1)) _exit(2);
    bool kept = inherited[0] == 0xAA;
    for (int i = 0; i < 4096; ++i) kept = kept && mine[i] == 0xCC;
    const uint64_t token = heap.TokenOf(mine, 4096);
    const bool named = (token >> 42) == static_cast<uint64_t>(getpid()) && SharedHeap::Self().pid == uint64_t(getpid());
    try {  // what it inherited is the parent's: freeing it (objects dropped as the child ends) frees nothing
      heap.Free(inherited);
      heap.Free(mine);
    } catch (...) {
      _exit(5);
    }
    _exit(kept ? (named ? 0 : 4) : 3);
  }
  uint8_t step = 0;
  ASSERT_TRUE(ReadAll(to_parent[0], &step, 1));
  auto* parents = static_cast<uint8_t*>(heap.Allocate(4096));
  std::memset(parents, 0x55, 4096);
  ASSERT_EQ(write(to_child[1], &step, 1), 1);
  int status = 0;
  waitpid(child, &status, 0);
  for (int fd : {to_parent[0], to_parent[1], to_child[0], to_child[1]}) close(fd);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 3) << "the parent's allocation wrote over the child's (or the inherited bytes went)";
  EXPECT_NE(WEXITSTATUS(status), 4) << "the child's token does not name the child";
  EXPECT_NE(WEXITSTATUS(status), 5) << "the child could not free a block it inherited, or its own";
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (int i = 0; i < 4096; ++i) ASSERT_EQ(parents[i], 0x55) << "byte " << i << " of the parent's block";
  heap.Free(parents);
  heap.Free(inherited);
}

// A token maps only for the owner it names: the right pid with another heap id (a process the system gave a gone
// owner's pid) maps nothing, though the pid, descriptor and offset all resolve.
TEST(SharedHeap, ATokenMapsOnlyForItsOwnersHeapId) {
  const HeapChild child = ForkHeapChild(0x3C);
  ASSERT_GT(child.pid, 0);
  EXPECT_EQ(SharedHeap::Map(child.token, 4096, {child.owner.pid, child.owner.id ^ 1}), nullptr);
  const uint8_t* q = SharedHeap::Map(child.token, 4096, child.owner);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q[0], 0x3C);
  EXPECT_EQ(q[4095], 0x3C);
  kill(child.pid, SIGKILL);
  waitpid(child.pid, nullptr, 0);
  SharedHeap::Hold(child.owner);  // unmaps the child's chunk again
  SharedHeap::Release(child.owner);
}

TEST(SharedHeap, ChunksArePrivateUnnamedAndGoWithTheirProcess) {
  // A token of the parent's first, so that the child's token is made after the heap knows a pid (it
  // keeps it): the child's must name the child.
  void* own = SharedHeap::Process().Allocate(64);
  ASSERT_EQ(SharedHeap::Process().TokenOf(own, 64) >> 42, static_cast<uint64_t>(getpid()));
  const HeapChild heap_child = ForkHeapChild(0x5A);
  ASSERT_GT(heap_child.pid, 0);
  const pid_t child = heap_child.pid;
  const uint64_t token = heap_child.token;
  const SharedHeap::Owner owner = heap_child.owner;
  EXPECT_EQ(owner.pid, static_cast<uint64_t>(child));
  EXPECT_NE(owner.id, SharedHeap::Self().id) << "a fork child kept its parent's heap id";
  EXPECT_EQ(token >> 42, static_cast<uint64_t>(child)) << "the child's token names another process";
  // The chunk's mode, as a peer opening it sees it.
  const std::string fd_path = "/proc/" + std::to_string(child) + "/fd/" + std::to_string((token >> 32) & 1023);
  struct stat st {};
  ASSERT_EQ(stat(fd_path.c_str(), &st), 0) << fd_path;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(SharedHeap::Map(token, 4096, SharedHeap::Self()), nullptr) << "a token mapped for another owner";
  const uint8_t* q = SharedHeap::Map(token, 4096, owner);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q[4095], 0x5A);
  // Unnamed: a memfd, which no name in /dev/shm outlives (its listing is no witness: other tests' MPI jobs and
  // windows come and go in it meanwhile).
  char link[256] = {};
  ASSERT_GT(readlink(fd_path.c_str(), link, sizeof link - 1), 0) << fd_path;
  EXPECT_EQ(std::string(link).rfind("/memfd:", 0), 0u) << "a heap chunk is a named file: " << link;
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_EQ(q[0], 0x5A) << "a mapping outlives its owner";
  EXPECT_EQ(SharedHeap::Map(token + (uint64_t{1} << 32), 16, owner), nullptr)
      << "a token naming a gone descriptor maps";
  SharedHeap::Process().Free(own);
}

// A peer's chunks stay mapped while a window holds the peer, and go when the last hold is released: a dead peer's
// pages are freed, and nothing of it is found later under its pid.
TEST(SharedHeap, PeerChunksGoWithTheLastHold) {
  const HeapChild heap_child = ForkHeapChild(0x3C);
  ASSERT_GT(heap_child.pid, 0);
  const pid_t child = heap_child.pid;
  const SharedHeap::Owner owner = heap_child.owner;
  SharedHeap::Hold(owner);  // two windows with this peer
  SharedHeap::Hold(owner);
  const uint8_t* q = SharedHeap::Map(heap_child.token, 4096, owner);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q[100], 0x3C);
  EXPECT_EQ(MappingOf(q).rfind("/memfd:moe_ep heap", 0), 0u) << MappingOf(q);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  SharedHeap::Release(owner);
  EXPECT_EQ(q[100], 0x3C) << "one window still holds the peer: its chunk must stay mapped";
  SharedHeap::Release(owner);
  EXPECT_EQ(MappingOf(q).find("memfd"), std::string::npos) << "the dead peer's chunk is still mapped";
  EXPECT_EQ(SharedHeap::Map(heap_child.token, 4096, owner), nullptr) << "a gone peer's chunk was mapped again";
}

TEST(SharedHeap, FreedBlocksAreReusedAndMerge) {
  SharedHeap& heap = SharedHeap::Process();
  void* a = heap.Allocate(1000);
  void* b = heap.Allocate(5000);
  void* c = heap.Allocate(64);
  EXPECT_EQ(heap.RoomAt(b), 5056u);  // rounded to 64
  heap.Free(b);
  EXPECT_EQ(heap.RoomAt(b), 0u);
  EXPECT_EQ(heap.Allocate(5000), b) << "a freed block of the same size is not reused";
  heap.Free(a);
  heap.Free(b);  // merges with a's block: room for both at a
  void* ab = heap.Allocate(1024 + 5056);
  EXPECT_EQ(ab, a);
  heap.Free(ab);
  heap.Free(c);
}

// Zeroed blocks: a reused one is cleared; one in a chunk made for it is zero already and left untouched (a large
// peer-visible tensor costs memory only where it is written).
TEST(SharedHeap, ZeroedBlocksAreClearedOrFreshAndUntouched) {
  SharedHeap& heap = SharedHeap::Process();
  auto* dirty = static_cast<uint8_t*>(heap.Allocate(4096));
  std::memset(dirty, 0xA7, 4096);
  heap.Free(dirty);
  auto* reused = static_cast<uint8_t*>(heap.AllocateZeroed(4096));
  ASSERT_EQ(reused, dirty) << "the freed block was not reused";
  for (int i = 0; i < 4096; ++i) ASSERT_EQ(reused[i], 0) << "byte " << i;
  heap.Free(reused);

  const size_t bytes = size_t{256} << 20;
  auto* fresh = static_cast<uint8_t*>(heap.AllocateZeroed(bytes));
  std::vector<unsigned char> resident(bytes / 4096);
  ASSERT_EQ(mincore(fresh, bytes, resident.data()), 0);
  size_t touched = 0;
  for (unsigned char page : resident) touched += page & 1;
  EXPECT_EQ(touched, 0u) << "pages of a fresh chunk were touched";
  EXPECT_EQ(fresh[0], 0);
  EXPECT_EQ(fresh[bytes - 1], 0);
  heap.Free(fresh);
}

// The bytes of a memory file that hold pages (not holes), through its descriptor.
uint64_t ResidentBytesOf(uint64_t token) {
  struct stat st {};
  const std::string path = "/proc/self/fd/" + std::to_string((token >> 32) & 1023);
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : ~uint64_t{0};
}

// How many descriptors this process holds.
int OpenDescriptors() {
  int n = 0;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (readdir(dir)) ++n;
    closedir(dir);
  }
  return n;
}

// A block larger than a chunk gets a chunk of its own, whose pages go back to the system when it is freed. A
// mapping of it that a late reader still holds reads zeros (it must not fault), the next large block reuses the
// chunk and its descriptor, grown where it must be, and a thousand large blocks in turn hold no more descriptors
// than one.
TEST(SharedHeap, LargeBlocksGiveTheirPagesBackAndReuseTheirChunk) {
  SharedHeap& heap = SharedHeap::Process();
  const size_t bytes = size_t{100} << 20;
  auto* p = static_cast<uint8_t*>(heap.Allocate(bytes));
  std::memset(p, 0x5A, bytes);
  const uint64_t token = heap.TokenOf(p, bytes);
  ASSERT_NE(token, 0u);
  EXPECT_EQ(MappingOf(p).rfind("/memfd:moe_ep heap", 0), 0u) << MappingOf(p);
  EXPECT_GE(ResidentBytesOf(token), bytes);
  const std::string path = "/proc/self/fd/" + std::to_string((token >> 32) & 1023);
  const int fd = open(path.c_str(), O_RDONLY);  // a reader's mapping, as a peer holds one
  ASSERT_GE(fd, 0);
  auto* reader = static_cast<const uint8_t*>(mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0));
  close(fd);
  ASSERT_NE(reader, MAP_FAILED);
  EXPECT_EQ(reader[bytes - 1], 0x5A);
  heap.Free(p);
  EXPECT_EQ(ResidentBytesOf(token), 0u) << "a freed large chunk kept its pages";
  EXPECT_EQ(reader[0], 0);
  EXPECT_EQ(reader[bytes - 1], 0) << "the late reader's mapping";
  munmap(const_cast<uint8_t*>(reader), bytes);

  auto* zeroed = static_cast<uint8_t*>(heap.AllocateZeroed(bytes));  // the same chunk, left untouched: zeros
  EXPECT_EQ(heap.TokenOf(zeroed, bytes) >> 32, token >> 32) << "the chunk's descriptor was not reused";
  EXPECT_EQ(zeroed[bytes / 2], 0);
  EXPECT_LT(ResidentBytesOf(token), uint64_t{1} << 20) << "a zeroed block of a chunk given back was written";
  heap.Free(zeroed);
  auto* larger = static_cast<uint8_t*>(heap.AllocateZeroed(2 * bytes));  // grows the chunk
  EXPECT_EQ(heap.TokenOf(larger, 2 * bytes) >> 32, token >> 32) << "a larger block did not grow the chunk";
  EXPECT_EQ(larger[2 * bytes - 1], 0);
  larger[2 * bytes - 1] = 7;
  EXPECT_EQ(SharedHeap::Map(heap.TokenOf(larger, 2 * bytes), 2 * bytes, SharedHeap::Self()), larger);
  heap.Free(larger);

  const int descriptors = OpenDescriptors();
  for (size_t i = 0; i < 1000; ++i) heap.Free(heap.Allocate(bytes + (i % 7) * (size_t{3} << 20)));
  EXPECT_EQ(OpenDescriptors(), descriptors) << "large blocks in turn left descriptors open";
}

TEST(SharedHeap, BadPointersAreErrorsThatFreeNothing) {
  SharedHeap& heap = SharedHeap::Process();
  auto* p = static_cast<uint8_t*>(heap.Allocate(256));
  int on_stack = 0;
  for (const void* bad :
       {static_cast<const void*>(p + 64), static_cast<const void*>(&on_stack), static_cast<const void*>(nullptr)}) {
    try {
      heap.Free(bad);
      ADD_FAILURE() << "freeing " << bad << " did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidParam);
      EXPECT_NE(std::string(e.what()).find("not the start of live shared-heap memory"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(heap.RoomAt(p), 256u) << "a refused free freed something";
  heap.Free(p);
  using moe_ep::testing::ThrowsError;
  EXPECT_TRUE(ThrowsError([&] { heap.Free(p); }, ErrorCode::kInvalidParam, "not the start of live shared-heap memory"))
      << "a double free";
  EXPECT_TRUE(ThrowsError([&] { heap.Allocate(0); }, ErrorCode::kInvalidParam, "the size must be in [1, "));
  EXPECT_TRUE(ThrowsError([&] { heap.Allocate(size_t{1} << 52); }, ErrorCode::kInvalidParam, "the size must be in"))
      << "more than the machine's memory";
  EXPECT_EQ(heap.TokenOf(&on_stack, 4), 0u) << "memory outside the heap has a token";
  EXPECT_EQ(SharedHeap::Map(0, 1, SharedHeap::Self()), nullptr);
  EXPECT_EQ(SharedHeap::Map(~uint64_t{0}, 1, SharedHeap::Self()), nullptr);
}

// Through the public API (libmoe_ep holds a heap of its own, so this checks where the memory is mapped).
TEST(SharedHeap, PeerVisibleTensorsLiveInTheHeap) {
  Tensor t = Tensor::PeerVisible(DType::kBf16, {3, 5});
  EXPECT_EQ(t.numel(), 15);
  EXPECT_EQ(MappingOf(t.data()).rfind("/memfd:moe_ep heap", 0), 0u) << MappingOf(t.data());
  for (int i = 0; i < 15; ++i) EXPECT_EQ(t.data_as<uint16_t>()[i], 0) << "not zero-filled";
  Tensor ordinary(DType::kBf16, {3, 5});
  EXPECT_EQ(MappingOf(ordinary.data()).find("memfd"), std::string::npos) << MappingOf(ordinary.data());
}

}  // namespace
}  // namespace moe_ep::transport
