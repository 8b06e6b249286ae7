// A window seen through a renumbering of its ranks (elastic scale-down, docs/semantics.md 2.8): the
// operations run with the survivors numbered 0..n-1 while puts and signals reach the physical ranks.
// It only renumbers; Barrier and Probe belong to the physical window.
#pragma once

#include <string>
#include <vector>

#include "transport/window.h"

namespace moe_ep::transport {

class RemappedWindow : public Window {
 public:
  /// Logical rank r is physical rank `physical[r]` of `inner`; this process is logical `logical_rank`.
  RemappedWindow(Window& inner, int logical_rank, std::vector<int> physical)
      : Window(logical_rank, static_cast<int>(physical.size()), inner.data_bytes(), inner.flag_count(), inner.name()),
        inner_(inner),
        physical_(std::move(physical)) {}

  void Put(int peer, uint64_t offset, const void* src, uint64_t bytes) override {
    inner_.Put(physical_[peer], offset, src, bytes);
  }
  void PutRow(int peer, uint64_t offset, const void* src, uint64_t bytes, uint64_t tag) override {
    inner_.PutRow(physical_[peer], offset, src, bytes, tag);
  }
  const uint8_t* Row(uint64_t offset, uint64_t bytes, uint64_t tag) const override {
    return inner_.Row(offset, bytes, tag);
  }
  void Signal(int peer, uint64_t index, uint64_t value) override { inner_.Signal(physical_[peer], index, value); }
  uint64_t Expose(int peer, const void* p, uint64_t bytes) const override {
    return inner_.Expose(physical_[peer], p, bytes);
  }
  const uint8_t* Resolve(int peer, uint64_t token, uint64_t bytes) const override {
    return InOuterNumbering(
        *this, [&] { return inner_.Resolve(physical_[peer], token, bytes); }, [&](int) { return peer; });
  }
  bool ExposedByCopy(int peer, uint64_t token) const override { return inner_.ExposedByCopy(physical_[peer], token); }
  void ReadExposed(int peer, uint64_t token, std::span<const ExposedRead> reads) const override {
    InOuterNumbering(
        *this, [&] { inner_.ReadExposed(physical_[peer], token, reads); }, [&](int) { return peer; });
  }
  uint64_t CompareExchangeFlag(int peer, uint64_t index, uint64_t expected, uint64_t desired) override {
    return inner_.CompareExchangeFlag(physical_[peer], index, expected, desired);
  }
  uint64_t ReadFlag(uint64_t index) const override { return inner_.ReadFlag(index); }
  const uint8_t* LocalData() const override { return inner_.LocalData(); }
  void ClearLocal(uint64_t cleared_flags) override { inner_.ClearLocal(cleared_flags); }
  bool Progress() const override { return inner_.Progress(); }
  void Flush() const override { inner_.Flush(); }
  bool NapUnless(const std::function<bool()>& done, Clock::duration nap) const override {
    return inner_.NapUnless(done, nap);  // a peer's Signal rings the physical rank's doorbell
  }
  Clock::duration LongestNap() const override { return inner_.LongestNap(); }
  void Drain(Clock::time_point deadline, const char* op, std::span<const int> gone) override {
    inner_.Drain(deadline, op, Physical(gone));
  }
  void SetFailedPeers(std::span<const int> failed) override { inner_.SetFailedPeers(Physical(failed)); }
  void AllowRelay(bool allowed) override { inner_.AllowRelay(allowed); }
  void BeginRound(uint64_t round) override { inner_.BeginRound(round); }
  /// The physical window's account of the missing ranks (the hosts transport's messages under way, a missing
  /// relay), which names ranks as it numbers them: the original ranks.
  std::string ExplainMissing(std::span<const int> missing) const override {
    std::string text = inner_.ExplainMissing(Physical(missing));
    if (text.starts_with("; ")) text.erase(0, 2);
    return text.empty() ? text : "; in the original numbering, " + text;
  }
  /// The physical rank of logical rank r (for messages).
  int Physical(int r) const { return physical_[r]; }

 private:
  std::vector<int> Physical(std::span<const int> ranks) const {
    std::vector<int> physical;
    for (int r : ranks) physical.push_back(physical_[r]);
    return physical;
  }

  Window& inner_;
  std::vector<int> physical_;
};

}  // namespace moe_ep::transport
