// Groups (communicators): a set of ranks that run the collective operations together, each with its
// own window. Ranks are threads of one process (CreateThreadGroups), processes on one host
// (JoinProcessGroup, over shared memory), or MPI processes on several hosts (JoinProcessGroup under
// mpirun, or JoinMpiGroup in moe_ep/mpi.h: shared memory inside a host, MPI between hosts).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

// The public API: exported from libmoe_ep, whose other symbols are hidden.
#pragma GCC visibility push(default)
namespace moe_ep {

/// How dispatch and combine move rows between ranks that can read each other's memory, in place (the
/// ranks of CreateThreadGroups; process ranks of one host for tensors made with Tensor::PeerVisible, and
/// for a dispatch's x that dispatch copies there: one of at most 64 KiB, or no larger than the rows it sends
/// to other ranks) or by copy (process ranks of one host, any other memory: MOE_EP_CROSS_MEMORY in
/// moe_ep/options.h); other rows are always pushed. All paths give the same bits.
enum class DataPath : uint8_t {
  /// MOE_EP_DATA_PATH when set, else by size: a rank's rows are pulled when it sends at least
  /// kPullMinBytes of them in a call (where they are read by copy: kCopyMinBytes, or kPullMinBytes under
  /// MOE_EP_CROSS_MEMORY=1), pushed below that (a pull costs one more round trip).
  kAuto,
  /// The sender copies each row into the receiver's window and the receiver copies it out: two copies.
  kPush,
  /// The receiver copies each row straight from the sender's tensor into its output (dispatch), or reads
  /// it there as it sums (combine), then tells the sender it is done: one copy. At every size, by copy
  /// too where MOE_EP_CROSS_MEMORY lets the ranks read each other's memory.
  kPull,
};
/// The size from which DataPath::kAuto pulls: the row bytes one rank sends in one call.
inline constexpr uint64_t kPullMinBytes = uint64_t{32} << 10;
/// The size from which DataPath::kAuto lets process ranks copy rows out of each other's private memory by
/// default (MOE_EP_CROSS_MEMORY unset or auto, moe_ep/options.h; =1 copies from kPullMinBytes), the row bytes
/// one rank sends in one call; pushed below that.
/// A kernel copy costs more than a push of a few rows (a system call per batch, and about half the speed
/// of a load) and less than a push of many: combine of 8 process ranks' private expert outputs on 16
/// cores took the same time either way at 64 tokens per rank (7 MiB a rank), 1.2-1.6x less by copy at
/// 96-512 (11-57 MiB), up to 2.7x more at 1-32.
inline constexpr uint64_t kCopyMinBytes = uint64_t{8} << 20;

/// Options fixed when a group is created.
struct GroupOptions {
  /// Deadline of every wait in an operation; 0 means MOE_EP_TIMEOUT_MS or 5 minutes. The fields are checked
  /// when the group is made: a timeout outside [0, 2^31] ms, a window past 2^40 bytes, threads outside [0, 1024] or a
  /// data_path that is none of DataPath's values is an Error (kInvalidParam) naming the field, its value and its range;
  /// so is a variable the group would read (MOE_EP_THREADS when threads is 0, ...; include/moe_ep/options.h) that is
  /// malformed, before a process group meets its peers.
  std::chrono::milliseconds timeout{0};
  /// Data area of each rank's window in bytes; 0 means MOE_EP_WINDOW_MB or 2 GiB (reserved, committed
  /// on touch). Dispatch and combine check it against the window rule of docs/semantics.md 1.2.
  uint64_t window_bytes = 0;
  /// Shown in error messages; a process group's also names its shared-memory segments, so there it holds no '/'
  /// and no NUL.
  std::string name = "moe_ep";
  /// Push or pull rows (kAuto: MOE_EP_DATA_PATH, else by size).
  DataPath data_path = DataPath::kAuto;
  /// Threads each rank splits its row copies and token sums over, its own included; 0 means
  /// MOE_EP_THREADS, else the cores the calling thread may run on shared out among the group's ranks here (at least 1).
  /// Results are the same bits for every count.
  int threads = 0;
};

/// One rank's membership of a group. Cheap to move; not copyable. Operations on a group are
/// collective: every rank of the group calls them in the same order. A Group moved from holds no group: using it is an
/// Error (kInvalidParam). A Group must outlive every call on it: destroying it (or moving into it) while another
/// thread is in an operation or a ProbeReachable of it is undefined. Its destruction may wait up to 1 s for peers
/// still reading rows of its last dispatch.
class Group {
 public:
  struct Impl;  ///< the internal communicator (opaque)
  explicit Group(std::unique_ptr<Impl> impl);
  Group(Group&&) noexcept;
  Group& operator=(Group&&) noexcept;
  ~Group();

  int rank() const;
  int size() const;
  std::chrono::milliseconds timeout() const;
  uint64_t window_bytes() const;
  const std::string& name() const;

  /// Peers (ranks of this group) that an operation of this group waited for in vain, or that a BufferReset was
  /// told are unreachable, in rank order; a BufferReset that syncs with a peer again clears its entry.
  std::vector<int> failed_ranks() const;

 private:
  friend struct GroupAccess;  // the library's own view of the inside
  std::unique_ptr<Impl> impl_;
};

/// The most ranks a group has (a window holds one flag per rank for each collective step).
inline constexpr int kMaxGroupRanks = 65536;

/// Creates the `size` ranks (1 .. kMaxGroupRanks) of an in-process group (the thread transport): hand groups[r] to
/// the thread that runs rank r. Memory is shared by pointer; nothing outlives the last Group.
std::vector<Group> CreateThreadGroups(int size, const GroupOptions& options = {});

/// Where a process stands in its job: what a launcher (`moe-ep launch`, or any other) sets in
/// MOE_EP_RANK, MOE_EP_WORLD_SIZE and MOE_EP_RENDEZVOUS (an unpredictable token naming the job, 1 to 128 characters
/// without '/' and NUL). Under an MPI launcher (mpirun) without MOE_EP_RENDEZVOUS: the launcher's rank and size
/// (MPI_COMM_WORLD's), and an empty rendezvous, which makes JoinProcessGroup use the hosts transport.
struct LaunchEnvironment {
  int rank = 0;
  int world_size = 0;
  std::string rendezvous;
};
/// Reads the three variables; throws Error naming any that is missing or malformed.
LaunchEnvironment ReadLaunchEnvironment();

/// [collective over the job's processes] Joins the group of every rank of the job, one process per rank,
/// over shared memory (the shm transport), or under mpirun over the hosts transport. Every process makes its groups in
/// the same order: the n-th group with a given name is the same group everywhere. Waits at most the group timeout for
/// the others (a TimeoutError naming those that did not come). A join that failed does not count: once every rank's
/// join failed, the ranks may call again, and meet there a rank that came too late for their first try. The rendezvous
/// is 1 to 128 characters without '/' and NUL; without one (an MPI job) job.rank must be this process's MPI_COMM_WORLD
/// rank and job.world_size at most that world's size.
Group JoinProcessGroup(const LaunchEnvironment& job, const GroupOptions& options = {});
/// [collective over `members`] Joins the group of the job ranks listed in `members` (this process
/// included; its rank in the group is its position in the list; at most kMaxGroupRanks), e.g. an EP group or a
/// TP pair.
Group JoinProcessGroup(const LaunchEnvironment& job, std::span<const int> members, const GroupOptions& options = {});
/// JoinProcessGroup(ReadLaunchEnvironment(), options).
Group JoinProcessGroup(const GroupOptions& options = {});

}  // namespace moe_ep
#pragma GCC visibility pop
