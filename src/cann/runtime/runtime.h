// What the aclnn and HCCL layers need from the runtime emulation: tensors as views, the calling thread's
// device, launching work on a stream, and the thread-local error message behind aclGetRecentErrMsg.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "acl/acl.h"
#include "aclnn/acl_meta.h"
#include "moe_ep/tensor.h"

// The C API's tensor descriptor: a view (shape, strides and offset in elements) over storage at `data`.
struct aclTensor {
  std::vector<int64_t> view_shape;
  std::vector<int64_t> strides;
  int64_t offset = 0;
  std::vector<int64_t> storage_shape;
  aclDataType dtype = ACL_DT_UNDEFINED;
  aclFormat format = ACL_FORMAT_ND;
  void* data = nullptr;
};

namespace moe_ep::cann {

/// True when `t` came from aclCreateTensor and was not destroyed since.
bool IsLiveTensor(const aclTensor* t);

/// The moe_ep dtype of an ACL dtype; false when moe_ep has no such type (the caller reports 161002).
bool ToDType(aclDataType acl, DType* out);
/// "ACL_BF16", ... for messages.
const char* AclDataTypeName(aclDataType acl);

/// The view of a tensor (data already advanced by the offset). Requires a representable dtype.
TensorView ViewOf(const aclTensor& t);

/// The virtual device the calling thread works on (aclrtSetDevice / aclrtSetCurrentContext), or -1.
int32_t CurrentDevice();
int32_t DeviceCount();

/// Records `message` as the calling thread's recent error (aclGetRecentErrMsg) and returns `code`.
int32_t Fail(int32_t code, const std::string& message);

/// One allocation of aclrtMalloc / aclrtMallocHost: where it starts, and its serial number (an allocation made at the
/// same address after it was given back is another).
struct AllocationId {
  const void* start = nullptr;
  uint64_t serial = 0;
  bool operator==(const AllocationId&) const = default;
};
/// The allocations holding `pointers` (ordinary memory has none), each once. A pointer into memory freed already
/// (which a task queued on a stream still uses) is an error (moe_ep::Error kInvalidParam) naming `what`.
std::vector<AllocationId> AllocationsHolding(const std::vector<const void*>& pointers, const std::string& what);

/// True for memory in an allocation of aclrtMalloc or aclrtMallocHost, whose address a program cannot change
/// between an operator's two phases (a stand-in the Python binding describes outputs with never is).
bool InAllocation(const void* p);

/// Why a tensor whose elements lie in the `bytes` bytes from `start` may not be used, in a message naming it `what`:
/// they point into memory freed already (which a task queued on a stream still uses), or run past the end of the
/// aclrtMalloc(Host) allocation holding `start`; "" when they may (ordinary host memory cannot be measured).
std::string TensorMemoryProblem(const void* start, uint64_t bytes, const std::string& what);

/// Keeps allocations from being given back while it lives: an aclrtFree(Host) of one meanwhile (a task queued on a
/// stream still uses it; on a device the program's bug) succeeds, and the memory goes when the last hold does,
/// instead of under the task.
class MemoryHold {
 public:
  /// Holds `ids`; one freed since they were found (or freed and allocated anew) is an error (moe_ep::Error
  /// kInvalidParam naming `what`), with nothing held.
  MemoryHold(std::vector<AllocationId> ids, const std::string& what);
  /// Holds the live allocations holding `pointers` now (the caller refused pointers into freed memory).
  static std::shared_ptr<const MemoryHold> Of(const std::vector<const void*>& pointers);
  ~MemoryHold();
  MemoryHold(const MemoryHold&) = delete;
  MemoryHold& operator=(const MemoryHold&) = delete;

 private:
  explicit MemoryHold(std::vector<AllocationId> held) : ids_(std::move(held)) {}  // held already
  std::vector<AllocationId> ids_;
};

/// The work of one launch. It throws moe_ep::Error (or any std::exception) to fail; the stream records
/// the failure (Stream: which ones) and its synchronize returns that code with the message.
using StreamTask = std::function<void()>;

/// Appends `task` to `stream` (nullptr: the default stream of the calling thread's current device) and
/// returns at once. Returns ACL_SUCCESS, or an error code after Fail() for a bad stream / no device.
/// `device` receives the device the stream belongs to when not null. A task that must run on `required_device`
/// (>= 0: an operator's communicators live there) on a stream of another device is refused with
/// ACL_ERROR_RT_STREAM_CONTEXT. Other failures (no thread for a new default stream, out of memory) are thrown, for
/// the calling entry point's guard to report in its family.
aclError LaunchOnStream(aclrtStream stream, const char* op_name, StreamTask task, int32_t* device = nullptr,
                        int32_t required_device = -1);

}  // namespace moe_ep::cann
