// aclTensor descriptors: creation with every bound checked, the registry of live ones, the getters, and
// the TensorView the operators read through.
#include <algorithm>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>

#include "aclnn/aclnn_base.h"
#include "cann/runtime/internal.h"

namespace moe_ep::cann {
namespace {

struct LiveTensors {
  std::mutex mu;
  std::unordered_set<const aclTensor*> set;
};

// Never destroyed: stream tasks may still look tensors up while the process exits.
LiveTensors& Live() {
  static auto* const live = new LiveTensors;
  return *live;
}

std::string Join(const int64_t* values, uint64_t n) {
  std::string text = "(";
  for (uint64_t i = 0; i < n; ++i) text += (i ? ", " : "") + std::to_string(values[i]);
  return text + ")";
}

// Every value an aclDataType or aclFormat object can hold: C++ gives both enums (enumerators -1 to 47)
// the range of a 7-bit signed integer. A C caller may pass any int, but not one aclTensor could store.
constexpr int64_t kMinAclEnumValue = -64;
constexpr int64_t kMaxAclEnumValue = 63;

bool StorableAclEnum(int64_t raw) { return raw >= kMinAclEnumValue && raw <= kMaxAclEnumValue; }

// The descriptor of aclCreateTensor's arguments, or an empty pointer after Fail() naming the broken rule.
// CANN checks only part of this; a view past its storage would be a silent overrun later, so all of it
// is checked here. Any data type and format is accepted: the operators reject what they cannot use. The
// enums come by reference so that a C caller's out-of-range value is checked before it is loaded.
std::unique_ptr<aclTensor> MakeTensor(const int64_t* view_dims, uint64_t n, const aclDataType& dtype,
                                      const int64_t* strides, int64_t offset, const aclFormat& format,
                                      const int64_t* storage_dims, uint64_t storage_n, void* data) {
  const std::string api = "aclCreateTensor";
  auto reject = [&](const std::string& why) {
    Fail(ACLNN_ERR_PARAM_INVALID, api + ": " + why);
    return std::unique_ptr<aclTensor>();
  };
  if (n > 0 && view_dims == nullptr) return reject("viewDims is nullptr but viewDimsNum is " + std::to_string(n));
  if (n > 0 && strides == nullptr) return reject("stride is nullptr but viewDimsNum is " + std::to_string(n));
  if (storage_n > 0 && storage_dims == nullptr) {
    return reject("storageDims is nullptr but storageDimsNum is " + std::to_string(storage_n));
  }
  if (offset < 0) return reject("offset " + std::to_string(offset) + " is negative");
  if (const int64_t raw = runtime::RawEnumValue(dtype); !StorableAclEnum(raw)) {
    return reject("dataType " + std::to_string(raw) + " is not an aclDataType value");
  }
  if (const int64_t raw = runtime::RawEnumValue(format); !StorableAclEnum(raw)) {
    return reject("format " + std::to_string(raw) + " is not an aclFormat value");
  }
  int64_t numel = 1;
  int64_t last = offset;  // the furthest element the view reaches, in elements from tensorData
  for (uint64_t d = 0; d < n; ++d) {
    if (view_dims[d] < 0) {
      return reject("viewDims " + Join(view_dims, n) + " has a negative dimension at index " + std::to_string(d));
    }
    if (strides[d] < 0) {
      return reject("stride " + Join(strides, n) + " has a negative stride at index " + std::to_string(d));
    }
    if (view_dims[d] == 0) numel = 0;
  }
  for (uint64_t d = 0; numel > 0 && d < n; ++d) {
    int64_t reach = 0;
    if (__builtin_mul_overflow(view_dims[d] - 1, strides[d], &reach) || __builtin_add_overflow(last, reach, &last)) {
      return reject("the view " + Join(view_dims, n) + " with strides " + Join(strides, n) + " and offset " +
                    std::to_string(offset) + " overflows int64");
    }
  }
  int64_t storage_numel = 1;
  for (uint64_t d = 0; d < storage_n; ++d) {
    if (storage_dims[d] < 0) {
      return reject("storageDims " + Join(storage_dims, storage_n) + " has a negative dimension at index " +
                    std::to_string(d));
    }
    if (__builtin_mul_overflow(storage_numel, storage_dims[d], &storage_numel)) {
      return reject("storageDims " + Join(storage_dims, storage_n) + " overflows int64");
    }
  }
  if (numel > 0 && last >= storage_numel) {
    return reject("the view " + Join(view_dims, n) + " with strides " + Join(strides, n) + " and offset " +
                  std::to_string(offset) + " reaches element " + std::to_string(last) + ", past the storage " +
                  Join(storage_dims, storage_n) + " of " + std::to_string(storage_numel) + " elements");
  }
  if (numel > 0 && data == nullptr) return reject("tensorData is nullptr but the view has elements");
  // In bytes too, for a dtype moe_ep knows: ViewOf advances tensorData by offset * the element size, and phase one
  // measures a view up to its furthest byte, below storage * the element size.
  if (DType known; ToDType(dtype, &known)) {
    int64_t bytes = 0;
    const auto size = static_cast<int64_t>(DTypeSize(known));
    if (__builtin_mul_overflow(storage_numel, size, &bytes) || __builtin_mul_overflow(offset, size, &bytes)) {
      return reject("the storage " + Join(storage_dims, storage_n) + " or the offset " + std::to_string(offset) +
                    " of " + std::to_string(size) + "-byte elements is more than 2^63 bytes");
    }
  }

  auto tensor = std::make_unique<aclTensor>();
  tensor->view_shape.assign(view_dims, view_dims + n);
  tensor->strides.assign(strides, strides + n);
  tensor->offset = offset;
  tensor->storage_shape.assign(storage_dims, storage_dims + storage_n);
  tensor->dtype = dtype;
  tensor->format = format;
  tensor->data = data;
  return tensor;
}

// ACLNN_SUCCESS for a live tensor; otherwise Fail()s (161001 for nullptr, 161002 for an unknown one).
aclnnStatus CheckTensor(const char* api, const aclTensor* tensor) {
  if (tensor == nullptr) return Fail(ACLNN_ERR_PARAM_NULLPTR, std::string(api) + ": parameter 'tensor' is nullptr");
  if (!IsLiveTensor(tensor)) {
    return Fail(ACLNN_ERR_PARAM_INVALID, std::string(api) + ": tensor " + runtime::HandleName(tensor) +
                                             " is not a live aclTensor (never created, or already destroyed)");
  }
  return ACLNN_SUCCESS;
}

aclnnStatus NullOutput(const char* api, const char* param) {
  return Fail(ACLNN_ERR_PARAM_NULLPTR, std::string(api) + ": parameter '" + param + "' is nullptr");
}

}  // namespace

bool IsLiveTensor(const aclTensor* t) {
  if (t == nullptr) return false;
  LiveTensors& live = Live();
  std::lock_guard<std::mutex> lock(live.mu);
  return live.set.count(t) != 0;
}

TensorView ViewOf(const aclTensor& t) {
  DType dtype;
  if (!ToDType(t.dtype, &dtype)) {
    throw Error(ErrorCode::kInvalidParam,
                "ViewOf: ACL data type " + std::to_string(static_cast<int>(t.dtype)) + " has no moe_ep dtype");
  }
  void* data = t.data == nullptr ? nullptr : static_cast<std::byte*>(t.data) + t.offset * DTypeSize(dtype);
  return TensorView(data, dtype, t.view_shape, t.strides);
}

}  // namespace moe_ep::cann

using moe_ep::cann::ApiFamily;
using moe_ep::cann::Fail;
using moe_ep::cann::Guarded;

extern "C" aclTensor* aclCreateTensor(const int64_t* viewDims, uint64_t viewDimsNum, aclDataType dataType,
                                      const int64_t* stride, int64_t offset, aclFormat format,
                                      const int64_t* storageDims, uint64_t storageDimsNum, void* tensorData) {
  aclTensor* const none = nullptr;
  return moe_ep::cann::GuardedValue("aclCreateTensor", ApiFamily::kAclnn, none, [&] {
    std::unique_ptr<aclTensor> tensor = moe_ep::cann::MakeTensor(viewDims, viewDimsNum, dataType, stride, offset,
                                                                 format, storageDims, storageDimsNum, tensorData);
    if (tensor == nullptr) return none;  // MakeTensor recorded why
    auto& live = moe_ep::cann::Live();
    std::lock_guard<std::mutex> lock(live.mu);
    live.set.insert(tensor.get());
    return tensor.release();
  });
}

extern "C" aclnnStatus aclDestroyTensor(const aclTensor* tensor) {
  return Guarded("aclDestroyTensor", ApiFamily::kAclnn, [&]() -> aclnnStatus {
    if (tensor == nullptr) return Fail(ACLNN_ERR_PARAM_NULLPTR, "aclDestroyTensor: parameter 'tensor' is nullptr");
    {
      auto& live = moe_ep::cann::Live();
      std::lock_guard<std::mutex> lock(live.mu);
      if (live.set.erase(tensor) == 0) {
        return Fail(ACLNN_ERR_PARAM_INVALID, "aclDestroyTensor: tensor " + moe_ep::cann::runtime::HandleName(tensor) +
                                                 " is not a live aclTensor (never created, or already destroyed)");
      }
    }
    delete tensor;
    return ACLNN_SUCCESS;
  });
}

extern "C" aclnnStatus aclGetViewShape(const aclTensor* tensor, int64_t** viewDims, uint64_t* viewDimsNum) {
  return Guarded("aclGetViewShape", ApiFamily::kAclnn, [&]() -> aclnnStatus {
    if (viewDims == nullptr) return moe_ep::cann::NullOutput("aclGetViewShape", "viewDims");
    if (viewDimsNum == nullptr) return moe_ep::cann::NullOutput("aclGetViewShape", "viewDimsNum");
    if (aclnnStatus status = moe_ep::cann::CheckTensor("aclGetViewShape", tensor); status != ACLNN_SUCCESS) {
      return status;
    }
    const size_t n = tensor->view_shape.size();
    auto* dims = new int64_t[n];  // the caller delete[]s it (the header's contract)
    std::copy(tensor->view_shape.begin(), tensor->view_shape.end(), dims);
    *viewDims = dims;
    *viewDimsNum = n;
    return ACLNN_SUCCESS;
  });
}

extern "C" aclnnStatus aclGetDataType(const aclTensor* tensor, aclDataType* dataType) {
  return Guarded("aclGetDataType", ApiFamily::kAclnn, [&]() -> aclnnStatus {
    if (dataType == nullptr) return moe_ep::cann::NullOutput("aclGetDataType", "dataType");
    if (aclnnStatus status = moe_ep::cann::CheckTensor("aclGetDataType", tensor); status != ACLNN_SUCCESS) {
      return status;
    }
    *dataType = tensor->dtype;
    return ACLNN_SUCCESS;
  });
}

extern "C" aclnnStatus aclGetFormat(const aclTensor* tensor, aclFormat* format) {
  return Guarded("aclGetFormat", ApiFamily::kAclnn, [&]() -> aclnnStatus {
    if (format == nullptr) return moe_ep::cann::NullOutput("aclGetFormat", "format");
    if (aclnnStatus status = moe_ep::cann::CheckTensor("aclGetFormat", tensor); status != ACLNN_SUCCESS) {
      return status;
    }
    *format = tensor->format;
    return ACLNN_SUCCESS;
  });
}
