// The pull data path: a sender announces where the rows it sends to a peer are (a tensor the peer can
// read in place, or a staged copy: ops/stage.h), the peer claims them (a staged copy needs no claim), copies
// them from there and then says it is done, and the sender returns only after every such peer did (its caller
// may overwrite the tensor as soon as the call returns), unless it announced a staged copy. A sender whose call fails
// withdraws what no peer has claimed and waits for the peers that did: a late peer never reads memory the caller got
// back, and one slower than that wait (kWithdrawWait) fails its own call instead of trusting what it read.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "moe_ep/tensor.h"
#include "ops/op_common.h"
#include "transport/window.h"

namespace moe_ep::ops::pull {

/// Rows at a uniform stride: row i is [base + i * stride, + row_bytes); `count` rows. Rows a peer exposed
/// by copy (transport::Window::ExposedByCopy) have no base here: CopyRows takes them out of its process.
struct Rows {
  const uint8_t* base = nullptr;
  uint64_t stride = 0;
  uint64_t count = 0;
  uint64_t row_bytes = 0;
  uint64_t copy_token = 0;  // nonzero: the rows are `copy_from`'s, read by copy under this token
  int copy_from = -1;
  uint32_t staged_mark = 0;  // nonzero: a staged copy (ops/stage.h), intact until its readers are done
  const uint8_t* Row(uint64_t i) const { return base + i * stride; }
  /// Whether the rows were announced (read in place or by copy), not pushed.
  bool pulled() const { return base != nullptr || copy_token != 0; }
  /// Bytes from the first row's start to the last row's end.
  uint64_t span() const { return count == 0 ? 0 : (count - 1) * stride + row_bytes; }
};

/// The rows of a 2-D view whose last dimension is dense, else nullopt (such a tensor is pushed).
std::optional<Rows> RowsOf(const TensorView& view);

/// One call's pull flags in a window: `region` is plan::kDispatchPullFlagBase or kCombinePullFlagBase.
struct CallFlags {
  CallFlags(uint64_t region, const CallSlot& call);
  uint64_t base;
  uint32_t epoch;
};

/// Per peer of `ep`: the token under which `rows` are exposed to it, 0 where its rows must be pushed: the
/// peer can read this memory neither in place nor by copy, or the call sends fewer bytes of rows
/// (`sent_bytes`) than `min_bytes` asks for the way it can.
std::vector<uint64_t> Expose(const transport::Window& ep, const std::optional<Rows>& rows, uint64_t sent_bytes,
                             const PullMinBytes& min_bytes);

/// How a rank reads a sender's rows in a call (the sender's per-rank `reads` below: nonzero, it reads them).
enum ReaderKind : uint8_t { kNoReader = 0, kReadsInPlace = 1, kReadsByCopy = 2 };
/// kReadsByCopy when `peer` copies the memory this rank exposed to it under `token`, else kReadsInPlace.
uint8_t ReaderKindOf(const transport::Window& ep, int peer, uint64_t token);
/// How many ranks read a sender's rows in a call (`reads`, per rank a ReaderKind), and how many of them by copy.
struct ReaderCounts {
  int readers = 0;
  int by_copy = 0;
};
ReaderCounts CountReaders(std::span<const uint8_t> reads);

/// Arms this rank's done word for `peer` (the peer claims it before reading: Claims), then tells `peer` where
/// this rank's rows are (`token` from Expose) and, optionally, a second tensor's (dispatch's smooth scales).
/// Signalled before any row or count flag of the call, so a peer that saw one of those sees this. `staged_mark`
/// (from NewStagedMark; 0: not staged): the rows are a staged copy (ops/stage.h), which stays intact until its
/// readers are done whatever becomes of the call.
void Announce(transport::Window& ep, const CallFlags& flags, int peer, uint64_t token, const Rows& rows,
              uint64_t second_token = 0, const Rows& second = {}, uint32_t staged_mark = 0);

/// A mark for the done words of one staging, shared by none of the 2^32 - 9 stagings of this process before or
/// after it: a late reader of an earlier staged copy cannot take a later call's word for its own.
uint32_t NewStagedMark();

/// The rows `sender` announced to this rank in this call, resolved in this process or to be read by copy,
/// or nullopt when it announced nothing (it pushed); each row is `row_bytes` long. `second` selects the
/// second tensor (nullopt too when the sender announced rows but no second tensor). Errors name `op`.
std::optional<Rows> Announced(const transport::Window& ep, const CallFlags& flags, int sender, uint64_t row_bytes,
                              const char* op, bool second = false);

/// One row to copy out of rows read by copy: row `index` into `dst`.
struct RowCopy {
  void* dst;
  uint64_t index;
};

/// The flags in this rank's window in which each rank r with reads[r] != 0 says it is done with this call.
std::vector<uint64_t> DoneFlags(const CallFlags& flags, std::span<const uint8_t> reads);

/// Whether a reader's done word (DoneFlags) says it has finished reading call `epoch`'s rows.
bool IsDone(uint64_t word, uint32_t epoch);

/// The senders whose announced rows this rank reads (in place or by copy) in one call: each is claimed (in its done
/// word for this rank, unless its rows are a staged copy) before any of its rows is read, and told this rank is done by
/// Finish, or when this goes should the call fail first; a sender never claimed is then told too (this rank will not
/// read its rows), so that a healthy sender is not held up, and does not name this rank, because this rank's call
/// failed on another one. The parts of a call claim as they meet a sender (thread-safe) and release it before they
/// wait for another rank and when they end: a claim is held only while its rows are read, so that a sender whose
/// deadline passes while this rank waits on a third one withdraws its rows cleanly (this rank's next claim then
/// fails) instead of giving up on a reader that still holds pointers into its caller's memory.
class Claims {
 public:
  /// `op`: the operation its errors name (it must outlive this).
  Claims(transport::Window& ep, const CallFlags& flags, const char* op);
  /// Tells every sender claimed or released and not told yet that this rank is done; before Finish, every other too.
  ~Claims();
  Claims(const Claims&) = delete;
  Claims& operator=(const Claims&) = delete;
  /// Claims `sender`'s `rows` (as Announced gave them), or holds its claim once more. Throws TimeoutError naming the
  /// sender when it withdrew them (its call failed, or its deadline passed while this rank waited for another; its
  /// caller may reuse that memory) or a reset cleared them: this call fails too, reading no more of them. A staged
  /// copy is never withdrawn: claiming it touches nothing remote.
  void Claim(int sender, const Rows& rows);
  /// Drops one claim of `sender`'s rows (one per Claim): with none left, its word says announced again, and the
  /// sender may withdraw them until the next Claim. Throws TimeoutError naming the sender when it had stopped waiting
  /// for this rank meanwhile (as Finish does).
  void Release(int sender);
  /// Copies `copies` out of claimed `rows` (read by copy: copy_token != 0) in as few kernel calls as it can.
  /// Throws as transport::Window::ReadExposed does, or TimeoutError naming the sender when the copy failed
  /// because the sender had stopped waiting for this rank (its memory may be gone).
  void CopyRows(const Rows& rows, std::span<const RowCopy> copies) const;
  /// Tells every claimed sender that this rank has finished reading its rows. Throws TimeoutError naming the
  /// senders that had stopped waiting for it meanwhile (Withdraw), whose callers may have reused the memory it
  /// read: that can only be trusted when it was a staged copy, so this call fails.
  void Finish();

 private:
  enum State : uint8_t { kUnclaimed, kClaimed, kReleased, kToldDone };
  // Finish's marking; returns the senders that had given up. Never throws (the destructor's).
  std::vector<int> MarkDone() noexcept;
  // Marks done every word armed for this rank and not claimed now, of the senders in `state` (kUnclaimed: a staged
  // copy's too), so that its sender stops waiting, or its staging buffer is reused. Never throws.
  void Decline(State state) noexcept;
  [[noreturn]] void ThrowGivenUp(const std::vector<int>& senders) const;

  transport::Window& ep_;
  const CallFlags flags_;
  const char* op_;
  mutable std::mutex mutex_;
  std::vector<State> claimed_;          // per sender
  std::vector<int> holds_;              // per sender: the claims held (kClaimed), one per part reading its rows
  std::vector<uint32_t> staged_marks_;  // per sender: the mark it armed its word with (a staged copy), else 0
  bool finished_ = false;
};

/// Waits until every rank r with reads[r] != 0 has said it is done with this rank's rows. At `deadline`, the rows
/// announced to a reader that has not claimed them yet are withdrawn (its call, held up elsewhere, fails when it comes
/// to claim them), and it returns; it throws TimeoutError naming the readers that claimed and are still reading.
void WaitDone(transport::Window& ep, const CallFlags& flags, std::span<const uint8_t> reads,
              transport::Clock::time_point deadline, const char* op);

inline constexpr std::chrono::milliseconds kWithdrawWait{10'000};
/// On a failed call, before its caller gets the announced memory back: withdraws the rows announced to every
/// rank r with reads[r] != 0 that has not claimed them, and waits for those that did to be done, for at most
/// `wait` (a reader that claimed is copying; one that gives its claim back meanwhile has its rows withdrawn then). A
/// reader still not done then is given up on: its word says so, and its Finish (or Release) fails (its call's results
/// may hold memory the caller reused). Staged rows are left alone: their copy
/// outlives the call (ops/stage.h), and their readers go on. Returns false when it gave up on a reader (memory of
/// the library's own that it may still read must then outlive the call). Never throws.
bool Withdraw(transport::Window& ep, const CallFlags& flags, std::span<const uint8_t> reads,
              std::chrono::milliseconds wait = kWithdrawWait) noexcept;

}  // namespace moe_ep::ops::pull
