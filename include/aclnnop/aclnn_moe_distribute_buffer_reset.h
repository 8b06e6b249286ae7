/* CANN-compatible aclnnMoeDistributeBufferReset (moe_ep): clears the EP windows, optionally syncing with the reachable
 * ranks. Two phases: GetWorkspaceSize validates every rule (161001 / 161002 / 561002, message in aclGetRecentErrMsg)
 * and builds the executor; the second call enqueues it on the stream. */
#ifndef MOE_EP_ACLNNOP_ACLNN_MOE_DISTRIBUTE_BUFFER_RESET_H_
#define MOE_EP_ACLNNOP_ACLNN_MOE_DISTRIBUTE_BUFFER_RESET_H_

#include "aclnn/aclnn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

ACLNN_API aclnnStatus aclnnMoeDistributeBufferResetGetWorkspaceSize(const aclTensor *elasticInfo, const char *groupEp,
                                                                    int32_t epWorldSize, int32_t needSync,
                                                                    uint64_t *workspaceSize, aclOpExecutor **executor);

ACLNN_API aclnnStatus aclnnMoeDistributeBufferReset(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                                    aclrtStream stream);

#ifdef __cplusplus
}
#endif

#endif  // MOE_EP_ACLNNOP_ACLNN_MOE_DISTRIBUTE_BUFFER_RESET_H_
