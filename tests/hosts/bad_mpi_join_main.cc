// One rank of an MPI job that asks for groups MPI cannot make: JoinMpiGroup(MPI_COMM_NULL), JoinProcessGroup of a job
// without a rendezvous whose size or rank is not MPI_COMM_WORLD's, and HcclCommInitRootInfo with a root info made by
// a world rank this job does not have. Each is an Error (a failed status) naming what is wrong, where MPI's default
// handler used to end the process. Every rank prints a line ending in OK when all of them hold.
#include <mpi.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "acl/acl.h"
#include "hccl/hccl.h"
#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/mpi.h"
#include "moe_ep/ops.h"

namespace {

// Whether `join` throws an Error whose message holds `needle`; says why not on stdout.
bool Refused(int rank, const char* what, const std::function<void()>& join, const std::string& needle) {
  try {
    join();
    std::printf("FAIL: rank %d: %s was accepted\n", rank, what);
  } catch (const moe_ep::Error& e) {
    if (std::string(e.what()).find(needle) != std::string::npos) return true;
    std::printf("FAIL: rank %d: %s: expected '%s' in: %s\n", rank, what, needle.c_str(), e.what());
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0, rank = 0, size = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  bool ok = Refused(
      rank, "JoinMpiGroup(MPI_COMM_NULL)", [] { moe_ep::JoinMpiGroup(MPI_COMM_NULL); },
      "JoinMpiGroup: parameter 'comm' = MPI_COMM_NULL violates rule");
  ok &= Refused(
      rank, "a job of another size",
      [&] {
        moe_ep::JoinProcessGroup({rank, size + 2, ""});
      },
      "job = rank " + std::to_string(rank) + " of " + std::to_string(size + 2) + " without a rendezvous");
  ok &= Refused(
      rank, "a job of another rank",
      [&] {
        moe_ep::JoinProcessGroup({size - 1 - rank, size, ""});
      },
      "an MPI job's ranks are MPI_COMM_WORLD's: this is rank " + std::to_string(rank));

  // A root info of world rank 1000 (another, larger job's).
  HcclRootInfo root{};
  if (aclInit(nullptr) != ACL_SUCCESS || aclrtSetDevice(0) != ACL_SUCCESS || HcclGetRootInfo(&root) != HCCL_SUCCESS) {
    std::printf("FAIL: rank %d: could not make a root info: %s\n", rank, aclGetRecentErrMsg());
    ok = false;
  } else if (char* at = std::strrchr(root.internal, '@'); at == nullptr) {
    std::printf("FAIL: rank %d: a root info made under mpirun names no world rank\n", rank);
    ok = false;
  } else {
    std::strcpy(at + 1, "1000");
    HcclComm comm = nullptr;
    const HcclResult result =
        HcclCommInitRootInfo(static_cast<uint32_t>(size), &root, static_cast<uint32_t>(rank), &comm);
    const std::string message = aclGetRecentErrMsg();
    if (result != HCCL_E_PARA || message.find("rootInfo was made by MPI world rank 1000") == std::string::npos) {
      std::printf("FAIL: rank %d: a root info of world rank 1000 gave %d: %s\n", rank, static_cast<int>(result),
                  message.c_str());
      ok = false;
    }
  }
  // The job goes on: a good group still works after the refusals.
  try {
    moe_ep::Group group = moe_ep::JoinMpiGroup(MPI_COMM_WORLD);
    moe_ep::Barrier(group);
  } catch (const moe_ep::Error& e) {
    std::printf("FAIL: rank %d: the group after the refusals: %s\n", rank, e.what());
    ok = false;
  }
  if (ok) std::printf("rank %d: every bad join refused, naming it: OK\n", rank);
  std::fflush(stdout);
  aclFinalize();
  MPI_Finalize();
  return ok ? 0 : 1;
}
