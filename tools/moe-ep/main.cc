// The moe-ep command: hands its arguments to the one parser (options.h) and runs what it validated.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "base/env.h"
#include "moe-ep/bench.h"
#include "moe-ep/launch.h"
#include "moe-ep/options.h"
#include "moe-ep/run_job.h"
#include "moe_ep/error.h"

namespace {

// The command's answer, unless a launcher forwarded a signal: then, its clean-up done, the process ends by it.
int Finish(int status) {
  if (const int signal = moe_ep::tools::InterruptedBy(); signal != 0) {
    std::signal(signal, SIG_DFL);
    std::raise(signal);
  }
  return status;
}

int Run(int argc, char** argv) {
  using namespace moe_ep::tools;
  std::vector<std::string> args(argv + 1, argv + argc);
  // Under mpirun (and not inside `moe-ep launch`) `run` is one rank per process: --ranks is the job's size.
  std::optional<moe_ep::env::LaunchVariables> mpi;
  try {
    if (!args.empty() && args[0] == "run" && !moe_ep::env::Text("MOE_EP_RENDEZVOUS")) mpi = moe_ep::env::MpiLaunch();
  } catch (const moe_ep::Error& e) {  // the launcher's variables say no job this process can be a rank of
    std::fprintf(stderr, "moe-ep run: %s\n", e.what());
    return kBadUsageExitCode;
  }
  const bool ranks_given = std::any_of(
      args.begin(), args.end(), [](const std::string& a) { return a == "--ranks" || a.starts_with("--ranks="); });
  if (mpi && !ranks_given) args.insert(args.end(), {"--ranks", std::to_string(mpi->world_size)});
  const ParseResult parsed = ParseCommandLine(args);
  if (!parsed.ok()) {
    // A --ranks the user never typed is mpirun's -np: say so.
    const char* taken = mpi && !ranks_given && parsed.error.find("--ranks") != std::string::npos
                            ? " (--ranks is the MPI job's size, mpirun -np)"
                            : "";
    std::fprintf(stderr, "%s%s (see 'moe-ep --help')\n", parsed.error.c_str(), taken);
    return parsed.exit_code;
  }
  const CommandLine& line = *parsed.command_line;
  try {
    switch (line.command) {
      case Command::kRun:
        if (const auto results_dir = ProcessRankResultsDir(); results_dir && moe_ep::env::Text("MOE_EP_RENDEZVOUS")) {
          return RunJobAsProcessRank(line.job, *results_dir);  // a rank started by `run --processes`
        }
        if (line.job.processes) {
          if (mpi) {
            std::fprintf(stderr, "moe-ep run: --processes starts its own rank processes; under mpirun leave it out\n");
            return kBadUsageExitCode;
          }
          std::vector<std::string> rank_args(args.begin() + 1, args.end());
          std::erase(rank_args, std::string("--processes"));
          return RunJobOverProcesses(line.job, std::move(rank_args));
        }
        if (!mpi) return RunJob(line.job);
        if (line.job.ranks != mpi->world_size) {
          std::fprintf(stderr, "moe-ep run: --ranks %d, but mpirun started %d processes, one rank each\n",
                       line.job.ranks, mpi->world_size);
          return 2;
        }
#if MOE_EP_HAVE_MPI
        return RunJobOverMpi(line.job);
#else
        std::fprintf(stderr, "moe-ep run: started by mpirun, but this moe-ep was built without MPI\n");
        return 2;
#endif
      case Command::kBench:
        return RunBench(line.bench);
      case Command::kBenchRank:
        return RunBenchRank(line.bench_point);
      case Command::kLaunch:
        return Launch(line.launch);
      case Command::kHelp:
        break;
    }
  } catch (const moe_ep::Error& e) {
    std::fprintf(stderr, "moe-ep: error %d: %s\n", static_cast<int>(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {  // the system's (a file that cannot be written, memory): not a crash either
    std::fprintf(stderr, "moe-ep: %s\n", e.what());
    return 1;
  }
  std::fputs(UsageText().c_str(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Finish(Run(argc, argv)); }
