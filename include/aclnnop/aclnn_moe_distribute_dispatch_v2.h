/* CANN-compatible aclnnMoeDistributeDispatchV2 (moe_ep): sends each token to its top-K experts' ranks (and
 * shared-expert ranks). Two phases: GetWorkspaceSize validates every rule (161001 / 161002 / 561002, message in
 * aclGetRecentErrMsg) and builds the executor; the second call enqueues it on the stream. */
#ifndef MOE_EP_ACLNNOP_ACLNN_MOE_DISTRIBUTE_DISPATCH_V2_H_
#define MOE_EP_ACLNNOP_ACLNN_MOE_DISTRIBUTE_DISPATCH_V2_H_

#include "aclnn/aclnn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

ACLNN_API aclnnStatus aclnnMoeDistributeDispatchV2GetWorkspaceSize(
    const aclTensor *x, const aclTensor *expertIds, const aclTensor *scalesOptional,
    const aclTensor *xActiveMaskOptional, const aclTensor *expertScalesOptional, const char *groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t quantMode,
    int64_t globalBs, int64_t expertTokenNumsType, const char *commAlg, aclTensor *expandXOut,
    aclTensor *dynamicScalesOut, aclTensor *assistInfoForCombineOut, aclTensor *expertTokenNumsOut,
    aclTensor *epRecvCountsOut, aclTensor *tpRecvCountsOut, aclTensor *expandScalesOut, uint64_t *workspaceSize,
    aclOpExecutor **executor);

ACLNN_API aclnnStatus aclnnMoeDistributeDispatchV2(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                                   aclrtStream stream);

#ifdef __cplusplus
}
#endif

#endif  // MOE_EP_ACLNNOP_ACLNN_MOE_DISTRIBUTE_DISPATCH_V2_H_
