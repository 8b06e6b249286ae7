// Ctrl-C during a wait: the interpreter's pending signals end moe_ep's waits on its main thread.
#pragma once

#include <pybind11/pybind11.h>

namespace moe_ep::python {

/// Installs the interrupt check (moe_ep::SetInterruptCheck) that, once a SIGINT came (a handler chained in front
/// of Python's notes it), runs the interpreter's signal handlers from a wait on its main thread: when one raises
/// (KeyboardInterrupt for Ctrl-C), that wait, and the other threads' until the exception is raised, end with
/// moe_ep::InterruptedError, and the exception is kept for the translator.
void BindInterrupt(pybind11::module_& m);

/// With the GIL: when a wait ended for an exception a signal handler raised, sets it as the current Python error
/// and returns true (the failure is that exception, not the InterruptedError it caused).
bool RestoreInterrupt();

}  // namespace moe_ep::python
