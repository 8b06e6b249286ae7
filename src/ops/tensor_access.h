// Reading strided input tensors: rows of 16-bit floats as contiguous pointers (gathered only when the
// last dimension is strided), and small tensors copied out into contiguous vectors.
#pragma once

#include <cstdint>
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

}  // namespace moe_ep::ops
