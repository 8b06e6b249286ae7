// What the ranks of a hosts group must agree on before they join: read before the join's first collective,
// gathered from every rank, and checked alike on every rank, so that all fail together with the same cause.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <optional>
#include <string>

#include "base/env.h"

namespace moe_ep::transport {

/// The settings the join agreed on.
struct AgreedSettings {
  int hosts_split = 0;         // MOE_EP_HOSTS_SPLIT
  bool relay = true;           // MOE_EP_HOSTS_RELAY
  uint64_t message_bytes = 0;  // the largest MOE_EP_HOSTS_MESSAGE_BYTES of any rank
};

/// [collective over `comm`; the caller holds mpi::Lock()] Reads this rank's hosts settings, gathers every rank's
/// (with its window's `data_bytes` and `flag_count`, the protocol and the byte order), and returns them when
/// every rank may join. Otherwise every rank throws: a rank that refused a setting (`refused`, or one read
/// here) its own error, the others naming that rank and variable; ranks whose windows, MOE_EP_HOSTS_SPLIT or
/// MOE_EP_HOSTS_RELAY differ (a different size of window would put odd calls' rows at different offsets),
/// or whose builds cannot talk, naming both ranks and their values. `group` names the group in messages.
AgreedSettings AgreeOnJoinSettings(MPI_Comm comm, const std::string& group, uint64_t data_bytes, uint64_t flag_count,
                                   const std::optional<env::Refusal>& refused);

}  // namespace moe_ep::transport
