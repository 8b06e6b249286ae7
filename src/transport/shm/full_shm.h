// Explains the bus error of a write into a shared-memory window whose file system (/dev/shm) is full.
#pragma once

#include <cstdint>

namespace moe_ep::transport {

/// A window's segments are sparse files in /dev/shm whose pages are taken as rows land in them; when the file
/// system has no page left, the write that needs one gets SIGBUS and the process dies. While [begin, begin +
/// bytes) is watched, such a death first writes to standard error why (the file system's size and free space) and
/// what to do, then happens as it would have. A SIGBUS anywhere else goes to the handler installed before. Up to
/// 4096 ranges are watched at a time (a mapping past them dies unexplained). Thread-safe.
void WatchForFullShm(const void* begin, uint64_t bytes);
/// Stops watching the range that starts at `begin` (before it is unmapped).
void UnwatchForFullShm(const void* begin);

}  // namespace moe_ep::transport
