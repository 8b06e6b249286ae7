/* CANN-compatible aclnn base (moe_ep): status codes and the executor of the two-phase operators. */
#ifndef MOE_EP_ACLNN_ACLNN_BASE_H_
#define MOE_EP_ACLNN_ACLNN_BASE_H_

#include "acl/acl_base.h"
#include "aclnn/acl_meta.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ACLNN_API __attribute__((visibility("default")))

typedef struct aclOpExecutor aclOpExecutor;

/* An executor from phase one runs once, and is gone after its launch. Made repeatable, it runs at each launch (with
 * its tensors' contents at that time) until aclDestroyAclOpExecutor; destroying one not launched drops its work. */
ACLNN_API aclnnStatus aclSetAclOpExecutorRepeatable(aclOpExecutor *executor);
ACLNN_API aclnnStatus aclDestroyAclOpExecutor(aclOpExecutor *executor);

#define ACLNN_SUCCESS 0
#define ACLNN_ERR_PARAM_NULLPTR 161001
#define ACLNN_ERR_PARAM_INVALID 161002
#define ACLNN_ERR_RUNTIME_ERROR 361001
#define ACLNN_ERR_INNER 561000
#define ACLNN_ERR_INNER_INFERSHAPE_ERROR 561001
#define ACLNN_ERR_INNER_TILING_ERROR 561002
#define ACLNN_ERR_INNER_FIND_KERNEL_ERROR 561003
#define ACLNN_ERR_INNER_CREATE_EXECUTOR 561101
#define ACLNN_ERR_INNER_NULLPTR 561103

#ifdef __cplusplus
}
#endif

#endif  // MOE_EP_ACLNN_ACLNN_BASE_H_
