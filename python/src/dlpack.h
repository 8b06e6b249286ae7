// The DLPack exchange ABI (version 0.6, the one torch 1.13 reads): how the extension hands Python torch
// tensors over memory it allocated, without linking libtorch. Declared here from the open standard
// (dmlc/dlpack), since python3-torch ships no header of it.
#pragma once

#include <cstdint>

namespace moe_ep::python::dlpack {

enum DeviceType : int32_t { kCpu = 1 };
enum TypeCode : uint8_t { kInt = 0, kUInt = 1, kFloat = 2, kBfloat = 4 };

struct Device {
  DeviceType device_type;
  int32_t device_id;
};

struct DataType {
  uint8_t code;  // a TypeCode
  uint8_t bits;
  uint16_t lanes;
};

struct Tensor {
  void* data;
  Device device;
  int32_t ndim;
  DataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements
  uint64_t byte_offset;
};

/// What a "dltensor" capsule points to; the consumer calls deleter once it no longer needs the memory.
struct ManagedTensor {
  Tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(ManagedTensor* self);
};

/// The capsule's name before and after a consumer took ownership.
inline constexpr const char* kCapsuleName = "dltensor";

}  // namespace moe_ep::python::dlpack
