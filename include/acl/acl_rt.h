/* CANN-compatible runtime API (moe_ep emulation on the host): virtual devices, contexts, asynchronous
 * streams, events and "device" memory, which is ordinary host memory. */
#ifndef MOE_EP_ACL_ACL_RT_H_
#define MOE_EP_ACL_ACL_RT_H_

#include "acl/acl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  ACL_MEM_MALLOC_HUGE_FIRST = 0,
  ACL_MEM_MALLOC_HUGE_ONLY = 1,
  ACL_MEM_MALLOC_NORMAL_ONLY = 2,
  ACL_MEM_MALLOC_HUGE_FIRST_P2P = 3,
  ACL_MEM_MALLOC_HUGE_ONLY_P2P = 4,
  ACL_MEM_MALLOC_NORMAL_ONLY_P2P = 5,
  ACL_MEM_MALLOC_HUGE1G_ONLY = 6,
  ACL_MEM_MALLOC_HUGE1G_ONLY_P2P = 7,
  /* flags that may be OR-ed with one of the above (none changes anything on a host) */
  ACL_MEM_TYPE_LOW_BAND_WIDTH = 0x0100,
  ACL_MEM_TYPE_HIGH_BAND_WIDTH = 0x1000,
  ACL_MEM_ACCESS_USER_SPACE_READONLY = 0x100000,
} aclrtMemMallocPolicy;

typedef enum {
  ACL_MEMCPY_HOST_TO_HOST = 0,
  ACL_MEMCPY_HOST_TO_DEVICE = 1,
  ACL_MEMCPY_DEVICE_TO_HOST = 2,
  ACL_MEMCPY_DEVICE_TO_DEVICE = 3,
  ACL_MEMCPY_DEFAULT = 4,
  ACL_MEMCPY_HOST_TO_BUF_TO_DEVICE = 5,
  ACL_MEMCPY_INNER_DEVICE_TO_DEVICE = 6,
  ACL_MEMCPY_INTER_DEVICE_TO_DEVICE = 7,
} aclrtMemcpyKind;

/* aclInit may be called once (a second call returns ACL_ERROR_REPEAT_INITIALIZE); configPath may be null. */
ACL_FUNC_VISIBILITY aclError aclInit(const char *configPath);
ACL_FUNC_VISIBILITY aclError aclFinalize();

/* Virtual devices: MOE_EP_DEVICE_COUNT of them (default 16). */
ACL_FUNC_VISIBILITY aclError aclrtGetDeviceCount(uint32_t *count);
ACL_FUNC_VISIBILITY aclError aclrtSetDevice(int32_t deviceId);
ACL_FUNC_VISIBILITY aclError aclrtGetDevice(int32_t *deviceId);
ACL_FUNC_VISIBILITY aclError aclrtResetDevice(int32_t deviceId);
/* Waits for every stream of the current device. Reports a stream's failure once (later calls return
 * ACL_SUCCESS) and leaves it for that stream's own synchronize; the stream's next failure is the next call's. */
ACL_FUNC_VISIBILITY aclError aclrtSynchronizeDevice();
/* The SoC the operators behave as: MOE_EP_SOC_NAME, default "Ascend910_9391" (Atlas A3); an Ascend910B<n>
 * name selects Atlas A2. NULL (aclGetRecentErrMsg says why) when the variable names no known SoC. */
ACL_FUNC_VISIBILITY const char *aclrtGetSocName();

ACL_FUNC_VISIBILITY aclError aclrtCreateContext(aclrtContext *context, int32_t deviceId);
ACL_FUNC_VISIBILITY aclError aclrtDestroyContext(aclrtContext context);
ACL_FUNC_VISIBILITY aclError aclrtSetCurrentContext(aclrtContext context);
ACL_FUNC_VISIBILITY aclError aclrtGetCurrentContext(aclrtContext *context);

/* Streams run their tasks in launch order on a worker of their own, never blocking the launcher (but for
 * aclrtMemcpyAsync of ordinary host memory, below). */
ACL_FUNC_VISIBILITY aclError aclrtCreateStream(aclrtStream *stream);
/* aclrtCreateStreamWithConfig's flags (bits; others are ignored, giving an aclrtCreateStream stream):
 * FAST_LAUNCH changes nothing here (a launch is already a queue append). FAST_SYNC is for a thread that
 * synchronizes right after it launches: while the stream is in use, a launch does not wake its worker;
 * the synchronize runs the task on the calling thread (one with a timeout wakes the worker instead), or
 * the worker, which looks at the queue every millisecond meanwhile, starts it. A task nobody
 * synchronizes may start up to 1 ms late. */
#define ACL_STREAM_FAST_LAUNCH 0x00000001U
#define ACL_STREAM_FAST_SYNC 0x00000002U
/* priority is ignored, as on Atlas A2 / A3, where it is reserved. */
ACL_FUNC_VISIBILITY aclError aclrtCreateStreamWithConfig(aclrtStream *stream, uint32_t priority, uint32_t flag);
ACL_FUNC_VISIBILITY aclError aclrtDestroyStream(aclrtStream stream);
ACL_FUNC_VISIBILITY aclError aclrtSynchronizeStream(aclrtStream stream);
/* timeout in ms, -1 waits forever; on expiry returns ACL_ERROR_RT_STREAM_SYNC_TIMEOUT (tasks go on). */
ACL_FUNC_VISIBILITY aclError aclrtSynchronizeStreamWithTimeout(aclrtStream stream, int32_t timeout);

/* Events. A record is a task of its stream: the event is complete once the stream ran its last record (an event
 * never recorded is complete), and the time it ran is what aclrtEventElapsedTime measures. aclrtStreamWaitEvent makes
 * the stream wait for the event's last record made before the call (later records do not change what it waits
 * for), for at most the longer of MOE_EP_TIMEOUT_MS and HCCL_EXEC_TIMEOUT (then its task fails with a timeout naming
 * the event). Every creation flag gives the same event. */
typedef enum {
  ACL_EVENT_STATUS_COMPLETE = 0,
  ACL_EVENT_STATUS_NOT_READY = 1,
  ACL_EVENT_STATUS_RESERVED = 2,
} aclrtEventStatus;
typedef enum {
  ACL_EVENT_RECORDED_STATUS_NOT_READY = 0,
  ACL_EVENT_RECORDED_STATUS_COMPLETE = 1,
} aclrtEventRecordedStatus;
#define ACL_EVENT_SYNC 0x00000001U
#define ACL_EVENT_CAPTURE_STREAM_PROGRESS 0x00000002U
#define ACL_EVENT_TIME_LINE 0x00000008U
ACL_FUNC_VISIBILITY aclError aclrtCreateEvent(aclrtEvent *event);
ACL_FUNC_VISIBILITY aclError aclrtCreateEventWithFlag(aclrtEvent *event, uint32_t flag);
ACL_FUNC_VISIBILITY aclError aclrtCreateEventExWithFlag(aclrtEvent *event, uint32_t flag);
ACL_FUNC_VISIBILITY aclError aclrtDestroyEvent(aclrtEvent event);
ACL_FUNC_VISIBILITY aclError aclrtRecordEvent(aclrtEvent event, aclrtStream stream);
/* Once the stream reaches it: the event is as new (complete, nothing to time). */
ACL_FUNC_VISIBILITY aclError aclrtResetEvent(aclrtEvent event, aclrtStream stream);
ACL_FUNC_VISIBILITY aclError aclrtStreamWaitEvent(aclrtStream stream, aclrtEvent event);
ACL_FUNC_VISIBILITY aclError aclrtSynchronizeEvent(aclrtEvent event);
/* timeout in ms, -1 waits forever, 0 only looks; on expiry returns ACL_ERROR_RT_EVENT_SYNC_TIMEOUT. */
ACL_FUNC_VISIBILITY aclError aclrtSynchronizeEventWithTimeout(aclrtEvent event, int32_t timeout);
ACL_FUNC_VISIBILITY aclError aclrtQueryEventStatus(aclrtEvent event, aclrtEventRecordedStatus *status);
ACL_FUNC_VISIBILITY aclError aclrtQueryEvent(aclrtEvent event, aclrtEventStatus *status);
/* ms from the start event's last record to the end event's; both must have run. */
ACL_FUNC_VISIBILITY aclError aclrtEventElapsedTime(float *ms, aclrtEvent startEvent, aclrtEvent endEvent);

ACL_FUNC_VISIBILITY aclError aclrtMalloc(void **devPtr, size_t size, aclrtMemMallocPolicy policy);
ACL_FUNC_VISIBILITY aclError aclrtFree(void *devPtr);
ACL_FUNC_VISIBILITY aclError aclrtMallocHost(void **hostPtr, size_t size);
ACL_FUNC_VISIBILITY aclError aclrtFreeHost(void *hostPtr);
ACL_FUNC_VISIBILITY aclError aclrtMemcpy(void *dst, size_t destMax, const void *src, size_t count,
                                         aclrtMemcpyKind kind);
ACL_FUNC_VISIBILITY aclError aclrtMemset(void *devPtr, size_t maxCount, int32_t value, size_t count);
/* As in CANN: when dst or src is host memory that aclrtMallocHost did not give (a malloc'd or stack buffer), the
 * copy still runs in stream order, but the call returns only once it is done (with its failure, if any), so that
 * the buffer may be reused or read at once. Between aclrtMalloc and aclrtMallocHost memory it returns at once. */
ACL_FUNC_VISIBILITY aclError aclrtMemcpyAsync(void *dst, size_t destMax, const void *src, size_t count,
                                              aclrtMemcpyKind kind, aclrtStream stream);
ACL_FUNC_VISIBILITY aclError aclrtMemsetAsync(void *devPtr, size_t maxCount, int32_t value, size_t count,
                                              aclrtStream stream);

#ifdef __cplusplus
}
#endif

#endif  // MOE_EP_ACL_ACL_RT_H_
