// Native API example: 4 ranks as threads, each dispatches 16 tokens to its top-2 of 8 experts, the
// "experts" scale their rows by (1 + local expert index), and combine brings the weighted sums back.
// Each token's result is checked against the value worked out by hand.
#include <cstdio>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#include "moe_ep/error.h"
#include "moe_ep/ops.h"

namespace {

constexpr int kRanks = 4;
constexpr int64_t kTokens = 16, kHidden = 64, kTopK = 2, kExperts = 8;

float Bf16ToFloat(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t FloatToBf16(float f) {  // exact for the small values used here
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>(u >> 16);
}

int RunRank(moe_ep::Group& group) {
  const int rank = group.rank();
  // Token t of rank r holds the value r + t / 16 in every element; it goes to experts (t, t + 3) mod 8.
  std::vector<uint16_t> x(kTokens * kHidden);
  std::vector<int32_t> ids(kTokens * kTopK);
  std::vector<float> weights(kTokens * kTopK, 0.5f);
  for (int64_t t = 0; t < kTokens; ++t) {
    for (int64_t h = 0; h < kHidden; ++h) x[t * kHidden + h] = FloatToBf16(rank + t / 16.0f);
    ids[t * kTopK] = static_cast<int32_t>(t % kExperts);
    ids[t * kTopK + 1] = static_cast<int32_t>((t + 3) % kExperts);
  }
  moe_ep::DispatchOptions options;
  options.experts.moe_expert_num = kExperts;
  auto result = moe_ep::Dispatch(group, moe_ep::TensorView(x.data(), moe_ep::DType::kBf16, {kTokens, kHidden}),
                                 moe_ep::TensorView(ids.data(), moe_ep::DType::kInt32, {kTokens, kTopK}), options);

  // The "experts": rows arrive grouped by local expert; epRecvCounts gives the cumulative boundaries.
  const int64_t local = kExperts / kRanks;
  auto* rows = result.expand_x.data_as<uint16_t>();
  const auto* counts = result.handle.ep_recv_counts.data_as<int32_t>();
  int64_t row = 0;
  for (int64_t e = 0; e < local; ++e) {
    for (; row < counts[e * kRanks + kRanks - 1]; ++row) {
      for (int64_t h = 0; h < kHidden; ++h) {
        rows[row * kHidden + h] = FloatToBf16(Bf16ToFloat(rows[row * kHidden + h]) * static_cast<float>(1 + e));
      }
    }
  }
  const moe_ep::Tensor out =
      moe_ep::Combine(group, result.handle, result.expand_x.view(),
                      moe_ep::TensorView(weights.data(), moe_ep::DType::kFloat32, {kTokens, kTopK}));
  int bad = 0;
  for (int64_t t = 0; t < kTokens; ++t) {
    const float v = rank + t / 16.0f;
    const float expected = 0.5f * v * (1 + (t % kExperts) % local) + 0.5f * v * (1 + ((t + 3) % kExperts) % local);
    bool token_bad = false;
    for (int64_t h = 0; h < kHidden; ++h) {
      token_bad =
          token_bad || Bf16ToFloat(out.data_as<uint16_t>()[t * kHidden + h]) != Bf16ToFloat(FloatToBf16(expected));
    }
    bad += token_bad ? 1 : 0;
  }
  std::printf("rank %d: received %lld rows, %d of %lld tokens wrong\n", rank, static_cast<long long>(row), bad,
              static_cast<long long>(kTokens));
  return bad;
}

}  // namespace

int main() {
  try {
    std::vector<moe_ep::Group> groups = moe_ep::CreateThreadGroups(kRanks);
    std::vector<int> bad(kRanks);
    std::vector<std::thread> threads;
    for (int r = 0; r < kRanks; ++r) {
      threads.emplace_back([&, r] {
        try {  // an exception leaving a thread would end the program unexplained (std::terminate)
          bad[r] = RunRank(groups[r]);
        } catch (const std::exception& e) {  // moe_ep::Error, or the system's (std::bad_alloc)
          std::fprintf(stderr, "rank %d: error: %s\n", r, e.what());
          bad[r] = 1;
        }
      });
    }
    for (auto& t : threads) t.join();
    for (int b : bad) {
      if (b) return 1;
    }
    std::printf("all tokens combined correctly\n");
    return 0;
  } catch (const moe_ep::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
