// One rank of a 4-rank MPI job (hosts of 2, two-level: MOE_EP_HOSTS_RELAY=1) whose ranks reset their group without
// sync after a round, rank 3 two deadlines (MOE_EP_TIMEOUT_MS) after the others: a reset without sync waits for no
// one, so every other rank's returns before its deadline, the relays' included (a relay once waited there for the end
// marks of the senders it relays for, and failed at its deadline naming rank 3). Then every rank runs a second round,
// whose combined tokens must equal its x (two distinct experts each, their rows returned unchanged, weights 0.5 and
// 0.5). Every rank prints a line ending in OK when that holds.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/mpi.h"
#include "moe_ep/ops.h"

namespace {

constexpr int64_t kTokens = 8, kHidden = 256, kTopK = 2, kExperts = 8;

// A round whose rows differ by rank, token and round (rank r's token t: 16 r + t + 64 round, plus a half in odd
// columns: 8 significant bits, exact in bf16) to experts t + round and t + round + 1; returns whether every combined
// token equals its x (a row left from round 0 would not).
bool RoundTrips(moe_ep::Group& group, int round) {
  const int rank = group.rank();
  std::vector<uint16_t> x(kTokens * kHidden);
  std::vector<int32_t> ids(kTokens * kTopK);
  std::vector<float> weights(kTokens * kTopK, 0.5f);
  for (int64_t t = 0; t < kTokens; ++t) {
    for (int64_t h = 0; h < kHidden; ++h) {
      const float v = static_cast<float>(rank * 16 + t + 64 * round) + static_cast<float>(h % 2) / 2.0f;
      uint32_t bits = 0;
      std::memcpy(&bits, &v, 4);
      x[t * kHidden + h] = static_cast<uint16_t>(bits >> 16);
    }
    ids[t * kTopK] = static_cast<int32_t>((t + round) % kExperts);
    ids[t * kTopK + 1] = static_cast<int32_t>((t + round + 1) % kExperts);
  }
  moe_ep::DispatchOptions options;
  options.experts.moe_expert_num = kExperts;
  const auto result =
      moe_ep::Dispatch(group, moe_ep::TensorView(x.data(), moe_ep::DType::kBf16, {kTokens, kHidden}),
                       moe_ep::TensorView(ids.data(), moe_ep::DType::kInt32, {kTokens, kTopK}), options);
  const moe_ep::Tensor y =
      moe_ep::Combine(group, result.handle, result.expand_x.view(),
                      moe_ep::TensorView(weights.data(), moe_ep::DType::kFloat32, {kTokens, kTopK}));
  return std::memcmp(y.data_as<uint16_t>(), x.data(), x.size() * sizeof(uint16_t)) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0, rank = 0, size = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char* timeout_ms = std::getenv("MOE_EP_TIMEOUT_MS");
  const auto timeout = std::chrono::milliseconds(timeout_ms ? std::atoi(timeout_ms) : 0);
  std::string failure;
  if (size != 4 || timeout.count() <= 0) {
    failure = "run under mpirun -np 4 with MOE_EP_TIMEOUT_MS set";
  } else {
    bool met = false;  // at the barrier after the resets
    try {
      moe_ep::Group group = moe_ep::JoinMpiGroup(MPI_COMM_WORLD);
      if (!RoundTrips(group, 0)) failure = "round 0's combined tokens differ from x";
      if (rank == 3) std::this_thread::sleep_for(2 * timeout);
      const auto start = std::chrono::steady_clock::now();
      moe_ep::BufferReset(group, {}, /*need_sync=*/false);
      const auto took = std::chrono::steady_clock::now() - start;
      if (failure.empty() && took >= timeout) {
        failure = "its reset without sync took " +
                  std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()) + " ms";
      }
      MPI_Barrier(MPI_COMM_WORLD);  // every rank reset before the next round
      met = true;
      if (failure.empty() && !RoundTrips(group, 1)) failure = "round 1's combined tokens differ from x";
    } catch (const moe_ep::Error& e) {
      failure = e.what();
      if (!met) MPI_Barrier(MPI_COMM_WORLD);  // the others wait there for this rank
    }
  }
  if (failure.empty()) {
    std::printf("rank %d reset without waiting for rank 3, and its next round round-tripped: OK\n", rank);
  } else {
    std::printf("FAIL: rank %d: %s\n", rank, failure.c_str());
  }
  std::fflush(stdout);
  MPI_Finalize();
  return failure.empty() ? 0 : 1;
}
