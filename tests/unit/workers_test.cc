// Worker threads inside a rank (src/ops/workers.h): how many parts a loop is cut into, that every item
// is run once, by the part PartsFor promises, whatever the thread count and the work per item, and that helpers
// compute in the default floating-point environment whatever the thread that started them set.
#include "ops/workers.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "support/hostile_floating_point.h"
#include "support/scoped_env.h"
#include "support/test_seed.h"
#include "transport/window.h"

namespace {

using moe_ep::ops::DefaultThreads;
using moe_ep::ops::kMinPartBytes;
using moe_ep::ops::Workers;

TEST(Workers, PartsAreCutByWorkNotOnlyByThreads) {
  Workers four(4, kMinPartBytes);
  EXPECT_EQ(four.PartsFor(0, 1 << 20), 1);
  EXPECT_EQ(four.PartsFor(3, 1 << 20), 3) << "never more parts than items";
  EXPECT_EQ(four.PartsFor(100, 1 << 20), 4) << "never more parts than threads";
  // A decode step's rows (8 rows of 14 KiB) are not worth waking a helper for.
  EXPECT_EQ(four.PartsFor(8, 14336), 1);
  EXPECT_EQ(four.PartsFor(2 * kMinPartBytes / 1024, 1024), 2) << "each part carries at least kMinPartBytes";
  EXPECT_EQ(four.PartsFor(3 * kMinPartBytes / 1024 - 1, 1024), 2);
  EXPECT_EQ(four.PartsFor(int64_t{1} << 40, UINT64_MAX), 4) << "the product must not wrap";
  Workers every_loop(4, 0);
  EXPECT_EQ(every_loop.PartsFor(8, 1), 4) << "0: split every loop among all threads";
  EXPECT_EQ(Workers(1, 0).PartsFor(100, 1 << 20), 1);
}

// Threads the system will not start (a limit on memory here; on threads or map count elsewhere) are an Error naming
// the setting, the helpers already started are joined: the process goes on (it used to end in std::terminate).
TEST(Workers, ThreadsTheSystemRefusesAreAnError) {
#ifdef MOE_EP_SANITIZED
  GTEST_SKIP() << "a sanitizer's shadow memory needs more address space than the limit leaves";
#else
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // alone in the child: an address-space limit 64 MiB above what it uses, 8 MiB per thread stack
    long pages = 0;
    std::ifstream("/proc/self/statm") >> pages;
    rlimit as{};
    getrlimit(RLIMIT_AS, &as);
    as.rlim_cur = static_cast<rlim_t>(pages) * sysconf(_SC_PAGESIZE) + (rlim_t{64} << 20);
    if ((as.rlim_max != RLIM_INFINITY && as.rlim_cur > as.rlim_max) || setrlimit(RLIMIT_AS, &as) != 0) _exit(4);
    try {
      Workers too_many(1024, 0);
      // No error: every helper must then be running (the process's 1023 and its own), not some of them refused
      // unsaid, which would pass for a limit that did not bite.
      std::ifstream status("/proc/self/status");
      int threads = 0;
      for (std::string line; std::getline(status, line);) {
        if (line.starts_with("Threads:")) threads = std::atoi(line.c_str() + 8);
      }
      _exit(threads >= 1024 ? 3 : 6);
    } catch (const moe_ep::Error& e) {
      // Thread 1 is the caller's own: the first helper the system refused is thread 2 or later.
      const std::string what = e.what();
      int failed_at = 0;
      const bool named = std::sscanf(what.c_str(), "cannot start worker thread %d of 1024", &failed_at) == 1 &&
                         failed_at >= 2 &&
                         what.find(" of 1024 (GroupOptions::threads or MOE_EP_THREADS") != std::string::npos;
      _exit(named ? 0 : 2);
    } catch (...) {
      _exit(5);
    }
  }
  int status = 0;
  // Bounded: the code before this fix hung in the child (std::terminate with helpers running).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  pid_t ended = 0;
  while ((ended = waitpid(child, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (ended == 0) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    FAIL() << "the child hung refusing its threads";
  }
  ASSERT_EQ(ended, child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child ended by signal " << WTERMSIG(status);
  if (WEXITSTATUS(status) == 3 || WEXITSTATUS(status) == 4) {
    GTEST_SKIP() << (WEXITSTATUS(status) == 3 ? "every thread started under the limit (small stacks?)"
                                              : "no address-space limit could be set here");
  }
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: a message without the setting or the thread refused, 5: another "
                                       "exception, 6: threads refused without an error";
#endif
}

// Helpers inherit the floating-point settings of the thread that makes them (a rank's thread, as it joins its group);
// flush-to-zero or rounding upwards there must not reach the parts they run.
TEST(Workers, HelpersComputeInTheDefaultFloatingPointEnvironment) {
  std::unique_ptr<Workers> workers;
  std::thread maker([&] {
    _mm_setcsr(moe_ep::testing::kHostileMxcsr);  // the thread ends with it
    workers = std::make_unique<Workers>(3, 0);
  });
  maker.join();
  std::vector<unsigned> seen(3, 0);
  workers->ForEachPart(3, 1, [&](int part, int64_t, int64_t) { seen[part] = _mm_getcsr() & ~0x3Fu; });
  for (int part = 1; part < 3; ++part) EXPECT_EQ(seen[part], 0x1F80u) << "part " << part << " ran on a helper";
}

// An interrupt check that answers only on the thread that called (Python's: signals are seen on the main thread, and
// remembered for the others) reaches a helper's wait while the calling thread's part is done: it asked the check
// only in its own part, and then waited for the helpers, which waited for their peers to the deadline. And the call
// ends interrupted even where the helpers' parts then finish without asking (Python's signal was taken by the check).
std::atomic<bool> g_signal{false}, g_pending{false};
std::thread::id g_main;
bool MainThreadInterruptCheck() {
  if (std::this_thread::get_id() == g_main && g_signal) g_pending = true;
  return g_pending;
}

// The check installed, and a signal 100 ms on, for a scope; gone after it, whatever happened.
class SignalIn100Ms {
 public:
  SignalIn100Ms()
      : signal_([] {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          g_signal = true;
        }) {
    g_main = std::this_thread::get_id();
    moe_ep::SetInterruptCheck(&MainThreadInterruptCheck);
  }
  ~SignalIn100Ms() {
    signal_.join();
    moe_ep::SetInterruptCheck(nullptr);
    g_signal = g_pending = false;
  }

 private:
  std::thread signal_;
};

TEST(Workers, AnInterruptSeenOnTheCallingThreadReachesTheHelpersWaits) {
  Workers workers(2, 0);
  for (const bool helper_asks : {true, false}) {
    SCOPED_TRACE(helper_asks ? "the helper's part waits, asking the check" : "the helper's part works 300 ms");
    const SignalIn100Ms signal;
    const auto start = std::chrono::steady_clock::now();
    bool interrupted = false;
    try {
      workers.ForEachPart(2, 1, [&](int part, int64_t, int64_t) {
        // Part 0 (this thread) is done at once; part 1 waits as a wait for a peer does, for 10 s, or works 300 ms.
        const auto until = start + (helper_asks ? std::chrono::seconds(10) : std::chrono::milliseconds(300));
        while (part == 1 && std::chrono::steady_clock::now() < until) {
          if (helper_asks && moe_ep::transport::InterruptRequested()) {
            throw moe_ep::InterruptedError("interrupted", {});
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      });
    } catch (const moe_ep::InterruptedError&) {
      interrupted = true;
    }
    EXPECT_TRUE(interrupted) << "the interrupt was lost";
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5)) << "the helper's part ran its 10 s";
  }
}

// A check that throws asks for the interrupt: its exception never unwinds the calling thread while a helper still runs
// the caller's part (the helper would run a body that is gone), and the call ends interrupted once the helper is done.
std::atomic<int> g_throwing_checks{0};
bool ThrowingInterruptCheck() {
  ++g_throwing_checks;
  throw std::runtime_error("a check that throws");
}

TEST(Workers, AnInterruptCheckThatThrowsEndsTheCallOnceTheHelpersAreDone) {
  Workers workers(2, 0);
  moe_ep::SetInterruptCheck(&ThrowingInterruptCheck);
  std::atomic<bool> helper_done{false};
  bool interrupted = false;
  try {
    workers.ForEachPart(2, 1, [&](int part, int64_t, int64_t) {
      if (part != 1) return;  // the calling thread's part is done at once; it asks the check while it waits
      // The helper's part lasts until the check was asked (not a fixed time a starved calling thread might miss).
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (g_throwing_checks == 0 && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the call must wait for this part all the same
      helper_done = true;
    });
  } catch (const moe_ep::InterruptedError&) {
    interrupted = true;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "the check's exception left the call: " << e.what();
  }
  moe_ep::SetInterruptCheck(nullptr);
  EXPECT_TRUE(interrupted);
  EXPECT_TRUE(helper_done) << "the call returned while its helper ran";
}

TEST(Workers, EveryItemRunsOnceInThePartPromised) {
  const uint64_t seed = moe_ep::testing::BaseSeed();
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 200; ++trial) {
    const int threads = 1 + static_cast<int>(rng() % 4);
    const uint64_t min_part = rng() % 2 ? 0 : 1 + rng() % 4096;
    const int64_t n = static_cast<int64_t>(rng() % 300);
    const uint64_t item_bytes = 1 + rng() % 256;
    Workers workers(threads, min_part);
    std::vector<int> runs(n, 0);
    std::set<int> parts_seen;
    std::set<std::thread::id> threads_seen;
    std::mutex mutex;
    workers.ForEachPart(n, item_bytes, [&](int part, int64_t begin, int64_t end) {
      const std::lock_guard lock(mutex);
      parts_seen.insert(part);
      threads_seen.insert(std::this_thread::get_id());
      for (int64_t i = begin; i < end; ++i) ++runs[i];
    });
    const std::string what = "seed " + std::to_string(seed) + " trial " + std::to_string(trial);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(runs[i], 1) << what << " item " << i;
    const int parts = workers.PartsFor(n, item_bytes);
    if (n > 0) {
      EXPECT_EQ(static_cast<int>(parts_seen.size()), parts) << what;
      EXPECT_EQ(static_cast<int>(threads_seen.size()), parts) << what << ": each part on its own thread";
    }
  }
}

// The default thread count shares out the cores the process may run on, not the machine's: pinned to one core
// (taskset, a container's cpuset), a rank runs one thread.
TEST(Workers, TheDefaultThreadCountFollowsTheCpuAffinity) {
  const moe_ep::testing::ScopedEnv unset("MOE_EP_THREADS", nullptr);
  cpu_set_t allowed, one;
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  EXPECT_EQ(DefaultThreads(1), CPU_COUNT(&allowed));
  int first = 0;
  while (!CPU_ISSET(first, &allowed)) ++first;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  const int pinned = DefaultThreads(1);
  ASSERT_EQ(sched_setaffinity(0, sizeof allowed, &allowed), 0);
  EXPECT_EQ(pinned, 1);
  EXPECT_EQ(DefaultThreads(CPU_COUNT(&allowed) + 1), 1) << "at least 1";
}

}  // namespace
