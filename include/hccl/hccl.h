/* CANN-compatible HCCL communicators (moe_ep). Each communicator owns a window of HCCL_BUFFSIZE MB
 * (default 200; a configuration's hcclBufferSize) per rank, reserved up front and committed only as it is used. */
#ifndef MOE_EP_HCCL_HCCL_H_
#define MOE_EP_HCCL_HCCL_H_

#include <stddef.h>
#include <string.h>

#include "acl/acl.h"
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
/* HcclCommInitRootInfo with a configuration (HcclCommConfigInit first; every rank passes the same one). */
HCCL_API HcclResult HcclCommInitRootInfoConfig(uint32_t nRanks, const HcclRootInfo *rootInfo, uint32_t rank,
                                               const HcclCommConfig *config, HcclComm *comm);
/* Joins rank `rank` of the group a rank table file describes (JSON: "server_list", each server's "device" list of
 * {"device_id", "rank_id"}) on the calling thread's current device, which must be that rank's "device_id". Ranks
 * of a one-server table meet over shared memory (threads or processes of this host); a table of several servers
 * needs mpirun, rank r being MPI_COMM_WORLD's rank r. Returns when all ranks have joined, or HCCL_E_TIMEOUT
 * after HCCL_CONNECT_TIMEOUT seconds. */
HCCL_API HcclResult HcclCommInitClusterInfo(const char *clusterInfo, uint32_t rank, HcclComm *comm);
HCCL_API HcclResult HcclCommInitClusterInfoConfig(const char *clusterInfo, uint32_t rank, HcclCommConfig *config,
                                                  HcclComm *comm);
/* The group name that the aclnn operators take (groupEp / groupTp); commName holds COMM_NAME_MAX_LENGTH. */
HCCL_API HcclResult HcclGetCommName(HcclComm comm, char *commName);
HCCL_API HcclResult HcclGetRankId(HcclComm comm, uint32_t *rank);
HCCL_API HcclResult HcclGetRankSize(HcclComm comm, uint32_t *rankSize);
/* Destroying a communicator twice, or one never created, returns HCCL_E_PARA; a null one HCCL_E_PTR. */
HCCL_API HcclResult HcclCommDestroy(HcclComm comm);
HCCL_API const char *HcclGetErrorString(HcclResult code);

/* Fills `config` with the defaults: nothing set, so the environment decides (HCCL_BUFFSIZE, HCCL_EXEC_TIMEOUT)
 * and moe_ep names the communicator. The first bytes record the structure's size and version. */
static inline void HcclCommConfigInit(HcclCommConfig *config) {
  struct ConfigHeader {
    size_t size;
    uint32_t magic_word;
    uint32_t version;
    uint64_t reserved;
  } header;
  if (config == NULL) return;
  memset(config, 0, sizeof(*config));
  header.size = sizeof(*config);
  header.magic_word = HCCL_COMM_CONFIG_MAGIC_WORD;
  header.version = HCCL_COMM_CONFIG_VERSION;
  header.reserved = 0;
  memcpy(config->reserved, &header, sizeof(header));
  config->hcclBufferSize = HCCL_COMM_BUFFSIZE_CONFIG_NOT_SET;
  config->hcclDeterministic = HCCL_COMM_DETERMINISTIC_CONFIG_NOT_SET;
  config->hcclOpExpansionMode = HCCL_COMM_DEFAULT_OP_EXPANSION_MODE;
  config->hcclRdmaTrafficClass = HCCL_COMM_TRAFFIC_CLASS_CONFIG_NOT_SET;
  config->hcclRdmaServiceLevel = HCCL_COMM_SERVICE_LEVEL_CONFIG_NOT_SET;
  config->hcclExecTimeOut = HCCL_COMM_EXECTIMEOUT_CONFIG_NOT_SET;
  config->hcclQos = HCCL_COMM_QOS_CONFIG_NOT_SET;
  config->hcclSymWinMaxMemSizePerRank = HCCL_DEFAULT_SYMMETRIC_MEMORY_STRIDE;
}

#ifdef __cplusplus
}
#endif

#endif  // MOE_EP_HCCL_HCCL_H_
