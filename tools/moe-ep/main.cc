// The moe-ep command: hands its arguments to the one parser (options.h) and runs what it validated.
#include <cstdio>
#include <string>
#include <vector>

#include "moe-ep/launch.h"
#include "moe-ep/options.h"
#include "moe-ep/run_job.h"
#include "moe_ep/error.h"

int main(int argc, char** argv) {
  using namespace moe_ep::tools;
  const std::vector<std::string> args(argv + 1, argv + argc);
  const ParseResult parsed = ParseCommandLine(args);
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s (see 'moe-ep --help')\n", parsed.error.c_str());
    return parsed.exit_code;
  }
  const CommandLine& line = *parsed.command_line;
  try {
    switch (line.command) {
      case Command::kRun:
        return RunJob(line.job);
      case Command::kLaunch:
        return Launch(line.launch);
      case Command::kHelp:
        break;
    }
  } catch (const moe_ep::Error& e) {
    std::fprintf(stderr, "moe-ep: error %d: %s\n", static_cast<int>(e.code()), e.what());
    return 1;
  }
  std::fputs(UsageText().c_str(), stdout);
  return 0;
}
