// Runs one function per rank on its own thread and rethrows the first failure (by rank order).
#pragma once

#include <exception>
#include <functional>
#include <vector>

namespace moe_ep::verify {

/// Calls body(rank) for rank in [0, n) concurrently; returns each rank's exception (or nullptr).
std::vector<std::exception_ptr> RunRanksCollect(int n, const std::function<void(int)>& body);
/// As RunRanksCollect, but rethrows the lowest rank's exception.
void RunRanks(int n, const std::function<void(int)>& body);

}  // namespace moe_ep::verify
