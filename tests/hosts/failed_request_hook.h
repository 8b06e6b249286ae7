// A fault MPI seldom shows on one machine: a send that MPI finishes in error (MPI_Testsome's MPI_ERR_IN_STATUS).
#pragma once

namespace moe_ep::testing {

// The next MPI_Testsome that finishes a send of this process reports that send as failed (MPI_ERR_OTHER in its
// status, MPI_ERR_IN_STATUS returned); its message was delivered all the same, and the other requests it finished
// are reported as they were.
void FailNextSend();

// The rank (in the send's communicator) of the send reported failed; -1 before one was.
int FailedSendPeer();

}  // namespace moe_ep::testing
