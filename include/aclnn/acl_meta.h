/* CANN-compatible tensor descriptors for aclnn operators (moe_ep): a view (shape, strides in elements,
 * offset in elements) over storage that starts at tensorData. */
#ifndef MOE_EP_ACLNN_ACL_META_H_
#define MOE_EP_ACLNN_ACL_META_H_

#include "acl/acl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct aclTensor aclTensor;
typedef int32_t aclnnStatus;

/* Returns nullptr (and sets aclGetRecentErrMsg) when a pointer is null, a dimension or stride is negative,
 * or the view reaches past the storage. */
ACL_FUNC_VISIBILITY aclTensor *aclCreateTensor(const int64_t *viewDims, uint64_t viewDimsNum, aclDataType dataType,
                                               const int64_t *stride, int64_t offset, aclFormat format,
                                               const int64_t *storageDims, uint64_t storageDimsNum, void *tensorData);
ACL_FUNC_VISIBILITY aclnnStatus aclDestroyTensor(const aclTensor *tensor);
/* *viewDims is allocated with new[]; the caller delete[]s it. */
ACL_FUNC_VISIBILITY aclnnStatus aclGetViewShape(const aclTensor *tensor, int64_t **viewDims, uint64_t *viewDimsNum);
ACL_FUNC_VISIBILITY aclnnStatus aclGetDataType(const aclTensor *tensor, aclDataType *dataType);
ACL_FUNC_VISIBILITY aclnnStatus aclGetFormat(const aclTensor *tensor, aclFormat *format);

#ifdef __cplusplus
}
#endif

#endif  // MOE_EP_ACLNN_ACL_META_H_
