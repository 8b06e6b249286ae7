// Staged inputs (src/ops/stage.h): a buffer per call parity, grown to the largest input staged; written again
// only once every reader of the call that last staged in it has said it is done; a buffer with a reader that
// may still be copying is never reused.
#include "ops/stage.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "transport/thread/thread_window.h"

namespace {

using moe_ep::ops::kStageMaxBytes;
using moe_ep::ops::StageBuffers;
using moe_ep::transport::MakeFlag;

constexpr uint64_t kFlags = 16;
constexpr uint32_t kEpoch = 7;

class Stage : public ::testing::Test {
 protected:
  // Rank 1 plays the reader: it signals done words into rank 0's flags.
  std::vector<std::unique_ptr<moe_ep::transport::Window>> windows =
      moe_ep::transport::CreateThreadWindows(2, 4096, kFlags, "stage test");
  moe_ep::transport::Window& own = *windows[0];
  StageBuffers stage;

  // Takes buffer `parity` for `bytes` and writes all of them, as dispatch copies x into it.
  uint8_t* StageRows(uint64_t parity, uint64_t bytes = 3 * 64) {
    uint8_t* buffer = stage.Take(own, parity, bytes);
    if (buffer) {
      for (uint64_t i = 0; i < bytes; ++i) buffer[i] = static_cast<uint8_t>(i * 7 + parity);
    }
    return buffer;
  }
};

TEST_F(Stage, OneBufferPerParityGrownToWhatIsStaged) {
  const uint8_t* even = StageRows(0);
  ASSERT_NE(even, nullptr);
  const uint8_t* odd = StageRows(1);
  EXPECT_NE(odd, even);
  EXPECT_EQ(StageRows(0, kStageMaxBytes), even) << "every buffer holds kStageMaxBytes";
  // Larger: a buffer of that size (all of it written, so a short one would corrupt a neighbour in the heap), the
  // same for anything up to it afterwards.
  const uint8_t* large = StageRows(0, 5 * kStageMaxBytes + 3);
  ASSERT_NE(large, nullptr);
  EXPECT_EQ(StageRows(0, 4 * kStageMaxBytes), large);
  EXPECT_EQ(StageRows(1), odd) << "the other parity's buffer is its own";
}

TEST_F(Stage, ABufferTakenButNotStagedIsTakenAgain) {
  const uint8_t* first = stage.Take(own, 0, 100);  // dispatch decided not to stage: no Readers call
  EXPECT_EQ(StageRows(0), first);
}

TEST_F(Stage, ABufferWithAReaderNotDoneIsNotFreedToGrow) {
  const uint8_t* first = StageRows(0);
  stage.Readers(0, kEpoch, {3});
  std::vector<uint8_t> before(first, first + 3 * 64);
  const uint8_t* large = StageRows(0, 3 * kStageMaxBytes);
  ASSERT_NE(large, nullptr);
  EXPECT_NE(large, first);
  EXPECT_EQ(std::memcmp(first, before.data(), before.size()), 0) << "the abandoned buffer was written";
  // Given up, not freed (a freed block keeps its bytes too, and may land elsewhere from the larger one).
  EXPECT_EQ(stage.abandoned(), 1);
}

TEST_F(Stage, ABufferIsReusedOnceItsReadersAreDone) {
  const uint8_t* first = StageRows(0);
  stage.Readers(0, kEpoch, {3, 5});
  windows[1]->Signal(0, 3, MakeFlag(kEpoch, 1));
  windows[1]->Signal(0, 5, MakeFlag(kEpoch, 1));
  EXPECT_EQ(StageRows(0), first);
  EXPECT_EQ(stage.abandoned(), 0);
}

TEST_F(Stage, ABufferWithAReaderNotDoneIsNeverReused) {
  const uint8_t* first = StageRows(0);
  stage.Readers(0, kEpoch, {3, 5});
  windows[1]->Signal(0, 3, MakeFlag(kEpoch, 1));
  windows[1]->Signal(0, 5, MakeFlag(kEpoch - 2, 1));  // the reader's done word of an older call
  std::vector<uint8_t> before(first, first + 3 * 64);
  const uint8_t* second = StageRows(0);
  EXPECT_NE(second, first);
  EXPECT_EQ(std::memcmp(first, before.data(), before.size()), 0) << "the abandoned buffer was written";
  EXPECT_EQ(stage.abandoned(), 1);
}

TEST_F(Stage, SettleGivesUpBuffersWhoseReadersDoNotAnswer) {
  const uint8_t* first = StageRows(1);
  stage.Readers(1, kEpoch, {4});
  stage.Settle(own, moe_ep::transport::Clock::now());  // nobody answered: given up at once
  EXPECT_EQ(stage.abandoned(), 1);
  EXPECT_NE(StageRows(1), first);
  stage.Readers(1, kEpoch + 2, {4});
  windows[1]->Signal(0, 4, MakeFlag(kEpoch + 2, 1));
  const uint8_t* kept = StageRows(1);
  stage.Readers(1, kEpoch + 2, {4});
  stage.Settle(own, moe_ep::transport::Clock::now());  // answered: kept
  EXPECT_EQ(StageRows(1), kept);
  EXPECT_EQ(stage.abandoned(), 1);
}

}  // namespace
