// CopyBytes, StreamBytes and StreamBytes' two ways (base/copy.h): every byte copied and none beside, for every distance
// between source and destination modulo a page (CopyBytes: 1-63 bytes past take its vector loop, others memcpy), and
// sizes around the loop's threshold, its 64-byte step and its alignment head. Random bytes from the run's seed
// (support/test_seed.h; MOE_EP_TEST_SEED replays); guard bytes around the destination stay poisoned.
#include "base/copy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "support/test_seed.h"

namespace moe_ep {
namespace {

constexpr uint8_t kPoison = 0xA5;
constexpr size_t kGuard = 64;

struct CopyFunction {
  const char* name;
  void (*copy)(void*, const void*, size_t);
};

class Copy : public ::testing::TestWithParam<CopyFunction> {};

TEST_P(Copy, EveryDistanceAndSizeCopiesExactly) {
  const auto copy = GetParam().copy;
  if (copy == copy_internal::StreamWithAvx512 && !copy_internal::HasAvx512()) GTEST_SKIP() << "no AVX-512 here";
  const uint64_t seed = testing::BaseSeed();
  SCOPED_TRACE("MOE_EP_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  constexpr size_t kMaxBytes = 14336 + 77;
  // A page-aligned source and destination area, so that `distance` is the distance modulo a page.
  std::vector<uint8_t> src_area(kMaxBytes + 2 * 4096), dst_area(kMaxBytes + 2 * kGuard + 2 * 4096);
  const auto page_aligned = [](uint8_t* p) { return p + ((4096 - reinterpret_cast<uintptr_t>(p) % 4096) % 4096); };
  uint8_t* const src_page = page_aligned(src_area.data());
  uint8_t* const dst_page = page_aligned(dst_area.data() + kGuard);
  const size_t sizes[] = {0, 1, 15, 63, 1023, 1024, 1025, 1024 + 63, 4096 + 17, 14336, kMaxBytes};
  for (size_t src_offset : {size_t{0}, size_t{8}, size_t{40}}) {
    uint8_t* const src = src_page + src_offset;
    for (size_t distance = 0; distance <= 130; ++distance) {
      uint8_t* const dst = dst_page + src_offset + distance;
      for (size_t bytes : sizes) {
        for (size_t i = 0; i < bytes; ++i) src[i] = static_cast<uint8_t>(rng());
        std::fill(dst - kGuard, dst + bytes + kGuard, kPoison);
        copy(dst, src, bytes);
        SCOPED_TRACE("source offset " + std::to_string(src_offset) + ", distance " + std::to_string(distance) + ", " +
                     std::to_string(bytes) + " bytes");
        for (size_t i = 0; i < bytes; ++i) ASSERT_EQ(dst[i], src[i]) << "byte " << i;
        for (size_t i = 1; i <= kGuard; ++i) {
          ASSERT_EQ(dst[-static_cast<ptrdiff_t>(i)], kPoison) << "guard byte " << i << " before";
          ASSERT_EQ(dst[bytes + i - 1], kPoison) << "guard byte " << i - 1 << " after";
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Functions, Copy,
                         ::testing::Values(CopyFunction{"CopyBytes", CopyBytes},
                                           CopyFunction{"StreamBytes", StreamBytes},
                                           CopyFunction{"StreamWithSse2", copy_internal::StreamWithSse2},
                                           CopyFunction{"StreamWithAvx512", copy_internal::StreamWithAvx512}),
                         [](const ::testing::TestParamInfo<CopyFunction>& info) { return info.param.name; });

}  // namespace
}  // namespace moe_ep
