// Every MOE_EP_* (and, for the C API, HCCL_*) environment variable: default, allowed values, effect.
#pragma once

#include <chrono>
#include <cstdint>

// The public API: exported from libmoe_ep, whose other symbols are hidden.
#pragma GCC visibility push(default)
namespace moe_ep {

/// MOE_EP_TIMEOUT_MS: deadline of every wait inside an operation, in milliseconds (default 300000,
/// i.e. 5 minutes; 1 .. 2^31). A group's own GroupOptions::timeout takes precedence.
std::chrono::milliseconds DefaultTimeout();

/// MOE_EP_WINDOW_MB: data area of each rank's window, in MiB (default 2048; 1 .. 2^20). The memory is
/// reserved, not committed: only pages that payloads touch cost RAM. GroupOptions::window_bytes wins.
uint64_t DefaultWindowBytes();

/// MOE_EP_DATA_PATH: "push", "pull" or "auto" (the default): how a group whose GroupOptions::data_path
/// is DataPath::kAuto moves rows between ranks that can read each other's memory (moe_ep/group.h); the C
/// API's communicators read it too. "auto" pulls a rank's rows when it sends at least kPullMinBytes.
/// MOE_EP_CROSS_MEMORY: "auto" (the default, also when unset), "0" or "1": whether process ranks on one
/// host pull rows from buffers outside the shared heap too (torch tensors, vectors), the reader copying
/// them straight out of the sender's memory with process_vm_readv. That is one copy where a push takes
/// two, but the kernel's copy is slower than a load and costs a system call per batch, so it pays only
/// for many rows: on 16 cores, combine of 8 ranks' private expert outputs by copy took 0.6-0.85x the time
/// of pushing them at 96-512 tokens per rank, the same at 64, and 1.0-2.7x at 1-32. "auto" reads by copy
/// when a rank sends at least kCopyMinBytes (8 MiB) of rows in a call, and only where no Yama security
/// module restricts ptrace (absent, or ptrace_scope 0); under Yama's ptrace_scope 1 (Ubuntu's default)
/// and above it pushes. "1" reads by copy from kPullMinBytes, like memory in place, and under ptrace_scope
/// 1, where the kernel allows such reads only to a process's ancestors, makes each rank let any process
/// of its user read it (prctl PR_SET_PTRACER_ANY), for the life of the process. "0" pushes such rows.
/// DataPath::kPull (MOE_EP_DATA_PATH=pull) reads by copy at every size where "auto" or "1" reads by copy
/// at all. Groups check, when they are made, that every rank can read every other; where one cannot,
/// those rows are pushed. Where ranks read by copy, a rank reads its own rows in place.
///
/// MOE_EP_THREADS: threads per rank (1 .. 1024) for a group whose GroupOptions::threads is 0, and for
/// the C API's communicators; default: the cores the thread making the group may run on (its CPU affinity: the
/// process's, unless the program pinned that thread) shared out among the group's ranks on this machine, at least 1.
/// MOE_EP_THREAD_MIN_BYTES (0 .. 2^40, default 131072): the least bytes of rows a loop gives each thread;
/// a loop over fewer runs on fewer threads (waking one costs about as much as copying 100 KiB), so a
/// decode step's few rows stay on the rank's own thread; 0 splits every loop among all of them.
///
/// MOE_EP_ISA: instruction set of the numeric kernels: "scalar", "avx2", "avx512" or unset (the best
/// this CPU has); anything but "avx512" also keeps large row copies off AVX-512. Results are bit-identical
/// on all of them; this exists for testing and benchmarking.
/// Read when the first group or communicator is made (or a kernel runs, whichever comes first) and kept for the
/// life of the process; another name, or one this CPU lacks, fails that with an error naming the variable.
///
/// Every variable is checked when it is read: a value that is not a decimal integer in its range is an
/// error naming the variable, its value and the range (never silently clamped; HCCL_EXEC_TIMEOUT, below, takes
/// CANN's range and documents what it does with it).
///
/// The C API (include/acl, include/hccl) also reads, when it first needs them:
///   MOE_EP_DEVICE_COUNT   virtual devices (default 16; 1 .. 65536)
///   HCCL_BUFFSIZE         each communicator's window in MB (default 200; 1 .. 2^20)
///   HCCL_EXEC_TIMEOUT     deadline of an operation's waits in seconds (default, and 0 as CANN's "never":
///                         MOE_EP_TIMEOUT_MS; 0 .. 2147483647, a deadline past 2^31 ms taken as 2^31 ms)
///   HCCL_CONNECT_TIMEOUT  seconds a communicator's join (HcclCommInitRootInfo, HcclCommInitClusterInfo and
///                         their Config forms) waits for all ranks (default 120; 1 .. 2147483)
///   MOE_EP_SOC_NAME       the SoC aclrtGetSocName reports and whose rules, layouts and codes the operators
///                         follow: Atlas A3 (default Ascend910_9391) or Atlas A2 (Ascend910B1 .. B4-1); read
///                         on every call; ranks of a group must agree (dispatch names a rank that does not)
///   HCCL_INTRA_PCIE_ENABLE, HCCL_INTRA_ROCE_ENABLE  read on Atlas A2 where commAlg is null, "" or "0": "0"
///                         or "1" (or unset); "1" and "0" make it the "hierarchy" algorithm (refused: moe_ep
///                         implements "fullmesh")
/// and a process job started by `moe-ep launch` sets MOE_EP_RANK, MOE_EP_WORLD_SIZE, MOE_EP_RENDEZVOUS
/// (under mpirun without them, the launcher's OMPI_COMM_WORLD_RANK / _SIZE or PMI_RANK / PMI_SIZE; any of
/// OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_SIZE marks a process as started by an MPI launcher, whose C API root info
/// then travels over MPI).
/// For tests of the hosts transport on one machine, MOE_EP_HOSTS_SPLIT=N (0 .. 2^20, default 0) makes
/// every N consecutive ranks of a group a simulated host. MOE_EP_HOSTS_RELAY (0 or 1, default 1): with
/// 1, what a rank sends to another host goes to one rank there, which hands it on over shared memory (a
/// row bound for several ranks of that host crosses once; combine always goes straight); 0 sends every
/// message straight to its rank. MOE_EP_HOSTS_MESSAGE_BYTES (1024 .. 64 MiB, default 64,512): the largest
/// message between hosts; larger ones skip a copy on fast links, smaller ones keep slow links busy.
/// (`moe-ep run --processes` also sets MOE_EP_RUN_RESULTS for the ranks it starts, to say where they leave
/// their timings: the tool's own, not the library's.)

}  // namespace moe_ep
#pragma GCC visibility pop
