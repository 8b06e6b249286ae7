// Turns the tensor tuples of moe_ep/_tensors.py into TensorViews.
#include "tensor_arg.h"

#include <pybind11/stl.h>

#include <string>

#include "moe_ep/error.h"

namespace py = pybind11;

namespace moe_ep::python {

DType DTypeNamed(const std::string& name, const char* arg) {
  for (DType d :
       {DType::kBf16, DType::kFp16, DType::kFloat32, DType::kInt8, DType::kInt32, DType::kInt64, DType::kBool}) {
    if (name == DTypeName(d)) return d;
  }
  throw Error(ErrorCode::kInternal,
              std::string("moe_ep Python binding: ") + arg + " has dtype '" + name + "', which no moe_ep tensor has");
}

TensorView ViewOf(py::handle spec, const char* name) {
  if (spec.is_none()) return {};
  const auto items = spec.cast<py::tuple>();
  if (items.size() != 4) {
    throw Error(ErrorCode::kInternal, std::string("moe_ep Python binding: ") + name + " is not a tensor tuple");
  }
  auto shape = items[2].cast<std::vector<int64_t>>();
  auto strides = items[3].cast<std::vector<int64_t>>();
  if (strides.size() != shape.size()) {
    throw Error(ErrorCode::kInternal, std::string("moe_ep Python binding: ") + name + " has " +
                                          std::to_string(shape.size()) + " dims and " + std::to_string(strides.size()) +
                                          " strides");
  }
  auto* data = reinterpret_cast<void*>(items[0].cast<uintptr_t>());
  return TensorView(data, DTypeNamed(items[1].cast<std::string>(), name), std::move(shape), std::move(strides));
}

std::vector<int64_t> StridesOf(const TensorView& view) {
  std::vector<int64_t> strides(view.shape.size());
  for (int64_t d = 0; d < view.dim(); ++d) strides[d] = view.stride(d);
  return strides;
}

int64_t ElementSpan(const TensorView& view, const char* name) {
  int64_t last = 0;
  for (int64_t d = 0; d < view.dim(); ++d) {
    if (view.shape[d] == 0) return 0;
    int64_t reach = 0;
    if (view.shape[d] < 0 || __builtin_mul_overflow(view.shape[d] - 1, view.stride(d), &reach) ||
        __builtin_add_overflow(last, reach, &last)) {
      throw Error(ErrorCode::kInvalidConfig,
                  std::string(name) + " = " + view.Describe() + ": its shape and strides reach past 2^63 elements");
    }
  }
  int64_t span = 0;  // one past the furthest element, which may be the INT64_MAX-th itself
  if (__builtin_add_overflow(last, 1, &span)) {
    throw Error(ErrorCode::kInvalidConfig,
                std::string(name) + " = " + view.Describe() + ": its shape and strides reach past 2^63 elements");
  }
  return span;
}

}  // namespace moe_ep::python
