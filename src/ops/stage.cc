// Staged inputs: copies in the shared heap, one buffer per call parity.
#include "ops/stage.h"

#include "base/copy.h"
#include "transport/shm/shared_heap.h"

namespace moe_ep::ops {

StageBuffers::~StageBuffers() {
  for (uint8_t* buffer : buffers_) {
    if (buffer) transport::SharedHeap::Process().Free(buffer);
  }
}

const uint8_t* StageBuffers::Stage(uint64_t parity, const uint8_t* base, uint64_t stride, uint64_t count,
                                   uint64_t row_bytes) {
  if (row_bytes != 0 && count > kStageMaxBytes / row_bytes) return nullptr;
  uint8_t*& buffer = buffers_[parity & 1];
  if (!buffer) buffer = static_cast<uint8_t*>(transport::SharedHeap::Process().Allocate(kStageMaxBytes));
  for (uint64_t i = 0; i < count; ++i) CopyBytes(buffer + i * row_bytes, base + i * stride, row_bytes);
  return buffer;
}

}  // namespace moe_ep::ops
