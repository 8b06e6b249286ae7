// The pull data path's hand-over (src/ops/pull.h) between a sender whose call failed and a reader of its rows:
// an announcement nobody claimed is withdrawn and a later claim fails; a reader that finished first lets the
// sender go at once; a reader the sender stopped waiting for fails its own call when it finishes, since the
// sender's caller may have reused the memory it read.
#include "ops/pull.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "moe_ep/error.h"
#include "plan/layout.h"
#include "transport/thread/thread_window.h"

namespace {

namespace pull = moe_ep::ops::pull;
using Clock = std::chrono::steady_clock;

class PullHandOver : public ::testing::Test {
 protected:
  // Rank 0 sends, rank 1 reads; one call's pull flags from 0.
  std::vector<std::unique_ptr<moe_ep::transport::Window>> windows =
      moe_ep::transport::CreateThreadWindows(2, 4096, 2 * moe_ep::plan::kPullFields, "pull test");
  moe_ep::transport::Window& sender = *windows[0];
  moe_ep::transport::Window& reader = *windows[1];
  const pull::CallFlags flags{0, moe_ep::ops::CallSlot{0, 0, 0, 7}};
  const std::vector<uint8_t> reads{pull::kNoReader, pull::kReadsInPlace};  // rank 1 reads rank 0's rows
  std::vector<uint8_t> rows = std::vector<uint8_t>(4 * 64, 0x5A);

  void AnnounceRows() {
    const pull::Rows announced{rows.data(), 64, 4, 64};
    const uint64_t token = sender.Expose(1, rows.data(), rows.size());
    ASSERT_NE(token, 0u);
    pull::Announce(sender, flags, 1, token, announced);
    const auto seen = pull::Announced(reader, flags, 0, 64);
    ASSERT_TRUE(seen.has_value());
    EXPECT_EQ(seen->base, rows.data());
  }
  // The word in which the reader says it is done with this call.
  uint64_t DoneWord() const { return sender.ReadFlag(pull::DoneFlags(flags, reads).at(0)); }
};

TEST_F(PullHandOver, AnUnclaimedAnnouncementIsWithdrawnAndAClaimAfterFails) {
  AnnounceRows();
  const auto start = Clock::now();
  pull::Withdraw(sender, flags, reads);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(1)) << "nobody had claimed: nothing to wait for";
  pull::Claims claims(reader, flags);
  try {
    claims.Claim(0, "test op");
    FAIL() << "a withdrawn announcement was claimed";
  } catch (const moe_ep::TimeoutError& e) {
    EXPECT_EQ(e.missing_ranks(), std::vector<int>{0});
    EXPECT_NE(std::string(e.what()).find("withdrew them"), std::string::npos) << e.what();
  }
}

TEST_F(PullHandOver, AReaderDoneFirstLetsTheFailedSenderGoAtOnce) {
  AnnounceRows();
  {
    pull::Claims claims(reader, flags);
    claims.Claim(0, "test op");
    EXPECT_NO_THROW(claims.Finish("test op"));
  }
  EXPECT_TRUE(pull::IsDone(DoneWord(), flags.epoch));
  const auto start = Clock::now();
  pull::Withdraw(sender, flags, reads);  // the default wait: 10 s, were it waited for
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(1));
  EXPECT_TRUE(pull::IsDone(DoneWord(), flags.epoch)) << "a finished reader's word stays done";
}

TEST_F(PullHandOver, AReaderTheSenderStoppedWaitingForFailsItsCall) {
  AnnounceRows();
  pull::Claims claims(reader, flags);
  claims.Claim(0, "test op");  // reading, and then stalled past the sender's wait
  const auto start = Clock::now();
  pull::Withdraw(sender, flags, reads, std::chrono::milliseconds(30));
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(30)) << "it waited for the claimed reader";
  EXPECT_FALSE(pull::IsDone(DoneWord(), flags.epoch));
  try {
    claims.Finish("test op");
    FAIL() << "a reader given up on finished as if its rows were intact";
  } catch (const moe_ep::TimeoutError& e) {
    EXPECT_EQ(e.missing_ranks(), std::vector<int>{0});
    const std::string what = e.what();
    EXPECT_NE(what.find("test op: rank 0 of pull test stopped waiting for rank 1"), std::string::npos) << what;
    EXPECT_NE(what.find("cannot be trusted"), std::string::npos) << what;
  }
  EXPECT_FALSE(pull::IsDone(DoneWord(), flags.epoch)) << "the word stays given up on, not done";
}

}  // namespace
