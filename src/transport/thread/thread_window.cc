// Thread transport: anonymous NORESERVE mappings, one per rank, shared by pointer.
#include "transport/thread/thread_window.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "moe_ep/error.h"
#include "transport/load_store_window.h"

namespace moe_ep::transport {
namespace {

// Owns the mappings of all ranks; the windows share it, so memory lives as long as any rank's window.
class ThreadRegions {
 public:
  ThreadRegions(int size, uint64_t data_bytes, uint64_t flag_count)
      : bytes_(data_bytes + FlagAreaBytes(flag_count, size)) {
    for (int r = 0; r < size; ++r) {
      void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) {
        const std::string why = std::strerror(errno);
        Release();
        throw Error(ErrorCode::kInternal, "thread transport: cannot reserve a " + std::to_string(bytes_) +
                                              "-byte window for rank " + std::to_string(r) + " of " +
                                              std::to_string(size) + ": " + why +
                                              " (the window size: GroupOptions::window_bytes, MOE_EP_WINDOW_MB, "
                                              "HCCL_BUFFSIZE; every rank's is reserved in this process)");
      }
      auto* base = static_cast<uint8_t*>(p);
      maps_.push_back(base);
      regions_.push_back({base, reinterpret_cast<uint64_t*>(base + data_bytes)});
    }
  }
  ~ThreadRegions() { Release(); }
  const std::vector<RankRegion>& regions() const { return regions_; }

 private:
  void Release() {
    for (uint8_t* p : maps_) munmap(p, bytes_);
    maps_.clear();
  }
  uint64_t bytes_;
  std::vector<uint8_t*> maps_;
  std::vector<RankRegion> regions_;
};

}  // namespace

std::vector<std::unique_ptr<Window>> CreateThreadWindows(int size, uint64_t data_bytes, uint64_t flag_count,
                                                         const std::string& name) {
  // Flags are 8-byte aligned as long as the data area size is.
  data_bytes = (data_bytes + 4095) / 4096 * 4096;
  auto regions = std::make_shared<ThreadRegions>(size, data_bytes, flag_count);
  std::vector<std::unique_ptr<Window>> windows;
  for (int r = 0; r < size; ++r) {
    windows.push_back(std::make_unique<LoadStoreWindow>(r, regions->regions(), data_bytes, flag_count, name, regions,
                                                        /*one_address_space=*/true));
  }
  return windows;
}

}  // namespace moe_ep::transport
