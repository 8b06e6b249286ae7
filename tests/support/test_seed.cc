// The base seed of randomized tests.
#include "support/test_seed.h"

#include <cstdio>
#include <cstdlib>
#include <random>

namespace moe_ep::testing {

uint64_t BaseSeed() {
  static const uint64_t seed = [] {
    const char* forced = std::getenv("MOE_EP_TEST_SEED");
    const uint64_t s = forced ? std::strtoull(forced, nullptr, 10)
                              : (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
    std::fprintf(stderr, "[moe_ep test] base seed %llu (replay with MOE_EP_TEST_SEED=%llu)\n",
                 static_cast<unsigned long long>(s), static_cast<unsigned long long>(s));
    return s;
  }();
  return seed;
}

}  // namespace moe_ep::testing
