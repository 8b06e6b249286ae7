/* CANN-compatible ACL umbrella header (moe_ep): the runtime API and its base types. */
#ifndef MOE_EP_ACL_ACL_H_
#define MOE_EP_ACL_ACL_H_

#include "acl/acl_base.h"
#include "acl/acl_rt.h"

#endif  // MOE_EP_ACL_ACL_H_
