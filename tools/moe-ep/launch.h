// `moe-ep launch`: starts the ranks of a job as processes on this host with the rank environment set.
#pragma once

#include <string>
#include <vector>

namespace moe_ep::tools {

struct LaunchOptions {
  int ranks = 0;
  std::vector<std::string> command;  // program and its arguments
};

/// Starts `ranks` copies of the command with MOE_EP_RANK, MOE_EP_WORLD_SIZE and a fresh, unpredictable
/// MOE_EP_RENDEZVOUS; forwards their stdout / stderr line by line with a "[rank r] " prefix; forwards
/// SIGINT / SIGTERM to them and, once they are gone, ends this process by the same signal (under the
/// handler the caller had); removes any shared-memory segment of the job that is left (a rank killed during
/// set-up). Returns the first non-zero exit status (128 + signal for a killed rank), else 0.
int Launch(const LaunchOptions& options);

}  // namespace moe_ep::tools
