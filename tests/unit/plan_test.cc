// Plan arithmetic against numbers worked out by hand from docs/semantics.md 1.2 / 2.5 / 5.1 (not from the code).
//
// Cases:
//   WindowLayout.*  tokC = Align512(2H), tokD = Align512(Align32(2H) + 44) and the payload offsets for several H
//                   (7168, 8192, 1024, 1000, 7, 1) with and without int8 quantization; the EP window of the 8-rank,
//                   H=7168, top-8, 64-expert, Bs=128 case (272629760 bytes = 260 MiB, above the 200 MB default);
//                   slot offsets inside a half; the TP window 2*A*(tokD + tokC); shared-expert windows.
//   ReceiveRows.*   A = globalBs*min(L, K) on MoE ranks and maxBs*ceil(E/R) on shared ranks, with and without
//                   globalBs, for several (E, S, n_s, L, K); the larger of the two on every rank under
//                   elasticInfo; saturation instead of a wrap for absurd sizes.
//   ElasticTable.*  ApplyElasticInfo refuses a table that leaves a shared expert without a rank, moves a shared
//                   rank to another shared expert, or lets a rank that left stand in for a survivor (Table1 ->
//                   Table2 direction).
//   RoutingPlan.*   BuildRoutingPlan on small hand examples: slots by prefix count in flattened (t*K + k) order,
//                   expert counts, valid tokens; 1-D mask (a prefix; a non-prefix mask sends tokens
//                   [0, sum), and CheckRouting refuses it); 2-D mask; out-of-range ids throw naming value and
//                   position, masked-out ones do not.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "moe_ep/error.h"
#include "plan/config.h"
#include "plan/elastic.h"
#include "plan/layout.h"
#include "plan/routing.h"

namespace moe_ep::plan {
namespace {

MoeConfig Config(int64_t e, int64_t moe, int64_t bs, int64_t h, int64_t k) {
  MoeConfig c;
  c.ep_world_size = e;
  c.moe_expert_num = moe;
  c.bs = bs;
  c.hidden = h;
  c.top_k = k;
  return c;
}

// ---- WindowLayout ------------------------------------------------------------------------------------------------

struct RowGeometry {
  int64_t h;
  uint64_t tok_c, tok_d;                              // Align512(2H), Align512(Align32(2H) + 44)
  uint64_t token, scale_offset, triple_offset;        // bf16 payload
  uint64_t q_token, q_scale_offset, q_triple_offset;  // int8 payload
};

TEST(WindowLayout, RowGeometryForSeveralHidden) {
  const RowGeometry cases[] = {
      // 2H = 14336: Align32 = 14336, +44 = 14380 -> 29*512 = 14848.
      {7168, 14336, 14848, 14336, 14336, 14368, 7168, 7168, 7200},
      // 2H = 16384: +44 = 16428 -> 33*512 = 16896.
      {8192, 16384, 16896, 16384, 16384, 16416, 8192, 8192, 8224},
      // 2H = 2048: +44 = 2092 -> 2560.
      {1024, 2048, 2560, 2048, 2048, 2080, 1024, 1024, 1056},
      // 2H = 2000: Align512 = 2048; Align32 = 2016, +44 = 2060 -> 2560. int8: 1000 -> scale at 1024.
      {1000, 2048, 2560, 2000, 2016, 2048, 1000, 1024, 1056},
      // 2H = 14: Align512 = 512; Align32 = 32, +44 = 76 -> 512.
      {7, 512, 512, 14, 32, 64, 7, 32, 64},
      {1, 512, 512, 2, 32, 64, 1, 32, 64},
  };
  for (const RowGeometry& g : cases) {
    SCOPED_TRACE("H = " + std::to_string(g.h));
    MoeConfig c = Config(8, 64, 128, g.h, 8);
    const WindowLayout bf16(c);
    EXPECT_EQ(bf16.hidden, g.h);
    EXPECT_EQ(bf16.combine_slot_bytes, g.tok_c);
    EXPECT_EQ(bf16.dispatch_slot_bytes, g.tok_d);
    EXPECT_EQ(bf16.dispatch_token_bytes, g.token);
    EXPECT_EQ(bf16.dispatch_scale_offset, g.scale_offset);
    EXPECT_EQ(bf16.dispatch_triple_offset, g.triple_offset);
    EXPECT_LE(bf16.dispatch_triple_offset + 12, bf16.dispatch_slot_bytes) << "the triple must fit in tokD";
    c.quant_mode = 2;
    const WindowLayout q(c);
    EXPECT_EQ(q.combine_slot_bytes, g.tok_c) << "tokC does not depend on quantization";
    EXPECT_EQ(q.dispatch_slot_bytes, g.tok_d) << "tokD does not depend on quantization";
    EXPECT_EQ(q.dispatch_token_bytes, g.q_token);
    EXPECT_EQ(q.dispatch_scale_offset, g.q_scale_offset);
    EXPECT_EQ(q.dispatch_triple_offset, g.q_triple_offset);
  }
}

// E=8, moe=64 (L=8), K=8, H=7168, Bs=128, no shared experts, no TP.
//   maxBs = 128, globalBs = 1024, A = 1024 * min(8, 8) = 8192.
//   combine area  = maxBs * (K + n_s) * tokC = 128 * 8 * 14336        =  14680064
//   dispatch area = maxBs * E * L * tokD     = 128 * 64 * 14848       = 121634816
//   window        = 2 * (14680064 + 121634816)                       = 272629760 bytes = 260 MiB
TEST(WindowLayout, EightRanksHidden7168TopK8Experts64Bs128) {
  const MoeConfig c = Config(8, 64, 128, 7168, 8);
  const WindowLayout w(c);
  EXPECT_EQ(w.max_bs, 128);
  EXPECT_EQ(w.combine_slots_per_token, 8);
  EXPECT_EQ(w.dispatch_blocks, 64);
  EXPECT_EQ(w.a, 8192);
  EXPECT_EQ(w.combine_area_bytes, 14680064u);
  EXPECT_EQ(w.dispatch_area_offset, 14680064u);
  EXPECT_EQ(w.ep_half_bytes, 136314880u);
  EXPECT_EQ(w.ep_window_bytes, 272629760u);
  EXPECT_EQ(w.ep_window_bytes, uint64_t{260} << 20);
  EXPECT_GT(w.ep_window_bytes, uint64_t{200} << 20) << "the HCCL_BUFFSIZE default (200 MB) is too small here";
  EXPECT_EQ(w.tp_window_bytes, 0u) << "no TP window without TP";

  // Slot 7 of block src*L + e_local = 3*8 + 5 = 29: 14680064 + (29*128 + 7) * 14848 = 69899776.
  EXPECT_EQ(w.DispatchSlotOffset(29, 7), 69899776u);
  EXPECT_EQ(w.DispatchSlotOffset(0, 0), 14680064u);
  // The last slot of the last block ends exactly at the end of the half.
  EXPECT_EQ(w.DispatchSlotOffset(63, 127) + w.dispatch_slot_bytes, w.ep_half_bytes);
  // Combine slot t*(K + n_s) + k: token 3, k 2 -> slot 26 -> 26 * 14336.
  EXPECT_EQ(w.CombineSlotOffset(3 * 8 + 2), 372736u);
  EXPECT_EQ(w.CombineSlotOffset(128 * 8 - 1) + w.combine_slot_bytes, w.combine_area_bytes);

  // Quantization changes the payload, not the slot sizes: same window.
  MoeConfig q = c;
  q.quant_mode = 2;
  EXPECT_EQ(WindowLayout(q).ep_window_bytes, 272629760u);
}

// Same group with TP (L must be 1): E=8, moe=8, K=8, H=7168, Bs=128: A = 1024 * min(1, 8) = 1024.
//   TP window = 2 * A * (tokD + tokC) = 2 * 1024 * (14848 + 14336) = 59768832; combine part at A * tokD.
TEST(WindowLayout, TpWindow) {
  MoeConfig c = Config(8, 8, 128, 7168, 8);
  c.tp_world_size = 2;
  const WindowLayout w(c);
  EXPECT_EQ(w.a, 1024);
  EXPECT_EQ(w.tp_combine_offset, 15204352u);
  EXPECT_EQ(w.tp_half_bytes, 29884416u);
  EXPECT_EQ(w.tp_window_bytes, 59768832u);
  // EP: 2 * (128*14848*8 + 128*14336*8) = 2 * (15204352 + 14680064).
  EXPECT_EQ(w.ep_window_bytes, 59768832u);
}

// Shared experts: E=8, S=2, n_s=1, moe=48 (L=8): every rank's window is sized for E*L blocks and K+n_s
// combine slots: 2 * (128*14848*64 + 128*14336*9) = 2 * (121634816 + 16515072) = 276299776, on shared and MoE
// ranks alike (the rule of docs/semantics.md 1.2 does not depend on the rank).
TEST(WindowLayout, SharedExpertsAddCombineSlots) {
  MoeConfig c = Config(8, 48, 128, 7168, 8);
  c.shared_expert_num = 1;
  c.shared_expert_rank_num = 2;
  for (int64_t rank : {0, 1, 2, 7}) {
    c.ep_rank = rank;
    const WindowLayout w(c);
    EXPECT_EQ(w.combine_slots_per_token, 9) << "rank " << rank;
    EXPECT_EQ(w.dispatch_blocks, 64) << "rank " << rank;
    EXPECT_EQ(w.combine_area_bytes, 16515072u) << "rank " << rank;
    EXPECT_EQ(w.ep_window_bytes, 276299776u) << "rank " << rank;
  }
}

// With globalBs the slots are maxBs = globalBs / E deep, not Bs.
TEST(WindowLayout, GlobalBsSizesSlotsByMaxBs) {
  MoeConfig c = Config(8, 64, 100, 7168, 8);
  c.global_bs = 1024;
  const WindowLayout w(c);
  EXPECT_EQ(w.max_bs, 128);
  EXPECT_EQ(w.ep_window_bytes, 272629760u);
  EXPECT_EQ(w.a, 8192);
}

// ---- ReceiveRows (A) ---------------------------------------------------------------------------------------------

TEST(ReceiveRows, MoeRanks) {
  // globalBs * min(L, K).
  EXPECT_EQ(ReceiveRows(Config(8, 64, 128, 7168, 8)), 1024 * 8);
  EXPECT_EQ(ReceiveRows(Config(8, 64, 128, 7168, 4)), 1024 * 4);  // K < L
  EXPECT_EQ(ReceiveRows(Config(8, 16, 128, 7168, 8)), 1024 * 2);  // L = 2 < K
  EXPECT_EQ(ReceiveRows(Config(16, 16, 8, 7168, 8)), 128);        // L = 1
  EXPECT_EQ(ReceiveRows(Config(1, 4, 3, 32, 2)), 3 * 2);          // native E = 1
  MoeConfig c = Config(8, 64, 100, 7168, 8);
  c.global_bs = 2048;  // maxBs = 256
  EXPECT_EQ(ReceiveRows(c), 2048 * 8);
}

TEST(ReceiveRows, SharedAndMoeRanksWithSharedExperts) {
  // E=8, S=2, n_s=1 -> R=2; moe=48 -> L=8.
  MoeConfig c = Config(8, 48, 128, 7168, 8);
  c.shared_expert_num = 1;
  c.shared_expert_rank_num = 2;
  c.ep_rank = 0;
  EXPECT_EQ(ReceiveRows(c), 128 * 4);  // maxBs * ceil(8 / 2)
  c.ep_rank = 1;
  EXPECT_EQ(ReceiveRows(c), 128 * 4);
  c.ep_rank = 2;
  EXPECT_EQ(ReceiveRows(c), 1024 * 8);  // MoE rank: globalBs * min(L, K)

  // n_s = 2 on S = 2 -> R = 1: every rank sends to each shared rank.
  c.shared_expert_num = 2;
  c.ep_rank = 1;
  EXPECT_EQ(ReceiveRows(c), 128 * 8);

  // S = 3, n_s = 1 -> R = 3: ceil(8 / 3) = 3; moe = 10 -> L = 2.
  MoeConfig d = Config(8, 10, 128, 7168, 8);
  d.shared_expert_num = 1;
  d.shared_expert_rank_num = 3;
  d.ep_rank = 2;
  EXPECT_EQ(ReceiveRows(d), 128 * 3);
  d.ep_rank = 3;
  EXPECT_EQ(ReceiveRows(d), 1024 * 2);

  // globalBs: shared rank uses maxBs = globalBs / E = 256.
  c.shared_expert_num = 1;
  c.bs = 100;
  c.global_bs = 2048;
  c.ep_rank = 0;
  EXPECT_EQ(ReceiveRows(c), 256 * 4);
  c.ep_rank = 5;
  EXPECT_EQ(ReceiveRows(c), 2048 * 8);
}

// docs/semantics.md 1.2: with elasticInfo every rank is sized for either role, because a scaled-down job can
// leave fewer replicas of a shared expert. E=4, S=2, n_s=1 (R=2), moe=2 (L=1), K=2, Bs=8: shared A =
// 8 * ceil(4/2) = 16, MoE A = 32 * min(1, 2) = 32.
TEST(ReceiveRows, ElasticSizesEveryRankForTheLargerRole) {
  MoeConfig c = Config(4, 2, 8, 1024, 2);
  c.shared_expert_num = 1;
  c.shared_expert_rank_num = 2;
  EXPECT_EQ(ReceiveRows(c), 16);
  c.elastic = true;
  EXPECT_EQ(ReceiveRows(c), 32);
  c.ep_rank = 3;
  EXPECT_EQ(ReceiveRows(c), 32);
  // After dropping replica 1 the survivor (E=3, S=1, R=1) receives 8 * 3 = 24 <= 32.
  MoeConfig scaled = Config(3, 2, 8, 1024, 2);
  scaled.shared_expert_num = 1;
  scaled.shared_expert_rank_num = 1;
  EXPECT_EQ(ReceiveRows(scaled), 24);
}

TEST(ReceiveRows, AbsurdSizesSaturateInsteadOfWrapping) {
  MoeConfig c = Config(2, 4, 8, 1024, 2);
  c.global_bs = int64_t{1} << 62;
  EXPECT_EQ(ReceiveRows(c), INT64_MAX);
  EXPECT_EQ(WindowLayout(c).ep_window_bytes, UINT64_MAX);
}

// E=4, S=2, n_s=1, moe=2: tables are [isScaledDown, newE, newS, newMoe, Table1[4], Table2[4]].
MoeConfig ElasticConfig(int64_t rank) {
  MoeConfig c = Config(4, 2, 8, 1024, 2);
  c.shared_expert_num = 1;
  c.shared_expert_rank_num = 2;
  c.ep_rank = rank;
  return c;
}

void ExpectBadTable(const MoeConfig& c, const std::vector<int32_t>& table, const std::string& entry,
                    const std::string& rule) {
  try {
    ApplyElasticInfo(c, table, "op");
    ADD_FAILURE() << "table accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    EXPECT_NE(std::string(e.what()).find("'elasticInfo" + entry + "'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(rule), std::string::npos) << e.what();
  }
}

TEST(ElasticTable, EverySharedExpertKeepsARank) {
  // Ranks 2 and 3 survive; both shared replicas are gone.
  ExpectBadTable(ElasticConfig(2), {1, 2, 0, 2, -1, -1, 0, 1, 2, 3, -1, -1}, "[2]",
                 "every shared expert keeps at least one rank");
  const std::vector<int32_t> table = {1, 3, 1, 2, 0, -1, 1, 2, 0, 2, 3, -1};
  const ScaledDown ok = ApplyElasticInfo(ElasticConfig(2), table, "op");
  EXPECT_EQ(ok.config.ep_world_size, 3);
  EXPECT_EQ(ok.config.ep_rank, 1);
  EXPECT_EQ(ok.physical, (std::vector<int>{0, 2, 3}));
}

// E=8, n_s=2, S=4 (shared expert 0 on ranks 0-1, expert 1 on ranks 2-3), moe=4. Ranks 0 and 1 gone: new S = 2 is a
// multiple of n_s, but both new shared ranks hold expert 1, and every token would get expert 1 twice and expert 0
// never. One rank of each expert gone is a table every expert keeps its rank in.
TEST(ElasticTable, EverySharedExpertKeepsItsOwnRanks) {
  MoeConfig c = Config(8, 4, 8, 1024, 2);
  c.shared_expert_num = 2;
  c.shared_expert_rank_num = 4;
  c.ep_rank = 4;
  ExpectBadTable(c, {1, 6, 2, 4, -1, -1, 0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 6, 7, -1, -1}, "[4 + E + 0]",
                 "new rank 0 serves shared expert 0 (new sharedExpertRankNum / sharedExpertNum = 1 ranks each), and "
                 "old rank 2 held shared expert 1");
  const ScaledDown ok =
      ApplyElasticInfo(c, std::vector<int32_t>{1, 6, 2, 4, -1, 0, -1, 1, 2, 3, 4, 5, 1, 3, 4, 5, 6, 7, -1, -1}, "op");
  EXPECT_EQ(ok.physical, (std::vector<int>{1, 3, 4, 5, 6, 7}));
  EXPECT_EQ(ok.config.SharedRank(1, 5), 1);  // old rank 3: expert 1's
}

TEST(ElasticTable, ARankThatLeftCannotStandInForASurvivor) {
  // Rank 1 left (not in Table2) but Table1 still gives it new rank 1, the slot of original rank 2: it would
  // run as rank 2's double.
  ExpectBadTable(ElasticConfig(1), {1, 3, 1, 2, 0, 1, 1, 2, 0, 2, 3, -1}, "[4 + 1]", "Table1[old] = -1");
}

// ---- BuildRoutingPlan --------------------------------------------------------------------------------------------

MoeConfig RoutingConfig(MaskKind mask) {
  MoeConfig c = Config(2, 4, 3, 32, 2);
  c.mask = mask;
  return c;
}

struct Pair {
  int32_t token, k, expert, slot;
};

void ExpectPairs(const RoutingPlan& plan, const std::vector<Pair>& want) {
  ASSERT_EQ(plan.pairs.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE("pair " + std::to_string(i));
    EXPECT_EQ(plan.pairs[i].token, want[i].token);
    EXPECT_EQ(plan.pairs[i].k, want[i].k);
    EXPECT_EQ(plan.pairs[i].expert, want[i].expert);
    EXPECT_EQ(plan.pairs[i].slot, want[i].slot);
  }
}

// ids = [[1, 3], [1, 0], [3, 2]]: slots count earlier pairs of the same expert in t*K + k order.
const std::vector<int32_t> kIds = {1, 3, 1, 0, 3, 2};

TEST(RoutingPlan, NoMask) {
  const RoutingPlan plan = BuildRoutingPlan(RoutingConfig(MaskKind::kNone), kIds.data(), nullptr);
  ExpectPairs(plan, {{0, 0, 1, 0}, {0, 1, 3, 0}, {1, 0, 1, 1}, {1, 1, 0, 0}, {2, 0, 3, 1}, {2, 1, 2, 0}});
  EXPECT_EQ(plan.expert_counts, (std::vector<int32_t>{1, 2, 1, 2}));
  EXPECT_EQ(plan.valid_tokens, (std::vector<int32_t>{0, 1, 2}));
}

TEST(RoutingPlan, SlotsCountPerExpert) {
  // ids = [[0, 1], [1, 0], [0, 2]]: expert 0 gets (0,0)->0, (1,1)->1, (2,0)->2; expert 1 (0,1)->0, (1,0)->1.
  const std::vector<int32_t> ids = {0, 1, 1, 0, 0, 2};
  const RoutingPlan plan = BuildRoutingPlan(RoutingConfig(MaskKind::kNone), ids.data(), nullptr);
  ExpectPairs(plan, {{0, 0, 0, 0}, {0, 1, 1, 0}, {1, 0, 1, 1}, {1, 1, 0, 1}, {2, 0, 0, 2}, {2, 1, 2, 0}});
  EXPECT_EQ(plan.expert_counts, (std::vector<int32_t>{3, 2, 1, 0}));
}

TEST(RoutingPlan, TokenMaskPrefix) {
  const std::vector<uint8_t> mask = {1, 1, 0};
  const RoutingPlan plan = BuildRoutingPlan(RoutingConfig(MaskKind::kTokens), kIds.data(), mask.data());
  ExpectPairs(plan, {{0, 0, 1, 0}, {0, 1, 3, 0}, {1, 0, 1, 1}, {1, 1, 0, 0}});
  EXPECT_EQ(plan.expert_counts, (std::vector<int32_t>{1, 2, 0, 1}));
  EXPECT_EQ(plan.valid_tokens, (std::vector<int32_t>{0, 1}));
}

// docs/semantics.md 2.5: "true must be a prefix; only tokens [0, c) are sent": [1, 0, 1] sends tokens 0 and 1.
TEST(RoutingPlan, TokenMaskNotAPrefixSendsTheFirstSumTokens) {
  const std::vector<uint8_t> mask = {1, 0, 1};
  const RoutingPlan plan = BuildRoutingPlan(RoutingConfig(MaskKind::kTokens), kIds.data(), mask.data());
  EXPECT_EQ(plan.valid_tokens, (std::vector<int32_t>{0, 1}));
}

// ... which is why CheckRouting refuses such a mask (161002), naming the first true after a false; a prefix of any
// length (all false, all true) passes.
TEST(RoutingPlan, TokenMaskNotAPrefixIsRefusedNamingTheLateTrue) {
  const MoeConfig c = RoutingConfig(MaskKind::kTokens);
  for (const std::vector<uint8_t>& mask : {std::vector<uint8_t>{1, 0, 1}, std::vector<uint8_t>{0, 0, 2}}) {
    try {
      CheckRouting(c, kIds.data(), mask.data(), "MoeDistributeCombine");
      ADD_FAILURE() << "no error for mask " << ::testing::PrintToString(mask);
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_EQ(e.code(), ErrorCode::kInvalidParam) << what;
      EXPECT_NE(what.find("MoeDistributeCombine: parameter 'xActiveMask' has value true at [2] after false at ["),
                std::string::npos)
          << what;
      EXPECT_NE(what.find("rule: a 1-D xActiveMask has all its trues before its falses"), std::string::npos) << what;
    }
  }
  for (const std::vector<uint8_t>& mask :
       {std::vector<uint8_t>{0, 0, 0}, std::vector<uint8_t>{1, 1, 1}, std::vector<uint8_t>{3, 0, 0}}) {
    EXPECT_NO_THROW(CheckRouting(c, kIds.data(), mask.data(), "op")) << ::testing::PrintToString(mask);
  }
}

TEST(RoutingPlan, TokenMaskAllFalse) {
  const std::vector<uint8_t> mask = {0, 0, 0};
  const RoutingPlan plan = BuildRoutingPlan(RoutingConfig(MaskKind::kTokens), kIds.data(), mask.data());
  EXPECT_TRUE(plan.pairs.empty());
  EXPECT_TRUE(plan.valid_tokens.empty());
  EXPECT_EQ(plan.expert_counts, (std::vector<int32_t>{0, 0, 0, 0}));
}

// mask = [[1, 0], [0, 0], [1, 1]]: token 1 sends nothing and is not valid (no shared copy either); slots are
// numbered over the sent pairs only.
TEST(RoutingPlan, PairMask) {
  const std::vector<uint8_t> mask = {1, 0, 0, 0, 1, 1};
  const RoutingPlan plan = BuildRoutingPlan(RoutingConfig(MaskKind::kPairs), kIds.data(), mask.data());
  ExpectPairs(plan, {{0, 0, 1, 0}, {2, 0, 3, 0}, {2, 1, 2, 0}});
  EXPECT_EQ(plan.expert_counts, (std::vector<int32_t>{0, 1, 1, 1}));
  EXPECT_EQ(plan.valid_tokens, (std::vector<int32_t>{0, 2}));
}

// mask = [[0, 1], [1, 1], [0, 0]] over ids [[1, 3], [1, 0], [3, 2]]: (0,1)->e3 slot 0, (1,0)->e1 slot 0,
// (1,1)->e0 slot 0.
TEST(RoutingPlan, PairMaskSkipsMaskedPairsInSlotNumbering) {
  const std::vector<uint8_t> mask = {0, 1, 1, 1, 0, 0};
  const std::vector<int32_t> ids = {1, 3, 1, 0, 3, 2};
  const RoutingPlan plan = BuildRoutingPlan(RoutingConfig(MaskKind::kPairs), ids.data(), mask.data());
  ExpectPairs(plan, {{0, 1, 3, 0}, {1, 0, 1, 0}, {1, 1, 0, 0}});
  EXPECT_EQ(plan.valid_tokens, (std::vector<int32_t>{0, 1}));
}

// V3 special experts (moe = 4, zero = 1, copy = 1, const = 1: ids 4, 5, 6) are valid, never routed, and
// leave the slot numbering of the MoE pairs alone; a token with only special experts is still valid.
TEST(RoutingPlan, SpecialExpertsAreNotRouted) {
  MoeConfig c = RoutingConfig(MaskKind::kNone);
  c.zero_expert_num = c.copy_expert_num = c.const_expert_num = 1;
  const std::vector<int32_t> ids = {4, 1, 5, 6, 1, 6};
  const RoutingPlan plan = BuildRoutingPlan(c, ids.data(), nullptr);
  ExpectPairs(plan, {{0, 1, 1, 0}, {2, 0, 1, 1}});
  EXPECT_EQ(plan.expert_counts, (std::vector<int32_t>{0, 2, 0, 0}));
  EXPECT_EQ(plan.valid_tokens, (std::vector<int32_t>{0, 1, 2}));
}

void ExpectBadId(const MoeConfig& c, const std::vector<int32_t>& ids, const uint8_t* mask, const std::string& value,
                 const std::string& where, const std::string& rule = "moeExpertNum (4)") {
  try {
    CheckRouting(c, ids.data(), mask, "MoeDistributeDispatch");
    ADD_FAILURE() << "no error for id " << value;
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("expertIds"), std::string::npos) << what;
    EXPECT_NE(what.find("value " + value), std::string::npos) << what;
    EXPECT_NE(what.find(where), std::string::npos) << what;
    EXPECT_NE(what.find(rule), std::string::npos) << what;
  }
}

TEST(RoutingPlan, OutOfRangeIdsThrowNamingValueAndPosition) {
  ExpectBadId(RoutingConfig(MaskKind::kNone), {1, 3, 1, 4, 3, 2}, nullptr, "4", "[1, 1]");
  ExpectBadId(RoutingConfig(MaskKind::kNone), {1, 3, 1, 0, -1, 2}, nullptr, "-1", "[2, 0]");
  const std::vector<uint8_t> pairs = {1, 1, 1, 1, 0, 1};
  ExpectBadId(RoutingConfig(MaskKind::kPairs), {1, 3, 1, 0, 3, 9}, pairs.data(), "9", "[2, 1]");
}

// docs/semantics.md 2.1: a MoE expert twice in one token would send it twice to one rank, past A; the
// second occurrence is named. Special experts never travel, so they may repeat; masked pairs do not count.
TEST(RoutingPlan, RepeatedMoeExpertInATokenThrows) {
  const std::string distinct = "distinct (it is also at [1, 0])";
  ExpectBadId(RoutingConfig(MaskKind::kNone), {1, 3, 2, 2, 3, 0}, nullptr, "2", "[1, 1]", distinct);
  MoeConfig special = RoutingConfig(MaskKind::kNone);
  special.zero_expert_num = 1;
  EXPECT_NO_THROW(CheckRouting(special, std::vector<int32_t>{4, 4, 1, 0, 3, 2}.data(), nullptr, "op"));
  const std::vector<uint8_t> pairs = {1, 1, 1, 0, 1, 1};
  EXPECT_NO_THROW(
      CheckRouting(RoutingConfig(MaskKind::kPairs), std::vector<int32_t>{1, 3, 2, 2, 3, 0}.data(), pairs.data(), "op"));
}

// Ids that are never sent (masked pairs, tokens past the 1-D mask's count) are not read as routes.
TEST(RoutingPlan, MaskedOutIdsAreNotChecked) {
  const std::vector<int32_t> ids = {1, 3, 1, 0, 99, -5};
  const std::vector<uint8_t> tokens = {1, 1, 0};
  EXPECT_NO_THROW(CheckRouting(RoutingConfig(MaskKind::kTokens), ids.data(), tokens.data(), "op"));
  const std::vector<uint8_t> pairs = {1, 1, 1, 1, 0, 0};
  EXPECT_NO_THROW(CheckRouting(RoutingConfig(MaskKind::kPairs), ids.data(), pairs.data(), "op"));
}

}  // namespace
}  // namespace moe_ep::plan
