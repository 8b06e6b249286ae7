// Translates C++ failures into the exceptions of moe_ep/errors.py (which picks the class by code).
#include "errors.h"

#include <pybind11/stl.h>

#include <vector>

#include "acl/acl.h"
#include "interrupt.h"
#include "moe_ep/error.h"

namespace py = pybind11;

namespace moe_ep::python {
namespace {

// moe_ep.errors.from_code(code, message, missing_ranks) builds the exception; raising it here keeps
// the class choice in one place (Python), for the native and the C API paths alike.
void Raise(int code, const std::string& message, const std::vector<int>& missing_ranks) {
  py::object from_code = py::module_::import("moe_ep.errors").attr("from_code");
  py::object error = from_code(code, message, missing_ranks.empty() ? py::object(py::none()) : py::cast(missing_ranks));
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
}

}  // namespace

void CheckCann(int status, const char* call) {
  if (status == 0) return;
  const char* message = aclGetRecentErrMsg();
  throw CannFailure{status, message && *message ? message : std::string(call) + " failed (no message recorded)"};
}

void BindErrors(py::module_&) {
  py::register_exception_translator([](std::exception_ptr failure) {
    // A call during which a signal handler raised (Ctrl-C ended a wait, whatever the call made of that): its
    // exception, KeyboardInterrupt, is the outcome.
    if (RestoreInterrupt()) return;
    try {
      if (failure) std::rethrow_exception(failure);
    } catch (const TimeoutError& e) {
      Raise(static_cast<int>(e.code()), e.what(), e.missing_ranks());
    } catch (const Error& e) {
      Raise(static_cast<int>(e.code()), e.what(), {});
    } catch (const CannFailure& e) {
      Raise(e.code, e.message, {});
    }
  });
}

}  // namespace moe_ep::python
