// The main job on threads or on processes of this host: verify one round against the reference, then time
// dispatch and combine (medians over repeats, first start to last end per round) next to a memcpy of the same bytes.
#include "moe-ep/run_job.h"

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "base/env.h"
#include "kernels/kernels.h"
#include "moe-ep/launch.h"
#include "moe-ep/options.h"
#include "moe-ep/rank_job.h"
#include "moe_ep/ops.h"
#include "ops/workers.h"
#include "verify/scenario.h"

namespace moe_ep::tools {
namespace {

using moe_ep::verify::ScenarioInputs;
using moe_ep::verify::ScenarioSpec;

// The environment variable through which `run --processes` tells its rank processes where to leave their times.
constexpr const char* kResultsDirVariable = "MOE_EP_RUN_RESULTS";

}  // namespace

int RunJob(const JobOptions& o) {
  const uint64_t seed = SeedOr(o.seed);
  const ScenarioSpec spec = SpecOf(o);
  std::printf("moe-ep run: %s\n", moe_ep::verify::Describe(spec).c_str());
  std::printf("  transport: threads (%d ranks in one process, %d worker thread%s each), kernels: %s, seed %llu\n",
              o.ranks, ops::DefaultThreads(o.ranks), ops::DefaultThreads(o.ranks) == 1 ? "" : "s",
              kernels::IsaName(kernels::ActiveIsa()), static_cast<unsigned long long>(seed));

  std::mt19937_64 rng(seed);
  ScenarioInputs inputs = moe_ep::verify::MakeInputs(spec, rng);
  moe_ep::verify::RunOptions verify;
  verify.seed = seed + 1;
  const std::string mismatch = moe_ep::verify::RunAndCompare(spec, inputs, verify);  // fills the expert outputs
  if (!mismatch.empty()) {
    std::printf("VERIFY FAILED: %s\n", mismatch.c_str());
    return 1;
  }
  std::printf("  verified: dispatch outputs and combine results bit-identical to the reference on every rank\n");
  const std::vector<RankTimes> times = TimeThreadRanks(
      o, GroupOptions{{}, 0, "moe-ep run"}, [&](int r) { return InputsOf(inputs, r); }, false);
  PrintTimings(o, times);
  return 0;
}

int RunJobOverProcesses(const JobOptions& o, std::vector<std::string> args) {
  const uint64_t seed = SeedOr(o.seed);
  std::printf("moe-ep run: %s\n", moe_ep::verify::Describe(SpecOf(o)).c_str());
  std::printf(
      "  transport: processes (%d ranks, one process each, over shared memory; x and expert outputs in %s; %d "
      "worker thread%s each), kernels: %s, seed %llu\n",
      o.ranks, o.private_inputs ? "private memory" : "the shared heap", ops::DefaultThreads(o.ranks),
      ops::DefaultThreads(o.ranks) == 1 ? "" : "s", kernels::IsaName(kernels::ActiveIsa()),
      static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  const ResultsDir results;
  args.insert(args.begin(), {SelfExecutable(), "run"});
  if (!o.seed) args.insert(args.end(), {"--seed", std::to_string(seed)});  // every rank draws the same inputs
  setenv(kResultsDirVariable, results.path().c_str(), 1);  // NOLINT(concurrency-mt-unsafe): no threads yet
  const int status = Launch(LaunchOptions{o.ranks, args, /*end_on_failure=*/true});
  unsetenv(kResultsDirVariable);  // NOLINT(concurrency-mt-unsafe)
  // The launcher named the failed rank and its status; a signal it handed on ends this process too (main).
  if (status != 0) return status == kBadUsageExitCode ? status : 1;
  std::printf("  verified: every rank's dispatch outputs and combine results bit-identical to the reference\n");
  const std::vector<RankTimes> times = ReadRankTimes(results.path(), "run", o.ranks);
  PrintTimings(o, times);
  return 0;
}

std::optional<std::string> ProcessRankResultsDir() { return env::Text(kResultsDirVariable); }

int RunJobAsProcessRank(const JobOptions& o, const std::string& results_dir) {
  Group group = JoinProcessGroup(GroupOptions{{}, 0, "moe-ep run"});
  const int rank = group.rank();
  VerifiedJob job = MakeVerifiedJob(o, o.seed);
  const std::string mismatch = VerifyRank(job, rank, group, !o.private_inputs);
  if (!mismatch.empty()) {
    std::printf("VERIFY FAILED: %s\n", mismatch.c_str());
    return 1;
  }
  std::printf("verified: outputs equal to the reference\n");
  std::fflush(stdout);
  RankJob timed(o, rank, InputsOf(job.inputs, rank), group);
  WriteRankTimes(results_dir, "run", rank, timed.Time([&] { timed.LineUp(); }, false));
  return 0;
}

}  // namespace moe_ep::tools
