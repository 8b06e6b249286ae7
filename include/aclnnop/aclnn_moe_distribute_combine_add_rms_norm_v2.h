/* CANN-compatible aclnnMoeDistributeCombineAddRmsNormV2 (moe_ep): aclnnMoeDistributeCombineAddRmsNorm plus elastic
 * scale-down (elasticInfo) and the zero / copy / const special experts (oriX, constExpertAlpha1/2, constExpertV), as
 * CombineV3 adds them to CombineV2. Two phases: GetWorkspaceSize validates every rule (161001 / 161002 / 561002,
 * message in aclGetRecentErrMsg) and builds the executor; the second call enqueues it on the stream. */
#ifndef MOE_EP_ACLNNOP_ACLNN_MOE_DISTRIBUTE_COMBINE_ADD_RMS_NORM_V2_H_
#define MOE_EP_ACLNNOP_ACLNN_MOE_DISTRIBUTE_COMBINE_ADD_RMS_NORM_V2_H_

#include "aclnn/aclnn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

ACLNN_API aclnnStatus aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
    const aclTensor *expandX, const aclTensor *expertIds, const aclTensor *assistInfoForCombine,
    const aclTensor *epSendCounts, const aclTensor *expertScales, const aclTensor *residualX, const aclTensor *gamma,
    const aclTensor *tpSendCountsOptional, const aclTensor *xActiveMaskOptional,
    const aclTensor *activationScaleOptional, const aclTensor *weightScaleOptional, const aclTensor *groupListOptional,
    const aclTensor *expandScalesOptional, const aclTensor *sharedExpertXOptional, const aclTensor *elasticInfoOptional,
    const aclTensor *oriXOptional, const aclTensor *constExpertAlpha1Optional,
    const aclTensor *constExpertAlpha2Optional, const aclTensor *constExpertVOptional, const char *groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs,
    int64_t outDtype, int64_t commQuantMode, int64_t groupListType, const char *commAlg, float normEps,
    int64_t zeroExpertNum, int64_t copyExpertNum, int64_t constExpertNum, aclTensor *yOut, aclTensor *rstdOut,
    aclTensor *xOut, uint64_t *workspaceSize, aclOpExecutor **executor);

ACLNN_API aclnnStatus aclnnMoeDistributeCombineAddRmsNormV2(void *workspace, uint64_t workspaceSize,
                                                            aclOpExecutor *executor, aclrtStream stream);

#ifdef __cplusplus
}
#endif

#endif  // MOE_EP_ACLNNOP_ACLNN_MOE_DISTRIBUTE_COMBINE_ADD_RMS_NORM_V2_H_
