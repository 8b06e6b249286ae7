// The process's shared heap: memory that other processes of the host read in place, for the pull data
// path between process ranks. Chunks are anonymous memory files (memfd, mode 0600: no name anywhere,
// gone with the last process that maps them, SIGKILL included) that a peer maps on first use through
// /proc/<pid>/fd/<fd>.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moe_ep::transport {

struct HeapForkHandlers;  // what a fork does to the heap (shared_heap.cc)

class SharedHeap {
 public:
  /// Whose heap a token is in: the process's pid and an id drawn once per process (a fork child draws its own,
  /// and leaves the parent's chunks to the parent), so that a process the system gives a gone process's pid is
  /// never taken for it: each chunk's memory file is named after both.
  struct Owner {
    uint64_t pid = 0;
    uint64_t id = 0;
  };
  /// This process's.
  static Owner Self();

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
  /// Where [token's address, + bytes) of `owner`'s heap is in this process, mapping the owner's chunk on first
  /// use; nullptr when it cannot be mapped (the token names another process than `owner`, or no heap chunk of
  /// it, the owner is gone, or the range passes the chunk's end). A chunk stays mapped while some Hold(owner)
  /// is not released, or, mapped without one, until the process exits.
  static const uint8_t* Map(uint64_t token, uint64_t bytes, Owner owner);
  /// A window whose peer `owner` is holds it while it lives: the last Release unmaps the owner's chunks (a
  /// dead peer's pages are freed, and nothing of it stays to be found under its pid). Nothing may still use a
  /// pointer Map gave for the owner then. Holding this process itself does nothing.
  static void Hold(Owner owner);
  static void Release(Owner owner);

 private:
  friend struct HeapForkHandlers;
  void* AllocateFrom(size_t bytes, bool* fresh);
  SharedHeap() = default;
  struct State;
  State& state() const;
};

}  // namespace moe_ep::transport
