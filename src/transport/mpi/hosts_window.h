// The hosts transport: the ranks of a group are MPI processes on one or more hosts. Peers on this
// rank's host go through the host's shared-memory window; peers on other hosts through two-sided MPI
// messages on a private communicator (records aggregated into messages of up to 63 KiB, sent as they fill),
// landed by the receiver inside its waits (docs/hosts.md).
#pragma once

#include <mpi.h>

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "transport/mpi/join_settings.h"
#include "transport/window.h"

namespace moe_ep::transport {

/// How long a join's members have for the rest of its set-up once they met, whatever is left of their deadline: every
/// member is there then, and one that failed now while the others went on would leave them holding a group it is not
/// in.
inline constexpr std::chrono::seconds kJoinSetUpAllowance{10};

/// [collective over `comm`] The ranks of `comm` on this rank's host, in `comm`'s order (with
/// MOE_EP_HOSTS_SPLIT=N: on its simulated host of N consecutive ranks). The caller holds mpi::Lock()
/// and frees the communicator.
MPI_Comm SplitByHost(MPI_Comm comm);
/// The same with the split given (0: by where the ranks run; N: simulated hosts of N ranks).
MPI_Comm SplitByHost(MPI_Comm comm, int per_host);

/// Joins the group of every rank of `comm` (collective over `comm`, which it duplicates; this rank is
/// its rank in `comm`): ranks on one host (those whose MPI_Get_processor_name is the same) share a
/// shared-memory window, named by a token of the host's first rank that the join's all-gather hands round; the
/// others are reached over MPI. `group` names the segments; windows of `data_bytes` and `flag_count` user flags. With
/// MOE_EP_HOSTS_SPLIT=N (tests only) ranks [kN, kN + N) of `comm` count as one host. The ranks first agree on
/// their settings (AgreeOnJoinSettings): a setting a rank refused (`refused`, or the hosts transport's own) or
/// settings that differ fail every rank. Before any collective on `comm` the members meet (mpi::MeetMembers, where
/// they are ranks of MPI_COMM_WORLD): a member that does not come is a TimeoutError at `deadline` naming it, and
/// leaves no collective behind on `comm`.
std::unique_ptr<Window> JoinHostsGroup(MPI_Comm comm, const std::string& group, uint64_t data_bytes,
                                       uint64_t flag_count, Clock::time_point deadline,
                                       const std::optional<env::Refusal>& refused = std::nullopt);

/// JoinHostsGroup over the ranks of MPI_COMM_WORLD listed in `members` (collective over them only; this
/// process's rank in the group is its position in the list). Initialises MPI when the program did not.
std::unique_ptr<Window> JoinHostsGroupOfWorldRanks(std::span<const int> members, const std::string& group,
                                                   uint64_t data_bytes, uint64_t flag_count, Clock::time_point deadline,
                                                   const std::optional<env::Refusal>& refused = std::nullopt);

}  // namespace moe_ep::transport
