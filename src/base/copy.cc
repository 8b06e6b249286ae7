// CopyBytes: memcpy, or a vector loop where the CPU's string copy would stall; StreamBytes: that loop with
// non-temporal stores, 64 bytes wide where the CPU has AVX-512 (copy.h).
#include "base/copy.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "base/env.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace moe_ep {
namespace {

#if defined(__x86_64__)
// Below this memcpy copies with vector moves anyway.
constexpr size_t kLoopMinBytes = 1024;
// Destinations this many bytes (or fewer) past the source, modulo a page, take the loop.
constexpr uintptr_t kStallDistance = 63;

// SSE2 (every x86-64 has it): once the destination is 16-byte aligned, four 16-byte stores per iteration,
// plain (kStreaming false) or non-temporal.
template <bool kStreaming>
void CopyWithLoop(uint8_t* dst, const uint8_t* src, size_t bytes) {
  const size_t head = std::min<size_t>((16 - (reinterpret_cast<uintptr_t>(dst) & 15)) & 15, bytes);
  std::memcpy(dst, src, head);
  size_t at = head;
  for (; at + 64 <= bytes; at += 64) {
    for (size_t part = 0; part < 64; part += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + at + part));
      if constexpr (kStreaming) {
        _mm_stream_si128(reinterpret_cast<__m128i*>(dst + at + part), v);
      } else {
        _mm_store_si128(reinterpret_cast<__m128i*>(dst + at + part), v);
      }
    }
  }
  std::memcpy(dst + at, src + at, bytes - at);
  // Non-temporal stores are not ordered with later ones: a flag published after this call could be seen
  // before the row.
  if constexpr (kStreaming) _mm_sfence();
}

// StreamBytes with AVX-512: once the destination is 64-byte aligned, each store fills a cache line, which the CPU
// then writes out whole (16-byte stores leave it to combine four of them).
__attribute__((target("avx512f"))) void StreamLines(uint8_t* dst, const uint8_t* src, size_t bytes) {
  const size_t head = std::min<size_t>((64 - (reinterpret_cast<uintptr_t>(dst) & 63)) & 63, bytes);
  std::memcpy(dst, src, head);
  size_t at = head;
  for (; at + 64 <= bytes; at += 64) {
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + at), _mm512_loadu_si512(src + at));
  }
  std::memcpy(dst + at, src + at, bytes - at);
  _mm_sfence();  // as in CopyWithLoop
}
#endif

}  // namespace

namespace copy_internal {

bool HasAvx512() {
#if defined(__x86_64__)
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f"));
  return has;
#else
  return false;
#endif
}

void StreamWithSse2(void* dst, const void* src, size_t bytes) {
#if defined(__x86_64__)
  CopyWithLoop<true>(static_cast<uint8_t*>(dst), static_cast<const uint8_t*>(src), bytes);
#else
  std::memcpy(dst, src, bytes);
#endif
}

void StreamWithAvx512(void* dst, const void* src, size_t bytes) {
#if defined(__x86_64__)
  StreamLines(static_cast<uint8_t*>(dst), static_cast<const uint8_t*>(src), bytes);
#else
  std::memcpy(dst, src, bytes);
#endif
}

}  // namespace copy_internal

void CopyBytes(void* dst, const void* src, size_t bytes) {
#if defined(__x86_64__)
  const uintptr_t distance = (reinterpret_cast<uintptr_t>(dst) - reinterpret_cast<uintptr_t>(src)) & 4095;
  if (bytes >= kLoopMinBytes && distance != 0 && distance <= kStallDistance) {
    return CopyWithLoop<false>(static_cast<uint8_t*>(dst), static_cast<const uint8_t*>(src), bytes);
  }
#endif
  std::memcpy(dst, src, bytes);
}

void StreamBytes(void* dst, const void* src, size_t bytes) {
  // MOE_EP_ISA, which names the kernels' instruction set for tests and benchmarks, caps this one too.
  static const bool avx512 = copy_internal::HasAvx512() && env::KernelIsa().value_or("avx512") == "avx512";
  (avx512 ? copy_internal::StreamWithAvx512 : copy_internal::StreamWithSse2)(dst, src, bytes);
}

}  // namespace moe_ep
