# moe_ep.torch_npu on 16 thread ranks (thread_comm_names): a round with every rank, then rank 15 stops; the survivors
# run npu_moe_distribute_buffer_reset with the reachable mask and dispatch / combine / combine_add_rms_norm with
# elastic_info (V3 scale-down), bit for bit against the golden model of a 15-rank group; survivors whose tables order
# them differently are refused.
import re

import torch

import moe_ep
import moe_ep.distributed as md
import moe_ep.torch_npu as torch_npu
from bitwise import assert_bits, assert_poison, assert_prefix
from thread_ranks import on_threads
from torch_golden import golden_combine, golden_combine_add_rms_norm, golden_dispatch

E, BS, H, K = 16, 2, 1024, 2


def test_survivors_scale_down_with_elastic_info(seed):
    g = torch.Generator().manual_seed(seed)
    names = md.thread_comm_names(E)
    x = [torch.randn(BS, H, generator=g).to(torch.bfloat16) for _ in range(E)]
    w = [torch.rand(BS, K, generator=g) for _ in range(E)]
    full_ids = [torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(BS)]).to(torch.int32) for _ in range(E)]
    # After the scale-down expert ids index the 15 survivors' experts (one each).
    ids = [torch.stack([torch.randperm(E - 1, generator=g)[:K] for _ in range(BS)]).to(torch.int32) for _ in range(E)]
    outs = [torch.randn(BS * E * K, H, generator=g).to(torch.bfloat16) for _ in range(E)]
    residual = [torch.randn(BS, 1, H, generator=g).to(torch.bfloat16) for _ in range(E)]
    gamma = torch.randn(H, generator=g).to(torch.bfloat16)
    reachable = torch.tensor([1] * (E - 1) + [0], dtype=torch.int32)
    elastic = torch.tensor([1, E - 1, 0, E - 1] + list(range(E - 1)) + [-1] + list(range(E - 1)) + [-1],
                           dtype=torch.int32)
    torch_npu.poison_outputs = True

    def rank_main(r):
        torch_npu.npu.set_device(r)
        common = dict(group_ep=names[r], ep_world_size=E, ep_rank_id=r, moe_expert_num=E)
        full = torch_npu.npu_moe_distribute_dispatch_v2(x[r], full_ids[r], **common)
        full_y = torch_npu.npu_moe_distribute_combine_v2(full[0], full_ids[r], full[2], full[4], w[r],
                                                         tp_send_counts=full[5], **common)
        if r == E - 1:
            return full, full_y, None  # this rank stops here
        torch_npu.npu_moe_distribute_buffer_reset(reachable, names[r], E, need_sync=1)
        d = torch_npu.npu_moe_distribute_dispatch_v2(x[r], ids[r], elastic_info=elastic, **common)
        y = torch_npu.npu_moe_distribute_combine_v2(outs[r][: d[0].shape[0]], ids[r], d[2], d[4], w[r],
                                                    tp_send_counts=d[5], elastic_info=elastic, **common)
        normed = torch_npu.npu_moe_distribute_combine_add_rms_norm(outs[r][: d[0].shape[0]], ids[r], d[2], d[4], w[r],
                                                                   residual[r], gamma, tp_send_counts=d[5],
                                                                   elastic_info=elastic, **common)
        return full, full_y, (d, y, normed)

    try:
        results = on_threads(E, rank_main)
    finally:
        torch_npu.poison_outputs = False
    # The round with every rank (the experts return the rows they got).
    want_full = golden_dispatch(x, full_ids, ep_world_size=E, moe_expert_num=E, shared_expert_num=0)
    want_full_y = golden_combine([want_full[r]["expand_x"] for r in range(E)], full_ids, w, ep_world_size=E,
                                 moe_expert_num=E, shared_expert_num=0)
    for r in range(E):
        full, full_y, _ = results[r]
        tag = f"seed {seed} rank {r} of the full round"
        assert_prefix(full[0], want_full[r]["expand_x"], f"{tag} expand_x")
        assert_prefix(full[2], want_full[r]["assist_info"], f"{tag} assist_info_for_combine")
        assert_bits(full[3], want_full[r]["expert_token_nums"], f"{tag} expert_token_nums")
        assert_bits(full[4], want_full[r]["ep_recv_counts"], f"{tag} ep_recv_counts")
        assert_bits(full_y, want_full_y[r], f"{tag} combine")
        for i, name in ((1, "dynamic_scales"), (5, "tp_recv_counts"), (6, "expand_scales")):
            assert_poison(full[i], f"{tag} {name} (no quantization, TP peer or Atlas A2)")
    n = E - 1
    want = golden_dispatch(x[:n], ids[:n], ep_world_size=n, moe_expert_num=n, shared_expert_num=0)
    want_y = golden_combine(outs[:n], ids[:n], w[:n], ep_world_size=n, moe_expert_num=n, shared_expert_num=0)
    want_norm = golden_combine_add_rms_norm(outs[:n], ids[:n], w[:n], residual[:n], gamma, ep_world_size=n,
                                            moe_expert_num=n, shared_expert_num=0)
    for r in range(n):
        d, y, normed = results[r][2]
        tag = f"seed {seed} survivor {r}"
        assert_prefix(d[0], want[r]["expand_x"], f"{tag} expand_x")
        assert_prefix(d[2], want[r]["assist_info"], f"{tag} assist_info_for_combine")
        assert_bits(d[3], want[r]["expert_token_nums"], f"{tag} expert_token_nums")
        assert d[4].numel() == E, f"{tag}: ep_recv_counts sized {d[4].numel()}, not E = {E} (either role)"
        assert_bits(d[4][:n], want[r]["ep_recv_counts"], f"{tag} ep_recv_counts")
        assert_poison(d[4][n:], f"{tag} ep_recv_counts past the {n} survivors' entries")
        for i, name in ((1, "dynamic_scales"), (5, "tp_recv_counts"), (6, "expand_scales")):
            assert_poison(d[i], f"{tag} {name} (no quantization, TP peer or Atlas A2)")
        assert_bits(y, want_y[r], f"{tag} combine")
        for name, ours, gold in zip(("y", "rstd", "x"), normed, want_norm[r], strict=True):
            assert_bits(ours, gold, f"{tag} combine_add_rms_norm {name}")


def test_survivors_that_order_themselves_differently_are_refused(seed):
    # Rank 2 of 4 is gone. Rank 0's elastic_info numbers the survivors 0, 1, 3 in that order, ranks 1 and 3's in the
    # order 0, 3, 1: both tables are valid, but rows routed by one would reach the other's experts. Every survivor
    # refuses the dispatch (561002), naming the rule.
    g = torch.Generator().manual_seed(seed)
    e = 4
    names = md.thread_comm_names(e)
    ordered = {0: [0, 1, 3], 1: [0, 3, 1], 3: [0, 3, 1]}
    survivors = sorted(ordered)

    def table(order):
        table1 = [-1] * e
        for new, old in enumerate(order):
            table1[old] = new
        return torch.tensor([1, 3, 0, 3] + table1 + order + [-1], dtype=torch.int32)

    x = [torch.randn(BS, H, generator=g).to(torch.bfloat16) for _ in range(e)]
    ids = [torch.stack([torch.randperm(3, generator=g)[:K] for _ in range(BS)]).to(torch.int32) for _ in range(e)]

    def rank_main(i):
        r = survivors[i]
        torch_npu.npu.set_device(r)
        try:
            torch_npu.npu_moe_distribute_dispatch_v2(x[r], ids[r], names[r], e, r, e, elastic_info=table(ordered[r]))
        except moe_ep.InvalidArgumentError as refused:
            return refused
        return None

    refusals = on_threads(len(survivors), rank_main)
    shown = {}  # each survivor's own values, as its refusal lists them
    for r, refused in zip(survivors, refusals):
        assert refused is not None, f"seed {seed} survivor {r}: dispatched with survivors ordered otherwise"
        assert refused.code == 561002, str(refused)
        assert "called with attributes that differ" in str(refused), str(refused)
        shown[r] = re.search(r"differ from rank \d+'s \((.*)\); rule", str(refused)).group(1)
    # The values differ in the survivors' order alone: rank 0's against ranks 1 and 3's, which agree.
    order = re.compile(r", survivors' order 0x[0-9a-f]{16}$")
    assert all(order.search(values) for values in shown.values()), shown
    assert len({order.sub("", values) for values in shown.values()}) == 1, shown
    assert shown[1] == shown[3] != shown[0], shown
