// TensorView and Tensor: element sizes, strides, descriptions and aligned allocation.
#include "moe_ep/tensor.h"

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "base/saturating.h"
#include "moe_ep/error.h"

namespace moe_ep {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kBf16:
    case DType::kFp16:
      return 2;
    case DType::kFloat32:
    case DType::kInt32:
      return 4;
    case DType::kInt64:
      return 8;
    case DType::kInt8:
    case DType::kBool:
      return 1;
  }
  return 1;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kBf16:
      return "bf16";
    case DType::kFp16:
      return "fp16";
    case DType::kFloat32:
      return "float32";
    case DType::kInt8:
      return "int8";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
    case DType::kBool:
      return "bool";
  }
  return "?";
}

TensorView::TensorView(void* data, DType dtype, std::vector<int64_t> shape, std::vector<int64_t> strides)
    : data(data), dtype(dtype), shape(std::move(shape)), strides(std::move(strides)) {
  // A tensor without elements may have no address (torch allocates none for a (0,) tensor, such as the
  // tpRecvCountsOut of tpWorldSize 0): it is still given, not absent; nothing is read or written through it.
  alignas(64) static std::byte no_elements[64];  // aligned for any element type it is cast to
  if (this->data == nullptr && !this->shape.empty() && numel() == 0) this->data = no_elements;
}

TensorView::TensorView(const void* data, DType dtype, std::vector<int64_t> shape, std::vector<int64_t> strides)
    : TensorView(const_cast<void*>(data), dtype, std::move(shape), std::move(strides)) {}

// Products of dimensions saturate, so a hostile view reads as huge (and fails validation) instead of
// overflowing before validation has looked at it.
int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n = SaturatingMul(n, s);
  return n;
}

int64_t TensorView::stride(int64_t d) const {
  // A view with too few strides is malformed (validation says so); reading past them is not an option.
  if (d < 0) return 0;
  if (!strides.empty()) return d < static_cast<int64_t>(strides.size()) ? strides[d] : 0;
  int64_t s = 1;
  for (int64_t i = d + 1; i < dim(); ++i) s = SaturatingMul(s, shape[i]);
  return s;
}

bool TensorView::contiguous() const {
  if (!strides.empty() && strides.size() != shape.size()) return false;
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (shape[d] != 1 && stride(d) != expected) return false;
    expected = SaturatingMul(expected, shape[d]);
  }
  return true;
}

std::string TensorView::Describe() const {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << (shape.size() == 1 ? ",) " : ") ") << DTypeName(dtype);
  if (!contiguous()) {  // the strides too: they are what a stride rule refuses
    s << " strided (";
    for (size_t i = 0; i < strides.size(); ++i) s << (i ? ", " : "") << strides[i];
    s << (strides.size() == 1 ? ",)" : ")");
  }
  return s.str();
}

uint64_t Tensor::StorageBytes(const TensorView& view) {
  uint64_t bytes = DTypeSize(view.dtype);
  for (int64_t s : view.shape) {
    if (s < 0) throw Error(ErrorCode::kInvalidParam, "Tensor: negative dimension in " + view.Describe());
    bytes = SaturatingMul(bytes, static_cast<uint64_t>(s));
  }
  if (bytes > (uint64_t{1} << 48)) {
    throw Error(ErrorCode::kInvalidParam, "Tensor: " + view.Describe() + " is larger than 2^48 bytes");
  }
  // Never null, even for zero elements: a present zero-length tensor differs from an absent one.
  return (bytes + 63) / 64 * 64 + 64;
}

Tensor::Tensor(DType dtype, std::vector<int64_t> shape) {
  view_ = TensorView(static_cast<void*>(nullptr), dtype, std::move(shape));
  const uint64_t bytes = StorageBytes(view_);
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw Error(ErrorCode::kInternal, "Tensor: cannot allocate " + std::to_string(bytes) + " bytes");
  std::memset(p, 0, bytes);
  storage_ = std::shared_ptr<std::byte>(static_cast<std::byte*>(p), [](std::byte* q) { std::free(q); });
  view_.data = p;
}

}  // namespace moe_ep
