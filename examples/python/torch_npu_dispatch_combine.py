"""Ascend model code, run on CPU: 4 processes, an "hccl" process group, dispatch_v2 + combine_v2 called the way
torch_npu's samples call them. On an NPU this script would `import torch_npu`; here the import below (and
register_hccl_backend, which makes "hccl" a gloo group that names its moe_ep communicator) is the only change.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/torch_npu_dispatch_combine.py
"""

import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import moe_ep.distributed
import moe_ep.torch_npu as torch_npu  # on an NPU: import torch_npu

WORLD, BS, H, K, EXPERTS = 4, 8, 1024, 4, 16


def run(rank, init_file, failures):
    moe_ep.distributed.register_hccl_backend()
    torch_npu.npu.set_device(0)
    dist.init_process_group(backend="hccl", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    ep_group = dist.new_group(backend="hccl", ranks=list(range(WORLD)))
    group_name = ep_group.get_hccl_comm_name(rank)

    torch.manual_seed(rank)
    x = torch.randn(BS, H).to(torch.bfloat16)
    expert_ids = torch.stack([torch.randperm(EXPERTS)[:K] for _ in range(BS)]).to(torch.int32)
    weights = torch.rand(BS, K)
    expand_x, _, assist_info, _, ep_recv_counts, tp_recv_counts, expand_scales = \
        torch_npu.npu_moe_distribute_dispatch_v2(x=x, expert_ids=expert_ids, group_ep=group_name,
                                                 ep_world_size=WORLD, ep_rank_id=rank, moe_expert_num=EXPERTS)
    expert_out = expand_x  # identity experts: combine must give back sum_k w[t, k] * x[t]
    y = torch_npu.npu_moe_distribute_combine_v2(expand_x=expert_out, expert_ids=expert_ids,
                                                assist_info_for_combine=assist_info, ep_send_counts=ep_recv_counts,
                                                expert_scales=weights, group_ep=group_name, ep_world_size=WORLD,
                                                ep_rank_id=rank, moe_expert_num=EXPERTS, tp_send_counts=tp_recv_counts,
                                                expand_scales=expand_scales)
    expected = torch.zeros(BS, H)
    for k in range(K):  # fp32, k in order, multiply then add (no fused multiply-add), one rounding at the end
        expected = expected + x.float() * weights[:, k:k + 1]
    if not torch.equal(y.view(torch.int16), expected.to(torch.bfloat16).view(torch.int16)):
        failures.put(f"rank {rank}: combine differs from sum_k w * x")
    dist.barrier()


if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    failures = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        procs = [ctx.Process(target=run, args=(r, os.path.join(tmp, "init"), failures)) for r in range(WORLD)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad or not failures.empty():
        print("FAILED:", bad, failures.get() if not failures.empty() else "")
        sys.exit(1)
    print(f"dispatch_v2 + combine_v2 on {WORLD} ranks: every token came back as sum_k w * x, bit for bit")
