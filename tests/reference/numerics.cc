// The NPU's fixed-order fp32 sums (docs/numerics.md; the scalar conversions are inline in numerics.h).
#include "reference/numerics.h"

namespace moe_ref::numerics {

namespace {

// The pairwise sum of each chunk of 64 (zero-padded) of `values`, in chunk order.
std::vector<float> ChunkSums(const std::vector<float>& values) {
  std::vector<float> sums;
  for (size_t begin = 0; begin < values.size(); begin += 64) {
    float chunk[64] = {};
    for (size_t i = 0; i < 64 && begin + i < values.size(); ++i) chunk[i] = values[begin + i];
    for (int half = 32; half >= 1; half /= 2) {
      float pairs[32];
      for (int i = 0; i < half; ++i) pairs[i] = chunk[2 * i] + chunk[2 * i + 1];
      for (int i = 0; i < half; ++i) chunk[i] = pairs[i];
    }
    sums.push_back(chunk[0]);
  }
  return sums;
}

}  // namespace

float ReduceSumTree(const std::vector<float>& values) {
  if (values.empty()) return 0.0f;
  std::vector<float> list = ChunkSums(values);
  while (list.size() > 1) list = ChunkSums(list);
  return list[0];
}

float ReduceSumInOrder(const std::vector<float>& values) {
  float sum = 0.0f;
  for (float chunk : ChunkSums(values)) sum = sum + chunk;
  return sum;
}

}  // namespace moe_ref::numerics
