// A Window over memory every rank can load from and store to directly (threads of one process, or
// processes that map the same shared memory): Put is a copy (CopyBytes), Signal a release store; ranks that share
// an address space expose any memory to each other by its address.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "transport/window.h"

namespace moe_ep::transport {

/// One rank's region: `data_bytes` of data then the flags, both zero on first touch.
struct RankRegion {
  uint8_t* data = nullptr;
  uint64_t* flags = nullptr;  // FlagAreaBytes(flag_count, size): the flags, then the rank's doorbell
};

class LoadStoreWindow : public Window {
 public:
  /// `regions[r]` is rank r's region as mapped in this process; `keepalive` owns the mappings. With
  /// `one_address_space` (the ranks are threads of one process) every address is peer-visible.
  LoadStoreWindow(int rank, std::vector<RankRegion> regions, uint64_t data_bytes, uint64_t flag_count, std::string name,
                  std::shared_ptr<void> keepalive, bool one_address_space = false);

  void Put(int peer, uint64_t offset, const void* src, uint64_t bytes) override;
  void Signal(int peer, uint64_t index, uint64_t value) override;
  void SignalAll(std::span<const FlagWrite> writes) override;  // one fence, one ring per run of writes to a peer
  uint64_t CompareExchangeFlag(int peer, uint64_t index, uint64_t expected, uint64_t desired) override;
  uint64_t ReadFlag(uint64_t index) const override;
  uint64_t Expose(int peer, const void* p, uint64_t bytes) const override;
  const uint8_t* Resolve(int peer, uint64_t token, uint64_t bytes) const override;
  const uint8_t* LocalData() const override { return regions_[rank()].data; }
  void ClearLocal(uint64_t cleared_flags) override;
  /// Naps on this rank's doorbell: every Signal and CompareExchangeFlag to this rank rings it while one of
  /// its threads naps (they count themselves), so a nap ends as soon as a flag may have changed.
  bool NapUnless(const std::function<bool()>& done, Clock::duration nap) const override;
  /// Naps end at a peer's signal, and are long; capped so that a wait still looks at the clock and the
  /// interrupt check often.
  Clock::duration LongestNap() const override { return std::chrono::milliseconds(2); }

 protected:
  void CheckPeer(int peer, const char* what) const;  // throws Error for a rank outside the group

 private:
  // Rank r's doorbell, on the first cache line after its flags: rings (the futex word) and the threads of r napping
  // on it.
  uint32_t* Doorbell(int r) const;
  // After stores to peer's flags: wakes peer's napping threads, if any (a load otherwise). `fenced`: the caller
  // fenced after its stores (SignalAll, once for all its peers).
  void Ring(int peer, bool fenced = false) const;
  void CheckFlag(int peer, uint64_t index, const char* what) const;  // throws Error for a flag beyond the area

  std::vector<RankRegion> regions_;
  std::shared_ptr<void> keepalive_;
  bool one_address_space_;
};

/// Bytes of the flag area every region of a `size`-rank window carries: the user's `flag_count` flags,
/// the transport's own, and the rank's doorbell.
uint64_t FlagAreaBytes(uint64_t flag_count, int size);

}  // namespace moe_ep::transport
