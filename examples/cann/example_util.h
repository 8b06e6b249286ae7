// Helpers shared by the CANN C API examples: status checks that print aclGetRecentErrMsg(), bf16
// conversion, a device tensor with its aclTensor, the per-device setup of the documented samples
// (one context and one stream per device, one thread per rank), and the main() of a one-group example.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "acl/acl.h"
#include "aclnn/acl_meta.h"
#include "hccl/hccl.h"

// Returns whether `status` (an aclError, aclnnStatus or HcclResult) is success; if not, prints the call,
// the code and the message the runtime recorded for this thread.
inline bool Ok(int status, const char* call) {
  if (status == 0) return true;
  const char* message = aclGetRecentErrMsg();
  std::fprintf(stderr, "[ERROR] %s returned %d: %s\n", call, status, message ? message : "(no message)");
  return false;
}

inline float Bf16ToFloat(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &wide, sizeof(f));
  return f;
}

// Round to nearest, ties to even (finite values).
inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// A contiguous ND tensor in device memory (in moe_ep, "device" memory is host memory reached through
// aclrtMalloc / aclrtMemcpy like on the NPU), with the aclTensor that describes it.
class DeviceTensor {
 public:
  DeviceTensor() = default;
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;
  ~DeviceTensor() {
    if (tensor_ != nullptr) aclDestroyTensor(tensor_);
    if (addr_ != nullptr) aclrtFree(addr_);
  }

  // Allocates the tensor and copies `host` (one element per entry of the shape's product) into it.
  template <typename T>
  bool Create(const std::vector<int64_t>& shape, aclDataType dtype, const std::vector<T>& host) {
    std::vector<int64_t> strides(shape.size(), 1);
    for (size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
    bytes_ = host.size() * sizeof(T);
    if (!Ok(aclrtMalloc(&addr_, bytes_, ACL_MEM_MALLOC_HUGE_FIRST), "aclrtMalloc")) return false;
    if (!Write(host)) return false;
    tensor_ = aclCreateTensor(shape.data(), shape.size(), dtype, strides.data(), 0, ACL_FORMAT_ND, shape.data(),
                              shape.size(), addr_);
    if (tensor_ != nullptr) return true;
    const char* message = aclGetRecentErrMsg();
    std::fprintf(stderr, "[ERROR] aclCreateTensor failed: %s\n", message ? message : "(no message)");
    return false;
  }
  template <typename T>
  bool Write(const std::vector<T>& host) {
    return Ok(aclrtMemcpy(addr_, bytes_, host.data(), host.size() * sizeof(T), ACL_MEMCPY_HOST_TO_DEVICE),
              "aclrtMemcpy (host to device)");
  }
  template <typename T>
  bool Read(std::vector<T>& host) const {
    host.resize(bytes_ / sizeof(T));
    return Ok(aclrtMemcpy(host.data(), bytes_, addr_, bytes_, ACL_MEMCPY_DEVICE_TO_HOST),
              "aclrtMemcpy (device to host)");
  }
  aclTensor* get() const { return tensor_; }

 private:
  void* addr_ = nullptr;
  aclTensor* tensor_ = nullptr;
  size_t bytes_ = 0;
};

// One device as the documented samples set it up in main: a context and a stream.
struct Device {
  int32_t id = 0;
  aclrtContext context = nullptr;
  aclrtStream stream = nullptr;
};

inline bool SetUpDevices(std::vector<Device>& devices) {
  for (size_t i = 0; i < devices.size(); ++i) {
    Device& d = devices[i];
    d.id = static_cast<int32_t>(i);
    if (!Ok(aclrtSetDevice(d.id), "aclrtSetDevice")) return false;
    if (!Ok(aclrtCreateContext(&d.context, d.id), "aclrtCreateContext")) return false;
    if (!Ok(aclrtCreateStream(&d.stream), "aclrtCreateStream")) return false;  // on the new current context
  }
  return true;
}

inline void TearDownDevices(std::vector<Device>& devices) {
  for (Device& d : devices) {
    aclrtDestroyStream(d.stream);
    aclrtDestroyContext(d.context);
    aclrtResetDevice(d.id);
  }
}

// Waits for the enqueued operator, as the samples do (10 s, then it is an error). After a timeout the
// task goes on until its own deadline (HCCL_EXEC_TIMEOUT / MOE_EP_TIMEOUT_MS): wait for that too, so that
// the caller does not free buffers the task still uses.
inline bool Synchronize(aclrtStream stream, const char* op) {
  const int status = aclrtSynchronizeStreamWithTimeout(stream, 10000);
  if (status == 0) return true;
  std::fprintf(stderr, "[ERROR] %s on the stream: ", op);
  Ok(status, "aclrtSynchronizeStreamWithTimeout");
  if (status == ACL_ERROR_RT_STREAM_SYNC_TIMEOUT) Ok(aclrtSynchronizeStream(stream), "aclrtSynchronizeStream");
  return false;
}

// Runs rank_main(rank) on one thread per rank; returns how many ranks failed.
template <typename RankMain>
int RunRanks(int ranks, RankMain rank_main) {
  std::vector<int> failed(ranks, 0);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) threads.emplace_back([&, r] { failed[r] = rank_main(r) ? 0 : 1; });
  for (std::thread& t : threads) t.join();
  int total = 0;
  for (int f : failed) total += f;
  return total;
}

// The last lines of an example: "[ERROR] <failed> of <ranks> ranks failed" or "[INFO] <what> on <ranks>
// devices: all OK"; returns main's exit status.
inline int Report(int failed, int ranks, const char* what) {
  if (failed != 0) {
    std::printf("[ERROR] %d of %d ranks failed\n", failed, ranks);
    return 1;
  }
  std::printf("[INFO] %s on %d devices: all OK\n", what, ranks);
  return 0;
}

// The main() of an example with one HCCL group over devices 0 .. ranks-1: aclInit, then `ready()` when
// given (false ends the program, say on the wrong SoC), one context and stream per device, HcclCommInitAll,
// rank_main(device, comm) -> bool on one thread per rank, teardown, aclFinalize and Report.
template <typename RankMain>
int RunExample(int ranks, const char* what, RankMain rank_main, bool (*ready)() = nullptr) {
  if (!Ok(aclInit(nullptr), "aclInit")) return 1;
  if (ready != nullptr && !ready()) return 1;
  std::vector<Device> devices(ranks);
  if (!SetUpDevices(devices)) return 1;
  std::vector<int32_t> members(ranks);
  std::vector<HcclComm> comms(ranks, nullptr);
  for (int d = 0; d < ranks; ++d) members[d] = d;
  if (!Ok(HcclCommInitAll(ranks, members.data(), comms.data()), "HcclCommInitAll")) return 1;

  const int failed = RunRanks(ranks, [&](int d) { return rank_main(devices[d], comms[d]); });

  for (HcclComm comm : comms) HcclCommDestroy(comm);
  TearDownDevices(devices);
  aclFinalize();
  return Report(failed, ranks, what);
}
