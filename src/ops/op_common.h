// Small pieces every operation shares: the parity half / flag base / epoch of a call, and the
// mapping from tensor dtypes to kernel half types.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"
#include "moe_ep/tensor.h"
#include "ops/communicator.h"
#include "transport/window.h"

namespace moe_ep::ops {

/// Where one call of an operation lives in a window: its parity, data half, flag half and epoch tag.
struct CallSlot {
  uint64_t parity;
  uint64_t half_offset;
  uint64_t flag_base;
  uint32_t epoch;
};

/// Claims the next call of an operation on window `w` whose flags start at `flag_region` with
/// `flags_per_half` per half; `calls` is that operation's counter in the window's state.
inline CallSlot NextCall(const transport::Window& w, OpState& state, uint64_t& calls, uint64_t flag_region,
                         uint64_t flags_per_half) {
  ++state.operations;
  const uint64_t call = calls++, parity = call & 1;
  return {parity, parity * (w.data_bytes() / 2), flag_region + parity * flags_per_half,
          static_cast<uint32_t>(transport::EpochOf((state.generation << 24) + call))};
}

inline kernels::Half HalfOf(DType d) { return d == DType::kFp16 ? kernels::Half::kFp16 : kernels::Half::kBf16; }

}  // namespace moe_ep::ops
