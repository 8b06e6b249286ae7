// Group construction (threads of one process, processes over shared memory) and the Group accessors.
#include "moe_ep/group.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "api/group_impl.h"
#include "base/env.h"
#include "moe_ep/error.h"
#include "moe_ep/options.h"
#include "plan/layout.h"
#include "transport/shm/shm_window.h"
#ifdef MOE_EP_HAVE_MPI
#include "moe_ep/mpi.h"
#include "transport/mpi/hosts_window.h"
#include "transport/mpi/mpi_runtime.h"
#include "transport/mpi/rendezvous.h"
#endif
#include "transport/thread/thread_window.h"

namespace moe_ep {

Group::Group(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Group::Group(Group&&) noexcept = default;
Group& Group::operator=(Group&&) noexcept = default;
Group::~Group() = default;

int Group::rank() const { return GroupAccess::Comm(*this).rank(); }
int Group::size() const { return GroupAccess::Comm(*this).size(); }
std::chrono::milliseconds Group::timeout() const { return GroupAccess::Comm(*this).timeout(); }
uint64_t Group::window_bytes() const { return GroupAccess::Comm(*this).window_bytes(); }
const std::string& Group::name() const { return GroupAccess::Comm(*this).name(); }

std::vector<int> Group::failed_ranks() const { return GroupAccess::Comm(*this).failed_ranks(); }

namespace {

static_assert(kMaxGroupRanks == plan::kMaxSyncFlags, "one sync flag per rank");

Group Wrap(std::unique_ptr<transport::Window> window, const GroupOptions& o) {
  auto comm = std::make_unique<ops::Communicator>(std::move(window), o.timeout, o.name, o.data_path, o.threads);
  return Group(std::make_unique<Group::Impl>(Group::Impl{std::move(comm)}));
}

// Refuses options outside their ranges (include/moe_ep/group.h), naming the field, its value and the range: a
// window past 2^40 bytes would wrap the size of a segment, which the transports then write past. The name only
// where it names shared-memory segments (a process group's; a thread group's is a label).
void CheckOptions(const GroupOptions& o, bool names_segments) {
  const auto refuse = [](const std::string& field, const std::string& value, const char* rule) {
    throw Error(ErrorCode::kInvalidParam, "GroupOptions::" + field + " = " + value + ": " + rule);
  };
  if (o.timeout.count() < 0 || o.timeout.count() > env::kMaxTimeoutMs) {
    refuse("timeout", std::to_string(o.timeout.count()) + " ms",
           "must be in [0, 2^31] ms (0: MOE_EP_TIMEOUT_MS, else 5 minutes)");
  }
  if (o.window_bytes > env::kMaxWindowBytes) {
    refuse("window_bytes", std::to_string(o.window_bytes),
           "must be in [0, 2^40] (0: MOE_EP_WINDOW_MB, else 2 GiB; the window is reserved, committed on touch)");
  }
  if (o.data_path != DataPath::kAuto && o.data_path != DataPath::kPush && o.data_path != DataPath::kPull) {
    refuse("data_path", std::to_string(static_cast<int>(o.data_path)), "must be kAuto, kPush or kPull");
  }
  if (o.threads < 0 || o.threads > env::kMaxThreads) {
    refuse("threads", std::to_string(o.threads),
           "must be in [0, 1024] (0: MOE_EP_THREADS, else the cores shared out among the ranks)");
  }
  if (names_segments && o.name.find_first_of(std::string("/\0", 2)) != std::string::npos) {
    std::string shown;
    for (const char ch : o.name.substr(0, 64)) shown += ch ? std::string(1, ch) : "\\0";
    refuse("name", "'" + shown + (o.name.size() > 64 ? "...'" : "'"),
           "must be without '/' and NUL (it names the group's shared-memory segments)");
  }
}

GroupOptions WithDefaults(const GroupOptions& options, bool names_segments) {
  CheckOptions(options, names_segments);
  // Before a process group's join: a rank refusing one after it would leave its peers a group that cannot run.
  std::optional<env::Refusal> refused;
  ops::CheckCommunicatorVariables(options.data_path, options.threads, refused);
  if (refused) throw refused->error;
  GroupOptions o = options;
  if (o.timeout.count() <= 0) o.timeout = DefaultTimeout();
  if (o.window_bytes == 0) o.window_bytes = DefaultWindowBytes();
  return o;
}

#ifdef MOE_EP_HAVE_MPI
// WithDefaults for a join over MPI: a default the environment refuses is returned in `refused`, not thrown, as
// the rank must still take part in the join's collectives (the others would wait in them for good); the join
// then fails every rank, naming the variable.
GroupOptions WithDefaultsJoiningOverMpi(const GroupOptions& options, std::optional<env::Refusal>& refused) {
  GroupOptions o = options;
  try {
    CheckOptions(options, /*names_segments=*/true);
  } catch (const Error& e) {
    refused = env::Refusal{"GroupOptions", e};
    o = GroupOptions{.name = options.name};  // joins with the defaults, then fails every rank naming the option
  }
  if (o.timeout.count() <= 0) {
    o.timeout = env::ReadOrRefuse("MOE_EP_TIMEOUT_MS", DefaultTimeout,
                                  std::chrono::milliseconds(env::kDefaultTimeoutMs), refused);
  }
  if (o.window_bytes == 0) {
    o.window_bytes = env::ReadOrRefuse("MOE_EP_WINDOW_MB", DefaultWindowBytes, o.window_bytes, refused);
  }
  ops::CheckCommunicatorVariables(o.data_path, o.threads, refused);
  return o;
}
#endif

// Joins the group named `group` (its name ends in this try's n) of the job ranks `ranks`, this rank at `position`:
// over MPI when an MPI launcher started the job, else over shared memory.
Group JoinNthProcessGroup(const LaunchEnvironment& job, const std::vector<int>& ranks, int position,
                          const std::string& group, const GroupOptions& o,
                          [[maybe_unused]] const std::optional<env::Refusal>& refused) {
  const auto deadline = transport::Clock::now() + o.timeout;
  if (job.rendezvous.empty()) {  // started by an MPI launcher: the hosts transport
#ifdef MOE_EP_HAVE_MPI
    return Wrap(
        transport::JoinHostsGroupOfWorldRanks(ranks, group, o.window_bytes, ops::kWindowFlagCount, deadline, refused),
        o);
#else
    throw Error(ErrorCode::kInvalidConfig,
                "JoinProcessGroup: the job has no MOE_EP_RENDEZVOUS (an MPI launcher started it?), and this moe_ep "
                "was built without MPI: install libopenmpi-dev and rebuild, or start the ranks with `moe-ep launch`");
#endif
  }
  auto window = transport::JoinShmGroup(job.rendezvous, group, position, static_cast<int>(ranks.size()), o.window_bytes,
                                        ops::kWindowFlagCount, deadline);
  return Wrap(std::move(window), o);
}

}  // namespace

LaunchEnvironment ReadLaunchEnvironment() {
  const env::LaunchVariables job = env::Launch();
  return {job.rank, job.world_size, job.rendezvous};
}

Group JoinProcessGroup(const LaunchEnvironment& job, std::span<const int> members, const GroupOptions& options) {
  std::optional<env::Refusal> refused;
#ifdef MOE_EP_HAVE_MPI
  const GroupOptions o = job.rendezvous.empty() ? WithDefaultsJoiningOverMpi(options, refused)
                                                : WithDefaults(options, /*names_segments=*/true);
#else
  const GroupOptions o = WithDefaults(options, /*names_segments=*/true);
#endif
  const auto refuse = [](const std::string& what, const std::string& rule) {
    throw Error(ErrorCode::kInvalidConfig, "JoinProcessGroup: " + what + " violates rule: " + rule);
  };
  // The job first: the members are checked against it, and it sizes the default member list.
  constexpr int kMaxJobRanks = 1 << 20;  // as MOE_EP_WORLD_SIZE and an MPI launch allow
  if (job.world_size < 1 || job.world_size > kMaxJobRanks) {
    refuse("job.world_size = " + std::to_string(job.world_size), "in [1, " + std::to_string(kMaxJobRanks) + "]");
  }
  if (members.empty() && job.world_size > kMaxGroupRanks) {
    refuse("job.world_size = " + std::to_string(job.world_size) + " (no members given: the group is the whole job)",
           "at most " + std::to_string(kMaxGroupRanks) + " ranks");
  }
  if (job.rank < 0 || job.rank >= job.world_size) {
    refuse("job.rank = " + std::to_string(job.rank), "in [0, job.world_size = " + std::to_string(job.world_size) + ")");
  }
  if (const std::string problem = env::RendezvousProblem(job.rendezvous, "job.rendezvous"); !problem.empty()) {
    throw Error(ErrorCode::kInvalidConfig, "JoinProcessGroup: " + problem);
  }
#ifdef MOE_EP_HAVE_MPI
  // Without a rendezvous the job is MPI's: its ranks are MPI_COMM_WORLD's (a message to a rank MPI does not have ends
  // the process). A job of fewer ranks than the world is its first ranks.
  if (job.rendezvous.empty() &&
      (job.world_size > transport::mpi::WorldSize() || job.rank != transport::mpi::WorldRank())) {
    refuse("job = rank " + std::to_string(job.rank) + " of " + std::to_string(job.world_size) +
               " without a rendezvous (an MPI job)",
           "an MPI job's ranks are MPI_COMM_WORLD's: this is rank " + std::to_string(transport::mpi::WorldRank()) +
               " of " + std::to_string(transport::mpi::WorldSize()) +
               " (or give the rendezvous of a moe-ep launch job)");
  }
#endif
  if (members.size() > static_cast<size_t>(kMaxGroupRanks)) {
    refuse("parameter 'members' (" + std::to_string(members.size()) + " ranks)",
           "at most " + std::to_string(kMaxGroupRanks) + " ranks");
  }
  std::vector<int> ranks(members.begin(), members.end());
  if (ranks.empty()) {
    for (int r = 0; r < job.world_size; ++r) ranks.push_back(r);
  }
  std::map<int, int> listed_at;  // where each job rank first appears in members
  for (int i = 0; i < static_cast<int>(ranks.size()); ++i) {
    const std::string member = "parameter 'members[" + std::to_string(i) + "]' = " + std::to_string(ranks[i]);
    if (ranks[i] < 0 || ranks[i] >= job.world_size) {
      refuse(member, "a job rank in [0, job.world_size = " + std::to_string(job.world_size) + ")");
    }
    if (const auto [first, fresh] = listed_at.emplace(ranks[i], i); !fresh) {
      refuse(member, "the members are distinct; it repeats members[" + std::to_string(first->second) + "]");
    }
  }
  const auto me = std::find(ranks.begin(), ranks.end(), job.rank);
  if (me == ranks.end()) {
    refuse("parameter 'members' (" + std::to_string(ranks.size()) + " ranks)",
           "must include this rank, job.rank = " + std::to_string(job.rank));
  }
  // The n-th group of a name and member list made by this rank of this job: every member creates its
  // groups in the same order, so they agree on n (ranks may also be threads of one process). A join that fails
  // does not count: the ranks may call again, and meet there a member that came too late for their first try.
  // The name's length first: "ep-2" of {3} and "ep" of {2, 3} are other groups (both were "ep-2-3").
  std::string group = std::to_string(o.name.size()) + "." + o.name;
  for (int r : ranks) (group += '-') += std::to_string(r);
  static std::mutex mutex;
  static std::map<std::string, int> made;
  const std::string key = job.rendezvous + "/" + std::to_string(job.rank) + "/" + group;
  int index;
  {
    std::lock_guard lock(mutex);
    index = made[key]++;
  }
  (group += '.') += std::to_string(index);
  try {
    return JoinNthProcessGroup(job, ranks, static_cast<int>(me - ranks.begin()), group, o, refused);
  } catch (...) {
    std::lock_guard lock(mutex);
    if (made[key] == index + 1) made[key] = index;
    throw;
  }
}
Group JoinProcessGroup(const LaunchEnvironment& job, const GroupOptions& options) {
  return JoinProcessGroup(job, {}, options);
}

Group JoinProcessGroup(const GroupOptions& options) { return JoinProcessGroup(ReadLaunchEnvironment(), options); }

#ifdef MOE_EP_HAVE_MPI
Group JoinMpiGroup(MPI_Comm comm, const GroupOptions& options) {
  transport::mpi::EnsureInitialized();  // the join initializes MPI when the program has not
  if (comm == MPI_COMM_NULL) {          // MPI's default handler would end the process in MPI_Comm_size
    throw Error(ErrorCode::kInvalidParam,
                "JoinMpiGroup: parameter 'comm' = MPI_COMM_NULL violates rule: a communicator this process is a member "
                "of (MPI_Comm_split with MPI_UNDEFINED gives MPI_COMM_NULL to the processes it leaves out)");
  }
  int size = 0;
  {
    const auto lock = transport::mpi::Lock();
    transport::mpi::Check(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  }
  if (size > kMaxGroupRanks) {  // every rank sees the same size: all refuse, none waits for the others
    throw Error(ErrorCode::kInvalidConfig, "JoinMpiGroup: parameter 'comm' has " + std::to_string(size) +
                                               " ranks and must have at most " + std::to_string(kMaxGroupRanks));
  }
  std::optional<env::Refusal> refused;
  const GroupOptions o = WithDefaultsJoiningOverMpi(options, refused);
  // The segments' names need no count of groups made: each join's host draws a fresh token for them.
  return Wrap(transport::JoinHostsGroup(comm, o.name + ".mpi", o.window_bytes, ops::kWindowFlagCount,
                                        transport::Clock::now() + o.timeout, refused),
              o);
}
#endif

std::vector<Group> CreateThreadGroups(int size, const GroupOptions& options) {
  if (size < 1 || size > kMaxGroupRanks) {
    throw Error(ErrorCode::kInvalidParam, "CreateThreadGroups: parameter 'size' = " + std::to_string(size) +
                                              " must be in [1, " + std::to_string(kMaxGroupRanks) + "]");
  }
  const GroupOptions o = WithDefaults(options, /*names_segments=*/false);
  std::vector<Group> groups;
  for (auto& window :
       transport::CreateThreadWindows(size, o.window_bytes, ops::kWindowFlagCount, "group '" + o.name + "'")) {
    groups.push_back(Wrap(std::move(window), o));
  }
  return groups;
}

}  // namespace moe_ep
