// The vocabulary of capi_fuzz inputs: opcodes, setting keys and their value codes (the byte format itself is in
// fuzz_support.h and README.md). Shared by the target and the seed writer, so seeds cannot drift from the decoder.
#pragma once

#include "fuzz_codes.h"  // IdsMode, MaskKind, MaskFill, Corrupt, RmsShapes

namespace moe_ep_fuzz::capi {

/// The first byte of an op, modulo kOpcodeCount.
enum Opcode : int {
  kRound = 0,     // dispatch, then combine over dispatch's outputs (optionally corrupted)
  kDispatch = 1,  // dispatch only
  kCombine = 2,   // combine over a made-up handle (assistInfo / epSendCounts from the corruption settings)
  kReset = 3,     // aclnnMoeDistributeBufferReset on the topology's EP group or on a 16-rank group
  kEnv = 4,       // sets environment variables for the rest of the input
  kJoin = 5,      // HcclGetRootInfo / HcclCommInitRootInfo with odd sizes, ranks, devices and root infos
  kTensor = 6,    // aclCreateTensor / getters / destroy, aclrtMalloc / Memcpy / Memset with odd arguments
  kOpcodeCount = 7,
};

/// Setting keys (1..127). "attr" keys pass their value unchanged as the operator attribute of that name.
enum Key : int {
  // Who takes part.
  kTopology = 1,      // 0: EP 2 (devices 0-1), 1: EP 4 (devices 0-3), 2: EP 2 x TP 2 (devices 0-3); value % 3
  kSkip = 2,          // per rank: 1 = this rank makes no call at all (a dead rank: its peers meet their deadline)
  kLaunchAnyway = 3,  // 1 = ranks whose phase one passed launch phase two even when another rank's phase one failed
  // Attributes (defaults make a valid call).
  kEpWorldSize = 4,       // attr epWorldSize (default: the EP group's size)
  kEpRankId = 5,          // attr epRankId (default: the rank's own)
  kMoeExpertNum = 6,      // attr moeExpertNum (default: 2 per MoE rank, 1 with TP)
  kSharedExpertNum = 7,   // attr sharedExpertNum (default 0)
  kSharedRankNum = 8,     // attr sharedExpertRankNum (default 0)
  kGlobalBs = 9,          // attr globalBs (default 0)
  kQuantMode = 10,        // attr quantMode (default 0)
  kTokenNumsType = 11,    // attr expertTokenNumsType (default 1)
  kTpWorldSize = 12,      // attr tpWorldSize (default 2 with TP, else 0)
  kTpRankId = 13,         // attr tpRankId (default: the rank's own)
  kExpertShardType = 14,  // attr expertShardType (default 0)
  kCommQuantMode = 15,    // attr commQuantMode (default 0)
  kOutDtype = 16,         // attr outDtype (default 0)
  kGroupListType = 17,    // attr groupListType (default 0)
  kZeroExperts = 18,      // attr zeroExpertNum (V3; default 0)
  kCopyExperts = 19,      // attr copyExpertNum (V3; default 0)
  kConstExperts = 20,     // attr constExpertNum (V3; default 0)
  kNormEpsBits = 21,      // attr normEps as the fp32 bit pattern in the low 32 bits (default 1e-6)
  // Shapes and dtypes.
  kBs = 22,        // tokens of this rank (default 4)
  kHidden = 23,    // H (default 1024)
  kTopK = 24,      // K (default 2)
  kXDtype = 25,    // raw aclDataType of x, expandX and the combine's half tensors (default ACL_BF16 = 27)
  kIdsDtype = 26,  // raw aclDataType of expertIds (default ACL_INT32 = 3)
  // Contents.
  kSeed = 27,        // seed of every tensor's contents (default 0)
  kIdsMode = 28,     // IdsMode below (dispatch's expertIds, and combine's unless kCombineIdsMode is set)
  kIdsValue = 29,    // the id of IdsMode::kAll / kOneWild
  kXFill = 30,       // Fill (fuzz_support.h) of x, expert outputs, sharedExpertX, oriX, residualX, gamma
  kScalesFill = 31,  // Fill of expertScales, smooth scales, the const-expert tensors
  kMask = 32,        // MaskKind below
  kMaskFill = 33,    // MaskFill below
  // Optional inputs.
  kSmoothScales = 34,     // 1 = pass scales (n_s + moe, H) fp32
  kSharedX = 35,          // 1 = sharedExpertX (Bs, H), 2 = (Bs, 1, H)
  kOriX = 36,             // 1 = oriX even without copy / const experts (default: with them)
  kConstTensors = 37,     // 1 = alpha1 / alpha2 / V even without const experts (default: with them)
  kElastic = 38,          // ElasticMode below (V3 only)
  kElasticDrop = 39,      // bit r = original rank r left the group (it makes no call)
  kElasticIndex = 40,     // entry poked by ElasticMode::kPoke
  kElasticValue = 41,     // value of kPoke / kAll
  kView = 42,             // ViewMode below for the inputs named by kViewTargets
  kViewTargets = 43,      // bit per input (TensorSlot); default kDataInputs
  kNullTensors = 44,      // bit per TensorSlot: pass nullptr there
  kBogusTensors = 45,     // bit per TensorSlot: pass a pointer that is no aclTensor there
  kReservedTensors = 46,  // bit per Reserved below: pass a real tensor for a reserved / A2-only parameter
  // Output and handle sizes (deltas are added to the size a valid call has; negatives shrink).
  kExpandRowsDelta = 47,  // dispatch expandXOut rows
  kAssistLenDelta = 48,   // assistInfoForCombine(Out) entries
  kRecvLenDelta = 49,     // epRecvCountsOut / epSendCounts entries
  kTokenNumsDelta = 50,   // expertTokenNumsOut entries
  kTpRecvLen = 51,        // tpRecvCountsOut / tpSendCounts entries (default: tpWorldSize)
  kExpertRowsDelta = 52,  // combine expandX rows
  kFormat = 53,           // raw aclFormat of x and combine's expandX (default ACL_FORMAT_ND = 2)
  // Names and strings.
  kGroupEp = 54,  // GroupName below (default: the rank's EP communicator)
  kGroupTp = 55,  // GroupName below (default: the rank's TP communicator with TP, else "")
  kCommAlg = 56,  // CommAlg below
  // Which operators.
  kDispatchV3 = 57,  // 0: DispatchV2, 1: V3 (default: V3 when elastic or special experts are set)
  kCombineOp = 58,   // CombineOp below (default: the dispatch's version)
  // Corrupted combine handles.
  kCorruptAssist = 59,    // Corrupt below, on assistInfoForCombine
  kCorruptCounts = 60,    // Corrupt below, on epSendCounts
  kCorruptTpCounts = 61,  // Corrupt below, on tpSendCounts
  kCorruptValue = 62,     // value of Corrupt::kAll / kPoke
  kCorruptIndex = 63,     // entry of Corrupt::kPoke
  kCombineIdsMode = 64,   // IdsMode for combine's expertIds (default: dispatch's ids, unchanged)
  kCombineIdsValue = 65,  // its kAll / kOneWild id
  kRmsShapes = 66,        // RmsShapes below
  // BufferReset.
  kNeedSync = 67,    // attr needSync (default 1)
  kResetMask = 68,   // ResetMask below
  kResetGroup = 69,  // 0: the topology's EP group (2 or 4 ranks: phase one rejects it), 1: a 16-rank group
  // Environment (kEnv): the value indexes the variable's choices in capi_fuzz.cc (0 = the harness's value).
  kEnvBuffSize = 80,        // HCCL_BUFFSIZE (read when a communicator is created)
  kEnvExecTimeout = 81,     // HCCL_EXEC_TIMEOUT (read when a communicator is created)
  kEnvTimeoutMs = 82,       // MOE_EP_TIMEOUT_MS
  kEnvConnectTimeout = 83,  // HCCL_CONNECT_TIMEOUT (read by HcclCommInitRootInfo)
  kEnvSocName = 84,         // MOE_EP_SOC_NAME (read by every operator call: Atlas A3 or A2 rules)
  kEnvIntraPcie = 106,      // HCCL_INTRA_PCIE_ENABLE (A2: with ROCE 0, commAlg "" means hierarchy)
  kEnvIntraRoce = 107,      // HCCL_INTRA_ROCE_ENABLE
  // HcclCommInitRootInfo (kJoin).
  kJoinRanks = 85,   // nRanks (low 32 bits; default 2)
  kJoinRank = 86,    // per joiner: its rank (low 32 bits; default: its index)
  kJoinRoot = 87,    // RootInfo below
  kJoiners = 88,     // threads that join (0..4; default min(nRanks, 4))
  kJoinDevice = 89,  // per joiner: aclrtSetDevice first (default: its index; -2 = no device set)
  // aclCreateTensor and the runtime (kTensor).
  kTensorDims = 90,      // viewDimsNum (0..8)
  kTensorDim0 = 91,      // view dims 0..3 (91..94; default 4); dims 4..7 are 1
  kTensorStride0 = 95,   // strides 0..3 (95..98; default row-major)
  kTensorOffset = 99,    // offset (default 0)
  kTensorStorage = 100,  // storage elements (default: what the view reaches); over 16 MiB: no storage at all
  kTensorDtype = 101,    // raw aclDataType (default 27), any 32-bit value
  kTensorFormat = 102,   // raw aclFormat (default 2), any 32-bit value
  kMallocSize = 103,     // aclrtMalloc size (default 64)
  kCopyCount = 104,      // aclrtMemcpy / aclrtMemset count into that allocation (default: its size)
  kCopyKind = 105,       // raw aclrtMemcpyKind (default 1)
};

/// elasticInfo (4 + 2E int32: [isScaledDown, newE, newS, newMoe, Table1 old->new, Table2 new->old]).
enum ElasticMode : int {
  kElasticNone = 0,
  kElasticValid = 1,      // the scale-down table of the ranks kElasticDrop keeps (roles and L kept)
  kElasticRandom = 2,     // every entry uniform in [-2, E + 2]
  kElasticSwapped = 3,    // valid, then two Table2 entries swapped (the maps disagree)
  kElasticPoke = 4,       // valid, then entry kElasticIndex = kElasticValue
  kElasticAll = 5,        // every entry = kElasticValue
  kElasticLonger = 6,     // valid plus one entry (wrong length)
  kElasticNotScaled = 7,  // isScaledDown 0, yet the dropped ranks stay away
};

/// The layout of input tensors.
enum ViewMode : int {
  kViewContiguous = 0,
  kViewPaddedRows = 1,      // row stride cols + 3, offset 5
  kViewStridedCols = 2,     // column stride 2, row stride 2 * cols + 1, offset 1
  kViewBroadcastRows = 3,   // row stride 0: every row is the same storage
  kViewColumnMajor = 4,     // strides (1, rows)
  kViewHugeDims = 5,        // dim 0 = 2^62 over a small storage: aclCreateTensor must refuse it
  kViewEmpty = 6,           // dim 0 = 0
  kViewOverflowStride = 7,  // row stride 2^62: the reach overflows int64
};

/// Bits of kNullTensors / kBogusTensors / kViewTargets.
enum TensorSlot : int {
  kSlotX = 0,
  kSlotIds,
  kSlotScales,
  kSlotMask,
  kSlotElastic,
  kSlotExpandXOut,
  kSlotDynScalesOut,
  kSlotAssistOut,
  kSlotTokenNumsOut,
  kSlotRecvOut,
  kSlotTpRecvOut,
  kSlotExpertOut = 11,
  kSlotCombineIds,
  kSlotAssist,
  kSlotSendCounts,
  kSlotExpertScales,
  kSlotTpSendCounts,
  kSlotCombineMask,
  kSlotSharedX,
  kSlotCombineElastic,
  kSlotOriX,
  kSlotAlpha1,
  kSlotAlpha2,
  kSlotConstV,
  kSlotResidual,
  kSlotGamma,
  kSlotXOut,
  kSlotYOut,
  kSlotRstdOut,
  kSlotCount = 29,
};

/// The default kViewTargets: the data inputs. The handle's int32 tables (assistInfo, counts, elasticInfo) keep
/// contiguous views unless named, since a broadcast table is one repeated entry.
constexpr unsigned kDataInputs = 1u << kSlotX | 1u << kSlotIds | 1u << kSlotScales | 1u << kSlotMask |
                                 1u << kSlotExpertOut | 1u << kSlotCombineIds | 1u << kSlotExpertScales |
                                 1u << kSlotCombineMask | 1u << kSlotSharedX | 1u << kSlotOriX | 1u << kSlotConstV |
                                 1u << kSlotResidual;

/// Bits of kReservedTensors.
enum Reserved : int {
  kReservedActivationScale = 0,
  kReservedWeightScale,
  kReservedGroupList,
  kReservedCombineExpandScales,
  kReservedDispatchExpertScales,
  kReservedDispatchExpandScalesOut,
};

enum GroupName : int {
  kGroupOwn = 0,
  kGroupNull = 1,
  kGroupEmpty = 2,
  kGroupUnknown = 3,
  kGroupTooLong = 4,
  kGroupOther = 5,
  kGroup127 = 6,
};
enum CommAlg : int {
  kAlgEmpty = 0,
  kAlgNull = 1,
  kAlgFullmeshV1 = 2,
  kAlgFullmeshV2 = 3,
  kAlgHierarchy = 4,
  kAlgJunk = 5
};
enum CombineOp : int { kCombineV2 = 0, kCombineV3 = 1, kCombineAddRmsNorm = 2 };

enum ResetMask : int {
  kResetParticipants = 0,  // 1 for the ranks that call, 0 elsewhere
  kResetRandom = 1,        // random 0/1
  kResetAll = 2,           // every entry = kCorruptValue
  kResetAllOnes = 3,       // every rank, present or not
  kResetLonger = 4,        // one entry too many
  kResetInt64 = 5,         // int64 dtype
  kReset2d = 6,            // shape (E, 1)
  kResetSelf = 7,          // only the calling rank
};

enum RootInfo : int {
  kRootGood = 0,
  kRootRandomBytes = 1,
  kRootMagicOnly = 2,
  kRootZeros = 3,
  kRootUnterminated = 4,
  kRootPerJoiner = 5,  // each joiner asks HcclGetRootInfo for its own (nobody meets)
};

}  // namespace moe_ep_fuzz::capi
