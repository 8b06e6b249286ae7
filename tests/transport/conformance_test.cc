// Transport conformance: the Window contract of src/transport/window.h, checked by ONE set of test bodies
// that runs on every transport. A transport joins with one entry in Transports() below.
//
// Each body runs one thread per rank, and ranks talk only through their windows: a rank regenerates from
// the seed what its peers sent and asserts only what its own window shows, so a body holds as well for
// ranks that live in other processes. Each body ends with Drain, as an operation does.
// Random data comes from moe_ep::testing::BaseSeed() (printed; MOE_EP_TEST_SEED replays it).
//
// Cases (Transports/Conformance.<case>/<transport>):
//   WindowsDescribeTheirGroup        rank, size, data_bytes (rounded up only, the same on every rank: each tells
//                                    the others in a flag), flag_count; fresh data and flags zero.
//   EveryBytePutBeforeASignalIsSeenAfterIt  200 rounds on a ring of 4: fresh random ranges of 128-512 KiB in
//                                    1-4 puts, then a signal; the reader compares every byte after the flag.
//   RowsShowTheirOwnPutNeverAnEarlierOne  3 rounds of 12 rows at the same offsets (PutRow, half left unread;
//                                    plain Put; both alternating): Row shows each round's bytes, never an earlier
//                                    row's.
//   ExposedBytesResolveInPlace       a random buffer exposed to the next rank of a ring (its token sent in two
//                                    flags): a nonzero token resolves to the same bytes there, and to later
//                                    writes of the owner; a transport without peer-visible memory gives 0.
//   WaitFlagsAcceptsOnlyTheAwaitedEpoch  zero, neighbouring, far and count==epoch words never satisfy a wait.
//   ClearLocalZeroesDataAndTheFirstFlagsOnly  cleared_flags 0, 1, 511/512/513 (the page edge), F-1, F, F+7,
//                                    2^64-1 and a random one: data and flags [0, N) zero, later user flags and
//                                    the transport's own intact, peers' data and flags untouched.
//   NoRankLeavesABarrierBeforeAllEntered  100 barriers, one dawdling rank each; BarrierTimesOut... names the absent
//   rank (which then catches up). ProbeFindsEveryRankWhenAllProbe, ARankThatNeverProbes...  1s for all; 0 for a
//   silent rank, after the wait, no throw. WaitFlagsTimesOutNamingTheRankWhoseFlagIsMissing  WaitFlags / WaitFlag:
//                                    TimeoutError after the deadline (within a slack), missing_ranks() and the
//                                    message name exactly that rank.
//   ANapEndsAtAPeersSignal           a rank napping (NapUnless) for up to a minute wakes as a peer signals it, on a
//                                    transport with a doorbell (shared memory); elsewhere naps last LongestNap.
//   NappingRanksPlayingPingPongMissNoSignal  300 rounds of signal and answer, each rank napping until the other's
//                                    flag comes (Signal and SignalAll, plus a compare-exchange of its own flag).
//   PutPastTheDataAreaThrowsAndWritesNothing, PutWhoseRangeWrapsAroundThrows, SignalPastTheFlagsThrows: bounds.
//   BurstsThenTricklesArriveWhole    4 MiB that pile up at the reader, then 10 operations of a few bytes each:
//                                    every byte arrives; the hosts transport posts more receives after the
//                                    burst and its fewest after the trickles.
//   FlagWords.*                      MakeFlag / FlagEpoch / FlagCount / EpochOf arithmetic (no transport).
//
// Can the suite fail? MOE_EP_CONFORMANCE_MUTANT=<name> runs it on a deliberately broken transport
// instead (the thread transport behind a faulty wrapper, see Mutant below); every mutant must make at
// least one test fail:
//   MOE_EP_CONFORMANCE_MUTANT=drop_byte build/tests/transport/conformance_test   # expect FAILED
//
// The hosts transport (src/transport/mpi/) runs the same bodies from this file built a second time with
// MOE_EP_CONFORMANCE_HOSTS (hosts_conformance_test, tests/hosts/): one rank per MPI process under mpirun
// (tests/hosts/mpi_job.sh, simulated_hosts.sh), every process opening every group in the same order (a
// process outside a group sits the case out), the seed of rank 0 for all (main() at the end). The bodies
// assert only what a rank sees in its own window, so they hold there as they do with every rank in one
// process. A mutant there wraps the hosts windows:
//   MOE_EP_CONFORMANCE_MUTANT=late_put tests/hosts/mpi_job.sh 4 1 build/tests/hosts/hosts_conformance_test random
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "moe_ep/error.h"
#include "support/scoped_env.h"
#include "support/test_seed.h"
#include "support/thrown_error.h"
#include "transport/shm/shm_window.h"
#include "transport/thread/thread_window.h"
#include "transport/window.h"
#include "verify/run_ranks.h"
#ifdef MOE_EP_CONFORMANCE_HOSTS
#include <mpi.h>

#include <cstdio>

#include "transport/mpi/hosts_window.h"
#include "transport/mpi/mpi_runtime.h"
#endif

namespace moe_ep::testing {
namespace {

namespace tr = ::moe_ep::transport;
using namespace std::chrono_literals;
using Windows = std::vector<std::unique_ptr<tr::Window>>;

#ifdef MOE_EP_SANITIZED
constexpr int kScale = 4;  // sanitizer builds: a quarter of the rounds
constexpr tr::Clock::duration kSlack = 10s;
#else
constexpr int kScale = 1;
constexpr tr::Clock::duration kSlack = 3s;
#endif

const char* Mutation() { return std::getenv("MOE_EP_CONFORMANCE_MUTANT"); }

bool Faulty() { return Mutation() && std::string_view(Mutation()) != "none"; }

// Deadline of waits that must succeed: generous, but a broken transport fails instead of hanging.
tr::Clock::duration MustArriveWithin() { return Faulty() ? 3s : 60s; }
tr::Clock::time_point Within(tr::Clock::duration d) { return tr::Clock::now() + d; }

// A group as the suite asks for it. The transport may round data_bytes up; Window::data_bytes() says.
struct Shape {
  int size;
  uint64_t data_bytes;
  uint64_t flag_count;
};

// One transport: `open` makes a fresh group and returns windows[r] for every rank r this process hosts
// (null for ranks hosted elsewhere). Joins that are collective run on one thread per rank.
struct Transport {
  std::string name;
  std::function<Windows(const Shape&)> open;
};
void PrintTo(const Transport& t, std::ostream* os) { *os << t.name; }

[[maybe_unused]] Windows OpenThread(const Shape& s) {
  return tr::CreateThreadWindows(s.size, s.data_bytes, s.flag_count, "conformance group");
}

// Every rank a thread of this process, joining over shared memory with a job token of its own.
[[maybe_unused]] Windows OpenShm(const Shape& s) {
  static std::atomic<int> groups{0};
  const std::string job = "conf" + std::to_string(getpid()) + "x" + std::to_string(groups++);
  Windows windows(s.size);
  const auto deadline = Within(60s);
  verify::RunRanks(s.size, [&](int r) {
    windows[r] = tr::JoinShmGroup(job, "conformance", r, s.size, s.data_bytes, s.flag_count, deadline);
  });
  return windows;
}

#ifdef MOE_EP_CONFORMANCE_HOSTS
// One rank per MPI process, over the hosts transport. Group rank g lives on world rank g * W / size (W: the
// job's processes), so that even a 2-rank group spans hosts when the launcher fills hosts slot by slot
// (MOE_EP_HOSTS_SPLIT simulates hosts by group rank instead). A process outside the group gets no window.
// Collective over MPI_COMM_WORLD: every process opens every group of the run, in the same order.
Windows OpenHosts(const Shape& s) {
  int world = 0, me = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  Windows windows(s.size);
  if (s.size > world) {  // the same verdict in every process: nobody joins
    ADD_FAILURE() << "a case of " << s.size << " ranks needs as many MPI processes; this job has " << world;
    return windows;
  }
  int rank = -1;
  for (int g = 0; g < s.size; ++g) {
    if (static_cast<int64_t>(g) * world / s.size == me) rank = g;
  }
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, rank >= 0 ? 0 : MPI_UNDEFINED, rank, &comm);
  if (comm != MPI_COMM_NULL) {
    windows[rank] = tr::JoinHostsGroup(comm, "conformance", s.data_bytes, s.flag_count, Within(60s));
    MPI_Comm_free(&comm);
  }
  return windows;
}

// Whether group rank `g` of an `n`-rank group laid out as OpenHosts lays it out runs on another host than this
// process, hosts as the group's window sees them (MOE_EP_HOSTS_SPLIT counts group ranks). Collective over
// MPI_COMM_WORLD; false in a process outside the group.
bool OnAnotherHost(int g, int n) {
  int world = 0, me = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  int rank = -1;
  for (int r = 0; r < n; ++r) {
    if (static_cast<int64_t>(r) * world / n == me) rank = r;
  }
  const auto lock = tr::mpi::Lock();
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, rank >= 0 ? 0 : MPI_UNDEFINED, rank, &comm);
  if (comm == MPI_COMM_NULL) return false;
  MPI_Comm host = tr::SplitByHost(comm);
  MPI_Group group = MPI_GROUP_NULL, host_group = MPI_GROUP_NULL;
  MPI_Comm_group(comm, &group);
  MPI_Comm_group(host, &host_group);
  int on_this_host = MPI_UNDEFINED;
  MPI_Group_translate_ranks(group, 1, &g, host_group, &on_this_host);
  MPI_Group_free(&host_group);
  MPI_Group_free(&group);
  MPI_Comm_free(&host);
  MPI_Comm_free(&comm);
  return on_this_host == MPI_UNDEFINED;
}
#endif

// ---- Mutants: the thread transport with one deliberate fault, to show that the suite catches it. ----

class Mutant : public tr::Window {
 public:
  Mutant(std::unique_ptr<tr::Window> inner, std::string fault)
      : Window(inner->rank(), inner->size(), inner->data_bytes(), inner->flag_count(), inner->name()),
        inner_(std::move(inner)),
        fault_(std::move(fault)) {}

  void Put(int peer, uint64_t offset, const void* src, uint64_t bytes) override {
    const bool past = offset > data_bytes() || bytes > data_bytes() - offset;
    if (fault_ == "no_put_check" && past) return;                    // silently drops an out-of-range put
    if (fault_ == "partial_put" && past && offset < data_bytes()) {  // writes the part that fits, then throws
      inner_->Put(peer, offset, src, data_bytes() - offset);
    }
    if (fault_ == "drop_byte" && bytes > 0) --bytes;  // loses the last byte of every put
    if (fault_ == "late_put" && !past) {              // the data lands after the signal
      pending_.push_back(
          {peer, offset,
           std::vector<uint8_t>(static_cast<const uint8_t*>(src), static_cast<const uint8_t*>(src) + bytes)});
      return;
    }
    inner_->Put(peer, offset, src, bytes);
  }
  void Signal(int peer, uint64_t index, uint64_t value) override {
    if (fault_ == "no_signal_check" && index >= flag_count() + TransportFlagCount(size())) return;
    inner_->Signal(peer, index, value);
    if (!pending_.empty()) {
      inner_->Progress();  // a message-passing transport: the signal leaves in a message of its own
      std::this_thread::sleep_for(2ms);
      for (const auto& p : pending_) inner_->Put(p.peer, p.offset, p.bytes.data(), p.bytes.size());
      pending_.clear();
    }
  }
  uint64_t ReadFlag(uint64_t index) const override {
    const uint64_t v = inner_->ReadFlag(index);
    const uint64_t f = flag_count(), n = static_cast<uint64_t>(size());
    if (fault_ == "swap_flag_halves" && index < f) return (v << 32) | (v >> 32);     // compares the wrong half
    if (fault_ == "early_barrier" && index >= f && index < f + n) return ~0ull;      // every peer "entered"
    if (fault_ == "probe_all" && index >= f + n && index < f + 2 * n) return ~0ull;  // every peer "probed"
    if (fault_ == "probe_none" && index >= f + n && index < f + 2 * n) return 0;     // no peer ever "probed"
    return v;
  }
  const uint8_t* LocalData() const override { return inner_->LocalData(); }
  const uint8_t* Row(uint64_t offset, uint64_t bytes, uint64_t tag) const override {
    const uint8_t* row = inner_->Row(offset, bytes, tag);
    if (fault_ != "stale_row") return row;
    // Keeps showing the first bytes ever read at each offset.
    return first_rows_.try_emplace(offset, row, row + bytes).first->second.data();
  }
  // A message-passing transport moves data only here (the return type follows Window's).
  using ProgressResult = decltype(std::declval<const tr::Window&>().Progress());
  ProgressResult Progress() const override { return inner_->Progress(); }
  void Flush() const override { inner_->Flush(); }
  bool NapUnless(const std::function<bool()>& done, tr::Clock::duration nap) const override {
    if (fault_ != "deaf_nap") return inner_->NapUnless(done, nap);
    return tr::Window::NapUnless(done, nap);  // the plain sleep of a window without a doorbell: no signal ends it
  }
  tr::Clock::duration LongestNap() const override { return inner_->LongestNap(); }
  uint64_t CompareExchangeFlag(int peer, uint64_t index, uint64_t expected, uint64_t desired) override {
    return inner_->CompareExchangeFlag(peer, index, expected, desired);
  }
  int LocalRanks() const override { return inner_->LocalRanks(); }
  uint64_t Expose(int peer, const void* p, uint64_t bytes) const override { return inner_->Expose(peer, p, bytes); }
  const uint8_t* Resolve(int peer, uint64_t token, uint64_t bytes) const override {
    const uint8_t* p = inner_->Resolve(peer, token, bytes);
    return fault_ == "resolve_shifted" && p ? p + 1 : p;  // one byte off
  }
  bool ExposedByCopy(int peer, uint64_t token) const override { return inner_->ExposedByCopy(peer, token); }
  void ReadExposed(int peer, uint64_t token, std::span<const ExposedRead> reads) const override {
    inner_->ReadExposed(peer, token, reads);
  }
  void EndOperation(uint64_t sequence) override { inner_->EndOperation(sequence); }
  void Drain(tr::Clock::time_point deadline, const char* op, std::span<const int> gone) override {
    inner_->Drain(deadline, op, gone);
  }
  std::string Describe() const override { return inner_->Describe(); }
  std::string ExplainMissing(std::span<const int> missing) const override { return inner_->ExplainMissing(missing); }
  void AllowRelay(bool allowed) override { inner_->AllowRelay(allowed); }
  void BeginRound(uint64_t round) override { inner_->BeginRound(round); }
  void SetFailedPeers(std::span<const int> failed) override { inner_->SetFailedPeers(failed); }
  void ClearLocal(uint64_t cleared_flags) override {
    if (fault_ == "clear_all_flags") cleared_flags = flag_count();
    if (fault_ == "clear_no_flags") cleared_flags = 0;
    if (fault_ == "clear_peer_data") {  // zeroes a peer's data instead of (well, besides) its own
      std::vector<uint8_t> zeros(data_bytes());
      inner_->Put((rank() + 1) % size(), 0, zeros.data(), zeros.size());
    }
    std::vector<uint8_t> keep;
    if (fault_ == "keep_data") keep.assign(LocalData(), LocalData() + data_bytes());
    inner_->ClearLocal(cleared_flags);
    if (fault_ == "keep_data") std::memcpy(const_cast<uint8_t*>(LocalData()), keep.data(), keep.size());
  }

 private:
  struct Pending {
    int peer;
    uint64_t offset;
    std::vector<uint8_t> bytes;
  };
  std::unique_ptr<tr::Window> inner_;
  std::string fault_;
  std::vector<Pending> pending_;
  mutable std::map<uint64_t, std::vector<uint8_t>> first_rows_;  // stale_row
};

// The transports under test. A new transport adds one entry here and one GroupMaker in tools/verify for
// tests/multirank/property_test.cc. The hosts build runs the hosts transport only (its mutants wrap it).
std::vector<Transport> Transports() {
#ifdef MOE_EP_CONFORMANCE_HOSTS
  const std::string base = "hosts_";
  const auto open_base = OpenHosts;
#else
  const std::string base;
  const auto open_base = OpenThread;
#endif
  if (const char* fault = Mutation()) {
    // "none": no fault, the control that must pass the whole suite (a mutant the suite fails for reasons of the
    // Mutant class's own would otherwise pass for caught).
    static const std::string kFaults[] = {"none",
                                          "drop_byte",
                                          "late_put",
                                          "swap_flag_halves",
                                          "clear_all_flags",
                                          "clear_no_flags",
                                          "clear_peer_data",
                                          "keep_data",
                                          "early_barrier",
                                          "probe_all",
                                          "probe_none",
                                          "no_put_check",
                                          "partial_put",
                                          "no_signal_check",
                                          "stale_row",
                                          "resolve_shifted",
                                          "deaf_nap"};
    if (std::find(std::begin(kFaults), std::end(kFaults), fault) == std::end(kFaults)) {
      std::fprintf(stderr, "MOE_EP_CONFORMANCE_MUTANT = '%s' names no fault of the Mutant class\n", fault);
      std::exit(2);  // a misspelt mutant must not pass for one the suite catches
    }
    return {{base + "mutant_" + fault, [fault = std::string(fault), open_base](const Shape& s) {
               Windows windows = open_base(s);
               for (auto& w : windows) {
                 if (w) w = std::make_unique<Mutant>(std::move(w), fault);
               }
               return windows;
             }}};
  }
#ifdef MOE_EP_CONFORMANCE_HOSTS
  return {{"hosts", OpenHosts}};
#else
  return {{"thread", OpenThread}, {"shm", OpenShm}};
#endif
}

// ---- Helpers ----

// A seed per (test, rank, round, ...): SplitMix64 over the base seed and the parts.
uint64_t Mix(uint64_t h, uint64_t v) {
  uint64_t z = h + 0x9E3779B97F4A7C15ull + v;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
template <typename... Parts>
uint64_t SeedOf(uint64_t first, Parts... parts) {
  uint64_t h = Mix(0, first);
  ((h = Mix(h, static_cast<uint64_t>(parts))), ...);
  return h;
}

std::vector<uint8_t> RandomBytes(uint64_t seed, size_t n) {
  std::vector<uint8_t> bytes(n);
  uint64_t state = seed;
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = Mix(state, i);
    std::memcpy(bytes.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return bytes;
}

// "" when [got, got + expected.size()) equals expected, else where and how it first differs.
std::string FirstDifference(const uint8_t* got, const std::vector<uint8_t>& expected, uint64_t base) {
  if (expected.empty() || std::memcmp(got, expected.data(), expected.size()) == 0) return "";
  size_t i = 0;
  while (got[i] == expected[i]) ++i;
  size_t wrong = 0;
  for (size_t j = i; j < expected.size(); ++j) wrong += got[j] != expected[j];
  return "byte " + std::to_string(base + i) + " is " + std::to_string(got[i]) + ", expected " +
         std::to_string(expected[i]) + " (" + std::to_string(wrong) + " bytes differ)";
}

// True when [p, p + n) is all zero.
bool AllZero(const uint8_t* p, uint64_t n) {
  return std::all_of(p, p + n, [](uint8_t b) { return b == 0; });
}

class Conformance : public ::testing::TestWithParam<Transport> {
 protected:
  // windows[r] for every rank r this process hosts, null for the others (other processes: the hosts transport).
  Windows Open(int size, uint64_t data_bytes, uint64_t flag_count) {
    Windows windows = GetParam().open({size, data_bytes, flag_count});
    EXPECT_EQ(windows.size(), static_cast<size_t>(size));
    for (size_t r = 0; r < windows.size(); ++r) {
      if (windows[r]) {
        EXPECT_EQ(windows[r]->rank(), static_cast<int>(r)) << "the window opened as rank " << r;
      }
    }
    return windows;
  }
  // The test's seed: the run's base seed and a number of the test's own.
  static uint64_t Seed(uint64_t salt) { return SeedOf(BaseSeed(), salt); }

  // Runs body(window) for every local rank, each on its own thread; an exception fails the test naming the rank.
  // Then, as every operation ends, EndOperation and Drain: what the body sent reaches its peers, relayed too,
  // before the window may go (a message-passing transport sends only while it waits, and a rank's last act may
  // be a Signal). Every process runs the same bodies in the same order, so their count numbers them alike.
  static void RunRanks(Windows& windows, const std::function<void(tr::Window&)>& body) {
    static std::atomic<uint64_t> bodies{0};
    const uint64_t sequence = ++bodies;
    const auto errors = verify::RunRanksCollect(static_cast<int>(windows.size()), [&](int r) {
      if (!windows[r]) return;
      try {
        body(*windows[r]);
      } catch (...) {
        windows[r]->EndOperation(sequence);  // as an operation does: its peers' relays must not wait for it
        throw;
      }
      windows[r]->EndOperation(sequence);
      windows[r]->Drain(Within(MustArriveWithin()), "conformance", {});
    });
    for (size_t r = 0; r < errors.size(); ++r) {
      if (!errors[r]) continue;
      try {
        std::rethrow_exception(errors[r]);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "rank " << r << " threw: " << e.what();
      }
    }
  }
};

INSTANTIATE_TEST_SUITE_P(Transports, Conformance, ::testing::ValuesIn(Transports()),
                         [](const ::testing::TestParamInfo<Transport>& info) { return info.param.name; });

// ---- The window describes its group ----

// The ranks of a group of n on rank r's host: every one, but across hosts, those of its own (MOE_EP_HOSTS_SPLIT=N:
// hosts of N consecutive ranks); 0 where the test cannot tell (hosts by processor name: network namespaces).
int LocalRanksOf(int n, int r) {
#ifdef MOE_EP_CONFORMANCE_HOSTS
  const char* split = std::getenv("MOE_EP_HOSTS_SPLIT");
  const int per_host = split ? std::atoi(split) : 0;
  return per_host > 0 ? std::min(per_host, n - r / per_host * per_host) : 0;
#else
  (void)r;
  return n;
#endif
}

TEST_P(Conformance, WindowsDescribeTheirGroup) {
  const int n = 3;
  constexpr uint64_t kFlags = 7;
  Windows w = Open(n, 10000, kFlags);
  RunRanks(w, [&](tr::Window& win) {
    const int r = win.rank();
    EXPECT_EQ(win.size(), n);
    EXPECT_GE(win.data_bytes(), 10000u);  // rounding up is allowed, never down
    EXPECT_EQ(win.flag_count(), kFlags);
    const int local = LocalRanksOf(n, r);
    if (local > 0) {
      EXPECT_EQ(win.LocalRanks(), local) << "rank " << r << ": the ranks sharing its host";
    }
    EXPECT_TRUE(win.LocalRanks() >= 1 && win.LocalRanks() <= n) << "rank " << r << ": " << win.LocalRanks();
    EXPECT_TRUE(AllZero(win.LocalData(), win.data_bytes())) << "rank " << r << ": a fresh window's data is not zero";
    // The user's flags start at zero (the transport's own may already hold a join barrier's stamps).
    for (uint64_t i = 0; i < kFlags; ++i) EXPECT_EQ(win.ReadFlag(i), 0u) << "rank " << r << " flag " << i;
    win.Barrier(Within(MustArriveWithin()), "every rank has looked at its fresh window");
    // Every rank has the same data_bytes: each tells every rank its own, in flag `its rank`.
    for (int peer = 0; peer < n; ++peer) win.Signal(peer, r, win.data_bytes());
    win.Barrier(Within(MustArriveWithin()), "every rank has told its size");
    for (int peer = 0; peer < n; ++peer) {
      EXPECT_EQ(win.ReadFlag(peer), win.data_bytes())
          << "rank " << peer << "'s data area differs from rank " << r << "'s";
    }
  });
}

// ---- Put, then Signal: after seeing the flag, the reader sees every byte ----

// What `writer` sends in `round`: a random range of the data area in 1..4 puts, with fresh bytes.
struct Payload {
  uint64_t offset;
  std::vector<uint8_t> bytes;
  std::vector<uint64_t> cuts;  // put boundaries inside bytes: 0 = cuts[0] < ... < cuts.back() = size
};
Payload DrawPayload(uint64_t seed, int writer, int round, uint64_t data_bytes) {
  std::mt19937_64 rng(SeedOf(seed, writer, round));
  Payload p;
  const uint64_t length = std::uniform_int_distribution<uint64_t>(data_bytes / 4, data_bytes)(rng);
  p.offset = std::uniform_int_distribution<uint64_t>(0, data_bytes - length)(rng);
  p.bytes = RandomBytes(rng(), length);
  p.cuts = {0, length};
  const int puts = std::uniform_int_distribution<int>(1, 4)(rng);
  for (int i = 1; i < puts; ++i) p.cuts.push_back(std::uniform_int_distribution<uint64_t>(1, length - 1)(rng));
  std::sort(p.cuts.begin(), p.cuts.end());
  p.cuts.erase(std::unique(p.cuts.begin(), p.cuts.end()), p.cuts.end());
  return p;
}

TEST_P(Conformance, EveryBytePutBeforeASignalIsSeenAfterIt) {
  const int n = 4, rounds = 200 / kScale;
  const uint64_t seed = Seed(1);
  constexpr uint64_t kData = 0, kAck = 1;
  Windows w = Open(n, 512 << 10, 2);
  RunRanks(w, [&](tr::Window& win) {
    const int r = win.rank(), next = (r + 1) % n, prev = (r + n - 1) % n;
    for (int k = 0; k < rounds; ++k) {
      const uint32_t epoch = static_cast<uint32_t>(tr::EpochOf(k));
      const Payload out = DrawPayload(seed, r, k, win.data_bytes());
      for (size_t c = 0; c + 1 < out.cuts.size(); ++c) {
        win.Put(next, out.offset + out.cuts[c], out.bytes.data() + out.cuts[c], out.cuts[c + 1] - out.cuts[c]);
      }
      win.Signal(next, kData, tr::MakeFlag(epoch, static_cast<uint32_t>(out.cuts.size() - 1)));

      const Payload in = DrawPayload(seed, prev, k, win.data_bytes());
      const uint64_t flag =
          tr::WaitFlag(win, kData, epoch, Within(MustArriveWithin()), prev, "conformance", "a payload");
      EXPECT_EQ(tr::FlagCount(flag), in.cuts.size() - 1) << "rank " << r << " round " << k;
      const std::string diff = FirstDifference(win.LocalData() + in.offset, in.bytes, in.offset);
      if (!diff.empty()) {
        ADD_FAILURE() << "rank " << r << " round " << k << ", payload of " << in.bytes.size() << " bytes from rank "
                      << prev << ": " << diff;
        return;  // the peers then time out on the acknowledgement
      }
      win.Signal(prev, kAck, tr::MakeFlag(epoch, 0));  // the writer may overwrite now
      tr::WaitFlag(win, kAck, epoch, Within(MustArriveWithin()), next, "conformance", "an acknowledgement");
    }
  });
}

// One burst, then trickles, each its own operation, between pairs of 4 ranks: a burst of 4 MiB in 64 puts that the
// reader lets pile up (it waits 300 ms before polling), then 10 rounds of a few bytes, each sent as soon as the
// writer's previous operation ended. Every byte arrives. The hosts transport keeps more receives posted after the burst
// and is back to its fewest after the trickles (Describe says how many).
TEST_P(Conformance, BurstsThenTricklesArriveWhole) {
  const int n = 4, trickles = 10;
  const uint64_t seed = Seed(11), burst = 4 << 20, pieces = 64;
  constexpr uint64_t kData = 0, kAck = 1;
  Windows w = Open(n, burst, 2);
  // What `writer` puts in `round`: the burst, then a few bytes at a fresh offset.
  const auto payload = [&](int writer, int round) {
    std::mt19937_64 rng(SeedOf(seed, writer, round));
    const uint64_t length = round == 0 ? burst : std::uniform_int_distribution<uint64_t>(1, 512)(rng);
    return std::pair{std::uniform_int_distribution<uint64_t>(0, burst - length)(rng), RandomBytes(rng(), length)};
  };
  std::vector<uint64_t> posted_after;  // per round, for the hosts transport: receives posted on a rank here
  for (int round = 0; round <= trickles; ++round) {
    const uint32_t epoch = static_cast<uint32_t>(tr::EpochOf(round));
    RunRanks(w, [&](tr::Window& win) {
      const int r = win.rank(), peer = (r + n / 2) % n;  // on another host wherever hosts are split evenly
      const auto [offset, out] = payload(r, round);
      const uint64_t piece = (out.size() + pieces - 1) / pieces;
      for (uint64_t at = 0; at < out.size(); at += piece) {
        win.Put(peer, offset + at, out.data() + at, std::min(piece, out.size() - at));
      }
      win.Signal(peer, kData, tr::MakeFlag(epoch, 1));
      if (round == 0) std::this_thread::sleep_for(300ms);
      tr::WaitFlag(win, kData, epoch, Within(MustArriveWithin()), peer, "conformance", "a payload");
      const auto [in_offset, in] = payload(peer, round);
      EXPECT_EQ(FirstDifference(win.LocalData() + in_offset, in, in_offset), "")
          << "rank " << r << " round " << round << ", " << in.size() << " bytes from rank " << peer;
      win.Signal(peer, kAck, tr::MakeFlag(epoch, 0));  // the writer may write again
      tr::WaitFlag(win, kAck, epoch, Within(MustArriveWithin()), peer, "conformance", "an acknowledgement");
    });
    if (HasFailure()) return;  // a round that failed fails every later one too, each after its deadline
#ifdef MOE_EP_CONFORMANCE_HOSTS
    for (const auto& win : w) {
      if (!win) continue;
      // "..., N receives posted ahead (FEWEST to MOST as the traffic asks), ..."
      const std::string text = win->Describe();
      const size_t posted = text.find(" receives posted ahead (");
      ASSERT_NE(posted, std::string::npos) << text;
      const size_t at = text.rfind(", ", posted) + 2, floor_at = text.find('(', posted) + 1;
      posted_after.push_back(std::stoull(text.substr(at)));
      if (round == trickles) {
        const uint64_t fewest = std::stoull(text.substr(floor_at));
        EXPECT_GT(posted_after.front(), fewest) << "after the burst: " << text;
        EXPECT_EQ(posted_after.back(), fewest) << "after " << trickles << " trickles: " << text;
      }
      break;
    }
#endif
  }
}

// ---- Flag words and epochs ----

TEST(FlagWords, MakeFlagKeepsEpochAndCountApart) {
  std::mt19937_64 rng(SeedOf(BaseSeed(), 2));
  for (int i = 0; i < 100000; ++i) {
    const uint64_t epoch = std::uniform_int_distribution<uint64_t>(1, 0xFFFFFFFFull)(rng);
    const uint32_t count = static_cast<uint32_t>(rng());
    const uint64_t flag = tr::MakeFlag(epoch, count);
    ASSERT_EQ(tr::FlagEpoch(flag), epoch) << epoch << " " << count;
    ASSERT_EQ(tr::FlagCount(flag), count) << epoch << " " << count;
    ASSERT_NE(flag, 0u);  // a nonzero epoch never reads as zeroed memory
  }
  EXPECT_EQ(tr::MakeFlag(0xFFFFFFFFull, 0xFFFFFFFFu), ~0ull);
  EXPECT_EQ(tr::FlagEpoch(tr::MakeFlag(1, 0xFFFFFFFFu)), 1u);
}

TEST(FlagWords, EpochsCountFromOneAndWrapWithoutZero) {
  EXPECT_EQ(tr::EpochOf(0), 1u);
  EXPECT_EQ(tr::EpochOf(1), 2u);
  EXPECT_EQ(tr::EpochOf(0xFFFFFFFEull), 0xFFFFFFFFull);
  EXPECT_EQ(tr::EpochOf(0xFFFFFFFFull), 1u);  // wraps inside 32 bits, skipping 0
  EXPECT_EQ(tr::EpochOf(2 * 0xFFFFFFFFull - 1), 0xFFFFFFFFull);
  std::mt19937_64 rng(SeedOf(BaseSeed(), 3));
  for (int i = 0; i < 100000; ++i) {
    const uint64_t call = rng();
    const uint64_t epoch = tr::EpochOf(call);
    ASSERT_GE(epoch, 1u) << call;
    ASSERT_LE(epoch, 0xFFFFFFFFull) << call;
    ASSERT_EQ(epoch, call % 0xFFFFFFFFull + 1) << call;
    ASSERT_NE(tr::EpochOf(call + 1), epoch) << call;  // consecutive calls never share an epoch
  }
}

// Rows (PutRow, read through Row with the put's tag) on a ring of 4, 3 rounds at the same offsets, one round per
// operation: rows put with PutRow, of which the reader reads only every other one; then plain puts over all of
// them; then puts and rows alternating. Every read shows the bytes of its own round, never a row left unread by
// an earlier one.
TEST_P(Conformance, RowsShowTheirOwnPutNeverAnEarlierOne) {
  const int n = 4, rows = 12;
  const uint64_t seed = Seed(10);
  constexpr uint64_t kData = 0, kAck = 1, kStride = 8192;
  Windows w = Open(n, rows * kStride, 2);
  // The bytes `writer` puts at row i in `round` (a fresh length each time).
  const auto row_bytes = [&](int writer, int round, int i) {
    std::mt19937_64 rng(SeedOf(seed, writer, round, i));
    return RandomBytes(rng(), std::uniform_int_distribution<uint64_t>(1, kStride)(rng));
  };
  for (int round = 0; round < 3; ++round) {
    const uint32_t epoch = static_cast<uint32_t>(tr::EpochOf(round));
    RunRanks(w, [&](tr::Window& win) {
      const int r = win.rank(), next = (r + 1) % n, prev = (r + n - 1) % n;
      for (int i = 0; i < rows; ++i) {
        const std::vector<uint8_t> out = row_bytes(r, round, i);
        // Round 2 starts with a plain put and alternates: puts and rows to one peer in one operation.
        if (round == 1 || (round == 2 && i % 2 == 0)) {
          win.Put(next, i * kStride, out.data(), out.size());
        } else {
          win.PutRow(next, i * kStride, out.data(), out.size(), epoch);
        }
      }
      win.Signal(next, kData, tr::MakeFlag(epoch, rows));
      tr::WaitFlag(win, kData, epoch, Within(MustArriveWithin()), prev, "conformance", "the rows");
      for (int i = 0; i < rows; ++i) {
        if (round == 0 && i % 2 == 1) continue;  // left unread
        const std::vector<uint8_t> in = row_bytes(prev, round, i);
        const std::string diff = FirstDifference(win.Row(i * kStride, in.size(), epoch), in, i * kStride);
        EXPECT_EQ(diff, "") << "rank " << r << " round " << round << ", row " << i << " from rank " << prev;
      }
      win.Signal(prev, kAck, tr::MakeFlag(epoch, 0));  // the writer may overwrite now
      tr::WaitFlag(win, kAck, epoch, Within(MustArriveWithin()), next, "conformance", "an acknowledgement");
    });
    if (HasFailure()) return;  // a round that failed fails every later one too, each after its deadline
  }
}

#ifdef MOE_EP_CONFORMANCE_HOSTS
// A row that lands late, after a fresh row of another tag at its offset (an operation that failed on its sender, whose
// row reaches the reader after the reset, when another peer already sent the next operation's): both stay readable
// by their tags, whichever landed first. Only where rows stay in their messages: the last two ranks, on other hosts
// than rank 0's (hosts are runs of consecutive ranks), write to rank 0; the later put carries the older tag.
TEST_P(Conformance, ALateRowNeverHidesTheFreshRowAtItsOffset) {
  const int n = 4;
  const uint64_t seed = Seed(11);
  constexpr uint64_t kFresh = 0, kGo = 1, kLate = 2, kOffset = 4096;
  constexpr uint32_t kFreshTag = 7, kLateTag = 6;
  Windows w = Open(n, 2 * kOffset, 3);
  const int fresh_writer = n - 1, late_writer = n - 2;
  const auto bytes_of = [&](int writer) {
    std::mt19937_64 rng(SeedOf(seed, writer));
    // Short enough for one message of the smallest the suite runs with (a longer row goes as plain puts).
    return RandomBytes(rng(), std::uniform_int_distribution<uint64_t>(1, 512)(rng));
  };
  RunRanks(w, [&](tr::Window& win) {
    ASSERT_LE(win.LocalRanks(), late_writer) << "the writers share rank 0's host: this checks nothing";
    const int r = win.rank();
    const uint64_t flag = tr::MakeFlag(kFreshTag, 1);
    if (r == fresh_writer) {
      const std::vector<uint8_t> out = bytes_of(r);
      win.PutRow(0, kOffset, out.data(), out.size(), kFreshTag);
      win.Signal(0, kFresh, flag);
    } else if (r == late_writer) {
      tr::WaitFlag(win, kGo, kFreshTag, Within(MustArriveWithin()), 0, "conformance", "rank 0's go");
      const std::vector<uint8_t> out = bytes_of(r);
      win.PutRow(0, kOffset, out.data(), out.size(), kLateTag);
      win.Signal(0, kLate, flag);
    } else if (r == 0) {
      tr::WaitFlag(win, kFresh, kFreshTag, Within(MustArriveWithin()), fresh_writer, "conformance", "the fresh row");
      win.Signal(late_writer, kGo, flag);
      tr::WaitFlag(win, kLate, kFreshTag, Within(MustArriveWithin()), late_writer, "conformance", "the late row");
      for (const auto& [writer, tag] : {std::pair{fresh_writer, kFreshTag}, {late_writer, kLateTag}}) {
        const std::vector<uint8_t> in = bytes_of(writer);
        EXPECT_EQ(FirstDifference(win.Row(kOffset, in.size(), tag), in, kOffset), "")
            << "the row of tag " << tag << " from rank " << writer;
      }
    }
  });
}
#endif

#ifdef MOE_EP_CONFORMANCE_HOSTS
// Whether `win` is one of two hosts of two ranks, two-level (hosts are runs of consecutive ranks): alike on every rank
// (the join agrees on the layout and the path).
bool TwoHostsOfTwoRelaying(const tr::Window& win) {
  return win.size() == 4 && win.LocalRanks() == 2 && win.Describe().find("two-level") != std::string::npos;
}

// A put of a failed operation that its sender sent through another relay than its usual one (it had given the usual
// one up: its own timeout, while the others had not), still unlanded when the ranks begin a reset's round: the round's
// own put, sent straight, lands first, and the late one, which the other relay hands on only afterwards, must not
// overwrite it. Rank 0 puts to rank 2 (its usual relay on the other host) through rank 3, which polls only once rank 2
// has the new round's bytes, and then until a signal rank 0 sent it after the late put (in the new round) lands.
TEST_P(Conformance, AnEarlierRoundsLatePutNeverOverwritesTheNewRounds) {
  const int n = 4;
  const uint64_t seed = Seed(12);
  constexpr uint64_t kFresh = 0, kSeen = 1, kAfter = 2, kLanded = 3, kOffset = 512, kRound = 5;
  Windows w = Open(n, 2 * kOffset, 4);
  const int sender = 0, target = 2, other_relay = 3;
  // Both puts cover the same kOffset bytes, so the late one would hide the fresh one whole.
  const auto bytes_of = [&](int which) { return RandomBytes(SeedOf(seed, which), kOffset); };
  const uint32_t epoch = static_cast<uint32_t>(tr::EpochOf(0));
  const uint64_t flag = tr::MakeFlag(epoch, 1);
  RunRanks(w, [&](tr::Window& win) {
    if (!TwoHostsOfTwoRelaying(win)) GTEST_SKIP() << "needs two hosts of two ranks, two-level: " << win.Describe();
    const int r = win.rank();
    if (r == sender) {
      const std::vector<int> usual_relay_given_up{target};
      win.SetFailedPeers(usual_relay_given_up);
      const std::vector<uint8_t> late = bytes_of(0);
      win.Put(target, kOffset, late.data(), late.size());
      win.BeginRound(kRound);
      win.Signal(other_relay, kAfter, flag);  // straight to it (its own relay given up too), behind the late put
      win.Flush();
      win.SetFailedPeers({});  // the reset: every rank is reached again, by its usual path
      const std::vector<uint8_t> fresh = bytes_of(1);
      win.Put(target, kOffset, fresh.data(), fresh.size());
      win.Signal(target, kFresh, flag);
    } else if (r == other_relay) {
      win.BeginRound(kRound);
      // No poll (a wait, Progress) until the target has the new round's bytes: the late put waits here, unlanded.
      const auto deadline = Within(MustArriveWithin());
      while (win.ReadFlag(kSeen) != flag) {
        if (tr::Clock::now() > deadline) FAIL() << "rank " << target << " never said it had the new round's bytes";
        std::this_thread::sleep_for(1ms);
      }
      tr::WaitFlag(win, kAfter, epoch, Within(MustArriveWithin()), sender, "conformance", "the signal after the put");
      win.Signal(target, kLanded, flag);  // on this host: straight into its window
    } else if (r == target) {
      win.BeginRound(kRound);
      const std::vector<uint8_t> fresh = bytes_of(1);
      tr::WaitFlag(win, kFresh, epoch, Within(MustArriveWithin()), sender, "conformance", "the new round's put");
      EXPECT_EQ(FirstDifference(win.LocalData() + kOffset, fresh, kOffset), "") << "the new round's put";
      win.Signal(other_relay, kSeen, flag);
      tr::WaitFlag(win, kLanded, epoch, Within(MustArriveWithin()), other_relay, "conformance", "the late put landed");
      EXPECT_EQ(FirstDifference(win.LocalData() + kOffset, fresh, kOffset), "")
          << "after rank " << other_relay << " handed on the earlier round's put";
    }
  });
}

// A relay that began a newer round (its operation failed and it is resetting) while a rank it relays to is still in
// the operation: it drops the sender's rows, and must drop the flag that says they arrived too, or that rank would
// read what never came. Rank 0 puts and signals to rank 3 through rank 2 (its usual relay there), which is in round 5,
// then (in round 5) signals rank 2 itself on the same channel; once rank 2 has that, it has handled the others, and
// tells rank 3, which then holds the rows' flag only with the rows.
TEST_P(Conformance, ARelayInANewerRoundNeverHandsOnAFlagWithoutItsRows) {
  const int n = 4;
  const uint64_t seed = Seed(13);
  constexpr uint64_t kData = 0, kAfter = 1, kHandled = 2, kOffset = 512, kRound = 5;
  Windows w = Open(n, 2 * kOffset, 3);
  const int sender = 0, relay = 2, target = 3;
  const std::vector<uint8_t> rows = RandomBytes(SeedOf(seed, 0), kOffset);
  const uint32_t epoch = static_cast<uint32_t>(tr::EpochOf(0));
  const uint64_t flag = tr::MakeFlag(epoch, 1);
  RunRanks(w, [&](tr::Window& win) {
    if (!TwoHostsOfTwoRelaying(win)) GTEST_SKIP() << "needs two hosts of two ranks, two-level: " << win.Describe();
    const int r = win.rank();
    if (r == sender) {
      win.Put(target, kOffset, rows.data(), rows.size());
      win.Signal(target, kData, flag);
      win.BeginRound(kRound);
      win.Signal(relay, kAfter, flag);
    } else if (r == relay) {
      win.BeginRound(kRound);
      tr::WaitFlag(win, kAfter, epoch, Within(MustArriveWithin()), sender, "conformance", "the signal after the rows");
      win.Signal(target, kHandled, flag);  // on this host: straight into its window
    } else if (r == target) {
      tr::WaitFlag(win, kHandled, epoch, Within(MustArriveWithin()), relay, "conformance", "the relay's word");
      if (win.ReadFlag(kData) == flag) {
        EXPECT_EQ(FirstDifference(win.LocalData() + kOffset, rows, kOffset), "") << "the flag came without its rows";
      }
    }
  });
}
#endif

// The bytes a peer exposed under `token`: read in place (Resolve), or copied out (ReadExposed) in pieces of
// random sizes in random order, more of them than one kernel call takes.
std::vector<uint8_t> ReadExposedBytes(const tr::Window& win, int peer, uint64_t token, size_t n, uint64_t seed,
                                      std::atomic<int>& by_copy) {
  if (const uint8_t* p = win.Resolve(peer, token, n)) return {p, p + n};
  ++by_copy;
  std::vector<uint8_t> out(n, 0xA5);
  if (!win.ExposedByCopy(peer, token)) {
    ADD_FAILURE() << "rank " << win.rank() << ": rank " << peer << "'s nonzero token " << token
                  << " is readable neither in place nor by copy";
    return out;
  }
  std::mt19937_64 rng(seed);
  std::vector<tr::Window::ExposedRead> reads;
  for (size_t at = 0; at < n;) {
    const size_t piece = std::min<size_t>(n - at, 1 + rng() % 64);
    reads.push_back({out.data() + at, at, piece});
    at += piece;
  }
  std::shuffle(reads.begin(), reads.end(), rng);
  win.ReadExposed(peer, token, reads);
  return out;
}

// With MOE_EP_CROSS_MEMORY=1, so that process ranks read private memory by copy.
TEST_P(Conformance, ExposedBytesAreReadInPlaceOrByCopy) {
  const int n = 4;
  const uint64_t seed = Seed(11);
  constexpr uint64_t kLow = 0, kHigh = 1, kRead = 2, kWritten = 3, kDone = 4;
  const uint32_t epoch = static_cast<uint32_t>(tr::EpochOf(0));
  const moe_ep::testing::ScopedEnv cross_memory("MOE_EP_CROSS_MEMORY", "1");
  Windows w = Open(n, 4096, 8);
  // Whether each rank is on another host than this process: only the hosts transport, between hosts, exposes nothing
  // (token 0); a case that read nothing would check nothing.
  std::vector<bool> elsewhere(n, false);
#ifdef MOE_EP_CONFORMANCE_HOSTS
  for (int g = 0; g < n; ++g) elsewhere[g] = OnAnotherHost(g, n);
#endif
  std::atomic<int> read_by_copy{0};
  RunRanks(w, [&](tr::Window& win) {
    const int r = win.rank(), next = (r + 1) % n, prev = (r + n - 1) % n;
    const auto bytes_of = [&](int owner, int version) {  // the same length in every version
      return RandomBytes(SeedOf(seed, owner, version), 1 + SeedOf(seed, owner) % 100000);
    };
    std::vector<uint8_t> mine = bytes_of(r, 0);
    const uint64_t token = win.Expose(next, mine.data(), mine.size());
    win.Signal(next, kLow, tr::MakeFlag(epoch, static_cast<uint32_t>(token)));
    win.Signal(next, kHigh, tr::MakeFlag(epoch, static_cast<uint32_t>(token >> 32)));
    tr::WaitFlag(win, kLow, epoch, Within(MustArriveWithin()), prev, "conformance", "the token");
    const uint64_t theirs = uint64_t{tr::FlagCount(tr::WaitFlag(win, kHigh, epoch, Within(MustArriveWithin()), prev,
                                                                "conformance", "the token"))}
                                << 32 |
                            tr::FlagCount(win.ReadFlag(kLow));
    const std::vector<uint8_t> expected = bytes_of(prev, 0);
    EXPECT_EQ(theirs == 0, elsewhere[prev]) << "rank " << r << ": rank " << prev << "'s token is " << theirs;
    if (theirs != 0) {
      const std::vector<uint8_t> read =
          ReadExposedBytes(win, prev, theirs, expected.size(), SeedOf(seed, r, 0), read_by_copy);
      EXPECT_EQ(FirstDifference(read.data(), expected, 0), "")
          << "rank " << r << " reading rank " << prev << "'s bytes";
    }
    // The owner writes new bytes in place (no Put, no Signal ordering them): the reader sees them once told.
    win.Signal(prev, kRead, tr::MakeFlag(epoch, 0));
    tr::WaitFlag(win, kRead, epoch, Within(MustArriveWithin()), next, "conformance", "the first read");
    const std::vector<uint8_t> rewrite = bytes_of(r, 1);  // as long as the first version
    std::copy(rewrite.begin(), rewrite.end(), mine.begin());
    win.Signal(next, kWritten, tr::MakeFlag(epoch, 0));
    tr::WaitFlag(win, kWritten, epoch, Within(MustArriveWithin()), prev, "conformance", "the rewrite");
    if (theirs != 0) {
      const std::vector<uint8_t> read =
          ReadExposedBytes(win, prev, theirs, expected.size(), SeedOf(seed, r, 1), read_by_copy);
      EXPECT_EQ(FirstDifference(read.data(), bytes_of(prev, 1), 0), "")
          << "rank " << r << " rereading rank " << prev << "'s bytes";
    }
    win.Signal(prev, kDone, tr::MakeFlag(epoch, 0));  // the owner may free its buffer now
    tr::WaitFlag(win, kDone, epoch, Within(MustArriveWithin()), next, "conformance", "the reader's end");
    win.Drain(Within(MustArriveWithin()), "conformance", {});
  });
  // Process ranks (here threads of one process behind the shm transport) read every private buffer by copy.
  if (GetParam().name == "shm") {
    EXPECT_EQ(read_by_copy.load(), 2 * n);
  }
}

TEST_P(Conformance, WaitFlagsAcceptsOnlyTheAwaitedEpoch) {
  std::mt19937_64 rng(Seed(4));
  const uint32_t epoch = std::uniform_int_distribution<uint32_t>(2, 0xFFFFFFFEu)(rng);
  uint32_t count = static_cast<uint32_t>(rng());
  if (count == epoch) ++count;
  const uint32_t other = epoch ^ std::uniform_int_distribution<uint32_t>(1, 0xFFFFFFFFu)(rng);
  // Stale words: the neighbouring epochs, a far one, and one whose count (not epoch) is the awaited value.
  const std::vector<uint64_t> stale = {tr::MakeFlag(epoch - 1, count), tr::MakeFlag(epoch + 1, count),
                                       tr::MakeFlag(other, count), tr::MakeFlag(other, epoch)};
  constexpr uint64_t kFlag = 5;
  Windows w = Open(2, 4096, 8);
  RunRanks(w, [&](tr::Window& win) {
    const auto all_from_0 = [](uint64_t) { return 0; };
    const std::vector<uint64_t> indices = {kFlag};
    if (win.rank() == 1) {  // never signalled: zero is no epoch
      EXPECT_THROW(tr::WaitFlags(win, indices, epoch, Within(20ms), all_from_0, "conformance", "a flag"), TimeoutError);
    }
    for (const uint64_t word : stale) {
      if (win.rank() == 0) win.Signal(1, kFlag, word);
      win.Barrier(Within(MustArriveWithin()), "the stale word is stored");
      if (win.rank() == 1) {
        EXPECT_EQ(win.ReadFlag(kFlag), word);
        EXPECT_THROW(tr::WaitFlags(win, indices, epoch, Within(20ms), all_from_0, "conformance", "a flag"),
                     TimeoutError)
            << "stale word 0x" << std::hex << word << " satisfied epoch 0x" << epoch;
        EXPECT_THROW(tr::WaitFlag(win, kFlag, epoch, Within(20ms), 0, "conformance", "a flag"), TimeoutError)
            << "stale word 0x" << std::hex << word << " satisfied epoch 0x" << epoch;
      }
      win.Barrier(Within(MustArriveWithin()), "the stale word is checked");
    }
    if (win.rank() == 0) win.Signal(1, kFlag, tr::MakeFlag(epoch, count));
    if (win.rank() == 1) {
      EXPECT_NO_THROW(
          tr::WaitFlags(win, indices, epoch, Within(MustArriveWithin()), all_from_0, "conformance", "a flag"));
      EXPECT_EQ(win.ReadFlag(kFlag), tr::MakeFlag(epoch, count));
      EXPECT_EQ(tr::WaitFlag(win, kFlag, epoch, Within(MustArriveWithin()), 0, "conformance", "a flag"),
                tr::MakeFlag(epoch, count));
    }
  });
}

// ---- ClearLocal ----

// In round k every rank fills slice w of every rank's data area (w = its own rank) and every flag i with
// i % size == w; then rank k % size clears with cleared_flags[k]. Each rank checks its own window.
TEST_P(Conformance, ClearLocalZeroesDataAndTheFirstFlagsOnly) {
  const int n = 3;
  constexpr uint64_t kFlags = 1000;  // 8000 bytes of flags: a whole page and an edge of another
  std::mt19937_64 rng(Seed(5));
  std::vector<uint64_t> cleared = {0, 1, 511, 512, 513, kFlags - 1, kFlags, kFlags + 7, ~0ull};
  cleared.push_back(std::uniform_int_distribution<uint64_t>(2, kFlags - 2)(rng));
  const uint64_t seed = rng();
  Windows w = Open(n, (48 << 10) + 100, kFlags);
  RunRanks(w, [&](tr::Window& win) {
    const int me = win.rank();
    const uint64_t d = win.data_bytes(), slice = d / n;
    const auto slice_of = [&](int writer) {  // [begin, end) of writer's slice
      return std::pair<uint64_t, uint64_t>(writer * slice, writer == n - 1 ? d : (writer + 1) * slice);
    };
    const auto flag_value = [&](size_t round, int target, uint64_t i) { return SeedOf(seed, round, target, i) | 1; };
    const auto transport_flags_set = [&] {  // every barrier and probe stamp is still there
      for (uint64_t i = kFlags; i < kFlags + tr::Window::TransportFlagCount(n); ++i) {
        if (win.ReadFlag(i) == 0) return false;
      }
      return true;
    };
    EXPECT_EQ(win.Probe(MustArriveWithin()), std::vector<int32_t>(n, 1));  // stamps the probe flags
    for (size_t k = 0; k < cleared.size(); ++k) {
      for (int t = 0; t < n; ++t) {
        const auto [begin, end] = slice_of(me);
        const auto bytes = RandomBytes(SeedOf(seed, k, me, t), end - begin);
        win.Put(t, begin, bytes.data(), bytes.size());
        for (uint64_t i = me; i < kFlags; i += n) win.Signal(t, i, flag_value(k, t, i));
      }
      win.Barrier(Within(MustArriveWithin()), "every window is filled");
      const int clearer = static_cast<int>(k % n);
      if (me == clearer) win.ClearLocal(cleared[k]);
      win.Barrier(Within(MustArriveWithin()), "the window is cleared");

      const std::string where = "rank " + std::to_string(me) + ", round " + std::to_string(k) + " (rank " +
                                std::to_string(clearer) + " cleared " + std::to_string(cleared[k]) + " flags)";
      if (me == clearer) {
        EXPECT_TRUE(AllZero(win.LocalData(), d)) << where << ": data not zeroed";
      } else {
        for (int writer = 0; writer < n; ++writer) {
          const auto [begin, end] = slice_of(writer);
          const std::string diff =
              FirstDifference(win.LocalData() + begin, RandomBytes(SeedOf(seed, k, writer, me), end - begin), begin);
          EXPECT_EQ(diff, "") << where << ": a peer's clear touched this rank's data";
        }
      }
      const uint64_t zeroed = me == clearer ? std::min(cleared[k], kFlags) : 0;
      uint64_t wrong = 0, first_wrong = kFlags;
      for (uint64_t i = 0; i < kFlags; ++i) {
        const uint64_t expected = i < zeroed ? 0 : flag_value(k, me, i);
        if (win.ReadFlag(i) != expected) {
          ++wrong;
          first_wrong = std::min(first_wrong, i);
        }
      }
      EXPECT_EQ(wrong, 0u) << where << ": " << wrong << " user flags wrong, the first is flag " << first_wrong
                           << " (flags [0, " << zeroed << ") must be zero, the others keep their values)";
      EXPECT_TRUE(transport_flags_set()) << where << ": the transport's own flags were cleared";
      win.Barrier(Within(MustArriveWithin()), "every window is checked");
    }
  });
}

// ---- Barrier ----

// Before barrier k every rank stores k into its "entered" flag at every peer (one rank, drawn anew each
// time, dawdles first); after it, every peer's flag must read k (or k + 1: that peer already left).
TEST_P(Conformance, NoRankLeavesABarrierBeforeAllEntered) {
  const int n = 4, barriers = 100 / kScale;
  const uint64_t seed = Seed(6);
  Windows w = Open(n, 4096, n);
  RunRanks(w, [&](tr::Window& win) {
    for (int k = 1; k <= barriers; ++k) {
      std::mt19937_64 rng(SeedOf(seed, k));
      if (win.rank() == static_cast<int>(rng() % n))
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
      for (int peer = 0; peer < n; ++peer) win.Signal(peer, win.rank(), k);
      win.Barrier(Within(MustArriveWithin()), "the conformance test");
      for (int peer = 0; peer < n; ++peer) {
        const uint64_t entered = win.ReadFlag(peer);
        EXPECT_TRUE(entered == static_cast<uint64_t>(k) || entered == static_cast<uint64_t>(k) + 1)
            << "rank " << win.rank() << " left barrier " << k << " while rank " << peer << " was at " << entered;
      }
    }
  });
}

// The absent rank rejoins once every other rank has given up on it (each says so in flag `its rank`): it
// enters the barrier they abandoned, then the next one with them, so the group ends in step with nothing in
// flight (ranks in other processes would otherwise leave stamps undelivered).
TEST_P(Conformance, BarrierTimesOutNamingTheRankThatNeverEnters) {
  const int n = 4, absent = 2;
  const auto wait = 200ms;
#ifdef MOE_EP_CONFORMANCE_HOSTS
  const bool remote_absent = OnAnotherHost(absent, n);
#endif
  Windows w = Open(n, 4096, n);
  RunRanks(w, [&](tr::Window& win) {
    win.Barrier(Within(MustArriveWithin()), "everyone");  // all present once
    if (win.rank() == absent) {
      std::vector<uint64_t> others;
      for (int r = 0; r < n; ++r) {
        if (r != absent) others.push_back(r);
      }
      tr::WaitFlags(
          win, others, 1, Within(MustArriveWithin()), [](uint64_t i) { return static_cast<int>(i); }, "conformance",
          "the others to give up on the barrier");
      win.Barrier(Within(MustArriveWithin()), "the barrier the others gave up");
      win.Barrier(Within(MustArriveWithin()), "the absent rank's return");
      return;
    }
    const auto start = tr::Clock::now();
    try {
      win.Barrier(start + wait, "the conformance test");
      ADD_FAILURE() << "rank " << win.rank() << " passed a barrier that rank " << absent << " never entered";
    } catch (const TimeoutError& e) {
      const auto elapsed = tr::Clock::now() - start;
      EXPECT_GE(elapsed, wait);
      EXPECT_LE(elapsed, wait + kSlack);
      EXPECT_EQ(e.missing_ranks(), std::vector<int>{absent});
      EXPECT_EQ(e.code(), ErrorCode::kTimeout);
      const std::string what = e.what();
      EXPECT_NE(what.find("from rank 2;"), std::string::npos) << what;
      EXPECT_NE(what.find("the conformance test"), std::string::npos) << what;
      EXPECT_NE(what.find("on rank " + std::to_string(win.rank())), std::string::npos) << what;
#ifdef MOE_EP_CONFORMANCE_HOSTS
      // Messages counted both ways tell a message sent and never landed from a peer that never sent.
      if (remote_absent) {
        EXPECT_NE(what.find("messages sent to / landed from rank 2: "), std::string::npos) << what;
      }
#endif
    }
    win.Signal(absent, win.rank(), tr::MakeFlag(1, 0));
    win.Barrier(Within(MustArriveWithin()), "the absent rank's return");
  });
}

// ---- Probe ----

TEST_P(Conformance, ProbeFindsEveryRankWhenAllProbe) {
  const int n = 4;
  Windows w = Open(n, 4096, 1);
  RunRanks(w, [&](tr::Window& win) {
    for (int i = 0; i < 5; ++i) {
      const auto start = tr::Clock::now();
      const std::vector<int32_t> reachable = win.Probe(MustArriveWithin());
      EXPECT_EQ(reachable, std::vector<int32_t>(n, 1)) << "rank " << win.rank() << " probe " << i;
      EXPECT_LT(tr::Clock::now() - start, MustArriveWithin() / 2) << "Probe did not return once all had probed";
      if (reachable != std::vector<int32_t>(n, 1)) break;  // the later probes would wait out their deadlines too
    }
  });
}

TEST_P(Conformance, ARankThatNeverProbesIsUnreachableAndProbeReturnsInTime) {
  const int n = 4, silent = 2;
  const auto wait = 300ms;
  Windows w = Open(n, 4096, 1);
  RunRanks(w, [&](tr::Window& win) {
    if (win.rank() != silent) {
      std::vector<int32_t> expected(n, 1);
      expected[silent] = 0;
      const auto start = tr::Clock::now();
      std::vector<int32_t> got;
      EXPECT_NO_THROW(got = win.Probe(wait));
      const auto elapsed = tr::Clock::now() - start;
      EXPECT_EQ(got, expected) << "rank " << win.rank();
      EXPECT_GE(elapsed, wait) << "gave up on rank " << silent << " before the wait";
      EXPECT_LE(elapsed, wait + kSlack);
    }
    win.Barrier(Within(MustArriveWithin()), "after the probe");  // the silent rank stays alive meanwhile
  });
}

// ---- Deadlines ----

TEST_P(Conformance, WaitFlagsTimesOutNamingTheRankWhoseFlagIsMissing) {
  const int n = 3;
  const auto wait = 150ms;
  std::mt19937_64 rng(Seed(7));
  const uint32_t epoch = std::uniform_int_distribution<uint32_t>(1, 0xFFFFFFFFu)(rng);
  Windows w = Open(n, 4096, 8);
  RunRanks(w, [&](tr::Window& win) {
    // Flag 3 + r of rank 0 comes from rank r; rank 2 sends its flag, rank 1 (present) never does.
    if (win.rank() == 2) win.Signal(0, 3 + 2, tr::MakeFlag(epoch, 9));
    win.Barrier(Within(MustArriveWithin()), "rank 2's flag is stored");
    if (win.rank() != 0) return;
    const auto rank_of = [](uint64_t index) { return static_cast<int>(index) - 3; };
    // Arrived flags satisfy a wait even past its deadline.
    const std::vector<uint64_t> arrived = {3 + 2};
    EXPECT_NO_THROW(tr::WaitFlags(win, arrived, epoch, tr::Clock::now() - 1s, rank_of, "ConfOp", "the test flags"));
    const std::vector<uint64_t> indices = {3 + 1, 3 + 2};
    for (int single = 0; single < 2; ++single) {
      const auto start = tr::Clock::now();
      try {
        if (single) {
          tr::WaitFlag(win, 3 + 1, epoch, start + wait, 1, "ConfOp", "the test flags");
        } else {
          tr::WaitFlags(win, indices, epoch, start + wait, rank_of, "ConfOp", "the test flags");
        }
        ADD_FAILURE() << "a wait for a flag nobody sets returned";
      } catch (const TimeoutError& e) {
        const auto elapsed = tr::Clock::now() - start;
        EXPECT_GE(elapsed, wait);
        EXPECT_LE(elapsed, wait + kSlack);
        EXPECT_EQ(e.missing_ranks(), std::vector<int>{1});
        EXPECT_EQ(e.code(), ErrorCode::kTimeout);
        const std::string what = e.what();
        EXPECT_EQ(what.rfind("ConfOp: timed out on rank 0 of ", 0), 0u) << what;
        EXPECT_NE(what.find("waiting for the test flags (call " + std::to_string(epoch) + ") from rank 1;"),
                  std::string::npos)
            << what;
        EXPECT_EQ(what.find("rank 2"), std::string::npos) << what;
      }
    }
  });
}

TEST_P(Conformance, ANapEndsAtAPeersSignal) {
  // Rank 1 signals rank 0 a moment after a barrier; rank 0 naps meanwhile. Where a signal can end a nap (LongestNap
  // above the 50 us of a transport that lands messages only when polled), rank 0 naps for up to a minute and must
  // hear the signal at once; elsewhere it naps its LongestNap between polls, and must not oversleep one.
  std::mt19937_64 rng(Seed(8));
  const uint64_t flag = tr::MakeFlag(std::uniform_int_distribution<uint32_t>(1, 0xFFFFFFFFu)(rng), 5);
  Windows w = Open(2, 4096, 4);
  RunRanks(w, [&](tr::Window& win) {
    const bool ringing = win.LongestNap() > std::chrono::microseconds(50);
    // A nap whose wait is over already does not sleep.
    const auto start = tr::Clock::now();
    EXPECT_TRUE(win.NapUnless([] { return true; }, 60s));
    EXPECT_LE(tr::Clock::now() - start, kSlack);
    win.Barrier(Within(MustArriveWithin()), "both ranks nap next");
    if (win.rank() == 1) {
      std::this_thread::sleep_for(50ms);  // rank 0 is napping by then (or about to: its nap then ends at once)
      win.Signal(0, 2, flag);
    } else {
      const auto napped = tr::Clock::now();
      const auto arrived = [&] { return win.ReadFlag(2) == flag; };
      while (!arrived() && tr::Clock::now() < napped + MustArriveWithin()) {
        const auto nap = ringing ? MustArriveWithin() : win.LongestNap();
        const auto before = tr::Clock::now();
        if (win.NapUnless(arrived, nap)) break;
        EXPECT_LE(tr::Clock::now() - before, std::min<tr::Clock::duration>(nap, 60s) + kSlack);
        win.Progress();
      }
      EXPECT_EQ(win.ReadFlag(2), flag);
      // A nap the signal does not end lasts MustArriveWithin(), twice this.
      EXPECT_LE(tr::Clock::now() - napped, ringing ? MustArriveWithin() / 2 : 50ms + kSlack)
          << (ringing ? "the signal did not end the nap" : "");
    }
    win.Drain(Within(MustArriveWithin()), "ConfOp", {});
  });
}

TEST_P(Conformance, NappingRanksPlayingPingPongMissNoSignal) {
  // Two ranks answer each other's signal 300 times, each napping until the other's flag comes, on a transport with a
  // doorbell for as long as the test may last: a lost wake-up (a signal batch's, SignalAll, included) stalls it past
  // its deadline. Rank 0 there also compare-exchanges a flag of its own each round, as the pull path's claims do.
  // Elsewhere naps last LongestNap.
  const int rounds = 300 / kScale;
  Windows w = Open(2, 4096, 4);
  RunRanks(w, [&](tr::Window& win) {
    const int peer = 1 - win.rank();
    const bool ringing = win.LongestNap() > std::chrono::microseconds(50);
    const auto start = tr::Clock::now();
    const auto send = [&](int round, uint64_t value) {
      if (round % 2) return win.Signal(peer, 1, value);
      const std::vector<tr::Window::FlagWrite> batch = {{peer, 2, value}, {peer, 1, value}};
      win.SignalAll(batch);
    };
    const auto await = [&](int round, uint64_t value) {
      const auto arrived = [&] { return win.ReadFlag(1) == value; };
      for (auto now = tr::Clock::now(); !arrived() && now < start + MustArriveWithin(); now = tr::Clock::now()) {
        win.Progress();
        win.NapUnless(arrived, ringing ? start + MustArriveWithin() - now : win.LongestNap());
      }
      ASSERT_TRUE(arrived()) << "round " << round << " of rank " << win.rank() << " waited past the test's deadline";
    };
    for (int round = 1; round <= rounds; ++round) {
      const uint64_t ping = tr::MakeFlag(round, 1), pong = tr::MakeFlag(round, 2);
      if (win.rank() == 0) {
        send(round, ping);
        if (ringing) win.CompareExchangeFlag(0, 3, 0, 0);
        await(round, pong);
      } else {
        await(round, ping);
        send(round, pong);
      }
      if (HasFatalFailure()) return;
    }
    win.Drain(Within(MustArriveWithin()), "ConfOp", {});
  });
}

// ---- Bounds ----

TEST_P(Conformance, PutPastTheDataAreaThrowsAndWritesNothing) {
  Windows w = Open(2, 64 << 10, 2);
  RunRanks(w, [&](tr::Window& win) {
    const uint64_t d = win.data_bytes();  // the same on both ranks (WindowsDescribeTheirGroup)
    if (win.rank() == 0) {
      const std::vector<std::pair<uint64_t, uint64_t>> past = {{d, 1}, {d - 10, 11}, {0, d + 1}, {d + 4096, 8}, {1, d}};
      const std::vector<uint8_t> payload = RandomBytes(Seed(8), d + 4096 + 16);
      for (const auto& [offset, bytes] : past) {
        EXPECT_TRUE(moe_ep::testing::ThrowsError(
            [&, offset = offset, bytes = bytes] { win.Put(1, offset, payload.data(), bytes); },
            moe_ep::ErrorCode::kInternal, "overruns"))
            << "put of " << bytes << " at " << offset;
      }
      win.Put(1, d - 16, payload.data(), 16);  // ends exactly at the end: fine
    }
    win.Barrier(Within(MustArriveWithin()), "the puts are done");
    if (win.rank() == 1) {
      EXPECT_TRUE(AllZero(win.LocalData(), d - 16)) << "a refused put wrote into the window";
      EXPECT_EQ(FirstDifference(win.LocalData() + d - 16, RandomBytes(Seed(8), 16), d - 16), "");
    }
  });
}

// offset + bytes wraps around 2^64: must be refused like any other put past the end (in a child process,
// since a transport that accepts it writes to a wild address). The writer's process forks; the child checks
// the target's window too when it is in this process (a copy after the fork: the parent cannot see what the
// child wrote there); afterwards the target checks its own window (shared memory shows a stray write).
TEST_P(Conformance, PutWhoseRangeWrapsAroundThrows) {
  const int writer = 0, target = 1;
  Windows w = Open(2, 4096, 1);
  if (w[writer]) {  // on the test's thread: a fork copies only the calling thread
    const tr::Window& local_target = w[target] ? *w[target] : *w[writer];
    const uint64_t d = w[writer]->data_bytes();
    const std::vector<std::pair<uint64_t, uint64_t>> wrapping = {
        {~0ull - 5, 10}, {1, ~0ull}, {d / 2, ~0ull - d / 2 + 2}};
    static const uint8_t source[16] = {};
    for (const auto& [offset, bytes] : wrapping) {
      EXPECT_EXIT(
          {
            try {
              w[writer]->Put(target, offset, source, bytes);
            } catch (const Error&) {
              std::_Exit(AllZero(local_target.LocalData(), d) ? 0 : 2);
            }
            std::_Exit(1);
          },
          ::testing::ExitedWithCode(0), "")
          << "put of " << bytes << " bytes at offset " << offset << " (exit 1: accepted, 2: wrote, signal: crashed)";
    }
  }
  RunRanks(w, [&](tr::Window& win) {
    win.Barrier(Within(MustArriveWithin()), "the wrapping puts are refused");
    EXPECT_TRUE(AllZero(win.LocalData(), win.data_bytes())) << "rank " << win.rank() << ": a refused put wrote here";
  });
}

TEST_P(Conformance, SignalPastTheFlagsThrows) {
  const uint64_t flags = 8;
  Windows w = Open(2, 4096, flags);
  const uint64_t end = flags + tr::Window::TransportFlagCount(2);
  RunRanks(w, [&](tr::Window& win) {
    if (win.rank() == 0) {
      for (const uint64_t index : std::vector<uint64_t>{end, end + 1, end + 4096, ~0ull}) {
        EXPECT_TRUE(moe_ep::testing::ThrowsError([&] { win.Signal(1, index, 0x1234); }, moe_ep::ErrorCode::kInternal,
                                                 "beyond the"))
            << "signal of flag " << index << " of " << end;
      }
      win.Signal(1, flags - 1, 0x5678);  // the user's last flag: fine
    }
    win.Barrier(Within(MustArriveWithin()), "the signals are done");
    if (win.rank() == 1) {
      for (uint64_t i = 0; i + 1 < flags; ++i) EXPECT_EQ(win.ReadFlag(i), 0u) << i;
      EXPECT_EQ(win.ReadFlag(flags - 1), 0x5678u);
    }
  });
}

}  // namespace
}  // namespace moe_ep::testing

#ifdef MOE_EP_CONFORMANCE_HOSTS
// hosts_conformance_test [SEED] [--gtest_...]: one rank of every case per MPI process, under mpirun. Rank 0's
// seed (SEED, else MOE_EP_TEST_SEED, else drawn) is broadcast to every process and printed by each, so all
// draw the same data and a failure replays with the printed seed. Each process prints "... OK" when every
// case passed in it (the verdict tests/hosts/mpi_job.sh and simulated_hosts.sh count).
int main(int argc, char** argv) {
  int provided = 0, me = 0, world = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);  // the bodies call MPI from rank threads
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  ::testing::InitGoogleTest(&argc, argv);
  unsigned long long seed = 0;
  if (me == 0) {
    const char* forced = argc > 1 ? argv[1] : std::getenv("MOE_EP_TEST_SEED");
    seed = forced != nullptr ? std::strtoull(forced, nullptr, 10)
                             : (static_cast<unsigned long long>(std::random_device{}()) << 32) ^ std::random_device{}();
  }
  MPI_Bcast(&seed, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
  setenv("MOE_EP_TEST_SEED", std::to_string(seed).c_str(), 1);
  moe_ep::testing::BaseSeed();  // reads and prints it
  const int failed = RUN_ALL_TESTS();
  const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
  MPI_Finalize();
  if (failed != 0 || unit.successful_test_count() == 0) {
    std::printf("rank %d of %d: FAILED (%d of %d cases failed; seed %llu)\n", me, world, unit.failed_test_count(),
                unit.test_to_run_count(), seed);
    return 1;
  }
  std::printf("rank %d of %d: %d conformance cases on the hosts transport OK\n", me, world,
              unit.successful_test_count());
  return 0;
}
#endif
