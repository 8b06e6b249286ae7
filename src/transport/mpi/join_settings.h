// What the ranks of a hosts group must agree on before they join: read before the join's first collective,
// gathered from every rank, and checked alike on every rank, so that all fail together with the same cause.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/env.h"

namespace moe_ep::transport {

/// The settings the join agreed on, and the hosts it found.
struct AgreedSettings {
  int hosts_split = 0;         // MOE_EP_HOSTS_SPLIT
  bool relay = true;           // MOE_EP_HOSTS_RELAY
  uint64_t message_bytes = 0;  // the largest MOE_EP_HOSTS_MESSAGE_BYTES of any rank
  std::vector<int> leader_of;  // per rank of the group: the first rank of its host
  int host_rank = 0;           // this rank among its host's ranks (in group order)
  int host_size = 0;           // ranks on this rank's host
  std::string host_token;      // the host's shared-memory rendezvous token: its first rank's `token`
};

/// [collective over `comm`, waited for until `deadline` (mpi::WaitForRequest); the caller does not hold
/// mpi::Lock()] Reads this rank's hosts settings, gathers every rank's (with the group's name, its window's
/// `data_bytes` and `flag_count`, its host, a `token` of 32 characters it drew, the protocol and the byte order) in
/// one non-blocking all-gather, the join's only collective after the communicator's duplication, and returns them
/// with the hosts when every rank may join. Hosts are MOE_EP_HOSTS_SPLIT ranks each, or with 0 the processes of one
/// MPI processor name (host name). On a deadline (or an interrupt) what MPI may still write is left to it, never
/// freed. Otherwise every rank throws: a rank that refused a setting (`refused`, or one read
/// here) its own error, the others naming that rank and variable; ranks whose windows, MOE_EP_HOSTS_SPLIT or
/// MOE_EP_HOSTS_RELAY differ (a different size of window would put odd calls' rows at different offsets),
/// or whose builds cannot talk, naming both ranks and their values; ranks joining groups of different names (made in
/// another order) naming both names.
AgreedSettings AgreeOnJoinSettings(MPI_Comm comm, const std::string& group, uint64_t data_bytes, uint64_t flag_count,
                                   const std::string& token, const std::optional<env::Refusal>& refused,
                                   std::chrono::steady_clock::time_point deadline);

}  // namespace moe_ep::transport
