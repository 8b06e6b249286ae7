// MPI for moe_ep's hosts transport: whether this process runs under an MPI launcher, initialising MPI
// when the program did not, and the one lock every MPI call of moe_ep takes.
#pragma once

#include <mpi.h>

#include <mutex>

namespace moe_ep::transport::mpi {

/// True when a launcher started this process as an MPI rank (Open MPI's OMPI_COMM_WORLD_SIZE, PMIx's
/// PMIX_RANK, MPICH Hydra's PMI_SIZE).
bool LaunchedByMpi();

/// True when moe_ep should form groups over MPI: the program initialised MPI, or a launcher started it.
bool Active();

/// Makes sure MPI is initialised: when the program has not called MPI_Init, moe_ep calls
/// MPI_Init_thread itself (and MPI_Finalize at exit). Throws Error when MPI was finalised already.
void EnsureInitialized();

/// Serialises moe_ep's MPI calls: the program may have initialised MPI below MPI_THREAD_MULTIPLE, and
/// several communicators (EP, TP) may be driven from different threads.
std::unique_lock<std::mutex> Lock();

/// True once MPI_Finalize ran (the program's or moe_ep's); no MPI call but this one is allowed then.
bool Finalized();

/// Throws Error (500002) naming `call` when an MPI call did not return MPI_SUCCESS.
void Check(int status, const char* call);

}  // namespace moe_ep::transport::mpi
