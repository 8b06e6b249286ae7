// One rank of a process job (started by `moe-ep launch`): joins the job's group over shared memory and
// runs random scenarios or a long stress loop, comparing its own outputs with the reference bit for bit.
// Every rank draws the same configurations and inputs from the same seed, so each can compute the
// reference for the whole job and check its own part. Exit status 0 = all equal.
//
//   scenario_rank property SEED CONFIGS     random configurations using every process (E = world size,
//                                           or EP groups of world/2 with TP pairs across them)
//   scenario_rank stress SEED ROUNDS        one small configuration, ROUNDS rounds of fresh routing and x;
//                                           also checks that resident memory stays flat
//   scenario_rank kill SEED ROUNDS          rank VICTIM (env) SIGKILLs itself at round 3; the survivors must
//                                           fail naming it, probe, reset, then run ROUNDS scaled-down rounds
//   scenario_rank stop SEED ROUNDS          rank VICTIM SIGSTOPs itself at round 3; rank 0 sends SIGCONT after
//                                           its deadline error, and the victim's round must time out; all reset
//                                           and run ROUNDS full-group rounds
//   scenario_rank leave SEED ROUNDS         rank VICTIM leaves, alive, after round 2; the others run ROUNDS
//                                           rounds scaled down without it (no timeout, no reset)
//   scenario_rank_failed_send failed-send SEED ROUNDS
//                                           (under mpirun) MPI fails one of rank VICTIM's sends at round 3; all
//                                           reset and run ROUNDS full-group rounds
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "api/group_impl.h"
#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/ops.h"
#include "support/freed_memory.h"
#ifdef MOE_EP_FAILED_REQUEST_HOOK
#include "hosts/failed_request_hook.h"
#endif
#include "verify/scenario.h"

namespace {

using moe_ep::verify::ScenarioInputs;
using moe_ep::verify::ScenarioSpec;

// Runs one round on this rank and checks it; returns "" or the first mismatch. With `elastic` the rank
// runs as survivor `rank` of the scaled-down job that `spec` describes.
std::string Round(const ScenarioSpec& spec, ScenarioInputs& inputs, moe_ep::Group& group,
                  const moe_ep::verify::ElasticRun* elastic = nullptr, int rank = -1, moe_ep::Group* tp = nullptr,
                  bool peer_visible = false) {
  const auto expected = moe_ref::Dispatch(spec.config, inputs.dispatch);
  moe_ep::verify::FillExpertOutputs(spec, expected, inputs);
  const auto expected_combine = spec.add_rms_norm
                                    ? moe_ref::CombineAddRmsNorm(spec.config, inputs.dispatch, inputs.combine)
                                    : moe_ref::Combine(spec.config, inputs.dispatch, inputs.combine);
  if (rank < 0) rank = group.rank();
  const auto result = moe_ep::verify::RunScenarioRank(spec, inputs, rank, group, tp, elastic, peer_visible);
  return moe_ep::verify::CompareScenarioRank(spec, rank, expected[rank], expected_combine[rank], result);
}

// Draws random specs until one uses every process: E == world, or E * 2 == world with TP pairs.
ScenarioSpec DrawSpec(std::mt19937_64& rng, int world) {
  for (;;) {
    ScenarioSpec s = moe_ep::verify::RandomSpec(rng, world, 4096, 32);
    if (s.config.ep_world_size * s.config.tp_world_size == world) return s;
  }
}

long ResidentKb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

// With `peer_visible`, x and the expert outputs are in the shared heap, where peers read them in place.
int Property(moe_ep::Group& group, uint64_t seed, int configs, bool peer_visible) {
  std::mt19937_64 rng(seed);
  for (int i = 0; i < configs; ++i) {
    const ScenarioSpec spec = DrawSpec(rng, group.size());
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(spec, rng);
    if (group.rank() == 0) std::printf("config %d: %s\n", i, moe_ep::verify::Describe(spec).c_str());
    std::string mismatch;
    if (spec.config.tp_world_size == 2) {  // EP groups of E ranks (one per TP rank) and TP pairs across them
      const auto job = moe_ep::ReadLaunchEnvironment();
      const int e = spec.config.ep_world_size, tp_rank = job.rank / e, ep_rank = job.rank % e;
      std::vector<int> ep_members, tp_members = {ep_rank, ep_rank + e};
      for (int r = 0; r < e; ++r) ep_members.push_back(tp_rank * e + r);
      moe_ep::Group ep = moe_ep::JoinProcessGroup(job, ep_members);
      moe_ep::Group tp = moe_ep::JoinProcessGroup(job, tp_members);
      mismatch = Round(spec, inputs, ep, nullptr, job.rank, &tp, peer_visible);
    } else {
      mismatch = Round(spec, inputs, group, nullptr, -1, nullptr, peer_visible);
    }
    if (!mismatch.empty()) {
      std::printf("MISMATCH config %d (%s): %s\n", i, moe_ep::verify::Describe(spec).c_str(), mismatch.c_str());
      return 1;
    }
  }
  std::printf("rank %d: %d configurations equal to the reference\n", group.rank(), configs);
  return 0;
}

// A small configuration, `rounds` rounds of fresh routing, weights and tokens.
int Stress(moe_ep::Group& group, uint64_t seed, int rounds) {
  std::mt19937_64 rng(seed);
  ScenarioSpec spec;
  auto& c = spec.config;
  c.ep_world_size = group.size();
  c.moe_expert_num = 2 * group.size();
  c.top_k = 4;
  // STRESS_HIDDEN=H: larger rows (4096: an x of 128 KiB in private memory, which dispatch stages to be pulled).
  c.hidden = std::getenv("STRESS_HIDDEN") ? std::atoi(std::getenv("STRESS_HIDDEN")) : 64;
  if (c.hidden <= 0 || c.hidden % 32 != 0) {
    std::printf("STRESS_HIDDEN must be a positive multiple of 32, not %s\n", std::getenv("STRESS_HIDDEN"));
    return 2;
  }
  spec.bs = 16;
  ScenarioInputs inputs = moe_ep::verify::MakeInputs(spec, rng);
  long rss_early = 0;
  for (int round = 0; round < rounds; ++round) {
    if (round > 0) {
      moe_ep::verify::RerouteInputs(spec, rng, inputs);  // x drawn again too: a stale row shows up
    }
    const std::string mismatch = Round(spec, inputs, group);
    if (!mismatch.empty()) {
      std::printf("MISMATCH round %d: %s\n", round, mismatch.c_str());
      return 1;
    }
    if (round == rounds / 10) rss_early = ResidentKb();
  }
  const long rss_late = ResidentKb();
  std::printf("rank %d: %d rounds equal to the reference; resident %ld kB at round %d, %ld kB at the end\n",
              group.rank(), rounds, rss_early, rounds / 10, rss_late);
#ifndef MOE_EP_SANITIZED  // sanitizer allocators keep growing quarantines: resident size means nothing there
  if (rss_late > rss_early + 16 * 1024) {
    std::printf("MEMORY GREW by %ld kB\n", rss_late - rss_early);
    return 1;
  }
#endif
  return 0;
}

constexpr int kFailRound = 3;

// The job of the fault modes: one shared expert on rank 0, two experts per MoE rank, top-4.
ScenarioSpec FaultSpec(int world) {
  ScenarioSpec spec;
  auto& c = spec.config;
  c.ep_world_size = world;
  c.shared_expert_num = 1;
  c.shared_expert_rank_num = 1;
  c.moe_expert_num = 2 * (world - 1);
  c.top_k = 4;
  c.hidden = 256;
  spec.bs = 8;
  return spec;
}

int Victim() { return std::getenv("VICTIM") ? std::atoi(std::getenv("VICTIM")) : 5; }

// Where the stopped victim leaves its pid for rank 0: named after the job (moe-ep launch's rendezvous, or
// under mpirun its job id; simulated hosts share /tmp and the pid space).
std::string PidFile() {
  const char* job = std::getenv("MOE_EP_RENDEZVOUS");
  if (job == nullptr) job = std::getenv("OMPI_MCA_ess_base_jobid");
  return std::string("/tmp/moe_ep.") + (job != nullptr ? job : "job") + ".victim";
}

// Rounds before the fault must match the reference; the fault round must fail on every other rank
// with a deadline error naming the victim, within the deadline. Returns 0 when all that holds.
int RunUntilFault(moe_ep::Group& group, const ScenarioSpec& spec, std::mt19937_64& rng, bool stop) {
  for (int round = 0; round <= kFailRound; ++round) {
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(spec, rng);
    if (round == kFailRound && group.rank() == Victim()) {
      std::printf("victim: %s at round %d\n", stop ? "stopping" : "killing myself", round);
      std::fflush(stdout);
      if (!stop) kill(getpid(), SIGKILL);
      std::ofstream(PidFile()) << getpid();
      raise(SIGSTOP);
      // Continued once the others have failed this round and are resetting: its dispatch may find what they sent
      // before they gave up, but none of them runs this round's combine, so the round must end at a deadline.
      try {
        Round(spec, inputs, group);
        std::printf("FAIL: the stopped victim's round %d succeeded after the others had given it up\n", round);
        return 1;
      } catch (const moe_ep::TimeoutError& e) {
        std::printf("victim: round %d failed after the stall: %s\n", round, e.what());
      } catch (const moe_ep::Error& e) {
        std::printf("FAIL: the stopped victim's round %d failed with no deadline error: %s\n", round, e.what());
        return 1;
      }
      return 0;
    }
    const auto start = std::chrono::steady_clock::now();
    try {
      const std::string mismatch = Round(spec, inputs, group);
      if (round == kFailRound) {
        std::printf("FAIL: round %d succeeded without the victim\n", round);
        return 1;
      }
      if (!mismatch.empty()) {
        std::printf("MISMATCH round %d: %s\n", round, mismatch.c_str());
        return 1;
      }
    } catch (const moe_ep::TimeoutError& e) {
      const auto waited = std::chrono::steady_clock::now() - start;
      const auto& missing = e.missing_ranks();
      const bool named = std::find(missing.begin(), missing.end(), Victim()) != missing.end();
      std::printf("round %d failed after %lld ms: %s\n", round,
                  static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()),
                  e.what());
      if (round != kFailRound || !named || waited > group.timeout() + std::chrono::seconds(2)) {
        std::printf("FAIL: expected a timely deadline error naming rank %d\n", Victim());
        return 1;
      }
      const auto failed = group.failed_ranks();
      if (std::find(failed.begin(), failed.end(), Victim()) == failed.end()) {
        std::printf("FAIL: the group does not remember rank %d as failed\n", Victim());
        return 1;
      }
    }
  }
  return 0;
}

// A survivor that keeps probing (as an elastic service does) finds the dead rank gone every time, and does not
// pile up messages for it: on the hosts transport a send to a dead rank never finishes, and once one has been
// under way for 100 ms later records wait in one message; 50 probes of 20 ms leave a handful under way, not 50.
int ProbeOften(moe_ep::Group& group, int probes) {
  for (int i = 0; i < probes; ++i) {
    if (moe_ep::ProbeReachable(group, std::chrono::milliseconds(20))[Victim()] != 0) {
      std::printf("FAIL: probe %d reached the dead rank %d\n", i, Victim());
      return 1;
    }
  }
  const std::string state = moe_ep::GroupAccess::Comm(group).window().Describe();
  if (state.empty()) return 0;  // a transport without messages
  const size_t at = state.find(" messages under way");
  if (at == std::string::npos) {
    std::printf("FAIL: the hosts transport does not say how many messages are under way: %s\n", state.c_str());
    return 1;
  }
  const size_t number = state.find_last_of(' ', at - 1) + 1;
  const int under_way = std::atoi(state.c_str() + number);
  if (under_way > 10) {
    std::printf("FAIL: after %d probes %d messages are under way (%s)\n", probes, under_way, state.c_str());
    return 1;
  }
  return 0;
}

// The survivors in `reachable` (they keep their order and roles, each MoE rank its experts) run `rounds` rounds with
// the elasticInfo that says so, each equal to the reference. Returns 0 when all are, with `report` saying so.
int RunScaledDown(moe_ep::Group& group, const ScenarioSpec& spec, const std::vector<int32_t>& reachable,
                  std::mt19937_64& rng, int rounds, std::string* report) {
  const moe_ep::verify::ElasticRun elastic{spec.config, reachable};
  const ScenarioSpec scaled = moe_ep::verify::ScaledDown(spec, reachable);
  const int new_rank = moe_ep::verify::SurvivorRank(reachable, group.rank());
  for (int round = 0; round < rounds; ++round) {
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(scaled, rng);
    const std::string mismatch = Round(scaled, inputs, group, &elastic, new_rank);
    if (!mismatch.empty()) {
      std::printf("MISMATCH scaled-down round %d: %s\n", round, mismatch.c_str());
      return 1;
    }
  }
  *report = "survivor " + std::to_string(group.rank()) + " (now rank " + std::to_string(new_rank) + " of " +
            std::to_string(scaled.config.ep_world_size) + "): " + std::to_string(rounds) +
            " scaled-down rounds equal to the reference";
  return 0;
}

// A survivor's report, once every check passed (`status` 0): a job script ends the job once the survivors said it.
int Reported(int status, const std::string& report) {
  if (status == 0) std::printf("%s\n", report.c_str());
  return status;
}

int Kill(moe_ep::Group& group, uint64_t seed, int rounds) {
  std::mt19937_64 rng(seed);
  const ScenarioSpec spec = FaultSpec(group.size());
  if (int status = RunUntilFault(group, spec, rng, false)) return status;
  // The probe waits its whole time for the dead rank; the survivors come to it within about 2 s of each other (each
  // failed the fault round within the deadline + 2 s of its own start, RunUntilFault, and the previous round's
  // collective lined the starts up), so 5 s keeps a margin.
  const std::vector<int32_t> reachable = moe_ep::ProbeReachable(group, std::chrono::seconds(5));
  for (int r = 0; r < group.size(); ++r) {
    if (reachable[r] != (r == Victim() ? 0 : 1)) {
      std::printf("FAIL: probe says rank %d is %s\n", r, reachable[r] ? "reachable" : "unreachable");
      return 1;
    }
  }
  moe_ep::BufferReset(group, reachable, true);
  std::string report;
  if (int status = RunScaledDown(group, spec, reachable, rng, rounds, &report)) return status;
  return Reported(ProbeOften(group, 50), report);
}

// Rank VICTIM leaves after kFailRound full rounds, alive and never timed out on, and the others go on scaled down
// with an elasticInfo that drops it (a planned scale-down): nothing may still wait for it or send through it.
int Leave(moe_ep::Group& group, uint64_t seed, int rounds) {
  std::mt19937_64 rng(seed);
  const ScenarioSpec spec = FaultSpec(group.size());
  for (int round = 0; round < kFailRound; ++round) {
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(spec, rng);
    if (const std::string mismatch = Round(spec, inputs, group); !mismatch.empty()) {
      std::printf("MISMATCH round %d: %s\n", round, mismatch.c_str());
      return 1;
    }
  }
  if (group.rank() == Victim()) {
    std::printf("rank %d left after %d rounds equal to the reference\n", group.rank(), kFailRound);
    return 0;
  }
  std::vector<int32_t> staying(group.size(), 1);
  staying[Victim()] = 0;
  std::string report;
  return Reported(RunScaledDown(group, spec, staying, rng, rounds, &report), report);
}

int ResetAndGoOn(moe_ep::Group& group, const ScenarioSpec& spec, std::mt19937_64& rng, int rounds, const char* after);

int Stop(moe_ep::Group& group, uint64_t seed, int rounds) {
  std::mt19937_64 rng(seed);
  const ScenarioSpec spec = FaultSpec(group.size());
  if (int status = RunUntilFault(group, spec, rng, true)) return status;
  if (group.rank() != Victim()) {
    // Once every survivor has seen the failure (the probe meets them all), wake the victim: it times
    // out in its round, then joins the reset.
    const std::vector<int32_t> reachable = moe_ep::ProbeReachable(group, std::chrono::seconds(3));
    if (reachable[Victim()] != 0) {
      std::printf("FAIL: the probe reached the stopped rank %d\n", Victim());
      return 1;
    }
  }
  if (group.rank() == 0) {
    std::ifstream pid_file(PidFile());
    pid_t pid = 0;
    pid_file >> pid;
    if (pid <= 0 || kill(pid, SIGCONT) != 0) {
      std::printf("FAIL: cannot continue the victim (pid %d)\n", pid);
      return 1;
    }
    std::remove(PidFile().c_str());
  }
  return ResetAndGoOn(group, spec, rng, rounds, "the stall");
}

// Every rank resets the whole group (the victim may arrive a deadline late) and runs `rounds` full-group rounds, each
// equal to the reference. Returns 0 when all are.
int ResetAndGoOn(moe_ep::Group& group, const ScenarioSpec& spec, std::mt19937_64& rng, int rounds, const char* after) {
  const std::vector<int32_t> everyone(group.size(), 1);
  for (int attempt = 0;; ++attempt) {
    try {
      moe_ep::BufferReset(group, everyone, true);
      break;
    } catch (const moe_ep::TimeoutError& e) {
      if (attempt == 3) {
        std::printf("FAIL: reset never completed: %s\n", e.what());
        return 1;
      }
    }
  }
  for (int round = 0; round < rounds; ++round) {
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(spec, rng);
    const std::string mismatch = Round(spec, inputs, group);
    if (!mismatch.empty()) {
      std::printf("MISMATCH full-group round %d: %s\n", round, mismatch.c_str());
      return 1;
    }
  }
  std::printf("rank %d: %d full-group rounds after %s equal to the reference\n", group.rank(), rounds, after);
  return 0;
}

#ifdef MOE_EP_FAILED_REQUEST_HOOK
// Under mpirun: in round kFailRound MPI finishes one of rank VICTIM's sends in error (failed_request_hook.h; the
// message was delivered all the same). The victim's round must fail with an error naming the rank the send was for;
// the others' may fail only by a deadline naming the victim. Then every rank resets and the group goes on bit-exact:
// the other requests MPI finished in that test were not lost, and no request MPI freed is tested again.
int FailedSend(moe_ep::Group& group, uint64_t seed, int rounds) {
  std::mt19937_64 rng(seed);
  const ScenarioSpec spec = FaultSpec(group.size());
  for (int round = 0; round <= kFailRound; ++round) {
    ScenarioInputs inputs = moe_ep::verify::MakeInputs(spec, rng);
    const bool victim = round == kFailRound && group.rank() == Victim();
    if (victim) moe_ep::testing::FailNextSend();
    try {
      const std::string mismatch = Round(spec, inputs, group);
      if (victim) {
        std::printf("FAIL: the victim's round succeeded (a send reported failed to rank %d)\n",
                    moe_ep::testing::FailedSendPeer());
        return 1;
      }
      if (!mismatch.empty()) {
        std::printf("MISMATCH round %d: %s\n", round, mismatch.c_str());
        return 1;
      }
    } catch (const moe_ep::TimeoutError& e) {
      std::printf("round %d: %s\n", round, e.what());
      const auto& missing = e.missing_ranks();
      if (round != kFailRound || victim || std::find(missing.begin(), missing.end(), Victim()) == missing.end()) {
        std::printf("FAIL: expected a deadline error naming rank %d only in the victim's round\n", Victim());
        return 1;
      }
    } catch (const moe_ep::Error& e) {
      std::printf("round %d: %s\n", round, e.what());
      const std::string lost = "MPI_Testsome failed: a message to rank " +
                               std::to_string(moe_ep::testing::FailedSendPeer()) + " of group 'moe_ep' may be lost (";
      if (!victim || std::string(e.what()).find(lost) == std::string::npos) {
        std::printf("FAIL: expected the victim alone to fail, naming the lost message (\"%s\")\n", lost.c_str());
        return 1;
      }
    }
  }
  return ResetAndGoOn(group, spec, rng, rounds, "the failed send");
}
#endif

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && !(argc == 5 && std::string(argv[4]) == "heap")) {
    std::fprintf(stderr, "usage: %s property|stress|kill|stop|leave SEED COUNT [heap] (run under moe-ep launch)\n",
                 argv[0]);
    return 2;
  }
  moe_ep::testing::KeepFreedMemory();
  const bool peer_visible = argc == 5;  // property: inputs in the shared heap
  const std::string mode = argv[1];
  const uint64_t seed = std::strtoull(argv[2], nullptr, 10);
  const int count = std::atoi(argv[3]);
  // The job's token, so the test judges only what this job left in /dev/shm and /tmp (other jobs run
  // beside it under ctest -j).
  if (const char* rank = std::getenv("MOE_EP_RANK"); rank && std::string(rank) == "0") {
    std::printf("rendezvous %s\n", std::getenv("MOE_EP_RENDEZVOUS"));
    std::fflush(stdout);
  }
  try {
    moe_ep::Group group = moe_ep::JoinProcessGroup();
    if (mode == "property") return Property(group, seed, count, peer_visible);
    if (mode == "stress") return Stress(group, seed, count);
    if (mode == "kill") return Kill(group, seed, count);
    if (mode == "stop") return Stop(group, seed, count);
    if (mode == "leave") return Leave(group, seed, count);
#ifdef MOE_EP_FAILED_REQUEST_HOOK
    if (mode == "failed-send") return FailedSend(group, seed, count);
#endif
    std::fprintf(stderr, "unknown mode '%s'\n", mode.c_str());
    return 2;
  } catch (const moe_ep::Error& e) {
    std::printf("ERROR %d: %s\n", static_cast<int>(e.code()), e.what());
    return 1;
  }
}
