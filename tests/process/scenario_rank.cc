// One rank of a process job (started by `moe-ep launch`): joins the job's group over shared memory and
// runs random scenarios or a long stress loop, comparing its own outputs with the reference bit for bit.
// Every rank draws the same configurations and inputs from the same seed, so each can compute the
// reference for the whole job and check its own part. Exit status 0 = all equal.
//
//   scenario_rank property SEED CONFIGS     random configurations (E = the job's world size)
//   scenario_rank stress SEED ROUNDS        one small configuration, ROUNDS rounds of fresh routing;
//                                           also checks that resident memory stays flat
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "support/scenario.h"

namespace {

using moe_ep::testing::ScenarioInputs;
using moe_ep::testing::ScenarioSpec;

// Runs one round on this rank and checks it; returns "" or the first mismatch.
std::string Round(const ScenarioSpec& spec, ScenarioInputs& inputs, moe_ep::Group& group) {
  const auto expected = moe_ref::Dispatch(spec.config, inputs.dispatch);
  moe_ep::testing::FillExpertOutputs(spec, expected, inputs);
  const auto expected_combine = spec.add_rms_norm ? moe_ref::CombineAddRmsNorm(spec.config, inputs.dispatch, inputs.combine)
                                                  : moe_ref::Combine(spec.config, inputs.dispatch, inputs.combine);
  const int rank = group.rank();
  const auto result = moe_ep::testing::RunScenarioRank(spec, inputs, rank, group, nullptr);
  return moe_ep::testing::CompareScenarioRank(spec, rank, expected[rank], expected_combine[rank], result);
}

// Draws random specs until one has E == world size and no TP (one group of all the job's processes).
ScenarioSpec DrawSpec(std::mt19937_64& rng, int world) {
  for (;;) {
    ScenarioSpec s = moe_ep::testing::RandomSpec(rng, world, 4096, 32);
    if (s.config.ep_world_size == world && s.config.tp_world_size == 1) return s;
  }
}

long ResidentKb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

int Property(moe_ep::Group& group, uint64_t seed, int configs) {
  std::mt19937_64 rng(seed);
  for (int i = 0; i < configs; ++i) {
    const ScenarioSpec spec = DrawSpec(rng, group.size());
    ScenarioInputs inputs = moe_ep::testing::MakeInputs(spec, rng);
    const std::string mismatch = Round(spec, inputs, group);
    if (!mismatch.empty()) {
      std::printf("MISMATCH config %d (%s): %s\n", i, moe_ep::testing::Describe(spec).c_str(), mismatch.c_str());
      return 1;
    }
  }
  std::printf("rank %d: %d configurations equal to the reference\n", group.rank(), configs);
  return 0;
}

// Tokens whose values encode (source rank, token): the expert outputs are a known function of each row,
// so any row that lands in the wrong place, or is torn, shows up in the comparison.
int Stress(moe_ep::Group& group, uint64_t seed, int rounds) {
  std::mt19937_64 rng(seed);
  ScenarioSpec spec;
  auto& c = spec.config;
  c.ep_world_size = group.size();
  c.moe_expert_num = 2 * group.size();
  c.top_k = 4;
  c.hidden = 64;
  spec.bs = 16;
  ScenarioInputs inputs = moe_ep::testing::MakeInputs(spec, rng);
  for (int g = 0; g < group.size(); ++g) {
    for (int64_t t = 0; t < spec.bs; ++t) {
      for (int j = 0; j < c.hidden; ++j) {
        // bf16 of small integers: exact; rank in the high part, token in the low part.
        const float v = static_cast<float>(g * 64 + t) + static_cast<float>(j % 4) * 0.25f;
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        inputs.dispatch[g].x[t * c.hidden + j] = static_cast<uint16_t>(bits >> 16);
      }
    }
  }
  long rss_early = 0;
  for (int round = 0; round < rounds; ++round) {
    if (round > 0) {  // fresh routing and weights; x keeps its encoding
      std::vector<std::vector<uint16_t>> xs;
      for (const auto& d : inputs.dispatch) xs.push_back(d.x);
      moe_ep::testing::RerouteInputs(spec, rng, inputs);
      for (size_t g = 0; g < xs.size(); ++g) inputs.dispatch[g].x = xs[g];
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
  if (rss_late > rss_early + 16 * 1024) {
    std::printf("MEMORY GREW by %ld kB\n", rss_late - rss_early);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s property|stress SEED COUNT (run under moe-ep launch)\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const uint64_t seed = std::strtoull(argv[2], nullptr, 10);
  const int count = std::atoi(argv[3]);
  try {
    moe_ep::Group group = moe_ep::JoinProcessGroup();
    if (mode == "property") return Property(group, seed, count);
    if (mode == "stress") return Stress(group, seed, count);
    std::fprintf(stderr, "unknown mode '%s'\n", mode.c_str());
    return 2;
  } catch (const moe_ep::Error& e) {
    std::printf("ERROR %d: %s\n", static_cast<int>(e.code()), e.what());
    return 1;
  }
}
