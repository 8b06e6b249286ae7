// The hosts transport: a host's shared-memory window for peers on this host, aggregated two-sided MPI
// messages for the others, progressed inside the waits.
#include "transport/mpi/hosts_window.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <list>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "base/env.h"
#include "moe_ep/error.h"
#include "transport/mpi/mpi_runtime.h"
#include "transport/shm/shm_window.h"

namespace moe_ep::transport {
namespace {

constexpr int kTag = 0x4D45;
// Messages stay far below MPI's int count limit; a longer phase goes as several messages, in order.
constexpr uint64_t kMaxMessageBytes = uint64_t{1} << 30;

// The records of an aggregated message, applied in order (so a put lands before a later signal): a
// put is its header and then `b` bytes padded to 8; a signal is its header alone.
enum class RecordKind : uint64_t { kPut = 1, kSignal = 2 };
struct RecordHeader {
  RecordKind kind;
  uint64_t a;  // put: offset; signal: flag index
  uint64_t b;  // put: bytes; signal: value
};

uint64_t Padded(uint64_t bytes) { return (bytes + 7) / 8 * 8; }

// Buffers MPI may still touch (a send to, or a receive from, a rank that died mid-message): kept for
// the life of the process rather than freed under MPI's feet.
void Abandon(std::vector<uint8_t> buffer) {
  static auto* const graveyard = new std::vector<std::vector<uint8_t>>;
  graveyard->push_back(std::move(buffer));
}

class HostsWindow final : public Window {
 public:
  HostsWindow(int rank, int size, uint64_t data_bytes, uint64_t flag_count, std::string name, MPI_Comm comm,
              std::unique_ptr<Window> host, std::vector<int> host_index)
      : Window(rank, size, data_bytes, flag_count, std::move(name)),
        comm_(comm),
        host_(std::move(host)),
        host_index_(std::move(host_index)),
        outbox_(size),
        receives_(size) {}

  ~HostsWindow() override {
    const auto lock = mpi::Lock();
    for (InFlight& send : sends_) {
      MPI_Request_free(&send.request);
      Abandon(std::move(send.buffer));
    }
    for (auto& queue : receives_) {
      for (Incoming& in : queue) {
        MPI_Request_free(&in.request);
        Abandon(std::move(in.buffer));
      }
    }
    MPI_Comm_free(&comm_);
  }

  void Put(int peer, uint64_t offset, const void* src, uint64_t bytes) override {
    CheckPeer(peer, "put");
    if (OnThisHost(peer)) return host_->Put(host_index_[peer], offset, src, bytes);
    if (offset > data_bytes() || bytes > data_bytes() - offset) {  // written so that it cannot wrap
      throw Error(ErrorCode::kInternal, "put of " + std::to_string(bytes) + " bytes at offset " +
                                            std::to_string(offset) + " overruns the " + std::to_string(data_bytes()) +
                                            "-byte window of rank " + std::to_string(peer));
    }
    const auto* bytes_in = static_cast<const uint8_t*>(src);
    constexpr uint64_t kPiece = kMaxMessageBytes / 2;
    uint64_t done = 0;
    do {
      const uint64_t piece = std::min(kPiece, bytes - done);
      Append(peer, {RecordKind::kPut, offset + done, piece}, bytes_in + done);
      done += piece;
    } while (done < bytes);
  }

  void Signal(int peer, uint64_t index, uint64_t value) override {
    CheckPeer(peer, "signal");
    if (OnThisHost(peer)) return host_->Signal(host_index_[peer], index, value);
    if (index >= all_flag_count()) {
      throw Error(ErrorCode::kInternal, "signal of flag " + std::to_string(index) + " beyond the " +
                                            std::to_string(all_flag_count()) + " flags of rank " +
                                            std::to_string(peer) + "'s window");
    }
    Append(peer, {RecordKind::kSignal, index, value}, nullptr);
  }

  uint64_t ReadFlag(uint64_t index) const override { return host_->ReadFlag(index); }
  const uint8_t* LocalData() const override { return host_->LocalData(); }
  void ClearLocal(uint64_t cleared_flags) override { host_->ClearLocal(cleared_flags); }

  void Progress() const override {
    const auto lock = mpi::Lock();
    for (int peer = 0; peer < size(); ++peer) SendQueued(peer);
    std::erase_if(sends_, [](InFlight& send) {
      int done = 0;
      mpi::Check(MPI_Test(&send.request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      return done != 0;
    });
    Receive();
  }

  void Drain(Clock::time_point deadline, const char* op, std::span<const int> gone) override {
    {
      const auto lock = mpi::Lock();
      for (int peer : gone) {
        if (peer < 0 || peer >= size()) continue;
        outbox_[peer].clear();
        std::erase_if(sends_, [&](InFlight& send) {
          if (send.peer != peer) return false;
          MPI_Request_free(&send.request);
          Abandon(std::move(send.buffer));
          return true;
        });
      }
    }
    const auto undelivered = [&] {
      std::vector<int> ranks;
      for (int peer = 0; peer < size(); ++peer) {
        const bool queued = !outbox_[peer].empty();
        const bool sending =
            std::any_of(sends_.begin(), sends_.end(), [&](const InFlight& s) { return s.peer == peer; });
        if (queued || sending) ranks.push_back(peer);
      }
      return ranks;
    };
    WaitUntil(
        *this, deadline, op, "its messages to be taken", 0, [&] { return undelivered().empty(); }, undelivered);
  }

 private:
  struct InFlight {
    int peer;
    std::vector<uint8_t> buffer;
    MPI_Request request = MPI_REQUEST_NULL;
  };
  struct Incoming {
    std::vector<uint8_t> buffer;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  bool OnThisHost(int peer) const { return host_index_[peer] >= 0; }

  void CheckPeer(int peer, const char* what) const {
    if (peer < 0 || peer >= size()) {
      throw Error(ErrorCode::kInternal, std::string(what) + " to rank " + std::to_string(peer) + " of a " +
                                            std::to_string(size()) + "-rank window (" + name() + ")");
    }
  }

  // Queues a record for `peer`; a message that would grow past kMaxMessageBytes is sent first.
  void Append(int peer, RecordHeader header, const uint8_t* payload) {
    std::vector<uint8_t>& box = outbox_[peer];
    const uint64_t payload_bytes = header.kind == RecordKind::kPut ? Padded(header.b) : 0;
    if (!box.empty() && box.size() + sizeof header + payload_bytes > kMaxMessageBytes) {
      const auto lock = mpi::Lock();
      SendQueued(peer);
    }
    const size_t at = box.size();
    box.resize(at + sizeof header + payload_bytes);
    std::memcpy(box.data() + at, &header, sizeof header);
    if (payload != nullptr && payload_bytes > 0) std::memcpy(box.data() + at + sizeof header, payload, header.b);
  }

  // Sends `peer`'s queued records as one message (the caller holds the MPI lock).
  void SendQueued(int peer) const {
    if (outbox_[peer].empty()) return;
    InFlight& send = sends_.emplace_back(InFlight{peer, std::move(outbox_[peer])});
    outbox_[peer].clear();
    mpi::Check(
        MPI_Isend(send.buffer.data(), static_cast<int>(send.buffer.size()), MPI_BYTE, peer, kTag, comm_, &send.request),
        "MPI_Isend");
  }

  // Matches every message that arrived, then applies each source's completed messages in match order
  // (MPI does not overtake between one pair of ranks, so records apply in the order they were queued).
  void Receive() const {
    for (;;) {
      int arrived = 0;
      MPI_Message message;
      MPI_Status status;
      mpi::Check(MPI_Improbe(MPI_ANY_SOURCE, kTag, comm_, &arrived, &message, &status), "MPI_Improbe");
      if (!arrived) break;
      int count = 0;
      mpi::Check(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
      Incoming& in = receives_[status.MPI_SOURCE].emplace_back();
      in.buffer.resize(static_cast<size_t>(count));
      mpi::Check(MPI_Imrecv(in.buffer.data(), count, MPI_BYTE, &message, &in.request), "MPI_Imrecv");
    }
    for (int source = 0; source < size(); ++source) {
      auto& queue = receives_[source];
      while (!queue.empty()) {
        int done = 0;
        mpi::Check(MPI_Test(&queue.front().request, &done, MPI_STATUS_IGNORE), "MPI_Test");
        if (!done) break;
        Apply(source, queue.front().buffer);
        queue.pop_front();
      }
    }
  }

  // Lands one message's records in this rank's window through the host window (so flags are released
  // exactly as a local peer's would be).
  void Apply(int source, const std::vector<uint8_t>& message) const {
    const int self = host_index_[rank()];
    for (size_t at = 0; at < message.size();) {
      RecordHeader header;
      if (message.size() - at < sizeof header) BadMessage(source, at);
      std::memcpy(&header, message.data() + at, sizeof header);
      at += sizeof header;
      if (header.kind == RecordKind::kSignal) {
        host_->Signal(self, header.a, header.b);
      } else if (header.kind == RecordKind::kPut && Padded(header.b) <= message.size() - at) {
        host_->Put(self, header.a, message.data() + at, header.b);
        at += Padded(header.b);
      } else {
        BadMessage(source, at);
      }
    }
  }

  [[noreturn]] void BadMessage(int source, size_t at) const {
    throw Error(ErrorCode::kInternal, "a message from rank " + std::to_string(source) + " of " + name() +
                                          " is malformed at byte " + std::to_string(at));
  }

  MPI_Comm comm_;
  std::unique_ptr<Window> host_;
  std::vector<int> host_index_;  // peer -> its rank in the host window, -1 on another host
  // Progress is const (waits see a read-only window) but moves the messages: the engine is mutable.
  mutable std::vector<std::vector<uint8_t>> outbox_;    // per peer: records not sent yet
  mutable std::list<InFlight> sends_;                   // a list: MPI holds each buffer until it completes
  mutable std::vector<std::deque<Incoming>> receives_;  // per source, in match order
};

std::string RandomToken() {
  std::random_device device;
  std::string token;
  for (int i = 0; i < 4; ++i) {
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", device());
    token += hex;
  }
  return token;
}

}  // namespace

std::unique_ptr<Window> JoinHostsGroup(MPI_Comm parent, const std::string& group, uint64_t data_bytes,
                                       uint64_t flag_count, Clock::time_point deadline) {
  mpi::EnsureInitialized();
  MPI_Comm comm = MPI_COMM_NULL, host_comm = MPI_COMM_NULL;
  int rank = 0, size = 0, host_rank = 0, host_size = 0;
  std::vector<int> leader_of;
  std::string token(32, '\0');
  {
    const auto lock = mpi::Lock();
    mpi::Check(MPI_Comm_dup(parent, &comm), "MPI_Comm_dup");
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (const int per_host = env::HostsSplit(); per_host > 0) {  // tests: simulated hosts of per_host ranks
      mpi::Check(MPI_Comm_split(comm, rank / per_host, rank, &host_comm), "MPI_Comm_split");
    } else {
      mpi::Check(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &host_comm),
                 "MPI_Comm_split_type");
    }
    MPI_Comm_rank(host_comm, &host_rank);
    MPI_Comm_size(host_comm, &host_size);
    // Each host's first rank names the host (its rank in comm) and draws the host's rendezvous token.
    int leader = rank;
    mpi::Check(MPI_Bcast(&leader, 1, MPI_INT, 0, host_comm), "MPI_Bcast");
    if (host_rank == 0) token = RandomToken();
    mpi::Check(MPI_Bcast(token.data(), 32, MPI_CHAR, 0, host_comm), "MPI_Bcast");
    leader_of.resize(size);
    mpi::Check(MPI_Allgather(&leader, 1, MPI_INT, leader_of.data(), 1, MPI_INT, comm), "MPI_Allgather");
    MPI_Comm_free(&host_comm);
  }
  // Host ranks keep the group's order: split_type's key is the rank in comm.
  std::vector<int> host_index(size, -1);
  for (int r = 0, next = 0; r < size; ++r) {
    if (leader_of[r] == leader_of[rank]) host_index[r] = next++;
  }
  std::unique_ptr<Window> host = JoinShmGroup(token, group, host_rank, host_size, data_bytes,
                                              flag_count + Window::TransportFlagCount(size), deadline);
  return std::make_unique<HostsWindow>(rank, size, data_bytes, flag_count, "hosts group '" + group + "'", comm,
                                       std::move(host), std::move(host_index));
}

std::unique_ptr<Window> JoinHostsGroupOfWorldRanks(std::span<const int> members, const std::string& group,
                                                   uint64_t data_bytes, uint64_t flag_count,
                                                   Clock::time_point deadline) {
  mpi::EnsureInitialized();
  MPI_Comm comm = MPI_COMM_NULL;
  {
    const auto lock = mpi::Lock();
    MPI_Group world = MPI_GROUP_NULL, subset = MPI_GROUP_NULL;
    mpi::Check(MPI_Comm_group(MPI_COMM_WORLD, &world), "MPI_Comm_group");
    mpi::Check(MPI_Group_incl(world, static_cast<int>(members.size()), members.data(), &subset), "MPI_Group_incl");
    // The tag keeps apart groups of the same members made one after another under different names.
    const int tag = static_cast<int>(std::hash<std::string>()(group) & 0x7FFF);
    const int status = MPI_Comm_create_group(MPI_COMM_WORLD, subset, tag, &comm);
    MPI_Group_free(&subset);
    MPI_Group_free(&world);
    mpi::Check(status, "MPI_Comm_create_group");
  }
  auto window = JoinHostsGroup(comm, group, data_bytes, flag_count, deadline);
  const auto lock = mpi::Lock();
  MPI_Comm_free(&comm);
  return window;
}

}  // namespace moe_ep::transport
