# One rank of a `moe-ep launch` job (test_launch.py): the driver's case through torch_npu's functions on a communicator
# from the launch environment, then through the native API's process group; the outputs go back to the driver.
import os
import sys

import torch

import moe_ep
import moe_ep.distributed as md
import moe_ep.torch_npu as torch_npu
import rank_pool


def main():
    rank, size = int(os.environ["MOE_EP_RANK"]), int(os.environ["MOE_EP_WORLD_SIZE"])
    folder = sys.argv[1]
    case = torch.load(os.path.join(folder, "case.pt"))
    torch_npu.poison_outputs = moe_ep._tensors.poison_outputs = True  # what the operators leave must stay poison
    names = {"ep4": md.launch_comm_name()}
    results = {"torch_npu": rank_pool.dispatch_combine(torch_npu, names, rank, case)}
    rank_pool._native_groups["ep4"] = moe_ep.join_process_group()
    results["native"] = rank_pool.native_dispatch_combine(torch_npu, names, rank, case)
    torch.save(results, os.path.join(folder, f"rank{rank}.pt"))
    print(f"rank {rank} of {size}: done")


if __name__ == "__main__":
    main()
