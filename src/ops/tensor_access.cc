// Strided tensor reading and writing for the operations.
#include "ops/tensor_access.h"

#include <algorithm>
#include <cstring>

namespace moe_ep::ops {
namespace {

// Byte offset of flat row-major element `flat` in a strided view.
int64_t ElementOffset(const TensorView& v, int64_t flat) {
  int64_t offset = 0;
  for (int64_t d = v.dim() - 1; d >= 0; --d) {
    const int64_t idx = flat % v.shape[d];
    flat /= v.shape[d];
    offset += idx * v.stride(d);
  }
  return offset * static_cast<int64_t>(DTypeSize(v.dtype));
}

template <typename T>
std::vector<T> Gather(const TensorView& v, int64_t limit = INT64_MAX) {
  std::vector<T> out(v.present() ? std::min(v.numel(), limit) : 0);
  if (out.empty()) return out;
  const auto* base = static_cast<const uint8_t*>(v.data);
  if (v.contiguous()) {
    std::memcpy(out.data(), base, out.size() * sizeof(T));
    return out;
  }
  for (int64_t i = 0; i < static_cast<int64_t>(out.size()); ++i) {
    std::memcpy(&out[i], base + ElementOffset(v, i), sizeof(T));
  }
  return out;
}

}  // namespace

RowReader::RowReader(const TensorView& view) : view_(view) {
  if (!view_.present() || view_.dim() == 0) return;
  cols_ = view_.shape.back();
  rows_ = cols_ == 0 ? 0 : view_.numel() / cols_;
  elem_ = static_cast<int64_t>(DTypeSize(view_.dtype));
  if (view_.stride(view_.dim() - 1) != 1) gathered_.resize(cols_ * elem_);
}

const uint8_t* RowReader::RowBase(int64_t i) const {
  // Row i is the flat element i * cols_.
  return static_cast<const uint8_t*>(view_.data) + ElementOffset(view_, i * cols_);
}

const void* RowReader::Row(int64_t i) {
  const uint8_t* base = RowBase(i);
  if (gathered_.empty()) return base;
  const int64_t step = view_.stride(view_.dim() - 1) * elem_;
  for (int64_t j = 0; j < cols_; ++j) std::memcpy(&gathered_[j * elem_], base + j * step, elem_);
  return gathered_.data();
}

std::vector<int32_t> GatherInt32(const TensorView& view, int64_t limit) { return Gather<int32_t>(view, limit); }
std::vector<float> GatherFloat(const TensorView& view) { return Gather<float>(view); }
std::vector<uint8_t> GatherBool(const TensorView& view) { return Gather<uint8_t>(view); }

void CopyElements(const TensorView& from, const TensorView& to) {
  const auto elem = static_cast<int64_t>(DTypeSize(from.dtype));
  const auto* src = static_cast<const uint8_t*>(from.data);
  auto* dst = static_cast<uint8_t*>(to.data);
  if (from.contiguous() && to.contiguous()) {
    std::memcpy(dst, src, from.numel() * elem);
    return;
  }
  // Rows whose elements lie side by side in both views (a view with gaps between its rows, as a slice of a wider
  // tensor is): one offset and one copy a row, not per element (which cost ten times the operation itself).
  const int64_t last = from.dim() - 1;
  if (last >= 0 && from.shape[last] > 0 && from.stride(last) == 1 && to.stride(last) == 1) {
    const int64_t cols = from.shape[last];
    for (int64_t i = 0; i < from.numel(); i += cols) {
      std::memcpy(dst + ElementOffset(to, i), src + ElementOffset(from, i), cols * elem);
    }
    return;
  }
  for (int64_t i = 0; i < from.numel(); ++i) {
    std::memcpy(dst + ElementOffset(to, i), src + ElementOffset(from, i), elem);
  }
}

DenseOutputs::DenseOutputs(std::span<TensorView* const> outputs) {
  for (TensorView* out : outputs) {
    if (!out->present() || out->contiguous()) continue;
    StandIn& s = stand_ins_.emplace_back(StandIn{*out, Tensor(out->dtype, out->shape)});
    CopyElements(s.caller, s.dense.view());
    *out = s.dense.view();
  }
}

void DenseOutputs::CopyBack() const {
  for (const StandIn& s : stand_ins_) CopyElements(s.dense.view(), s.caller);
}

}  // namespace moe_ep::ops
