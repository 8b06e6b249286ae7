// The hosts transport: a host's shared-memory window for peers on this host, two-sided MPI messages of
// aggregated records for the others, progressed inside the waits.
#include "transport/mpi/hosts_window.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "base/copy.h"
#include "base/entropy.h"
#include "base/env.h"
#include "base/hash.h"
#include "moe_ep/error.h"
#include "transport/mpi/join_settings.h"
#include "transport/mpi/mailbox.h"
#include "transport/mpi/meeting.h"
#include "transport/mpi/mpi_runtime.h"
#include "transport/shm/shm_window.h"

#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // a fault-tolerant MPI's error classes (StillPending)
#endif

namespace moe_ep::transport {
namespace {

constexpr int kTag = 0x4D45;
// Payloads this large are looked up among those already queued for the same rank: a row bound for
// several ranks of one host crosses to it once.
constexpr uint64_t kSharedPayloadMinBytes = 256;

// The records of an aggregated message, applied in order (so a put lands before a later signal): a
// put or a row is its header and then `b` bytes padded to 8; a copy, a signal and an end are their header
// alone. A row (Window::PutRow) stays in the message when it is for the receiver itself. An end (two-level
// only) tells the relay that the sender's operation `a` sent everything before it. A round says that the sender's
// records after it, in this message and later ones, were queued in its reset round `a` (Window::BeginRound).
enum class RecordKind : uint32_t { kPut = 1, kSignal = 2, kCopy = 3, kEnd = 4, kRow = 5, kRound = 6 };
struct RecordHeader {
  RecordKind kind;
  int32_t target;  // the receiving host's window index of the rank it is for: the receiver, or one it relays to
  uint64_t a;      // put, copy, row: offset; signal: flag index; end: the operation's sequence; round: the round
  uint64_t b;      // put, copy, row: bytes; signal: value
  uint64_t from;   // copy: where in this message the payload starts (an earlier put's); row: its tag
};

// The receives posted first, which each poll tests (TestRequests), and how often polls that find nothing
// test them all.
constexpr uint64_t kTestedReceives = 64;
constexpr uint64_t kFullTestPolls = 16;

// A message to a rank known to have failed that is still under way after this is taken as stuck (SendQueued).
constexpr auto kStuckSend = std::chrono::milliseconds(100);

uint64_t Padded(uint64_t bytes) { return (bytes + 7) / 8 * 8; }

// A message starts with its number among those its sender sent this receiver (u64), then its records.
constexpr uint64_t kSequenceBytes = 8;

// How large messages are, agreed by every rank of a window at set-up (each receive posted ahead must hold
// any message). The default, 64,512 bytes, stays below the 64 KiB up to which Open MPI's TCP transport sends
// a message at once rather than after a handshake with the receiver (a round trip through both ranks'
// polls). Small messages, each sent as it fills, keep a slow link busy from a phase's first rows on, and let
// the receiver use the first rows (combine sums a token once its rows are there) while later ones travel.
// Larger ones take the handshake, and are then read from the socket straight into the posted receive: one
// copy fewer per byte, which is what counts when the cores, not the link, are the limit.
struct MessageSize {
  explicit MessageSize(uint64_t message_bytes)
      : bytes(message_bytes),
        piece(message_bytes - kSequenceBytes - sizeof(RecordHeader)),
        fewest_posted(std::clamp<uint64_t>(kFewestPostedBytes / message_bytes, 8, 64)),
        most_posted(std::clamp<uint64_t>(kMostPostedBytes / message_bytes, fewest_posted, 4096)) {
    assert(piece % 8 == 0 && "a piece must keep the records after it 8-byte aligned");
  }
  // Receives kept posted: about the messages that arrive between two polls of a busy rank. A message that
  // finds none posted is copied twice (into Open MPI's memory, then out), one that finds one once; but each
  // holds a buffer of `bytes`, which a run of small operations would keep for nothing. So the count follows the traffic
  // (HostsWindow::GrowPosting, AdaptPosting), from fewest_posted (64 within kFewestPostedBytes, at least 8: a large
  // message that finds none posted waits, unread, in the socket, only its first bytes copied on arrival) to most_posted
  // (4096 within kMostPostedBytes).
  static constexpr uint64_t kFewestPostedBytes = 4 << 20;
  static constexpr uint64_t kMostPostedBytes = 256 << 20;
  uint64_t bytes;          // the most a message holds on the wire
  uint64_t piece;          // a put longer than this goes as several records, each fitting a message
  uint64_t fewest_posted;  // receives kept posted: see kFewestPostedBytes
  uint64_t most_posted;
};

// One message (at most its capacity on the wire: its sequence number, then its records), uninitialised:
// buffers go back to a spare list and are reused, as a fresh page costs a page fault and the kernel's
// zero-fill, more than the copy into it.
class MessageBuffer {
 public:
  MessageBuffer() = default;
  static MessageBuffer New(uint64_t capacity) {
    MessageBuffer buffer;
    buffer.bytes_.reset(new uint8_t[capacity]);
    buffer.capacity_ = capacity;
    return buffer;
  }
  // The records.
  uint8_t* data() const { return bytes_.get() + kSequenceBytes; }
  size_t size() const { return size_; }
  size_t room() const { return capacity_ - kSequenceBytes - size_; }
  bool empty() const { return size_ == 0; }
  void Clear() { size_ = 0; }
  // Appends `size` uninitialised bytes (at most room()); returns where they start.
  uint8_t* Append(size_t size) {
    const size_t at = size_;
    size_ += size;
    return data() + at;
  }
  // The message as it travels.
  uint8_t* wire() const { return bytes_.get(); }
  size_t wire_size() const { return kSequenceBytes + size_; }
  uint64_t sequence() const {
    uint64_t n = 0;
    std::memcpy(&n, wire(), sizeof n);
    return n;
  }
  void SetSequence(uint64_t n) { std::memcpy(wire(), &n, sizeof n); }
  // Takes the records of a received message of `wire_bytes` (false when it cannot hold a sequence number).
  bool Received(size_t wire_bytes) {
    if (wire_bytes < kSequenceBytes) return false;
    size_ = wire_bytes - kSequenceBytes;
    return true;
  }

 private:
  std::unique_ptr<uint8_t[]> bytes_;
  size_t capacity_ = 0;
  size_t size_ = 0;
};

// Buffers MPI may still touch (a send to, or a receive from, a rank that died mid-message): kept for
// the life of the process rather than freed under MPI's feet.
void Abandon(MessageBuffer buffer) {
  static auto* const graveyard = new std::vector<MessageBuffer>;
  graveyard->push_back(std::move(buffer));
}

// Where each rank of a group runs: hosts numbered by their first rank, ranks of a host in group order.
struct Topology {
  std::vector<int> host_of;                  // rank -> host
  std::vector<int> local_of;                 // rank -> its index among its host's ranks
  std::vector<std::vector<int>> host_ranks;  // host -> its ranks
};

Topology TopologyOf(const std::vector<int>& leader_of) {
  Topology t;
  std::map<int, int> host_of_leader;
  for (int leader : leader_of) {
    const auto [it, fresh] = host_of_leader.try_emplace(leader, static_cast<int>(t.host_ranks.size()));
    if (fresh) t.host_ranks.emplace_back();
    const int rank = static_cast<int>(t.host_of.size());
    t.host_of.push_back(it->second);
    t.local_of.push_back(static_cast<int>(t.host_ranks[it->second].size()));
    t.host_ranks[it->second].push_back(rank);
  }
  return t;
}

// Whether a relay has anything to do: several hosts, and some host with several ranks to relay to.
bool RelayCanPay(const Topology& t) {
  if (t.host_ranks.size() < 2) return false;
  return std::any_of(t.host_ranks.begin(), t.host_ranks.end(), [](const auto& ranks) { return ranks.size() > 1; });
}

class HostsWindow final : public Window {
 public:
  HostsWindow(int rank, int size, uint64_t data_bytes, uint64_t flag_count, std::string name, MPI_Comm comm,
              std::unique_ptr<Window> host, Topology topology, uint64_t message_bytes, bool relay)
      : Window(rank, size, data_bytes, flag_count, std::move(name)),
        comm_(comm),
        message_(message_bytes),
        host_(std::move(host)),
        topology_(std::move(topology)),
        relay_(relay && RelayCanPay(topology_)),  // two-level when asked for (MOE_EP_HOSTS_RELAY) and it pays
        failed_(size, false),
        channel_(size, Channel::kUndecided),
        outbox_(size),
        ends_(size, std::vector<uint64_t>{0}),  // as if each sender had ended operation 0 of generation 0
        remote_peers_(topology_.host_ranks.size() > 1),
        posted_target_(message_.fewest_posted),
        sent_to_(size, 0),
        next_from_(size, 0),
        round_from_(size, 0) {}

  int LocalRanks() const override { return host_->size(); }

  ~HostsWindow() override {
    const auto lock = mpi::Lock();
    if (mpi::Finalized()) return;  // nothing may be freed any more; the program ends
    for (InFlight& send : sends_) {
      if (send.request != MPI_REQUEST_NULL) MPI_Request_free(&send.request);
      Abandon(std::move(send.buffer));
    }
    for (Incoming& in : posted_) {
      if (in.request == MPI_REQUEST_NULL) continue;
      if (!in.cancelled) MPI_Cancel(&in.request);  // a second cancel of one request crashes Open MPI
      int done = 0;
      MPI_Test(&in.request, &done, MPI_STATUS_IGNORE);
      if (done) continue;  // cancelled (or arrived): MPI is done with the buffer
      MPI_Request_free(&in.request);
      Abandon(std::move(in.buffer));
    }
    // The communicator is kept, not freed: a peer may still be sending on it (a late or failed peer), and Open MPI
    // holds messages for a freed communicator's id and hands them to the next communicator that gets the id (the
    // next group's MPI_Comm_dup crashed in Open MPI 4.1's mca_pml_ob1_add_comm when they came from more ranks than
    // it has). A communicator per group ever made, for the life of the process.
  }

  void Put(int peer, uint64_t offset, const void* src, uint64_t bytes) override {
    CheckPeer(peer, "put");
    if (OnThisHost(peer)) return host_->Put(topology_.local_of[peer], offset, src, bytes);
    CheckRange(peer, offset, bytes);
    const std::lock_guard lock(engine_);
    QueuePut(Route(peer), peer, offset, static_cast<const uint8_t*>(src), bytes);
  }

  void PutRow(int peer, uint64_t offset, const void* src, uint64_t bytes, uint64_t tag) override {
    CheckPeer(peer, "put");
    if (OnThisHost(peer)) return host_->Put(topology_.local_of[peer], offset, src, bytes);
    CheckRange(peer, offset, bytes);
    const std::lock_guard lock(engine_);
    // A row longer than a message goes as plain puts (copied into the window), on the row's channel.
    if (bytes > message_.piece) return QueuePut(RouteRow(peer), peer, offset, static_cast<const uint8_t*>(src), bytes);
    Queue(RouteRow(peer), {RecordKind::kRow, topology_.local_of[peer], offset, bytes, tag},
          static_cast<const uint8_t*>(src));
  }

  const uint8_t* Row(uint64_t offset, uint64_t bytes, uint64_t tag) const override {
    const std::lock_guard lock(engine_);
    const auto it = rows_.find({offset, tag});
    if (it == rows_.end()) return host_->LocalData() + offset;
    if (bytes > it->second.bytes) {
      throw Error(ErrorCode::kInternal, "a read of " + std::to_string(bytes) + " bytes at offset " +
                                            std::to_string(offset) + " of " + name() + " passes the " +
                                            std::to_string(it->second.bytes) + "-byte row that arrived there");
    }
    it->second.read = true;
    return it->second.data;
  }

  void Signal(int peer, uint64_t index, uint64_t value) override {
    CheckPeer(peer, "signal");
    // Checked here, not by the host window: its flags go on past the group's (its own barrier and probe).
    if (index >= all_flag_count()) {
      throw Error(ErrorCode::kInternal, "signal of flag " + std::to_string(index) + " beyond the " +
                                            std::to_string(all_flag_count()) + " flags of rank " +
                                            std::to_string(peer) + "'s window");
    }
    if (OnThisHost(peer)) return host_->Signal(topology_.local_of[peer], index, value);
    const std::lock_guard lock(engine_);
    // Probe stamps go straight to the peer: a probe must not depend on a relay that may be the rank that
    // died. Everything else (barrier stamps too: a barrier orders the puts before it) takes the route.
    const bool probe = index >= flag_count() + static_cast<uint64_t>(size());
    const int via = probe ? peer : Route(peer);
    // The group's flags go with the data (Apply drops both of an earlier round); the transport's always land.
    if (index < flag_count()) MarkRound(via);
    QueueHeader(via, {RecordKind::kSignal, topology_.local_of[peer], index, value, 0});
  }

  // Peers on this host may read this rank's memory in place (through the host window); others never.
  uint64_t CompareExchangeFlag(int peer, uint64_t index, uint64_t expected, uint64_t desired) override {
    CheckPeer(peer, "compare-exchange");
    if (!OnThisHost(peer)) return Window::CompareExchangeFlag(peer, index, expected, desired);  // throws
    return host_->CompareExchangeFlag(topology_.local_of[peer], index, expected, desired);
  }
  uint64_t Expose(int peer, const void* p, uint64_t bytes) const override {
    CheckPeer(peer, "expose");
    return OnThisHost(peer) ? host_->Expose(topology_.local_of[peer], p, bytes) : 0;
  }
  const uint8_t* Resolve(int peer, uint64_t token, uint64_t bytes) const override {
    CheckPeer(peer, "resolve");
    if (!OnThisHost(peer)) return nullptr;
    return InOuterNumbering(
        *this, [&] { return host_->Resolve(topology_.local_of[peer], token, bytes); }, [&](int) { return peer; });
  }
  bool ExposedByCopy(int peer, uint64_t token) const override {
    CheckPeer(peer, "read exposed memory of");
    return OnThisHost(peer) && host_->ExposedByCopy(topology_.local_of[peer], token);
  }
  void ReadExposed(int peer, uint64_t token, std::span<const ExposedRead> reads) const override {
    CheckPeer(peer, "read exposed memory of");
    if (!OnThisHost(peer)) return Window::ReadExposed(peer, token, reads);  // throws
    InOuterNumbering(
        *this, [&] { host_->ReadExposed(topology_.local_of[peer], token, reads); }, [&](int) { return peer; });
  }

  uint64_t ReadFlag(uint64_t index) const override { return host_->ReadFlag(index); }
  const uint8_t* LocalData() const override { return host_->LocalData(); }
  // The host window's flags go on past the group's: its barrier and probe flags must survive.
  void ClearLocal(uint64_t cleared_flags) override {
    host_->ClearLocal(std::min(cleared_flags, flag_count()));
    const std::lock_guard lock(engine_);
    rows_.clear();
    ReleaseRowMessages();
  }

  bool Progress() const override {
    const std::lock_guard lock(engine_);
    const auto mpi_lock = mpi::Lock();
    return ProgressLocked();
  }

  void Flush() const override {
    const std::lock_guard lock(engine_);
    const auto mpi_lock = mpi::Lock();
    for (int peer = 0; peer < size(); ++peer) SendQueued(peer);
    // A poll (which also lands what arrived) only while sends are under way, to push them on: with none, a
    // poll that finds nothing gives the core away when ranks outnumber cores. A relay hands on what arrived
    // for its host at its next poll, at the latest in Drain. A send stuck on a failed peer needs no push.
    if (std::any_of(sends_.begin(), sends_.end(), [&](const InFlight& send) { return !failed_[send.peer]; })) {
      ProgressLocked();
    }
  }

  void Drain(Clock::time_point deadline, const char* op, std::span<const int> gone) override {
    {
      const std::lock_guard lock(engine_);
      const auto mpi_lock = mpi::Lock();
      // What is still queued for a gone peer is dropped. Its sends under way stay under way, not waited for: a
      // stalled peer may take them yet, and while one is stuck, SendQueued sends it nothing more (abandoning
      // them here let each later probe start another, a buffer of up to the message size kept for good each).
      for (int peer : gone) {
        if (peer >= 0 && peer < size()) outbox_[peer] = {};
      }
    }
    const auto undelivered = [&] {
      const std::lock_guard lock(engine_);
      std::vector<int> ranks;
      for (int peer = 0; peer < size(); ++peer) {
        if (std::find(gone.begin(), gone.end(), peer) != gone.end()) continue;
        const bool queued = !outbox_[peer].records.empty();
        const bool sending =
            std::any_of(sends_.begin(), sends_.end(), [&](const InFlight& s) { return s.peer == peer; });
        if (queued || sending) ranks.push_back(peer);
      }
      return ranks;
    };
    WaitUntil(
        *this, deadline, op, "its messages to be taken", 0, [&] { return undelivered().empty(); }, undelivered);
    if (!Relaying()) return;
    // A relay stays until it has handed on everything its senders sent through it for this operation:
    // once it left, nothing would (the program may block in MPI, or compute, while a host rank waits).
    const auto unended = [&] {
      const std::lock_guard lock(engine_);
      std::vector<int> ranks;
      for (int sender = 0; sender < size(); ++sender) {
        if (!RelaysThroughThisRank(sender) || failed_[sender] ||
            std::find(gone.begin(), gone.end(), sender) != gone.end() ||
            std::any_of(ends_[sender].begin(), ends_[sender].end(),
                        [&](uint64_t mark) { return Ended(mark, sequence_); })) {
          continue;
        }
        ranks.push_back(sender);
      }
      return ranks;
    };
    WaitUntil(
        *this, deadline, op, "the rows it relays", 0, [&] { return unended().empty(); }, unended);
  }

  void EndOperation(uint64_t sequence) override {
    const std::lock_guard lock(engine_);
    // A row read goes; one never read goes at the second end after it landed: it came at most one operation early (a
    // peer that sent it had seen this rank start the operation before), so it was an operation's that failed.
    for (auto it = rows_.begin(); it != rows_.end();) {
      ArrivedRow& row = it->second;
      it = row.read || ++row.ends_passed == 2 ? rows_.erase(it) : std::next(it);
    }
    ReleaseRowMessages();
    AdaptPosting();
    if (!relay_) return;
    std::fill(channel_.begin(), channel_.end(), Channel::kUndecided);
    sequence_ = sequence;
    // Nothing went through a relay, and none waits for this operation: the next end mark covers it.
    if (!Relaying()) return;
    for (int host = 0; host < static_cast<int>(topology_.host_ranks.size()); ++host) {
      if (host == topology_.host_of[rank()]) continue;
      if (const int relay = RelayFor(rank(), host); relay >= 0)
        QueueHeader(relay, {RecordKind::kEnd, 0, sequence, 0, 0});
    }
    const auto mpi_lock = mpi::Lock();
    for (int peer = 0; peer < size(); ++peer) SendQueued(peer);
  }

  std::string Describe() const override {
    const char* path = relay_                    ? "dispatch two-level (through one rank per host), combine flat"
                       : !RelayCanPay(topology_) ? "flat (no host has several ranks to relay to)"
                                                 : "flat (MOE_EP_HOSTS_RELAY=0)";
    const std::lock_guard lock(engine_);
    return std::string("between hosts ") + path + ", in messages of at most " + std::to_string(message_.bytes) +
           " bytes, " + std::to_string(posted_target_) + " receives posted ahead (" +
           std::to_string(message_.fewest_posted) + " to " + std::to_string(message_.most_posted) +
           " as the traffic asks), " + std::to_string(sends_.size()) + " messages under way";
  }

  std::string ExplainMissing(std::span<const int> missing) const override {
    // Combine goes straight to each owner: its missing ranks' messages came through no relay.
    const bool relaying = [&] {
      const std::lock_guard lock(engine_);
      return Relaying();
    }();
    std::string text = MessagesInFlight() + MessagesCounted(missing);
    if (relaying) text += EndsSeen(missing);
    const std::lock_guard lock(engine_);
    for (int peer : missing) {
      if (peer < 0 || peer >= size() || OnThisHost(peer) || !relaying) continue;
      // The rank it relays through now: past the ranks known to have failed, as Route chose.
      const int relay = RelayFor(peer, topology_.host_of[rank()]);
      if (relay < 0) continue;
      // A relay that is missing too may be all that is wrong with the peer.
      if (relay == rank() || std::find(missing.begin(), missing.end(), relay) == missing.end()) continue;
      text += "; rank " + std::to_string(peer) + "'s messages to this host come through rank " + std::to_string(relay) +
              ", missing too";
    }
    return text;
  }

  // The messages this rank sent straight to each remote rank of `missing` and landed straight from it (two-level,
  // what went through a relay is the relay's count), for a timeout's message: set against the peer's own, they tell
  // a message sent and never landed from one the peer never sent.
  std::string MessagesCounted(std::span<const int> missing) const {
    const std::lock_guard lock(engine_);
    std::string text;
    for (int peer : missing) {
      if (peer < 0 || peer >= size() || OnThisHost(peer)) continue;
      text += text.empty() ? "; messages sent to / landed from rank " : ", rank ";
      text += std::to_string(peer) + ": " + std::to_string(sent_to_[peer]) + " / " + std::to_string(next_from_[peer]);
    }
    return text;
  }

  // The last operation end each of `missing` that relays through this rank sent it, for a timeout's message.
  std::string EndsSeen(std::span<const int> missing) const {
    const std::lock_guard lock(engine_);
    std::string text;
    for (int peer : missing) {
      if (peer < 0 || peer >= size() || !RelaysThroughThisRank(peer)) continue;
      text += (text.empty() ? "; operations ended (this rank's last: " + Describe(sequence_) + "): " : ", ") +
              std::string("rank ") + std::to_string(peer) + " " + Describe(ends_[peer].back());
    }
    return text;
  }
  static std::string Describe(uint64_t sequence) {
    return std::to_string(sequence & 0xFFFFFFFF) + " of generation " + std::to_string(sequence >> 32);
  }

  // This rank's messages still under way, for a timeout's message: where a lost or stuck one is.
  std::string MessagesInFlight() const {
    const std::lock_guard lock(engine_);
    std::string text;
    for (int peer = 0; peer < size(); ++peer) {
      const auto sending = std::count_if(sends_.begin(), sends_.end(), [&](const InFlight& s) {
        return s.peer == peer && s.request != MPI_REQUEST_NULL;
      });
      const size_t queued = outbox_[peer].records.size();
      // Arrived ahead of an earlier message of theirs, which has not.
      const auto early = std::distance(arrived_.lower_bound({peer, 0}), arrived_.lower_bound({peer + 1, 0}));
      if (sending == 0 && queued == 0 && early == 0) continue;
      text += text.empty() ? "; messages under way: " : ", ";
      text += "rank " + std::to_string(peer) + " (" + std::to_string(sending) + " sending, " + std::to_string(queued) +
              " bytes queued";
      if (early > 0)
        text += ", " + std::to_string(early) + " arrived ahead of its message " + std::to_string(next_from_[peer]);
      text += ")";
    }
    return text;
  }

  void AllowRelay(bool allowed) override {
    const std::lock_guard lock(engine_);
    relay_allowed_ = allowed;
  }

  // This host's ranks' window too (its messages number them on this host).
  void Relabel(const std::string& shown) override {
    Window::Relabel(shown);
    host_->Relabel("this host's part of " + shown);
  }

  void BeginRound(uint64_t round) override {
    const std::lock_guard lock(engine_);
    round_ = std::max(round_, round);
  }

  void SetFailedPeers(std::span<const int> failed) override {
    const std::lock_guard lock(engine_);
    std::fill(failed_.begin(), failed_.end(), false);
    for (int peer : failed) {
      if (peer >= 0 && peer < size()) failed_[peer] = true;
    }
  }

 private:
  struct Outbox {
    MessageBuffer records;  // not sent yet
    // The put payloads in `records` by source address and size -> where they start, for copies.
    std::map<std::pair<const void*, uint64_t>, uint64_t> payloads;
    // The round the receiver was last told (a round record) the data records queued here are of; kept from one
    // message to the next (they land in order), and forgotten with records never sent.
    std::optional<uint64_t> round;
  };
  struct InFlight {
    int peer;
    MessageBuffer buffer;
    MPI_Request request = MPI_REQUEST_NULL;
    Clock::time_point sent{};
  };
  struct Incoming {
    MessageBuffer buffer;
    MPI_Request request = MPI_REQUEST_NULL;
    int source = -1;         // once it arrived
    bool cancelled = false;  // asked to be cancelled (AdaptPosting); once finished, whether that happened
  };
  // A request TestRequests tests.
  struct Pending {
    MPI_Request* request;
    Incoming* in;  // a receive; else a send
    int peer;      // a send's
  };

  // Whether this operation sends through relays: the window is two-level and the operation allows it.
  bool Relaying() const { return relay_ && relay_allowed_; }

  bool OnThisHost(int peer) const { return topology_.host_of[peer] == topology_.host_of[rank()]; }

  void CheckRange(int peer, uint64_t offset, uint64_t bytes) const {
    if (offset > data_bytes() || bytes > data_bytes() - offset) {  // written so that it cannot wrap
      throw Error(ErrorCode::kInternal, "put of " + std::to_string(bytes) + " bytes at offset " +
                                            std::to_string(offset) + " overruns the " + std::to_string(data_bytes()) +
                                            "-byte window of rank " + std::to_string(peer));
    }
  }

  // Gives back the buffers of the messages no row left for Row points into any more (the caller holds
  // engine_).
  void ReleaseRowMessages() const {
    std::unordered_set<const uint8_t*> holding;
    for (const auto& [where, row] : rows_) holding.insert(row.message);
    for (auto it = row_messages_.begin(); it != row_messages_.end();) {
      if (holding.count(it->first) > 0) {
        ++it;
        continue;
      }
      Give(std::move(it->second));
      it = row_messages_.erase(it);
    }
  }

  void CheckPeer(int peer, const char* what) const {
    if (peer < 0 || peer >= size()) {
      throw Error(ErrorCode::kInternal, std::string(what) + " to rank " + std::to_string(peer) + " of a " +
                                            std::to_string(size()) + "-rank window (" + name() + ")");
    }
  }

  // The rank a record for remote `peer` goes to: flat, the peer itself; two-level, the relay (the rank of
  // the peer's host with this rank's local index, or the next one alive), so a row for several ranks of a
  // host crosses once. Two-level, an operation's records to a peer all take one channel, chosen by the
  // first of them: a row (RouteRow: combine's, which no relay could shrink) goes straight to the peer,
  // anything else through the relay. One channel keeps them in order (publish before signal);
  // EndOperation chooses afresh.
  int Route(int peer) {
    if (!Relaying() || channel_[peer] == Channel::kDirect) return peer;
    channel_[peer] = Channel::kRelay;
    return RelayFor(rank(), topology_.host_of[peer], peer);
  }
  int RouteRow(int peer) {
    if (relay_ && channel_[peer] == Channel::kUndecided) channel_[peer] = Channel::kDirect;
    return Route(peer);
  }

  // The rank of `host` that relays what `sender` sends there: the one with the sender's local index, or
  // the next one alive; `otherwise` when every rank of the host failed.
  int RelayFor(int sender, int host, int otherwise = -1) const {
    for (int skip = 0; skip < static_cast<int>(topology_.host_ranks[host].size()); ++skip) {
      const int relay = RelayOf(sender, host, skip);
      if (!failed_[relay]) return relay;
    }
    return otherwise;
  }

  // Whether what `sender` sends to this host comes through this rank (two-level).
  bool RelaysThroughThisRank(int sender) const {
    return !OnThisHost(sender) && RelayFor(sender, topology_.host_of[rank()]) == rank();
  }

  static constexpr size_t kEndGenerations = 4;

  // Keeps `mark`, an end `sender` sent: the highest of its generation (by serial-number arithmetic: a failed synced
  // reset's 0|0 does not undo 0|k), the latest generation last.
  void NoteEnd(int sender, uint64_t mark) const {
    std::vector<uint64_t>& marks = ends_[sender];
    const auto same = std::find_if(marks.begin(), marks.end(), [&](uint64_t m) { return m >> 32 == mark >> 32; });
    if (same != marks.end()) {
      if (!Ended(mark, *same)) mark = *same;  // lower than the one kept
      marks.erase(same);
    }
    marks.push_back(mark);
    if (marks.size() > kEndGenerations) marks.erase(marks.begin());
  }

  // Whether an end mark `mark` covers this rank's operation `sequence`: the same reset generation (high
  // 32 bits), and that operation or a later one (by serial-number arithmetic: operation 0 follows 2^32 - 1).
  static bool Ended(uint64_t mark, uint64_t sequence) {
    const auto ahead = static_cast<int32_t>(static_cast<uint32_t>(mark) - static_cast<uint32_t>(sequence));
    return mark >> 32 == sequence >> 32 && ahead >= 0;
  }

  // The rank of `host` that relays what `sender` sends there, passing over `skip` failed ones.
  int RelayOf(int sender, int host, int skip) const {
    const std::vector<int>& ranks = topology_.host_ranks[host];
    return ranks[(static_cast<size_t>(topology_.local_of[sender]) + skip) % ranks.size()];
  }

  // What is queued for `via`, in a buffer from the spare list once something is.
  MessageBuffer& Records(int via) const {
    MessageBuffer& records = outbox_[via].records;
    if (!records.wire()) records = Take();
    return records;
  }

  // Queues a record of its header alone (signal, end) for `via` (the caller holds engine_).
  void QueueHeader(int via, const RecordHeader& header) {
    MakeRoom(via, sizeof header);
    std::memcpy(Records(via).Append(sizeof header), &header, sizeof header);
  }

  // Sends what is queued for `via` first when `bytes` more would not fit its message. Only sends: a poll
  // here, between two rows, would give the core away on a machine with more ranks than cores.
  void MakeRoom(int via, uint64_t bytes) {
    if (Records(via).room() >= bytes) return;
    const auto lock = mpi::Lock();
    SendQueued(via, /*full=*/true);
  }

  // Queues a put of `bytes` at `offset` of `peer`'s window for `via`, as records of at most message_.piece bytes (the
  // caller holds engine_).
  void QueuePut(int via, int peer, uint64_t offset, const uint8_t* src, uint64_t bytes) {
    uint64_t done = 0;
    do {
      const uint64_t piece = std::min(message_.piece, bytes - done);
      Queue(via, {RecordKind::kPut, topology_.local_of[peer], offset + done, piece, 0}, src + done);
      done += piece;
    } while (done < bytes);
  }

  // Queues a round record for `via` unless what is queued for it is of this rank's round already (the caller holds
  // engine_).
  void MarkRound(int via) {
    Outbox& box = outbox_[via];
    if (box.round == round_) return;
    QueueHeader(via, {RecordKind::kRound, 0, round_, 0, 0});
    box.round = round_;
  }

  // Queues a put or a row and its payload (at most message_.piece bytes) for `via` (the caller holds engine_). A put
  // whose bytes are in the message being filled already becomes a copy of them.
  void Queue(int via, RecordHeader header, const uint8_t* payload) {
    assert(header.b <= message_.piece && "a record must fit an empty message");
    MarkRound(via);
    Outbox& box = outbox_[via];
    const bool shareable = header.kind == RecordKind::kPut && header.b >= kSharedPayloadMinBytes;
    if (shareable) {
      const auto it = box.payloads.find({payload, header.b});
      if (it != box.payloads.end() && Records(via).room() >= sizeof header &&
          std::memcmp(box.records.data() + it->second, payload, header.b) == 0) {
        header.kind = RecordKind::kCopy;
        header.from = it->second;
        std::memcpy(box.records.Append(sizeof header), &header, sizeof header);
        return;
      }
    }
    const uint64_t payload_bytes = Padded(header.b);
    MakeRoom(via, sizeof header + payload_bytes);
    MessageBuffer& records = Records(via);
    if (shareable) box.payloads[{payload, header.b}] = records.size() + sizeof header;
    uint8_t* record = records.Append(sizeof header + payload_bytes);
    std::memcpy(record, &header, sizeof header);
    if (header.b > 0) CopyBytes(record + sizeof header, payload, header.b);
    std::memset(record + sizeof header + header.b, 0, payload_bytes - header.b);  // the padding
  }

  // Sends `peer`'s queued records as one message (the caller holds engine_ and the MPI lock). Returns
  // whether it did. To a peer known to have failed whose last message has been under way for kStuckSend, a
  // message waits (unless the records fill it): a send to a dead rank never finishes, and a survivor that
  // keeps probing would otherwise hold a message buffer, and a request to test at every poll, for each
  // probe. A live peer takes a message within microseconds, so one it is re-admitted by (a reset's sync
  // after a probe's stamp) is never held; what a held message carries, later signals supersede.
  bool SendQueued(int peer, bool full = false) const {
    Outbox& box = outbox_[peer];
    if (box.records.empty()) return false;
    if (!full && failed_[peer] && StuckSendingTo(peer)) return false;
    InFlight& send = sends_.emplace_back(InFlight{peer, std::move(box.records), MPI_REQUEST_NULL, Clock::now()});
    box.records = MessageBuffer();
    box.payloads.clear();
    send.buffer.SetSequence(sent_to_[peer]++);
    mpi::Check(MPI_Isend(send.buffer.wire(), static_cast<int>(send.buffer.wire_size()), MPI_BYTE, peer, kTag, comm_,
                         &send.request),
               "MPI_Isend");
    return true;
  }

  // Whether a message to `peer` has been under way for kStuckSend or longer.
  bool StuckSendingTo(int peer) const {
    const Clock::time_point stuck = Clock::now() - kStuckSend;
    return std::any_of(sends_.begin(), sends_.end(), [&](const InFlight& send) {
      return send.peer == peer && send.request != MPI_REQUEST_NULL && send.sent <= stuck;
    });
  }

  // A spare message buffer, or a new one.
  MessageBuffer Take() const {
    if (spare_.empty()) return MessageBuffer::New(message_.bytes);
    MessageBuffer buffer = std::move(spare_.back());
    spare_.pop_back();
    return buffer;
  }
  // Keeps the buffer for reuse, up to twice as many as receives are kept posted (as many again for sends), so
  // that the memory of a burst goes once AdaptPosting has lowered that.
  void Give(MessageBuffer buffer) const {
    if (spare_.size() >= 2 * posted_target_) return;
    buffer.Clear();
    spare_.push_back(std::move(buffer));
  }

  // Sends what is queued, tests every send and receive at once, retires finished sends, lands arrived
  // messages and posts receives for the next (the caller holds engine_ and the MPI lock). Returns whether
  // any of that happened: a message sent, finished or landed.
  bool ProgressLocked() const {
    bool advanced = false;
    for (int peer = 0; peer < size(); ++peer) advanced |= SendQueued(peer);
    advanced |= TestRequests();
    std::erase_if(sends_, [this](InFlight& send) {
      if (send.request != MPI_REQUEST_NULL) return false;
      Give(std::move(send.buffer));
      return true;
    });
    advanced |= ApplyArrived();
    PostReceives();
    return advanced;
  }

  // Keeps posted_target_ receives posted, from any rank, when peers on other hosts can send (those being
  // cancelled do not count).
  void PostReceives() const {
    while (remote_peers_ && posted_.size() - cancelling_ < posted_target_) {
      Incoming& in = posted_.emplace_back(Incoming{Take()});
      mpi::Check(MPI_Irecv(in.buffer.wire(), static_cast<int>(message_.bytes), MPI_BYTE, MPI_ANY_SOURCE, kTag, comm_,
                           &in.request),
                 "MPI_Irecv");
    }
  }

  // Tests every pending send and the first kTestedReceives receives still posted (and those being cancelled)
  // with one MPI_Testsome; finished ones become MPI_REQUEST_NULL (a receive learns its source and length). One
  // call, not one per request: each MPI call progresses every connection, and with more ranks than cores Open
  // MPI yields the core in each call that finds nothing to do. Returns whether any finished.
  //
  // Why only the first receives: MPI matches a message to the earliest posted receive that fits, and these are
  // all alike (any source, one tag), so they fill in the order posted, and a message within the eager limit
  // completes its receive as it is matched. Testing the hundreds kept posted at every poll cost more CPU than
  // anything else a waiting rank did (4 hosts x 2 ranks, 512 tokens: about half the CPU of its polls). A
  // receive matched to a message past the eager limit completes only once its bytes have come, so later ones
  // may finish first: every kFullTestPolls-th poll in a row that finds nothing tests them all.
  bool TestRequests() const {
    pending_.clear();
    for (InFlight& send : sends_) pending_.push_back({&send.request, nullptr, send.peer});
    const bool test_all = ++fruitless_polls_ % kFullTestPolls == 0;
    uint64_t receives = 0;
    for (Incoming& in : posted_) {
      if (in.request == MPI_REQUEST_NULL) continue;
      if (test_all || in.cancelled || receives < kTestedReceives) pending_.push_back({&in.request, &in, -1});
      // Past the first kTestedReceives only those being cancelled are tested: with none, stop looking.
      if (++receives >= kTestedReceives && !test_all && cancelling_ == 0) break;
    }
    if (pending_.empty()) return false;
    requests_.clear();
    for (const Pending& pending : pending_) requests_.push_back(*pending.request);
    finished_.resize(requests_.size());
    statuses_.resize(requests_.size());
    int count = 0;
    const int tested =
        MPI_Testsome(static_cast<int>(requests_.size()), requests_.data(), &count, finished_.data(), statuses_.data());
    // MPI_ERR_IN_STATUS: some requests finished in error (their status says which), the others as on success; any
    // other error tells nothing of the requests.
    if (tested != MPI_ERR_IN_STATUS) mpi::Check(tested, "MPI_Testsome");
    if (count == MPI_UNDEFINED || count == 0) return false;
    // Every finished request is MPI_REQUEST_NULL now, before anything below may throw: none is tested again.
    for (size_t i = 0; i < pending_.size(); ++i) *pending_[i].request = requests_[i];
    // Of the `count` reported, those that did not stay pending: a poll of pending ones alone found nothing.
    int ended = 0;
    uint64_t received = 0;
    int malformed_from = -1;  // thrown once every finished receive is accounted for
    std::string failed;       // likewise: the first request that finished in error, or MPI could not describe
    for (int i = 0; i < count; ++i) {
      const Pending& pending = pending_[finished_[i]];
      Incoming* in = pending.in;
      const bool in_error = tested == MPI_ERR_IN_STATUS && statuses_[i].MPI_ERROR != MPI_SUCCESS;
      // Not finished after all: a fault-tolerant MPI keeps a receive from any rank pending when a rank that could
      // send it failed. It stays posted, as it was, and is reported if it ever finishes in error.
      if (*pending.request != MPI_REQUEST_NULL && (!in_error || StillPending(statuses_[i]))) continue;
      ++ended;
      if (in_error) {
        // Open MPI frees only the requests that succeeded (ompi_request_default_test_some): one left allocated would
        // be found finished by every later poll (waits spinning, a send never leaving sends_), its error unreported.
        if (*pending.request != MPI_REQUEST_NULL) MPI_Request_free(pending.request);
        if (failed.empty()) failed = FailedRequest(pending, statuses_[i]);
        if (in) {
          if (in->cancelled) --cancelling_;
          in->cancelled = true;  // its buffer is given back, never landed
        }
        continue;
      }
      if (!in) continue;
      if (in->cancelled) {
        int cancelled = 0;
        const int tested_cancel = MPI_Test_cancelled(&statuses_[i], &cancelled);
        --cancelling_;
        // A status MPI cannot read counts as cancelled: the buffer is given back, never landed.
        in->cancelled = cancelled != 0 || tested_cancel != MPI_SUCCESS;
        if (tested_cancel != MPI_SUCCESS && failed.empty())
          failed = "MPI_Test_cancelled: " + mpi::ErrorText(tested_cancel);
        if (in->cancelled) continue;
      }
      int bytes = 0;
      if (const int counted = MPI_Get_count(&statuses_[i], MPI_BYTE, &bytes); counted != MPI_SUCCESS) {
        if (failed.empty()) failed = "MPI_Get_count: " + mpi::ErrorText(counted);
        in->cancelled = true;  // never landed: its source is unknown
        continue;
      }
      ++received;
      in->source = statuses_[i].MPI_SOURCE;
      if (!in->buffer.Received(static_cast<size_t>(bytes))) {
        malformed_from = in->source;
        in->cancelled = true;  // its buffer is given back, never landed
      }
    }
    if (ended > 0) fruitless_polls_ = 0;  // else the waits back off, and the full test comes round
    GrowPosting(received);
    if (!failed.empty()) throw Error(ErrorCode::kInternal, "moe_ep: MPI_Testsome failed: " + failed);
    if (malformed_from >= 0) BadMessage(malformed_from, 0);
    return ended > 0;
  }

  // Whether MPI reports a request in error that it keeps pending (a fault-tolerant MPI's receive from any rank, when a
  // rank that could send it failed), not one that finished. The status holds an error code; the fault-tolerance
  // extension names its class.
  static bool StillPending(const MPI_Status& status) {
    int error_class = status.MPI_ERROR;
    MPI_Error_class(status.MPI_ERROR, &error_class);
#ifdef MPI_ERR_PROC_FAILED_PENDING
    if (error_class == MPI_ERR_PROC_FAILED_PENDING) return true;
#endif
#ifdef MPIX_ERR_PROC_FAILED_PENDING
    if (error_class == MPIX_ERR_PROC_FAILED_PENDING) return true;
#endif
    return false;
  }

  // What a request that MPI finished in error was, and MPI's words for the error. Its message may be lost; if it
  // was, the peer waits for it (or this rank for the peer's: messages land in the order sent) until the group is
  // made again, or scaled down without one of the two. A failed receive's source is known only where MPI matched it
  // to a message (a truncated one).
  std::string FailedRequest(const Pending& pending, const MPI_Status& status) const {
    const int peer = !pending.in ? pending.peer : status.MPI_ERROR == MPI_ERR_TRUNCATE ? status.MPI_SOURCE : -1;
    const std::string whom = peer >= 0 && peer < size() ? "rank " + std::to_string(peer) : "an unknown rank";
    return std::string(pending.in ? "a message from " : "a message to ") + whom + " of " + name() + " may be lost (" +
           mpi::ErrorText(status.MPI_ERROR) +
           "); if it was, the operations between the two ranks cannot go on: scale this group down without one of "
           "them, or join a new group";
  }

  // One poll found `received` messages: when that is half the receives kept posted or more, later ones of
  // the burst may be finding none, so twice as many are kept posted (up to message_.most_posted). A poll
  // tests only kTestedReceives of them, so this grows them to 2 * kTestedReceives at most: beyond that
  // AdaptPosting sizes them by what a whole operation received. (Doubling whenever a poll filled all it
  // tests posted thousands within one burst, and cancelled them after: 4 x 2 ranks, 128 tokens, dispatch
  // 30 -> 170 ms.)
  void GrowPosting(uint64_t received) const {
    received_in_operation_ += received;
    if (received * 2 >= posted_target_) posted_target_ = std::min(2 * posted_target_, message_.most_posted);
  }

  // At the end of an operation: one that received at least as many messages as receives are kept posted
  // makes it that many (rounded up to a power of 2; up to message_.most_posted), as the next operation will
  // likely receive as many, maybe in one poll; one that received fewer than a quarter halves them (down to
  // message_.fewest_posted), giving back the buffers a burst took. Shrinking cancels the last posted, the last to fill
  // (Open MPI matches receives from any rank in the order they were posted); TestRequests retires them, or lands the
  // message one took before the cancel.
  void AdaptPosting() const {
    const uint64_t received = std::exchange(received_in_operation_, 0);
    if (received >= posted_target_) {
      posted_target_ = std::min(std::bit_ceil(received), message_.most_posted);
      return;
    }
    if (received * 4 >= posted_target_ || posted_target_ <= message_.fewest_posted) return;
    posted_target_ = std::max(posted_target_ / 2, message_.fewest_posted);
    const auto mpi_lock = mpi::Lock();
    uint64_t kept = 0;
    for (Incoming& in : posted_) {
      if (in.request == MPI_REQUEST_NULL || in.cancelled || ++kept <= posted_target_) continue;
      // Never throws: this runs as every operation ends, failed ones too. A receive that cannot be cancelled
      // stays posted, as before.
      if (MPI_Cancel(&in.request) != MPI_SUCCESS) continue;
      in.cancelled = true;
      ++cancelling_;
    }
    spare_.resize(std::min<size_t>(spare_.size(), 2 * posted_target_));
  }

  // Lands the arrived messages, each source's in the order it sent them (by their sequence numbers: a
  // message that arrived before an earlier one of its source waits for it, and one source's stuck message
  // never holds up another's). Returns whether any message landed.
  bool ApplyArrived() const {
    for (auto it = posted_.begin(); it != posted_.end();) {
      if (it->request != MPI_REQUEST_NULL) {
        ++it;
        continue;
      }
      if (it->cancelled)
        Give(std::move(it->buffer));
      else
        arrived_.emplace(std::pair{it->source, it->buffer.sequence()}, std::move(it->buffer));
      it = posted_.erase(it);
    }
    bool applied = false;
    // By (source, sequence): once a source's next message lands, its following one is the next entry.
    for (auto it = arrived_.begin(); it != arrived_.end();) {
      const auto [source, sequence] = it->first;
      if (sequence != next_from_[source]) {
        ++it;
        continue;
      }
      ++next_from_[source];
      MessageBuffer message = std::move(it->second);
      it = arrived_.erase(it);
      // Kept while rows it holds wait for Row (moving the buffer keeps its bytes where they are), and kept when
      // a malformed record stops it half-landed (rows_ may point into it; ReleaseRowMessages lets it go).
      const uint8_t* data = message.data();
      const auto kept = row_messages_.emplace(data, std::move(message)).first;
      if (!Apply(source, kept->second)) {
        Give(std::move(kept->second));
        row_messages_.erase(kept);
      }
      applied = true;
    }
    return applied;
  }

  // Lands one message's records through the host window, in this rank's window or (relaying) in the
  // host rank each is for, so flags are released exactly as a local peer's would be. Returns whether it
  // left rows for this rank in the message (which must then be kept).
  bool Apply(int source, const MessageBuffer& message) const {
    bool kept_rows = false;
    for (size_t at = 0; at < message.size();) {
      const size_t record = at;
      RecordHeader header;
      if (message.size() - at < sizeof header) BadMessage(source, record);
      std::memcpy(&header, message.data() + at, sizeof header);
      at += sizeof header;
      if (header.target < 0 || header.target >= host_->size()) BadMessage(source, record);
      const uint64_t left = message.size() - at;
      // Data, and the group's flags, of a round before this rank's are a failed operation's, come late: dropped
      // (BeginRound).
      const bool earlier_round = round_from_[source] < round_;
      if (header.kind == RecordKind::kEnd) {
        NoteEnd(source, header.a);
      } else if (header.kind == RecordKind::kRound) {
        round_from_[source] = header.a;
      } else if (header.kind == RecordKind::kSignal && header.a < all_flag_count()) {  // not the host window's own
        // With its data: a relay in a newer round than the rank it relays to must not hand on the flag of rows it
        // dropped (that rank, still in the operation, would read what is not there: it times out instead).
        if (!(earlier_round && header.a < flag_count())) host_->Signal(header.target, header.a, header.b);
      } else if (header.kind == RecordKind::kPut && header.b <= left && Padded(header.b) <= left) {
        if (!earlier_round) host_->Put(header.target, header.a, message.data() + at, header.b);
        at += Padded(header.b);
      } else if (header.kind == RecordKind::kRow && header.b <= left && Padded(header.b) <= left) {
        if (header.target == host_->rank() && !earlier_round) {
          // Left where it arrived for Row, under its offset and tag: a late row (of an operation that failed, landing
          // after the reset) and the fresh one at its offset stay apart, whichever lands first.
          rows_.insert_or_assign({header.a, header.from}, ArrivedRow{message.data() + at, header.b, message.data()});
          kept_rows = true;
        } else if (!earlier_round) {
          host_->Put(header.target, header.a, message.data() + at, header.b);
        }
        at += Padded(header.b);
      } else if (header.kind == RecordKind::kCopy && header.from <= record && header.b <= record - header.from) {
        if (!earlier_round) host_->Put(header.target, header.a, message.data() + header.from, header.b);
      } else {
        BadMessage(source, record);
      }
    }
    return kept_rows;
  }

  [[noreturn]] void BadMessage(int source, size_t at) const {
    throw Error(ErrorCode::kInternal, "a message from rank " + std::to_string(source) + " of " + name() +
                                          " is malformed at byte " + std::to_string(at));
  }

  MPI_Comm comm_;
  const MessageSize message_;
  std::unique_ptr<Window> host_;
  Topology topology_;
  bool relay_;                 // two-level: messages for another host go through one rank there
  bool relay_allowed_ = true;  // the current operation may send through relays (AllowRelay)
  // The message engine: Put, Signal and EndOperation queue, Progress (const: waits see a read-only
  // window) moves messages. engine_ guards everything below it (a probe may run on another
  // thread than an operation).
  mutable std::mutex engine_;
  std::vector<bool> failed_;  // ranks known to have failed (SetFailedPeers): never relays; one message at a time
  enum class Channel : uint8_t { kUndecided, kRelay, kDirect };
  std::vector<Channel> channel_;        // per peer, this operation's (two-level)
  mutable std::vector<Outbox> outbox_;  // per destination
  uint64_t sequence_ = 0;               // this rank's last EndOperation
  // Per sender (two-level): its highest end mark of each of the last kEndGenerations generations it sent ends in, the
  // latest last. A sender whose operation failed and that reset at once (a new generation, or two) may send those
  // resets' ends before this relay looked for the failed operation's.
  mutable std::vector<std::vector<uint64_t>> ends_;
  mutable std::list<InFlight> sends_;    // a list: MPI holds each buffer until it completes
  bool remote_peers_;                    // some rank is on another host: receives are posted
  mutable std::deque<Incoming> posted_;  // receives, in the order posted
  mutable uint64_t posted_target_;       // how many to keep posted (GrowPosting, AdaptPosting)
  mutable uint64_t cancelling_ = 0;      // posted_ entries asked to be cancelled, not yet finished
  mutable uint64_t received_in_operation_ = 0;
  mutable uint64_t fruitless_polls_ = 0;      // TestRequests in a row that found nothing finished
  mutable std::vector<uint64_t> sent_to_;     // per destination: messages sent (the next one's number)
  mutable std::vector<uint64_t> next_from_;   // per source: the number of the message to land next
  uint64_t round_ = 0;                        // this rank's reset round (BeginRound): data of earlier ones is dropped
  mutable std::vector<uint64_t> round_from_;  // per source: the round its data records being landed are of
  // Arrived messages by (source, sequence number), until their turn to land.
  mutable std::map<std::pair<int, uint64_t>, MessageBuffer> arrived_;
  mutable std::vector<MessageBuffer> spare_;  // message buffers for reuse
  // TestRequests' scratch: the requests it tests (and the receive each is, if one), their handles, which
  // finished, and how.
  mutable std::vector<Pending> pending_;
  mutable std::vector<MPI_Request> requests_;
  mutable std::vector<int> finished_;
  mutable std::vector<MPI_Status> statuses_;
  // Rows left in their messages for Row, by (offset, tag), and those messages, by their data.
  struct ArrivedRow {
    const uint8_t* data;
    uint64_t bytes;
    const uint8_t* message;  // the data of the message it is in (row_messages_' key)
    bool read = false;       // by Row: dropped at the next EndOperation
    int ends_passed = 0;     // EndOperations since it landed, unread
  };
  mutable std::map<std::pair<uint64_t, uint64_t>, ArrivedRow> rows_;
  mutable std::unordered_map<const uint8_t*, MessageBuffer> row_messages_;
};

}  // namespace

MPI_Comm SplitByHost(MPI_Comm comm) { return SplitByHost(comm, env::HostsSplit()); }

MPI_Comm SplitByHost(MPI_Comm comm, int per_host) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm host = MPI_COMM_NULL;
  if (per_host > 0) {  // tests: simulated hosts of per_host ranks
    mpi::Check(MPI_Comm_split(comm, rank / per_host, rank, &host), "MPI_Comm_split");
  } else {
    mpi::Check(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &host), "MPI_Comm_split_type");
  }
  return host;
}

namespace {

// The tag of a sub-group's MPI_Comm_create_group, in [0, 0x7FFF]: it keeps apart groups of the same members made one
// after another, or at once, under different names. Never the set-up messages' tag: MPI may carry the call's own
// messages on MPI_COMM_WORLD under it, where the mailbox would take them.
int CreateGroupTag(const std::string& group) {
  const int tag = static_cast<int>(hash::Fnv1a(group) & 0x7FFF);
  return tag == mpi::kRendezvousTag ? tag ^ 1 : tag;
}

// A join over MPI under way in this process, for as long as it lives: two joins at once under one name would mix
// their meetings' words, and MPI needs calls of MPI_Comm_create_group made at once to have different tags. Either
// is an Error naming both groups before the members meet (the others then time out naming this rank).
class JoinUnderWay {
 public:
  JoinUnderWay(const std::string& group, std::optional<int> tag) {
    std::lock_guard lock(mutex_);
    for (const Join& other : joins_) {
      if (other.group == group) {
        throw Error(ErrorCode::kInvalidParam, "joining group '" + group +
                                                  "': this process is joining another group of that name at once; "
                                                  "give them different names (GroupOptions::name)");
      }
      if (tag && other.tag == tag) {
        throw Error(ErrorCode::kInvalidParam,
                    "joining group '" + group + "': this process is joining group '" + other.group +
                        "' at once, and both names give MPI_Comm_create_group the tag " + std::to_string(*tag) +
                        ": give one of them another name, or join them one after the other");
      }
    }
    joins_.push_back({group, tag});
    me_ = std::prev(joins_.end());
  }
  ~JoinUnderWay() {
    std::lock_guard lock(mutex_);
    joins_.erase(me_);
  }
  JoinUnderWay(const JoinUnderWay&) = delete;
  JoinUnderWay& operator=(const JoinUnderWay&) = delete;

 private:
  struct Join {
    std::string group;
    std::optional<int> tag;  // none: no MPI_Comm_create_group
  };
  static inline std::mutex mutex_;
  static inline std::list<Join> joins_;
  std::list<Join>::iterator me_;
};

// The deadline of the rest of a join once its members met (kJoinSetUpAllowance): the meeting itself may end past the
// join's deadline (a committed member waits a little longer for the others' commitments).
Clock::time_point AfterTheMeeting(Clock::time_point deadline) {
  return std::max(deadline, Clock::now() + kJoinSetUpAllowance);
}

// The ranks of `comm` as ranks of MPI_COMM_WORLD, in `comm`'s order; empty when some are not in it (a
// communicator of spawned processes).
std::vector<int> WorldRanksOf(MPI_Comm comm) {
  const auto lock = mpi::Lock();
  int size = 0;
  mpi::Check(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  MPI_Group group = MPI_GROUP_NULL, world = MPI_GROUP_NULL;
  mpi::Check(MPI_Comm_group(comm, &group), "MPI_Comm_group");
  mpi::Check(MPI_Comm_group(MPI_COMM_WORLD, &world), "MPI_Comm_group");
  std::vector<int> ranks(static_cast<size_t>(size)), world_ranks(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) ranks[r] = r;
  const int status = MPI_Group_translate_ranks(group, size, ranks.data(), world, world_ranks.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  mpi::Check(status, "MPI_Group_translate_ranks");
  if (std::find(world_ranks.begin(), world_ranks.end(), MPI_UNDEFINED) != world_ranks.end()) return {};
  return world_ranks;
}

// step(), freeing `comm` when it fails with anything but a deadline error: after one, a late peer may still take part
// in a collective on it, so it stays MPI's.
template <typename Step>
auto FreeingUnlessLate(MPI_Comm& comm, Step&& step) -> decltype(step()) {
  try {
    return step();
  } catch (const TimeoutError&) {
    throw;
  } catch (...) {
    const auto lock = mpi::Lock();
    MPI_Comm_free(&comm);
    throw;
  }
}

// JoinHostsGroup once the members have met (or cannot: see there).
std::unique_ptr<Window> JoinMetGroup(MPI_Comm parent, const std::string& group, uint64_t data_bytes,
                                     uint64_t flag_count, Clock::time_point deadline,
                                     const std::optional<env::Refusal>& refused) {
  // Both collectives of the join are non-blocking and waited for against the deadline: a rank that never joins (it
  // died, or its program took another path) is a TimeoutError on the others, not a wait for good. What MPI may
  // still write once a wait gave up (the duplicate's handle, the request) is left to it.
  struct Duplicate {
    MPI_Comm comm = MPI_COMM_NULL;
    MPI_Request request = MPI_REQUEST_NULL;
  };
  auto duplicate = std::make_unique<Duplicate>();
  {
    const auto lock = mpi::Lock();
    mpi::Check(MPI_Comm_idup(parent, &duplicate->comm, &duplicate->request), "MPI_Comm_idup");
  }
  mpi::WaitForRequestKeeping(duplicate, duplicate->request, deadline,
                             "joining hosts group '" + group + "' in MPI_Comm_idup of the parent communicator");
  MPI_Comm comm = duplicate->comm;
  int rank = 0, size = 0;
  {
    const auto lock = mpi::Lock();
    // Its errors come back as codes (mpi::Check), not as an abort of the whole job.
    mpi::Check(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
  }
  // Everything the ranks must agree on, and the hosts, in one all-gather, before anything a setting shapes: a rank
  // that refused a setting, or ranks that differ, fail alike. A refusal comes after the all-gather completed
  // everywhere, so the communicator can go; after a deadline a late peer may still send on it, so it stays.
  const AgreedSettings settings = FreeingUnlessLate(comm, [&] {
    return AgreeOnJoinSettings(comm, group, data_bytes, flag_count, entropy::HexToken(), refused, deadline);
  });
  std::unique_ptr<Window> host = JoinShmGroup(settings.host_token, group, settings.host_rank, settings.host_size,
                                              data_bytes, flag_count + Window::TransportFlagCount(size), deadline);
  return std::make_unique<HostsWindow>(rank, size, data_bytes, flag_count, "hosts group '" + group + "'", comm,
                                       std::move(host), TopologyOf(settings.leader_of), settings.message_bytes,
                                       settings.relay);
}

}  // namespace

std::unique_ptr<Window> JoinHostsGroup(MPI_Comm comm, const std::string& group, uint64_t data_bytes,
                                       uint64_t flag_count, Clock::time_point deadline,
                                       const std::optional<env::Refusal>& refused) {
  mpi::EnsureInitialized();
  // The members meet first, over point-to-point words polled until the deadline, so that the collectives on `comm`
  // begin only once every member is there: a member that never comes is then a TimeoutError naming it, and leaves
  // no collective behind on `comm` that the others' next join would be matched with (they may try again).
  const JoinUnderWay under_way(group, std::nullopt);
  if (const std::vector<int> members = WorldRanksOf(comm); !members.empty()) {
    mpi::MeetMembers(members, group, deadline);
    deadline = AfterTheMeeting(deadline);
  }
  return JoinMetGroup(comm, group, data_bytes, flag_count, deadline, refused);
}

std::unique_ptr<Window> JoinHostsGroupOfWorldRanks(std::span<const int> members, const std::string& group,
                                                   uint64_t data_bytes, uint64_t flag_count, Clock::time_point deadline,
                                                   const std::optional<env::Refusal>& refused) {
  mpi::EnsureInitialized();
  int world_size = 0;
  {
    const auto lock = mpi::Lock();
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  }
  // The members meet first (as in JoinHostsGroup): a sub-group needs MPI_Comm_create_group, which MPI offers only
  // blocking, and a member that never came would leave the others in it. The whole world in order (a job's one
  // group) joins over MPI_COMM_WORLD itself.
  bool whole_world = static_cast<int>(members.size()) == world_size;
  for (int r = 0; whole_world && r < world_size; ++r) whole_world = members[r] == r;
  const int tag = CreateGroupTag(group);
  const JoinUnderWay under_way(group, whole_world ? std::nullopt : std::optional<int>(tag));
  mpi::MeetMembers(members, group, deadline);
  deadline = AfterTheMeeting(deadline);
  if (whole_world) return JoinMetGroup(MPI_COMM_WORLD, group, data_bytes, flag_count, deadline, refused);
  MPI_Comm comm = MPI_COMM_NULL;
  {
    auto lock = mpi::Lock();
    MPI_Group world = MPI_GROUP_NULL, subset = MPI_GROUP_NULL;
    mpi::Check(MPI_Comm_group(MPI_COMM_WORLD, &world), "MPI_Comm_group");
    mpi::Check(MPI_Group_incl(world, static_cast<int>(members.size()), members.data(), &subset), "MPI_Group_incl");
    // Without the lock where MPI allows it: this process's other threads may be forming groups meanwhile whose
    // members elsewhere wait for them (held, two processes entering two groups in opposite orders would wait for
    // each other for good).
    const int status =
        mpi::CallUnlocked(lock, [&] { return MPI_Comm_create_group(MPI_COMM_WORLD, subset, tag, &comm); });
    MPI_Group_free(&subset);
    MPI_Group_free(&world);
    mpi::Check(status, "MPI_Comm_create_group");
  }
  // JoinMetGroup works on a duplicate of `comm`, which goes whatever happens there (but after a deadline, when a late
  // member may still take part in the duplication on it).
  std::unique_ptr<Window> window =
      FreeingUnlessLate(comm, [&] { return JoinMetGroup(comm, group, data_bytes, flag_count, deadline, refused); });
  const auto lock = mpi::Lock();
  MPI_Comm_free(&comm);
  return window;
}

}  // namespace moe_ep::transport
