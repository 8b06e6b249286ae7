// Outputs as torch tensors (DLPack capsules over pooled blocks) or numpy arrays (a capsule owns the block).
#include "outputs.h"

#include <pybind11/numpy.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "buffer_pool.h"
#include "dlpack.h"
#include "moe_ep/error.h"
#include "tensor_arg.h"

namespace py = pybind11;

namespace moe_ep::python {
namespace {

// Set once on import (set_tensor_types) and kept for the life of the process: never destroyed, so that
// no Python object is released after the interpreter is gone.
struct TensorTypes {
  py::object from_dlpack;  // torch.utils.dlpack.from_dlpack, or None
  py::object bf16;         // moe_ep.bf16
};
TensorTypes& Types() {
  static auto* types = new TensorTypes;
  return *types;
}

// A torch output's memory and the DLPack description of it, freed by the consumer's deleter call (from
// whichever thread drops the tensor's last reference: nothing here touches Python).
struct DlpackOutput {
  explicit DlpackOutput(size_t bytes) : block(bytes) {}
  PooledBlock block;
  std::vector<int64_t> shape, strides;
  dlpack::ManagedTensor managed{};
};

void DeleteDlpackOutput(dlpack::ManagedTensor* managed) { delete static_cast<DlpackOutput*>(managed->manager_ctx); }

// A capsule that torch never took (its conversion failed) still owns its tensor.
void DeleteUnusedCapsule(PyObject* capsule) {
  if (!PyCapsule_IsValid(capsule, dlpack::kCapsuleName)) return;  // renamed "used_dltensor": torch owns it
  auto* managed = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(capsule, dlpack::kCapsuleName));
  managed->deleter(managed);
}

dlpack::DataType DlpackType(DType dtype) {
  const auto bits = static_cast<uint8_t>(8 * DTypeSize(dtype));
  switch (dtype) {
    case DType::kBf16:
      return {dlpack::kBfloat, bits, 1};
    case DType::kFp16:
    case DType::kFloat32:
      return {dlpack::kFloat, bits, 1};
    case DType::kInt8:
    case DType::kInt32:
    case DType::kInt64:
      return {dlpack::kInt, bits, 1};
    case DType::kBool:
      break;
  }
  throw Error(ErrorCode::kInternal, std::string("moe_ep Python binding: no output has dtype ") + DTypeName(dtype));
}

py::dtype NumpyType(DType dtype) {
  switch (dtype) {
    case DType::kBf16:  // bit patterns in uint16, wrapped in moe_ep.bf16
      return py::dtype::of<uint16_t>();
    case DType::kFp16:
      return py::dtype("float16");
    case DType::kFloat32:
      return py::dtype::of<float>();
    case DType::kInt8:
      return py::dtype::of<int8_t>();
    case DType::kInt32:
      return py::dtype::of<int32_t>();
    case DType::kInt64:
      return py::dtype::of<int64_t>();
    case DType::kBool:
      break;
  }
  throw Error(ErrorCode::kInternal, std::string("moe_ep Python binding: no output has dtype ") + DTypeName(dtype));
}

size_t ByteCount(DType dtype, const std::vector<int64_t>& shape) {
  uint64_t n = DTypeSize(dtype);
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n) || n > (uint64_t{1} << 48)) {
      std::string dims;
      for (int64_t e : shape) dims += (dims.empty() ? "" : ", ") + std::to_string(e);
      throw Error(ErrorCode::kInvalidParam, std::string("an output of ") + DTypeName(dtype) + " (" + dims +
                                                ") has a negative dimension or more than 2^48 bytes");
    }
  }
  return n;
}

Output TorchOutput(DType dtype, const std::vector<int64_t>& shape, size_t bytes, bool poison) {
  auto out = std::make_unique<DlpackOutput>(bytes);
  if (poison) std::memset(out->block.data(), 0xA5, bytes);
  out->shape = shape;
  out->strides = StridesOf(TensorView(out->block.data(), dtype, shape));
  out->managed.dl_tensor = {out->block.data(),
                            {dlpack::kCpu, 0},
                            static_cast<int32_t>(shape.size()),
                            DlpackType(dtype),
                            out->shape.data(),
                            out->strides.data(),
                            0};
  out->managed.manager_ctx = out.get();
  out->managed.deleter = &DeleteDlpackOutput;
  TensorView view(out->block.data(), dtype, shape, out->strides);
  PyObject* raw = PyCapsule_New(&out->managed, dlpack::kCapsuleName, &DeleteUnusedCapsule);
  if (raw == nullptr) throw py::error_already_set();
  out.release();  // the capsule owns it now
  auto capsule = py::reinterpret_steal<py::object>(raw);
  return {Types().from_dlpack(capsule), std::move(view)};
}

Output NumpyOutput(DType dtype, const std::vector<int64_t>& shape, size_t bytes, bool poison) {
  auto block = std::make_unique<PooledBlock>(bytes);
  if (poison) std::memset(block->data(), 0xA5, bytes);
  void* data = block->data();
  py::capsule owner(block.get(), [](void* p) { delete static_cast<PooledBlock*>(p); });
  block.release();
  std::vector<int64_t> strides = StridesOf(TensorView(data, dtype, shape));
  std::vector<py::ssize_t> byte_strides(strides.begin(), strides.end());
  for (auto& s : byte_strides) s *= static_cast<py::ssize_t>(DTypeSize(dtype));
  py::array array(NumpyType(dtype), std::vector<py::ssize_t>(shape.begin(), shape.end()), byte_strides, data, owner);
  if (dtype == DType::kBf16 && Types().bf16.is_none()) {
    throw Error(ErrorCode::kInternal, "moe_ep Python binding: a bf16 numpy output before set_tensor_types");
  }
  py::object object = dtype == DType::kBf16 ? Types().bf16(array) : py::object(array);
  return {std::move(object), TensorView(data, dtype, shape, std::move(strides))};
}

}  // namespace

Output NewOutput(DType dtype, const std::vector<int64_t>& shape, bool torch, bool poison) {
  const size_t bytes = ByteCount(dtype, shape);
  if (torch && Types().from_dlpack.is_none()) {
    throw Error(ErrorCode::kInternal, "moe_ep Python binding: a torch output without torch");
  }
  return torch ? TorchOutput(dtype, shape, bytes, poison) : NumpyOutput(dtype, shape, bytes, poison);
}

void BindOutputs(py::module_& m) {
  Types().from_dlpack = py::none();
  Types().bf16 = py::none();
  m.def("set_tensor_types", [](py::object from_dlpack, py::object bf16) {
    Types().from_dlpack = std::move(from_dlpack);
    Types().bf16 = std::move(bf16);
  });
}

}  // namespace moe_ep::python
