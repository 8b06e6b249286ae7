// The shared-memory transport: the ranks of a group are processes on one host; each rank's region is
// a POSIX shared-memory segment that every peer maps.
#pragma once

#include <memory>
#include <string>

#include "transport/window.h"

namespace moe_ep::transport {

/// Joins rank `rank` of a `size`-rank group of processes (windows of `data_bytes` and `flag_count` user flags). `job`
/// (an unpredictable token shared by the job's processes: the rendezvous) and `group` name the segments
/// "/moe_ep.<job>.<group>.<rank>". Creates this rank's segment (mode 0600, never an existing one), maps every peer's as
/// it appears, waits until every rank has mapped every segment, then removes its segment's name: from then on nothing
/// is left in /dev/shm, whatever happens to the processes. Throws TimeoutError naming the ranks that did not show up by
/// `deadline`, and Error (161002) for a job or group that cannot name a segment: empty, holding a '/', or a job longer
/// than env::kMaxRendezvousChars.
std::unique_ptr<Window> JoinShmGroup(const std::string& job, const std::string& group, int rank, int size,
                                     uint64_t data_bytes, uint64_t flag_count, Clock::time_point deadline);

/// The segment name of `rank` ("/moe_ep.<job>.<group>.<rank>"), for tools that clean up after a job.
std::string ShmSegmentName(const std::string& job, const std::string& group, int rank);

/// Removes every /dev/shm entry of `job` (after its processes are gone, e.g. killed during set-up).
/// Returns how many it removed.
int RemoveJobSegments(const std::string& job);

}  // namespace moe_ep::transport
