// FNV-1a over bytes: short stable names for long or structured text (segment names, rendezvous tokens), the same in
// every process and on every host.
#pragma once

#include <cstdint>
#include <string_view>

namespace moe_ep::hash {

inline constexpr uint64_t kFnvOffsetBasis = 14695981039346656037ull;
inline constexpr uint64_t kFnvPrime = 1099511628211ull;

/// 64-bit FNV-1a of `text`; another `basis` and `prime` give an independent variant (two make a 128-bit name).
inline uint64_t Fnv1a(std::string_view text, uint64_t basis = kFnvOffsetBasis, uint64_t prime = kFnvPrime) {
  uint64_t hash = basis;
  for (const unsigned char c : text) hash = (hash ^ c) * prime;
  return hash;
}

}  // namespace moe_ep::hash
