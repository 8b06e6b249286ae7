// Writes the checked-in seed corpora of capi_fuzz and native_fuzz (tests/fuzz/corpus/{capi,native}/) from readable
// descriptions, through the same key tables as the decoders: `build-fuzz/tests/fuzz/fuzz_seeds tests/fuzz/corpus`.
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "capi_fuzz_keys.h"
#include "native_fuzz_keys.h"

namespace {

/// Encodes ops in the byte format of fuzz_support.h (ByteReader): opcode, settings, 0x00.
class Seed {
 public:
  Seed& Op(int opcode) {
    if (open_) bytes_.push_back(0x00);
    bytes_.push_back(static_cast<uint8_t>(opcode));
    open_ = true;
    return *this;
  }
  /// A setting for every rank.
  Seed& Set(int key, int64_t value) {
    bytes_.push_back(static_cast<uint8_t>(key));
    Int(value);
    return *this;
  }
  /// A setting for one rank.
  Seed& SetRank(int key, int rank, int64_t value) {
    bytes_.push_back(static_cast<uint8_t>(key | 0x80));
    bytes_.push_back(static_cast<uint8_t>(rank));
    Int(value);
    return *this;
  }
  std::vector<uint8_t> Bytes() const {
    std::vector<uint8_t> b = bytes_;
    if (open_) b.push_back(0x00);
    return b;
  }

 private:
  void Little(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  // The shortest encoding ByteReader::Int decodes back to `v`.
  void Int(int64_t v) {
    struct Named {
      int64_t value;
      uint8_t selector;
    };
    static const Named kNamed[] = {{std::numeric_limits<int64_t>::max(), 0xE5},
                                   {std::numeric_limits<int64_t>::min(), 0xE6},
                                   {std::numeric_limits<int32_t>::max(), 0xE7},
                                   {std::numeric_limits<int32_t>::min(), 0xE8},
                                   {std::numeric_limits<uint32_t>::max(), 0xE9},
                                   {int64_t{1} << 61, 0xEA},
                                   {int64_t{1} << 62, 0xEB},
                                   {int64_t{1} << 30, 0xEC},
                                   {int64_t{1} << 31, 0xED},
                                   {int64_t{1} << 32, 0xEE},
                                   {1024, 0xEF},
                                   {7168, 0xF0},
                                   {8192, 0xF1},
                                   {512, 0xF2},
                                   {256, 0xF3},
                                   {int64_t{1} << 20, 0xF5},
                                   {int64_t{1} << 40, 0xF6}};
    if (v >= 0 && v < 0xE0) {
      bytes_.push_back(static_cast<uint8_t>(v));
      return;
    }
    if (v == -1) {
      bytes_.push_back(0xE0);
      return;
    }
    for (const Named& n : kNamed) {
      if (n.value == v) {
        bytes_.push_back(n.selector);
        return;
      }
    }
    if (v < 0 && v >= -255) {
      bytes_.push_back(0xE1);
      bytes_.push_back(static_cast<uint8_t>(-v));
    } else if (v >= 0 && v <= 0xFFFF) {
      bytes_.push_back(0xE2);
      Little(static_cast<uint64_t>(v), 2);
    } else if (v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max()) {
      bytes_.push_back(0xE3);
      Little(static_cast<uint64_t>(v), 4);
    } else {
      bytes_.push_back(0xE4);
      Little(static_cast<uint64_t>(v), 8);
    }
  }

  std::vector<uint8_t> bytes_;
  bool open_ = false;
};

int g_failures = 0;

void Write(const std::string& dir, const std::string& name, const Seed& seed) {
  const std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    ++g_failures;
    return;
  }
  const std::vector<uint8_t> b = seed.Bytes();
  std::fwrite(b.data(), 1, b.size(), f);
  std::fclose(f);
  std::printf("%-60s %zu bytes\n", path.c_str(), b.size());
}

void CapiSeeds(const std::string& dir) {
  using namespace moe_ep_fuzz;
  using namespace moe_ep_fuzz::capi;
  // Valid calls, one feature each: the fuzzer mutates from working calls into the rules' corners.
  Write(dir, "round_v2", Seed().Op(kRound));
  Write(dir, "round_v2_twice", Seed().Op(kRound).Op(kRound).Set(kSeed, 7));
  Write(dir, "round_ep4_shared_quant_mask",
        Seed()
            .Op(kRound)
            .Set(kTopology, 1)
            .Set(kSharedExpertNum, 1)
            .Set(kSharedRankNum, 1)
            .Set(kMoeExpertNum, 6)
            .Set(kQuantMode, 2)
            .Set(kSmoothScales, 1)
            .Set(kMask, kMask1d)
            .Set(kMaskFill, kMaskPrefix)
            .Set(kCommQuantMode, 2));
  Write(dir, "round_tp", Seed().Op(kRound).Set(kTopology, 2));
  Write(dir, "round_v3_special_experts",
        Seed()
            .Op(kRound)
            .Set(kDispatchV3, 1)
            .Set(kZeroExperts, 1)
            .Set(kCopyExperts, 1)
            .Set(kConstExperts, 2)
            .Set(kTopK, 3));
  Write(dir, "round_addrmsnorm", Seed().Op(kRound).Set(kCombineOp, kCombineAddRmsNorm).Set(kSharedX, 0));
  Write(dir, "round_mask2d_padded_views",
        Seed().Op(kRound).Set(kMask, kMask2d).Set(kMaskFill, kMaskRandom).Set(kView, kViewPaddedRows));
  Write(dir, "round_broadcast_rows_view", Seed().Op(kRound).Set(kView, kViewBroadcastRows));
  Write(dir, "round_unequal_bs_global_bs",
        Seed().Op(kRound).Set(kGlobalBs, 16).SetRank(kBs, 0, 8).SetRank(kBs, 1, 3).Set(kSharedX, 1));
  Write(dir, "round_fp16_h7168", Seed().Op(kRound).Set(kXDtype, 1).Set(kHidden, 7168).Set(kBs, 2));
  Write(dir, "round_elastic_ep4_drop_rank3",
        Seed().Op(kRound).Set(kTopology, 1).Set(kDispatchV3, 1).Set(kElastic, kElasticValid).Set(kElasticDrop, 8));
  Write(dir, "round_elastic_swapped_tables",
        Seed().Op(kRound).Set(kTopology, 1).Set(kDispatchV3, 1).Set(kElastic, kElasticSwapped).Set(kElasticDrop, 8));
  Write(dir, "round_corrupt_assist_counts",
        Seed().Op(kRound).Set(kCorruptAssist, kCorruptRandom).Set(kCorruptCounts, kCorruptSmall));
  Write(dir, "dispatch_rank1_skips", Seed().Op(kDispatch).SetRank(kSkip, 1, 1).Op(kRound));
  Write(dir, "dispatch_null_and_bogus_tensors",
        Seed().Op(kDispatch).Set(kNullTensors, 1 << kSlotAssistOut).Op(kDispatch).Set(kBogusTensors, 1 << kSlotX));
  Write(dir, "dispatch_huge_view_dims", Seed().Op(kDispatch).Set(kView, kViewHugeDims).Op(kRound));
  Write(dir, "combine_made_up_handle", Seed().Op(kCombine).Set(kCorruptCounts, kCorruptAll).Set(kCorruptValue, 1));
  Write(dir, "reset_group16", Seed().Op(kReset).Set(kResetGroup, 1).Op(kReset).Set(kResetGroup, 1).Set(kNeedSync, 0));
  Write(dir, "reset_group16_random_mask",
        Seed().Op(kReset).Set(kResetGroup, 1).Set(kResetMask, kResetRandom).Set(kSeed, 3));
  Write(dir, "reset_topology_group", Seed().Op(kReset));
  Write(dir, "env_small_window_then_round", Seed().Op(kEnv).Set(kEnvBuffSize, 1).Op(kRound));
  Write(dir, "env_exec_timeout_then_skip", Seed().Op(kEnv).Set(kEnvExecTimeout, 1).Op(kRound).SetRank(kSkip, 0, 1));
  Write(dir, "env_atlas_a2_then_round", Seed().Op(kEnv).Set(kEnvSocName, 1).Op(kRound));
  Write(dir, "env_a2_hierarchy_then_round",
        Seed().Op(kEnv).Set(kEnvSocName, 1).Set(kEnvIntraPcie, 1).Set(kEnvIntraRoce, 1).Op(kRound));
  Write(dir, "join_four_ranks", Seed().Op(kJoin).Set(kJoinRanks, 4));
  Write(dir, "join_same_device", Seed().Op(kJoin).SetRank(kJoinDevice, 1, 0));
  Write(dir, "join_bad_root", Seed().Op(kJoin).Set(kJoinRoot, kRootRandomBytes).Op(kJoin).Set(kJoinRoot, kRootZeros));
  Write(dir, "tensor_overflowing_view",
        Seed().Op(kTensor).Set(kTensorDim0, int64_t{1} << 62).Set(kTensorStride0, 8).Set(kTensorStorage, 16));
  Write(dir, "tensor_odd_enums_and_memcpy",
        Seed().Op(kTensor).Set(kTensorDtype, 63).Set(kTensorFormat, -7).Set(kMallocSize, 100).Set(kCopyCount, 101));

  // The known defects (being fixed in src/ now; they may crash until then).
  // (a) CombineV2, 2 ranks, moeExpertNum 4, every expert id 1000.
  Write(dir, "known_a_combine_ids_1000",
        Seed().Op(kCombine).Set(kMoeExpertNum, 4).Set(kIdsMode, kIdsAll).Set(kIdsValue, 1000));
  // (b) DispatchV2, 2 ranks, moeExpertNum 2, K 2, Bs 8, every expert id 0 (a token names one expert twice).
  Write(dir, "known_b_dispatch_duplicate_ids",
        Seed().Op(kDispatch).Set(kMoeExpertNum, 2).Set(kTopK, 2).Set(kBs, 8).Set(kIdsMode, kIdsAll).Set(kIdsValue, 0));
  // (c) globalBs = 2^61.
  Write(dir, "known_c_global_bs_2pow61", Seed().Op(kRound).Set(kGlobalBs, int64_t{1} << 61));
  // (d) V3 elastic scale-down that drops one shared-expert replica: E 4, n_s 1, S 2, rank 1 gone.
  Write(dir, "known_d_elastic_drops_shared_replica",
        Seed()
            .Op(kRound)
            .Set(kTopology, 1)
            .Set(kDispatchV3, 1)
            .Set(kSharedExpertNum, 1)
            .Set(kSharedRankNum, 2)
            .Set(kMoeExpertNum, 4)
            .Set(kElastic, kElasticValid)
            .Set(kElasticDrop, 2));
  // (e) HCCL_BUFFSIZE=99999999999999999999 (choice 10), read when the round makes its communicators.
  Write(dir, "known_e_buffsize_20_digits", Seed().Op(kEnv).Set(kEnvBuffSize, 10).Op(kRound));
  // (f) HcclCommInitRootInfo with nRanks = 2^30 (one joiner).
  Write(dir, "known_f_root_info_2pow30_ranks", Seed().Op(kJoin).Set(kJoinRanks, int64_t{1} << 30).Set(kJoiners, 1));
  // (g) negative expert ids in combine (dispatch's were valid).
  Write(dir, "known_g_combine_negative_ids", Seed().Op(kRound).Set(kCombineIdsMode, kIdsAll).Set(kCombineIdsValue, -1));
  // Found by this fuzzer: aclDataTypeSize loads a C caller's aclDataType 1000 as the C++ enum (UBSan: invalid enum
  // load), where aclCreateTensor reads the raw value first.
  Write(dir, "known_h_acl_data_type_size_1000", Seed().Op(kTensor).Set(kTensorDtype, 1000));
}

void NativeSeeds(const std::string& dir) {
  using namespace moe_ep_fuzz;
  using namespace moe_ep_fuzz::native;
  Write(dir, "round_basic", Seed().Op(kRound));
  Write(dir, "round_into_twice", Seed().Op(kRound).Set(kInto, 1).Op(kRound).Set(kInto, 1).Set(kSeed, 5));
  Write(dir, "round_ep4_shared_quant_mask",
        Seed()
            .Op(kRound)
            .Set(kTopology, 1)
            .Set(kSharedExpertNum, 1)
            .Set(kSharedRankNum, 1)
            .Set(kMoeExpertNum, 6)
            .Set(kQuant, 2)
            .Set(kSmoothScales, 1)
            .Set(kMask, kMask1d)
            .Set(kMaskFill, kMaskPrefix)
            .Set(kCommQuant, 2));
  Write(dir, "round_tp", Seed().Op(kRound).Set(kTopology, 2));
  Write(dir, "round_special_experts",
        Seed().Op(kRound).Set(kZeroExperts, 1).Set(kCopyExperts, 1).Set(kConstExperts, 2).Set(kTopK, 3));
  Write(dir, "round_addrmsnorm", Seed().Op(kRound).Set(kCombineOp, kCombineAddRmsNorm));
  Write(dir, "round_strided_views_mask2d",
        Seed().Op(kRound).Set(kView, kViewStridedCols).Set(kMask, kMask2d).Set(kMaskFill, kMaskRandom));
  Write(dir, "round_negative_row_stride", Seed().Op(kRound).Set(kView, kViewNegativeRows));
  Write(dir, "round_survivors_drop_rank3",
        Seed().Op(kRound).Set(kTopology, 1).Set(kSurvivors, kSurvivorsValid).Set(kDropped, 8));
  Write(dir, "round_unequal_bs", Seed().Op(kRound).Set(kGlobalBs, 16).SetRank(kBs, 0, 8).SetRank(kBs, 1, 1));
  Write(dir, "round_corrupt_handle",
        Seed().Op(kRound).Set(kCorruptAssist, kCorruptRandom).Set(kHandleNumRows, 1000).Set(kCorruptCounts, 4));
  Write(dir, "round_handle_tensors_short", Seed().Op(kRound).Set(kHandleTensors, kHandleAssistShort));
  Write(dir, "round_expand_idx_mask_into",
        Seed()
            .Op(kRound)
            .Set(kExpandIdx, 1)
            .Set(kMask, kMask1d)
            .Set(kMaskFill, kMaskPrefix)
            .Op(kRound)
            .Set(kExpandIdx, 1)
            .Set(kInto, 1)
            .Set(kQuant, 2));
  Write(dir, "round_expand_idx_handle_flipped",
        Seed()
            .Op(kRound)
            .Set(kExpandIdx, 1)
            .Set(kHandleExpandIdx, 0)
            .Op(kRound)
            .Set(kHandleExpandIdx, 1)
            .Op(kCombine)
            .Set(kExpandIdx, 1));
  Write(dir, "dispatch_rank1_skips", Seed().Op(kDispatch).SetRank(kSkip, 1, 1).Op(kRound));
  Write(dir, "dispatch_null_views", Seed().Op(kDispatch).Set(kNullTensors, 1 << kSlotIds));
  Write(dir, "dispatch_overflowing_view", Seed().Op(kDispatch).Set(kView, kViewOverflowDims));
  Write(dir, "combine_made_up_handle", Seed().Op(kCombine));
  Write(dir, "reset_probe_masks",
        Seed().Op(kReset).Set(kProbe, 1).Op(kReset).Set(kResetMask, kResetRandom).Op(kReset).SetRank(kSkip, 1, 1));
  Write(dir, "groups_small_window_then_round", Seed().Op(kGroups).Set(kWindowBytes, 1).Op(kRound));
  Write(dir, "groups_throwaway_sizes",
        Seed().Op(kGroups).Set(kGroupSize, 0).Op(kGroups).Set(kGroupSize, 3).Set(kTimeoutMs, -1));
  Write(dir, "env_timeout_garbage_then_round",
        Seed().Op(kEnv).Set(kEnvTimeoutMs, 4).Op(kGroups).Set(kTimeoutMs, 2).Op(kRound));
  Write(dir, "tensor_odd_shapes",
        Seed()
            .Op(kTensor)
            .Set(kTensorDims, 2)
            .Set(kTensorDim0, -1)
            .Op(kTensor)
            .Set(kTensorDtype, 200)
            .Set(kTensorDim0, int64_t{1} << 62)
            .Set(kTensorDim0 + 1, 8)
            .Set(kTensorStride0, -4));

  // The known defects, as the native API meets them.
  Write(dir, "known_a_combine_ids_1000",
        Seed().Op(kCombine).Set(kMoeExpertNum, 4).Set(kCombineIdsMode, kIdsAll).Set(kCombineIdsValue, 1000));
  Write(dir, "known_b_dispatch_duplicate_ids",
        Seed().Op(kDispatch).Set(kMoeExpertNum, 2).Set(kTopK, 2).Set(kBs, 8).Set(kIdsMode, kIdsAll).Set(kIdsValue, 0));
  Write(dir, "known_c_global_bs_2pow61", Seed().Op(kRound).Set(kGlobalBs, int64_t{1} << 61));
  Write(dir, "known_d_survivors_drop_shared_replica",
        Seed()
            .Op(kRound)
            .Set(kTopology, 1)
            .Set(kSharedExpertNum, 1)
            .Set(kSharedRankNum, 2)
            .Set(kMoeExpertNum, 4)
            .Set(kSurvivors, kSurvivorsValid)
            .Set(kDropped, 2));
  // (e) as MOE_EP_WINDOW_MB (choice 6: 20 digits), read when the groups are made (window_bytes 0 = the variable).
  Write(dir, "known_e_window_mb_20_digits",
        Seed().Op(kEnv).Set(kEnvWindowMb, 6).Op(kGroups).Set(kWindowBytes, 2).Op(kRound));
  // (f) as CreateThreadGroups(2^30).
  Write(dir, "known_f_thread_groups_2pow30", Seed().Op(kGroups).Set(kGroupSize, int64_t{1} << 30));
  Write(dir, "known_g_combine_negative_ids", Seed().Op(kRound).Set(kCombineIdsMode, kIdsAll).Set(kCombineIdsValue, -1));
  // (h) Dispatch allocated one rank's outputs (H 65536, 16 GiB) before checking that the window holds the call.
  Write(dir, "known_h_outputs_of_a_call_the_window_cannot_hold",
        Seed().Op(kRound).Set(kTopology, 1).Set(kGlobalBs, 65536).SetRank(kHidden, 3, 65536));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_ROOT   (writes CORPUS_ROOT/capi/* and CORPUS_ROOT/native/*)\n", argv[0]);
    return 2;
  }
  const std::string root = argv[1];
  CapiSeeds(root + "/capi");
  NativeSeeds(root + "/native");
  return g_failures == 0 ? 0 : 1;
}
