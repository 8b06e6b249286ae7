// The members of a group over MPI meet before any collective of its join: a member that never comes is then a
// deadline error naming it, not a wait in MPI for good (MPI_Comm_create_group, which MPI offers only blocking), nor a
// collective left behind on the parent communicator, which the others' next try would be matched with.
#pragma once

#include <span>
#include <string>

#include "transport/window.h"

namespace moe_ep::transport::mpi {

/// [collective over `members`: world ranks in group order, this process's among them] Returns once every member has
/// arrived at the meeting of `group` and committed to it, so that they all go on to the join's collectives; throws
/// TimeoutError at `deadline` naming the group ranks that did not arrive (InterruptedError when the interrupt check
/// asks), after telling the others it gave up, so that none of them goes on without it.
///
/// Each member posts two words to every other: "arrived" (with a fresh number for this attempt), and once it has
/// every member's arrival, "committed" (to the attempts it saw). A member goes on when every other has committed to
/// the same attempts; one that gave up, or started another attempt, ends the meeting for all. Once committed, a
/// member waits for the others' commitments until the deadline, or 3 s if that is later, and is not interrupted, as
/// each commits as soon as it saw every arrival: only a member stopped that long between its two words, then going on
/// as the others gave up, is left in a sub-group's MPI_Comm_create_group. Under MPI_THREAD_MULTIPLE that call runs
/// without the lock every other MPI call of moe_ep takes, so groups may be formed from several threads at once; below
/// it, the lock is held across the call, and a process must form its sub-groups one at a time.
void MeetMembers(std::span<const int> members, const std::string& group, Clock::time_point deadline);

}  // namespace moe_ep::transport::mpi
