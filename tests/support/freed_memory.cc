// The tests' malloc policy (glibc's mallopt; other C libraries keep their own).
#include "support/freed_memory.h"

#include <cstdlib>  // defines __GLIBC__ under glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace moe_ep::testing {

void KeepFreedMemory() {
#if defined(__GLIBC__)
  // Blocks up to 32 MiB (the most glibc allows) come from the heap rather than mmap of their own; the heap's top
  // is given back only past 1 GiB free.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

}  // namespace moe_ep::testing
