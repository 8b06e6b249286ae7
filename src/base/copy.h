// Copying rows at memory speed whatever the distance between source and destination.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moe_ep {

// memcpy(dst, src, bytes) for buffers that do not overlap. glibc copies blocks of a few KiB and more with
// `rep movsb`, which on some x86 CPUs (measured on AMD EPYC: 2.7 GB/s instead of 10-11) crawls when the
// destination lies a few bytes past the source modulo 4 KiB, as a row pulled from a page-aligned shared heap
// into a malloc'd expandX (16 bytes past a page) does. There a vector loop with aligned stores copies instead.
void CopyBytes(void* dst, const void* src, size_t bytes);

// CopyBytes without bringing the destination into the caches (non-temporal stores, AVX-512 where the CPU has it,
// fenced before it returns): a store then costs one write to memory instead of a read for ownership and a later
// write-back. For output larger than the caches, which its next reader finds in memory anyway.
void StreamBytes(void* dst, const void* src, size_t bytes);

// The rows a rank receives in one dispatch call above which it streams them into expandX: past any core's
// L2, and for 8 ranks of one host a 64 MiB share of its last-level cache (measured: 8 ranks on 2 cores,
// 128-512 tokens of 14 KiB rows, 20-30% faster).
inline constexpr uint64_t kStreamMinBytes = uint64_t{8} << 20;

// StreamBytes' two ways, for tests (the 16-byte one is what x86-64 CPUs without AVX-512 take; elsewhere both are
// memcpy). StreamWithAvx512 needs HasAvx512().
namespace copy_internal {
bool HasAvx512();
void StreamWithSse2(void* dst, const void* src, size_t bytes);
void StreamWithAvx512(void* dst, const void* src, size_t bytes);
}  // namespace copy_internal

}  // namespace moe_ep
