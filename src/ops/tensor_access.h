// Strided tensors: input rows of 16-bit floats as contiguous pointers (gathered only when the last dimension
// is strided), small inputs copied out into contiguous vectors, and strided outputs written through
// contiguous stand-ins.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "moe_ep/tensor.h"

namespace moe_ep::ops {

/// Row i of a tensor seen as (rows, last-dim) with the leading dimensions flattened row-major.
class RowReader {
 public:
  explicit RowReader(const TensorView& view);
  /// Pointer to row i: straight into the tensor when its last dimension is dense, else gathered into
  /// an internal buffer (valid until the next call).
  const void* Row(int64_t i);
  const uint16_t* Half(int64_t i) { return static_cast<const uint16_t*>(Row(i)); }
  const float* Float(int64_t i) { return static_cast<const float*>(Row(i)); }
  int64_t rows() const { return rows_; }

 private:
  const uint8_t* RowBase(int64_t i) const;
  TensorView view_;
  int64_t rows_ = 0;
  int64_t cols_ = 0;
  int64_t elem_ = 0;
  std::vector<uint8_t> gathered_;
};

/// Copies any-rank int32 / float / bool tensors into contiguous row-major vectors; GatherInt32 copies
/// at most the first `limit` elements.
std::vector<int32_t> GatherInt32(const TensorView& view, int64_t limit = INT64_MAX);
std::vector<float> GatherFloat(const TensorView& view);
std::vector<uint8_t> GatherBool(const TensorView& view);  // empty when the view is absent

/// Copies every element of `from` into the same element of `to` (same dtype and shape, any strides).
void CopyElements(const TensorView& from, const TensorView& to);

/// Outputs a caller laid out with strides (CANN's operators take non-contiguous outputs; validation refuses
/// only views whose elements overlap): the operations write rows whole, so each such output is replaced by a
/// contiguous stand-in that starts with the output's elements (what the operation leaves untouched stays as it
/// was) and goes back into the caller's view once the call has succeeded. A call that fails leaves the
/// caller's view as it was. Contiguous outputs are left alone: they cost nothing.
class DenseOutputs {
 public:
  /// Points each present, non-contiguous view of `outputs` at a stand-in.
  explicit DenseOutputs(std::span<TensorView* const> outputs);
  /// Copies the stand-ins into the caller's views.
  void CopyBack() const;

 private:
  struct StandIn {
    TensorView caller;
    Tensor dense;
  };
  std::vector<StandIn> stand_ins_;
};

}  // namespace moe_ep::ops
