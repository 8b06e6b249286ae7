// Output memory of the Python package: blocks that stay mapped when Python lets go of them, so that the
// next call's outputs of the same size cost no page faults (torch and numpy map fresh pages for every
// large tensor, and a first touch of a page costs microseconds: more than the copy into it).
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>

namespace moe_ep::python {

/// One block of the pool (uninitialised, page-aligned); destroyed, it returns to the pool.
class PooledBlock {
 public:
  explicit PooledBlock(size_t bytes);
  ~PooledBlock();
  PooledBlock(const PooledBlock&) = delete;
  PooledBlock& operator=(const PooledBlock&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_;
  size_t bytes_;  // as asked; the mapping is rounded up to whole pages
};

/// Registers pool_stats() (for tests) in `m`.
void BindBufferPool(pybind11::module_& m);

}  // namespace moe_ep::python
