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
/// The join's collectives have the group's deadline (GroupOptions::timeout, MOE_EP_TIMEOUT_MS): a rank that
/// never joins is a TimeoutError on the others (naming no rank: MPI cannot say which did not come). A collective
/// given up on stays MPI's, so after that error `comm` must not be used for collectives again: end the job.
Group JoinMpiGroup(MPI_Comm comm, const GroupOptions& options = {});

}  // namespace moe_ep
#pragma GCC visibility pop
