// Setting an environment variable for one scope, for tests of what moe_ep reads from the environment.
#pragma once

#include <cstdlib>
#include <string>

namespace moe_ep::testing {

/// Sets `name` to `value` for one scope (nullptr: unset), restoring what was there. Only while no other
/// thread reads the environment.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    value ? setenv(name, value, 1) : unsetenv(name);
  }
  ~ScopedEnv() { old_.empty() ? unsetenv(name_) : setenv(name_, old_.c_str(), 1); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::string old_;
};

}  // namespace moe_ep::testing
