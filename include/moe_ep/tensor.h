// Tensor views (borrowed memory with dtype, shape and element strides) and owning tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

// The public API: exported from libmoe_ep, whose other symbols are hidden.
#pragma GCC visibility push(default)
namespace moe_ep {

/// Element types the operators read or write.
enum class DType : uint8_t { kBf16, kFp16, kFloat32, kInt8, kInt32, kInt64, kBool };

/// Bytes per element of `dtype`.
size_t DTypeSize(DType dtype);
/// "bf16", "fp16", "float32", ... (for messages).
const char* DTypeName(DType dtype);

/// A borrowed, possibly strided view of memory. Strides are in elements; an empty `strides` means
/// row-major contiguous. A default-constructed view (data == nullptr) means "absent" for optional inputs; a
/// view of no elements needs no address (nothing is read or written through it), and an input of elements without
/// one is refused (161001), not taken for absent.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kBf16;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;

  TensorView() = default;
  TensorView(void* data, DType dtype, std::vector<int64_t> shape, std::vector<int64_t> strides = {});
  TensorView(const void* data, DType dtype, std::vector<int64_t> shape, std::vector<int64_t> strides = {});

  bool present() const { return data != nullptr; }
  int64_t dim() const { return static_cast<int64_t>(shape.size()); }
  int64_t numel() const;
  /// Stride of dimension d in elements (row-major default when `strides` is empty); 0 for a negative d.
  int64_t stride(int64_t d) const;
  /// True when the elements are dense and row-major.
  bool contiguous() const;
  /// "(128, 7168) bf16", or "(128, 7168) bf16 strided (7169, 1)" where not contiguous (for messages).
  std::string Describe() const;
};

/// An owning, contiguous, 64-byte aligned, zero-filled tensor. A default-constructed one is empty: no data, no
/// elements (an output an operation did not make, such as dispatch's dynamic_scales without quantization); its
/// view() is then absent (present() false), and its shape (a scalar's) means nothing.
class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, std::vector<int64_t> shape);
  /// Copies share the storage. A moved-from tensor is empty, as a default-constructed one.
  Tensor(const Tensor&) = default;
  Tensor& operator=(const Tensor&) = default;
  Tensor(Tensor&& other) noexcept
      : storage_(std::move(other.storage_)), view_(std::exchange(other.view_, TensorView())) {}
  Tensor& operator=(Tensor&& other) noexcept {
    storage_ = std::move(other.storage_);
    view_ = std::exchange(other.view_, TensorView());
    return *this;
  }
  /// The same, in this process's shared heap: ranks that are other processes of this host read it in
  /// place, so dispatch's x and combine's expert outputs allocated here move with one copy per row (the
  /// pull data path). Tensors anywhere else still work: dispatch copies an x of at most 64 KiB, or one no larger
  /// than the rows it sends to other ranks, into the shared heap and peers pull from there; other rows are
  /// pushed, or read by a kernel copy where MOE_EP_CROSS_MEMORY allows it. Threads of one process need nothing of
  /// this (every address is visible to them).
  static Tensor PeerVisible(DType dtype, std::vector<int64_t> shape);

  DType dtype() const { return view_.dtype; }
  const std::vector<int64_t>& shape() const { return view_.shape; }
  int64_t numel() const { return storage_ ? view_.numel() : 0; }
  size_t bytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype()); }
  void* data() { return view_.data; }
  const void* data() const { return view_.data; }
  template <typename T>
  T* data_as() {
    return static_cast<T*>(view_.data);
  }
  template <typename T>
  const T* data_as() const {
    return static_cast<const T*>(view_.data);
  }
  const TensorView& view() const { return view_; }

 private:
  static uint64_t StorageBytes(const TensorView& view);  // checks the shape; throws Error when it cannot be
  std::shared_ptr<std::byte> storage_;
  TensorView view_;
};

}  // namespace moe_ep
#pragma GCC visibility pop
