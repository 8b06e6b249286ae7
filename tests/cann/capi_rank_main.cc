// One rank of a C API job whose ranks are processes (started by `moe-ep launch`, which sets MOE_EP_RANK,
// MOE_EP_WORLD_SIZE and MOE_EP_RENDEZVOUS). Rank 0 makes the HCCL root info and writes its bytes to
// /tmp/moe_ep.<MOE_EP_RENDEZVOUS>.root (a temporary name, then rename: readers never see half a file);
// the others wait for the file. Every process: aclInit, aclrtSetDevice(0) (each process has its own
// virtual devices), HcclCommInitRootInfo, then a DispatchV2 + CombineV2 and a DispatchV3 + CombineV3 on
// configurations drawn from SEED (the same in every process), each compared with the reference for this
// rank. Prints "rank R OK" and exits 0, or prints what went wrong and exits 1.
//
//   capi_rank_main rootinfo SEED
//   capi_rank_main mpi SEED        under mpirun: the multi-host CANN pattern instead of the file: MPI_Init,
//                                  rank 0 makes the root info, MPI_Bcast hands it to every rank, each sets
//                                  its device to its local rank on its host
//   capi_rank_main mpi-seed-sample SEED H BS
//                                  under mpirun with 2E processes: the DispatchV2 seed sample's configuration
//                                  (EP E x TP 2, world rank = ep * 2 + tp, one shared expert rank, one MoE
//                                  expert on each other rank, K 3, globalBs = BS * E, groupListType 1, the A2
//                                  parameters passed) at hidden size H and BS tokens per rank. Each EP group
//                                  (one per TP rank) and each TP pair gets its root info from its rank 0 over
//                                  MPI_Bcast on an MPI_Comm_split of the world; each process sets its device
//                                  to its local rank and joins both. Round 1 runs the sample exactly (V2, bf16,
//                                  no quantization); round 2 runs V3 with the data type, quantization, smooth
//                                  scales and active mask drawn from SEED. Each rank compares every output
//                                  with the reference bit for bit.
//   capi_rank_main mpi-wrong-join size|rank
//                                  under mpirun: the last rank passes HcclCommInitRootInfo twice the group's
//                                  size (size), or rank 0 (rank: two ranks claim it); every rank must fail at
//                                  once naming it (the root refuses the group and tells the others why), not
//                                  after HCCL_CONNECT_TIMEOUT (set to 60 s, past which a member would fail
//                                  with a timeout instead) nor hang in MPI. Prints "rank R: failed ... with:
//                                  <error> OK" when it does.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include "cann/capi_support.h"
#ifdef MOE_EP_TEST_MPI
#include <mpi.h>
#endif

namespace {

using moe_ep::capi_testing::CapiCase;
using moe_ep::capi_testing::RecentErrMsg;

int64_t Uniform(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

// A configuration of `world` ranks within the A3 limits, drawn from `rng`, with H from min_hidden up.
CapiCase DrawCase(std::mt19937_64& rng, int world, bool v3, int min_hidden) {
  CapiCase c;
  c.use_v3 = v3;
  auto& cfg = c.spec.config;
  cfg.ep_world_size = world;
  const bool shared = world > 2 && Uniform(rng, 0, 1) == 1;
  cfg.shared_expert_num = shared ? 1 : 0;
  cfg.shared_expert_rank_num = shared ? 1 : 0;
  cfg.moe_expert_num = static_cast<int>(Uniform(rng, 1, 3)) * (world - cfg.shared_expert_rank_num);
  cfg.top_k = static_cast<int>(Uniform(rng, 1, std::min(cfg.moe_expert_num, 6)));
  cfg.hidden = static_cast<int>(min_hidden + 32 * Uniform(rng, 0, 32));
  cfg.dtype = Uniform(rng, 0, 1) ? moe_ref::DType::kFp16 : moe_ref::DType::kBf16;
  cfg.quant_mode = Uniform(rng, 0, 1) ? 2 : 0;
  cfg.comm_quant_mode = Uniform(rng, 0, 1) ? 2 : 0;
  cfg.expert_token_nums_type = static_cast<int>(Uniform(rng, 0, 1));
  c.spec.bs = Uniform(rng, 1, 8);
  c.spec.smooth_scales = cfg.quant_mode == 2 && Uniform(rng, 0, 1) == 1;
  c.spec.shared_expert_x = !shared && Uniform(rng, 0, 1) == 1;  // only without shared-expert ranks
  // Either unequal Bs (globalBs set) or a mask: A3 wants globalBs <= Bs * E with xActiveMask.
  const int64_t variant = Uniform(rng, 0, 3);
  c.spec.unequal_bs = variant == 3;
  if (c.spec.unequal_bs) cfg.global_bs = c.spec.bs * world;
  c.spec.mask =
      variant == 1 ? moe_ref::MaskKind::kTokens : (variant == 2 ? moe_ref::MaskKind::kPairs : moe_ref::MaskKind::kNone);
  return c;
}

int EnvInt(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoi(v) : -1;
}

// Rank 0: writes the root info's bytes under `path` (temporary name, then rename).
bool PublishRoot(const HcclRootInfo& root, const std::string& path) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(root.internal, sizeof(root.internal));
    if (!f.flush()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// Other ranks: waits (bounded) until the file appears with its whole contents.
bool ReadRoot(HcclRootInfo& root, const std::string& path, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream f(path, std::ios::binary);
    if (f && f.read(root.internal, sizeof(root.internal)) && f.gcount() == sizeof(root.internal)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// How the ranks share the root info: through a file (moe-ep launch) or MPI_Bcast (mpirun).
enum class RootShare { kFile, kMpi };

int RootInfoJob(uint64_t seed, RootShare share) {
  int rank = EnvInt("MOE_EP_RANK"), world = EnvInt("MOE_EP_WORLD_SIZE"), device = 0;
  const char* rendezvous = std::getenv("MOE_EP_RENDEZVOUS");
#ifdef MOE_EP_TEST_MPI
  if (share == RootShare::kMpi) {
    MPI_Init(nullptr, nullptr);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    device = std::max(EnvInt("OMPI_COMM_WORLD_LOCAL_RANK"), 0);  // as multi-node CANN programs do
    rendezvous = "mpi";
  }
#endif
  if (rank < 0 || world < 2 || rank >= world || rendezvous == nullptr) {
    std::printf("rank %d FAIL: run under `moe-ep launch -n N` or mpirun (N >= 2)\n", rank);
    return 2;
  }
  const std::string path = std::string("/tmp/moe_ep.") + rendezvous + ".root";
  setenv("MOE_EP_TIMEOUT_MS", "20000", 0);  // a hang becomes a failure
  setenv("HCCL_CONNECT_TIMEOUT", "30", 0);
  if (aclInit(nullptr) != ACL_SUCCESS) {
    std::printf("rank %d FAIL: aclInit: %s\n", rank, RecentErrMsg().c_str());
    return 1;
  }
  if (aclrtSetDevice(device) != ACL_SUCCESS) {
    std::printf("rank %d FAIL: aclrtSetDevice(%d): %s\n", rank, device, RecentErrMsg().c_str());
    return 1;
  }
  HcclRootInfo root{};
  if (share == RootShare::kMpi) {
#ifdef MOE_EP_TEST_MPI
    if (rank == 0 && HcclGetRootInfo(&root) != HCCL_SUCCESS) {
      std::printf("rank 0 FAIL: HcclGetRootInfo: %s\n", RecentErrMsg().c_str());
      return 1;
    }
    MPI_Bcast(root.internal, sizeof(root.internal), MPI_CHAR, 0, MPI_COMM_WORLD);
#endif
  } else if (rank == 0) {
    if (HcclGetRootInfo(&root) != HCCL_SUCCESS || !PublishRoot(root, path)) {
      std::printf("rank 0 FAIL: cannot make or publish the root info at %s: %s\n", path.c_str(),
                  RecentErrMsg().c_str());
      return 1;
    }
    // For the test that started the job: what to look for afterwards.
    std::printf("root info file %s, token %s\n", path.c_str(), moe_ep::capi_testing::RootInfoToken(root).c_str());
    std::fflush(stdout);
  } else if (!ReadRoot(root, path, std::chrono::seconds(30))) {
    std::printf("rank %d FAIL: no root info at %s after 30 s\n", rank, path.c_str());
    return 1;
  }
  HcclComm comm = nullptr;
  const HcclResult joined = HcclCommInitRootInfo(world, &root, rank, &comm);
  const std::string join_message = RecentErrMsg();
  if (rank == 0 && share == RootShare::kFile) std::remove(path.c_str());  // all have read it once all joined
  if (joined != HCCL_SUCCESS) {
    std::printf("rank %d FAIL: HcclCommInitRootInfo returned %d: %s\n", rank, joined, join_message.c_str());
    return 1;
  }
  uint32_t id = 999, size = 999;
  if (HcclGetRankId(comm, &id) != HCCL_SUCCESS || HcclGetRankSize(comm, &size) != HCCL_SUCCESS ||
      id != static_cast<uint32_t>(rank) || size != static_cast<uint32_t>(world)) {
    std::printf("rank %d FAIL: HcclGetRankId / HcclGetRankSize say %u of %u\n", rank, id, size);
    return 1;
  }

  std::mt19937_64 rng(seed);
  int status = 0;
  for (bool v3 : {false, true}) {
    // Across simulated hosts the test checks that the rows crossed the links (more bytes than MPI's own
    // set-up): rows of 8 KiB and more make even 1 token with top-1 move enough.
    const CapiCase c = DrawCase(rng, world, v3, share == RootShare::kMpi ? 4096 : 1024);
    moe_ep::verify::ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
    const auto expected = moe_ep::capi_testing::ExpectedOutputs(c, inputs);
    const auto outcome = moe_ep::capi_testing::RunCapiRank(c, inputs, rank, comm, expected);
    if (!outcome.Summary().empty()) {
      std::printf("rank %d FAIL (seed %llu, %s): %s\n", rank, static_cast<unsigned long long>(seed),
                  moe_ep::capi_testing::Describe(c).c_str(), outcome.Summary().c_str());
      status = 1;
      break;
    }
  }
  if (HcclCommDestroy(comm) != HCCL_SUCCESS) {
    std::printf("rank %d FAIL: HcclCommDestroy: %s\n", rank, RecentErrMsg().c_str());
    status = 1;
  }
  aclrtResetDevice(device);
  aclFinalize();
#ifdef MOE_EP_TEST_MPI
  if (share == RootShare::kMpi) MPI_Finalize();
#endif
  if (status == 0) std::printf("rank %d OK\n", rank);
  return status;
}

#ifdef MOE_EP_TEST_MPI
// mpi-wrong-join (see the top of the file).
int WrongJoinJob(const std::string& kind) {
  MPI_Init(nullptr, nullptr);
  int rank = -1, world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  setenv("HCCL_CONNECT_TIMEOUT", "60", 1);
  HcclRootInfo root{};
  if (aclInit(nullptr) != ACL_SUCCESS || aclrtSetDevice(std::max(EnvInt("OMPI_COMM_WORLD_LOCAL_RANK"), 0)) != 0 ||
      (rank == 0 && HcclGetRootInfo(&root) != HCCL_SUCCESS)) {
    std::printf("rank %d FAIL: set-up: %s\n", rank, RecentErrMsg().c_str());
    return 1;
  }
  MPI_Bcast(root.internal, sizeof(root.internal), MPI_CHAR, 0, MPI_COMM_WORLD);
  const bool wrong = rank == world - 1;
  const bool size = kind == "size";
  HcclComm comm = nullptr;
  const auto start = std::chrono::steady_clock::now();
  const HcclResult joined =
      HcclCommInitRootInfo(wrong && size ? 2 * world : world, &root, wrong && !size ? 0 : rank, &comm);
  const std::string message = RecentErrMsg();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string named = size ? "world rank " + std::to_string(world - 1) + " was given a group of " +
                                       std::to_string(2 * world) + " ranks, the root one of " + std::to_string(world)
                                 : std::string("both joined as group rank 0");
  const bool ok = joined != HCCL_SUCCESS && message.find(named) != std::string::npos && seconds < 30;
  std::printf("rank %d: failed after %.1f s with: %s %s\n", rank, seconds, message.c_str(), ok ? "OK" : "FAIL");
  std::fflush(stdout);
  MPI_Finalize();
  return ok ? 0 : 1;
}

// The seed sample's configuration across processes (see the top of the file); world = 2E.
int SeedSampleJob(uint64_t seed, int hidden, int64_t bs) {
  MPI_Init(nullptr, nullptr);
  int world_rank = -1, world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const int tp_size = 2, ep_size = world / tp_size;
  const int ep_rank = world_rank / tp_size, tp_rank = world_rank % tp_size;  // the sample's device layout
  const int device = std::max(EnvInt("OMPI_COMM_WORLD_LOCAL_RANK"), 0);
  const int g = tp_rank * ep_size + ep_rank;  // the rank's index in the scenario's inputs
  const auto fail = [&](const std::string& what) {
    std::printf("rank %d (ep %d, tp %d) FAIL (seed %llu): %s\n", world_rank, ep_rank, tp_rank,
                static_cast<unsigned long long>(seed), what.c_str());
    std::fflush(stdout);
    return 1;
  };
  if (world % tp_size != 0 || ep_size < 2) return fail("needs 2E processes, E >= 2; got " + std::to_string(world));
  setenv("MOE_EP_TIMEOUT_MS", "20000", 0);  // a hang becomes a failure
  setenv("HCCL_CONNECT_TIMEOUT", "30", 0);
  if (aclInit(nullptr) != ACL_SUCCESS) return fail("aclInit: " + RecentErrMsg());
  if (aclrtSetDevice(device) != ACL_SUCCESS) {
    return fail("aclrtSetDevice(" + std::to_string(device) + "): " + RecentErrMsg());
  }
  // EP group t: the ranks of TP rank t, by EP rank; TP pair e: EP rank e's two ranks, by TP rank.
  MPI_Comm ep_mpi = MPI_COMM_NULL, tp_mpi = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, tp_rank, ep_rank, &ep_mpi);
  MPI_Comm_split(MPI_COMM_WORLD, ep_rank, tp_rank, &tp_mpi);
  HcclRootInfo ep_root{}, tp_root{};
  if (ep_rank == 0 && HcclGetRootInfo(&ep_root) != HCCL_SUCCESS) return fail("HcclGetRootInfo (EP): " + RecentErrMsg());
  if (tp_rank == 0 && HcclGetRootInfo(&tp_root) != HCCL_SUCCESS) return fail("HcclGetRootInfo (TP): " + RecentErrMsg());
  MPI_Bcast(ep_root.internal, sizeof(ep_root.internal), MPI_CHAR, 0, ep_mpi);
  MPI_Bcast(tp_root.internal, sizeof(tp_root.internal), MPI_CHAR, 0, tp_mpi);
  MPI_Comm_free(&ep_mpi);
  MPI_Comm_free(&tp_mpi);
  HcclComm ep = nullptr, tp = nullptr;
  if (const HcclResult r = HcclCommInitRootInfo(ep_size, &ep_root, ep_rank, &ep); r != HCCL_SUCCESS) {
    return fail("HcclCommInitRootInfo (EP group " + std::to_string(tp_rank) + ") returned " + std::to_string(r) + ": " +
                RecentErrMsg());
  }
  if (const HcclResult r = HcclCommInitRootInfo(tp_size, &tp_root, tp_rank, &tp); r != HCCL_SUCCESS) {
    return fail("HcclCommInitRootInfo (TP pair " + std::to_string(ep_rank) + ") returned " + std::to_string(r) + ": " +
                RecentErrMsg());
  }
  uint32_t id = 999, size = 999, tp_id = 999, tp_size_got = 999;
  if (HcclGetRankId(ep, &id) != HCCL_SUCCESS || HcclGetRankSize(ep, &size) != HCCL_SUCCESS ||
      HcclGetRankId(tp, &tp_id) != HCCL_SUCCESS || HcclGetRankSize(tp, &tp_size_got) != HCCL_SUCCESS ||
      id != static_cast<uint32_t>(ep_rank) || size != static_cast<uint32_t>(ep_size) ||
      tp_id != static_cast<uint32_t>(tp_rank) || tp_size_got != static_cast<uint32_t>(tp_size)) {
    return fail("HcclGetRankId / HcclGetRankSize say EP " + std::to_string(id) + " of " + std::to_string(size) +
                ", TP " + std::to_string(tp_id) + " of " + std::to_string(tp_size_got));
  }

  // The seed sample, scaled: E ranks, rank 0 the shared expert's, one MoE expert on each of the others.
  CapiCase sample = moe_ep::capi_testing::SeedSampleCase();
  auto& cfg = sample.spec.config;
  cfg.ep_world_size = ep_size;
  cfg.moe_expert_num = ep_size - cfg.shared_expert_rank_num;
  cfg.top_k = std::min(cfg.top_k, cfg.moe_expert_num);
  cfg.hidden = hidden;
  sample.spec.bs = bs;
  cfg.global_bs = bs * ep_size;
  std::mt19937_64 rng(seed);
  int status = 0;
  for (int round = 0; round < 2 && status == 0; ++round) {
    CapiCase c = sample;
    if (round == 1) {  // V3, with what the sample leaves at its defaults drawn
      c.use_v3 = true;
      auto& k = c.spec.config;
      k.dtype = Uniform(rng, 0, 1) ? moe_ref::DType::kFp16 : moe_ref::DType::kBf16;
      k.quant_mode = Uniform(rng, 0, 1) ? 2 : 0;
      c.spec.smooth_scales = k.quant_mode == 2 && Uniform(rng, 0, 1) == 1;
      const int64_t mask = Uniform(rng, 0, 2);
      c.spec.mask = mask == 1   ? moe_ref::MaskKind::kTokens
                    : mask == 2 ? moe_ref::MaskKind::kPairs
                                : moe_ref::MaskKind::kNone;
    }
    if (world_rank == 0) std::printf("round %d: %s\n", round + 1, moe_ep::capi_testing::Describe(c).c_str());
    moe_ep::verify::ScenarioInputs inputs = moe_ep::verify::MakeInputs(c.spec, rng);
    const auto expected = moe_ep::capi_testing::ExpectedOutputs(c, inputs);
    const std::string failure = moe_ep::capi_testing::RunCapiCaseRank(c, inputs, expected, ep_rank, tp_rank, ep, tp);
    if (!failure.empty()) {
      status = fail("round " + std::to_string(round + 1) + " (" + moe_ep::capi_testing::Describe(c) + "): " + failure);
    }
  }
  if (HcclCommDestroy(tp) != HCCL_SUCCESS) status = fail("HcclCommDestroy (TP): " + RecentErrMsg());
  if (HcclCommDestroy(ep) != HCCL_SUCCESS) status = fail("HcclCommDestroy (EP): " + RecentErrMsg());
  aclrtResetDevice(device);
  aclFinalize();
  MPI_Finalize();
  if (status == 0) {
    std::printf("rank %d (ep %d, tp %d, global %d) of the seed sample's EP %d x TP 2 OK\n", world_rank, ep_rank,
                tp_rank, g, ep_size);
  }
  return status;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc >= 2 ? argv[1] : "";
  const bool usage_ok = ((mode == "rootinfo" || mode == "mpi") && argc == 3) ||
                        (mode == "mpi-seed-sample" && argc == 5) || (mode == "mpi-wrong-join" && argc == 3);
  if (!usage_ok) {
    std::fprintf(stderr,
                 "usage: moe-ep launch -n N -- %s rootinfo SEED\n       mpirun -np N %s mpi SEED\n"
                 "       mpirun -np 2E %s mpi-seed-sample SEED H BS\n       mpirun -np N %s mpi-wrong-join size|rank\n",
                 argv[0], argv[0], argv[0], argv[0]);
    return 2;
  }
#ifndef MOE_EP_TEST_MPI
  if (mode != "rootinfo") {
    std::fprintf(stderr, "%s was built without MPI\n", argv[0]);
    return 2;
  }
#else
  if (mode == "mpi-seed-sample") {
    return SeedSampleJob(std::strtoull(argv[2], nullptr, 10), std::atoi(argv[3]), std::atoll(argv[4]));
  }
  if (mode == "mpi-wrong-join") return WrongJoinJob(argv[2]);
#endif
  return RootInfoJob(std::strtoull(argv[2], nullptr, 10), mode == "mpi" ? RootShare::kMpi : RootShare::kFile);
}
