// How failures cross into Python: every one becomes an exception of moe_ep.errors (a moe_ep.Error
// subclass carrying the code), raised by the translator that Bind() registers.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

namespace moe_ep::python {

/// A failed CANN C API call: its status code and the message the runtime recorded for this thread.
struct CannFailure {
  int code;
  std::string message;
};

/// Throws CannFailure when `status` is not 0, naming `call`; the message is aclGetRecentErrMsg().
void CheckCann(int status, const char* call);

/// Registers the translator of moe_ep::Error, moe_ep::TimeoutError and CannFailure into moe_ep.errors.
void BindErrors(pybind11::module_& m);

}  // namespace moe_ep::python
