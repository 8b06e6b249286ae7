// Groups from MPI communicators (moe_ep built with MPI): ranks on one host meet over shared memory,
// ranks on other hosts over MPI messages (docs/hosts.md).
#pragma once

#include <mpi.h>

#include "moe_ep/group.h"

#pragma GCC visibility push(default)
namespace moe_ep {

/// [collective over `comm`] Joins the group of every rank of `comm` (this process's rank in the group is
/// its rank in `comm`; moe_ep duplicates `comm`, which stays the caller's). Initialises MPI when the
/// program did not. Every rank makes its groups in the same order. A process started by mpirun without
/// MOE_EP_RENDEZVOUS can also use JoinProcessGroup(): its job ranks are MPI_COMM_WORLD's.
/// The join has the group's deadline (GroupOptions::timeout, MOE_EP_TIMEOUT_MS): the members first meet over
/// point-to-point messages, so a rank that never joins is a TimeoutError on the others naming it, before any
/// collective on `comm` began; once every rank's join failed, the ranks may join again. Those messages travel on
/// MPI_COMM_WORLD under a tag moe_ep keeps for itself (0x6D65): a program's own receives there must not take any tag.
/// (For a `comm` with processes outside MPI_COMM_WORLD there is no meeting: a missing rank is then a TimeoutError
/// naming none, and `comm` must not be used for collectives again, as a collective given up on stays MPI's.)
/// MPI_COMM_NULL (what MPI_Comm_split gives the processes it leaves out) is an Error (kInvalidParam).
Group JoinMpiGroup(MPI_Comm comm, const GroupOptions& options = {});

}  // namespace moe_ep
#pragma GCC visibility pop
