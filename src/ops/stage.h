// Staging an input where peers read it in place: a copy that outlives the call, so the call returns without
// waiting for its readers; and for an input in private memory, the one copy that lets peers read it at all
// (docs/protocol.md, "Pull data path").
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <vector>

#include "transport/window.h"

namespace moe_ep::ops {

/// Inputs up to this size are staged even where peers could read them in place: copying them costs less
/// than the round trip in which every reader says it is done (a few microseconds against tens on a loaded
/// host). Larger ones only when some reader could not read them where they are.
inline constexpr uint64_t kStageMaxBytes = uint64_t{64} << 10;

/// Two buffers in this process's shared heap (any peer of the host can read them), one per call parity, each
/// at least kStageMaxBytes and grown to the largest input staged in it. Dispatch call n (counted with the
/// combines) stages into buffer n % 2. Every call ends with the done words of its readers, and the next call
/// of that parity looks at those of call n before it writes the buffer again: in the normal course they are
/// there (call n + 1, of either operation, waited for every peer's start, sent only once a peer had finished
/// call n). One missing (a peer failed, stalled, was scaled
/// away, or a reset cleared the flags first) means a reader may still be at it: that buffer is then
/// abandoned, kept but never reused or freed, and a new one is taken.
class StageBuffers {
 public:
  StageBuffers() = default;
  ~StageBuffers();  // frees the buffers no reader may still use; abandons the others
  StageBuffers(const StageBuffers&) = delete;
  StageBuffers& operator=(const StageBuffers&) = delete;

  /// Buffer `parity`, of at least `bytes`, once no reader of the last call staged there may still read it
  /// (`window` holds their done words); nullptr when the shared heap has no room for it.
  uint8_t* Take(const transport::Window& window, uint64_t parity, uint64_t bytes);
  /// Before call `parity` announces anything (which re-arms the done words of the last call staged in that
  /// buffer): abandons the buffer if a reader of that call is not done, and forgets its readers. Take does it too.
  void Retire(const transport::Window& window, uint64_t parity);
  /// Records the readers of what call `parity` staged: the flags in which each says it is done, and the
  /// call's epoch those must carry.
  void Readers(uint64_t parity, uint32_t epoch, std::vector<uint64_t> done_flags);
  /// Waits until `deadline` for every reader of a staged call to be done, then abandons the buffers whose
  /// readers are not: before a reset clears the done words, and before the window goes.
  void Settle(const transport::Window& window, transport::Clock::time_point deadline);
  /// Buffers given up on so far (kept for the life of the process): each is shared memory a reader may still
  /// read, or that a call refused before any reader came would have leaked.
  int abandoned() const { return abandoned_; }

 private:
  struct Buffer {
    uint8_t* bytes = nullptr;
    uint64_t capacity = 0;
    uint32_t epoch = 0;                // of the last call staged here
    std::vector<uint64_t> done_flags;  // its readers' done words; empty: nobody may be reading
  };
  static bool Done(const transport::Window& window, const Buffer& buffer);
  void Abandon(Buffer& buffer);
  std::array<Buffer, 2> buffers_{};
  int abandoned_ = 0;
};

}  // namespace moe_ep::ops
