// Tensors as they cross from Python: None, or a tuple (address, dtype name, shape, strides in elements)
// that moe_ep/_tensors.py makes from a torch tensor or a numpy array (no libtorch on this side).
#pragma once

#include <pybind11/pybind11.h>

#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "moe_ep/error.h"
#include "moe_ep/tensor.h"

namespace moe_ep::python {

/// The DType moe_ep names `name` ("bf16", "int32", ...); throws moe_ep::Error naming `arg` for another name.
DType DTypeNamed(const std::string& name, const char* arg);

/// The view a tensor tuple describes; an absent view for None. Throws moe_ep::Error for a malformed tuple
/// (only moe_ep's own Python code makes them, so that is a bug, reported as such).
TensorView ViewOf(pybind11::handle spec, const char* name);

/// The view's stride of every dimension, in elements (row-major ones where it has none).
std::vector<int64_t> StridesOf(const TensorView& view);

/// Elements from the view's first element to its furthest one, inclusive (0 when it has none); throws
/// moe_ep::Error naming `name` when that overflows.
int64_t ElementSpan(const TensorView& view, const char* name);

/// What a Python value must be to become a T, for ArgAs's message.
template <typename T>
std::string ExpectedOf() {
  if constexpr (std::is_same_v<T, bool>) {
    return "a bool";
  } else if constexpr (std::is_integral_v<T>) {
    return "an int in [" + std::to_string(std::numeric_limits<T>::min()) + ", " +
           std::to_string(std::numeric_limits<T>::max()) + "]";
  } else if constexpr (std::is_floating_point_v<T>) {
    return "a real number";
  } else if constexpr (std::is_same_v<T, std::string>) {
    return "a str";
  } else if constexpr (std::is_same_v<T, std::vector<int32_t>>) {
    return "a sequence of ints in [-2147483648, 2147483647]";
  } else if constexpr (std::is_same_v<T, std::pair<std::string, std::vector<int64_t>>>) {
    return "a (dtype name, shape) pair";
  } else {
    return "of the type the function documents";
  }
}

/// The value of a Python argument as T; a value of the wrong type or range is moe_ep::Error (161002)
/// naming `what` (and `key`, when given), the value and what it must be, not pybind11's cast error. The name is
/// put together only for the error: a call reads some 30 arguments.
template <typename T>
T ArgAs(pybind11::handle value, const char* what, const char* key = nullptr) {
  try {
    return value.cast<T>();
  } catch (const pybind11::cast_error&) {
    throw Error(ErrorCode::kInvalidParam, std::string(what) + (key ? std::string(": ") + key : "") + " = " +
                                              pybind11::repr(value).cast<std::string>() + " must be " +
                                              ExpectedOf<T>());
  }
}

}  // namespace moe_ep::python
