/* CANN-compatible HCCL communicators (moe_ep). Each communicator owns a window of HCCL_BUFFSIZE MB
 * (default 200) per rank, reserved up front and committed only as it is used. */
#ifndef MOE_EP_HCCL_HCCL_H_
#define MOE_EP_HCCL_HCCL_H_

#include "hccl/hccl_types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HCCL_API __attribute__((visibility("default")))

/* Creates the ndev communicators of one group in this process; comms[i] lives on device devices[i]. */
HCCL_API HcclResult HcclCommInitAll(uint32_t ndev, int32_t *devices, HcclComm *comms);
/* Root info for HcclCommInitRootInfo: call on rank 0, hand the bytes to the other ranks (threads of this
 * process, or other processes: through a file, a pipe, MPI_Bcast...). It holds an unguessable token that
 * names the group's shared-memory segments, and the host it was made on. In an MPI job (the program
 * initialised MPI, or mpirun started it, in which case moe_ep initialises MPI) it also holds this
 * process's MPI rank: the group then meets over MPI and may span hosts (the calling process must be a
 * member; one rank of a group per process). */
HCCL_API HcclResult HcclGetRootInfo(HcclRootInfo *rootInfo);
/* Joins rank `rank` of an nRanks group on the calling thread's current device (ranks may be threads or
 * processes); returns when all ranks have joined, or HCCL_E_TIMEOUT after HCCL_CONNECT_TIMEOUT seconds
 * (default 120). */
HCCL_API HcclResult HcclCommInitRootInfo(uint32_t nRanks, const HcclRootInfo *rootInfo, uint32_t rank, HcclComm *comm);
/* The group name that the aclnn operators take (groupEp / groupTp); commName holds COMM_NAME_MAX_LENGTH. */
HCCL_API HcclResult HcclGetCommName(HcclComm comm, char *commName);
HCCL_API HcclResult HcclGetRankId(HcclComm comm, uint32_t *rank);
HCCL_API HcclResult HcclGetRankSize(HcclComm comm, uint32_t *rankSize);
/* Destroying a communicator twice, or one never created, returns HCCL_E_PARA. */
HCCL_API HcclResult HcclCommDestroy(HcclComm comm);
HCCL_API const char *HcclGetErrorString(HcclResult code);

#ifdef __cplusplus
}
#endif

#endif  // MOE_EP_HCCL_HCCL_H_
