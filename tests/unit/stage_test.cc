// Staged inputs (src/ops/stage.h): a buffer is written again only once every reader of the call that last
// staged in it has said it is done; a buffer with a reader that may still be copying is never reused.
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
  std::vector<uint8_t> rows = std::vector<uint8_t>(3 * 100, 0);
  StageBuffers stage;

  const uint8_t* StageRows(uint64_t parity) {
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<uint8_t>(i * 7 + parity);
    // Three rows of 64 bytes, 100 apart: copied densely.
    return stage.Stage(own, parity, rows.data(), 100, 3, 64);
  }
};

TEST_F(Stage, RowsAreCopiedDenselyOneBufferPerParity) {
  const uint8_t* even = StageRows(0);
  ASSERT_NE(even, nullptr);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(std::memcmp(even + r * 64, rows.data() + r * 100, 64), 0) << "row " << r;
  const uint8_t* odd = StageRows(1);
  EXPECT_NE(odd, even);
  EXPECT_EQ(stage.Stage(own, 0, rows.data(), 1, kStageMaxBytes + 1, 1), nullptr) << "past kStageMaxBytes";
}

TEST_F(Stage, ABufferIsReusedOnceItsReadersAreDone) {
  const uint8_t* first = StageRows(0);
  stage.Readers(0, kEpoch, {3, 5});
  windows[1]->Signal(0, 3, MakeFlag(kEpoch, 1));
  windows[1]->Signal(0, 5, MakeFlag(kEpoch, 1));
  EXPECT_EQ(StageRows(0), first);
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
}

TEST_F(Stage, SettleGivesUpBuffersWhoseReadersDoNotAnswer) {
  const uint8_t* first = StageRows(1);
  stage.Readers(1, kEpoch, {4});
  stage.Settle(own, moe_ep::transport::Clock::now());  // nobody answered: given up at once
  EXPECT_NE(StageRows(1), first);
  stage.Readers(1, kEpoch + 2, {4});
  windows[1]->Signal(0, 4, MakeFlag(kEpoch + 2, 1));
  const uint8_t* kept = StageRows(1);
  stage.Readers(1, kEpoch + 2, {4});
  stage.Settle(own, moe_ep::transport::Clock::now());  // answered: kept
  EXPECT_EQ(StageRows(1), kept);
}

}  // namespace
