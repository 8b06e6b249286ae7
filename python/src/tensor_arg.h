// Tensors as they cross from Python: None, or a tuple (address, dtype name, shape, strides in elements)
// that moe_ep/_tensors.py makes from a torch tensor or a numpy array (no libtorch on this side).
#pragma once

#include <pybind11/pybind11.h>

#include "moe_ep/tensor.h"

namespace moe_ep::python {

/// The view a tensor tuple describes; an absent view for None. Throws moe_ep::Error for a malformed tuple
/// (only moe_ep's own Python code makes them, so that is a bug, reported as such).
TensorView ViewOf(pybind11::handle spec, const char* name);

/// Elements from the view's first element to its furthest one, inclusive (0 when it has none).
int64_t ElementSpan(const TensorView& view);

}  // namespace moe_ep::python
