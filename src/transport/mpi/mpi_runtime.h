// MPI for moe_ep's hosts transport: whether this process runs under an MPI launcher, initialising MPI
// when the program did not, and the one lock every MPI call of moe_ep takes.
#pragma once

#include <mpi.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace moe_ep::transport::mpi {

/// True when moe_ep should form groups over MPI: the program initialised MPI, or a launcher started it
/// (env::StartedByMpiLauncher).
bool Active();

/// Makes sure MPI is initialised: when the program has not called MPI_Init, moe_ep calls
/// MPI_Init_thread itself (and MPI_Finalize at exit). Throws Error when MPI was finalised already.
void EnsureInitialized();

/// Serialises moe_ep's MPI calls: the program may have initialised MPI below MPI_THREAD_MULTIPLE, and
/// several communicators (EP, TP) may be driven from different threads.
std::unique_lock<std::mutex> Lock();

/// Makes `call`, a blocking MPI call, with `lock` (a Lock() held) released where MPI allows it (MPI_THREAD_MULTIPLE,
/// as moe_ep asks when it initialises MPI itself), so that this process's other threads go on with their MPI calls
/// meanwhile; moe_ep's MPI_Finalize at exit still waits for it. Returns its status, with `lock` held again.
int CallUnlocked(std::unique_lock<std::mutex>& lock, const std::function<int()>& call);

/// True once MPI_Finalize ran (the program's or moe_ep's); no MPI call but this one is allowed then.
bool Finalized();

/// MPI's words for the error `code`, or the code where MPI has none.
std::string ErrorText(int code);

/// Throws Error (500002) naming `call` when an MPI call did not return MPI_SUCCESS.
void Check(int status, const char* call);

/// Waits for `request`, a non-blocking collective or send of a group's join, taking the lock only to test it; throws
/// TimeoutError at `deadline` (InterruptedError when the interrupt check asks) saying `what` was awaited, instead of
/// waiting for good in a blocking call that a rank never meets. MPI cannot say which ranks have not called a
/// collective, so the error names none. The request is left to MPI then (its buffers must outlive it; a
/// collective's communicator is not to be used again).
void WaitForRequest(MPI_Request& request, std::chrono::steady_clock::time_point deadline, const std::string& what);

/// WaitForRequest for a request whose buffers `kept` holds: when the wait gives up they are released, never freed.
template <typename T>
void WaitForRequestKeeping(std::unique_ptr<T>& kept, MPI_Request& request,
                           std::chrono::steady_clock::time_point deadline, const std::string& what) {
  try {
    WaitForRequest(request, deadline, what);
  } catch (...) {
    (void)kept.release();  // MPI may still read or write them
    throw;
  }
}

}  // namespace moe_ep::transport::mpi
