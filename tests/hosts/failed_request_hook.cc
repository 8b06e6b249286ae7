// MPI_Isend, MPI_Irecv and MPI_Testsome interposed (an executable's definitions come before libmpi's, for the
// library's calls too): the sends are remembered by handle, so that MPI_Testsome can fail one it finished, handing it
// back allocated as Open MPI does.
#include "hosts/failed_request_hook.h"

#include <mpi.h>

#include <atomic>
#include <map>
#include <mutex>
#include <vector>

namespace {

std::mutex mutex;
std::map<MPI_Request, int> send_peers;  // the sends under way, by handle: their destinations
std::vector<MPI_Request> tested;        // MPI_Testsome's requests as they were before the call
std::atomic<bool> fail_next_send{false};
std::atomic<int> failed_peer{-1};

}  // namespace

namespace moe_ep::testing {

void FailNextSend() { fail_next_send = true; }
int FailedSendPeer() { return failed_peer; }

}  // namespace moe_ep::testing

extern "C" int MPI_Isend(const void* buffer, int count, MPI_Datatype type, int destination, int tag, MPI_Comm comm,
                         MPI_Request* request) {
  const int status = PMPI_Isend(buffer, count, type, destination, tag, comm, request);
  if (status == MPI_SUCCESS) {
    const std::lock_guard lock(mutex);
    send_peers[*request] = destination;
  }
  return status;
}

// A receive may get the handle of a send freed elsewhere (MPI_Test): it is no send.
extern "C" int MPI_Irecv(void* buffer, int count, MPI_Datatype type, int source, int tag, MPI_Comm comm,
                         MPI_Request* request) {
  const int status = PMPI_Irecv(buffer, count, type, source, tag, comm, request);
  if (status == MPI_SUCCESS) {
    const std::lock_guard lock(mutex);
    send_peers.erase(*request);
  }
  return status;
}

extern "C" int MPI_Testsome(int count, MPI_Request requests[], int* finished, int indices[], MPI_Status statuses[]) {
  const std::lock_guard lock(mutex);
  tested.assign(requests, requests + count);
  const int status = PMPI_Testsome(count, requests, finished, indices, statuses);
  if (status != MPI_SUCCESS || *finished == MPI_UNDEFINED) return status;
  int failing = -1;
  for (int i = 0; i < *finished; ++i) {
    const auto send = send_peers.find(tested[indices[i]]);
    if (send == send_peers.end()) continue;
    if (failing < 0 && fail_next_send) {
      failing = i;
      failed_peer = send->second;
    }
    send_peers.erase(send);
  }
  if (failing < 0) return status;
  fail_next_send = false;
  for (int i = 0; i < *finished; ++i) statuses[i].MPI_ERROR = i == failing ? MPI_ERR_OTHER : MPI_SUCCESS;
  // As Open MPI does with a request that finished in error: the handle is left allocated (a finished generalized
  // request stands in for the send, which PMPI_Testsome freed on its success), for the caller to free.
  MPI_Request& handle = requests[indices[failing]];
  const auto query = [](void*, MPI_Status* s) {
    MPI_Status_set_elements(s, MPI_BYTE, 0);
    MPI_Status_set_cancelled(s, 0);
    s->MPI_SOURCE = MPI_UNDEFINED;
    s->MPI_TAG = MPI_UNDEFINED;
    return MPI_SUCCESS;
  };
  const auto free_state = [](void*) { return MPI_SUCCESS; };
  const auto cancel = [](void*, int) { return MPI_SUCCESS; };
  if (MPI_Grequest_start(query, free_state, cancel, nullptr, &handle) == MPI_SUCCESS) MPI_Grequest_complete(handle);
  return MPI_ERR_IN_STATUS;
}
