// What the ranks of a hosts group must agree on before they join, gathered and checked alike on every rank.
#include "transport/mpi/join_settings.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "base/env.h"
#include "base/hash.h"
#include "transport/mpi/mpi_runtime.h"

namespace moe_ep::transport {
namespace {

// Raises whenever the hosts transport's messages change shape, so that builds which cannot talk say so at the join.
constexpr uint64_t kProtocolVersion = 2;
// Read back in another byte order, this is another number.
constexpr uint64_t kByteOrderMark = 0x0102030405060708;

// One rank's part of the join, sent as bytes: plain fields, the same layout in every build of one protocol.
struct RankSettings {
  uint64_t byte_order = kByteOrderMark;
  uint64_t protocol = kProtocolVersion;
  uint64_t data_bytes = 0;
  uint64_t flag_count = 0;
  uint64_t message_bytes = 0;
  int32_t hosts_split = 0;
  int32_t relay = 0;
  uint64_t host = 0;      // a hash of MPI's processor name: ranks of one host share it
  char refused[48] = {};  // the variable this rank refused, "" when none
  char group[64] = {};    // the group's name (its first 63 characters)
  char token[32] = {};    // drawn by this rank; its host's first rank's names the host's segments
};

// What MPI may still write or read once a join gave up waiting: kept on the heap and, then, never freed.
struct Exchange {
  RankSettings mine;
  std::vector<RankSettings> all;
  MPI_Request request = MPI_REQUEST_NULL;
};

uint64_t HostOfThisProcess() {
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  {
    const auto lock = mpi::Lock();
    mpi::Check(MPI_Get_processor_name(name, &length), "MPI_Get_processor_name");
  }
  return hash::Fnv1a(std::string_view(name, static_cast<size_t>(length)));
}

std::string Field(const char* text, size_t capacity) { return std::string(text, strnlen(text, capacity)); }

// A group name field in quotes, for messages (appended, as GCC 12 warns wrongly about "'" + std::string).
std::string Quoted(const char* text, size_t capacity) {
  std::string quoted(1, '\'');
  quoted.append(text, strnlen(text, capacity));
  quoted += '\'';
  return quoted;
}

[[noreturn]] void Disagree(const std::string& group, const std::string& what, int first, const std::string& has,
                           int other, const std::string& other_has, const std::string& rule) {
  throw Error(ErrorCode::kInvalidConfig, "hosts group '" + group + "': ranks disagree on " + what + ": rank " +
                                             std::to_string(first) + " has " + has + ", rank " + std::to_string(other) +
                                             " has " + other_has + "; " + rule);
}

std::string MiB(uint64_t bytes) {
  return bytes % (uint64_t{1} << 20) == 0 ? std::to_string(bytes >> 20) + " MiB" : std::to_string(bytes) + " bytes";
}

}  // namespace

AgreedSettings AgreeOnJoinSettings(MPI_Comm comm, const std::string& group, uint64_t data_bytes, uint64_t flag_count,
                                   const std::string& token, const std::optional<env::Refusal>& caller_refused,
                                   std::chrono::steady_clock::time_point deadline) {
  std::optional<env::Refusal> refused = caller_refused;
  auto exchange = std::make_unique<Exchange>();
  RankSettings& mine = exchange->mine;
  mine.data_bytes = data_bytes;
  mine.flag_count = flag_count;
  mine.message_bytes = env::ReadOrRefuse("MOE_EP_HOSTS_MESSAGE_BYTES", env::HostsMessageBytes, uint64_t{0}, refused);
  mine.hosts_split = env::ReadOrRefuse("MOE_EP_HOSTS_SPLIT", env::HostsSplit, 0, refused);
  mine.relay = env::ReadOrRefuse("MOE_EP_HOSTS_RELAY", env::HostsRelay, true, refused) ? 1 : 0;
  if (refused) refused->variable.copy(mine.refused, sizeof(mine.refused) - 1);
  group.copy(mine.group, sizeof(mine.group) - 1);
  token.copy(mine.token, sizeof(mine.token));
  mine.host = mine.hosts_split > 0 ? 0 : HostOfThisProcess();

  int size = 0, rank = 0;
  {
    const auto lock = mpi::Lock();
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &rank);
    exchange->all.resize(size);
    mpi::Check(MPI_Iallgather(&exchange->mine, sizeof(RankSettings), MPI_BYTE, exchange->all.data(),
                              sizeof(RankSettings), MPI_BYTE, comm, &exchange->request),
               "MPI_Iallgather");
  }
  mpi::WaitForRequestKeeping(exchange, exchange->request, deadline,
                             "joining hosts group '" + group + "' in MPI_Iallgather of the settings");
  const std::vector<RankSettings>& all = exchange->all;

  if (refused) throw refused->error;
  for (int r = 0; r < size; ++r) {
    if (all[r].refused[0] != '\0') {
      const std::string variable(all[r].refused, strnlen(all[r].refused, sizeof(all[r].refused)));
      throw Error(ErrorCode::kInvalidParam, "hosts group '" + group + "': another rank refused its " + variable +
                                                " (rank " + std::to_string(r) +
                                                "; its own error names the value); every rank must be given a "
                                                "valid one");
    }
  }
  // Every rank compares every rank with rank 0, in the same order: all throw the same error.
  const RankSettings& first = all[0];
  for (int r = 1; r < size; ++r) {
    const RankSettings& other = all[r];
    if (Field(other.group, sizeof other.group) != Field(first.group, sizeof first.group)) {
      Disagree(group, "the group they join", 0, Quoted(first.group, sizeof first.group), r,
               Quoted(other.group, sizeof other.group),
               "every rank must make its groups over one communicator in the same order, one at a time");
    }
    if (other.byte_order != first.byte_order || other.protocol != first.protocol ||
        other.flag_count != first.flag_count) {
      Disagree(group, "the hosts transport's protocol (build and byte order)", 0,
               "protocol " + std::to_string(first.protocol) + " with " + std::to_string(first.flag_count) + " flags", r,
               "protocol " + std::to_string(other.protocol) + " with " + std::to_string(other.flag_count) + " flags",
               "every rank must run the same moe_ep build on hosts of one byte order");
    }
    if (other.data_bytes != first.data_bytes) {
      Disagree(group,
               "the window's data area (MOE_EP_WINDOW_MB or GroupOptions::window_bytes; HCCL_BUFFSIZE in the C API)", 0,
               MiB(first.data_bytes), r, MiB(other.data_bytes), "every rank must be given the same");
    }
    if (other.hosts_split != first.hosts_split) {
      Disagree(group, "MOE_EP_HOSTS_SPLIT", 0, std::to_string(first.hosts_split), r, std::to_string(other.hosts_split),
               "every rank must be given the same");
    }
    if (other.relay != first.relay) {
      Disagree(group, "MOE_EP_HOSTS_RELAY", 0, std::to_string(first.relay), r, std::to_string(other.relay),
               "every rank must be given the same");
    }
  }
  AgreedSettings agreed;
  agreed.hosts_split = first.hosts_split;
  agreed.relay = first.relay != 0;
  // The largest any rank asked for: every rank's posted receives must hold any rank's messages.
  for (const RankSettings& s : all) agreed.message_bytes = std::max(agreed.message_bytes, s.message_bytes);
  // Hosts, in group order: simulated ones of hosts_split ranks, or one per processor name.
  const auto same_host = [&](int a, int b) {
    return agreed.hosts_split > 0 ? a / agreed.hosts_split == b / agreed.hosts_split : all[a].host == all[b].host;
  };
  agreed.leader_of.resize(size);
  for (int r = 0; r < size; ++r) {
    int leader = 0;
    while (!same_host(leader, r)) ++leader;
    agreed.leader_of[r] = leader;
    if (same_host(r, rank)) (r < rank ? agreed.host_rank : agreed.host_size) += 1;
  }
  agreed.host_size += agreed.host_rank;
  agreed.host_token = Field(all[agreed.leader_of[rank]].token, sizeof(RankSettings::token));
  return agreed;
}

}  // namespace moe_ep::transport
