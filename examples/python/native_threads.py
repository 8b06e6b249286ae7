"""moe_ep's native Python API: 4 ranks as threads of this process, dispatch to 16 experts, identity experts,
combine; numpy arrays work the same way (bf16 as moe_ep.bf16(uint16 array)).

    PYTHONPATH=build/python /usr/bin/python3 examples/python/native_threads.py
"""

import sys
import threading

import torch

import moe_ep

RANKS, BS, H, K, EXPERTS = 4, 16, 256, 4, 16


def rank_main(rank, group, ok):
    torch.manual_seed(rank)
    x = torch.randn(BS, H).to(torch.bfloat16)
    expert_ids = torch.stack([torch.randperm(EXPERTS)[:K] for _ in range(BS)]).to(torch.int32)
    weights = torch.rand(BS, K)
    d = moe_ep.dispatch(group, x, expert_ids, moe_expert_num=EXPERTS)
    print(f"rank {rank}: received {d.handle.num_rows} rows for experts {EXPERTS // RANKS * rank}.."
          f"{EXPERTS // RANKS * (rank + 1) - 1}: {d.expert_token_nums.tolist()} tokens each")
    y = moe_ep.combine(group, d.handle, d.expand_x, weights)  # identity experts
    expected = torch.zeros(BS, H)
    for k in range(K):
        expected = expected + x.float() * weights[:, k:k + 1]
    ok[rank] = torch.equal(y.view(torch.int16), expected.to(torch.bfloat16).view(torch.int16))


if __name__ == "__main__":
    groups = moe_ep.thread_groups(RANKS, timeout=60)
    ok = [False] * RANKS
    threads = [threading.Thread(target=rank_main, args=(r, groups[r], ok)) for r in range(RANKS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not all(ok):
        print("FAILED on ranks", [r for r in range(RANKS) if not ok[r]])
        sys.exit(1)
    print("combine gave every token back as sum_k w * x, bit for bit")
