// The fixed-order tree sum of docs/semantics.md 3.5 (the scalar conversions are inline in numerics.h).
#include "reference/numerics.h"

namespace moe_ref::numerics {

float ReduceSumTree(const std::vector<float>& values) {
  if (values.empty()) return 0.0f;
  std::vector<float> list = values;
  while (list.size() > 1) {
    std::vector<float> next;
    for (size_t begin = 0; begin < list.size(); begin += 64) {
      float chunk[64] = {};  // zero-padded
      for (size_t i = 0; i < 64 && begin + i < list.size(); ++i) chunk[i] = list[begin + i];
      for (int width = 32; width >= 1; width /= 2) {
        for (int i = 0; i < width; ++i) chunk[i] = chunk[i] + chunk[i + width];
      }
      next.push_back(chunk[0]);
    }
    list = next;
  }
  return list[0];
}

}  // namespace moe_ref::numerics
