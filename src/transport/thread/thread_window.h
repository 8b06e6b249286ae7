// The thread transport: the ranks of a group are threads of one process; each rank's region is an
// anonymous mapping that the others reach by pointer.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "transport/window.h"

namespace moe_ep::transport {

/// Creates the windows of an in-process group of `size` ranks, each with `data_bytes` of data area
/// (reserved, committed only when touched) and `flag_count` user flags. windows[r] belongs to the
/// thread that runs rank r.
std::vector<std::unique_ptr<Window>> CreateThreadWindows(int size, uint64_t data_bytes, uint64_t flag_count,
                                                         const std::string& name);

}  // namespace moe_ep::transport
