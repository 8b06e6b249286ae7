// The one reader of the environment: every MOE_EP_* and HCCL_* variable moe_ep reads, each with its
// default and allowed range (include/moe_ep/options.h lists them for users).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "moe_ep/error.h"
#include "moe_ep/group.h"

namespace moe_ep::env {

/// The integer in variable `name`, `fallback` when it is unset or empty. Anything but a decimal integer
/// in [min, max] throws Error (161002) naming the variable, its text and the range.
int64_t Integer(const char* name, int64_t fallback, int64_t min, int64_t max);
/// The text of variable `name`, nullopt when it is unset or empty.
std::optional<std::string> Text(const char* name);
/// Variable `name` as a switch: "1" true, "0" false, nullopt when it is unset or empty; anything else throws
/// Error (161002) naming the variable and its text.
std::optional<bool> Switch(const char* name);

/// MOE_EP_TIMEOUT_MS: the deadline of every wait of an operation (default 5 minutes).
std::chrono::milliseconds OperationTimeout();
/// MOE_EP_WINDOW_MB: the data area of a native group's window (default 2 GiB).
uint64_t WindowBytes();
/// MOE_EP_DATA_PATH: "push", "pull" or "auto" (default, also when unset); anything else throws Error
/// (161002) naming the variable and the three values.
DataPath DataPathChoice();
/// MOE_EP_THREADS: threads per rank, the rank's own included (1 .. kMaxThreads); `fallback` when unset.
int Threads(int fallback);
/// The most threads a rank splits its loops over (MOE_EP_THREADS, GroupOptions::threads).
inline constexpr int kMaxThreads = 1024;
/// MOE_EP_THREAD_MIN_BYTES: the least bytes of rows a worker thread is woken for (0 .. 2^40; 0: every loop
/// is split among all threads); `fallback` when unset.
uint64_t ThreadMinBytes(uint64_t fallback);
/// MOE_EP_CROSS_MEMORY: whether process ranks on one host copy rows out of each other's private memory
/// (the pull data path for buffers outside the shared heap).
enum class CrossMemory : uint8_t {
  kOff,   ///< "0": such rows are pushed
  kOn,    ///< "1": read by copy from the size rows are pulled from (kPullMinBytes), and under Yama
          ///< ptrace_scope 1 each rank lets any process of its user read it (prctl PR_SET_PTRACER_ANY)
  kAuto,  ///< "auto" or unset: read by copy from kCopyMinBytes, where the system already allows it
};
/// Anything but "0", "1" and "auto" throws Error (161002) naming the variable and the three values.
CrossMemory CrossMemoryChoice();

/// A variable refused and the error reading it threw. A join across processes reads its settings before its
/// collectives without throwing: a rank that refused one still takes part, and then every rank fails, naming it.
struct Refusal {
  std::string variable;  // e.g. "MOE_EP_TIMEOUT_MS"
  Error error;           // what reading it threw
};
/// reader() (which reads `variable`), or `fallback` when it throws Error; the first such refusal is kept in `first`.
template <typename Reader, typename T>
T ReadOrRefuse(const char* variable, Reader reader, T fallback, std::optional<Refusal>& first) {
  try {
    return reader();
  } catch (const Error& e) {
    if (!first) first = Refusal{variable, e};
    return fallback;
  }
}
/// MOE_EP_ISA: the kernels' instruction set by name, nullopt to use the best the CPU has.
std::optional<std::string> KernelIsa();
/// MOE_EP_DEVICE_COUNT: the C API's virtual devices (default 16).
int32_t DeviceCount();
/// The product the C API behaves as (docs/a2.md).
enum class Product : uint8_t { kA3, kA2 };
/// MOE_EP_SOC_NAME: the SoC the C API emulates, as aclrtGetSocName reports it: an Atlas A3 name
/// (Ascend910_9391 by default, also 9381, 9372, 9392, 9382, 9362) or an Atlas A2 one (Ascend910B1, B2, B2C,
/// B3, B4, B4-1). Anything else throws Error (161002) naming the variable and the names. Returns the
/// name (a static string) and its product.
std::pair<const char*, Product> SocName();

/// HCCL_BUFFSIZE: the data area of a C API communicator's window (MB in the variable; default 200).
uint64_t HcclWindowBytes();
/// The largest window a variable or a configuration may ask for, in MB: 1 TiB, beyond which the byte arithmetic
/// could wrap.
inline constexpr int64_t kMaxWindowMb = int64_t{1} << 20;
inline constexpr uint64_t kMaxWindowBytes = uint64_t{kMaxWindowMb} << 20;  // the same in bytes: 2^40
/// The longest deadline moe_ep keeps, in ms: 2^31 ms (about 24 days), beyond which the clock arithmetic could wrap.
inline constexpr int64_t kMaxTimeoutMs = int64_t{1} << 31;
/// MOE_EP_TIMEOUT_MS when it is not set (5 minutes); also the deadline of a join over MPI whose rank refused the
/// variable (it must still take part in the join, to tell the others why it fails).
inline constexpr int64_t kDefaultTimeoutMs = 300000;
/// The largest HCCL_EXEC_TIMEOUT (and HcclCommConfig::hcclExecTimeOut) in seconds, as in CANN: 2^31 - 1.
inline constexpr int64_t kMaxHcclExecSeconds = 2147483647;
/// The deadline an HCCL execution timeout of `seconds` (0 .. kMaxHcclExecSeconds) gives. 0, CANN's "never time out",
/// is moe_ep's own deadline (OperationTimeout(): a wait never hangs on a dead rank); more than kMaxTimeoutMs is
/// kMaxTimeoutMs (2147483647 is a common way to say "never").
std::chrono::milliseconds HcclExecDeadline(int64_t seconds);
/// HCCL_EXEC_TIMEOUT: a C API operation's deadline (seconds in the variable, in [0, kMaxHcclExecSeconds], as
/// HcclExecDeadline reads them); MOE_EP_TIMEOUT_MS when unset.
std::chrono::milliseconds HcclOperationTimeout();
/// HCCL_CONNECT_TIMEOUT: how long a communicator's join (HcclCommInitRootInfo, HcclCommInitClusterInfo and their
/// Config forms) waits for every rank (default 120 s).
std::chrono::seconds HcclConnectTimeout();

/// MOE_EP_HOSTS_SPLIT (tests only): 0 (default) groups ranks into hosts by where they run; N > 0 makes
/// every N consecutive ranks of a hosts group a simulated host, so one machine exercises the MPI path.
int HostsSplit();

/// MOE_EP_HOSTS_RELAY: 1 sends what goes to another host through one rank there, which forwards it
/// over shared memory (two-level, the default); 0 sends every message straight to its rank (flat).
bool HostsRelay();

/// MOE_EP_HOSTS_MESSAGE_BYTES: the largest message the hosts transport sends, in bytes (rounded down to a
/// multiple of 8; default kDefaultHostsMessageBytes, range [1024, 64 MiB]). Small messages keep slow links
/// busy; messages above Open MPI's eager limit skip a copy on the receiver, which pays on fast links between
/// busy cores (docs/hosts.md, "Message size").
uint64_t HostsMessageBytes();
inline constexpr uint64_t kDefaultHostsMessageBytes = 64512;

/// What a launcher sets for each process of a job (`moe-ep launch`).
struct LaunchVariables {
  int rank = 0;            // MOE_EP_RANK
  int world_size = 0;      // MOE_EP_WORLD_SIZE
  std::string rendezvous;  // MOE_EP_RENDEZVOUS: an unpredictable token naming the job
};
/// The longest MOE_EP_RENDEZVOUS: it is part of the job's shared-memory names, which NAME_MAX (255 bytes) bounds.
inline constexpr size_t kMaxRendezvousChars = 128;
/// Why `rendezvous` cannot name a job's segments, as a message naming it `named` ("" when it can): longer than
/// kMaxRendezvousChars, or holding a '/' or a NUL.
std::string RendezvousProblem(const std::string& rendezvous, const std::string& named);
/// Reads the three; throws Error (561002) naming any that is missing or out of range (a rendezvous: RendezvousProblem).
/// Under an MPI launcher without MOE_EP_RENDEZVOUS: rank and size from the launcher (MpiLaunch, whose malformed values
/// throw 161002), rendezvous empty.
LaunchVariables Launch();
/// The rank and size an MPI launcher set (Open MPI's OMPI_COMM_WORLD_RANK / _SIZE, MPICH's PMI_RANK /
/// PMI_SIZE), with an empty rendezvous; nullopt when the process was not started by one. Throws Error (161002, as for
/// any integer variable) naming one that is not a decimal integer in range.
std::optional<LaunchVariables> MpiLaunch();
/// Whether a launcher started this process as an MPI rank: Open MPI's OMPI_COMM_WORLD_SIZE, PMIx's PMIX_RANK
/// or MPICH Hydra's PMI_SIZE is set (any value; MpiLaunch reads the rank and size).
bool StartedByMpiLauncher();

}  // namespace moe_ep::env
