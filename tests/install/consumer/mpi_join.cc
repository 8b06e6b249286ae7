// Built by the find_package consumer when the installed moe_ep has the hosts transport: moe_ep/mpi.h compiles and
// JoinMpiGroup links and loads. Run without arguments it only starts (joining needs mpirun).
#include <moe_ep/mpi.h>

int main(int argc, char** /*argv*/) {
  if (argc > 1) moe_ep::JoinMpiGroup(MPI_COMM_WORLD);
  return 0;
}
