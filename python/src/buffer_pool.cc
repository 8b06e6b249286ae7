// The block pool behind PooledBlock: mmap'ed blocks kept by size when released, up to a cap; small outputs from the
// heap.
#include "buffer_pool.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "moe_ep/error.h"

namespace py = pybind11;

namespace moe_ep::python {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kHugePage = size_t{2} << 20;
// Outputs up to this size (counts, a token's scales) come from the heap: a page each would make a caller that
// keeps many results hold 4 KiB per few bytes, and they cost no page faults worth keeping a block for.
constexpr size_t kSmallBytes = 2048;
constexpr size_t kSmallAlign = 64;

size_t Rounded(size_t bytes) { return (std::max<size_t>(bytes, 1) + kPage - 1) / kPage * kPage; }

class Pool {
 public:
  static Pool& Get() {
    static Pool* pool = new Pool;  // never destroyed: blocks may be released during interpreter teardown
    return *pool;
  }

  void* Acquire(size_t bytes) {
    if (bytes <= kSmallBytes) {
      void* block =
          std::aligned_alloc(kSmallAlign, (std::max<size_t>(bytes, 1) + kSmallAlign - 1) / kSmallAlign * kSmallAlign);
      if (block == nullptr) {
        throw Error(ErrorCode::kInternal, "cannot allocate " + std::to_string(bytes) + " bytes for an output");
      }
      std::lock_guard<std::mutex> lock(mu_);
      ++in_use_;
      return block;
    }
    const size_t size = Rounded(bytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = free_.find(size); it != free_.end()) {  // shapes repeat call after call: same size
        void* block = it->second;
        free_.erase(it);
        free_bytes_ -= size;
        ++in_use_;
        return block;
      }
    }
    void* block = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (block == MAP_FAILED) {  // the system's resources, not the caller's arguments
      throw Error(ErrorCode::kInternal,
                  "cannot map " + std::to_string(size) + " bytes for an output: " + std::strerror(errno));
    }
    if (size >= kHugePage) madvise(block, size, MADV_HUGEPAGE);  // fewer faults where the system allows
    std::lock_guard<std::mutex> lock(mu_);
    ++in_use_;
    return block;
  }

  void Release(void* block, size_t bytes) {
    if (bytes <= kSmallBytes) {
      std::free(block);
      std::lock_guard<std::mutex> lock(mu_);
      --in_use_;
      return;
    }
    const size_t size = Rounded(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    --in_use_;
    free_.emplace(size, block);
    free_bytes_ += size;
    while (free_bytes_ > kMaxFreeBytes) {  // the largest idle blocks go back to the system first
      auto largest = std::prev(free_.end());
      munmap(largest->second, largest->first);
      free_bytes_ -= largest->first;
      free_.erase(largest);
    }
  }

  py::tuple Stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return py::make_tuple(in_use_, free_.size(), free_bytes_);
  }

 private:
  // Idle memory kept for reuse. Enough for the outputs of a few large calls per rank.
  static constexpr size_t kMaxFreeBytes = size_t{4} << 30;
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  size_t free_bytes_ = 0;
  size_t in_use_ = 0;
};

}  // namespace

PooledBlock::PooledBlock(size_t bytes) : data_(Pool::Get().Acquire(bytes)), bytes_(bytes) {}
PooledBlock::~PooledBlock() { Pool::Get().Release(data_, bytes_); }

void BindBufferPool(py::module_& m) {
  m.def(
      "pool_stats", [] { return Pool::Get().Stats(); }, "(blocks in use, idle blocks, idle bytes)");
}

}  // namespace moe_ep::python
