// C API events, as programs order their streams and time their operators with them: a stream that waits for an
// event recorded behind a long copy on another stream sees the whole copy, even when the event is recorded again
// on an idle stream right after the wait; two records time what ran between them;
// queries and host waits follow the records; a wait longer than the operations' deadline (the longer of
// MOE_EP_TIMEOUT_MS and HCCL_EXEC_TIMEOUT) fails its stream naming the event; bad handles and arguments are errors
// (a null one ACL_ERROR_INVALID_PARAM, an unknown one ACL_ERROR_RT_PARAM_INVALID), never crashes.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "cann/capi_support.h"

namespace moe_ep::capi_testing {
namespace {

using Clock = std::chrono::steady_clock;

// A device, two streams on it, two "device" buffers of kBytes (the source filled with 0x5A, the middle zeroed) and a
// tail of kTail.
class TwoStreams : public ::testing::Test {
 protected:
  // A copy of this takes milliseconds anywhere. ThreadSanitizer checks every byte a copy touches, which makes a
  // copy about 15 times slower: a smaller one lasts as long.
#ifdef __SANITIZE_THREAD__
  static constexpr size_t kBytes = size_t{32} << 20;
#else
  static constexpr size_t kBytes = size_t{256} << 20;
#endif

  void SetUp() override {
    EnsureAclReady();
    ASSERT_EQ(aclrtSetDevice(5), ACL_SUCCESS) << RecentErrMsg();
    ASSERT_EQ(aclrtCreateStream(&a_), ACL_SUCCESS) << RecentErrMsg();
    ASSERT_EQ(aclrtCreateStream(&b_), ACL_SUCCESS) << RecentErrMsg();
    for (void** p : {&source_, &middle_}) {
      ASSERT_EQ(aclrtMalloc(p, kBytes, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS) << RecentErrMsg();
    }
    ASSERT_EQ(aclrtMalloc(&tail_, kTail, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS) << RecentErrMsg();
    ASSERT_EQ(aclrtMemset(source_, kBytes, 0x5A, kBytes), ACL_SUCCESS);
    ASSERT_EQ(aclrtMemset(middle_, kBytes, 0x00, kBytes), ACL_SUCCESS);
    ASSERT_EQ(aclrtMemset(tail_, kTail, 0x00, kTail), ACL_SUCCESS);
  }
  void TearDown() override {
    for (void* p : {source_, middle_, tail_}) {
      if (p != nullptr) aclrtFree(p);
    }
    if (a_ != nullptr) aclrtDestroyStream(a_);
    if (b_ != nullptr) aclrtDestroyStream(b_);
    aclrtResetDevice(5);
  }
  // The last megabyte of the middle buffer, the part of the long copy written last (what stream b copies to tail_).
  static constexpr size_t kTail = size_t{1} << 20;
  uint8_t* MiddleTail() const { return static_cast<uint8_t*>(middle_) + kBytes - kTail; }
  // Stream a copies the source into the middle buffer (front to back).
  void LongCopyOnA() {
    ASSERT_EQ(aclrtMemcpyAsync(middle_, kBytes, source_, kBytes, ACL_MEMCPY_DEVICE_TO_DEVICE, a_), ACL_SUCCESS)
        << RecentErrMsg();
  }

  aclrtStream a_ = nullptr, b_ = nullptr;
  void *source_ = nullptr, *middle_ = nullptr, *tail_ = nullptr;
};

// Stream b copies the last megabyte of the middle buffer, which stream a writes last, after waiting for an event
// recorded behind a's copy: it sees a's bytes. (Without the wait it would copy them while they are still zeros.)
TEST_F(TwoStreams, AStreamWaitingForAnEventSeesWhatRanBeforeTheRecord) {
  aclrtEvent copied = nullptr;
  ASSERT_EQ(aclrtCreateEvent(&copied), ACL_SUCCESS) << RecentErrMsg();
  for (int round = 0; round < 3; ++round) {
    // Only the middle's tail can show a copy run too early: it alone starts each round as zeros again.
    ASSERT_EQ(aclrtMemset(MiddleTail(), kTail, 0x00, kTail), ACL_SUCCESS);
    ASSERT_EQ(aclrtMemset(tail_, kTail, 0x00, kTail), ACL_SUCCESS);
    LongCopyOnA();
    ASSERT_EQ(aclrtRecordEvent(copied, a_), ACL_SUCCESS) << RecentErrMsg();
    ASSERT_EQ(aclrtStreamWaitEvent(b_, copied), ACL_SUCCESS) << RecentErrMsg();
    ASSERT_EQ(aclrtMemcpyAsync(tail_, kTail, MiddleTail(), kTail, ACL_MEMCPY_DEVICE_TO_DEVICE, b_), ACL_SUCCESS);
    ASSERT_EQ(aclrtSynchronizeStream(b_), ACL_SUCCESS) << RecentErrMsg();
    aclrtEventRecordedStatus status = ACL_EVENT_RECORDED_STATUS_NOT_READY;
    ASSERT_EQ(aclrtQueryEventStatus(copied, &status), ACL_SUCCESS);
    EXPECT_EQ(status, ACL_EVENT_RECORDED_STATUS_COMPLETE) << "b ran past its wait before the record";
    std::vector<uint8_t> seen(kTail);
    ASSERT_EQ(aclrtMemcpy(seen.data(), kTail, tail_, kTail, ACL_MEMCPY_DEVICE_TO_HOST), ACL_SUCCESS);
    for (size_t i = 0; i < kTail; ++i) ASSERT_EQ(seen[i], 0x5A) << "round " << round << ", byte " << i;
    ASSERT_EQ(aclrtSynchronizeStream(a_), ACL_SUCCESS);
  }
  EXPECT_EQ(aclrtDestroyEvent(copied), ACL_SUCCESS);
}

// Memory freed while a copy queued on a stream still reads it (the program's bug: a device would read freed memory) is
// given back only once the copy ran: a buffer allocated meanwhile is other memory, what the copy reads is what was
// there, and a later call on the freed memory is refused. Stream b copies a small buffer to the tail behind a's long
// copy; the buffer is freed and a new one of its size, filled with 0xEE, is allocated before b's copy can run (unless
// the machine stalled this thread for the whole long copy: then only the bytes are checked).
TEST_F(TwoStreams, MemoryFreedUnderAQueuedCopyIsGivenBackOnceTheCopyRan) {
  void* small = nullptr;
  ASSERT_EQ(aclrtMalloc(&small, kTail, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS) << RecentErrMsg();
  ASSERT_EQ(aclrtMemset(small, kTail, 0x5A, kTail), ACL_SUCCESS);
  aclrtEvent copied = nullptr;
  ASSERT_EQ(aclrtCreateEvent(&copied), ACL_SUCCESS) << RecentErrMsg();
  LongCopyOnA();
  ASSERT_EQ(aclrtRecordEvent(copied, a_), ACL_SUCCESS) << RecentErrMsg();
  ASSERT_EQ(aclrtStreamWaitEvent(b_, copied), ACL_SUCCESS) << RecentErrMsg();
  ASSERT_EQ(aclrtMemcpyAsync(tail_, kTail, small, kTail, ACL_MEMCPY_DEVICE_TO_DEVICE, b_), ACL_SUCCESS);
  aclrtEvent read = nullptr;
  ASSERT_EQ(aclrtCreateEvent(&read), ACL_SUCCESS) << RecentErrMsg();
  ASSERT_EQ(aclrtRecordEvent(read, b_), ACL_SUCCESS) << RecentErrMsg();
  aclrtEventRecordedStatus status = ACL_EVENT_RECORDED_STATUS_NOT_READY;
  ASSERT_EQ(aclrtQueryEventStatus(read, &status), ACL_SUCCESS);
  const bool queued = status != ACL_EVENT_RECORDED_STATUS_COMPLETE;  // b's copy has not run yet
  ASSERT_EQ(aclrtFree(small), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_EQ(aclrtFree(small), ACL_ERROR_RT_MEMORY_FREE) << "freed twice";
  void* reused = nullptr;
  ASSERT_EQ(aclrtMalloc(&reused, kTail, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS) << RecentErrMsg();
  if (queued) {
    EXPECT_NE(reused, small) << "memory a queued copy reads was handed out again";
    EXPECT_EQ(aclrtMemcpyAsync(tail_, kTail, small, kTail, ACL_MEMCPY_DEVICE_TO_DEVICE, b_), ACL_ERROR_INVALID_PARAM)
        << "a copy from freed memory";
    EXPECT_NE(RecentErrMsg().find("freed already"), std::string::npos) << RecentErrMsg();
  }
  ASSERT_EQ(aclrtMemset(reused, kTail, 0xEE, kTail), ACL_SUCCESS);
  ASSERT_EQ(aclrtSynchronizeStream(b_), ACL_SUCCESS) << RecentErrMsg();
  std::vector<uint8_t> seen(kTail);
  ASSERT_EQ(aclrtMemcpy(seen.data(), kTail, tail_, kTail, ACL_MEMCPY_DEVICE_TO_HOST), ACL_SUCCESS);
  for (size_t i = 0; i < kTail; ++i) ASSERT_EQ(seen[i], 0x5A) << "byte " << i << " of what the copy read";
  EXPECT_EQ(aclrtFree(reused), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeStream(a_), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyEvent(copied), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyEvent(read), ACL_SUCCESS);
}

// A stream's wait is for the event's last record when the wait was made, as in CANN: a later record on an idle stream,
// which runs first, does not release it. Stream a records behind its long copy, stream c waits and then copies the
// middle's tail (which a writes last), and stream b records the event again at once. (Before, any record that ran
// released the waits for earlier ones: c copied the tail while it was still zeros.)
TEST_F(TwoStreams, AStreamWaitIsNotReleasedByALaterRecordOnAnotherStream) {
  aclrtStream c = nullptr;
  ASSERT_EQ(aclrtCreateStream(&c), ACL_SUCCESS) << RecentErrMsg();
  aclrtEvent copied = nullptr;
  ASSERT_EQ(aclrtCreateEvent(&copied), ACL_SUCCESS) << RecentErrMsg();
  LongCopyOnA();
  ASSERT_EQ(aclrtRecordEvent(copied, a_), ACL_SUCCESS) << RecentErrMsg();
  ASSERT_EQ(aclrtStreamWaitEvent(c, copied), ACL_SUCCESS) << RecentErrMsg();
  ASSERT_EQ(aclrtMemcpyAsync(tail_, kTail, MiddleTail(), kTail, ACL_MEMCPY_DEVICE_TO_DEVICE, c), ACL_SUCCESS);
  ASSERT_EQ(aclrtRecordEvent(copied, b_), ACL_SUCCESS) << RecentErrMsg();
  ASSERT_EQ(aclrtSynchronizeStream(b_), ACL_SUCCESS) << RecentErrMsg();
  aclrtEventRecordedStatus status = ACL_EVENT_RECORDED_STATUS_NOT_READY;
  ASSERT_EQ(aclrtQueryEventStatus(copied, &status), ACL_SUCCESS);
  EXPECT_EQ(status, ACL_EVENT_RECORDED_STATUS_COMPLETE) << "the event's state follows its last record, b's";
  ASSERT_EQ(aclrtSynchronizeStream(c), ACL_SUCCESS) << RecentErrMsg();
  std::vector<uint8_t> seen(kTail);
  ASSERT_EQ(aclrtMemcpy(seen.data(), kTail, tail_, kTail, ACL_MEMCPY_DEVICE_TO_HOST), ACL_SUCCESS);
  for (size_t i = 0; i < kTail; ++i) ASSERT_EQ(seen[i], 0x5A) << "c ran past its wait before a's record, byte " << i;
  EXPECT_EQ(aclrtSynchronizeStream(a_), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyEvent(copied), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyStream(c), ACL_SUCCESS);
}

// Two records time the copy between them: more than nothing, no more than the host saw; the host waits for the end
// record; queries follow it; an event never recorded is complete and cannot be timed.
TEST_F(TwoStreams, RecordsTimeWhatRanBetweenThemAndHostWaitsFollowThem) {
  aclrtEvent start = nullptr, end = nullptr, never = nullptr;
  ASSERT_EQ(aclrtCreateEventWithFlag(&start, ACL_EVENT_TIME_LINE), ACL_SUCCESS);
  ASSERT_EQ(aclrtCreateEventExWithFlag(&end, ACL_EVENT_TIME_LINE | ACL_EVENT_SYNC), ACL_SUCCESS);
  ASSERT_EQ(aclrtCreateEvent(&never), ACL_SUCCESS);
  aclrtEventRecordedStatus recorded = ACL_EVENT_RECORDED_STATUS_NOT_READY;
  ASSERT_EQ(aclrtQueryEventStatus(never, &recorded), ACL_SUCCESS);
  EXPECT_EQ(recorded, ACL_EVENT_RECORDED_STATUS_COMPLETE) << "an event never recorded";
  EXPECT_EQ(aclrtSynchronizeEventWithTimeout(never, 0), ACL_SUCCESS);

  const auto host_start = Clock::now();
  ASSERT_EQ(aclrtRecordEvent(start, a_), ACL_SUCCESS);
  LongCopyOnA();
  ASSERT_EQ(aclrtRecordEvent(end, a_), ACL_SUCCESS);
  aclrtEventStatus status = ACL_EVENT_STATUS_COMPLETE;
  ASSERT_EQ(aclrtQueryEvent(end, &status), ACL_SUCCESS);
  EXPECT_EQ(status, ACL_EVENT_STATUS_NOT_READY) << "the end record ran before a long copy could";
  ASSERT_EQ(aclrtSynchronizeEvent(end), ACL_SUCCESS) << RecentErrMsg();
  const float host_ms = std::chrono::duration<float, std::milli>(Clock::now() - host_start).count();
  ASSERT_EQ(aclrtQueryEvent(end, &status), ACL_SUCCESS);
  EXPECT_EQ(status, ACL_EVENT_STATUS_COMPLETE);
  float ms = -1;
  ASSERT_EQ(aclrtEventElapsedTime(&ms, start, end), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_GT(ms, 0.0f);
  EXPECT_LE(ms, host_ms);
  std::vector<uint8_t> last(64);
  ASSERT_EQ(aclrtMemcpy(last.data(), last.size(), static_cast<uint8_t*>(middle_) + kBytes - last.size(), last.size(),
                        ACL_MEMCPY_DEVICE_TO_HOST),
            ACL_SUCCESS);
  EXPECT_EQ(last, std::vector<uint8_t>(64, 0x5A)) << "the host wait returned before the copy ended";

  EXPECT_EQ(aclrtEventElapsedTime(&ms, never, end), ACL_ERROR_RT_PARAM_INVALID);
  EXPECT_NE(RecentErrMsg().find("startEvent"), std::string::npos);
  ASSERT_EQ(aclrtResetEvent(end, a_), ACL_SUCCESS);
  ASSERT_EQ(aclrtSynchronizeStream(a_), ACL_SUCCESS);
  EXPECT_EQ(aclrtEventElapsedTime(&ms, start, end), ACL_ERROR_RT_PARAM_INVALID) << "a reset event was timed";
  EXPECT_NE(RecentErrMsg().find("endEvent"), std::string::npos);
  for (aclrtEvent e : {start, end, never}) EXPECT_EQ(aclrtDestroyEvent(e), ACL_SUCCESS);
}

// A host wait with a timeout shorter than the copy returns the event timeout (the stream goes on); a stream's wait
// longer than the operations' deadline fails that stream naming the event.
TEST_F(TwoStreams, WaitsLongerThanTheirTimeoutFailNamingTheEvent) {
  aclrtEvent copied = nullptr;
  ASSERT_EQ(aclrtCreateEvent(&copied), ACL_SUCCESS);
  LongCopyOnA();  // far longer than 1 ms anywhere
  ASSERT_EQ(aclrtRecordEvent(copied, a_), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeEventWithTimeout(copied, 1), ACL_ERROR_RT_EVENT_SYNC_TIMEOUT);
  EXPECT_NE(RecentErrMsg().find("aclrtSynchronizeEventWithTimeout"), std::string::npos);
  {
    ScopedEnv deadline("MOE_EP_TIMEOUT_MS", "1"), exec("HCCL_EXEC_TIMEOUT", nullptr);
    ASSERT_EQ(aclrtStreamWaitEvent(b_, copied), ACL_SUCCESS) << RecentErrMsg();
  }
  EXPECT_EQ(aclrtSynchronizeStream(b_), 507034);
  const std::string message = RecentErrMsg();
  EXPECT_NE(message.find("aclrtStreamWaitEvent"), std::string::npos) << message;
  EXPECT_NE(message.find("event 0x"), std::string::npos) << message;
  EXPECT_NE(message.find("HCCL_EXEC_TIMEOUT"), std::string::npos) << message;
  EXPECT_EQ(aclrtSynchronizeEvent(copied), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyEvent(copied), ACL_SUCCESS);
}

// A stream's wait lasts the longer of MOE_EP_TIMEOUT_MS and HCCL_EXEC_TIMEOUT: an event behind an operator that may
// take its whole HCCL_EXEC_TIMEOUT is waited for that long (here a copy far longer than MOE_EP_TIMEOUT_MS = 1 ms).
TEST_F(TwoStreams, AStreamWaitLastsAsLongAsHcclExecTimeout) {
  aclrtEvent copied = nullptr;
  ASSERT_EQ(aclrtCreateEvent(&copied), ACL_SUCCESS);
  LongCopyOnA();
  ASSERT_EQ(aclrtRecordEvent(copied, a_), ACL_SUCCESS);
  {
    ScopedEnv deadline("MOE_EP_TIMEOUT_MS", "1"), exec("HCCL_EXEC_TIMEOUT", "60");
    ASSERT_EQ(aclrtStreamWaitEvent(b_, copied), ACL_SUCCESS) << RecentErrMsg();
  }
  EXPECT_EQ(aclrtSynchronizeStream(b_), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_EQ(aclrtDestroyEvent(copied), ACL_SUCCESS);
}

// A malformed deadline variable is the aclrt call's parameter error (ACL_ERROR_INVALID_PARAM, not aclnn's 161002),
// naming the variable, and launches nothing.
TEST(CapiEvents, AStreamWaitRefusesAMalformedDeadlineVariable) {
  EnsureAclReady();
  ASSERT_EQ(aclrtSetDevice(5), ACL_SUCCESS) << RecentErrMsg();
  aclrtStream stream = nullptr;
  aclrtEvent event = nullptr;
  ASSERT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS) << RecentErrMsg();
  ASSERT_EQ(aclrtCreateEvent(&event), ACL_SUCCESS);
  ASSERT_EQ(aclrtRecordEvent(event, stream), ACL_SUCCESS);
  for (const auto& [name, value] : {std::pair{"MOE_EP_TIMEOUT_MS", "soon"}, std::pair{"HCCL_EXEC_TIMEOUT", "-1"}}) {
    SCOPED_TRACE(std::string(name) + "=" + value);
    ScopedEnv bad(name, value);
    EXPECT_EQ(aclrtStreamWaitEvent(stream, event), ACL_ERROR_INVALID_PARAM);
    const std::string message = RecentErrMsg();
    EXPECT_NE(message.find("aclrtStreamWaitEvent"), std::string::npos) << message;
    EXPECT_NE(message.find(std::string(name) + " = '" + value + "'"), std::string::npos) << message;
  }
  EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_EQ(aclrtDestroyEvent(event), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
  aclrtResetDevice(5);
}

TEST(CapiEvents, BadHandlesAndArgumentsAreErrors) {
  EnsureAclReady();
  aclrtEvent event = nullptr;
  EXPECT_EQ(aclrtCreateEvent(nullptr), ACL_ERROR_INVALID_PARAM);
  ASSERT_EQ(aclrtCreateEvent(&event), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeEventWithTimeout(event, -2), ACL_ERROR_INVALID_PARAM);  // as for a stream's timeout
  EXPECT_NE(RecentErrMsg().find("timeout"), std::string::npos);
  aclrtEventRecordedStatus status;
  EXPECT_EQ(aclrtQueryEventStatus(event, nullptr), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtEventElapsedTime(nullptr, event, event), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtRecordEvent(event, reinterpret_cast<aclrtStream>(0x1234)), ACL_ERROR_RT_PARAM_INVALID);
  EXPECT_EQ(aclrtDestroyEvent(event), ACL_SUCCESS);
  // Not a live event (destroyed, never made): ACL_ERROR_RT_PARAM_INVALID, from the runtime.
  for (aclrtEvent bad : {event, reinterpret_cast<aclrtEvent>(0x40)}) {
    EXPECT_EQ(aclrtDestroyEvent(bad), ACL_ERROR_RT_PARAM_INVALID);
    EXPECT_EQ(aclrtRecordEvent(bad, nullptr), ACL_ERROR_RT_PARAM_INVALID);
    EXPECT_EQ(aclrtStreamWaitEvent(nullptr, bad), ACL_ERROR_RT_PARAM_INVALID);
    EXPECT_EQ(aclrtSynchronizeEvent(bad), ACL_ERROR_RT_PARAM_INVALID);
    EXPECT_EQ(aclrtQueryEventStatus(bad, &status), ACL_ERROR_RT_PARAM_INVALID);
    EXPECT_NE(RecentErrMsg().find("not a live event"), std::string::npos);
  }
  // A null event: ACL_ERROR_INVALID_PARAM, as CANN refuses every null handle before the runtime sees it (and as
  // aclrtDestroyStream / aclrtDestroyContext do here), naming the parameter.
  const auto null_event = [](const char* api, const char* param, aclError got) {
    EXPECT_EQ(got, ACL_ERROR_INVALID_PARAM) << api;
    const std::string message = RecentErrMsg();
    EXPECT_NE(message.find(std::string(api) + ": parameter '" + param + "' is nullptr"), std::string::npos) << message;
  };
  const aclrtEvent none = nullptr;
  null_event("aclrtDestroyEvent", "event", aclrtDestroyEvent(none));
  null_event("aclrtRecordEvent", "event", aclrtRecordEvent(none, nullptr));
  null_event("aclrtResetEvent", "event", aclrtResetEvent(none, nullptr));
  null_event("aclrtStreamWaitEvent", "event", aclrtStreamWaitEvent(nullptr, none));
  null_event("aclrtSynchronizeEvent", "event", aclrtSynchronizeEvent(none));
  null_event("aclrtSynchronizeEventWithTimeout", "event", aclrtSynchronizeEventWithTimeout(none, 10));
  null_event("aclrtQueryEventStatus", "event", aclrtQueryEventStatus(none, &status));
  aclrtEventStatus old_status;
  null_event("aclrtQueryEvent", "event", aclrtQueryEvent(none, &old_status));
  float ms = 0;
  null_event("aclrtEventElapsedTime", "startEvent", aclrtEventElapsedTime(&ms, none, none));
}

}  // namespace
}  // namespace moe_ep::capi_testing
