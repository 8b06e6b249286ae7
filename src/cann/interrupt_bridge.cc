// The one entry point of libmoe_ep_cann beyond the C API: SetInterruptCheck for this library's own copy of the
// waits, which the Python package calls so that Ctrl-C ends a torch_npu-style call too (python/src/interrupt.cc).
#include "moe_ep/error.h"

extern "C" __attribute__((visibility("default"))) void moe_ep_cann_set_interrupt_check(bool (*check)()) {
  moe_ep::SetInterruptCheck(check);
}
