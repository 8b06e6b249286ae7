// The one internal communicator both front doors hold (the native Group and the C API's HcclComm): a
// rank's window, the operations' state on it, its deadline, its name, the peers it waited for in vain,
// and the lock that runs its operations one at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/env.h"
#include "moe_ep/group.h"
#include "ops/stage.h"
#include "ops/workers.h"
#include "plan/layout.h"
#include "transport/window.h"

namespace moe_ep::ops {

/// The flags the operations use in every window (plan/layout.h maps them); transports add theirs after.
inline constexpr uint64_t kWindowFlagCount = plan::kFlagCount;

/// Reads, as env::ReadOrRefuse, the variables a Communicator made with `data_path` and `threads` reads
/// (MOE_EP_DATA_PATH and MOE_EP_CROSS_MEMORY unless data_path says, MOE_EP_THREADS unless threads does,
/// MOE_EP_THREAD_MIN_BYTES) and MOE_EP_ISA (an ISA this CPU has): a join checks them before it meets its peers, so that
/// a rank that refuses one fails at once, naming it, and never leaves its peers a group with a member that cannot run.
void CheckCommunicatorVariables(DataPath data_path, int threads, std::optional<env::Refusal>& first);

/// What the operations remember about one window between calls.
struct OpState {
  /// Dispatch and combine calls, counted together: call n uses half n % 2 of the data and of each operation's flags,
  /// and tags its flags with its epoch (docs/protocol.md, "Double buffering"); zeroed by BufferReset.
  uint64_t calls = 0;
  /// Dispatch and combine calls, and resets without sync, since the last synced reset: what numbers an operation
  /// for the transport (OperationSequence). Unlike the call counters a reset without sync does not zero it, so a
  /// relay never takes a sender's end mark from before such a reset for one of the operations after it.
  uint64_t operations = 0;
  /// Set by a BufferReset that synced: the same on every rank that took part, and new, so flags a
  /// stalled peer wrote before the reset can never match a call made after it. A reset without sync moves it on to a
  /// generation of its own (UnsyncedGeneration: the synced one's, and how many resets without sync since), alike on
  /// ranks that made as many: a late flag of a call that failed before the reset then never matches one after it.
  uint64_t generation = 0;
  /// Resets without sync since the last sync round began (or since the group was made).
  uint64_t unsynced_resets = 0;
  /// The tag of the last BufferReset sync round this rank took part in (docs/semantics.md 4.2); survives the
  /// reset itself.
  uint64_t reset_tag = 0;
  /// The last sync timed out: the next BufferReset with sync retries it under the same tag (one without sync
  /// abandons it).
  bool reset_unfinished = false;
  /// Why an operation failed part-way (it timed out, or was interrupted), until a BufferReset succeeds: its rows
  /// and flags may still be in flight, and a peer's next call could take them for its own, so the group's
  /// operations are refused on this rank meanwhile. Empty: none did.
  std::string must_reset;
  /// How many ranks (this one included, when it keeps rows of its own) read this rank's rows in place (pulled
  /// them) in the last dispatch and the last combine; rows to the others were pushed. What the tools report as
  /// the data path taken.
  int dispatch_readers = 0;
  int combine_readers = 0;
  /// Of those, how many copied the rows out of this rank's private memory (transport::Window::ReadExposed).
  int dispatch_copy_readers = 0;
  int combine_copy_readers = 0;
  /// Dispatch's staged x (ops/stage.h).
  StageBuffers dispatch_stage;
  /// A TP pair's state: this rank took the pair's current call and has not yet had everything of it from its peer. A
  /// call that fails then leaves the pair out of step (one that fails after the exchange leaves it in step).
  bool pair_call_open = false;
};

/// Numbers an operation alike on every rank: the generation (high 32 bits: the last reset's), then the operations since
/// the last synced reset (Window::EndOperation).
inline uint64_t OperationSequence(const OpState& state) {
  return state.generation << 32 | (state.operations & 0xFFFFFFFF);
}

/// The least bytes of rows a rank sends in a call for its peers to read them (the pull data path) in
/// place, and by copy out of its private memory (0: always where they can; UINT64_MAX: never).
struct PullMinBytes {
  uint64_t in_place = UINT64_MAX;
  uint64_t by_copy = UINT64_MAX;
};

class Communicator {
 public:
  /// `window` must have kWindowFlagCount user flags. `name` is the group's name in messages. `data_path`
  /// kAuto reads MOE_EP_DATA_PATH.
  Communicator(std::unique_ptr<transport::Window> window, std::chrono::milliseconds timeout, std::string name,
               DataPath data_path = DataPath::kAuto, int threads = 0);
  /// Gives the peers still reading this rank's staged rows (ops/stage.h) up to kSettleTime to finish, so
  /// that they do not read memory reused elsewhere, or find this process gone.
  ~Communicator();
  static constexpr std::chrono::seconds kSettleTime{1};

  int rank() const { return window_->rank(); }
  int size() const { return window_->size(); }
  uint64_t window_bytes() const { return window_->data_bytes(); }
  const std::string& name() const { return name_; }
  /// Never the same for two communicators of this process, made at any time (names may repeat).
  uint64_t id() const { return id_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  /// From how many bytes of rows sent in a call a rank lets its peers read them in place, and by copy.
  PullMinBytes pull_min_bytes() const { return pull_min_bytes_; }
  /// The rank's worker threads (GroupOptions::threads, else MOE_EP_THREADS, else the cores shared out).
  Workers& workers() { return *workers_; }
  /// The deadline of an operation that starts now.
  transport::Clock::time_point Deadline() const { return transport::Clock::now() + timeout_; }

  transport::Window& window() { return *window_; }
  OpState& state() { return state_; }
  /// Held for the whole of an operation: one at a time per communicator, whichever thread calls.
  std::mutex& mutex() { return mutex_; }
  /// Held for the whole of a probe: one at a time, but beside an operation (a watchdog thread probes while the
  /// operation waits for a rank that may be dead; probes have flags of their own).
  std::mutex& probe_mutex() { return probe_mutex_; }

  /// Peers an operation waited for in vain, in rank order; a reset that syncs with them again forgets them.
  std::vector<int> failed_ranks() const;
  void RememberFailed(const std::vector<int>& ranks);
  void ForgetFailed(int rank);

 private:
  std::unique_ptr<transport::Window> window_;
  uint64_t id_;
  std::chrono::milliseconds timeout_;
  std::string name_;
  PullMinBytes pull_min_bytes_;
  std::unique_ptr<Workers> workers_;
  OpState state_;
  std::mutex mutex_;
  std::mutex probe_mutex_;
  mutable std::mutex failed_mutex_;  // failed_ranks() may be asked from any thread
  std::set<int> failed_;
};

}  // namespace moe_ep::ops
