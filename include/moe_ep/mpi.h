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
Group JoinMpiGroup(MPI_Comm comm, const GroupOptions& options = {});

}  // namespace moe_ep
#pragma GCC visibility pop
