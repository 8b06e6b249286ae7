// Group construction (threads of one process, processes over shared memory) and the Group accessors.
#include "moe_ep/group.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>

#include "api/group_impl.h"
#include "moe_ep/error.h"
#include "moe_ep/options.h"
#include "transport/shm/shm_team.h"
#include "transport/thread/thread_team.h"

namespace moe_ep {

Group::Group(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Group::Group(Group&&) noexcept = default;
Group& Group::operator=(Group&&) noexcept = default;
Group::~Group() = default;

int Group::rank() const { return impl_->window->rank(); }
int Group::size() const { return impl_->window->size(); }
std::chrono::milliseconds Group::timeout() const { return impl_->timeout; }
uint64_t Group::window_bytes() const { return impl_->window->data_bytes(); }
const std::string& Group::name() const { return impl_->name; }

std::vector<int> Group::failed_ranks() const { return {impl_->failed.begin(), impl_->failed.end()}; }

namespace {

int EnvInt(const char* name) {
  const char* text = std::getenv(name);
  if (!text || !*text) throw Error(ErrorCode::kInvalidConfig, std::string(name) + " is not set; start the ranks with `moe-ep launch -n N -- PROGRAM`");
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < 0 || value > (1 << 20)) {
    throw Error(ErrorCode::kInvalidConfig, std::string(name) + " = '" + text + "' is not a rank number");
  }
  return static_cast<int>(value);
}

GroupOptions WithDefaults(const GroupOptions& options) {
  GroupOptions o = options;
  if (o.timeout.count() <= 0) o.timeout = DefaultTimeout();
  if (o.window_bytes == 0) o.window_bytes = DefaultWindowBytes();
  return o;
}

}  // namespace

LaunchEnvironment ReadLaunchEnvironment() {
  LaunchEnvironment job;
  job.rank = EnvInt("MOE_EP_RANK");
  job.world_size = EnvInt("MOE_EP_WORLD_SIZE");
  const char* token = std::getenv("MOE_EP_RENDEZVOUS");
  if (!token || !*token) throw Error(ErrorCode::kInvalidConfig, "MOE_EP_RENDEZVOUS is not set; start the ranks with `moe-ep launch -n N -- PROGRAM`");
  job.rendezvous = token;
  if (job.world_size < 1 || job.rank >= job.world_size) {
    throw Error(ErrorCode::kInvalidConfig, "MOE_EP_RANK = " + std::to_string(job.rank) + " must be in [0, MOE_EP_WORLD_SIZE = " +
                                               std::to_string(job.world_size) + ")");
  }
  return job;
}

Group JoinProcessGroup(const LaunchEnvironment& job, std::span<const int> members, const GroupOptions& options) {
  const GroupOptions o = WithDefaults(options);
  std::vector<int> ranks(members.begin(), members.end());
  if (ranks.empty()) {
    for (int r = 0; r < job.world_size; ++r) ranks.push_back(r);
  }
  const auto me = std::find(ranks.begin(), ranks.end(), job.rank);
  if (me == ranks.end() || std::set<int>(ranks.begin(), ranks.end()).size() != ranks.size() ||
      *std::min_element(ranks.begin(), ranks.end()) < 0 || *std::max_element(ranks.begin(), ranks.end()) >= job.world_size) {
    throw Error(ErrorCode::kInvalidConfig, "JoinProcessGroup: parameter 'members' must list distinct job ranks in [0, " +
                                               std::to_string(job.world_size) + ") including this rank (" +
                                               std::to_string(job.rank) + ")");
  }
  // The n-th group of a name and member list in this process: every member creates its groups in the
  // same order, so they agree on n.
  std::string group = o.name;
  for (int r : ranks) group += "-" + std::to_string(r);
  static std::mutex mutex;
  static std::map<std::string, int> made;
  int index;
  {
    std::lock_guard lock(mutex);
    index = made[group]++;
  }
  group += "." + std::to_string(index);
  auto window = transport::JoinShmGroup(job.rendezvous, group, static_cast<int>(me - ranks.begin()),
                                        static_cast<int>(ranks.size()), o.window_bytes,
                                        transport::Clock::now() + o.timeout);
  return Group(std::make_unique<Group::Impl>(Group::Impl{std::move(window), o.timeout, o.name, {}}));
}

Group JoinProcessGroup(const LaunchEnvironment& job, const GroupOptions& options) {
  return JoinProcessGroup(job, {}, options);
}

Group JoinProcessGroup(const GroupOptions& options) { return JoinProcessGroup(ReadLaunchEnvironment(), options); }

std::vector<Group> CreateThreadGroups(int size, const GroupOptions& options) {
  if (size < 1) throw Error(ErrorCode::kInvalidParam, "CreateThreadGroups: size = " + std::to_string(size) + " must be >= 1");
  const auto timeout = options.timeout.count() > 0 ? options.timeout : DefaultTimeout();
  const uint64_t bytes = options.window_bytes > 0 ? options.window_bytes : DefaultWindowBytes();
  const std::string name = "group '" + options.name + "'";
  std::vector<Group> groups;
  for (auto& window : transport::CreateThreadWindows(size, bytes, name)) {
    groups.emplace_back(std::make_unique<Group::Impl>(Group::Impl{std::move(window), timeout, options.name, {}}));
  }
  return groups;
}

}  // namespace moe_ep
