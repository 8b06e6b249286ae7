// Ranks as processes over shared memory: `moe-ep launch` runs scenario_rank on 8 processes (random
// configurations, a long stress loop), and the segments are private, unguessable and gone afterwards; joins that
// fail, retry or lose a rank leave no name behind and take none of a live member's; heap tokens go only to peers
// that can map them; faults (a gone process, a full /dev/shm). shm_unlink is interposed for every test here (it
// kills a rank set to die removing its name; it passes every other call through).
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/env.h"
#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "support/test_seed.h"
#include "transport/remapped_window.h"
#include "transport/shm/shared_heap.h"
#include "transport/shm/shm_window.h"

namespace {

std::atomic<const char*> g_killed_removing{nullptr};  // a segment name; see shm_unlink below

}  // namespace

// shm_unlink interposed (an executable's definition comes before libc's, for the library's calls too): a rank set to
// (g_killed_removing) is SIGKILLed as it removes that name, which a join does right after its first barrier.
extern "C" int shm_unlink(const char* name) {
  const char* victim = g_killed_removing.load();
  if (victim != nullptr && std::strcmp(name, victim) == 0) raise(SIGKILL);
  static const auto real = reinterpret_cast<int (*)(const char*)>(dlsym(RTLD_NEXT, "shm_unlink"));
  return real(name);
}

namespace {

// The token `moe-ep launch` gave the job (its rank 0 prints "rendezvous TOKEN").
std::string JobToken(const std::string& output) {
  const std::string tag = "rendezvous ";
  const size_t at = output.find(tag);
  if (at == std::string::npos) return "";
  const size_t begin = at + tag.size();
  return output.substr(begin, output.find('\n', begin) - begin);
}

// The entries this job left in /dev/shm and /tmp. Only the job's own names count: other tests run
// beside it (ctest -j) and create and remove theirs meanwhile.
std::set<std::string> LeftBehind(const std::string& output) {
  const std::string token = JobToken(output);
  std::set<std::string> left;
  if (token.empty()) return {"(no rendezvous token in the output)"};
  for (const char* dir_name : {"/dev/shm", "/tmp"}) {
    if (DIR* dir = opendir(dir_name)) {
      while (dirent* e = readdir(dir)) {
        const std::string name = e->d_name;
        if (name.rfind("moe_ep.", 0) == 0 && name.find(token) != std::string::npos) {
          left.insert(std::string(dir_name) + "/" + name);
        }
      }
      closedir(dir);
    }
  }
  return left;
}

// Runs a command, returns its exit status and appends its output to `output`.
int RunCommand(const std::string& command, std::string& output) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// How often `what` occurs in `text`.
int CountOf(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::string Launch(int ranks, const std::string& args) {
  return std::string(MOE_EP_TOOL) + " launch -n " + std::to_string(ranks) + " -- " + SCENARIO_RANK + " " + args;
}

TEST(ProcessRanks, RandomConfigurationsOnEightProcessesMatchReference) {
  const uint64_t seed = moe_ep::testing::BaseSeed();
  std::string output;
  const int status = RunCommand(Launch(8, "property " + std::to_string(seed) + " 4"), output);
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(CountOf(output, ": 4 configurations equal to the reference"), 8) << output;  // every rank compared all
  EXPECT_EQ(LeftBehind(output), std::set<std::string>{}) << output;
}

// The pull data path between processes: x and the expert outputs in the shared heap, read in place by
// the peers (MOE_EP_DATA_PATH=pull forces it at every size), each rank on 3 threads that split every loop.
TEST(ProcessRanks, RowsPulledFromTheSharedHeapMatchReference) {
  const uint64_t seed = moe_ep::testing::BaseSeed() + 2;
  std::string output;
  const int status = RunCommand("MOE_EP_DATA_PATH=pull MOE_EP_THREADS=3 MOE_EP_THREAD_MIN_BYTES=0 " +
                                    Launch(8, "property " + std::to_string(seed) + " 4 heap"),
                                output);
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(CountOf(output, ": 4 configurations equal to the reference"), 8) << output;
  EXPECT_EQ(LeftBehind(output), std::set<std::string>{}) << output;
}

// x in private memory and larger than the 64 KiB staged for any reader: dispatch copies it once into the shared
// heap (one buffer per call parity) and the peers pull it from there; where it is not staged, and combine's
// expert outputs always, the peers copy the rows out of its process (MOE_EP_CROSS_MEMORY=1; forced pull does at
// every size by default too, where Yama allows it) or have them pushed (0). Random configurations with every size
// pulled, both ways, then back-to-back rounds of a 128 KiB x.
TEST(ProcessRanks, PrivateInputsPulledThroughTheStageMatchReference) {
  const uint64_t seed = moe_ep::testing::BaseSeed() + 3;
#ifdef MOE_EP_SANITIZED
  const std::string configs = "3";  // 8 processes, each drawing every rank's inputs and reference, 5-20 times slower
#else
  const std::string configs = "6";
#endif
  std::string output;
  for (const char* cross_memory : {"1", "0"}) {
    const int status = RunCommand(std::string("MOE_EP_DATA_PATH=pull MOE_EP_CROSS_MEMORY=") + cross_memory + " " +
                                      Launch(8, "property " + std::to_string(seed) + " " + configs),
                                  output);
    EXPECT_EQ(status, 0) << "MOE_EP_CROSS_MEMORY=" << cross_memory << "\n" << output;
    EXPECT_EQ(CountOf(output, ": " + configs + " configurations equal to the reference"), 8) << output;
    EXPECT_EQ(LeftBehind(output), std::set<std::string>{}) << output;
    output.clear();  // the next job's own token and output
  }
  int status = 0;
#ifdef MOE_EP_SANITIZED
  const int rounds = 16;  // each staging buffer 8 times; a round of 8 processes takes half a second under ASan
#else
  const int rounds = 300;
#endif
  status = RunCommand(
      "STRESS_HIDDEN=4096 " + Launch(8, "stress " + std::to_string(seed) + " " + std::to_string(rounds)), output);
  EXPECT_EQ(status, 0) << output;
  EXPECT_NE(output.find(std::to_string(rounds) + " rounds equal to the reference"), std::string::npos) << output;
  EXPECT_EQ(LeftBehind(output), std::set<std::string>{}) << output;
}

// Rows copied straight out of a peer's private memory (process_vm_readv): x larger than the rows each rank
// sends (top-1, so it is not staged), quantized on arrival, and the expert outputs; 3 threads per rank split the
// copies. Verified against the reference by `moe-ep run`, which reports how many ranks' rows were copied out:
// all of them, and none with MOE_EP_CROSS_MEMORY=0 (pushed instead, with the same results).
int PtraceScope() {
  int scope = -1;  // no Yama
  if (FILE* file = std::fopen("/proc/sys/kernel/yama/ptrace_scope", "r")) {
    if (std::fscanf(file, "%d", &scope) != 1) scope = -1;
    std::fclose(file);
  }
  return scope;
}

TEST(ProcessRanks, PrivateRowsAreCopiedOutOfTheirProcess) {
  const int ptrace_scope = PtraceScope();
  if (ptrace_scope >= 2) GTEST_SKIP() << "Yama ptrace_scope " << ptrace_scope << " lets no rank read another's memory";
  const std::string run = std::string(MOE_EP_TOOL) +
                          " run --processes --private --ranks 4 --bs 32 --hidden 4096 --topk 1 --experts 8 --repeats 2 "
                          "--warmup 1 --seed " +
                          std::to_string(moe_ep::testing::BaseSeed() + 4);
  for (const char* quant : {"", " --quant int8"}) {
    for (const char* cross_memory : {"1", "0"}) {
      std::string output;
      const int status = RunCommand(
          std::string("MOE_EP_DATA_PATH=pull MOE_EP_THREADS=3 MOE_EP_THREAD_MIN_BYTES=0 MOE_EP_CROSS_MEMORY=") +
              cross_memory + " " + run + quant,
          output);
      const std::string copied = std::string(cross_memory) == "1" ? "4" : "0";
      EXPECT_EQ(status, 0) << output;
      EXPECT_NE(output.find("copied out of private memory: " + copied + " ranks"), std::string::npos) << output;
      EXPECT_NE(output.find("(copied out: " + copied + ")"), std::string::npos) << output;
    }
  }
}

// By default (MOE_EP_DATA_PATH and MOE_EP_CROSS_MEMORY unset) a rank's private rows are copied out by their
// readers only from kCopyMinBytes (8 MiB) of rows a call, and pushed below: 4 ranks, top-1, rows of 8 KiB, so
// that 8 tokens a rank send 64 KiB (pulled were they in the heap) and 1536 send 12 MiB, each rank's expert
// outputs about as much. Where Yama's ptrace_scope is 1 or more, the default does not even try to read another
// rank (only MOE_EP_CROSS_MEMORY=1 does, under 1): pushed at every size.
TEST(ProcessRanks, PrivateRowsAreCopiedOutByDefaultOnlyFromEightMiB) {
  const bool readable = PtraceScope() <= 0;
#ifdef MOE_EP_SANITIZED
  // Sanitizers: below the threshold only. Drawing, moving and checking 1536 tokens takes a minute there, and
  // copying out is checked under them by PrivateRowsAreCopiedOutOfTheirProcess.
  for (const int bs : {8}) {
#else
  for (const int bs : {8, 1536}) {
#endif
    std::string output;
    const int status = RunCommand(
        "env -u MOE_EP_DATA_PATH -u MOE_EP_CROSS_MEMORY " + std::string(MOE_EP_TOOL) +
            " run --processes --private --ranks 4 --hidden 4096 --topk 1 --experts 4 --repeats 1 --warmup 1 --bs " +
            std::to_string(bs) + " --seed " + std::to_string(moe_ep::testing::BaseSeed() + 5),
        output);
    const std::string copied = bs > 8 && readable ? "4" : "0";
    SCOPED_TRACE("--bs " + std::to_string(bs));
    EXPECT_EQ(status, 0) << output;
    EXPECT_NE(output.find("copied out of private memory: " + copied + " ranks"), std::string::npos) << output;
    EXPECT_NE(output.find("(copied out: " + copied + ")"), std::string::npos) << output;
    EXPECT_NE(output.find("by copy from 8 MiB"), std::string::npos) << output;
  }
}

TEST(ProcessRanks, StressRoundsStayExactAndMemoryFlat) {
#ifdef MOE_EP_SANITIZED
  const int rounds = 200;
#else
  const int rounds = 10000;
#endif
  const uint64_t seed = moe_ep::testing::BaseSeed() + 1;
  std::string output;
  const int status = RunCommand(Launch(8, "stress " + std::to_string(seed) + " " + std::to_string(rounds)), output);
  EXPECT_EQ(status, 0) << output;
  EXPECT_NE(output.find(std::to_string(rounds) + " rounds equal to the reference"), std::string::npos) << output;
  EXPECT_EQ(LeftBehind(output), std::set<std::string>{}) << output;
}

// docs/semantics.md 4 flow: rank 5 of 8 is SIGKILLed mid-loop; the 7 survivors fail within the deadline naming it,
// probe, reset with the reachable mask, and run 100 scaled-down V3 rounds (sanitizers: 20) equal to the reference.
// Also with rows read by copy out of the ranks' private memory (MOE_EP_CROSS_MEMORY=1).
#ifdef MOE_EP_SANITIZED
constexpr int kRoundsAfterTheFault = 20;  // 8 processes on 2 cores: a tenth of a second a round under ASan
#else
constexpr int kRoundsAfterTheFault = 100;
#endif
const std::string kAfter = std::to_string(kRoundsAfterTheFault);

TEST(ProcessFaults, SurvivorsOfAKilledRankRecoverScaledDown) {
  for (const char* cross_memory : {"0", "1"}) {
    std::string output;
    const int status = RunCommand(std::string("MOE_EP_CROSS_MEMORY=") + cross_memory + " MOE_EP_TIMEOUT_MS=4000 " +
                                      Launch(8, "kill " + std::to_string(moe_ep::testing::BaseSeed()) + " " + kAfter),
                                  output);
    SCOPED_TRACE(std::string("MOE_EP_CROSS_MEMORY=") + cross_memory);
    EXPECT_EQ(status, 128 + 9) << output;  // the launcher reports the killed rank
    // ... and no other: a survivor that failed after its report (a crash at exit, a sanitizer's) would be one more.
    EXPECT_EQ(CountOf(output, "moe-ep launch: rank "), 1) << output;
    EXPECT_EQ(CountOf(output, "moe-ep launch: rank 5 was killed by signal 9"), 1) << output;
    EXPECT_EQ(CountOf(output, "(call 7) from rank 5"), 7) << output;
    EXPECT_EQ(CountOf(output, kAfter + " scaled-down rounds equal to the reference"), 7) << output;
    EXPECT_EQ(CountOf(output, "FAIL"), 0) << output;
    EXPECT_EQ(LeftBehind(output), std::set<std::string>{}) << output;
  }
}

// Rank 5 stalls (SIGSTOP) instead: same diagnosis; after SIGCONT and a reset the full group works again.
TEST(ProcessFaults, AStalledRankRejoinsAfterContinueAndReset) {
  std::string output;
  const int status = RunCommand(
      "MOE_EP_TIMEOUT_MS=4000 " + Launch(8, "stop " + std::to_string(moe_ep::testing::BaseSeed()) + " " + kAfter),
      output);
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(CountOf(output, "(call 7) from rank 5"), 7) << output;
  EXPECT_EQ(CountOf(output, kAfter + " full-group rounds after the stall equal to the reference"), 8) << output;
  EXPECT_EQ(LeftBehind(output), std::set<std::string>{}) << output;
}

TEST(ProcessRanks, LauncherReportsTheFirstFailureAndPrefixesOutput) {
  std::string output;
  const int status =
      RunCommand(std::string(MOE_EP_TOOL) + " launch -n 3 -- sh -c 'echo hello; exit $((MOE_EP_RANK + 3))'", output);
  EXPECT_GE(status, 3) << output;
  EXPECT_LE(status, 5) << output;
  for (int r = 0; r < 3; ++r)
    EXPECT_NE(output.find("[rank " + std::to_string(r) + "] hello"), std::string::npos) << output;
}

// The launcher ends with its ranks: not later, when a process a rank left running still holds its output (or keeps
// writing to it), and not never, when it inherited an ignored SIGCHLD (the kernel would reap the ranks behind its
// back); a rank has its standard output even when the launcher started without one.
TEST(ProcessRanks, LauncherEndsWithItsRanks) {
  const std::string tool = MOE_EP_TOOL;
  std::string output;
  EXPECT_EQ(RunCommand("timeout -k 5 20 " + tool + " launch -n 2 -- sh -c 'sleep 30 & echo left; exit 3'", output), 3)
      << output;
  EXPECT_EQ(CountOf(output, "] left"), 2) << output;
  output.clear();
  EXPECT_EQ(RunCommand("timeout -k 5 20 bash -c \"trap '' CHLD; exec " + tool + " launch -n 2 -- true\"", output), 0)
      << output;
  output.clear();  // a process left running that keeps writing
  EXPECT_EQ(RunCommand("timeout -k 5 20 " + tool +
                           " launch -n 1 -- sh -c '(while true; do echo more; sleep 0.01; done) & exit 4'",
                       output),
            4)
      << output;
  output.clear();  // started without stdin and stdout, the launcher's pipe ends are 0 and 1: the rank still writes
  EXPECT_EQ(RunCommand("timeout -k 5 20 bash -c '" + tool + " launch -n 1 -- sh -c \"echo hello || exit 7\" <&- >&-'",
                       output),
            0)
      << output;
}

// A job or group that cannot name a segment (empty, a path, a job past NAME_MAX's share) is a parameter error,
// before anything is created; the longest job name works.
TEST(ShmSecurity, NamesThatCannotNameASegmentAreRefused) {
  namespace tr = moe_ep::transport;
  const auto deadline = [] { return tr::Clock::now() + std::chrono::milliseconds(500); };
  const std::string longest(moe_ep::env::kMaxRendezvousChars - 8, 'j');
  const std::string job = longest + std::to_string(10000000 + getpid() % 10000000).substr(0, 8);
  for (const auto& [bad_job, bad_group] :
       std::vector<std::pair<std::string, std::string>>{{"", "g"}, {"a/b", "g"}, {job, "g/h"}, {job + "j", "g"}}) {
    try {
      tr::JoinShmGroup(bad_job, bad_group, 0, 1, 1 << 20, 16, deadline());
      ADD_FAILURE() << "job '" << bad_job << "' group '" << bad_group << "' accepted";
    } catch (const moe_ep::Error& e) {
      EXPECT_EQ(e.code(), moe_ep::ErrorCode::kInvalidParam) << e.what();
      EXPECT_NE(std::string(e.what()).find("must be non-empty names without '/', the job's at most 128 characters"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_NE(tr::JoinShmGroup(job, "g", 0, 1, 1 << 20, 16, deadline()), nullptr);
}

// While rank 0 waits for a rank 1 that never comes, its segment exists: it is 0600, another job's name
// does not reach it, and an unprivileged user cannot open it; after the timeout it is gone.
TEST(ShmSecurity, SegmentsArePrivateToTheJobAndItsUser) {
  const std::string job = "sectest" + std::to_string(getpid());
  std::thread rank0([&] {
    EXPECT_THROW(moe_ep::transport::JoinShmGroup(job, "g", 0, 2, 1 << 20, 16,
                                                 moe_ep::transport::Clock::now() + std::chrono::milliseconds(1500)),
                 moe_ep::TimeoutError);
  });
  const std::string name = moe_ep::transport::ShmSegmentName(job, "g", 0);
  struct stat st {};
  for (int i = 0; i < 100 && stat(("/dev/shm" + name).c_str(), &st) != 0; ++i) usleep(10000);
  ASSERT_EQ(stat(("/dev/shm" + name).c_str(), &st), 0) << name;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_LT(shm_open(moe_ep::transport::ShmSegmentName("otherjob", "g", 0).c_str(), O_RDWR, 0), 0);
  const pid_t child = fork();
  if (child == 0) {  // another user: must be refused
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
    _exit(shm_open(name.c_str(), O_RDWR, 0) < 0 && errno == EACCES ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (WEXITSTATUS(status) == 3) {
    GTEST_LOG_(INFO) << "cannot switch to an unprivileged user here; skipped that part";
  } else {
    EXPECT_EQ(WEXITSTATUS(status), 0) << "an unprivileged process opened the segment";
  }
  rank0.join();
  EXPECT_NE(stat(("/dev/shm" + name).c_str(), &st), 0) << "segment left behind after a failed join";
}

// A segment under a peer's name that this job did not make (another user's, or one others may open) is refused,
// naming its owner and mode, instead of being mapped as that rank's window: its rows would go to whoever made it.
TEST(ShmSecurity, ASegmentNotMadeByThisJobIsRefused) {
  for (const bool other_user : {false, true}) {
    SCOPED_TRACE(other_user ? "owned by uid 65534" : "mode 0666");
    const std::string job = "planttest" + std::to_string(getpid()) + (other_user ? "u" : "m");
    const std::string planted = moe_ep::transport::ShmSegmentName(job, "g", 1);
    const int fd = shm_open(planted.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0) << planted;
    ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
    if (other_user) {
      if (fchown(fd, 65534, 65534) != 0) {
        close(fd);
        shm_unlink(planted.c_str());
        GTEST_LOG_(INFO) << "cannot give a segment to another user here; skipped that part";
        continue;
      }
    } else {
      ASSERT_EQ(fchmod(fd, 0666), 0);
    }
    close(fd);
    try {
      moe_ep::transport::JoinShmGroup(job, "g", 0, 2, 1 << 20, 16,
                                      moe_ep::transport::Clock::now() + std::chrono::seconds(5));
      ADD_FAILURE() << "rank 0 mapped a segment it did not make";
    } catch (const moe_ep::Error& e) {
      const std::string message = e.what();
      EXPECT_EQ(e.code(), moe_ep::ErrorCode::kInvalidConfig) << message;
      const std::string owner = other_user ? "65534 with mode 0600" : std::to_string(geteuid()) + " with mode 0666";
      EXPECT_NE(message.find(planted + ", rank 1's segment, belongs to uid " + owner), std::string::npos) << message;
    }
    // Rank 0's own segment went with its failed join, and so did a dead one of this user's; another user's file is
    // not the job's to remove (the test removes it here).
    EXPECT_EQ(moe_ep::transport::RemoveJobSegments(job), other_user ? 1 : 0) << "segments left behind";
  }
}

// A group's string grows with its member list, and a segment name may not pass 255 bytes: a long group joins
// as a short one does, and a default group of 100 ranks, one of which came, times out naming the 99 others.
TEST(ShmJoin, GroupsOfLongNamesJoin) {
  const std::string job = "longtest" + std::to_string(getpid());
  std::string group = "ep";
  for (int r = 0; r < 100; ++r) (group += '-') += std::to_string(r);
  const auto deadline = moe_ep::transport::Clock::now() + std::chrono::seconds(20);
  std::string messages[2];
  std::thread ranks[2];
  for (int r = 0; r < 2; ++r) {
    ranks[r] = std::thread([&, r] {
      try {
        auto window = moe_ep::transport::JoinShmGroup(job, group, r, 2, 1 << 20, 16, deadline);
        window->Barrier(deadline, "the test's");
      } catch (const moe_ep::Error& e) {
        messages[r] = e.what();
      }
    });
  }
  for (auto& t : ranks) t.join();
  EXPECT_EQ(messages[0] + messages[1], "");
  EXPECT_EQ(moe_ep::transport::RemoveJobSegments(job), 0) << "segments left behind";

  moe_ep::GroupOptions options;
  options.timeout = std::chrono::milliseconds(500);
  options.window_bytes = 1 << 20;
  try {
    moe_ep::JoinProcessGroup({0, 100, job}, options);
    ADD_FAILURE() << "a group of 100 ranks with one present joined";
  } catch (const moe_ep::TimeoutError& e) {
    EXPECT_EQ(e.missing_ranks().size(), 99u) << e.what();
    EXPECT_EQ(e.missing_ranks().back(), 99) << e.what();
  }
}

// A member that gives up its join leaves the names of live members alone: they may be joining again already, with
// files of their retries under them. Rank 1 is late (it comes once rank 2 gave up); rank 0 gives up first and joins
// again at once; rank 2 gives up after that retry made its segment (rank 0's retry waits for rank 1 before it looks for
// rank 2's, so it never sees rank 2's first file), and joins again. Every join meets (removing every name of the group,
// as rank 2 once did, took rank 0's new file away, and the others then waited for it in vain), and no segment is left
// behind.
TEST(ShmJoin, AMemberGivingUpLeavesTheNamesOfMembersJoiningAgain) {
  namespace tr = moe_ep::transport;
  const std::string job = "retrytest" + std::to_string(getpid());
  const auto start = tr::Clock::now();
  const std::chrono::milliseconds gives_up[3] = {std::chrono::milliseconds(300), std::chrono::milliseconds(0),
                                                 std::chrono::milliseconds(1000)};
  std::string failures[3];
  std::thread ranks[3];
  std::atomic<bool> rank2_gave_up{false};  // rank 1 comes after that: its first file is gone by then
  for (int r = 0; r < 3; ++r) {
    ranks[r] = std::thread([&, r] {
      try {
        if (r != 1) {
          EXPECT_THROW(tr::JoinShmGroup(job, "g", r, 3, 1 << 20, 16, start + gives_up[r]), moe_ep::TimeoutError);
          if (r == 2) rank2_gave_up = true;
        } else {
          while (!rank2_gave_up) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        auto window = tr::JoinShmGroup(job, "g", r, 3, 1 << 20, 16, tr::Clock::now() + std::chrono::seconds(10));
        window->Barrier(tr::Clock::now() + std::chrono::seconds(10), "the test's");
      } catch (const moe_ep::Error& e) {
        failures[r] = "rank " + std::to_string(r) + ": " + e.what() + "\n";
      }
    });
  }
  for (auto& t : ranks) t.join();
  EXPECT_EQ(failures[0] + failures[1] + failures[2], "");
  EXPECT_EQ(tr::RemoveJobSegments(job), 0) << "segments left behind";
}

// A rank killed between the join's two barriers, before it removed its own name (the survivor has removed its own
// already): the survivor's join fails at the second barrier and takes the dead rank's name away with it.
TEST(ShmFaults, ARankKilledBetweenTheJoinsBarriersLeavesNoSegment) {
  namespace tr = moe_ep::transport;
  const std::string job = "barriertest" + std::to_string(getpid());
  const std::string victim = tr::ShmSegmentName(job, "g", 1);
  const pid_t child = fork();
  if (child == 0) {  // rank 1
    alarm(30);       // whatever happens, it ends
    g_killed_removing = victim.c_str();
    try {
      tr::JoinShmGroup(job, "g", 1, 2, 1 << 20, 16, tr::Clock::now() + std::chrono::seconds(10));
    } catch (...) {
    }
    _exit(3);  // not killed: the join never removed its name
  }
  try {
    // Long enough for the child to come (else it gives up too, and is killed removing its own name first).
    tr::JoinShmGroup(job, "g", 0, 2, 1 << 20, 16, tr::Clock::now() + std::chrono::seconds(5));
    ADD_FAILURE() << "rank 0 joined a group whose rank 1 died in its join";
  } catch (const moe_ep::Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1"), std::string::npos) << e.what();
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "rank 1 ended with status " << status;
  EXPECT_EQ(tr::RemoveJobSegments(job), 0) << "the dead rank's segment was left behind";
}

// A rank that exposed heap rows and died before a peer mapped them is a timeout naming it, as a zombie and once
// reaped; seen through the survivors' numbering (elastic scale-down), the rank is named as they number it.
TEST(ShmFaults, RowsOfAGoneProcessAreATimeoutNamingItsRank) {
  namespace tr = moe_ep::transport;
  const std::string job = "gonetest" + std::to_string(getpid());
  const auto deadline = tr::Clock::now() + std::chrono::seconds(30);
  int told[2];
  ASSERT_EQ(pipe(told), 0);
  const pid_t child = fork();
  if (child == 0) {  // rank 2: exposes a heap block to rank 0, says its token, and ends
    try {
      auto window = tr::JoinShmGroup(job, "g", 2, 3, 1 << 20, 16, deadline);
      const uint64_t token = window->Expose(0, tr::SharedHeap::Process().Allocate(4096), 4096);
      _exit(write(told[1], &token, sizeof token) == sizeof token ? 0 : 3);
    } catch (...) {
      _exit(2);
    }
  }
  std::unique_ptr<tr::Window> rank1;
  std::thread joining([&] { rank1 = tr::JoinShmGroup(job, "g", 1, 3, 1 << 20, 16, deadline); });
  auto rank0 = tr::JoinShmGroup(job, "g", 0, 3, 1 << 20, 16, deadline);
  joining.join();
  uint64_t token = 0;
  ASSERT_EQ(read(told[0], &token, sizeof token), static_cast<ssize_t>(sizeof token));
  close(told[0]), close(told[1]);
  ASSERT_NE(token, 0u);
  ASSERT_EQ(token % 2, 0u) << "not a heap token";
  siginfo_t ended{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), &ended, WEXITED | WNOWAIT), 0);  // a zombie now
  const tr::RemappedWindow survivors(*rank0, 0, {0, 2});                             // rank 1 left out
  for (const bool reaped : {false, true}) {
    if (reaped) {
      ASSERT_EQ(waitpid(child, nullptr, 0), child);
    }
    try {
      rank0->Resolve(2, token, 4096);
      ADD_FAILURE() << "rows of a gone process resolved (reaped: " << reaped << ")";
    } catch (const moe_ep::TimeoutError& e) {
      EXPECT_EQ(e.missing_ranks(), std::vector<int>{2}) << e.what();
    }
    try {
      survivors.Resolve(1, token, 4096);
      ADD_FAILURE() << "rows of a gone process resolved through the survivors (reaped: " << reaped << ")";
    } catch (const moe_ep::TimeoutError& e) {
      EXPECT_EQ(e.missing_ranks(), std::vector<int>{1}) << e.what();
    }
  }
}

// A rank whose write into a window finds /dev/shm full dies of the bus error as before, but says why first; the
// others time out naming it. In a mount namespace of its own with a 16 MiB /dev/shm (root only, as CI runs); the
// address sanitizer, which would report the bus error itself, is told to leave it alone. The ranks are those of
// `run --processes` started by `moe-ep launch` itself, which leaves the others running when one dies (`run
// --processes` would end them).
TEST(ShmFaults, AFullDevShmIsExplainedBeforeTheBusErrorKills) {
  std::string output;
  const std::string tool = MOE_EP_TOOL;
  const int status = RunCommand(
      "unshare --mount --propagation private sh -c 'mount -t tmpfs -o size=16m tmpfs /dev/shm || exit 77; "
      "d=$(mktemp -d); MOE_EP_RUN_RESULTS=$d ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_sigbus=0 "
      "MOE_EP_TIMEOUT_MS=3000 " +
          tool + " launch -n 4 -- " + tool + " run --ranks 4 --bs 256 --repeats 3 --warmup 0 --seed " +
          std::to_string(moe_ep::testing::BaseSeed()) + "; s=$?; rm -rf $d; exit $s'",
      output);
  if (status == 77 || output.find("unshare failed") != std::string::npos) {
    GTEST_SKIP() << "no mount namespace here (not root?): " << output;
  }
  EXPECT_NE(status, 0) << output;
  // Every rank whose write finds it full says so and dies (those that fill it last at once may be several); the
  // others fail with a timeout (507034): waiting for its flags ("timed out on rank"), or, where they were reading
  // its memory when it died, finding its process gone.
  const int explained = CountOf(output, "bus error writing a shared-memory window: /dev/shm is full (16 MiB, ");
  EXPECT_GE(explained, 1) << output;
  EXPECT_EQ(CountOf(output, "was killed by signal 7"), explained) << output;
  EXPECT_EQ(CountOf(output, "moe-ep: error 507034: "), 4 - explained) << output;
}

// A rank in a pid namespace of its own (containers that share /dev/shm but not pids), its /proc the host's: no peer
// can map its heap chunks through /proc/<pid>/fd, nor it theirs by the pids they know, so rows in the shared heap
// travel as any other memory's do, and the job is verified (peers were handed heap tokens they could not map, and
// the job failed). Forced onto the pull path; root only (unshare), as CI runs.
TEST(ShmHeap, ARankInAnotherPidNamespaceIsHandedNoTokenItCannotMap) {
  const std::string tool = MOE_EP_TOOL;
  const std::string run = tool + " run --ranks 2 --experts 4 --topk 2 --bs 6 --hidden 64 --repeats 2 --warmup 0";
  std::string output;
  const int status =
      RunCommand("unshare --pid --fork true || exit 77; d=$(mktemp -d); MOE_EP_RUN_RESULTS=$d MOE_EP_DATA_PATH=pull " +
                     tool + " launch -n 2 -- sh -c 'if [ \"$MOE_EP_RANK\" = 1 ]; then exec unshare --pid --fork " +
                     run + "; else exec " + run + "; fi'; s=$?; rm -rf $d; exit $s",
                 output);
  if (status == 77) GTEST_SKIP() << "no pid namespace here (not root?): " << output;
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(CountOf(output, "verified: outputs equal to the reference"), 2) << output;
}

// A bus error outside every window goes on as it would have without moe_ep: no word of /dev/shm, the process dies
// of it.
TEST(ShmFaults, ABusErrorElsewhereIsLeftAlone) {
  int err[2];
  ASSERT_EQ(pipe(err), 0);
  const pid_t child = fork();
  if (child == 0) {
    dup2(err[1], STDERR_FILENO);
    signal(SIGBUS, SIG_DFL);  // what a process has without a sanitizer's handler: the one moe_ep's goes on to
    alarm(10);                // a handler that returned to the fault for good would loop: this ends it
    namespace tr = moe_ep::transport;
    const auto window = tr::JoinShmGroup("busetest" + std::to_string(getpid()), "g", 0, 1, 1 << 20, 16,
                                         tr::Clock::now() + std::chrono::seconds(10));
    const int fd = memfd_create("empty", 0);  // no page behind the mapping: a touch is a bus error
    auto* p = static_cast<volatile char*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (p == MAP_FAILED) _exit(3);
    p[0] = 1;
    _exit(4);
  }
  close(err[1]);
  std::string said;
  char buffer[512];
  for (ssize_t n; (n = read(err[0], buffer, sizeof buffer)) > 0;) said.append(buffer, static_cast<size_t>(n));
  close(err[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS) << "status " << status << ": " << said;
  EXPECT_EQ(said.find("/dev/shm"), std::string::npos) << said;
}

// The size JoinShmGroup gives a segment of a group of `size` ranks (the window, its flags and the cross-memory page),
// as a rank of such a group, joining alone under `job` + "probe", creates it; 0 if it did not in time.
off_t SegmentBytes(const std::string& job, int size, uint64_t window) {
  namespace tr = moe_ep::transport;
  struct stat st {};
  std::thread probe([&] {
    try {
      tr::JoinShmGroup(job + "probe", "g", 0, size, window, 16, tr::Clock::now() + std::chrono::milliseconds(300));
    } catch (const moe_ep::Error&) {
    }
  });
  const std::string probe_name = "/dev/shm" + tr::ShmSegmentName(job + "probe", "g", 0);
  for (int i = 0; i < 100 && (stat(probe_name.c_str(), &st) != 0 || st.st_size == 0); ++i) usleep(2000);
  probe.join();
  return st.st_size;
}

// A rank killed during the join after it created its segment (before it sized it, or after) leaves no name in
// /dev/shm once the others give up, even with no launcher to clean up after it; they time out naming it.
TEST(ShmJoin, ARankKilledDuringTheJoinLeavesNoName) {
  namespace tr = moe_ep::transport;
  const uint64_t window = 1 << 20;
  for (const bool sized : {false, true}) {
    SCOPED_TRACE(sized ? "killed after sizing its segment" : "killed before sizing it");
    const std::string job = "killtest" + std::to_string(getpid()) + (sized ? "s" : "u");
    const std::string dead = tr::ShmSegmentName(job, "g", 2);
    const int fd = shm_open(dead.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);  // what rank 2 did before it died
    ASSERT_GE(fd, 0);
    if (sized) {
      const off_t bytes = SegmentBytes(job, 3, window);
      ASSERT_GT(bytes, 0);
      ASSERT_EQ(ftruncate(fd, bytes), 0);
    }
    close(fd);
    std::vector<int> missing[2];
    std::thread ranks[2];
    for (int r = 0; r < 2; ++r) {
      ranks[r] = std::thread([&, r] {
        try {
          tr::JoinShmGroup(job, "g", r, 3, window, 16, tr::Clock::now() + std::chrono::milliseconds(800));
        } catch (const moe_ep::TimeoutError& e) {
          missing[r] = e.missing_ranks();
        }
      });
    }
    for (auto& t : ranks) t.join();
    for (int r = 0; r < 2; ++r) EXPECT_EQ(missing[r], std::vector<int>{2}) << "rank " << r;
    struct stat st {};
    EXPECT_NE(stat(("/dev/shm" + dead).c_str(), &st), 0) << "the killed rank's segment name was left behind";
    EXPECT_EQ(tr::RemoveJobSegments(job), 0);
  }
}

// A job killed while its ranks waited in the join (for a rank that never came) leaves every name, and a rank table
// names its segments the same way each run: the next job's ranks remove what a dead process left and make their
// own, and a peer never maps the dead one meanwhile, whatever its size (rank 0 waits on rank 1's dead name, sized
// as a live one, before rank 1 comes; rank 0's own dead name is the wrong size).
TEST(ShmJoin, NamesLeftByADeadJoinAreReplacedNotMapped) {
  namespace tr = moe_ep::transport;
  const uint64_t window = 1 << 20;
  const std::string job = "deadtest" + std::to_string(getpid());
  const off_t bytes = SegmentBytes(job, 2, window);
  ASSERT_GT(bytes, 0);
  for (int r = 0; r < 2; ++r) {  // what a killed process leaves: a name nobody holds
    const int fd = shm_open(tr::ShmSegmentName(job, "g", r).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, r == 1 ? bytes : 4096), 0);
    close(fd);
  }
  std::string errors[2];
  std::thread ranks[2];
  for (int r = 0; r < 2; ++r) {
    ranks[r] = std::thread([&, r] {
      try {
        tr::JoinShmGroup(job, "g", r, 2, window, 16, tr::Clock::now() + std::chrono::seconds(10));
      } catch (const moe_ep::Error& e) {
        errors[r] = e.what();
      }
    });
    if (r == 0) usleep(200 * 1000);  // rank 0 polls rank 1's dead name
  }
  for (auto& t : ranks) t.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  EXPECT_EQ(tr::RemoveJobSegments(job), 0) << "names left behind";
}

// A name that a live process holds is another job's (the same rendezvous twice): refused, and left to it.
TEST(ShmJoin, ANameALiveProcessHoldsIsRefused) {
  namespace tr = moe_ep::transport;
  const std::string job = "livetest" + std::to_string(getpid());
  const std::string name = tr::ShmSegmentName(job, "g", 0);
  const int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  lock.l_len = 1;  // byte 0, as a joining rank holds its segment's
  ASSERT_EQ(fcntl(fd, F_OFD_SETLK, &lock), 0);
  try {
    tr::JoinShmGroup(job, "g", 0, 2, 1 << 20, 16, tr::Clock::now() + std::chrono::seconds(2));
    ADD_FAILURE() << "joined under a name a live process holds";
  } catch (const moe_ep::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create " + name +
                                         ": a live process holds it (another job with the "
                                         "same rendezvous?)"),
              std::string::npos)
        << e.what();
  }
  struct stat st {};
  EXPECT_EQ(stat(("/dev/shm" + name).c_str(), &st), 0) << "the live process's name was removed";
  close(fd);
  shm_unlink(name.c_str());
}

// Ranks that ask for different window sizes fail naming the disagreement instead of timing out.
TEST(ShmJoin, RanksWithDifferentWindowSizesAreRefused) {
  const std::string job = "sizetest" + std::to_string(getpid());
  const auto deadline = moe_ep::transport::Clock::now() + std::chrono::milliseconds(1500);
  std::string messages[2];
  std::thread ranks[2];
  for (int r = 0; r < 2; ++r) {
    ranks[r] = std::thread([&, r] {
      try {
        moe_ep::transport::JoinShmGroup(job, "g", r, 2, (r + 1) << 20, 16, deadline);
      } catch (const moe_ep::Error& e) {
        messages[r] = e.what();
      }
    });
  }
  for (auto& t : ranks) t.join();
  const bool one_named =
      messages[0].find("window size") != std::string::npos || messages[1].find("window size") != std::string::npos;
  EXPECT_TRUE(one_named) << messages[0] << " / " << messages[1];
  EXPECT_FALSE(messages[0].empty());
  EXPECT_FALSE(messages[1].empty());
  EXPECT_TRUE(moe_ep::transport::RemoveJobSegments(job) == 0) << "segments left behind";
}

}  // namespace
