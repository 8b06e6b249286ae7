// The process's shared heap: memory that other processes of the host read in place, for the pull data
// path between process ranks. Chunks are anonymous memory files (memfd, mode 0600: no name anywhere,
// gone with the last process that maps them, SIGKILL included) that a peer maps on first use through
// /proc/<pid>/fd/<fd>.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moe_ep::transport {

class SharedHeap {
 public:
  /// This process's heap (never destroyed: peers and stream tasks may use it until the process exits).
  static SharedHeap& Process();

  /// `bytes` (> 0) of peer-visible memory, 64-byte aligned, uninitialised. Throws Error naming the size
  /// when the system has no memory for it.
  void* Allocate(size_t bytes);
  /// The same, zero-filled. A block carved from a chunk made for it is zero already and is left untouched
  /// (its pages cost memory only once written); any other block is cleared.
  void* AllocateZeroed(size_t bytes);
  /// Returns memory that Allocate gave. Anything else (an interior pointer, a pointer freed already,
  /// memory from elsewhere) throws Error naming it, and frees nothing.
  void Free(const void* p);
  /// Bytes from `p` to the end of its allocation, 0 when `p` is not inside a live allocation of this heap.
  size_t RoomAt(const void* p) const;

  /// The token under which another process on this host (or this one) finds [p, p + bytes) with Map, or
  /// 0 when those bytes are not all inside one chunk of this heap (or its chunk cannot be named: a
  /// descriptor number past 1023, a pid past 2^22).
  uint64_t TokenOf(const void* p, uint64_t bytes) const;
  /// Where [token's address, + bytes) is in this process, mapping the owner's chunk on first use (kept
  /// until the process exits); nullptr when it cannot be mapped (the owner is gone, or the token names
  /// no heap chunk of it, or the range passes the chunk's end).
  static const uint8_t* Map(uint64_t token, uint64_t bytes);

 private:
  void* AllocateFrom(size_t bytes, bool* fresh);
  SharedHeap() = default;
  struct State;
  State& state() const;
};

}  // namespace moe_ep::transport
