// Tensors in the shared heap (Tensor::PeerVisible): the native API's way to the pull data path between
// process ranks.
#include "moe_ep/tensor.h"
#include "transport/shm/shared_heap.h"

namespace moe_ep {

Tensor Tensor::PeerVisible(DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.view_ = TensorView(static_cast<void*>(nullptr), dtype, std::move(shape));
  const uint64_t bytes = StorageBytes(t.view_);
  void* p = transport::SharedHeap::Process().AllocateZeroed(bytes);
  t.storage_ = std::shared_ptr<std::byte>(static_cast<std::byte*>(p),
                                          [](std::byte* q) { transport::SharedHeap::Process().Free(q); });
  t.view_.data = p;
  return t;
}

}  // namespace moe_ep
