// `moe-ep launch`: starts the ranks of a job as processes on this host with the rank environment set.
#pragma once

#include <string>
#include <vector>

namespace moe_ep::tools {

struct LaunchOptions {
  int ranks = 0;
  std::vector<std::string> command;  // program and its arguments
  // The first rank to fail ends the job: the others get SIGTERM. For jobs whose ranks are of no use without every
  // other (`run --processes`, a bench's measurement), which would otherwise wait for a failed one until their
  // deadline. `moe-ep launch` itself leaves the others running: a job may go on without a rank.
  bool end_on_failure = false;
};

/// Starts `ranks` copies of the command with MOE_EP_RANK, MOE_EP_WORLD_SIZE and a fresh, unpredictable
/// MOE_EP_RENDEZVOUS; forwards their stdout / stderr line by line with a "[rank r] " prefix; forwards
/// SIGINT, SIGTERM and SIGHUP to them, unless the caller ignores them (then InterruptedBy() names the signal: the
/// caller cleans up and ends as the signal asked; a second signal kills the ranks left); removes any shared-memory
/// segment of the job that is left (a rank killed during set-up).
/// Returns the first non-zero exit status (128 + signal for a killed rank), else 0. A rank that cannot be
/// started ends the job (the others are killed), returning 1.
int Launch(const LaunchOptions& options);

/// Starts a program and waits for it, handing signals on to it as Launch does; returns its exit status (127: it could
/// not be started). The program dies with this process (mpirun then ends its ranks).
int RunProgram(const std::vector<std::string>& argv);

/// The signal an earlier Launch or RunProgram handed on, or 0: the process was asked to stop.
int InterruptedBy();

}  // namespace moe_ep::tools
