// HandleRegistry: the live objects behind one kind of opaque C handle (streams, contexts, executors), so a handle is
// looked up before it is used and a stale or made-up handle is an error, never a dereference.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace moe_ep::cann::runtime {

// Handle tags (the top 16 bits of the opaque handles) so that a handle of one kind is never taken for another;
// the counter below them runs 2^44 handles (an executor per operation, a million a second, for half a year).
inline constexpr uintptr_t kStreamHandleTag = uintptr_t{0x5354} << 48;    // "ST"
inline constexpr uintptr_t kContextHandleTag = uintptr_t{0x4358} << 48;   // "CX"
inline constexpr uintptr_t kExecutorHandleTag = uintptr_t{0x4558} << 48;  // "EX"
inline constexpr uintptr_t kCommHandleTag = uintptr_t{0x4843} << 48;      // "HC" (HcclComm)

/// Maps opaque handles to shared objects. Handles are tokens, not addresses: each is `tag` plus a counter
/// that never repeats, so destroying a handle twice fails even after a new object took the old one's
/// memory, and a handle of one kind (say a context) is never found in another kind's registry.
template <typename T>
class HandleRegistry {
 public:
  /// `tag` sets the high bits of every handle (distinct per registry).
  explicit HandleRegistry(uintptr_t tag) : tag_(tag) {}

  /// Registers `object` and returns its new handle.
  void* Add(std::shared_ptr<T> object) {
    return AddMade([&](void*) { return std::move(object); });
  }

  /// Registers `make(handle)` under a new handle and returns the handle: for objects that carry their
  /// own handle (in messages). Nothing is registered when `make` throws.
  template <typename Make>
  void* AddMade(Make&& make) {
    std::lock_guard<std::mutex> lock(mu_);
    const uintptr_t key = tag_ | (next_id_++ << 4);
    void* handle = reinterpret_cast<void*>(key);
    objects_.emplace(key, make(handle));
    return handle;
  }

  /// The object of `handle`, or nullptr when it was never registered or was removed.
  std::shared_ptr<T> Find(const void* handle) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find(reinterpret_cast<uintptr_t>(handle));
    return it == objects_.end() ? nullptr : it->second;
  }

  /// Unregisters `handle` and returns its object; nullptr when it was not live. Of two threads removing
  /// the same handle, exactly one gets the object.
  std::shared_ptr<T> Remove(const void* handle) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find(reinterpret_cast<uintptr_t>(handle));
    if (it == objects_.end()) return nullptr;
    std::shared_ptr<T> object = std::move(it->second);
    objects_.erase(it);
    return object;
  }

  /// Registers `object` again under `handle`, which Remove returned it from (a launch that did not happen gives
  /// its executor back, so the caller may retry).
  void Restore(const void* handle, std::shared_ptr<T> object) {
    std::lock_guard<std::mutex> lock(mu_);
    objects_.emplace(reinterpret_cast<uintptr_t>(handle), std::move(object));
  }

  /// Unregisters every handle and returns the objects (aclFinalize).
  std::vector<std::shared_ptr<T>> RemoveAll() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::shared_ptr<T>> all;
    all.reserve(objects_.size());
    for (auto& [key, object] : objects_) all.push_back(std::move(object));
    objects_.clear();
    return all;
  }

  /// The live objects, for a walk that must not hold the registry's lock (it may wait on them).
  std::vector<std::shared_ptr<T>> Snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::shared_ptr<T>> all;
    all.reserve(objects_.size());
    for (const auto& [key, object] : objects_) all.push_back(object);
    return all;
  }

 private:
  const uintptr_t tag_;
  mutable std::mutex mu_;
  uintptr_t next_id_ = 1;
  std::unordered_map<uintptr_t, std::shared_ptr<T>> objects_;
};

}  // namespace moe_ep::cann::runtime
