// Window: the symmetric communication region of one rank in a group (a data area and an area of 64-bit
// flags), and the only interface the operations use to talk to peers. Transports implement it. It holds
// no operation state: call counters and epochs belong to the operations (src/ops/).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/error.h"

namespace moe_ep::transport {

using Clock = std::chrono::steady_clock;

class Window {
 public:
  virtual ~Window() = default;

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// The ranks of the group on this rank's host, this one included, which share its cores: every rank, but where the
  /// group spans hosts.
  virtual int LocalRanks() const { return size_; }
  /// Bytes of each rank's data area.
  uint64_t data_bytes() const { return data_bytes_; }
  /// Flags [0, flag_count()) belong to the window's user; the transport keeps its own after them.
  uint64_t flag_count() const { return flag_count_; }
  /// "group 'name'" or similar, for messages.
  const std::string& name() const { return name_; }
  /// Messages show the window as `shown` from now on ("group 'ep'": as its user named the group, where a process
  /// group's window is named after its shared-memory segments, "2.ep-0-1.0", which its user never wrote).
  virtual void Relabel(const std::string& shown) { name_ = shown; }

  /// Copies `bytes` from `src` into peer's data area at `offset`. Visible to the peer no later than
  /// the next Signal to it from this rank (publish before signal).
  virtual void Put(int peer, uint64_t offset, const void* src, uint64_t bytes) = 0;
  /// Stores `value` into flag `index` of peer's flag area, ordered after every earlier Put to it.
  virtual void Signal(int peer, uint64_t index, uint64_t value) = 0;
  /// One Signal of a batch (SignalAll).
  struct FlagWrite {
    int peer;
    uint64_t index;
    uint64_t value;
  };
  /// Signals every write in order, as Signal would one by one; a transport may wake each peer once for all of
  /// them (a batch of many small signals, such as one count per expert).
  virtual void SignalAll(std::span<const FlagWrite> writes) {
    for (const FlagWrite& w : writes) Signal(w.peer, w.index, w.value);
  }
  /// Put for bytes the peer reads once, through Row with the same `tag`, in the operation that put them
  /// (a combine row): a message-passing transport may leave them in the message they arrived in instead
  /// of copying them into the peer's data area. `tag` tells this put apart from earlier ones at `offset`
  /// (the call's epoch).
  virtual void PutRow(int peer, uint64_t offset, const void* src, uint64_t bytes, uint64_t tag) {
    (void)tag;
    Put(peer, offset, src, bytes);
  }
  /// Where the local bytes [offset, offset + bytes) are, as a Put or a PutRow with `tag` left them: in the
  /// local data area, or in the message a PutRow arrived in (valid until this rank's next EndOperation).
  virtual const uint8_t* Row(uint64_t offset, uint64_t bytes, uint64_t tag) const {
    (void)bytes, (void)tag;
    return LocalData() + offset;
  }
  /// Peer-visible memory, for the pull data path: a nonzero token from which `peer` can find [p, p + bytes)
  /// with Resolve when it can read those bytes in place (ranks that share an address space), or copy them
  /// out with ReadExposed (ExposedByCopy), else 0 (the bytes must travel by Put). Reading them is the peer's business:
  /// the caller keeps them unchanged until the peer says it is done.
  virtual uint64_t Expose(int peer, const void* p, uint64_t bytes) const {
    (void)peer, (void)p, (void)bytes;
    return 0;
  }
  /// Where the `bytes` that `peer` exposed to this rank under `token` are in this process (nullptr: it cannot
  /// read them in place). Throws TimeoutError naming the peer when it could have, but its process is gone.
  virtual const uint8_t* Resolve(int peer, uint64_t token, uint64_t bytes) const {
    (void)peer, (void)token, (void)bytes;
    return nullptr;
  }
  /// One read of bytes a peer exposed by copy: [the exposed address + offset, + bytes) into `dst`.
  struct ExposedRead {
    void* dst;
    uint64_t offset;
    uint64_t bytes;
  };
  /// Whether `token` (from `peer`'s Expose, or this rank's Expose for `peer`) names memory copied out with
  /// ReadExposed rather than read in place (Resolve gives nullptr for it): a process's private memory,
  /// reached by the kernel (one copy, where a push takes two, but about half as fast as a read in place).
  virtual bool ExposedByCopy(int peer, uint64_t token) const {
    (void)peer, (void)token;
    return false;
  }
  /// Performs `reads` of the memory `peer` exposed under a by-copy `token`. Throws TimeoutError naming
  /// the peer when its process is gone, Error when the memory is no longer there. Thread-safe.
  virtual void ReadExposed(int peer, uint64_t token, std::span<const ExposedRead> reads) const {
    (void)token, (void)reads;
    throw Error(ErrorCode::kInternal, "read of memory exposed by rank " + std::to_string(peer) + " of " + name_ +
                                          ": this transport exposes nothing by copy");
  }
  /// Atomically sets flag `index` of `peer`'s window (this rank's own for peer == rank()) to `desired` if it
  /// holds `expected`, and returns what it held (== `expected`: it was set), with acquire-release order. Only
  /// between ranks that read each other's memory (Expose gives a token, in place or by copy): the pull data path's
  /// claims on announced rows (ops/pull.h). Elsewhere it throws.
  virtual uint64_t CompareExchangeFlag(int peer, uint64_t index, uint64_t expected, uint64_t desired) {
    (void)index, (void)expected, (void)desired;
    throw Error(ErrorCode::kInternal, "compare-exchange of a flag of rank " + std::to_string(peer) + " of " + name_ +
                                          ": this transport cannot reach that rank's memory");
  }
  /// Reads local flag `index` (acquire: data put before the flag is visible after reading it).
  virtual uint64_t ReadFlag(uint64_t index) const = 0;
  /// The local data area (what peers Put to this rank).
  virtual const uint8_t* LocalData() const = 0;
  /// Zeroes the local data area and the user's flags [0, cleared_flags); later flags survive.
  virtual void ClearLocal(uint64_t cleared_flags) = 0;

  /// Moves data in flight: sends what Put and Signal queued, lands what arrived. Transports whose
  /// peers share memory have nothing to do; a message-passing transport progresses only here, so every
  /// wait calls it on each poll. Never blocks. Const: waits see the window as read-only. Returns whether
  /// anything advanced (a message sent, finished or landed): the caller should then poll again
  /// at once rather than back off.
  virtual bool Progress() const { return false; }
  /// Sends what Put and Signal queued, without looking for arrivals: what a wait calls instead of
  /// Progress when its flags are there already (a poll that finds nothing may give the core away).
  virtual void Flush() const {}
  /// For a wait whose flags are still missing after its spins and yields: sleeps for up to `nap`, unless `done()`,
  /// asked once more first, holds (then returns true at once). A transport whose peers signal this rank through
  /// shared memory ends the nap as soon as one does (a futex: the waiting rank gives its core away, and
  /// still hears at once); the others sleep it out.
  /// (Defined here: a virtual function defined out of line would make its file the only one with Window's type
  /// information, which the library does not export, and UBSan's checks in programs need.)
  virtual bool NapUnless(const std::function<bool()>& done, Clock::duration nap) const {
    if (done()) return true;
    std::this_thread::sleep_for(nap);
    return false;
  }
  /// The longest nap a wait may take between polls: how long arrivals may wait for it. Long where a
  /// peer's Signal ends the nap (NapUnless); 50 us where messages land only when polled.
  virtual Clock::duration LongestNap() const { return std::chrono::microseconds(50); }
  /// Marks the end of an operation, one that failed too: `sequence` numbers it (the operations' own count,
  /// alike on ranks that ran the same operations since the last synced reset). A transport that relays tells the ranks
  /// relaying for this one that nothing more of this operation follows; one that leaves rows in their messages lets go
  /// of those Row returned; the others ignore it.
  virtual void EndOperation(uint64_t sequence) { (void)sequence; }
  /// A synced reset's round `round` begins on this rank (its tag: rounds only grow), before the rank tells any peer
  /// it is in it. Data and flags a peer sent before it entered this round (a failed operation's puts, rows and
  /// signals, still on their way) are dropped from now on where they land or would be handed on, so they can never
  /// land after the round's own rows (nor a flag without its rows). Only a transport whose puts may land late needs
  /// it (the hosts transport); the others ignore it.
  virtual void BeginRound(uint64_t round) { (void)round; }
  /// Returns once every Put and Signal issued so far has reached its peer (each operation ends with
  /// it, so nothing it sent waits for a later call) and, on a transport that relays, once everything
  /// peers sent through this rank up to their EndOperation of the same sequence has been handed on (a
  /// relay never leaves an operation owing its host's ranks rows); or throws TimeoutError at `deadline`
  /// naming the peers missing. What is still on its way to, or expected from, a rank in `gone` (known to
  /// have failed) is given up instead. `op` names the operation in the message.
  virtual void Drain(Clock::time_point deadline, const char* op, std::span<const int> gone) {
    (void)deadline, (void)op, (void)gone;
  }
  /// Peers known to have failed (a deadline passed without them, or a reset found them unreachable).
  /// A transport that relays traffic through peers stops relaying through these; others ignore it.
  /// Each operation states them before it sends anything.
  virtual void SetFailedPeers(std::span<const int> failed) { (void)failed; }
  /// Whether the operation about to run may send through relays (a transport that relays: what goes to
  /// several ranks of one host crosses to it once). One whose every payload is for one rank alone (combine)
  /// says no: it then goes straight to each rank, and no relay stays in it for the ranks it relays for.
  /// Stated like SetFailedPeers, before the operation sends anything, and alike on every rank.
  virtual void AllowRelay(bool allowed) { (void)allowed; }
  /// What the transport adds to a timeout naming `missing` (say, the relay their messages come through);
  /// empty by default.
  virtual std::string ExplainMissing(std::span<const int> missing) const {
    (void)missing;
    return {};
  }
  /// How the transport moves data, for a report (the hosts transport: its paths between hosts and its
  /// message size, as the ranks agreed them); empty by default.
  virtual std::string Describe() const { return {}; }

  /// Returns once every rank of the group has entered the same barrier, or throws TimeoutError at
  /// `deadline` naming the ranks that did not; `what` says what the barrier is for.
  void Barrier(Clock::time_point deadline, const char* what);
  /// Reachability probe (the host's ElasticReceivableTest + InfoCollect, docs/semantics.md 4.3): stamps
  /// this rank's probe count into every peer and waits up to `wait` for the peers' stamps. Returns one
  /// 0/1 entry per rank: 1 for this rank and every peer that probed as often, or that probed at all since
  /// this rank's previous probe ended (a rank that missed probes while stalled counts as alive again as
  /// soon as it probes). Never throws for a missing peer: a dead or stalled rank is simply 0.
  std::vector<int32_t> Probe(Clock::duration wait);
  /// After a reset that every rank of the group ended with the same `generation` (one above every earlier one):
  /// barrier tags restart above every stamp an earlier barrier left, alike on every rank, so that a barrier some
  /// ranks timed out in does not leave them one barrier ahead of the others for good. A rank that joins a reset
  /// round the others finished, and ran barriers after, is not aligned with them: they reset again together.
  void AlignBarriers(uint64_t generation) { barrier_calls_ = generation << 32; }

  /// Flags the transport adds after the user's: one per rank for Barrier, one per rank for Probe.
  static uint64_t TransportFlagCount(int size) { return 2 * static_cast<uint64_t>(size); }
  /// Every flag of a rank's window: the user's and the transport's.
  uint64_t all_flag_count() const { return flag_count_ + TransportFlagCount(size_); }

 protected:
  Window(int rank, int size, uint64_t data_bytes, uint64_t flag_count, std::string name)
      : rank_(rank), size_(size), data_bytes_(data_bytes), flag_count_(flag_count), name_(std::move(name)) {}

 private:
  uint64_t BarrierFlag(int r) const { return flag_count_ + r; }
  uint64_t ProbeFlag(int r) const { return flag_count_ + size_ + r; }

  int rank_;
  int size_;
  uint64_t data_bytes_;
  uint64_t flag_count_;
  std::string name_;
  uint64_t barrier_calls_ = 0;  // tags this rank's barrier stamps; counts only grow
  uint64_t probe_calls_ = 0;    // tags this rank's probe stamps; counts only grow
  std::vector<uint64_t> probe_seen_ = std::vector<uint64_t>(size_, 0);  // each peer's stamp at our last probe
};

/// A flag value: the call's epoch in the high 32 bits (never 0, so zeroed memory never matches),
/// a payload count in the low 32 bits.
inline uint64_t MakeFlag(uint64_t epoch, uint32_t count) { return (epoch << 32) | count; }
inline uint32_t FlagEpoch(uint64_t flag) { return static_cast<uint32_t>(flag >> 32); }
inline uint32_t FlagCount(uint64_t flag) { return static_cast<uint32_t>(flag); }
/// Epoch tag of the n-th call (0-based): 1, 2, ... wrapping inside 32 bits but never 0.
inline uint64_t EpochOf(uint64_t call_index) { return call_index % 0xFFFFFFFFull + 1; }

/// Waits until every flag in `indices` carries `epoch`, or throws TimeoutError at `deadline` naming the
/// ranks (via `rank_of(index)`) whose flags are missing, `op` and `what` was awaited. Spins briefly,
/// then yields, then sleeps, so many ranks on few cores still progress. `also_progress`, when given, is
/// polled too: a window whose messages this rank must hand on while it waits on another (a relay waiting
/// on its TP peer, who may be waiting for EP rows queued at that relay).
void WaitFlags(const Window& window, std::span<const uint64_t> indices, uint32_t epoch, Clock::time_point deadline,
               const std::function<int(uint64_t)>& rank_of, const char* op, const char* what,
               const Window* also_progress = nullptr);

/// How often a long wait asks the interrupt check (moe_ep::SetInterruptCheck) whether to end.
inline constexpr std::chrono::milliseconds kInterruptCheckEvery{10};
/// Whether the installed interrupt check asks waits to end (false when none is installed; true when it throws).
bool InterruptRequested() noexcept;

/// Polls `done()` with back-off until it returns true, or throws TimeoutError at `deadline` naming the
/// ranks `missing()` returns then (epoch 0: no call number in the message).
void WaitUntil(const Window& window, Clock::time_point deadline, const char* op, const char* what, uint64_t epoch,
               const std::function<bool()>& done, const std::function<std::vector<int>()>& missing,
               const Window* also_progress = nullptr);

/// Waits for a single flag; returns its value.
uint64_t WaitFlag(const Window& window, uint64_t index, uint32_t epoch, Clock::time_point deadline, int from_rank,
                  const char* op, const char* what);

/// "rank 3" or "ranks 1, 2": ranks as a message names them.
inline std::string RanksNamed(std::span<const int> ranks) {
  std::string named = ranks.size() > 1 ? "ranks " : "rank ";
  for (size_t i = 0; i < ranks.size(); ++i) named += (i ? ", " : "") + std::to_string(ranks[i]);
  return named;
}

/// Throws what `e` is (an InterruptedError stays one) with another message and ranks: a renumbering.
[[noreturn]] inline void ThrowRenumbered(const TimeoutError& e, const std::string& message, std::vector<int> ranks) {
  if (dynamic_cast<const InterruptedError*>(&e) != nullptr) throw InterruptedError(message, std::move(ranks));
  throw TimeoutError(message, std::move(ranks));
}

/// Runs `body`, a call into the window inside a wrapper window (a host's ranks inside a group of hosts, the
/// survivors inside the original group): a TimeoutError it throws names the inner window's ranks, which
/// `outer_of` renumbers into `outer`'s, as the wrapper's callers count them.
template <class Body, class OuterOf>
auto InOuterNumbering(const Window& outer, Body&& body, OuterOf&& outer_of) -> decltype(body()) {
  try {
    return body();
  } catch (const TimeoutError& e) {
    std::vector<int> ranks;
    for (const int r : e.missing_ranks()) ranks.push_back(outer_of(r));
    ThrowRenumbered(e, std::string(e.what()) + " [" + RanksNamed(ranks) + " of " + outer.name() + "]", ranks);
  }
}

}  // namespace moe_ep::transport
