# One rank of a `moe-ep launch` job (test_launch.py): a torch_npu-style dispatch + combine on a communicator from the
# launch environment, then the same through the native API's process group; identity experts, checked bit for bit.
import os
import sys

import torch

import moe_ep
import moe_ep.distributed as md
import moe_ep.torch_npu as torch_npu

BS, H, K, EXPERTS = 4, 1024, 2, 8


def expected(x, w):
    acc = torch.zeros(x.shape)
    for k in range(w.shape[1]):
        acc = acc + x.float() * w[:, k:k + 1]
    return acc.to(torch.bfloat16)


def main():
    rank, size = int(sys.argv[1]), int(sys.argv[2])
    torch.manual_seed(int(os.environ.get("MOE_EP_TEST_SEED", "0")) * 131 + rank)
    x = torch.randn(BS, H).to(torch.bfloat16)
    ids = torch.stack([torch.randperm(EXPERTS)[:K] for _ in range(BS)]).to(torch.int32)
    w = torch.rand(BS, K)
    name = md.launch_comm_name()
    expand_x, _, assist, _, counts, tp_counts, _ = torch_npu.npu_moe_distribute_dispatch_v2(
        x, ids, name, size, rank, EXPERTS)
    y = torch_npu.npu_moe_distribute_combine_v2(expand_x, ids, assist, counts, w, name, size, rank, EXPERTS,
                                                tp_send_counts=tp_counts)
    assert torch.equal(y.view(torch.int16), expected(x, w).view(torch.int16)), f"rank {rank}: torch_npu combine"
    group = moe_ep.join_process_group()
    d = moe_ep.dispatch(group, x, ids, moe_expert_num=EXPERTS)
    y2 = moe_ep.combine(group, d.handle, d.expand_x, w)
    assert torch.equal(y2.view(torch.int16), y.view(torch.int16)), f"rank {rank}: native combine"
    print(f"rank {rank} of {size}: both paths bit for bit")


if __name__ == "__main__":
    main()
