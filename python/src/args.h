// The named arguments moe_ep's Python modules hand to the extension (a dict per call): each key read once,
// each value converted with an error naming it, and any key nobody read reported (a bug of the caller).
#pragma once

#include <pybind11/pybind11.h>

#include <algorithm>
#include <string>
#include <vector>

#include "moe_ep/error.h"
#include "tensor_arg.h"

namespace moe_ep::python {

class Args {
 public:
  /// `what` names the call in messages ("npu_moe_distribute_dispatch_v2", "dispatch arguments").
  Args(std::string what, pybind11::dict d) : what_(std::move(what)), d_(std::move(d)) {}

  pybind11::handle operator[](const char* key) {
    read_.emplace_back(key);
    if (!d_.contains(key)) throw Error(ErrorCode::kInternal, "moe_ep Python binding: " + what_ + " lacks " + key);
    return d_[key];
  }
  template <typename T>
  T As(const char* key) {
    return ArgAs<T>((*this)[key], what_ + ": " + key);
  }
  int64_t Int(const char* key) { return As<int64_t>(key); }
  TensorView View(const char* key) { return ViewOf((*this)[key], key); }

  void CheckAllRead() const {
    for (auto item : d_) {
      const auto key = item.first.cast<std::string>();
      if (std::find(read_.begin(), read_.end(), key) == read_.end()) {
        throw Error(ErrorCode::kInternal, "moe_ep Python binding: " + what_ + " got unknown argument " + key);
      }
    }
  }

 private:
  std::string what_;
  pybind11::dict d_;
  std::vector<std::string> read_;
};

}  // namespace moe_ep::python
