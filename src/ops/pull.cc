// The pull data path's announcements (a token, a stride and a row count in 32-bit flag halves) and its
// done handshake.
#include "ops/pull.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>

#include "moe_ep/error.h"
#include "plan/layout.h"

namespace moe_ep::ops::pull {
namespace {

using transport::FlagCount;
using transport::FlagEpoch;
using transport::MakeFlag;

// The flags rank r's announcement takes in a peer's window (and, kDone, the peer's word in r's).
enum Field : uint64_t {
  kTokenLow,
  kTokenHigh,
  kStride,
  kCount,
  kStaged,
  kSecondLow,
  kSecondHigh,
  kSecondStride,
  kSecondCount,
  kRowBytes,
  kSecondRowBytes,
  kDone,
};
static_assert(kDone < plan::kPullFields);

uint64_t FlagOf(const CallFlags& flags, int rank, Field field) {
  return flags.base + static_cast<uint64_t>(rank) * plan::kPullFields + field;
}

// What a reader's done word in the sender's window says about a call (its count half; the epoch half is the
// call's). The sender arms it (announced) before it announces; the reader claims it (reading) before it reads
// and marks it done after; a sender whose call failed withdraws it if still unclaimed. Each step is a
// compare-exchange from exactly the step before, so a word cleared by a reset, or armed by a later call, or
// withdrawn, is never taken for this call's. A failed sender that stops waiting for a claimed reader marks its
// word abandoned (from reading); a reader that then finds anything but reading when it is done fails its call,
// since the sender's caller may have reused that memory. Rows staged by the sender (ops/stage.h) are armed with
// a mark of their own (from kWordFirstStaged), which the announcement carries: their copy stays intact until
// every reader is done whatever becomes of the call, and is never withdrawn, so their reader neither claims them
// (a round trip to the sender's memory saved per sender) nor ever fails for that; it only swaps the word from
// that mark to done when it is. A mark no other staging shares keeps a late reader from taking the word a
// later call armed (after a reset without sync, under the same epoch) for its own.
enum DoneWord : uint32_t {
  kWordDone = 1,
  kWordReading = 2,
  kWordWithdrawn = 3,
  kWordAnnounced = 4,
  kWordAbandoned = 5,
  kWordFirstStaged = 8,
};

// A stride, a count and a row's bytes travel as 32-bit flag payloads.
bool Fits(const Rows& rows) {
  return rows.stride <= UINT32_MAX && rows.count <= UINT32_MAX && rows.row_bytes <= UINT32_MAX;
}

}  // namespace

std::optional<Rows> RowsOf(const TensorView& view) {
  if (!view.present() || view.dim() != 2 || view.stride(1) != 1 || view.stride(0) < view.shape[1]) return std::nullopt;
  const uint64_t elem = DTypeSize(view.dtype);
  return Rows{static_cast<const uint8_t*>(view.data), static_cast<uint64_t>(view.stride(0)) * elem,
              static_cast<uint64_t>(view.shape[0]), static_cast<uint64_t>(view.shape[1]) * elem};
}

CallFlags::CallFlags(uint64_t region, const CallSlot& call)
    : base(region + call.parity * plan::kMaxPullFlags), epoch(call.epoch) {}

std::vector<uint64_t> Expose(const transport::Window& ep, const std::optional<Rows>& rows, uint64_t sent_bytes,
                             const PullMinBytes& min_bytes) {
  std::vector<uint64_t> tokens(ep.size(), 0);
  if (!rows || sent_bytes < std::min(min_bytes.in_place, min_bytes.by_copy) || !Fits(*rows)) return tokens;
  for (int peer = 0; peer < ep.size(); ++peer) {
    const uint64_t token = ep.Expose(peer, rows->base, rows->span());
    if (token != 0 && sent_bytes >= (ep.ExposedByCopy(peer, token) ? min_bytes.by_copy : min_bytes.in_place)) {
      tokens[peer] = token;
    }
  }
  return tokens;
}

void Announce(transport::Window& ep, const CallFlags& flags, int peer, uint64_t token, const Rows& rows,
              uint64_t second_token, const Rows& second, uint32_t staged_mark) {
  const int self = ep.rank();
  const auto put = [&](Field field, uint64_t value) {
    ep.Signal(peer, FlagOf(flags, self, field), MakeFlag(flags.epoch, static_cast<uint32_t>(value)));
  };
  // Armed before anything the peer could see: it claims only a word armed for this call.
  ep.Signal(self, FlagOf(flags, peer, kDone), MakeFlag(flags.epoch, staged_mark != 0 ? staged_mark : kWordAnnounced));
  if (second_token != 0) {
    put(kSecondLow, second_token);
    put(kSecondHigh, second_token >> 32);
    put(kSecondStride, second.stride);
    put(kSecondCount, second.count);
    put(kSecondRowBytes, second.row_bytes);
  }
  put(kStride, rows.stride);
  put(kCount, rows.count);
  put(kRowBytes, rows.row_bytes);
  put(kStaged, staged_mark);
  put(kTokenHigh, token >> 32);
  put(kTokenLow, token);  // last: a current kTokenLow means the rest is current too
}

std::optional<Rows> Announced(const transport::Window& ep, const CallFlags& flags, int sender, uint64_t row_bytes,
                              const char* op, bool second) {
  const auto read = [&](Field field) { return ep.ReadFlag(FlagOf(flags, sender, field)); };
  if (FlagEpoch(read(kTokenLow)) != flags.epoch) return std::nullopt;
  const Field low = second ? kSecondLow : kTokenLow, high = second ? kSecondHigh : kTokenHigh;
  const Field stride = second ? kSecondStride : kStride, count = second ? kSecondCount : kCount;
  const Field bytes = second ? kSecondRowBytes : kRowBytes;
  // Announce writes a second tensor's fields before the first's token: with that current, they are current too
  // when the sender announced one at all.
  if (second && FlagEpoch(read(low)) != flags.epoch) return std::nullopt;
  const uint64_t fields[] = {read(low), read(high), read(stride), read(count), read(kStaged), read(bytes)};
  for (uint64_t f : fields) {
    if (FlagEpoch(f) != flags.epoch) {
      throw Error(ErrorCode::kInternal, std::string(op) + ": rank " + std::to_string(sender) + " of " + ep.name() +
                                            " announced its rows to rank " + std::to_string(ep.rank()) +
                                            " without saying where its " + (second ? "second tensor" : "rows") +
                                            " are");
    }
  }
  // A reader that takes rows longer than the sender's would read past its tensor: the ranks disagree on the row
  // (say a combine's H), which no other check of the call catches on this path.
  if (FlagCount(fields[5]) != row_bytes) {
    throw Error(ErrorCode::kInvalidConfig,
                std::string(op) + ": rank " + std::to_string(sender) + " of " + ep.name() + " exposes " +
                    (second ? "second-tensor rows" : "rows") + " of " + std::to_string(FlagCount(fields[5])) +
                    " bytes, and rank " + std::to_string(ep.rank()) + " reads rows of " + std::to_string(row_bytes) +
                    " bytes: every rank of the group must pass the same hidden size (H) and dtype");
  }
  Rows rows{nullptr, FlagCount(fields[2]), FlagCount(fields[3]), row_bytes};
  // Of the first tensor: a staged call has no second (ops/stage.h).
  rows.staged_mark = FlagCount(fields[4]);
  if (rows.staged_mark != 0 && rows.staged_mark < kWordFirstStaged) {
    throw Error(ErrorCode::kInternal, std::string(op) + ": rank " + std::to_string(sender) + " of " + ep.name() +
                                          " announced staged rows under mark " + std::to_string(rows.staged_mark) +
                                          ", below " + std::to_string(kWordFirstStaged));
  }
  const uint64_t token = uint64_t{FlagCount(fields[1])} << 32 | FlagCount(fields[0]);
  rows.base = ep.Resolve(sender, token, rows.span());
  if (rows.base == nullptr && ep.ExposedByCopy(sender, token)) {
    rows.copy_token = token;
    rows.copy_from = sender;
  } else if (rows.base == nullptr) {
    throw Error(ErrorCode::kInternal, std::string(op) + ": rank " + std::to_string(sender) + " of " + ep.name() +
                                          " announced rows that rank " + std::to_string(ep.rank()) +
                                          " can read neither in place nor by copy");
  }
  return rows;
}

uint8_t ReaderKindOf(const transport::Window& ep, int peer, uint64_t token) {
  return ep.ExposedByCopy(peer, token) ? kReadsByCopy : kReadsInPlace;
}

ReaderCounts CountReaders(std::span<const uint8_t> reads) {
  ReaderCounts counts;
  for (uint8_t kind : reads) {
    counts.readers += kind != kNoReader;
    counts.by_copy += kind == kReadsByCopy;
  }
  return counts;
}

bool IsDone(uint64_t word, uint32_t epoch) { return word == MakeFlag(epoch, kWordDone); }

uint32_t NewStagedMark() {
  static std::atomic<uint64_t> stagings{0};  // 64 bits: never wraps, so the marks repeat only every 2^32 - 8
  return kWordFirstStaged + stagings.fetch_add(1, std::memory_order_relaxed) % (UINT32_MAX - kWordFirstStaged + 1);
}

Claims::Claims(transport::Window& ep, const CallFlags& flags, const char* op)
    : ep_(ep),
      flags_(flags),
      op_(op),
      claimed_(ep.size(), kUnclaimed),
      holds_(ep.size(), 0),
      staged_marks_(ep.size(), 0) {}

Claims::~Claims() {
  MarkDone();
  if (!finished_) Decline(kUnclaimed), Decline(kReleased);
}

void Claims::Decline(State state) noexcept {
  const std::lock_guard lock(mutex_);
  const uint64_t index = FlagOf(flags_, ep_.rank(), kDone);
  const uint64_t announced = MakeFlag(flags_.epoch, kWordAnnounced), done = MakeFlag(flags_.epoch, kWordDone);
  for (int sender = 0; sender < static_cast<int>(claimed_.size()); ++sender) {
    if (claimed_[sender] != state) continue;
    uint64_t armed = announced;
    // The token, which Announce writes last, first: a current one makes what it covers current too.
    const uint64_t token = ep_.ReadFlag(FlagOf(flags_, sender, kTokenLow));
    const uint64_t staged = ep_.ReadFlag(FlagOf(flags_, sender, kStaged));
    // A staged copy's word is armed with its staging's mark, which the announcement carries: its buffer waits for
    // this rank until the word says done.
    if (FlagEpoch(token) == flags_.epoch && FlagEpoch(staged) == flags_.epoch &&
        FlagCount(staged) >= kWordFirstStaged) {
      armed = MakeFlag(flags_.epoch, FlagCount(staged));
    }
    // This rank's own rows, never claimed and not staged, are its own call's to withdraw; once read and released, or
    // staged (a copy no withdrawal touches, whose buffer waits for every reader), they are done.
    if (state == kUnclaimed && sender == ep_.rank() && armed == announced) continue;
    try {
      // Only a word armed for this call and still unclaimed: a withdrawn one, another call's, or one cleared stays.
      ep_.CompareExchangeFlag(sender, index, armed, done);
    } catch (...) {  // a sender this rank cannot reach announced nothing to it
    }
  }
}

void Claims::Claim(int sender, const Rows& rows) {
  const std::lock_guard lock(mutex_);
  if (claimed_[sender] == kClaimed) {
    ++holds_[sender];
    return;
  }
  if (claimed_[sender] == kToldDone) return;
  if (rows.staged_mark != 0) {
    staged_marks_[sender] = rows.staged_mark;
    claimed_[sender] = kClaimed;
    holds_[sender] = 1;
    return;
  }
  const uint64_t announced = MakeFlag(flags_.epoch, kWordAnnounced);
  const uint64_t held = ep_.CompareExchangeFlag(sender, FlagOf(flags_, ep_.rank(), kDone), announced,
                                                MakeFlag(flags_.epoch, kWordReading));
  if (held != announced) {
    throw TimeoutError(std::string(op_) + ": rank " + std::to_string(sender) + " of " + ep_.name() +
                           " withdrew the rows it announced before rank " + std::to_string(ep_.rank()) +
                           " read them (its call failed, or its deadline passed while this rank waited for another; "
                           "the ranks of a group must all complete a call: probe, reset, and go on)",
                       {sender});
  }
  claimed_[sender] = kClaimed;
  holds_[sender] = 1;
}

void Claims::Release(int sender) {
  const std::lock_guard lock(mutex_);
  if (claimed_[sender] != kClaimed || --holds_[sender] > 0) return;
  if (staged_marks_[sender] != 0) return;  // a staged copy is never withdrawn: nothing to give back before Finish
  claimed_[sender] = kReleased;
  const uint64_t reading = MakeFlag(flags_.epoch, kWordReading);
  const uint64_t held = ep_.CompareExchangeFlag(sender, FlagOf(flags_, ep_.rank(), kDone), reading,
                                                MakeFlag(flags_.epoch, kWordAnnounced));
  if (held != reading) ThrowGivenUp({sender});
}

void Claims::CopyRows(const Rows& rows, std::span<const RowCopy> copies) const {
  std::vector<transport::Window::ExposedRead> reads;
  reads.reserve(copies.size());
  for (const RowCopy& copy : copies) reads.push_back({copy.dst, copy.index * rows.stride, rows.row_bytes});
  try {
    ep_.ReadExposed(rows.copy_from, rows.copy_token, reads);
  } catch (const TimeoutError&) {
    throw;
  } catch (const Error&) {
    // Of rows not staged (those read by copy never are), a word no longer reading means the sender stopped
    // waiting, and the memory the kernel could not read is what its caller took back.
    const uint64_t reading = MakeFlag(flags_.epoch, kWordReading);
    const bool staged = [&] {
      const std::lock_guard lock(mutex_);
      return staged_marks_[rows.copy_from] != 0;
    }();
    if (!staged &&
        ep_.CompareExchangeFlag(rows.copy_from, FlagOf(flags_, ep_.rank(), kDone), reading, reading) != reading) {
      ThrowGivenUp({rows.copy_from});
    }
    throw;
  }
}

void Claims::Finish() {
  finished_ = true;
  const std::vector<int> given_up = MarkDone();
  Decline(kReleased);  // read, then released: done with them too
  if (!given_up.empty()) ThrowGivenUp(given_up);
}

void Claims::ThrowGivenUp(const std::vector<int>& senders) const {
  std::string names;
  for (int sender : senders) names += (names.empty() ? "" : ", ") + std::to_string(sender);
  const bool one = senders.size() == 1;
  throw TimeoutError(std::string(op_) + (one ? ": rank " : ": ranks ") + names + " of " + ep_.name() +
                         " stopped waiting for rank " + std::to_string(ep_.rank()) + " to finish reading the rows " +
                         (one ? "it" : "they") + " announced (after " + (one ? "its call" : "their calls") +
                         " failed), so " + (one ? "its caller" : "their callers") +
                         " may have reused that memory: what this rank read of it cannot be trusted",
                     senders);
}

std::vector<int> Claims::MarkDone() noexcept {
  std::vector<int> given_up;
  const std::lock_guard lock(mutex_);
  const uint64_t index = FlagOf(flags_, ep_.rank(), kDone);
  for (int sender = 0; sender < static_cast<int>(claimed_.size()); ++sender) {
    if (claimed_[sender] != kClaimed) continue;
    claimed_[sender] = kToldDone;
    const uint32_t mark = staged_marks_[sender];
    const uint64_t from = MakeFlag(flags_.epoch, mark != 0 ? mark : kWordReading);
    try {
      // From reading (a staged copy: its mark) only: a word a reset cleared, or a later call armed, stays as it is.
      // The caller's memory is the caller's again only once its sender stopped waiting for this rank, which any
      // other word means (a staged copy outlives the call: its reader is never given up on).
      const uint64_t held = ep_.CompareExchangeFlag(sender, index, from, MakeFlag(flags_.epoch, kWordDone));
      if (held != from && mark == 0) given_up.push_back(sender);
    } catch (...) {  // a transport that cannot reach the sender any more: its wait names this rank
    }
  }
  return given_up;
}

std::vector<uint64_t> DoneFlags(const CallFlags& flags, std::span<const uint8_t> reads) {
  std::vector<uint64_t> indices;
  for (int reader = 0; reader < static_cast<int>(reads.size()); ++reader) {
    if (reads[reader]) indices.push_back(FlagOf(flags, reader, kDone));
  }
  return indices;
}

void WaitDone(transport::Window& ep, const CallFlags& flags, std::span<const uint8_t> reads,
              transport::Clock::time_point deadline, const char* op) {
  std::vector<uint64_t> pending = DoneFlags(flags, reads);
  const auto done = [&] {
    std::erase_if(pending, [&](uint64_t index) { return IsDone(ep.ReadFlag(index), flags.epoch); });
    return pending.empty();
  };
  const auto missing = [&] {
    std::vector<int> ranks;
    for (uint64_t index : pending) ranks.push_back(static_cast<int>((index - flags.base) / plan::kPullFields));
    return ranks;
  };
  const char* what = "the ranks reading this rank's rows (in place or by copy) to finish";
  try {
    transport::WaitUntil(ep, deadline, op, what, flags.epoch, done, missing);
  } catch (const InterruptedError&) {
    throw;  // not the deadline: the caller withdraws what is unclaimed (Withdraw) as for any failure
  } catch (const TimeoutError&) {
    // A reader that has not claimed the rows by now (its call held up by another rank) will not read them: they are
    // withdrawn, its claim fails its call (whose error names what held it up first), and this call, whose own
    // results are complete, is not failed for it. Only readers still reading are missing.
    const uint64_t announced = MakeFlag(flags.epoch, kWordAnnounced);
    std::erase_if(pending, [&](uint64_t index) {
      return ep.CompareExchangeFlag(ep.rank(), index, announced, MakeFlag(flags.epoch, kWordWithdrawn)) == announced;
    });
    transport::WaitUntil(ep, deadline, op, what, flags.epoch, done, missing);  // past the deadline: names them
  }
}

bool Withdraw(transport::Window& ep, const CallFlags& flags, std::span<const uint8_t> reads,
              std::chrono::milliseconds wait) noexcept {
  const uint64_t announced = MakeFlag(flags.epoch, kWordAnnounced), reading = MakeFlag(flags.epoch, kWordReading);
  try {
    std::vector<uint64_t> claimed;
    for (uint64_t index : DoneFlags(flags, reads)) {
      const uint64_t held = ep.CompareExchangeFlag(ep.rank(), index, announced, MakeFlag(flags.epoch, kWordWithdrawn));
      if (held == reading) claimed.push_back(index);  // else withdrawn now, done, or never armed in this call
    }
    // Readers write their words straight into this rank's memory (they read it in place): no Progress needed. A
    // reader that gives its claim back (Claims::Release: it waits for another rank) is not done: its word is
    // withdrawn then, so that it cannot claim again memory the caller is about to get back.
    const auto withdraw_released = [&](uint64_t index) {
      const uint64_t held = ep.CompareExchangeFlag(ep.rank(), index, announced, MakeFlag(flags.epoch, kWordWithdrawn));
      return held != reading;  // done, withdrawn now, or cleared: not reading any more
    };
    const auto until = transport::Clock::now() + wait;
    while (!claimed.empty() && transport::Clock::now() < until) {
      std::erase_if(claimed, withdraw_released);
      if (!claimed.empty()) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    // Given up on: a reader that finishes now learns that its call must fail; one that released meanwhile finds its
    // rows withdrawn when it claims them again.
    bool gave_up = false;
    for (uint64_t index : claimed) {
      while (true) {
        if (ep.CompareExchangeFlag(ep.rank(), index, reading, MakeFlag(flags.epoch, kWordAbandoned)) == reading) {
          gave_up = true;
          break;
        }
        if (withdraw_released(index)) break;
      }
    }
    return !gave_up;
  } catch (...) {  // the call's own error is what the caller must see; a reader may still hold the memory
    return false;
  }
}

}  // namespace moe_ep::ops::pull
