// Ctrl-C during a wait: moe_ep's waits ask the interpreter's signal handlers, on its main thread, whether to end.
#include "interrupt.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>

#include "moe_ep/error.h"

namespace py = pybind11;

// libmoe_ep_cann's own copy of SetInterruptCheck (it holds its own copy of the waits: src/cann/interrupt_bridge.cc).
extern "C" void moe_ep_cann_set_interrupt_check(bool (*check)());

namespace moe_ep::python {
namespace {

pthread_t g_main_thread;
// The exception a signal handler raised during a wait, until it is raised in its place (main thread, GIL held).
PyObject *g_type = nullptr, *g_value = nullptr, *g_traceback = nullptr;
// Whether one is kept: the waits of other threads end too meanwhile (a rank in a thread, the stream worker running
// the operator the main thread waits for), so that the main thread's call ends with it.
std::atomic<bool> g_pending{false};

bool OnMainThread() { return pthread_equal(pthread_self(), g_main_thread) != 0; }

// A SIGINT came since the main thread last looked: only then does a wait take the GIL to run the handlers. A wait
// that took it every 10 ms would depend on it, and could stall behind a thread holding it while that thread waits
// for this one. Set by a handler chained in front of Python's own (which it then runs).
std::atomic<bool> g_sigint{false};
struct sigaction g_python_sigint {};

void OnSigint(int signal, siginfo_t* info, void* context) {
  g_sigint.store(true, std::memory_order_relaxed);
  const struct sigaction& next = g_python_sigint;
  if (next.sa_handler == SIG_IGN || next.sa_handler == SIG_DFL) {
    if (next.sa_handler == SIG_DFL) {  // no Python handler (an embedding that keeps signals): die as before
      struct sigaction fallback {};
      fallback.sa_handler = SIG_DFL;
      sigemptyset(&fallback.sa_mask);
      sigaction(SIGINT, &fallback, nullptr);
      raise(SIGINT);
    }
  } else if ((next.sa_flags & SA_SIGINFO) != 0) {
    next.sa_sigaction(signal, info, context);
  } else {
    next.sa_handler(signal);
  }
}

// In front of whatever handles SIGINT now (Python's, normally). A handler the program installs later
// (signal.signal) replaces this one: its waits then end at their deadline, as before.
void ChainSigint() {
  struct sigaction ours {};
  ours.sa_sigaction = OnSigint;
  sigemptyset(&ours.sa_mask);
  if (sigaction(SIGINT, nullptr, &g_python_sigint) != 0) return;
  ours.sa_flags = SA_SIGINFO | (g_python_sigint.sa_flags & (SA_ONSTACK | SA_RESTART));
  sigaction(SIGINT, &ours, nullptr);
}

bool Finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

// Python runs signal handlers on its main thread only; the other threads' waits end while one raised is kept.
bool PythonInterruptCheck() {
  if (!OnMainThread()) return g_pending.load(std::memory_order_acquire);
  if (!Py_IsInitialized() || Finalizing()) return false;
  if (g_type == nullptr && !g_sigint.exchange(false, std::memory_order_relaxed)) return false;
  const PyGILState_STATE gil = PyGILState_Ensure();
  // One kept from an earlier wait that did not fail for it is delivered now.
  bool raised = g_type != nullptr;
  if (!raised && PyErr_CheckSignals() != 0) {
    PyErr_Fetch(&g_type, &g_value, &g_traceback);
    g_pending.store(true, std::memory_order_release);
    raised = true;
  }
  PyGILState_Release(gil);
  return raised;
}

}  // namespace

bool RestoreInterrupt() {
  if (!OnMainThread() || g_type == nullptr) return false;
  PyErr_Restore(g_type, g_value, g_traceback);
  g_type = g_value = g_traceback = nullptr;
  g_pending.store(false, std::memory_order_release);
  return true;
}

void BindInterrupt(py::module_& m) {
  // The main thread is the one whose threading ident is threading.main_thread()'s (CPython's ident is pthread_self).
  const auto ident = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
  g_main_thread = static_cast<pthread_t>(ident);
  ChainSigint();
  moe_ep::SetInterruptCheck(&PythonInterruptCheck);
  moe_ep_cann_set_interrupt_check(&PythonInterruptCheck);
  (void)m;
}

}  // namespace moe_ep::python
