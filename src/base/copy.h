// Copying rows at memory speed whatever the distance between source and destination.
#pragma once

#include <cstddef>

namespace moe_ep {

// memcpy(dst, src, bytes) for buffers that do not overlap. glibc copies blocks of a few KiB and more with
// `rep movsb`, which on some x86 CPUs (measured on AMD EPYC: 2-3 GB/s instead of 8-10) crawls when the
// destination lies a few bytes past the source modulo 4 KiB, as a row pulled from a page-aligned shared heap
// into a malloc'd expandX (16 bytes past a page) does. There a vector loop with aligned stores copies instead.
void CopyBytes(void* dst, const void* src, size_t bytes);

}  // namespace moe_ep
