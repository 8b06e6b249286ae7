// Dispatches back to back, no combine between them, with x overwritten as soon as each returns: a rank may
// run calls ahead of a peer still reading its rows (a small x is read from a staged copy, one per call
// parity: ops/stage.h), so every received row must still be the one its source sent in that call. The
// rows' places are checked against the reference by the property tests; here every rank must receive as many rows
// as were sent to it, each row's triple must name a pair routed to it, and the row must be its source's x of the
// same round.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "moe_ep/ops.h"
#include "support/test_seed.h"

namespace {

using moe_ep::DataPath;
using moe_ep::DType;
using moe_ep::Group;
using moe_ep::TensorView;

constexpr int kRanks = 8, kExperts = 16, kTopK = 4;
#ifdef __SANITIZE_THREAD__
constexpr int kRounds = 100;  // 45 times slower under ThreadSanitizer; still 50 rounds of each call parity
#else
constexpr int kRounds = 300;
#endif

// Element j of token t of rank r's x in round n: distinct for every (round, rank, token, j) that can meet.
uint16_t Element(int round, int rank, int token, int64_t j) {
  return static_cast<uint16_t>((round * 131 + rank * 17 + token * 5 + j * 3) & 0x7F7F);
}

// A round's expert ids of one source: kTopK distinct experts per token.
std::vector<int32_t> DrawIds(std::mt19937_64& rng, int64_t bs) {
  std::vector<int32_t> ids(bs * kTopK);
  for (int64_t t = 0; t < bs; ++t) {
    std::vector<int32_t> experts(kExperts);
    for (int e = 0; e < kExperts; ++e) experts[e] = e;
    std::shuffle(experts.begin(), experts.end(), rng);
    std::copy_n(experts.begin(), kTopK, ids.begin() + t * kTopK);
  }
  return ids;
}

// One rank's kRounds dispatches; `failure` gets its first mismatch. Every rank draws every source's ids (one
// generator per source), so it knows how many rows must arrive and which expert, here, each row is for.
void Rank(Group& group, int r, int64_t bs, int64_t hidden, uint64_t seed, std::string& failure) {
  std::vector<std::mt19937_64> rngs;
  for (int src = 0; src < kRanks; ++src) rngs.emplace_back(seed * 1000 + src);
  constexpr int kLocalExperts = kExperts / kRanks;
  std::vector<uint16_t> x(bs * hidden);
  moe_ep::DispatchOptions options;
  options.experts.moe_expert_num = kExperts;
  for (int round = 0; round < kRounds; ++round) {  // every round, even after a mismatch: the peers wait for it
    std::vector<std::vector<int32_t>> ids_of;
    int64_t want_rows = 0;
    for (int src = 0; src < kRanks; ++src) {
      ids_of.push_back(DrawIds(rngs[src], bs));
      want_rows +=
          std::count_if(ids_of[src].begin(), ids_of[src].end(), [&](int32_t e) { return e / kLocalExperts == r; });
    }
    std::vector<int32_t>& ids = ids_of[r];
    for (int64_t t = 0; t < bs; ++t) {
      for (int64_t j = 0; j < hidden; ++j) x[t * hidden + j] = Element(round, r, static_cast<int>(t), j);
    }
    const moe_ep::DispatchResult d = moe_ep::Dispatch(group, TensorView(x.data(), DType::kBf16, {bs, hidden}),
                                                      TensorView(ids.data(), DType::kInt32, {bs, kTopK}), options);
    std::memset(x.data(), 0xFF, x.size() * sizeof(uint16_t));  // the caller's to reuse at once
    const auto* rows = static_cast<const uint16_t*>(d.expand_x.data());
    const auto* triples = static_cast<const int32_t*>(d.handle.assist_info.data());
    if (d.handle.num_rows != want_rows && failure.empty()) {
      failure = "rank " + std::to_string(r) + " round " + std::to_string(round) + ": " +
                std::to_string(d.handle.num_rows) + " rows arrived, " + std::to_string(want_rows) + " were sent here";
    }
    for (int64_t i = 0; i < d.handle.num_rows && failure.empty(); ++i) {
      const int src = triples[3 * i], token = triples[3 * i + 1], k = triples[3 * i + 2];
      if (src < 0 || src >= kRanks || token < 0 || token >= bs || k < 0 || k >= kTopK ||
          ids_of[src][token * kTopK + k] / kLocalExperts != r) {
        failure = "rank " + std::to_string(r) + " round " + std::to_string(round) + ": row " + std::to_string(i) +
                  " has the triple (" + std::to_string(src) + ", " + std::to_string(token) + ", " + std::to_string(k) +
                  "), which names no pair sent to this rank";
        break;
      }
      for (int64_t j = 0; j < hidden; ++j) {
        if (rows[i * hidden + j] != Element(round, src, token, j)) {
          failure = "rank " + std::to_string(r) + " round " + std::to_string(round) + ": row " + std::to_string(i) +
                    " (rank " + std::to_string(src) + "'s token " + std::to_string(token) + ") differs at element " +
                    std::to_string(j);
          break;
        }
      }
    }
  }
}

// Runs kRounds dispatches on every rank; returns the first mismatch ("" when none).
std::string RunRounds(std::vector<Group>& groups, int64_t bs, int64_t hidden, uint64_t seed) {
  std::vector<std::string> failures(kRanks);
  std::vector<std::thread> ranks;
  for (int r = 0; r < kRanks; ++r) {
    ranks.emplace_back([&, r] {
      try {
        Rank(groups[r], r, bs, hidden, seed, failures[r]);
      } catch (const std::exception& e) {
        failures[r] = "rank " + std::to_string(r) + ": " + e.what();
      }
    });
  }
  for (auto& t : ranks) t.join();
  for (const std::string& f : failures) {
    if (!f.empty()) return f;
  }
  return "";
}

// Pulled (staged, as x is 8 KiB or less here), and pushed for comparison.
TEST(BackToBackDispatch, RowsAreThoseOfTheirRoundOnEveryPath) {
  const uint64_t seed = moe_ep::testing::BaseSeed();
  for (const DataPath path : {DataPath::kPull, DataPath::kPush}) {
    moe_ep::GroupOptions options;
    options.data_path = path;
    options.window_bytes = uint64_t{64} << 20;
    options.timeout = std::chrono::seconds(60);  // a rank that throws fails the others within a minute
    std::vector<Group> groups = moe_ep::CreateThreadGroups(kRanks, options);
    EXPECT_EQ(RunRounds(groups, /*bs=*/4, /*hidden=*/1024, seed), "")
        << (path == DataPath::kPull ? "pulled" : "pushed") << ", seed " << seed;
  }
}

}  // namespace
