// The vocabulary of native_fuzz inputs: opcodes, setting keys and their value codes (the byte format itself is in
// fuzz_support.h and README.md). Shared by the target and the seed writer, so seeds cannot drift from the decoder.
#pragma once

#include "fuzz_codes.h"  // IdsMode, MaskKind, MaskFill, Corrupt, RmsShapes

namespace moe_ep_fuzz::native {

/// The first byte of an op, modulo kOpcodeCount.
enum Opcode : int {
  kRound = 0,     // Dispatch(Into), then Combine / CombineInto / CombineAddRmsNormInto with its (corrupted) handle
  kDispatch = 1,  // Dispatch(Into) and DispatchReceiveRows only
  kCombine = 2,   // combine with a handle made up from the settings
  kReset = 3,     // BufferReset (odd masks, need_sync) and ProbeReachable
  kGroups = 4,    // GroupOptions for the following ops, and CreateThreadGroups with odd sizes / options
  kEnv = 5,       // sets environment variables for the rest of the input
  kTensor = 6,    // moe_ep::Tensor / TensorView / DTypeSize on odd shapes and dtypes
  kOpcodeCount = 7,
};

/// Setting keys (1..127).
enum Key : int {
  // Who takes part.
  kTopology = 1,  // 0: EP 2, 1: EP 4, 2: EP 2 x TP 2 (each rank also in a TP pair); value % 3
  kSkip = 2,      // per rank: 1 = this rank makes no call (a dead rank: its peers meet their deadline)
  // ExpertLayout (defaults make a valid call).
  kMoeExpertNum = 6,  // moe_expert_num (default: 2 per MoE rank, 1 with TP)
  kSharedExpertNum = 7,
  kSharedRankNum = 8,
  kGlobalBs = 9,
  kQuant = 10,       // DispatchOptions::quant, raw (0 none, 2 int8; anything else is an invalid Quant)
  kCumulative = 11,  // DispatchOptions::cumulative_token_nums
  kExpandIdx = 12,   // DispatchOptions::expand_idx_layout (Atlas A2's assist layout)
  kCommQuant = 15,   // CombineOptions::comm_quant, raw
  kZeroExperts = 18,
  kCopyExperts = 19,
  kConstExperts = 20,
  kNormEpsBits = 21,  // norm_eps as fp32 bits (default 1e-6)
  // Shapes and dtypes.
  kBs = 22,        // tokens (default 4)
  kHidden = 23,    // H (default 64: the native profile allows any H >= 1)
  kTopK = 24,      // K (default 2)
  kXDtype = 25,    // raw DType of x (default 0 = bf16); any byte
  kIdsDtype = 26,  // raw DType of expert_ids (default 4 = int32)
  // Contents (as capi_fuzz).
  kSeed = 27,
  kIdsMode = 28,  // IdsMode below
  kIdsValue = 29,
  kXFill = 30,  // Fill (fuzz_support.h)
  kScalesFill = 31,
  kMask = 32,      // MaskKind below
  kMaskFill = 33,  // MaskFill below
  kSmoothScales = 34,
  kSharedX = 35,       // 1 = shared_expert_x (Bs, H), 2 = (Bs, 1, H)
  kOriX = 36,          // 1 = ori_x even without copy / const experts
  kConstTensors = 37,  // 1 = const alpha1 / alpha2 / V even without const experts
  // Elastic scale-down (ExpertLayout::survivors).
  kSurvivors = 38,       // SurvivorsMode below
  kDropped = 39,         // bit r = rank r left (it makes no call)
  kSurvivorsValue = 41,  // the value of SurvivorsMode::kAll
  kResetFirst = 40,      // 1 (default with valid survivors) = the survivors BufferReset(ep, survivors) first
  // Views.
  kView = 42,         // ViewMode below, for the inputs kViewTargets names
  kViewTargets = 43,  // bit per Slot; default all
  kNullTensors = 44,  // bit per Slot: pass an absent view (data == nullptr) there
  kOutView = 45,      // ViewMode of the *Into outputs (strided ones are taken; overlapping ones refused)
  // Output sizes for the *Into calls (deltas on the size of a valid call).
  kInto = 46,  // 0: Dispatch / Combine (outputs made by the library), 1: DispatchInto / CombineInto
  kExpandRowsDelta = 47,
  kAssistLenDelta = 48,
  kRecvLenDelta = 49,
  kTokenNumsDelta = 50,
  kTpRecvLen = 51,        // tp_recv_counts entries (default: 2 with TP, else 1)
  kExpertRowsDelta = 52,  // combine expert_out rows
  kCombineOp = 58,        // CombineOp below
  // The DispatchHandle handed to combine.
  kCorruptAssist = 59,    // Corrupt below, on handle.assist_info
  kCorruptCounts = 60,    // Corrupt below, on handle.ep_recv_counts
  kCorruptTpCounts = 61,  // Corrupt below, on handle.tp_recv_counts
  kCorruptValue = 62,
  kCorruptIndex = 63,
  kCombineIdsMode = 64,  // IdsMode: replace handle.expert_ids contents
  kCombineIdsValue = 65,
  kRmsShapes = 66,        // RmsShapes below
  kHandleNumRows = 70,    // handle.num_rows (default: as dispatch set it)
  kHandleBs = 71,         // handle.bs
  kHandleHidden = 72,     // handle.hidden
  kHandleTopK = 73,       // handle.top_k
  kHandleDtype = 74,      // handle.dtype, raw byte
  kHandleMoe = 75,        // handle.experts.moe_expert_num
  kHandleShared = 76,     // handle.experts.shared_expert_rank_num
  kHandleGlobalBs = 77,   // handle.experts.global_bs
  kHandleTensors = 78,    // HandleTensors below: replace the handle's tensors by odd ones
  kHandleSurvivors = 79,  // SurvivorsMode for handle.experts.survivors (default: unchanged)
  kHandleExpandIdx = 87,  // handle.expand_idx_layout (default: as dispatch set it, or kExpandIdx)
  // BufferReset / ProbeReachable.
  kNeedSync = 67,   // default 1
  kResetMask = 68,  // ResetMask below
  kProbe = 69,      // 1 = ProbeReachable(ep, wait = kProbeWaitMs) before the reset
  kProbeWaitMs = 80,
  // GroupOptions (kGroups): kept for the rest of the input; the groups are made again with them.
  kTimeoutMs = 81,    // GroupOptions::timeout (default 300 ms; 0 = MOE_EP_TIMEOUT_MS)
  kWindowBytes = 82,  // GroupOptions::window_bytes (default 64 MiB; 0 = MOE_EP_WINDOW_MB)
  kGroupName = 83,    // GroupName below
  kGroupSize = 84,    // CreateThreadGroups(size) of a throwaway group (default: none made)
  // Environment (kEnv): the value indexes the variable's choices in native_fuzz.cc (0 = the harness's value).
  kEnvTimeoutMs = 85,  // MOE_EP_TIMEOUT_MS
  kEnvWindowMb = 86,   // MOE_EP_WINDOW_MB
  // Tensors (kTensor).
  kTensorDtype = 90,    // raw DType byte
  kTensorDims = 91,     // number of dims (0..4)
  kTensorDim0 = 92,     // dims 0..3 (92..95; default 3)
  kTensorStride0 = 96,  // strides 0..3 of a TensorView (96..99; default: none given)
};

enum SurvivorsMode : int {
  kSurvivorsNone = 0,
  kSurvivorsValid = 1,    // 0 for the kDropped ranks, 1 for the rest
  kSurvivorsRandom = 2,   // each entry uniform in [-1, 2]
  kSurvivorsLonger = 3,   // valid plus one entry
  kSurvivorsAll = 4,      // every entry = kSurvivorsValue
  kSurvivorsAllOnes = 5,  // all 1, yet the kDropped ranks stay away
  kSurvivorsSelfOut = 6,  // valid, but the calling rank marks itself 0
};

/// Layouts of the inputs (the harness allocates exactly what each view reaches).
enum ViewMode : int {
  kViewContiguous = 0,
  kViewPaddedRows = 1,     // row stride cols + 3
  kViewStridedCols = 2,    // column stride 2
  kViewBroadcastRows = 3,  // row stride 0
  kViewColumnMajor = 4,    // strides (1, rows)
  kViewNegativeRows = 5,   // row stride -cols, data at the last row
  kViewNegativeDim = 6,    // dim 0 = -1 (over 64 bytes of storage)
  kViewOverflowDims = 7,   // dim 0 = 2^62: the element count overflows int64 (over 64 bytes of storage)
  kViewShortStrides = 8,   // one stride fewer than dims
  kViewFlat = 9,           // the same elements as one dimension
};

/// Bits of kNullTensors / kViewTargets.
enum Slot : int {
  kSlotX = 0,
  kSlotIds,
  kSlotScales,
  kSlotMask,
  kSlotExpertOut,
  kSlotExpertScales,
  kSlotSharedX,
  kSlotOriX,
  kSlotAlpha1,
  kSlotAlpha2,
  kSlotConstV,
  kSlotResidual,
  kSlotGamma,
  kSlotExpandXOut,
  kSlotDynScalesOut,
  kSlotAssistOut,
  kSlotTokenNumsOut,
  kSlotRecvOut,
  kSlotTpRecvOut,
  kSlotXOut,
  kSlotYOut,
  kSlotRstdOut,
  kSlotCount = 22,
};

enum CombineOp : int { kCombinePlain = 0, kCombineAddRmsNorm = 1 };

/// Odd tensors in a DispatchHandle.
enum HandleTensors : int {
  kHandleKeep = 0,
  kHandleEmpty = 1,        // every tensor default-constructed (absent)
  kHandleIdsInt64 = 2,     // expert_ids as int64
  kHandleAssistShort = 3,  // assist_info with 3 * num_rows - 1 entries
  kHandleCountsShort = 4,  // ep_recv_counts one entry short
  kHandleIds1d = 5,        // expert_ids flattened to 1-D
  kHandleMaskWrong = 6,    // active_mask of shape (Bs + 1,)
};

enum ResetMask : int {
  kResetDefault = 0,  // the empty span (all ranks)
  kResetParticipants = 1,
  kResetRandom = 2,
  kResetAll = 3,
  kResetLonger = 4,
  kResetShorter = 5,
  kResetSelf = 6,
};

enum GroupName : int { kNameDefault = 0, kNameEmpty = 1, kNameLong = 2, kNameBinary = 3 };

}  // namespace moe_ep_fuzz::native
