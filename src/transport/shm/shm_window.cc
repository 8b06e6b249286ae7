// Shared-memory transport: segment creation (0600, O_EXCL), mapping peers as they appear, the join
// barrier, and unlinking names as soon as everyone is mapped so killed ranks leave nothing behind.
#include "transport/shm/shm_window.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "transport/load_store_window.h"
#include "transport/shm/shared_heap.h"

namespace moe_ep::transport {
namespace {

[[noreturn]] void SystemError(const std::string& what) {
  throw Error(ErrorCode::kInternal, "shared-memory transport: " + what + ": " + std::strerror(errno));
}

// Owns this process's mappings of every rank's segment.
class ShmMappings {
 public:
  explicit ShmMappings(uint64_t bytes) : bytes_(bytes) {}
  ~ShmMappings() {
    for (uint8_t* p : maps_) {
      if (p) munmap(p, bytes_);
    }
  }
  void Add(uint8_t* p) { maps_.push_back(p); }
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

// Opens a peer's segment once it exists with its full size (its creator sizes it right after creating).
int OpenPeer(const std::string& name, uint64_t bytes, Clock::time_point deadline, int peer, const std::string& group) {
  for (auto pause = std::chrono::microseconds(50);; pause = std::min(pause * 2, std::chrono::microseconds(20000))) {
    const int fd = shm_open(name.c_str(), O_RDWR, 0);
    if (fd >= 0) {
      struct stat st {};
      const bool sized = fstat(fd, &st) == 0 && st.st_size != 0;
      if (sized && static_cast<uint64_t>(st.st_size) == bytes) return fd;
      close(fd);
      // Its creator sizes a segment right after creating it: another nonzero size is a disagreement.
      if (sized) {
        throw Error(ErrorCode::kInvalidConfig,
                    "joining shared-memory group '" + group + "': rank " + std::to_string(peer) + "'s window is " +
                        std::to_string(st.st_size) + " bytes and this rank's " + std::to_string(bytes) +
                        "; every rank must ask for the same window size (MOE_EP_WINDOW_MB, GroupOptions::window_bytes, "
                        "HCCL_BUFFSIZE)");
      }
    } else if (errno != ENOENT) {
      SystemError("cannot open " + name);
    }
    if (Clock::now() >= deadline) {
      throw TimeoutError("joining shared-memory group '" + group + "': rank " + std::to_string(peer) +
                             " did not create its segment in time",
                         {peer});
    }
    std::this_thread::sleep_for(pause);
  }
}

// Processes reach each other's memory where it is in a shared heap (SharedHeap), by token.
class ShmWindow final : public LoadStoreWindow {
 public:
  using LoadStoreWindow::LoadStoreWindow;
  uint64_t Expose(int peer, const void* p, uint64_t bytes) const override {
    CheckPeer(peer, "expose");
    return SharedHeap::Process().TokenOf(p, bytes);
  }
  const uint8_t* Resolve(int peer, uint64_t token, uint64_t bytes) const override {
    CheckPeer(peer, "resolve");
    return SharedHeap::Map(token, bytes);
  }
};

}  // namespace

std::string ShmSegmentName(const std::string& job, const std::string& group, int rank) {
  return "/moe_ep." + job + "." + group + "." + std::to_string(rank);
}

std::unique_ptr<Window> JoinShmGroup(const std::string& job, const std::string& group, int rank, int size,
                                     uint64_t data_bytes, uint64_t flag_count, Clock::time_point deadline) {
  if (job.empty() || job.find('/') != std::string::npos || group.find('/') != std::string::npos) {
    throw Error(ErrorCode::kInvalidParam, "shared-memory transport: job '" + job + "' and group '" + group +
                                              "' must be non-empty names without '/'");
  }
  data_bytes = (data_bytes + 4095) / 4096 * 4096;
  const uint64_t bytes = data_bytes + FlagAreaBytes(flag_count, size);
  auto maps = std::make_shared<ShmMappings>(bytes);
  const std::string own = ShmSegmentName(job, group, rank);
  const int own_fd = shm_open(own.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (own_fd < 0) SystemError("cannot create " + own + " (another job with the same rendezvous?)");
  struct Unlinker {  // until every peer has mapped it, the name must go if we fail
    std::string name;
    bool armed = true;
    ~Unlinker() {
      if (armed) shm_unlink(name.c_str());
    }
  } unlink_on_error{own};
  // fchmod: the creation mode is filtered by the umask, the job's segments are 0600 whatever it is.
  if (fchmod(own_fd, 0600) != 0 || ftruncate(own_fd, static_cast<off_t>(bytes)) != 0) {
    close(own_fd);
    SystemError("cannot size " + own);
  }
  // Map our own segment first, closing its descriptor, so no failure below can leak it.
  uint8_t* own_base = MapAndClose(own_fd, bytes, own);
  maps->Add(own_base);
  std::vector<RankRegion> regions(size);
  regions[rank] = {own_base, reinterpret_cast<uint64_t*>(own_base + data_bytes)};
  for (int r = 0; r < size; ++r) {
    if (r == rank) continue;
    const std::string name = ShmSegmentName(job, group, r);
    uint8_t* base = MapAndClose(OpenPeer(name, bytes, deadline, r, group), bytes, name);
    maps->Add(base);
    regions[r] = {base, reinterpret_cast<uint64_t*>(base + data_bytes)};
  }
  auto window =
      std::make_unique<ShmWindow>(rank, regions, data_bytes, flag_count, "shared-memory group '" + group + "'", maps);
  window->Barrier(deadline, "every rank mapping every segment");
  shm_unlink(own.c_str());
  unlink_on_error.armed = false;
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
