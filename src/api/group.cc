// Group construction for the thread transport and the Group accessors.
#include "moe_ep/group.h"

#include "api/group_impl.h"
#include "moe_ep/error.h"
#include "moe_ep/options.h"
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

std::vector<Group> CreateThreadGroups(int size, const GroupOptions& options) {
  if (size < 1) throw Error(ErrorCode::kInvalidParam, "CreateThreadGroups: size = " + std::to_string(size) + " must be >= 1");
  const auto timeout = options.timeout.count() > 0 ? options.timeout : DefaultTimeout();
  const uint64_t bytes = options.window_bytes > 0 ? options.window_bytes : DefaultWindowBytes();
  const std::string name = "group '" + options.name + "'";
  std::vector<Group> groups;
  for (auto& window : transport::CreateThreadWindows(size, bytes, name)) {
    groups.emplace_back(std::make_unique<Group::Impl>(Group::Impl{std::move(window), timeout, options.name}));
  }
  return groups;
}

}  // namespace moe_ep
