// Staging a small input where peers read it in place: a copy that outlives the call, so the call returns
// without waiting for its readers (docs/protocol.md, "Pull data path").
#pragma once

#include <array>
#include <cstdint>

namespace moe_ep::ops {

/// Inputs up to this size are staged: copying them costs less than the round trip in which every reader
/// says it is done (a few microseconds against tens on a loaded host).
inline constexpr uint64_t kStageMaxBytes = uint64_t{64} << 10;

/// Two kStageMaxBytes buffers in this process's shared heap (any peer of the host can read them), one per
/// call parity, made on first use and kept for the life of the communicator. Call n stages into buffer
/// n % 2, which call n + 2 overwrites only after every peer finished call n: call n + 1 waits for every
/// peer's counts, which a peer sends only once it has read everything of call n.
class StageBuffers {
 public:
  StageBuffers() = default;
  ~StageBuffers();
  StageBuffers(const StageBuffers&) = delete;
  StageBuffers& operator=(const StageBuffers&) = delete;

  /// Copies `count` rows of `row_bytes` (row i at `base + i * stride`) densely into buffer `parity` and
  /// returns it; nullptr when they take more than kStageMaxBytes.
  const uint8_t* Stage(uint64_t parity, const uint8_t* base, uint64_t stride, uint64_t count, uint64_t row_bytes);

 private:
  std::array<uint8_t*, 2> buffers_{};
};

}  // namespace moe_ep::ops
