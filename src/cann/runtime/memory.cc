// "Device" memory (from the shared heap: what peers reach in place, as an NPU's device memory is) and
// pinned host memory (ordinary aligned memory), both remembered in a registry, and the synchronous and
// stream-ordered copies and fills.
#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cann/runtime/internal.h"
#include "moe_ep/error.h"
#include "transport/shm/shared_heap.h"

namespace moe_ep::cann::runtime {
namespace {

// Cache-line alignment; CANN's device allocations are at least this aligned.
constexpr size_t kAlignment = 64;
// Larger requests fail cleanly here rather than abort inside a sanitizer's allocator.
constexpr size_t kMaxAllocation = size_t{1} << 40;

enum class MemoryKind { kDevice, kHost };

const char* AllocatorOf(MemoryKind kind) { return kind == MemoryKind::kDevice ? "aclrtMalloc" : "aclrtMallocHost"; }
const char* FreerOf(MemoryKind kind) { return kind == MemoryKind::kDevice ? "aclrtFree" : "aclrtFreeHost"; }
// The pointer parameter of the allocator and the freer, as CANN names it.
const char* PointerParamOf(MemoryKind kind) { return kind == MemoryKind::kDevice ? "devPtr" : "hostPtr"; }

struct Allocation {
  size_t bytes = 0;
  size_t rounded = 0;  // what the allocator gave: bytes up to the alignment
  MemoryKind kind = MemoryKind::kDevice;
  uint64_t holds = 0;   // MemoryHolds on it: tasks on streams that use it
  uint64_t serial = 0;  // tells it from an allocation at the same address before or after it
};

struct Allocations {
  std::mutex mu;
  std::map<const void*, Allocation, std::less<>> by_address;      // ordered: RoomAt finds the one holding a pointer
  std::map<const void*, Allocation, std::less<>> freed_but_held;  // given back when their last MemoryHold goes
  uint64_t serials = 0;
};

// Never destroyed: stream tasks may still free memory while the process exits.
Allocations& Live() {
  static auto* const live = new Allocations;
  return *live;
}

void FreeMemory(void* p, MemoryKind kind) {
  if (kind == MemoryKind::kHost) {
    std::free(p);
  } else {
    transport::SharedHeap::Process().Free(p);
  }
}

aclError Allocate(const char* api, void** ptr, size_t size, MemoryKind kind) {
  const std::string name = api;
  if (ptr == nullptr) {
    return Fail(ACL_ERROR_INVALID_PARAM, name + ": parameter '" + PointerParamOf(kind) + "' is nullptr");
  }
  if (size == 0) return Fail(ACL_ERROR_INVALID_PARAM, name + ": size 0 is invalid (it must be > 0)");
  if (size > kMaxAllocation) {
    return Fail(ACL_ERROR_RT_MEMORY_ALLOCATION,
                name + ": " + std::to_string(size) + " bytes is more than the emulation allocates (1 TiB)");
  }
  // aligned_alloc wants a multiple of the alignment. Not zero-filled, as on a device.
  const size_t rounded = (size + kAlignment - 1) / kAlignment * kAlignment;
  void* memory = nullptr;
  if (kind == MemoryKind::kHost) {
    memory = std::aligned_alloc(kAlignment, rounded);
  } else {
    try {
      memory = transport::SharedHeap::Process().Allocate(rounded);
    } catch (const Error& e) {  // the heap's reason (a size past the machine's memory, a full /dev/shm) with it
      return Fail(ACL_ERROR_RT_MEMORY_ALLOCATION,
                  name + ": cannot allocate " + std::to_string(size) + " bytes of device memory: " + e.what());
    }
  }
  if (memory == nullptr) {
    return Fail(ACL_ERROR_RT_MEMORY_ALLOCATION, name + ": out of host memory for " + std::to_string(size) + " bytes");
  }
  try {
    Allocations& live = Live();
    std::lock_guard<std::mutex> lock(live.mu);
    live.by_address[memory] = Allocation{size, rounded, kind, 0, ++live.serials};
  } catch (...) {
    FreeMemory(memory, kind);
    throw;
  }
  *ptr = memory;
  return ACL_SUCCESS;
}

aclError Release(const char* api, void* ptr, MemoryKind kind) {
  const std::string name = api;
  if (ptr == nullptr) {
    return Fail(ACL_ERROR_INVALID_PARAM, name + ": parameter '" + PointerParamOf(kind) + "' is nullptr");
  }
  {
    Allocations& live = Live();
    std::lock_guard<std::mutex> lock(live.mu);
    auto it = live.by_address.find(ptr);
    if (it == live.by_address.end()) {
      return Fail(ACL_ERROR_RT_MEMORY_FREE, name + ": " + HandleName(ptr) + " is not the start of live memory from " +
                                                AllocatorOf(kind) + " (never allocated, or already freed)");
    }
    if (it->second.kind != kind) {
      return Fail(ACL_ERROR_RT_MEMORY_FREE, name + ": " + HandleName(ptr) + " (" + std::to_string(it->second.bytes) +
                                                " bytes) came from " + AllocatorOf(it->second.kind) +
                                                "; free it with " + FreerOf(it->second.kind));
    }
    // A task queued on a stream still uses it: given back once that task is done (MemoryHold).
    if (it->second.holds > 0) {
      live.freed_but_held.insert(live.by_address.extract(it));
      return ACL_SUCCESS;
    }
    live.by_address.erase(it);
  }
  FreeMemory(ptr, kind);
  return ACL_SUCCESS;
}

bool ValidMemcpyKind(int64_t kind) {
  return kind >= ACL_MEMCPY_HOST_TO_HOST && kind <= ACL_MEMCPY_INTER_DEVICE_TO_DEVICE;
}

// One policy (its low byte: HUGE_FIRST .. HUGE1G_ONLY_P2P), optionally OR-ed with the bandwidth and access flags.
bool ValidMallocPolicy(int64_t policy) {
  constexpr int64_t kFlags =
      ACL_MEM_TYPE_LOW_BAND_WIDTH | ACL_MEM_TYPE_HIGH_BAND_WIDTH | ACL_MEM_ACCESS_USER_SPACE_READONLY;
  const int64_t base = policy & 0xFF;
  return policy >= 0 && (policy & ~(kFlags | 0xFF)) == 0 && base <= ACL_MEM_MALLOC_HUGE1G_ONLY_P2P;
}

// Bytes from `p` to the end of the live allocation that holds it; nullopt for memory aclrtMalloc(Host) did not
// allocate (ordinary host memory, which it cannot measure). A pointer in the alignment padding, or just past it
// where no other block starts (the shared heap packs blocks, some of them not aclrtMalloc's), has no room: it is
// the end of this allocation, not foreign memory. RoomAtLocked: with live.mu held.
std::optional<size_t> RoomAtLocked(Allocations& live, const void* p) {
  auto it = live.by_address.upper_bound(p);
  if (it == live.by_address.begin()) return std::nullopt;
  --it;
  const auto* start = static_cast<const uint8_t*>(it->first);
  const auto* at = static_cast<const uint8_t*>(p);
  const size_t offset = static_cast<size_t>(at - start);
  if (std::less<>()(at, start) || offset > it->second.rounded) return std::nullopt;
  if (offset == it->second.rounded && it->second.kind == MemoryKind::kDevice &&
      transport::SharedHeap::Process().RoomAt(p) > 0) {
    return std::nullopt;  // the next block of the heap
  }
  return it->second.bytes > offset ? it->second.bytes - offset : 0;
}

std::optional<size_t> RoomAt(const void* p) {
  Allocations& live = Live();
  std::lock_guard<std::mutex> lock(live.mu);
  return RoomAtLocked(live, p);
}

// The allocation of `allocations` holding `p` (its alignment padding included), or end().
template <typename Map>
auto Holding(Map& allocations, const void* p) {
  auto it = allocations.upper_bound(p);
  if (it == allocations.begin()) return allocations.end();
  --it;
  const auto* start = static_cast<const uint8_t*>(it->first);
  const auto* at = static_cast<const uint8_t*>(p);
  return at - start < static_cast<ptrdiff_t>(it->second.rounded) ? it : allocations.end();
}

// Why `p` (named `what`) may not be used: it points into memory freed already, which a task queued on a stream still
// holds (the caller holds live.mu); "" when it may.
std::string FreedMemoryProblem(Allocations& live, const void* p, const std::string& what) {
  const auto it = Holding(live.freed_but_held, p);
  if (it == live.freed_but_held.end()) return "";
  return what + " points into the " + std::to_string(it->second.bytes) + " bytes at " + HandleName(it->first) +
         ", freed already (" + FreerOf(it->second.kind) + "; a task queued on a stream still uses them)";
}

// RoomAt(p), once p is known not to point into memory freed already; when it does, `*freed` says why, naming it
// `what` (FreedMemoryProblem), and the room is nullopt.
std::optional<size_t> LiveRoomAt(const void* p, const std::string& what, std::string* freed) {
  Allocations& live = Live();
  std::lock_guard<std::mutex> lock(live.mu);
  *freed = FreedMemoryProblem(live, p, what);
  return freed->empty() ? RoomAtLocked(live, p) : std::nullopt;
}

// Memory neither aclrtMalloc nor aclrtMallocHost gave: ordinary host memory (a std::vector, malloc's), which the
// caller may reuse or free as soon as a call returns.
bool IsOrdinaryHostMemory(const void* p) { return !RoomAt(p).has_value(); }

// The `count` bytes a copy or fill touches at `p` must lie inside the allocation holding p. Only those: a destMax
// (maxCount) larger than what is left is accepted, as CANN checks no more than count <= destMax.
aclError CheckRoom(const std::string& api, const char* param, const void* p, size_t count) {
  std::string freed;
  const std::optional<size_t> room = LiveRoomAt(p, api + ": '" + param + "'", &freed);
  if (!freed.empty()) return Fail(ACL_ERROR_INVALID_PARAM, freed);
  if (!room || count <= *room) return ACL_SUCCESS;
  return Fail(ACL_ERROR_INVALID_PARAM, api + ": count " + std::to_string(count) + " is more than the " +
                                           std::to_string(*room) + " bytes left in the allocation at '" + param + "'");
}

// The checks aclrtMemcpy and aclrtMemcpyAsync share (the async one checks at launch).
aclError CheckMemcpy(const std::string& api, const void* dst, size_t dest_max, const void* src, size_t count,
                     const aclrtMemcpyKind& kind) {
  if (dst == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, api + ": parameter 'dst' is nullptr");
  if (src == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, api + ": parameter 'src' is nullptr");
  if (count > dest_max) {
    return Fail(ACL_ERROR_INVALID_PARAM, api + ": count " + std::to_string(count) + " is more than destMax " +
                                             std::to_string(dest_max) + " (the room at dst)");
  }
  if (const int64_t raw_kind = RawEnumValue(kind); !ValidMemcpyKind(raw_kind)) {
    return Fail(ACL_ERROR_INVALID_PARAM,
                api + ": kind " + std::to_string(raw_kind) + " is not an aclrtMemcpyKind (0 to 7)");
  }
  if (aclError status = CheckRoom(api, "dst", dst, count); status != ACL_SUCCESS) return status;
  return CheckRoom(api, "src", src, count);
}

aclError CheckMemset(const std::string& api, const void* dst, size_t max_count, size_t count) {
  if (dst == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, api + ": parameter 'devPtr' is nullptr");
  if (count > max_count) {
    return Fail(ACL_ERROR_INVALID_PARAM, api + ": count " + std::to_string(count) + " is more than maxCount " +
                                             std::to_string(max_count) + " (the room at devPtr)");
  }
  return CheckRoom(api, "devPtr", dst, count);
}

}  // namespace
}  // namespace moe_ep::cann::runtime

namespace moe_ep::cann {

namespace {

// The live allocations holding `pointers`, each once (the caller holds live.mu). With `what`, a pointer into memory
// freed already is an error naming it.
std::vector<AllocationId> IdsHolding(runtime::Allocations& live, const std::vector<const void*>& pointers,
                                     const std::string* what) {
  std::vector<AllocationId> ids;
  for (const void* p : pointers) {
    if (p == nullptr) continue;
    if (what != nullptr) {
      if (const std::string problem = runtime::FreedMemoryProblem(live, p, *what); !problem.empty()) {
        throw Error(ErrorCode::kInvalidParam, problem);
      }
    }
    const auto it = runtime::Holding(live.by_address, p);
    if (it == live.by_address.end()) continue;
    const AllocationId id{it->first, it->second.serial};
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

}  // namespace

bool InAllocation(const void* p) { return !runtime::IsOrdinaryHostMemory(p); }

std::string TensorMemoryProblem(const void* start, uint64_t bytes, const std::string& what) {
  std::string freed;
  const std::optional<size_t> room = runtime::LiveRoomAt(start, what, &freed);
  if (!freed.empty() || !room || bytes <= *room) return freed;
  return what + " reaches " + std::to_string(bytes) + " bytes from " + runtime::HandleName(start) + ", past the " +
         std::to_string(*room) +
         " bytes its allocation has from there (rule: a tensor's elements lie inside its "
         "allocation)";
}

std::vector<AllocationId> AllocationsHolding(const std::vector<const void*>& pointers, const std::string& what) {
  runtime::Allocations& live = runtime::Live();
  std::lock_guard<std::mutex> lock(live.mu);
  return IdsHolding(live, pointers, &what);
}

MemoryHold::MemoryHold(std::vector<AllocationId> ids, const std::string& what) : ids_(std::move(ids)) {
  runtime::Allocations& live = runtime::Live();
  std::lock_guard<std::mutex> lock(live.mu);
  for (const AllocationId& id : ids_) {
    const auto it = live.by_address.find(id.start);
    if (it == live.by_address.end() || it->second.serial != id.serial) {
      throw Error(ErrorCode::kInvalidParam,
                  what + ": the memory at " + runtime::HandleName(id.start) +
                      " that one of its tensors points into was freed (aclrtFree / aclrtFreeHost) after phase one; "
                      "rule: a tensor's memory lives until the operator ran");
    }
  }
  for (const AllocationId& id : ids_) ++live.by_address.find(id.start)->second.holds;
}

std::shared_ptr<const MemoryHold> MemoryHold::Of(const std::vector<const void*>& pointers) {
  // Found and held at once, so that nothing frees them in between (the checks at the call refused freed memory); the
  // hold is made first, so that nothing can throw once the counts are taken.
  std::shared_ptr<MemoryHold> hold(new MemoryHold(std::vector<AllocationId>{}));
  runtime::Allocations& live = runtime::Live();
  std::lock_guard<std::mutex> lock(live.mu);
  hold->ids_ = IdsHolding(live, pointers, nullptr);
  for (const AllocationId& id : hold->ids_) ++live.by_address.find(id.start)->second.holds;
  return hold;
}

MemoryHold::~MemoryHold() {
  // Nothing may escape a destructor: memory that cannot be given back (no memory for the list, a heap error) stays.
  try {
    std::vector<std::pair<void*, runtime::MemoryKind>> given_back;
    {
      runtime::Allocations& live = runtime::Live();
      std::lock_guard<std::mutex> lock(live.mu);
      for (const AllocationId& id : ids_) {
        // Freed while held (it cannot have been allocated anew meanwhile: its memory was not given back).
        if (const auto dying = live.freed_but_held.find(id.start); dying != live.freed_but_held.end()) {
          if (--dying->second.holds == 0) {
            given_back.emplace_back(const_cast<void*>(id.start), dying->second.kind);
            live.freed_but_held.erase(dying);
          }
        } else if (const auto it = live.by_address.find(id.start); it != live.by_address.end()) {
          --it->second.holds;
        }
      }
    }
    for (const auto& [memory, kind] : given_back) runtime::FreeMemory(memory, kind);
  } catch (...) {
  }
}

}  // namespace moe_ep::cann

using moe_ep::cann::ApiFamily;
using moe_ep::cann::Fail;
using moe_ep::cann::Guarded;
using moe_ep::cann::runtime::MemoryKind;

extern "C" aclError aclrtMalloc(void** devPtr, size_t size, aclrtMemMallocPolicy policy) {
  return Guarded("aclrtMalloc", ApiFamily::kAcl, [&]() -> aclError {
    const int64_t raw_policy = moe_ep::cann::runtime::RawEnumValue(policy);
    if (!moe_ep::cann::runtime::ValidMallocPolicy(raw_policy)) {
      return Fail(ACL_ERROR_INVALID_PARAM,
                  "aclrtMalloc: policy " + std::to_string(raw_policy) +
                      " is not an aclrtMemMallocPolicy (0 to 7, optionally OR-ed with ACL_MEM_TYPE_LOW_BAND_WIDTH, "
                      "ACL_MEM_TYPE_HIGH_BAND_WIDTH or ACL_MEM_ACCESS_USER_SPACE_READONLY)");
    }
    return moe_ep::cann::runtime::Allocate("aclrtMalloc", devPtr, size, MemoryKind::kDevice);
  });
}

extern "C" aclError aclrtFree(void* devPtr) {
  return Guarded("aclrtFree", ApiFamily::kAcl, [&]() -> aclError {
    return moe_ep::cann::runtime::Release("aclrtFree", devPtr, MemoryKind::kDevice);
  });
}

extern "C" aclError aclrtMallocHost(void** hostPtr, size_t size) {
  return Guarded("aclrtMallocHost", ApiFamily::kAcl, [&]() -> aclError {
    return moe_ep::cann::runtime::Allocate("aclrtMallocHost", hostPtr, size, MemoryKind::kHost);
  });
}

extern "C" aclError aclrtFreeHost(void* hostPtr) {
  return Guarded("aclrtFreeHost", ApiFamily::kAcl, [&]() -> aclError {
    return moe_ep::cann::runtime::Release("aclrtFreeHost", hostPtr, MemoryKind::kHost);
  });
}

// memmove, not memcpy: overlapping ranges then copy as if through a buffer instead of being undefined.
extern "C" aclError aclrtMemcpy(void* dst, size_t destMax, const void* src, size_t count, aclrtMemcpyKind kind) {
  return Guarded("aclrtMemcpy", ApiFamily::kAcl, [&]() -> aclError {
    if (aclError status = moe_ep::cann::runtime::CheckMemcpy("aclrtMemcpy", dst, destMax, src, count, kind);
        status != ACL_SUCCESS) {
      return status;
    }
    std::memmove(dst, src, count);
    return ACL_SUCCESS;
  });
}

extern "C" aclError aclrtMemset(void* devPtr, size_t maxCount, int32_t value, size_t count) {
  return Guarded("aclrtMemset", ApiFamily::kAcl, [&]() -> aclError {
    if (aclError status = moe_ep::cann::runtime::CheckMemset("aclrtMemset", devPtr, maxCount, count);
        status != ACL_SUCCESS) {
      return status;
    }
    std::memset(devPtr, value, count);
    return ACL_SUCCESS;
  });
}

extern "C" aclError aclrtMemcpyAsync(void* dst, size_t destMax, const void* src, size_t count, aclrtMemcpyKind kind,
                                     aclrtStream stream) {
  return Guarded("aclrtMemcpyAsync", ApiFamily::kAcl, [&]() -> aclError {
    if (aclError status = moe_ep::cann::runtime::CheckMemcpy("aclrtMemcpyAsync", dst, destMax, src, count, kind);
        status != ACL_SUCCESS) {
      return status;
    }
    // Its memory stays until the copy ran, whoever frees it meanwhile.
    auto hold = moe_ep::cann::MemoryHold::Of({dst, src});
    auto copy = [dst, src, count, hold] { std::memmove(dst, src, count); };
    // As CANN documents: with host memory that is not aclrtMallocHost's (not page-locked), the call returns once
    // the copy is done, which still runs in stream order; the caller may then reuse its buffer, or read it.
    if (moe_ep::cann::runtime::IsOrdinaryHostMemory(dst) || moe_ep::cann::runtime::IsOrdinaryHostMemory(src)) {
      return moe_ep::cann::runtime::LaunchAndWait("aclrtMemcpyAsync", stream, std::move(copy));
    }
    return moe_ep::cann::LaunchOnStream(stream, "aclrtMemcpyAsync", std::move(copy));
  });
}

extern "C" aclError aclrtMemsetAsync(void* devPtr, size_t maxCount, int32_t value, size_t count, aclrtStream stream) {
  return Guarded("aclrtMemsetAsync", ApiFamily::kAcl, [&]() -> aclError {
    if (aclError status = moe_ep::cann::runtime::CheckMemset("aclrtMemsetAsync", devPtr, maxCount, count);
        status != ACL_SUCCESS) {
      return status;
    }
    auto hold = moe_ep::cann::MemoryHold::Of({devPtr});
    return moe_ep::cann::LaunchOnStream(stream, "aclrtMemsetAsync",
                                        [devPtr, value, count, hold] { std::memset(devPtr, value, count); });
  });
}
