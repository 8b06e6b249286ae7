// MPI initialisation on demand and the lock around moe_ep's MPI calls.
#include "transport/mpi/mpi_runtime.h"

#include <algorithm>
#include <cstdlib>
#include <shared_mutex>
#include <string>
#include <thread>

#include "base/env.h"
#include "moe_ep/error.h"
#include "transport/window.h"

namespace moe_ep::transport::mpi {
namespace {

std::mutex& Mutex() {
  static auto* const mutex = new std::mutex;  // never destroyed: used from atexit
  return *mutex;
}

// Held shared across a call made without Lock() (CallUnlocked), and exclusively by MPI_Finalize at exit.
std::shared_mutex& FinalizeGate() {
  static auto* const gate = new std::shared_mutex;  // never destroyed: used from atexit
  return *gate;
}

void FinalizeAtExit() {
  const auto lock = Lock();  // an operation still running on another thread finishes its MPI call first
  const std::unique_lock gate(FinalizeGate());
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace

bool Active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return (initialized && !finalized) || env::StartedByMpiLauncher();
}

void EnsureInitialized() {
  const auto lock = Lock();
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (finalized) throw Error(ErrorCode::kInvalidConfig, "moe_ep: MPI was finalized already; it cannot start again");
  if (initialized) return;
  int provided = 0;
  Check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
  std::atexit(FinalizeAtExit);
}

bool Finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

std::unique_lock<std::mutex> Lock() { return std::unique_lock<std::mutex>(Mutex()); }

int CallUnlocked(std::unique_lock<std::mutex>& lock, const std::function<int()>& call) {
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  if (provided != MPI_THREAD_MULTIPLE) return call();
  // Taken while `lock` is held, which FinalizeAtExit holds while it takes the gate: the two cannot wait on each other.
  std::shared_lock gate(FinalizeGate());
  lock.unlock();
  const int status = call();
  gate.unlock();
  lock.lock();
  return status;
}

std::string ErrorText(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS || length <= 0) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(length));
}

void Check(int status, const char* call) {
  if (status == MPI_SUCCESS) return;
  throw Error(ErrorCode::kInternal, std::string("moe_ep: ") + call + " failed: " + ErrorText(status));
}

void WaitForRequest(MPI_Request& request, std::chrono::steady_clock::time_point deadline, const std::string& what) {
  auto pause = std::chrono::microseconds(50);
  auto next_interrupt_check = std::chrono::steady_clock::now() + kInterruptCheckEvery;
  for (;;) {
    {
      const auto lock = Lock();
      int done = 0;
      Check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done) return;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_interrupt_check) {
      next_interrupt_check = now + kInterruptCheckEvery;
      if (InterruptRequested()) throw InterruptedError(what + ": interrupted", {});
    }
    if (now >= deadline) {
      throw TimeoutError(what +
                             ": timed out: not every rank of the group came before the deadline "
                             "(MOE_EP_TIMEOUT_MS, GroupOptions::timeout; HCCL_CONNECT_TIMEOUT in the C API), and MPI "
                             "cannot say which did not: their own messages do",
                         {});
    }
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(1));
  }
}

}  // namespace moe_ep::transport::mpi
