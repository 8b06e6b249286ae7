// ACL data types: their element sizes (aclDataTypeSize) and the moe_ep dtype each one maps to.
#include "cann/runtime/internal.h"

// Guarded like every entry point although the switch cannot throw: the test hook reaches it too. 0 on failure,
// as for a type without a fixed size.
// A C caller may pass any int: it is read raw first, since loading an out-of-range enum is undefined in C++.
extern "C" size_t aclDataTypeSize(aclDataType dataType) {
  return moe_ep::cann::GuardedValue("aclDataTypeSize", moe_ep::cann::ApiFamily::kAcl, size_t{0}, [&]() -> size_t {
    switch (moe_ep::cann::runtime::RawEnumValue(dataType)) {
      case ACL_INT8:
      case ACL_UINT8:
      case ACL_BOOL:
      case ACL_HIFLOAT8:
      case ACL_FLOAT8_E5M2:
      case ACL_FLOAT8_E4M3FN:
        return 1;
      case ACL_FLOAT16:
      case ACL_BF16:
      case ACL_INT16:
      case ACL_UINT16:
        return 2;
      case ACL_FLOAT:
      case ACL_INT32:
      case ACL_UINT32:
      case ACL_COMPLEX32:
        return 4;
      case ACL_INT64:
      case ACL_UINT64:
      case ACL_DOUBLE:
      case ACL_COMPLEX64:
        return 8;
      case ACL_COMPLEX128:
        return 16;
      default:
        return 0;  // no fixed byte size: undefined, string, and the sub-byte INT4 / UINT1
    }
  });
}

namespace moe_ep::cann {

bool ToDType(aclDataType acl, DType* out) {
  DType dtype;
  switch (acl) {
    case ACL_BF16:
      dtype = DType::kBf16;
      break;
    case ACL_FLOAT16:
      dtype = DType::kFp16;
      break;
    case ACL_FLOAT:
      dtype = DType::kFloat32;
      break;
    case ACL_INT8:
      dtype = DType::kInt8;
      break;
    case ACL_INT32:
      dtype = DType::kInt32;
      break;
    case ACL_INT64:
      dtype = DType::kInt64;
      break;
    case ACL_BOOL:
      dtype = DType::kBool;
      break;
    default:
      return false;
  }
  if (out != nullptr) *out = dtype;
  return true;
}

const char* AclDataTypeName(aclDataType acl) {
  switch (acl) {
    case ACL_FLOAT:
      return "ACL_FLOAT";
    case ACL_FLOAT16:
      return "ACL_FLOAT16";
    case ACL_INT8:
      return "ACL_INT8";
    case ACL_INT32:
      return "ACL_INT32";
    case ACL_UINT8:
      return "ACL_UINT8";
    case ACL_INT16:
      return "ACL_INT16";
    case ACL_UINT16:
      return "ACL_UINT16";
    case ACL_UINT32:
      return "ACL_UINT32";
    case ACL_INT64:
      return "ACL_INT64";
    case ACL_UINT64:
      return "ACL_UINT64";
    case ACL_DOUBLE:
      return "ACL_DOUBLE";
    case ACL_BOOL:
      return "ACL_BOOL";
    case ACL_STRING:
      return "ACL_STRING";
    case ACL_COMPLEX64:
      return "ACL_COMPLEX64";
    case ACL_COMPLEX128:
      return "ACL_COMPLEX128";
    case ACL_BF16:
      return "ACL_BF16";
    case ACL_INT4:
      return "ACL_INT4";
    case ACL_UINT1:
      return "ACL_UINT1";
    case ACL_COMPLEX32:
      return "ACL_COMPLEX32";
    case ACL_HIFLOAT8:
      return "ACL_HIFLOAT8";
    case ACL_FLOAT8_E5M2:
      return "ACL_FLOAT8_E5M2";
    case ACL_FLOAT8_E4M3FN:
      return "ACL_FLOAT8_E4M3FN";
    default:
      return "an unknown aclDataType";
  }
}

}  // namespace moe_ep::cann
