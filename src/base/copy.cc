// CopyBytes: memcpy, or a vector loop where the CPU's string copy would stall (copy.h).
#include "base/copy.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace moe_ep {
namespace {

#if defined(__x86_64__)
// Below this memcpy copies with vector moves anyway.
constexpr size_t kLoopMinBytes = 1024;
// Destinations this many bytes (or fewer) past the source, modulo a page, take the loop.
constexpr uintptr_t kStallDistance = 63;

// SSE2 (every x86-64 has it): aligned stores once the destination is 16-byte aligned, four per iteration.
void CopyWithLoop(uint8_t* dst, const uint8_t* src, size_t bytes) {
  const size_t head = std::min<size_t>((16 - (reinterpret_cast<uintptr_t>(dst) & 15)) & 15, bytes);
  std::memcpy(dst, src, head);
  size_t at = head;
  for (; at + 64 <= bytes; at += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + at));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + at + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + at + 32));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + at + 48));
    _mm_store_si128(reinterpret_cast<__m128i*>(dst + at), a);
    _mm_store_si128(reinterpret_cast<__m128i*>(dst + at + 16), b);
    _mm_store_si128(reinterpret_cast<__m128i*>(dst + at + 32), c);
    _mm_store_si128(reinterpret_cast<__m128i*>(dst + at + 48), d);
  }
  std::memcpy(dst + at, src + at, bytes - at);
}
#endif

}  // namespace

void CopyBytes(void* dst, const void* src, size_t bytes) {
#if defined(__x86_64__)
  const uintptr_t distance = (reinterpret_cast<uintptr_t>(dst) - reinterpret_cast<uintptr_t>(src)) & 4095;
  if (bytes >= kLoopMinBytes && distance != 0 && distance <= kStallDistance) {
    return CopyWithLoop(static_cast<uint8_t*>(dst), static_cast<const uint8_t*>(src), bytes);
  }
#endif
  std::memcpy(dst, src, bytes);
}

}  // namespace moe_ep
