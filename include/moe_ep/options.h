// Every MOE_EP_* environment variable, its default and allowed values, and how to read them.
#pragma once

#include <chrono>
#include <cstdint>

namespace moe_ep {

/// A positive integer from environment variable `name`, or `fallback` when it is unset or empty;
/// throws Error (161002) naming the variable when it is malformed.
int64_t PositiveEnv(const char* name, int64_t fallback);

/// MOE_EP_TIMEOUT_MS: deadline of every wait inside an operation, in milliseconds (default 300000,
/// i.e. 5 minutes; any value >= 1). A group's own GroupOptions::timeout takes precedence.
std::chrono::milliseconds DefaultTimeout();

/// MOE_EP_WINDOW_MB: data area of each rank's window, in MiB (default 2048; >= 1). The memory is
/// reserved, not committed: only pages that payloads touch cost RAM. GroupOptions::window_bytes wins.
uint64_t DefaultWindowBytes();

/// MOE_EP_ISA: instruction set of the numeric kernels: "scalar", "avx2", "avx512" or unset (the best
/// this CPU has). Results are bit-identical on all of them; this exists for testing and benchmarking.
/// Read once, when the first kernel runs.

/// The C API (include/acl, include/hccl) also reads, when it first needs them:
///   MOE_EP_DEVICE_COUNT   virtual devices (default 16; 1..65536)
///   HCCL_BUFFSIZE         each communicator's window in MB (default 200)
///   HCCL_EXEC_TIMEOUT     deadline of an operation's waits in seconds (default: MOE_EP_TIMEOUT_MS)
///   HCCL_CONNECT_TIMEOUT  seconds HcclCommInitRootInfo waits for all ranks to join (default 120)
/// and a process job started by `moe-ep launch` sets MOE_EP_RANK, MOE_EP_WORLD_SIZE, MOE_EP_RENDEZVOUS.

}  // namespace moe_ep
