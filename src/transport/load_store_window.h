// A Window over memory every rank can load from and store to directly (threads of one process, or
// processes that map the same shared memory): Put is a copy (CopyBytes), Signal a release store; ranks that share
// an address space expose any memory to each other by its address.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "transport/window.h"

namespace moe_ep::transport {

/// One rank's region: `data_bytes` of data then the flags, both zero on first touch.
struct RankRegion {
  uint8_t* data = nullptr;
  uint64_t* flags = nullptr;  // FlagAreaBytes(flag_count, size) / 8 flags
};

class LoadStoreWindow : public Window {
 public:
  /// `regions[r]` is rank r's region as mapped in this process; `keepalive` owns the mappings. With
  /// `one_address_space` (the ranks are threads of one process) every address is peer-visible.
  LoadStoreWindow(int rank, std::vector<RankRegion> regions, uint64_t data_bytes, uint64_t flag_count, std::string name,
                  std::shared_ptr<void> keepalive, bool one_address_space = false);

  void Put(int peer, uint64_t offset, const void* src, uint64_t bytes) override;
  void Signal(int peer, uint64_t index, uint64_t value) override;
  uint64_t CompareExchangeFlag(int peer, uint64_t index, uint64_t expected, uint64_t desired) override;
  uint64_t ReadFlag(uint64_t index) const override;
  uint64_t Expose(int peer, const void* p, uint64_t bytes) const override;
  const uint8_t* Resolve(int peer, uint64_t token, uint64_t bytes) const override;
  const uint8_t* LocalData() const override { return regions_[rank()].data; }
  void ClearLocal(uint64_t cleared_flags) override;

 protected:
  void CheckPeer(int peer, const char* what) const;  // throws Error for a rank outside the group

 private:
  std::vector<RankRegion> regions_;
  std::shared_ptr<void> keepalive_;
  bool one_address_space_;
};

/// Bytes of the flag area every region of a `size`-rank window carries: the user's `flag_count` flags
/// and the transport's own.
uint64_t FlagAreaBytes(uint64_t flag_count, int size);

}  // namespace moe_ep::transport
