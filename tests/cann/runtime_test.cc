// Runtime emulation tests: virtual devices, contexts, streams, memory, tensors and error messages of the
// CANN-compatible C API (include/acl, include/aclnn/acl_meta.h) and the internal runtime.h helpers.
//
// Cases:
//   AclDeviceCount.*     16 by default; MOE_EP_DEVICE_COUNT honoured; a malformed value makes device calls fail
//                        with a message naming the variable (each in a fresh process: the count is read once).
//   AclDevices.*         bad ids name the id and the count; no current device -> ACL_ERROR_RT_CONTEXT_NULL.
//   AclContexts.*        create makes current; set-current switches CurrentDevice per thread; double destroy.
//   AclErrors.*          aclGetRecentErrMsg is per thread and cleared by reading.
//   AclLifecycle.*       aclInit twice / bad config path; aclFinalize joins every stream worker.
//   AclStreams.*         launch order (1000 tasks, and 8 launching threads); launch never blocks; one thread on
//                        16 streams of 16 devices; first failure reported once with its message (a device's
//                        synchronize reports each new one after one it reported); bounded
//                        synchronize times out fast and names the running op; destroy waits; double destroy;
//                        a task cannot wait for its own stream; a synchronizer that runs tasks itself runs
//                        them as the worker, one at a time and in order when several race; default (nullptr) streams;
//                        SynchronizeDevice; the seed samples' create / use in threads / destroy twice pattern.
//   AclMemory.*          malloc argument checks and alignment; free of unknown / freed / wrong-kind pointers;
//                        memcpy / memset bounds; async copies ordered with other tasks on the stream; an async
//                        copy of ordinary host memory returns once it ran (a task cannot make one on its own stream).
//   AclTensors.*         each aclCreateTensor rejection; 0-d and empty tensors; getters; a non-contiguous view
//                        round trip through ViewOf; ToDType; aclDataTypeSize; double destroy.
#include "cann/runtime/runtime.h"

#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "acl/acl.h"
#include "aclnn/aclnn_base.h"
#include "cann/runtime/stream.h"
#include "moe_ep/error.h"

namespace moe_ep::cann {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// The calling thread's recent error message ("" when none); reading it clears it.
std::string RecentMessage() {
  const char* message = aclGetRecentErrMsg();
  return message == nullptr ? std::string() : std::string(message);
}

// Runs `body` on a fresh thread (no current device, no recent error) and waits for it.
template <typename Body>
void OnFreshThread(Body&& body) {
  std::thread thread(std::forward<Body>(body));
  thread.join();
}

// Threads of this process right now.
int ThreadCount() {
  int count = 0;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count;
}

// Every test starts and ends with a clean runtime: no streams, no contexts, no current device.
class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(aclFinalize(), ACL_SUCCESS);
    RecentMessage();
  }
  void TearDown() override { EXPECT_EQ(aclFinalize(), ACL_SUCCESS); }
};

using AclDeviceCount = RuntimeTest;
using AclDevices = RuntimeTest;
using AclContexts = RuntimeTest;
using AclErrors = RuntimeTest;
using AclLifecycle = RuntimeTest;
using AclMemory = RuntimeTest;
using AclTensors = RuntimeTest;

// ---- device count: each case runs in a re-executed process, where nothing has read the count yet ----

// Sets MOE_EP_DEVICE_COUNT (nullptr: unsets it), then exits 0 when aclrtGetDeviceCount gives `expected`.
void ExitZeroIfDeviceCountIs(const char* value, uint32_t expected) {
  if (value == nullptr) {
    unsetenv("MOE_EP_DEVICE_COUNT");
  } else {
    setenv("MOE_EP_DEVICE_COUNT", value, 1);
  }
  uint32_t count = 0;
  const aclError status = aclrtGetDeviceCount(&count);
  std::exit(status == ACL_SUCCESS && count == expected && DeviceCount() == static_cast<int32_t>(expected) ? 0 : 1);
}

TEST_F(AclDeviceCount, DefaultsToSixteen) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(ExitZeroIfDeviceCountIs(nullptr, 16), ::testing::ExitedWithCode(0), "");
}

TEST_F(AclDeviceCount, FollowsTheEnvironment) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(ExitZeroIfDeviceCountIs("4", 4), ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(ExitZeroIfDeviceCountIs("64", 64), ::testing::ExitedWithCode(0), "");
}

TEST_F(AclDeviceCount, MalformedValueFailsEveryDeviceCallWithItsName) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("MOE_EP_DEVICE_COUNT", "lots", 1);
        uint32_t count = 0;
        const bool count_fails = aclrtGetDeviceCount(&count) == ACL_ERROR_INVALID_PARAM;
        const bool set_fails = aclrtSetDevice(0) == ACL_ERROR_RT_INVALID_DEVICEID;
        std::fprintf(stderr, "%s\n", RecentMessage().c_str());
        std::exit(count_fails && set_fails ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "MOE_EP_DEVICE_COUNT = 'lots'");
}

TEST_F(AclDeviceCount, CountMatchesTheHelper) {
  uint32_t count = 0;
  ASSERT_EQ(aclrtGetDeviceCount(&count), ACL_SUCCESS);
  EXPECT_EQ(static_cast<int32_t>(count), moe_ep::cann::DeviceCount());
  if (std::getenv("MOE_EP_DEVICE_COUNT") == nullptr) {
    EXPECT_EQ(count, 16u);
  }
  EXPECT_EQ(aclrtGetDeviceCount(nullptr), ACL_ERROR_INVALID_PARAM);
}

// ---- devices ----

TEST_F(AclDevices, InvalidIdsNameTheIdAndTheCount) {
  const int32_t count = moe_ep::cann::DeviceCount();
  EXPECT_EQ(aclrtSetDevice(-1), ACL_ERROR_RT_INVALID_DEVICEID);
  EXPECT_NE(RecentMessage().find("device id -1"), std::string::npos);
  EXPECT_EQ(aclrtSetDevice(count), ACL_ERROR_RT_INVALID_DEVICEID);
  const std::string message = RecentMessage();
  EXPECT_NE(message.find("device id " + std::to_string(count)), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(count) + " virtual devices"), std::string::npos) << message;
  aclrtContext context = nullptr;
  EXPECT_EQ(aclrtCreateContext(&context, count + 5), ACL_ERROR_RT_INVALID_DEVICEID);
  EXPECT_EQ(context, nullptr);
  EXPECT_EQ(aclrtResetDevice(-7), ACL_ERROR_RT_INVALID_DEVICEID);
  EXPECT_EQ(CurrentDevice(), -1);  // nothing above changed the thread's device
  EXPECT_EQ(aclrtSetDevice(count - 1), ACL_SUCCESS);
  EXPECT_EQ(CurrentDevice(), count - 1);
}

TEST_F(AclDevices, NoCurrentDeviceIsContextNull) {
  OnFreshThread([] {
    int32_t device = 42;
    EXPECT_EQ(aclrtGetDevice(&device), ACL_ERROR_RT_CONTEXT_NULL);
    EXPECT_NE(RecentMessage().find("aclrtSetDevice"), std::string::npos);
    aclrtStream stream = nullptr;
    EXPECT_EQ(aclrtCreateStream(&stream), ACL_ERROR_RT_CONTEXT_NULL);
    EXPECT_NE(RecentMessage().find("call aclrtSetDevice"), std::string::npos);
    EXPECT_EQ(LaunchOnStream(nullptr, "op", [] {}), ACL_ERROR_RT_CONTEXT_NULL);
    EXPECT_EQ(aclrtSynchronizeDevice(), ACL_ERROR_RT_CONTEXT_NULL);
    EXPECT_EQ(CurrentDevice(), -1);
  });
}

TEST_F(AclDevices, SetGetResetDevice) {
  ASSERT_EQ(aclrtSetDevice(7), ACL_SUCCESS);
  int32_t device = -1;
  ASSERT_EQ(aclrtGetDevice(&device), ACL_SUCCESS);
  EXPECT_EQ(device, 7);
  aclrtContext context = nullptr;
  EXPECT_EQ(aclrtGetCurrentContext(&context), ACL_SUCCESS);  // the device's default context
  EXPECT_NE(context, nullptr);
  EXPECT_EQ(aclrtDestroyContext(context), ACL_ERROR_INVALID_PARAM);  // not the program's to destroy
  EXPECT_EQ(aclrtResetDevice(3), ACL_SUCCESS);                       // another device: no change
  EXPECT_EQ(CurrentDevice(), 7);
  EXPECT_EQ(aclrtResetDevice(7), ACL_SUCCESS);
  EXPECT_EQ(CurrentDevice(), -1);
  EXPECT_EQ(aclrtGetDevice(&device), ACL_ERROR_RT_CONTEXT_NULL);
}

// ---- contexts ----

TEST_F(AclContexts, CreateMakesCurrentAndSetCurrentSwitchesPerThread) {
  aclrtContext context3 = nullptr;
  aclrtContext context5 = nullptr;
  OnFreshThread([&] {
    ASSERT_EQ(aclrtCreateContext(&context3, 3), ACL_SUCCESS);
    EXPECT_EQ(CurrentDevice(), 3);
    aclrtContext current = nullptr;
    ASSERT_EQ(aclrtGetCurrentContext(&current), ACL_SUCCESS);
    EXPECT_EQ(current, context3);
  });
  EXPECT_EQ(CurrentDevice(), -1);  // the other thread's context is not this thread's
  ASSERT_EQ(aclrtCreateContext(&context5, 5), ACL_SUCCESS);
  EXPECT_EQ(CurrentDevice(), 5);
  OnFreshThread([&] {
    EXPECT_EQ(CurrentDevice(), -1);
    ASSERT_EQ(aclrtSetCurrentContext(context3), ACL_SUCCESS);
    EXPECT_EQ(CurrentDevice(), 3);
    ASSERT_EQ(aclrtSetCurrentContext(context5), ACL_SUCCESS);
    int32_t device = -1;
    ASSERT_EQ(aclrtGetDevice(&device), ACL_SUCCESS);
    EXPECT_EQ(device, 5);
    // A stream made now belongs to the context's device.
    aclrtStream stream = nullptr;
    ASSERT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS);
    int32_t stream_device = -1;
    ASSERT_EQ(LaunchOnStream(
                  stream, "op", [] {}, &stream_device),
              ACL_SUCCESS);
    EXPECT_EQ(stream_device, 5);
    EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
  });
  EXPECT_EQ(CurrentDevice(), 5);
  ASSERT_EQ(aclrtSetCurrentContext(context3), ACL_SUCCESS);
  EXPECT_EQ(CurrentDevice(), 3);
  EXPECT_EQ(aclrtDestroyContext(context3), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyContext(context5), ACL_SUCCESS);
  aclrtContext current = nullptr;
  EXPECT_EQ(aclrtGetCurrentContext(&current), ACL_ERROR_RT_CONTEXT_NULL);  // the current one was destroyed
  EXPECT_EQ(CurrentDevice(), 3);                                           // ...but the device stays
}

// A thread whose current context another thread destroyed works in its device's implicit context, as the destroying
// thread does: its launches on the default stream go to that context's default stream (the one every such thread
// and the destroying thread synchronize), not to a new stream of the dead context's.
TEST_F(AclContexts, AContextDestroyedByAnotherThreadLeavesItsDevicesImplicitContext) {
  aclrtContext context = nullptr;
  ASSERT_EQ(aclrtCreateContext(&context, 2), ACL_SUCCESS);
  std::atomic<int> stage{0}, ran{0};
  std::thread other([&] {
    ASSERT_EQ(aclrtSetCurrentContext(context), ACL_SUCCESS);
    stage = 1;
    while (stage != 2) std::this_thread::yield();
    EXPECT_EQ(LaunchOnStream(nullptr, "slow",
                             [&] {
                               std::this_thread::sleep_for(std::chrono::milliseconds(200));
                               ran = 1;
                             }),
              ACL_SUCCESS);
    stage = 3;
  });
  while (stage != 1) std::this_thread::yield();
  ASSERT_EQ(aclrtDestroyContext(context), ACL_SUCCESS);  // this thread is now in device 2's implicit context
  stage = 2;
  while (stage != 3) std::this_thread::yield();
  other.join();
  EXPECT_EQ(aclrtSynchronizeStream(nullptr), ACL_SUCCESS) << RecentMessage();
  EXPECT_EQ(ran, 1) << "the other thread's task went to a stream of the destroyed context";
}

TEST_F(AclContexts, DoubleDestroyAndUnknownHandlesFail) {
  aclrtContext context = nullptr;
  ASSERT_EQ(aclrtCreateContext(&context, 1), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyContext(context), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyContext(context), ACL_ERROR_RT_INVALID_HANDLE);
  EXPECT_NE(RecentMessage().find("not a live context"), std::string::npos);
  EXPECT_EQ(aclrtSetCurrentContext(context), ACL_ERROR_RT_INVALID_HANDLE);
  int local = 0;
  EXPECT_EQ(aclrtDestroyContext(&local), ACL_ERROR_RT_INVALID_HANDLE);  // never a context: never dereferenced
  EXPECT_EQ(aclrtDestroyContext(nullptr), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtSetCurrentContext(nullptr), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtCreateContext(nullptr, 0), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtGetCurrentContext(nullptr), ACL_ERROR_INVALID_PARAM);
}

// ---- error messages ----

TEST_F(AclErrors, RecentMessageIsPerThreadAndClearedByReading) {
  EXPECT_EQ(aclGetRecentErrMsg(), nullptr);
  EXPECT_EQ(aclrtSetDevice(-3), ACL_ERROR_RT_INVALID_DEVICEID);
  OnFreshThread([] { EXPECT_EQ(aclGetRecentErrMsg(), nullptr); });
  const char* message = aclGetRecentErrMsg();
  ASSERT_NE(message, nullptr);
  EXPECT_NE(std::string(message).find("aclrtSetDevice: device id -3"), std::string::npos) << message;
  EXPECT_EQ(aclGetRecentErrMsg(), nullptr);
  EXPECT_EQ(Fail(12345, "custom"), 12345);
  EXPECT_EQ(RecentMessage(), "custom");
}

// ---- lifecycle ----

TEST_F(AclLifecycle, InitOnceAndConfigPathMustExist) {
  EXPECT_EQ(aclInit(nullptr), ACL_SUCCESS);
  EXPECT_EQ(aclInit(nullptr), ACL_ERROR_REPEAT_INITIALIZE);
  EXPECT_NE(RecentMessage().find("already initialized"), std::string::npos);
  EXPECT_EQ(aclFinalize(), ACL_SUCCESS);
  EXPECT_EQ(aclInit("/nonexistent/moe_ep/acl.json"), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(RecentMessage().find("/nonexistent/moe_ep/acl.json"), std::string::npos);
  const std::string path = ::testing::TempDir() + "moe_ep_runtime_test_acl.json";
  std::ofstream(path) << "{}";
  EXPECT_EQ(aclInit(path.c_str()), ACL_SUCCESS);
  EXPECT_EQ(aclFinalize(), ACL_SUCCESS);
  EXPECT_EQ(aclInit(""), ACL_SUCCESS);  // "" is no path
  std::remove(path.c_str());
}

TEST_F(AclLifecycle, WorksWithoutInit) {
  // Lenient on purpose: a program that forgets aclInit still runs.
  ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

TEST_F(AclLifecycle, FinalizeWaitsForTasksAndJoinsEveryWorker) {
  const int threads_before = ThreadCount();
  ASSERT_EQ(aclInit(nullptr), ACL_SUCCESS);
  std::atomic<int> finished{0};
  std::vector<aclrtStream> streams(4);
  for (int device = 0; device < 4; ++device) {
    ASSERT_EQ(aclrtSetDevice(device), ACL_SUCCESS);
    ASSERT_EQ(aclrtCreateStream(&streams[device]), ACL_SUCCESS);
    for (int i = 0; i < 3; ++i) {
      ASSERT_EQ(LaunchOnStream(streams[device], "sleepy",
                               [&] {
                                 std::this_thread::sleep_for(milliseconds(10));
                                 finished.fetch_add(1);
                               }),
                ACL_SUCCESS);
    }
    ASSERT_EQ(LaunchOnStream(nullptr, "on_default", [&] { finished.fetch_add(1); }), ACL_SUCCESS);
  }
  EXPECT_GT(ThreadCount(), threads_before);
  ASSERT_EQ(aclFinalize(), ACL_SUCCESS);
  EXPECT_EQ(finished.load(), 4 * 4);
#ifdef MOE_EP_SANITIZED
  EXPECT_LE(ThreadCount(), threads_before + 1);  // ThreadSanitizer starts a thread of its own on first use
#else
  EXPECT_EQ(ThreadCount(), threads_before);
#endif
  EXPECT_EQ(CurrentDevice(), -1);
  EXPECT_EQ(aclrtSynchronizeStream(streams[0]), ACL_ERROR_RT_PARAM_INVALID);  // gone with aclFinalize
  EXPECT_EQ(aclrtDestroyStream(streams[1]), ACL_ERROR_RT_PARAM_INVALID);
}

// ---- streams ----

// Every stream test runs on both kinds of stream: aclrtCreateStream's, whose launches wake the worker, and
// aclrtCreateStreamWithConfig's ACL_STREAM_FAST_SYNC, whose launches leave the task to the synchronize or
// to the worker's next look at the queue.
enum class StreamKind { kPlain, kFastSync };

class AclStreams : public RuntimeTest, public ::testing::WithParamInterface<StreamKind> {
 protected:
  static aclError NewStream(aclrtStream* stream) {
    return GetParam() == StreamKind::kPlain ? aclrtCreateStream(stream)
                                            : aclrtCreateStreamWithConfig(stream, 0, ACL_STREAM_FAST_SYNC);
  }
};

INSTANTIATE_TEST_SUITE_P(Kinds, AclStreams, ::testing::Values(StreamKind::kPlain, StreamKind::kFastSync),
                         [](const ::testing::TestParamInfo<StreamKind>& info) {
                           return info.param == StreamKind::kPlain ? "Plain" : "FastSync";
                         });

TEST_P(AclStreams, TasksRunInLaunchOrder) {
  ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(NewStream(&stream), ACL_SUCCESS);
  std::vector<int> order;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(LaunchOnStream(stream, "append", [&order, i] { order.push_back(i); }), ACL_SUCCESS);
  }
  ASSERT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
  ASSERT_EQ(order.size(), 1000u);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(order[i], i);
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

TEST_P(AclStreams, EachLaunchingThreadKeepsItsOrder) {
  ASSERT_EQ(aclrtSetDevice(1), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(NewStream(&stream), ACL_SUCCESS);
  constexpr int kThreads = 8;
  constexpr int kTasks = 200;
  std::vector<std::vector<int>> seen(kThreads);  // written by whoever runs the tasks, one at a time
  std::vector<std::thread> launchers;
  for (int t = 0; t < kThreads; ++t) {
    launchers.emplace_back([&, t] {
      for (int i = 0; i < kTasks; ++i) {
        EXPECT_EQ(LaunchOnStream(stream, "append", [&seen, t, i] { seen[t].push_back(i); }), ACL_SUCCESS);
      }
    });
  }
  for (auto& launcher : launchers) launcher.join();
  ASSERT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kTasks));
    for (int i = 0; i < kTasks; ++i) ASSERT_EQ(seen[t][i], i);
  }
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

TEST_P(AclStreams, LaunchNeverBlocks) {
  ASSERT_EQ(aclrtSetDevice(2), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(NewStream(&stream), ACL_SUCCESS);
  std::latch release(1);
  std::atomic<int> ran{0};
  ASSERT_EQ(LaunchOnStream(stream, "blocked",
                           [&] {
                             release.wait();
                             ran.fetch_add(1);
                           }),
            ACL_SUCCESS);
  // The first task is stuck until released, yet every launch returns.
  for (int i = 0; i < 50; ++i) ASSERT_EQ(LaunchOnStream(stream, "after", [&] { ran.fetch_add(1); }), ACL_SUCCESS);
  EXPECT_EQ(ran.load(), 0);
  release.count_down();
  ASSERT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
  EXPECT_EQ(ran.load(), 51);
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

TEST_P(AclStreams, OneThreadDrivesSixteenDevicesConcurrently) {
  constexpr int kDevices = 16;
  ASSERT_GE(moe_ep::cann::DeviceCount(), kDevices);
  std::vector<aclrtStream> streams(kDevices);
  std::vector<int32_t> seen_device(kDevices, -1);
  std::latch all_running(kDevices);  // only passes if the 16 streams run at the same time
  for (int device = 0; device < kDevices; ++device) {
    ASSERT_EQ(aclrtSetDevice(device), ACL_SUCCESS);
    ASSERT_EQ(NewStream(&streams[device]), ACL_SUCCESS);
    int32_t launched_on = -1;
    ASSERT_EQ(LaunchOnStream(
                  streams[device], "meet",
                  [&, device] {
                    seen_device[device] = CurrentDevice();
                    all_running.arrive_and_wait();
                  },
                  &launched_on),
              ACL_SUCCESS);
    EXPECT_EQ(launched_on, device);
  }
  for (int device = 0; device < kDevices; ++device) {
    EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(streams[device], 20000), ACL_SUCCESS) << RecentMessage();
    EXPECT_EQ(seen_device[device], device);  // the worker runs on its stream's device
  }
  for (aclrtStream stream : streams) EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

TEST_P(AclStreams, SynchronizeReportsTheFirstFailureOnce) {
  ASSERT_EQ(aclrtSetDevice(3), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(NewStream(&stream), ACL_SUCCESS);
  std::atomic<bool> later_ran{false};
  ASSERT_EQ(LaunchOnStream(stream, "fine", [] {}), ACL_SUCCESS);
  ASSERT_EQ(LaunchOnStream(stream, "first_op",
                           [] { throw moe_ep::Error(moe_ep::ErrorCode::kInvalidConfig, "window too small"); }),
            ACL_SUCCESS);
  ASSERT_EQ(LaunchOnStream(stream, "second_op", [] { throw std::runtime_error("second failure"); }), ACL_SUCCESS);
  ASSERT_EQ(LaunchOnStream(stream, "later", [&] { later_ran = true; }), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeStream(stream), static_cast<aclError>(moe_ep::ErrorCode::kInvalidConfig));
  EXPECT_EQ(RecentMessage(), "first_op: window too small");  // the second failure is not reported
  EXPECT_TRUE(later_ran.load());                             // the stream goes on after a failure
  EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
  EXPECT_EQ(aclGetRecentErrMsg(), nullptr);
  ASSERT_EQ(LaunchOnStream(stream, "std_op", [] { throw std::runtime_error("plain exception"); }), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(stream, 10000), ACL_ERROR_RT_INTERNAL_ERROR);
  EXPECT_EQ(RecentMessage(), "std_op: plain exception");
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

// A device's synchronize reports a stream's failure, once, and leaves it to the stream's own synchronize (the thread
// that launched the task, maybe another, learns of it there), which then forgets it.
TEST_P(AclStreams, SynchronizeDeviceLeavesAFailureToTheStreamsOwnSynchronize) {
  ASSERT_EQ(aclrtSetDevice(4), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(NewStream(&stream), ACL_SUCCESS);
  ASSERT_EQ(LaunchOnStream(stream, "failing_op",
                           [] { throw moe_ep::Error(moe_ep::ErrorCode::kInvalidConfig, "window too small"); }),
            ACL_SUCCESS);
  OnFreshThread([] {
    ASSERT_EQ(aclrtSetDevice(4), ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeDevice(), static_cast<aclError>(moe_ep::ErrorCode::kInvalidConfig));
    EXPECT_EQ(RecentMessage(), "failing_op: window too small");
  });
  EXPECT_EQ(aclrtSynchronizeDevice(), ACL_SUCCESS);  // once
  EXPECT_EQ(aclrtSynchronizeStream(stream), static_cast<aclError>(moe_ep::ErrorCode::kInvalidConfig));
  EXPECT_EQ(RecentMessage(), "failing_op: window too small");
  EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
  ASSERT_EQ(LaunchOnStream(stream, "failing_again", [] { throw std::runtime_error("again"); }), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeDevice(), ACL_ERROR_RT_INTERNAL_ERROR);  // a new failure is reported anew
  EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_ERROR_RT_INTERNAL_ERROR);
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

// A failure after one that a device's synchronize reported replaces it: the next device synchronize reports the new
// one, with its message, and so does the stream's own (the old one was reported). Before, the stream kept the old
// one: the device's synchronizes returned ACL_SUCCESS from then on, and the stream's own reported the stale message.
TEST_P(AclStreams, SynchronizeDeviceReportsEachNewFailure) {
  ASSERT_EQ(aclrtSetDevice(4), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(NewStream(&stream), ACL_SUCCESS);
  ASSERT_EQ(LaunchOnStream(stream, "failing_op",
                           [] { throw moe_ep::Error(moe_ep::ErrorCode::kInvalidConfig, "window too small"); }),
            ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeDevice(), static_cast<aclError>(moe_ep::ErrorCode::kInvalidConfig));
  EXPECT_EQ(RecentMessage(), "failing_op: window too small");
  ASSERT_EQ(LaunchOnStream(stream, "failing_again", [] { throw std::runtime_error("again"); }), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeDevice(), ACL_ERROR_RT_INTERNAL_ERROR);
  EXPECT_EQ(RecentMessage(), "failing_again: again");
  EXPECT_EQ(aclrtSynchronizeDevice(), ACL_SUCCESS);  // each once
  ASSERT_EQ(LaunchOnStream(stream, "failing_third", [] { throw moe_ep::Error(moe_ep::ErrorCode::kTimeout, "rank 3"); }),
            ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeDevice(), static_cast<aclError>(moe_ep::ErrorCode::kTimeout));
  EXPECT_EQ(RecentMessage(), "failing_third: rank 3");
  EXPECT_EQ(aclrtSynchronizeStream(stream), static_cast<aclError>(moe_ep::ErrorCode::kTimeout));
  EXPECT_EQ(RecentMessage(), "failing_third: rank 3");
  EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeDevice(), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

// A failure a device's synchronize reported stays for the stream's own synchronize that waits for its task, even when
// a task launched after that synchronize began fails before it wakes (the worker runs it straight after the held task
// the synchronize waits for). Repeated: whether the later failure is recorded first is up to the scheduler.
TEST_P(AclStreams, AStreamSynchronizeReportsAReportedFailureALaterOneDidNotHide) {
  ASSERT_EQ(aclrtSetDevice(4), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(NewStream(&stream), ACL_SUCCESS);
  for (int round = 0; round < 20 && !HasFailure(); ++round) {
    ASSERT_EQ(LaunchOnStream(stream, "failing_first", [] { throw moe_ep::Error(moe_ep::ErrorCode::kTimeout, "one"); }),
              ACL_SUCCESS);
    ASSERT_EQ(aclrtSynchronizeDevice(), static_cast<aclError>(moe_ep::ErrorCode::kTimeout));
    std::latch release(1);
    ASSERT_EQ(LaunchOnStream(stream, "held", [&] { release.wait(); }), ACL_SUCCESS);
    // Bounded: it only waits (an unbounded one would run the held task itself, and return before the next starts).
    auto synchronized =
        std::async(std::launch::async, [&] { return aclrtSynchronizeStreamWithTimeout(stream, 10000); });
    std::this_thread::sleep_for(milliseconds(20));  // the synchronize has begun, most likely
    EXPECT_EQ(LaunchOnStream(stream, "failing_later", [] { throw std::runtime_error("two"); }), ACL_SUCCESS);
    release.count_down();  // before anything may leave the round: the held task reads the latch
    const aclError first = synchronized.get();
    if (first == ACL_ERROR_RT_INTERNAL_ERROR) {
      // A busy machine began the synchronize after the later launch: it waited for both, and reports the last.
      EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS) << "round " << round;
      continue;
    }
    EXPECT_EQ(first, static_cast<aclError>(moe_ep::ErrorCode::kTimeout)) << "round " << round;
    // The later failure is the next synchronize's, once.
    EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_ERROR_RT_INTERNAL_ERROR) << "round " << round;
    EXPECT_EQ(RecentMessage(), "failing_later: two");
    EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS) << "round " << round;
  }
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

TEST_P(AclStreams, BoundedSynchronizeTimesOutWhileATaskIsBlocked) {
  ASSERT_EQ(aclrtSetDevice(4), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(NewStream(&stream), ACL_SUCCESS);
  std::latch release(1);
  std::atomic<bool> finished{false};
  ASSERT_EQ(LaunchOnStream(stream, "stuck_op",
                           [&] {
                             release.wait();
                             finished = true;
                           }),
            ACL_SUCCESS);
  const auto start = steady_clock::now();
  EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(stream, 100), ACL_ERROR_RT_STREAM_SYNC_TIMEOUT);
  const auto waited = steady_clock::now() - start;
  EXPECT_GE(waited, milliseconds(100));
  EXPECT_LT(waited, milliseconds(2000));
  const std::string message = RecentMessage();
  EXPECT_NE(message.find("100 ms"), std::string::npos) << message;
  EXPECT_NE(message.find("'stuck_op'"), std::string::npos) << message;
  char handle[32];
  std::snprintf(handle, sizeof(handle), "%p", stream);
  EXPECT_NE(message.find(handle), std::string::npos) << message;
  EXPECT_FALSE(finished.load());  // the task goes on
  release.count_down();
  EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(stream, -1), ACL_SUCCESS);
  EXPECT_TRUE(finished.load());
  EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(stream, 0), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(stream, -2), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

TEST_P(AclStreams, DestroyWaitsForTasksAndDoubleDestroyFails) {
  ASSERT_EQ(aclrtSetDevice(5), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(NewStream(&stream), ACL_SUCCESS);
  std::atomic<int> finished{0};
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(LaunchOnStream(stream, "sleepy",
                             [&] {
                               std::this_thread::sleep_for(milliseconds(10));
                               finished.fetch_add(1);
                             }),
              ACL_SUCCESS);
  }
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
  EXPECT_EQ(finished.load(), 5);
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_ERROR_RT_PARAM_INVALID);
  EXPECT_NE(RecentMessage().find("not a live stream"), std::string::npos);
  EXPECT_EQ(LaunchOnStream(stream, "late", [] {}), ACL_ERROR_RT_PARAM_INVALID);
  EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_ERROR_RT_PARAM_INVALID);
  EXPECT_EQ(aclrtDestroyStream(reinterpret_cast<aclrtStream>(0x1234)), ACL_ERROR_RT_PARAM_INVALID);
  aclrtContext context = nullptr;
  ASSERT_EQ(aclrtCreateContext(&context, 5), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyStream(context), ACL_ERROR_RT_PARAM_INVALID);  // a context is not a stream
  EXPECT_EQ(aclrtDestroyStream(nullptr), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtCreateStream(nullptr), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtDestroyContext(context), ACL_SUCCESS);
}

// A destroy that waits for a task a synchronizing thread runs returns once the task ends: the worker it
// joins wakes when the stand-in finishes (a FAST_SYNC worker even after it went to sleep), where it had
// waited for a notice that nothing queued would send.
TEST_P(AclStreams, DestroyWhileASynchronizerRunsATaskReturns) {
  ASSERT_EQ(aclrtSetDevice(8), ACL_SUCCESS);
  bool stood_in = false;
  for (int attempt = 0; attempt < 200 && !stood_in; ++attempt) {
    aclrtStream stream = nullptr;
    ASSERT_EQ(NewStream(&stream), ACL_SUCCESS);
    std::latch release(1);
    std::atomic<bool> started{false}, on_synchronizer{false};
    std::thread synchronizer([&] {
      const std::thread::id self = std::this_thread::get_id();
      EXPECT_EQ(LaunchOnStream(stream, "held",
                               [&, self] {
                                 on_synchronizer = std::this_thread::get_id() == self;
                                 started = true;
                                 release.wait();
                               }),
                ACL_SUCCESS);
      const aclError synchronized = aclrtSynchronizeStream(stream);
      if (on_synchronizer) {
        EXPECT_EQ(synchronized, ACL_SUCCESS);
      } else {  // the worker runs the task: the destroy below may come first, and the stream is gone then
        EXPECT_TRUE(synchronized == ACL_SUCCESS || synchronized == ACL_ERROR_RT_PARAM_INVALID) << synchronized;
      }
    });
    while (!started.load()) std::this_thread::yield();
    stood_in = on_synchronizer.load();
    // Shared, so that a destroyer left stuck below does not outlive what it writes.
    auto destroyed = std::make_shared<std::promise<aclError>>();
    std::future<aclError> result = destroyed->get_future();
    std::thread destroyer([destroyed, stream] { destroyed->set_value(aclrtDestroyStream(stream)); });
    // Long enough for the destroy to wait in its join, and for a FAST_SYNC worker to go to sleep.
    std::this_thread::sleep_for(stood_in && GetParam() == StreamKind::kFastSync ? 2 * runtime::Stream::kFastSyncIdle
                                                                                : milliseconds(1));
    release.count_down();
    synchronizer.join();
    if (result.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      destroyer.detach();  // stuck in the join: fail here rather than hang the suite
      FAIL() << "aclrtDestroyStream did not return after the task its synchronizer ran had ended";
    }
    destroyer.join();
    EXPECT_EQ(result.get(), ACL_SUCCESS);
  }
  EXPECT_TRUE(stood_in) << "no synchronizer ran the task itself in 200 attempts";
}

TEST_P(AclStreams, ATaskCannotWaitForItsOwnStream) {
  ASSERT_EQ(aclrtSetDevice(6), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(NewStream(&stream), ACL_SUCCESS);
  aclError own_sync = ACL_SUCCESS;
  aclError own_destroy = ACL_SUCCESS;
  aclError device_sync = ACL_SUCCESS;
  aclError finalize = ACL_SUCCESS;
  ASSERT_EQ(LaunchOnStream(stream, "selfish",
                           [&, stream] {
                             own_sync = aclrtSynchronizeStream(stream);
                             own_destroy = aclrtDestroyStream(stream);
                             device_sync = aclrtSynchronizeDevice();
                             finalize = aclFinalize();
                           }),
            ACL_SUCCESS);
  ASSERT_EQ(aclrtSynchronizeStreamWithTimeout(stream, 10000), ACL_SUCCESS);
  EXPECT_EQ(own_sync, ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(own_destroy, ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(device_sync, ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(finalize, ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

// A synchronize right after a launch usually finds the task not yet started and runs it itself: the task
// must see what the worker would (the stream's device, not the caller's; no waiting for its own stream),
// and the caller must get its own device back, without the task's error message.
TEST_P(AclStreams, ASynchronizerThatRunsTasksRunsThemAsTheWorker) {
  ASSERT_EQ(aclrtSetDevice(3), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(NewStream(&stream), ACL_SUCCESS);
  ASSERT_EQ(aclrtSetDevice(5), ACL_SUCCESS);
  const std::thread::id caller = std::this_thread::get_id();
  int on_caller = 0;
  for (int round = 0; round < 1000; ++round) {
    int32_t device = -1;
    aclError own_sync = ACL_SUCCESS;
    bool ran_on_caller = false;
    ASSERT_EQ(LaunchOnStream(stream, "where",
                             [&, stream] {
                               aclrtGetDevice(&device);
                               own_sync = aclrtSynchronizeStream(stream);
                               ran_on_caller = std::this_thread::get_id() == caller;
                             }),
              ACL_SUCCESS);
    ASSERT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
    ASSERT_EQ(device, 3) << "round " << round
                         << (ran_on_caller ? " (run by the synchronizer)" : " (run by the worker)");
    ASSERT_EQ(own_sync, ACL_ERROR_INVALID_PARAM) << "round " << round;
    int32_t mine = -1;
    ASSERT_EQ(aclrtGetDevice(&mine), ACL_SUCCESS);
    ASSERT_EQ(mine, 5) << "round " << round << ": the caller's device changed";
    ASSERT_EQ(aclGetRecentErrMsg(), nullptr) << "round " << round << ": the task's own message reached the caller";
    on_caller += ran_on_caller;
  }
  EXPECT_GT(on_caller, 0) << "no synchronize ran a task itself in 1000 launch + synchronize rounds";
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

// Threads that launch onto one stream and synchronize it at once race each other and the worker to run
// the tasks: still one task at a time, and each thread's tasks in its launch order.
TEST_P(AclStreams, RacingSynchronizersRunOneTaskAtATimeInOrder) {
  ASSERT_EQ(aclrtSetDevice(7), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(NewStream(&stream), ACL_SUCCESS);
  constexpr int kThreads = 4, kTasks = 300;
  std::atomic<int> running{0}, most_at_once{0};
  std::vector<std::vector<int>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kTasks; ++i) {
        EXPECT_EQ(LaunchOnStream(stream, "append",
                                 [&, t, i] {
                                   const int now = running.fetch_add(1) + 1;
                                   int most = most_at_once.load();
                                   while (now > most && !most_at_once.compare_exchange_weak(most, now)) {
                                   }
                                   seen[t].push_back(i);
                                   running.fetch_sub(1);
                                 }),
                  ACL_SUCCESS);
        if (i % 3 != 2) {
          EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
  EXPECT_EQ(most_at_once.load(), 1);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kTasks));
    for (int i = 0; i < kTasks; ++i) ASSERT_EQ(seen[t][i], i);
  }
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

TEST_P(AclStreams, NullStreamIsTheCurrentDevicesDefaultStream) {
  ASSERT_EQ(aclrtSetDevice(9), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeStream(nullptr), ACL_SUCCESS);  // nothing launched yet
  std::vector<int> order;
  int32_t device = -1;
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(LaunchOnStream(
                  nullptr, "append", [&order, i] { order.push_back(i); }, &device),
              ACL_SUCCESS);
  }
  EXPECT_EQ(device, 9);
  ASSERT_EQ(aclrtSynchronizeStream(nullptr), ACL_SUCCESS);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  // Another thread on the same device shares that default stream.
  OnFreshThread([&] {
    ASSERT_EQ(aclrtSetDevice(9), ACL_SUCCESS);
    ASSERT_EQ(LaunchOnStream(nullptr, "append", [&order] { order.push_back(10); }), ACL_SUCCESS);
  });
  ASSERT_EQ(aclrtSynchronizeStream(nullptr), ACL_SUCCESS);
  EXPECT_EQ(order.back(), 10);
  EXPECT_EQ(LaunchOnStream(nullptr, "empty", StreamTask()), ACL_ERROR_INVALID_PARAM);
}

TEST_P(AclStreams, SynchronizeDeviceWaitsForEveryStreamOfTheDevice) {
  ASSERT_EQ(aclrtSetDevice(10), ACL_SUCCESS);
  aclrtStream first = nullptr;
  aclrtStream second = nullptr;
  ASSERT_EQ(NewStream(&first), ACL_SUCCESS);
  ASSERT_EQ(NewStream(&second), ACL_SUCCESS);
  std::atomic<int> finished{0};
  auto sleepy = [&] {
    std::this_thread::sleep_for(milliseconds(20));
    finished.fetch_add(1);
  };
  ASSERT_EQ(LaunchOnStream(first, "sleepy", sleepy), ACL_SUCCESS);
  ASSERT_EQ(LaunchOnStream(second, "sleepy", sleepy), ACL_SUCCESS);
  ASSERT_EQ(LaunchOnStream(nullptr, "sleepy", sleepy), ACL_SUCCESS);
  ASSERT_EQ(LaunchOnStream(second, "broken", [] { throw moe_ep::Error(moe_ep::ErrorCode::kTimeout, "rank 3"); }),
            ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeDevice(), static_cast<aclError>(moe_ep::ErrorCode::kTimeout));
  EXPECT_EQ(RecentMessage(), "broken: rank 3");
  EXPECT_EQ(finished.load(), 3);
  // Reported once by the device's synchronizes; it stays for its stream's own.
  EXPECT_EQ(aclrtSynchronizeDevice(), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeStream(second), static_cast<aclError>(moe_ep::ErrorCode::kTimeout));
  EXPECT_EQ(aclrtSynchronizeStream(second), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyStream(first), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyStream(second), ACL_SUCCESS);
}

// The pattern of the CANN seed samples: the main thread makes a context and streams per device, worker
// threads adopt the context, run and destroy everything, then the main thread destroys it all again.
TEST_P(AclStreams, SeedSampleLifecycleWithDoubleDestroys) {
  constexpr int kDevices = 4;
  ASSERT_EQ(aclInit(nullptr), ACL_SUCCESS);
  std::vector<aclrtContext> contexts(kDevices);
  std::vector<aclrtStream> streams(kDevices);
  for (int device = 0; device < kDevices; ++device) {
    ASSERT_EQ(aclrtSetDevice(device), ACL_SUCCESS);
    ASSERT_EQ(aclrtCreateContext(&contexts[device], device), ACL_SUCCESS);
    ASSERT_EQ(NewStream(&streams[device]), ACL_SUCCESS);
  }
  std::vector<std::thread> threads;
  std::vector<int32_t> ran_on(kDevices, -1);
  for (int device = 0; device < kDevices; ++device) {
    threads.emplace_back([&, device] {
      ASSERT_EQ(aclrtSetCurrentContext(contexts[device]), ACL_SUCCESS);
      int32_t* slot = &ran_on[device];
      ASSERT_EQ(LaunchOnStream(streams[device], "work", [slot] { *slot = CurrentDevice(); }), ACL_SUCCESS);
      EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(streams[device], 10000), ACL_SUCCESS);
      EXPECT_EQ(aclrtDestroyStream(streams[device]), ACL_SUCCESS);
      EXPECT_EQ(aclrtDestroyContext(contexts[device]), ACL_SUCCESS);
      EXPECT_EQ(aclrtResetDevice(device), ACL_SUCCESS);
    });
  }
  for (auto& thread : threads) thread.join();
  for (int device = 0; device < kDevices; ++device) {
    EXPECT_EQ(ran_on[device], device);
    EXPECT_EQ(aclrtDestroyStream(streams[device]), ACL_ERROR_RT_PARAM_INVALID);
    EXPECT_EQ(aclrtDestroyContext(contexts[device]), ACL_ERROR_RT_INVALID_HANDLE);
    EXPECT_EQ(aclrtResetDevice(device), ACL_SUCCESS);
  }
  EXPECT_EQ(aclFinalize(), ACL_SUCCESS);
}

// ---- ACL_STREAM_FAST_SYNC: what only it does ----

using AclFastSyncStreams = RuntimeTest;

// Waits up to 10 s for `flag`; a task left to a worker that never looks would fail here, not hang.
bool Eventually(const std::atomic<bool>& flag) {
  const auto deadline = steady_clock::now() + std::chrono::seconds(10);
  while (!flag.load() && steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(1));
  return flag.load();
}

// A launch does not wake the worker while the stream is in use, yet a task nobody synchronizes runs: the
// worker looks at the queue every millisecond; once the stream has been idle long enough for the worker
// to sleep, a launch wakes it.
TEST_F(AclFastSyncStreams, ATaskNobodySynchronizesStillRuns) {
  ASSERT_EQ(aclrtSetDevice(1), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(aclrtCreateStreamWithConfig(&stream, 0, ACL_STREAM_FAST_SYNC), ACL_SUCCESS);
  for (int round = 0; round < 3; ++round) {
    std::atomic<bool> ran_in_use{false}, ran_after_idle{false};
    ASSERT_EQ(LaunchOnStream(stream, "warm", [] {}), ACL_SUCCESS);
    ASSERT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);  // in use
    ASSERT_EQ(LaunchOnStream(stream, "in_use", [&] { ran_in_use = true; }), ACL_SUCCESS);
    EXPECT_TRUE(Eventually(ran_in_use)) << "round " << round << ": not run while the stream was in use";
    ASSERT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);           // runs it here if nobody did
    std::this_thread::sleep_for(3 * runtime::Stream::kFastSyncIdle);  // the worker sleeps now
    ASSERT_EQ(LaunchOnStream(stream, "after_idle", [&] { ran_after_idle = true; }), ACL_SUCCESS);
    EXPECT_TRUE(Eventually(ran_after_idle)) << "round " << round << ": not run after the stream was idle";
    ASSERT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
  }
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

// One thread drives two devices (as a program with one thread per host does): the task it synchronizes,
// and so runs itself, waits for a task of another stream that nobody synchronizes until later.
TEST_F(AclFastSyncStreams, ASynchronizedTaskCanWaitForAnotherStreamsTask) {
  std::vector<aclrtStream> streams(2);
  for (int device = 0; device < 2; ++device) {
    ASSERT_EQ(aclrtSetDevice(device), ACL_SUCCESS);
    ASSERT_EQ(aclrtCreateStreamWithConfig(&streams[device], 0, ACL_STREAM_FAST_SYNC), ACL_SUCCESS);
  }
  for (int round = 0; round < 20; ++round) {
    std::atomic<bool> peer_ran{false}, saw_peer{false};
    ASSERT_EQ(LaunchOnStream(streams[0], "waits", [&] { saw_peer = Eventually(peer_ran); }), ACL_SUCCESS);
    ASSERT_EQ(LaunchOnStream(streams[1], "peer", [&] { peer_ran = true; }), ACL_SUCCESS);
    ASSERT_EQ(aclrtSynchronizeStream(streams[0]), ACL_SUCCESS);
    EXPECT_TRUE(saw_peer.load()) << "round " << round;
    ASSERT_EQ(aclrtSynchronizeStream(streams[1]), ACL_SUCCESS);
  }
  for (aclrtStream stream : streams) EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

// What the flag is for: a launch does not wake the worker, so a task launched while the stream is in use
// waits for its synchronize (or the worker's next look, once a millisecond): within 300 us of the launch
// it has started in few rounds (about 30% when the worker's looks fall at random), where a worker woken
// by each launch would have started it in nearly all.
TEST_F(AclFastSyncStreams, ALaunchDoesNotWakeTheWorker) {
#ifdef MOE_EP_SANITIZED
  GTEST_SKIP() << "timing: an instrumented test thread is preempted past the worker's looks too often";
#endif
  ASSERT_EQ(aclrtSetDevice(2), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(aclrtCreateStreamWithConfig(&stream, 0, ACL_STREAM_FAST_SYNC | ACL_STREAM_FAST_LAUNCH), ACL_SUCCESS);
  constexpr int kRounds = 60;
  int started_early = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::atomic<bool> started{false};
    ASSERT_EQ(LaunchOnStream(stream, "idle", [&] { started = true; }), ACL_SUCCESS);
    const auto until = steady_clock::now() + std::chrono::microseconds(300);
    while (!started.load() && steady_clock::now() < until) {
    }
    started_early += started.load();
    ASSERT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
  }
  EXPECT_LE(started_early, kRounds * 2 / 3) << "of " << kRounds << " tasks started within 300 us of the launch";
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

TEST_F(AclFastSyncStreams, CreateChecksItsArgumentsAndIgnoresOtherFlags) {
  aclrtStream stream = nullptr;
  OnFreshThread([&] {
    EXPECT_EQ(aclrtCreateStreamWithConfig(&stream, 0, ACL_STREAM_FAST_SYNC), ACL_ERROR_RT_CONTEXT_NULL);
    EXPECT_NE(RecentMessage().find("aclrtCreateStreamWithConfig: this thread has no current device"),
              std::string::npos);
  });
  ASSERT_EQ(aclrtSetDevice(3), ACL_SUCCESS);
  EXPECT_EQ(aclrtCreateStreamWithConfig(nullptr, 0, ACL_STREAM_FAST_SYNC), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(RecentMessage().find("parameter 'stream' is nullptr"), std::string::npos);
  // Priority is reserved on Atlas A2 / A3, and other flag bits give aclrtCreateStream's stream, as in CANN.
  for (const uint32_t flag : {0u, ACL_STREAM_FAST_LAUNCH, 0x100u, ~0u}) {
    ASSERT_EQ(aclrtCreateStreamWithConfig(&stream, 7, flag), ACL_SUCCESS) << "flag " << flag;
    std::vector<int> order;
    for (int i = 0; i < 5; ++i) {
      ASSERT_EQ(LaunchOnStream(stream, "append", [&order, i] { order.push_back(i); }), ACL_SUCCESS);
    }
    EXPECT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4})) << "flag " << flag;
    EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
  }
}

// ---- memory ----

TEST_F(AclMemory, MallocChecksItsArgumentsAndAligns) {
  void* ptr = nullptr;
  EXPECT_EQ(aclrtMalloc(&ptr, 0, ACL_MEM_MALLOC_HUGE_FIRST), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(RecentMessage().find("size 0"), std::string::npos);
  // Values the C++ enum can hold but names no policy (C callers can pass any int; see RawEnumValue).
  EXPECT_EQ(aclrtMalloc(&ptr, 64, static_cast<aclrtMemMallocPolicy>(8)), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(RecentMessage().find("policy 8"), std::string::npos);
  EXPECT_EQ(aclrtMalloc(&ptr, 64, static_cast<aclrtMemMallocPolicy>(0x200)), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtMalloc(&ptr, 64, static_cast<aclrtMemMallocPolicy>(-1)), ACL_ERROR_INVALID_PARAM);
  // A policy OR-ed with the flags CANN documents for it, and the 1G-page policies: accepted.
  for (const int policy :
       {static_cast<int>(ACL_MEM_MALLOC_HUGE1G_ONLY), static_cast<int>(ACL_MEM_MALLOC_HUGE1G_ONLY_P2P),
        ACL_MEM_MALLOC_HUGE_FIRST | ACL_MEM_TYPE_HIGH_BAND_WIDTH,
        ACL_MEM_MALLOC_NORMAL_ONLY | ACL_MEM_TYPE_LOW_BAND_WIDTH | ACL_MEM_ACCESS_USER_SPACE_READONLY,
        static_cast<int>(ACL_MEM_TYPE_LOW_BAND_WIDTH)}) {
    ASSERT_EQ(aclrtMalloc(&ptr, 64, static_cast<aclrtMemMallocPolicy>(policy)), ACL_SUCCESS) << policy;
    EXPECT_EQ(aclrtFree(ptr), ACL_SUCCESS);
    ptr = nullptr;
  }
  EXPECT_EQ(aclrtMalloc(nullptr, 64, ACL_MEM_MALLOC_HUGE_FIRST), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(RecentMessage().find("aclrtMalloc: parameter 'devPtr' is nullptr"), std::string::npos);
  EXPECT_EQ(aclrtMallocHost(nullptr, 64), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(RecentMessage().find("aclrtMallocHost: parameter 'hostPtr' is nullptr"), std::string::npos);
  EXPECT_EQ(aclrtMalloc(&ptr, SIZE_MAX, ACL_MEM_MALLOC_HUGE_FIRST), ACL_ERROR_RT_MEMORY_ALLOCATION);
  EXPECT_EQ(ptr, nullptr);
  for (size_t size : {size_t{1}, size_t{100}, size_t{3} << 20}) {
    ASSERT_EQ(aclrtMalloc(&ptr, size, ACL_MEM_MALLOC_NORMAL_ONLY), ACL_SUCCESS);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(ptr) % 64, 0u);
    std::memset(ptr, 0x5a, size);  // the whole size is usable
    EXPECT_EQ(aclrtFree(ptr), ACL_SUCCESS);
  }
  EXPECT_EQ(aclrtMallocHost(&ptr, 0), ACL_ERROR_INVALID_PARAM);
  ASSERT_EQ(aclrtMallocHost(&ptr, 256), ACL_SUCCESS);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ptr) % 64, 0u);
  EXPECT_EQ(aclrtFreeHost(ptr), ACL_SUCCESS);
}

TEST_F(AclMemory, FreeOfUnknownFreedOrWrongKindPointersFails) {
  void* device_ptr = nullptr;
  void* host_ptr = nullptr;
  ASSERT_EQ(aclrtMalloc(&device_ptr, 128, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
  ASSERT_EQ(aclrtMallocHost(&host_ptr, 128), ACL_SUCCESS);
  EXPECT_EQ(aclrtFree(host_ptr), ACL_ERROR_RT_MEMORY_FREE);
  EXPECT_NE(RecentMessage().find("aclrtFreeHost"), std::string::npos);
  EXPECT_EQ(aclrtFreeHost(device_ptr), ACL_ERROR_RT_MEMORY_FREE);
  EXPECT_EQ(aclrtFree(static_cast<char*>(device_ptr) + 8), ACL_ERROR_RT_MEMORY_FREE);  // not the start
  EXPECT_EQ(aclrtFree(device_ptr), ACL_SUCCESS);
  EXPECT_EQ(aclrtFree(device_ptr), ACL_ERROR_RT_MEMORY_FREE);
  EXPECT_NE(RecentMessage().find("already freed"), std::string::npos);
  EXPECT_EQ(aclrtFreeHost(host_ptr), ACL_SUCCESS);
  EXPECT_EQ(aclrtFreeHost(host_ptr), ACL_ERROR_RT_MEMORY_FREE);
  int local = 0;
  EXPECT_EQ(aclrtFree(&local), ACL_ERROR_RT_MEMORY_FREE);
  EXPECT_EQ(aclrtFree(nullptr), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(RecentMessage().find("aclrtFree: parameter 'devPtr' is nullptr"), std::string::npos);
  EXPECT_EQ(aclrtFreeHost(nullptr), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(RecentMessage().find("aclrtFreeHost: parameter 'hostPtr' is nullptr"), std::string::npos);
}

TEST_F(AclMemory, MemcpyAndMemsetCheckBounds) {
  std::vector<uint8_t> src(64, 7);
  std::vector<uint8_t> dst(64, 0);
  EXPECT_EQ(aclrtMemcpy(nullptr, 64, src.data(), 64, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtMemcpy(dst.data(), 64, nullptr, 64, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtMemcpy(dst.data(), 32, src.data(), 64, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_INVALID_PARAM);
  const std::string message = RecentMessage();
  EXPECT_NE(message.find("count 64"), std::string::npos) << message;
  EXPECT_NE(message.find("destMax 32"), std::string::npos) << message;
  EXPECT_EQ(aclrtMemcpy(dst.data(), 64, src.data(), 64, static_cast<aclrtMemcpyKind>(8)), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(RecentMessage().find("kind 8"), std::string::npos);
  EXPECT_EQ(dst, std::vector<uint8_t>(64, 0));  // no failed call touched dst
  for (const aclrtMemcpyKind kind :
       {ACL_MEMCPY_HOST_TO_BUF_TO_DEVICE, ACL_MEMCPY_INNER_DEVICE_TO_DEVICE, ACL_MEMCPY_INTER_DEVICE_TO_DEVICE}) {
    std::vector<uint8_t> copy(64, 0);
    EXPECT_EQ(aclrtMemcpy(copy.data(), 64, src.data(), 64, kind), ACL_SUCCESS) << kind;
    EXPECT_EQ(copy, src) << kind;
  }
  EXPECT_EQ(aclrtMemcpy(dst.data(), 64, src.data(), 48, ACL_MEMCPY_DEVICE_TO_DEVICE), ACL_SUCCESS);
  EXPECT_EQ(dst[47], 7);
  EXPECT_EQ(dst[48], 0);
  EXPECT_EQ(aclrtMemset(dst.data(), 16, 0x1ff, 32), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(RecentMessage().find("maxCount 16"), std::string::npos);
  EXPECT_EQ(aclrtMemset(nullptr, 16, 0, 16), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtMemset(dst.data(), 64, 0x1ff, 8), ACL_SUCCESS);  // the low byte, like memset
  EXPECT_EQ(dst[0], 0xff);
  EXPECT_EQ(dst[7], 0xff);
  EXPECT_EQ(dst[8], 7);
}

TEST_F(AclMemory, AsyncCopiesRunInStreamOrder) {
  ASSERT_EQ(aclrtSetDevice(11), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS);
  constexpr size_t kBytes = 4096;
  void* src = nullptr;
  void* dst = nullptr;
  ASSERT_EQ(aclrtMalloc(&src, kBytes, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
  ASSERT_EQ(aclrtMalloc(&dst, kBytes, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
  ASSERT_EQ(aclrtMemset(src, kBytes, 0, kBytes), ACL_SUCCESS);
  ASSERT_EQ(aclrtMemset(dst, kBytes, 0, kBytes), ACL_SUCCESS);
  std::latch release(1);
  ASSERT_EQ(LaunchOnStream(stream, "produce",
                           [&] {
                             release.wait();
                             std::memset(src, 0xab, kBytes);
                           }),
            ACL_SUCCESS);
  ASSERT_EQ(aclrtMemcpyAsync(dst, kBytes, src, kBytes, ACL_MEMCPY_DEVICE_TO_DEVICE, stream), ACL_SUCCESS);
  ASSERT_EQ(aclrtMemsetAsync(src, kBytes, 0x11, kBytes / 2, stream), ACL_SUCCESS);
  bool copy_seen_by_next_task = false;
  ASSERT_EQ(LaunchOnStream(stream, "consume",
                           [&] { copy_seen_by_next_task = static_cast<unsigned char*>(dst)[kBytes - 1] == 0xab; }),
            ACL_SUCCESS);
  // Arguments are checked at launch: nothing is queued for these.
  EXPECT_EQ(aclrtMemcpyAsync(dst, 8, src, 16, ACL_MEMCPY_DEVICE_TO_DEVICE, stream), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtMemsetAsync(nullptr, 8, 0, 8, stream), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtMemcpyAsync(dst, 8, src, 8, ACL_MEMCPY_DEVICE_TO_DEVICE, reinterpret_cast<aclrtStream>(0x99)),
            ACL_ERROR_RT_PARAM_INVALID);
  EXPECT_EQ(static_cast<unsigned char*>(dst)[0], 0);  // nothing ran yet: the producer is blocked
  release.count_down();
  ASSERT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
  const auto* out = static_cast<const unsigned char*>(dst);
  const auto* in = static_cast<const unsigned char*>(src);
  EXPECT_EQ(out[0], 0xab);
  EXPECT_EQ(out[kBytes - 1], 0xab);
  EXPECT_TRUE(copy_seen_by_next_task);
  EXPECT_EQ(in[0], 0x11);
  EXPECT_EQ(in[kBytes - 1], 0xab);
  EXPECT_EQ(aclrtFree(src), ACL_SUCCESS);
  EXPECT_EQ(aclrtFree(dst), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);
}

// As CANN documents, an async copy to or from host memory that aclrtMallocHost did not give returns only once it has
// run (in stream order, after the tasks before it): the caller may overwrite its source or read its destination right
// after the call. Between aclrtMalloc and aclrtMallocHost memory the call still returns at once. A task cannot make
// such a copy on its own stream: it would wait for itself.
TEST_F(AclMemory, AsyncCopiesOfOrdinaryHostMemoryReturnOnceTheyRan) {
  ASSERT_EQ(aclrtSetDevice(11), ACL_SUCCESS);
  aclrtStream stream = nullptr;
  ASSERT_EQ(aclrtCreateStream(&stream), ACL_SUCCESS);
  constexpr size_t kBytes = 256;
  void* device = nullptr;
  void* pinned = nullptr;
  ASSERT_EQ(aclrtMalloc(&device, kBytes, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
  // Larger than the vectors: an allocator that packs blocks of one size without headers (ThreadSanitizer's) could
  // put a vector right at the end of a pinned block of their size, which the registry takes for that block's end.
  ASSERT_EQ(aclrtMallocHost(&pinned, 16 * kBytes), ACL_SUCCESS);
  ASSERT_EQ(aclrtMemset(device, kBytes, 0, kBytes), ACL_SUCCESS);
  const auto* on_device = static_cast<const uint8_t*>(device);
  std::vector<uint8_t> host(kBytes, 0x5A);
  std::vector<uint8_t> back(kBytes, 0x00);
  {
    // The stream is held until another thread lets it go: a copy that returned before that had not run.
    std::latch release(1);
    std::atomic<bool> released{false};
    ASSERT_EQ(LaunchOnStream(stream, "held", [&] { release.wait(); }), ACL_SUCCESS);
    std::thread releaser([&] {
      std::this_thread::sleep_for(milliseconds(50));
      released = true;
      release.count_down();
    });
    EXPECT_EQ(aclrtMemcpyAsync(device, kBytes, host.data(), kBytes, ACL_MEMCPY_HOST_TO_DEVICE, stream), ACL_SUCCESS)
        << RecentMessage();
    EXPECT_TRUE(released.load()) << "the call returned before its copy could run";
    std::fill(host.begin(), host.end(), 0x00);  // the caller reuses its buffer at once
    EXPECT_EQ(aclrtMemcpyAsync(back.data(), kBytes, device, kBytes, ACL_MEMCPY_DEVICE_TO_HOST, stream), ACL_SUCCESS)
        << RecentMessage();
    EXPECT_EQ(back, std::vector<uint8_t>(kBytes, 0x5A)) << "read before the copy ran, or copied from the reused buffer";
    releaser.join();
    ASSERT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);  // within the latch's scope
  }
  {
    std::latch release(1);
    ASSERT_EQ(LaunchOnStream(stream, "held", [&] { release.wait(); }), ACL_SUCCESS);
    // Should the copy wait for the stream (it must not), this lets the stream go after 5 s: a failure, not a hang.
    std::atomic<bool> returned{false}, released{false};
    std::thread safety_net([&] {
      for (int ms = 0; ms < 5000 && !returned; ++ms) std::this_thread::sleep_for(milliseconds(1));
      if (!returned) {
        released = true;
        release.count_down();
      }
    });
    std::memset(pinned, 0x11, kBytes);
    EXPECT_EQ(aclrtMemcpyAsync(device, kBytes, pinned, kBytes, ACL_MEMCPY_HOST_TO_DEVICE, stream), ACL_SUCCESS);
    returned = true;
    EXPECT_FALSE(released.load()) << "a copy of aclrtMallocHost memory waited for the stream";
    EXPECT_EQ(on_device[0], 0x5A);  // returned at once: the stream is still held
    safety_net.join();
    if (!released) release.count_down();
    // Within the latch's scope: the held task may not have started yet (a synchronize runs it on this thread).
    ASSERT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
  }
  EXPECT_EQ(on_device[kBytes - 1], 0x11);
  aclError from_task = ACL_SUCCESS;
  std::string message;
  ASSERT_EQ(LaunchOnStream(stream, "copier",
                           [&] {
                             from_task = aclrtMemcpyAsync(back.data(), kBytes, device, kBytes,
                                                          ACL_MEMCPY_DEVICE_TO_HOST, stream);
                             message = RecentMessage();
                           }),
            ACL_SUCCESS);
  ASSERT_EQ(aclrtSynchronizeStream(stream), ACL_SUCCESS);
  EXPECT_EQ(from_task, ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(message.find("aclrtMemcpyAsync: a task of stream 0x"), std::string::npos) << message;
  EXPECT_NE(message.find("it would wait for itself"), std::string::npos) << message;
  EXPECT_EQ(aclrtDestroyStream(stream), ACL_SUCCESS);  // after every copy into `back`, whatever the outcome
  EXPECT_EQ(aclrtFreeHost(pinned), ACL_SUCCESS);
  EXPECT_EQ(aclrtFree(device), ACL_SUCCESS);
}

// ---- tensors ----

// aclCreateTensor that must fail: nullptr, and a message containing `reason`.
void ExpectRejected(aclTensor* tensor, const std::string& reason) {
  EXPECT_EQ(tensor, nullptr);
  if (tensor != nullptr) aclDestroyTensor(tensor);
  const std::string message = RecentMessage();
  EXPECT_NE(message.find(reason), std::string::npos) << "message: " << message;
  EXPECT_EQ(message.rfind("aclCreateTensor: ", 0), 0u) << message;
}

TEST_F(AclTensors, CreateRejectsEachBrokenRule) {
  float storage[24] = {};
  const int64_t dims[] = {4, 6};
  const int64_t strides[] = {6, 1};
  const int64_t storage_dims[] = {24};
  ExpectRejected(aclCreateTensor(nullptr, 2, ACL_FLOAT, strides, 0, ACL_FORMAT_ND, storage_dims, 1, storage),
                 "viewDims is nullptr");
  ExpectRejected(aclCreateTensor(dims, 2, ACL_FLOAT, nullptr, 0, ACL_FORMAT_ND, storage_dims, 1, storage),
                 "stride is nullptr");
  ExpectRejected(aclCreateTensor(dims, 2, ACL_FLOAT, strides, 0, ACL_FORMAT_ND, nullptr, 1, storage),
                 "storageDims is nullptr");
  const int64_t negative_dims[] = {4, -6};
  ExpectRejected(aclCreateTensor(negative_dims, 2, ACL_FLOAT, strides, 0, ACL_FORMAT_ND, storage_dims, 1, storage),
                 "negative dimension at index 1");
  const int64_t negative_strides[] = {-6, 1};
  ExpectRejected(aclCreateTensor(dims, 2, ACL_FLOAT, negative_strides, 0, ACL_FORMAT_ND, storage_dims, 1, storage),
                 "negative stride at index 0");
  ExpectRejected(aclCreateTensor(dims, 2, ACL_FLOAT, strides, -1, ACL_FORMAT_ND, storage_dims, 1, storage),
                 "offset -1 is negative");
  const int64_t negative_storage[] = {-24};
  ExpectRejected(aclCreateTensor(dims, 2, ACL_FLOAT, strides, 0, ACL_FORMAT_ND, negative_storage, 1, storage),
                 "storageDims (-24) has a negative dimension");
  ExpectRejected(aclCreateTensor(dims, 2, ACL_FLOAT, strides, 0, ACL_FORMAT_ND, storage_dims, 1, nullptr),
                 "tensorData is nullptr");
  // One element too far: offset 1 makes the last element index 24 of a 24-element storage.
  ExpectRejected(aclCreateTensor(dims, 2, ACL_FLOAT, strides, 1, ACL_FORMAT_ND, storage_dims, 1, storage),
                 "reaches element 24, past the storage (24) of 24 elements");
  const int64_t wide_strides[] = {7, 1};
  ExpectRejected(aclCreateTensor(dims, 2, ACL_FLOAT, wide_strides, 0, ACL_FORMAT_ND, storage_dims, 1, storage),
                 "past the storage");
  const int64_t huge_strides[] = {INT64_MAX / 2, 1};
  ExpectRejected(aclCreateTensor(dims, 2, ACL_FLOAT, huge_strides, 0, ACL_FORMAT_ND, storage_dims, 1, storage),
                 "overflows int64");
  // Elements that fit int64 but bytes that do not: the byte offset would wrap to below tensorData.
  const int64_t one[] = {1}, unit[] = {1}, vast_storage[] = {int64_t{1} << 62};
  ExpectRejected(
      aclCreateTensor(one, 1, ACL_INT32, unit, (int64_t{1} << 62) - 1, ACL_FORMAT_ND, vast_storage, 1, storage),
      "of 4-byte elements is more than 2^63 bytes");
  const int64_t none[] = {0};  // a view of no elements is not bounded by its storage, but its offset is
  ExpectRejected(aclCreateTensor(none, 1, ACL_INT64, unit, int64_t{1} << 61, ACL_FORMAT_ND, none, 1, storage),
                 "the offset 2305843009213693952 of 8-byte elements");
  // Each rejection is 161002 through the guard; the returned pointer is the C API's only signal.
  aclTensor* exact = aclCreateTensor(dims, 2, ACL_FLOAT, strides, 0, ACL_FORMAT_ND, storage_dims, 1, storage);
  ASSERT_NE(exact, nullptr) << RecentMessage();
  EXPECT_EQ(aclDestroyTensor(exact), ACLNN_SUCCESS);
}

TEST_F(AclTensors, ScalarEmptyAndAnyDtypeAreAccepted) {
  int64_t value = 5;
  aclTensor* scalar = aclCreateTensor(nullptr, 0, ACL_INT64, nullptr, 0, ACL_FORMAT_ND, nullptr, 0, &value);
  ASSERT_NE(scalar, nullptr) << RecentMessage();
  int64_t* dims = nullptr;
  uint64_t n = 99;
  ASSERT_EQ(aclGetViewShape(scalar, &dims, &n), ACLNN_SUCCESS);
  EXPECT_EQ(n, 0u);
  delete[] dims;
  TensorView view = ViewOf(*scalar);
  EXPECT_EQ(view.dim(), 0);
  EXPECT_EQ(*static_cast<int64_t*>(view.data), 5);
  EXPECT_EQ(aclDestroyTensor(scalar), ACLNN_SUCCESS);

  const int64_t empty_dims[] = {0, 7168};
  const int64_t empty_strides[] = {7168, 1};
  const int64_t empty_storage[] = {0};
  aclTensor* empty =
      aclCreateTensor(empty_dims, 2, ACL_BF16, empty_strides, 0, ACL_FORMAT_ND, empty_storage, 1, nullptr);
  ASSERT_NE(empty, nullptr) << RecentMessage();
  EXPECT_EQ(aclDestroyTensor(empty), ACLNN_SUCCESS);

  uint8_t bytes[4] = {};
  const int64_t dims4[] = {4};
  const int64_t stride1[] = {1};
  aclTensor* odd = aclCreateTensor(dims4, 1, ACL_STRING, stride1, 0, static_cast<aclFormat>(50), dims4, 1, bytes);
  ASSERT_NE(odd, nullptr);  // the operators, not aclCreateTensor, reject unsupported types
  aclDataType dtype = ACL_FLOAT;
  ASSERT_EQ(aclGetDataType(odd, &dtype), ACLNN_SUCCESS);
  EXPECT_EQ(dtype, ACL_STRING);
  EXPECT_THROW(ViewOf(*odd), moe_ep::Error);
  EXPECT_EQ(aclDestroyTensor(odd), ACLNN_SUCCESS);
}

TEST_F(AclTensors, NonContiguousViewRoundTripsThroughViewOf) {
  // Storage: a 4x6 row-major float matrix holding its own indices. The view is the 3x2 block at rows 1..2,
  // columns 1..3, seen transposed: element (i, j) = storage[7 + i + 6 j].
  std::vector<float> storage(24);
  for (int i = 0; i < 24; ++i) storage[i] = static_cast<float>(i);
  const int64_t dims[] = {3, 2};
  const int64_t strides[] = {1, 6};
  const int64_t storage_dims[] = {4, 6};
  aclTensor* tensor = aclCreateTensor(dims, 2, ACL_FLOAT, strides, 7, ACL_FORMAT_NCHW, storage_dims, 2, storage.data());
  ASSERT_NE(tensor, nullptr) << RecentMessage();
  EXPECT_TRUE(IsLiveTensor(tensor));

  int64_t* view_dims = nullptr;
  uint64_t view_n = 0;
  ASSERT_EQ(aclGetViewShape(tensor, &view_dims, &view_n), ACLNN_SUCCESS);
  ASSERT_EQ(view_n, 2u);
  EXPECT_EQ(view_dims[0], 3);
  EXPECT_EQ(view_dims[1], 2);
  delete[] view_dims;
  aclFormat format = ACL_FORMAT_ND;
  ASSERT_EQ(aclGetFormat(tensor, &format), ACLNN_SUCCESS);
  EXPECT_EQ(format, ACL_FORMAT_NCHW);

  TensorView view = ViewOf(*tensor);
  EXPECT_EQ(view.data, storage.data() + 7);
  EXPECT_EQ(view.dtype, DType::kFloat32);
  EXPECT_EQ(view.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_FALSE(view.contiguous());
  auto* base = static_cast<float*>(view.data);
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 2; ++j) {
      EXPECT_EQ(base[i * view.stride(0) + j * view.stride(1)], static_cast<float>(7 + i + 6 * j));
      base[i * view.stride(0) + j * view.stride(1)] = -1.0f;  // write back through the view
    }
  }
  for (int i = 0; i < 24; ++i) {
    const bool in_view = (i >= 7 && i <= 9) || (i >= 13 && i <= 15);
    EXPECT_EQ(storage[i], in_view ? -1.0f : static_cast<float>(i)) << "storage element " << i;
  }
  EXPECT_EQ(aclDestroyTensor(tensor), ACLNN_SUCCESS);
  EXPECT_FALSE(IsLiveTensor(tensor));
}

TEST_F(AclTensors, GettersAndDestroyCheckTheirArguments) {
  float storage[2] = {};
  const int64_t dims[] = {2};
  const int64_t strides[] = {1};
  aclTensor* tensor = aclCreateTensor(dims, 1, ACL_FLOAT, strides, 0, ACL_FORMAT_ND, dims, 1, storage);
  ASSERT_NE(tensor, nullptr);
  int64_t* view_dims = nullptr;
  uint64_t view_n = 0;
  aclDataType dtype;
  aclFormat format;
  EXPECT_EQ(aclGetViewShape(nullptr, &view_dims, &view_n), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_EQ(aclGetViewShape(tensor, nullptr, &view_n), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_EQ(aclGetViewShape(tensor, &view_dims, nullptr), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_EQ(aclGetDataType(nullptr, &dtype), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_EQ(aclGetDataType(tensor, nullptr), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_EQ(aclGetFormat(nullptr, &format), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_EQ(aclGetFormat(tensor, nullptr), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_EQ(aclDestroyTensor(tensor), ACLNN_SUCCESS);
  EXPECT_EQ(aclDestroyTensor(tensor), ACLNN_ERR_PARAM_INVALID);
  EXPECT_NE(RecentMessage().find("not a live aclTensor"), std::string::npos);
  EXPECT_EQ(aclGetDataType(tensor, &dtype), ACLNN_ERR_PARAM_INVALID);
  EXPECT_EQ(aclDestroyTensor(nullptr), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_EQ(aclDestroyTensor(reinterpret_cast<const aclTensor*>(storage)), ACLNN_ERR_PARAM_INVALID);
  EXPECT_FALSE(IsLiveTensor(nullptr));
}

TEST_F(AclTensors, DtypeMappingAndSizes) {
  const std::pair<aclDataType, DType> mapped[] = {
      {ACL_BF16, DType::kBf16},   {ACL_FLOAT16, DType::kFp16}, {ACL_FLOAT, DType::kFloat32}, {ACL_INT8, DType::kInt8},
      {ACL_INT32, DType::kInt32}, {ACL_INT64, DType::kInt64},  {ACL_BOOL, DType::kBool},
  };
  for (const auto& [acl, expected] : mapped) {
    DType dtype = DType::kBool;
    ASSERT_TRUE(ToDType(acl, &dtype)) << acl;
    EXPECT_EQ(dtype, expected) << acl;
    EXPECT_EQ(aclDataTypeSize(acl), DTypeSize(expected)) << acl;
  }
  DType untouched = DType::kInt8;
  for (aclDataType acl : {ACL_UINT8, ACL_DOUBLE, ACL_STRING, ACL_DT_UNDEFINED, ACL_COMPLEX64}) {
    EXPECT_FALSE(ToDType(acl, &untouched)) << acl;
  }
  EXPECT_EQ(untouched, DType::kInt8);
  const std::pair<aclDataType, size_t> sizes[] = {
      {ACL_FLOAT, 4},        {ACL_FLOAT16, 2},  {ACL_INT8, 1},        {ACL_INT32, 4},         {ACL_UINT8, 1},
      {ACL_INT16, 2},        {ACL_UINT16, 2},   {ACL_UINT32, 4},      {ACL_INT64, 8},         {ACL_UINT64, 8},
      {ACL_DOUBLE, 8},       {ACL_BOOL, 1},     {ACL_BF16, 2},        {ACL_COMPLEX64, 8},     {ACL_COMPLEX128, 16},
      {ACL_COMPLEX32, 4},    {ACL_HIFLOAT8, 1}, {ACL_FLOAT8_E5M2, 1}, {ACL_FLOAT8_E4M3FN, 1}, {ACL_STRING, 0},
      {ACL_DT_UNDEFINED, 0}, {ACL_INT4, 0},
  };
  for (const auto& [acl, bytes] : sizes) EXPECT_EQ(aclDataTypeSize(acl), bytes) << acl;
}

}  // namespace
}  // namespace moe_ep::cann
