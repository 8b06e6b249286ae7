// Staged inputs: copies in the shared heap, one buffer per call parity, reused only once their readers are done.
#include "ops/stage.h"

#include <algorithm>
#include <exception>
#include <thread>

#include "ops/pull.h"
#include "transport/shm/shared_heap.h"

namespace moe_ep::ops {

StageBuffers::~StageBuffers() {
  for (Buffer& buffer : buffers_) {
    if (!buffer.done_flags.empty()) Abandon(buffer);  // nobody said it may go (Settle was not called)
    if (buffer.bytes) transport::SharedHeap::Process().Free(buffer.bytes);
  }
}

bool StageBuffers::Done(const transport::Window& window, const Buffer& buffer) {
  for (uint64_t flag : buffer.done_flags) {
    if (!pull::IsDone(window.ReadFlag(flag), buffer.epoch)) return false;
  }
  return true;
}

void StageBuffers::Abandon(Buffer& buffer) {
  // A reader may still copy from it: keep the memory for the life of the process.
  if (buffer.bytes) ++abandoned_;
  buffer.bytes = nullptr;
  buffer.done_flags.clear();
}

void StageBuffers::Retire(const transport::Window& window, uint64_t parity) {
  Buffer& buffer = buffers_[parity & 1];
  if (!buffer.done_flags.empty() && !Done(window, buffer)) Abandon(buffer);
  buffer.done_flags.clear();
}

uint8_t* StageBuffers::Take(const transport::Window& window, uint64_t parity, uint64_t bytes) {
  Retire(window, parity);
  Buffer& buffer = buffers_[parity & 1];
  if (buffer.bytes && buffer.capacity < bytes) {
    transport::SharedHeap::Process().Free(buffer.bytes);
    buffer.bytes = nullptr;
  }
  if (!buffer.bytes) {
    try {
      buffer.capacity = std::max(bytes, kStageMaxBytes);
      buffer.bytes = static_cast<uint8_t*>(transport::SharedHeap::Process().Allocate(buffer.capacity));
    } catch (const std::exception&) {
      return nullptr;  // no shared memory to spare: the rows are read from where they are, as without staging
    }
  }
  return buffer.bytes;
}

void StageBuffers::Readers(uint64_t parity, uint32_t epoch, std::vector<uint64_t> done_flags) {
  Buffer& buffer = buffers_[parity & 1];
  buffer.epoch = epoch;
  buffer.done_flags = std::move(done_flags);
}

void StageBuffers::Settle(const transport::Window& window, transport::Clock::time_point deadline) {
  for (Buffer& buffer : buffers_) {
    // Readers are on this host (only they read in place): their done words need no Progress, which a
    // window may no longer allow here (MPI finalised before the group was destroyed).
    while (!buffer.done_flags.empty() && !Done(window, buffer) && transport::Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (!buffer.done_flags.empty() && !Done(window, buffer)) Abandon(buffer);
    buffer.done_flags.clear();
  }
}

}  // namespace moe_ep::ops
