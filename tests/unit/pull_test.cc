// The pull data path's hand-over (src/ops/pull.h) between a sender whose call failed and a reader of its rows:
// an announcement nobody claimed is withdrawn and a later claim fails; a reader that finished first lets the
// sender go at once; a reader the sender stopped waiting for fails its own call when it finishes (even once a
// reset cleared its word or a later call re-armed it), or when a copy fails meanwhile, since the sender's caller
// may have reused the memory it read; a reader of a staged copy, which outlives the call, does not, and ends done,
// without claiming it, and never takes a later staging's word for its own; a reader whose call fails before it
// claimed lets the sender go; a reader that released its claims (to wait for another rank) lets the sender withdraw
// at its deadline, and says done at its end, and one that releases while its sender withdraws cannot claim again; a
// rank whose call fails lets go of its own staged copy; a reader expecting longer rows than the sender's is refused.
#include "ops/pull.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
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

  // The rows as the reader saw them announced.
  pull::Rows AnnounceRows(bool staged = false) {
    const pull::Rows announced{rows.data(), 64, 4, 64};
    const uint64_t token = sender.Expose(1, rows.data(), rows.size());
    EXPECT_NE(token, 0u);
    const uint32_t mark = staged ? pull::NewStagedMark() : 0;
    pull::Announce(sender, flags, 1, token, announced, 0, {}, mark);
    const auto seen = pull::Announced(reader, flags, 0, 64, "test op");
    EXPECT_TRUE(seen.has_value());
    if (!seen) return {};
    EXPECT_EQ(seen->base, rows.data());
    EXPECT_EQ(seen->staged_mark, mark);
    return *seen;
  }
  // The word in which the reader says it is done with this call.
  uint64_t DoneWord() const { return sender.ReadFlag(pull::DoneFlags(flags, reads).at(0)); }
  // The sender's BufferReset clears its flags, the done words among them.
  void ClearDoneWord() { sender.Signal(sender.rank(), pull::DoneFlags(flags, reads).at(0), 0); }

  static void ExpectGivenUp(const std::function<void()>& call) {
    try {
      call();
      FAIL() << "a reader given up on went on as if the rows it read were intact";
    } catch (const moe_ep::TimeoutError& e) {
      EXPECT_EQ(e.missing_ranks(), std::vector<int>{0});
      const std::string what = e.what();
      EXPECT_NE(what.find("test op: rank 0 of pull test stopped waiting for rank 1"), std::string::npos) << what;
      EXPECT_NE(what.find("cannot be trusted"), std::string::npos) << what;
    }
  }
};

TEST_F(PullHandOver, AnUnclaimedAnnouncementIsWithdrawnAndAClaimAfterFails) {
  const pull::Rows announced = AnnounceRows();
  const auto start = Clock::now();
  EXPECT_TRUE(pull::Withdraw(sender, flags, reads)) << "nobody to give up on";
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(1)) << "nobody had claimed: nothing to wait for";
  pull::Claims claims(reader, flags, "test op");
  try {
    claims.Claim(0, announced);
    FAIL() << "a withdrawn announcement was claimed";
  } catch (const moe_ep::TimeoutError& e) {
    EXPECT_EQ(e.missing_ranks(), std::vector<int>{0});
    EXPECT_NE(std::string(e.what()).find("withdrew the rows it announced"), std::string::npos) << e.what();
  }
}

// A reader whose call fails (on another rank) before it claimed a healthy sender's rows says it will not read them:
// the sender returns at once instead of waiting out its deadline and naming the reader. A word the sender withdrew
// stays withdrawn.
TEST_F(PullHandOver, AReaderWhoseCallFailsBeforeClaimingLetsTheSenderGo) {
  AnnounceRows();
  { pull::Claims claims(reader, flags, "test op"); }  // the reader's call failed before it met rank 0's rows
  EXPECT_TRUE(pull::IsDone(DoneWord(), flags.epoch));
  const auto start = Clock::now();
  EXPECT_NO_THROW(pull::WaitDone(sender, flags, reads, start + std::chrono::seconds(10), "test op"));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(1)) << "the sender waited out its deadline";

  ClearDoneWord();  // a staged copy: its buffer waits for the word to say done
  AnnounceRows(/*staged=*/true);
  { pull::Claims claims(reader, flags, "test op"); }
  EXPECT_TRUE(pull::IsDone(DoneWord(), flags.epoch)) << "a staged copy's word was left armed";

  ClearDoneWord();
  AnnounceRows();
  pull::Withdraw(sender, flags, reads);
  const uint64_t withdrawn = DoneWord();
  { pull::Claims claims(reader, flags, "test op"); }
  EXPECT_EQ(DoneWord(), withdrawn) << "a failed reader marked a withdrawn word done";
  EXPECT_FALSE(pull::IsDone(DoneWord(), flags.epoch));
}

// A reader that would take longer rows than the sender exposes (the ranks' H or dtype differ, as a combine's may)
// fails naming both sizes instead of reading past the sender's tensor.
TEST_F(PullHandOver, RowsLongerThanTheSendersAreRefused) {
  AnnounceRows();
  try {
    pull::Announced(reader, flags, 0, 128, "test op");
    FAIL() << "rows of 64 bytes were read as rows of 128";
  } catch (const moe_ep::Error& e) {
    EXPECT_EQ(e.code(), moe_ep::ErrorCode::kInvalidConfig);
    const std::string what = e.what();
    EXPECT_NE(what.find("test op: rank 0 of pull test exposes rows of 64 bytes, and rank 1 reads rows of 128 bytes"),
              std::string::npos)
        << what;
  }
}

// At the sender's deadline a reader that never claimed (its own call held up by another rank) is not waited for:
// its rows are withdrawn, the sender returns, and the reader's claim fails later. A reader that claimed and is still
// reading is named.
TEST_F(PullHandOver, AtTheDeadlineAnUnclaimedReaderIsWithdrawnAndAClaimedOneNamed) {
  const pull::Rows announced = AnnounceRows();
  EXPECT_NO_THROW(pull::WaitDone(sender, flags, reads, Clock::now() + std::chrono::milliseconds(20), "test op"));
  pull::Claims late(reader, flags, "test op");
  EXPECT_THROW(late.Claim(0, announced), moe_ep::TimeoutError);

  ClearDoneWord();
  const pull::Rows again = AnnounceRows();
  pull::Claims claims(reader, flags, "test op");
  claims.Claim(0, again);
  try {
    pull::WaitDone(sender, flags, reads, Clock::now() + std::chrono::milliseconds(20), "test op");
    FAIL() << "a reader still reading was not waited for";
  } catch (const moe_ep::TimeoutError& e) {
    EXPECT_EQ(e.missing_ranks(), std::vector<int>{1}) << e.what();
  }
  EXPECT_NO_THROW(claims.Finish());
  EXPECT_NO_THROW(pull::WaitDone(sender, flags, reads, Clock::now() + std::chrono::milliseconds(20), "test op"));
}

TEST_F(PullHandOver, AReaderDoneFirstLetsTheFailedSenderGoAtOnce) {
  const pull::Rows announced = AnnounceRows();
  {
    pull::Claims claims(reader, flags, "test op");
    claims.Claim(0, announced);
    EXPECT_NO_THROW(claims.Finish());
  }
  EXPECT_TRUE(pull::IsDone(DoneWord(), flags.epoch));
  const auto start = Clock::now();
  pull::Withdraw(sender, flags, reads);  // the default wait: 10 s, were it waited for
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(1));
  EXPECT_TRUE(pull::IsDone(DoneWord(), flags.epoch)) << "a finished reader's word stays done";
}

// A claim is held only while rows are read: the parts of a call each hold one, and with the last released (a part that
// waits for another rank, or ends) the sender may withdraw its rows at its deadline instead of naming a reader that is
// not reading. A reader that claims again then fails without reading; one that does not says done at Finish.
TEST_F(PullHandOver, AReleasedClaimLetsTheSenderWithdrawAtItsDeadline) {
  const pull::Rows announced = AnnounceRows();
  pull::Claims claims(reader, flags, "test op");
  claims.Claim(0, announced);  // two parts of the call read rank 0's rows
  claims.Claim(0, announced);
  claims.Release(0);
  EXPECT_THROW(pull::WaitDone(sender, flags, reads, Clock::now() + std::chrono::milliseconds(20), "test op"),
               moe_ep::TimeoutError)
      << "a part still holds its claim: the reader is reading";
  claims.Release(0);
  EXPECT_NO_THROW(pull::WaitDone(sender, flags, reads, Clock::now() + std::chrono::milliseconds(20), "test op"))
      << "no claim held: the rows are withdrawn, and the sender returns with its results";
  try {
    claims.Claim(0, announced);
    FAIL() << "rows withdrawn after their claims were released were claimed again";
  } catch (const moe_ep::TimeoutError& e) {
    EXPECT_EQ(e.missing_ranks(), std::vector<int>{0});
    EXPECT_NE(std::string(e.what()).find("its deadline passed while this rank waited for another"), std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(claims.Finish()) << "what it read under its claims was intact";
}

TEST_F(PullHandOver, AReaderThatReleasedAndClaimedAgainEndsDone) {
  const pull::Rows announced = AnnounceRows();
  {
    pull::Claims claims(reader, flags, "test op");
    claims.Claim(0, announced);
    claims.Release(0);
    claims.Claim(0, announced);
    claims.Release(0);
    EXPECT_FALSE(pull::IsDone(DoneWord(), flags.epoch)) << "released is not done: the call may read more";
    EXPECT_NO_THROW(claims.Finish());
  }
  EXPECT_TRUE(pull::IsDone(DoneWord(), flags.epoch)) << "a reader that released its claims said done at Finish";
  EXPECT_NO_THROW(pull::WaitDone(sender, flags, reads, Clock::now() + std::chrono::seconds(10), "test op"));
}

// A rank that reads its own rows (a combine owner of rows its own experts return, on a transport that exposes them to
// itself) and released its claim says done at Finish as for any other sender.
TEST_F(PullHandOver, ARankReadingItsOwnRowsEndsDoneAfterARelease) {
  const pull::Rows own{rows.data(), 64, 4, 64};
  const uint64_t token = sender.Expose(0, rows.data(), rows.size());
  ASSERT_NE(token, 0u);
  pull::Announce(sender, flags, 0, token, own);
  const std::vector<uint8_t> self_reads{pull::kReadsInPlace, pull::kNoReader};
  const auto seen = pull::Announced(sender, flags, 0, 64, "test op");
  ASSERT_TRUE(seen.has_value());
  {
    pull::Claims claims(sender, flags, "test op");
    claims.Claim(0, *seen);
    claims.Release(0);
    EXPECT_NO_THROW(claims.Finish());
  }
  EXPECT_TRUE(pull::IsDone(sender.ReadFlag(pull::DoneFlags(flags, self_reads).at(0)), flags.epoch))
      << "the rank's own word was left announced: its WaitDone would wait for itself until the deadline";
}

// A failed sender waits for a reader that claimed; should the reader give its claim back meanwhile (to wait for
// another rank), the sender withdraws the rows then, and returns: the reader's next claim fails instead of reading
// memory the caller got back.
TEST_F(PullHandOver, AReaderThatReleasesWhileTheSenderWithdrawsCannotClaimAgain) {
  const pull::Rows announced = AnnounceRows();
  pull::Claims claims(reader, flags, "test op");
  claims.Claim(0, announced);
  const auto start = Clock::now();
  std::thread withdraw([&] { pull::Withdraw(sender, flags, reads, std::chrono::seconds(5)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  claims.Release(0);
  withdraw.join();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(4)) << "the sender waited for a reader that had released";
  EXPECT_THROW(claims.Claim(0, announced), moe_ep::TimeoutError) << "rows given back to their caller were claimed";
}

// A rank whose call fails before it read its own staged copy says done with it, as with any sender's: the staging
// buffer waits for every reader's word, and would be given up (and its memory lost) otherwise.
TEST_F(PullHandOver, ARankWhoseCallFailsLetsGoOfItsOwnStagedCopy) {
  const pull::Rows own{rows.data(), 64, 4, 64};
  const uint64_t token = sender.Expose(0, rows.data(), rows.size());
  ASSERT_NE(token, 0u);
  pull::Announce(sender, flags, 0, token, own, 0, {}, pull::NewStagedMark());
  const std::vector<uint8_t> self_reads{pull::kReadsInPlace, pull::kNoReader};
  { pull::Claims claims(sender, flags, "test op"); }  // its call failed before it met its own rows
  EXPECT_TRUE(pull::IsDone(sender.ReadFlag(pull::DoneFlags(flags, self_reads).at(0)), flags.epoch));
}

// A release that finds the sender stopped waiting for this reader (while it read) fails as Finish would.
TEST_F(PullHandOver, AReleaseAfterTheSenderGaveUpFailsTheCall) {
  const pull::Rows announced = AnnounceRows();
  pull::Claims claims(reader, flags, "test op");
  claims.Claim(0, announced);
  pull::Withdraw(sender, flags, reads, std::chrono::milliseconds(1));
  ExpectGivenUp([&] { claims.Release(0); });
}

TEST_F(PullHandOver, AReaderTheSenderStoppedWaitingForFailsItsCall) {
  const pull::Rows announced = AnnounceRows();
  pull::Claims claims(reader, flags, "test op");
  claims.Claim(0, announced);  // reading, and then stalled past the sender's wait
  const auto start = Clock::now();
  EXPECT_FALSE(pull::Withdraw(sender, flags, reads, std::chrono::milliseconds(30))) << "it says it gave up";
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(30)) << "it waited for the claimed reader";
  EXPECT_FALSE(pull::IsDone(DoneWord(), flags.epoch));
  ExpectGivenUp([&] { claims.Finish(); });
  EXPECT_FALSE(pull::IsDone(DoneWord(), flags.epoch)) << "the word stays given up on, not done";
}

TEST_F(PullHandOver, AReaderGivenUpOnFailsAlsoOnceAResetClearedItsWord) {
  const pull::Rows announced = AnnounceRows();
  pull::Claims claims(reader, flags, "test op");
  claims.Claim(0, announced);
  pull::Withdraw(sender, flags, reads, std::chrono::milliseconds(1));
  ClearDoneWord();  // the sender's caller recovered (BufferReset) before the stalled reader finished
  ExpectGivenUp([&] { claims.Finish(); });
  EXPECT_EQ(DoneWord(), 0u) << "the reader's finishing left the cleared word as it was";
}

TEST_F(PullHandOver, AReaderGivenUpOnFailsAlsoOnceALaterCallReArmedItsWord) {
  const pull::Rows announced = AnnounceRows();
  pull::Claims claims(reader, flags, "test op");
  claims.Claim(0, announced);
  pull::Withdraw(sender, flags, reads, std::chrono::milliseconds(1));
  // The sender's next call of this parity, under the same epoch (as after a reset without sync), announces anew.
  AnnounceRows();
  const uint64_t rearmed = DoneWord();
  ExpectGivenUp([&] { claims.Finish(); });
  EXPECT_EQ(DoneWord(), rearmed) << "the later call's word was left as it was";
}

TEST_F(PullHandOver, AReaderOfAStagedCopyIsNeverGivenUpOn) {
  const pull::Rows announced = AnnounceRows(/*staged=*/true);
  pull::Claims claims(reader, flags, "test op");
  claims.Claim(0, announced);
  ClearDoneWord();  // the copy stays intact until its readers are done, whatever becomes of the word
  EXPECT_NO_THROW(claims.Finish());
}

TEST_F(PullHandOver, ALateReaderOfAStagedCopyLeavesTheWordALaterCallArmedAsItWas) {
  const pull::Rows announced = AnnounceRows(/*staged=*/true);
  pull::Claims claims(reader, flags, "test op");
  claims.Claim(0, announced);
  // The sender reset without sync and its call of this parity staged again, under the same epoch, while this
  // reader was still reading the first copy.
  ClearDoneWord();  // (as the reset would; the next line arms it anyway)
  AnnounceRows(/*staged=*/true);
  const uint64_t rearmed = DoneWord();
  EXPECT_NO_THROW(claims.Finish());
  EXPECT_EQ(DoneWord(), rearmed) << "the late reader marked the later copy done: it could be reused while read";
}

TEST_F(PullHandOver, AStagedCopyIsNotWithdrawnAndItsReaderEndsDone) {
  const pull::Rows announced = AnnounceRows(/*staged=*/true);
  pull::Withdraw(sender, flags, reads, std::chrono::milliseconds(1));  // a staged call never does; harmless if so
  {
    pull::Claims claims(reader, flags, "test op");
    claims.Claim(0, announced);
    EXPECT_NO_THROW(claims.Finish());
  }
  EXPECT_TRUE(pull::IsDone(DoneWord(), flags.epoch)) << "the stage buffer is reused only once this says done";
}

TEST_F(PullHandOver, AStagedCopyIsReadWithoutClaimingItInTheSendersMemory) {
  const pull::Rows announced = AnnounceRows(/*staged=*/true);
  const uint64_t armed = DoneWord();
  pull::Claims claims(reader, flags, "test op");
  claims.Claim(0, announced);
  EXPECT_EQ(DoneWord(), armed) << "a staged copy's claim went to the sender's memory";
  claims.Finish();
  EXPECT_TRUE(pull::IsDone(DoneWord(), flags.epoch));
}

TEST_F(PullHandOver, AStagingMarkThatCouldBeAnotherWordIsRefused) {
  AnnounceRows(/*staged=*/true);
  // The kStaged field (after the token, stride and count) overwritten with kWordAnnounced's value.
  const uint64_t staged_field = flags.base + 0 * moe_ep::plan::kPullFields + 4;
  reader.Signal(reader.rank(), staged_field, moe_ep::transport::MakeFlag(flags.epoch, 4));
  try {
    pull::Announced(reader, flags, 0, 64, "test op");
    FAIL() << "a staging mark below the first was taken";
  } catch (const moe_ep::Error& e) {
    EXPECT_EQ(e.code(), moe_ep::ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("announced staged rows under mark 4, below 8"), std::string::npos) << e.what();
  }
}

TEST_F(PullHandOver, ACopyThatFailsAfterTheSenderGaveUpNamesIt) {
  const pull::Rows announced = AnnounceRows();
  pull::Claims claims(reader, flags, "test op");
  claims.Claim(0, announced);
  // Thread ranks expose nothing by copy: their ReadExposed always fails, standing in for a copy that fails.
  const pull::Rows by_copy{nullptr, 64, 4, 64, /*copy_token=*/1, /*copy_from=*/0};
  uint8_t row[64];
  const pull::RowCopy copies[] = {{row, 0}};
  try {
    claims.CopyRows(by_copy, copies);
    FAIL() << "the copy succeeded";
  } catch (const moe_ep::TimeoutError& e) {
    FAIL() << "a sender still waiting was blamed: " << e.what();
  } catch (const moe_ep::Error& e) {
    EXPECT_EQ(e.code(), moe_ep::ErrorCode::kInternal) << e.what();
  }
  pull::Withdraw(sender, flags, reads, std::chrono::milliseconds(1));
  ExpectGivenUp([&] { claims.CopyRows(by_copy, copies); });
}

}  // namespace
