// Fresh random numbers from the system's entropy source: ids and tokens no other process, host or run draws alike.
#pragma once

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>

namespace moe_ep::entropy {

/// 64 random bits, never 0 (which callers keep for "none").
inline uint64_t NonZero64() {
  std::random_device device;
  uint64_t value = 0;
  while (value == 0) value = (uint64_t{device()} << 32) ^ device();
  return value;
}

/// 128 random bits as 32 lowercase hex digits: names of rendezvous and root infos.
inline std::string HexToken() {
  std::random_device device;
  char text[33];
  std::snprintf(text, sizeof text, "%08x%08x%08x%08x", device(), device(), device(), device());
  return text;
}

}  // namespace moe_ep::entropy
