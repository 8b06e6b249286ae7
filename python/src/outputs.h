// Output tensors of the Python package's calls, allocated by the extension in the pool (buffer_pool.h)
// and handed to Python as torch tensors (over DLPack) or numpy arrays: a call's outputs cost the caller
// no Python work, and no extra pass over memory.
#pragma once

#include <pybind11/pybind11.h>

#include <vector>

#include "moe_ep/tensor.h"

namespace moe_ep::python {

/// A new output: the Python object the caller gets and the view the operation writes.
struct Output {
  pybind11::object object;
  TensorView view;
};

/// An uninitialised contiguous output of `shape` (filled with the byte 0xA5 when `poison`, a test aid that
/// shows an element the operation should write and does not). torch: a torch tensor, else a numpy array
/// (a moe_ep.bf16 one for bf16). Throws moe_ep::Error for a shape with a negative or overflowing size.
Output NewOutput(DType dtype, const std::vector<int64_t>& shape, bool torch, bool poison);

/// Registers set_tensor_types(from_dlpack, bf16): how outputs become torch tensors (None without torch)
/// and bf16 numpy arrays; moe_ep/_tensors.py calls it on import.
void BindOutputs(pybind11::module_& m);

}  // namespace moe_ep::python
