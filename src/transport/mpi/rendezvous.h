// Meeting over MPI without a communicator of the group: the members of a root-info group (CANN's
// HcclGetRootInfo / HcclCommInitRootInfo) find each other's MPI ranks through the root's process.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "transport/mpi/join_settings.h"
#include "transport/window.h"

namespace moe_ep::transport::mpi {

/// This process's rank in MPI_COMM_WORLD, and its size (initialising MPI when needed).
int WorldRank();
int WorldSize();

/// Joins group rank `rank` of a `size`-rank group named by `token`, whose root info was made by the
/// process of world rank `root` (a member): each member sends its world rank to the root's process,
/// which answers every member with the whole list; then the hosts window over those ranks
/// (JoinHostsGroupOfWorldRanks). Point-to-point messages on MPI_COMM_WORLD with a reserved tag, polled
/// until `deadline` (TimeoutError naming the group ranks that did not arrive). One member per process. The root
/// refuses the group, and every member fails at once with its reason, when a member was given another size, claims
/// another's rank, or refused a setting (`refused`: this rank's, sent with its join; then it throws its own error).
std::unique_ptr<Window> JoinRootInfoGroup(const std::string& token, int root, int rank, int size, uint64_t data_bytes,
                                          uint64_t flag_count, Clock::time_point deadline,
                                          const std::optional<env::Refusal>& refused = std::nullopt);

}  // namespace moe_ep::transport::mpi
