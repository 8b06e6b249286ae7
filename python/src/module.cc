// The extension module moe_ep._moe_ep: the native API (submodule native) and the CANN C API as torch_npu
// drives it (submodule cann). The Python package around it is python/moe_ep/.
#include <pybind11/pybind11.h>

#include "buffer_pool.h"
#include "errors.h"
#include "interrupt.h"
#include "outputs.h"

namespace moe_ep::python {
void BindNative(pybind11::module_& m);
void BindCann(pybind11::module_& m);
}  // namespace moe_ep::python

PYBIND11_MODULE(_moe_ep, m) {
  m.doc() = "moe_ep's C++ core; use the moe_ep package (moe_ep, moe_ep.torch_npu, moe_ep.distributed)";
  moe_ep::python::BindErrors(m);
  moe_ep::python::BindInterrupt(m);
  moe_ep::python::BindBufferPool(m);
  moe_ep::python::BindOutputs(m);
  auto native = m.def_submodule("native", "the native C++ API");
  moe_ep::python::BindNative(native);
  auto cann = m.def_submodule("cann", "the CANN C API, as torch_npu calls it");
  moe_ep::python::BindCann(cann);
}
