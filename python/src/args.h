// The named arguments moe_ep's Python modules hand to the extension (a dict per call): each key read once,
// each value converted with an error naming it, and any key nobody read reported (a bug of the caller).
#pragma once

#include <pybind11/pybind11.h>
#include <xmmintrin.h>

#include <algorithm>
#include <string>
#include <unordered_map>
#include <vector>

#include "moe_ep/error.h"
#include "tensor_arg.h"

namespace moe_ep::python {

// The interned Python str of a string literal, made on its first use and kept (by the literal's address): a call
// reads some 30 keys, and making each key's str anew cost about as much as the lookup itself. Under the GIL.
inline PyObject* InternedKey(const char* key) {
  static auto* interned = new std::unordered_map<const char*, PyObject*>;  // never freed: outlives the interpreter
  auto [at, inserted] = interned->try_emplace(key, nullptr);
  if (inserted) {
    at->second = PyUnicode_InternFromString(key);
    if (at->second == nullptr) {
      interned->erase(at);
      throw pybind11::error_already_set();
    }
  }
  return at->second;
}

class Args {
 public:
  /// `what` names the call in messages ("npu_moe_distribute_dispatch_v2", "dispatch arguments").
  Args(std::string what, pybind11::dict d) : what_(std::move(what)), d_(std::move(d)) {}

  /// `key` must be a string literal (kept by address); each key is read once.
  pybind11::handle operator[](const char* key) {
    read_.push_back(key);
    PyObject* value = PyDict_GetItemWithError(d_.ptr(), InternedKey(key));  // borrowed: the dict keeps it alive
    if (value == nullptr) {
      if (PyErr_Occurred()) throw pybind11::error_already_set();
      throw Error(ErrorCode::kInternal, "moe_ep Python binding: " + what_ + " lacks " + key);
    }
    return value;
  }
  template <typename T>
  T As(const char* key) {
    return ArgAs<T>((*this)[key], what_.c_str(), key);
  }
  int64_t Int(const char* key) { return As<int64_t>(key); }
  /// A real number as the float nearest to it (ties to even, subnormals kept), whatever floating-point settings
  /// the interpreter's thread has (torch.set_flush_denormal, a rounding mode): the conversion follows them, and the
  /// library computes in the default ones (its src/base/floating_point.h, which this extension cannot include).
  float NearestFloat(const char* key) {
    const volatile double value = As<double>(key);  // volatile: the conversion stays between the two settings
    const unsigned saved = _mm_getcsr();
    _mm_setcsr(0x1F80);  // exceptions masked, round to nearest, no flush-to-zero
    const volatile float nearest = static_cast<float>(value);
    _mm_setcsr(saved);
    return nearest;
  }
  TensorView View(const char* key) { return ViewOf((*this)[key], key); }

  void CheckAllRead() const {
    // Every key read was there and each is read once: as many reads as keys means none is left unread.
    if (read_.size() == d_.size()) return;
    for (auto item : d_) {
      const auto key = item.first.cast<std::string>();
      if (std::none_of(read_.begin(), read_.end(), [&](const char* r) { return key == r; })) {
        throw Error(ErrorCode::kInternal, "moe_ep Python binding: " + what_ + " got unknown argument " + key);
      }
    }
  }

 private:
  std::string what_;
  pybind11::dict d_;
  std::vector<const char*> read_;
};

}  // namespace moe_ep::python
