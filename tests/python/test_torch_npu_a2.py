# moe_ep.torch_npu as Atlas A2 (MOE_EP_SOC_NAME=Ascend910B3) on 8 thread ranks: dispatch / combine with
# comm_alg "fullmesh", a 1-D mask and random routing, bit for bit against the golden model (A2's rows, counts and sums
# are A3's); assist_info_for_combine holds A2's expandIdx, which the test reads off the golden model's rows.
import random

import torch

import moe_ep.distributed as md
import moe_ep.torch_npu as torch_npu
from bitwise import assert_bits, assert_poison
from thread_ranks import on_threads
from torch_golden import golden_combine, golden_dispatch

E, BS, H, K, MOE = 8, 6, 96, 3, 16


def expand_idx(want, active):
    """A2's expandIdx of every rank, from the golden (A3) layout: the row of (t, k) inside the block its expert
    received from its rank, whose rows are in (t, k) order (docs/a2.md). want: golden_dispatch's result."""
    out = [torch.full((active[r] * K,), -1, dtype=torch.int32) for r in range(E)]
    local = MOE // E
    for owner in range(E):
        assist = want[owner]["assist_info"].reshape(-1, 3).tolist()
        experts = torch.repeat_interleave(torch.arange(local), want[owner]["expert_token_nums"]).tolist()
        taken = {}
        for (src, t, k), j in zip(assist, experts):
            block = (owner * local + j, src)
            out[src][t * K + k] = taken.get(block, 0)
            taken[block] = taken.get(block, 0) + 1
    assert all(bool((o >= 0).all()) for o in out), "a routed pair the golden model has no row for"
    return out


def test_atlas_a2_dispatch_combine(seed, monkeypatch):
    monkeypatch.setenv("MOE_EP_SOC_NAME", "Ascend910B3")
    g = torch.Generator().manual_seed(seed)
    names = md.thread_comm_names(E)
    x = [torch.randn(BS, H, generator=g).to(torch.bfloat16) for _ in range(E)]
    ids = [torch.stack([torch.randperm(MOE, generator=g)[:K] for _ in range(BS)]).to(torch.int32) for _ in range(E)]
    w = [torch.rand(BS, K, generator=g) for _ in range(E)]
    rnd = random.Random(seed)
    active = rnd.sample([0, BS], 2) + [rnd.randrange(BS + 1) for _ in range(E - 2)]  # none and all among them
    masks = [torch.arange(BS) < active[r] for r in range(E)]
    outs = [torch.randn(BS * E * K, H, generator=g).to(torch.bfloat16) for _ in range(E)]
    torch_npu.poison_outputs = True

    def rank_main(r):
        torch_npu.npu.set_device(r)
        common = dict(group_ep=names[r], ep_world_size=E, ep_rank_id=r, moe_expert_num=MOE, comm_alg="fullmesh")
        d = torch_npu.npu_moe_distribute_dispatch_v2(x[r], ids[r], x_active_mask=masks[r], **common)
        y = torch_npu.npu_moe_distribute_combine_v2(outs[r][: d[0].shape[0]], ids[r], d[2], d[4], w[r],
                                                    x_active_mask=masks[r], **common)
        return d, y

    try:
        results = on_threads(E, rank_main)
    finally:
        torch_npu.poison_outputs = False
    want = golden_dispatch(x, ids, ep_world_size=E, moe_expert_num=MOE, shared_expert_num=0, x_active_mask=masks)
    want_y = golden_combine(outs, ids, w, ep_world_size=E, moe_expert_num=MOE, shared_expert_num=0,
                            x_active_mask=masks)
    want_idx = expand_idx(want, active)
    for r in range(E):
        d, y = results[r]
        rows, tag = want[r]["rows"], f"seed {seed} rank {r}"
        assert_bits(d[0][:rows], want[r]["expand_x"], f"{tag} expand_x")
        assert_bits(d[2][: active[r] * K], want_idx[r], f"{tag} assist_info_for_combine (expandIdx)")
        assert_bits(d[3], want[r]["expert_token_nums"], f"{tag} expert_token_nums")
        assert_bits(d[4][:MOE], want[r]["ep_recv_counts"], f"{tag} ep_recv_counts")
        assert_bits(y[: active[r]], want_y[r][: active[r]], f"{tag} combine")
        # What the operators define is all they write (docs/a2.md): the rest of each output still holds the poison.
        untouched = {"expand_x past its rows": d[0][rows:], "dynamic_scales (quant_mode 0)": d[1],
                     "expandIdx past the active pairs": d[2][active[r] * K:],
                     "ep_recv_counts past its entries": d[4][MOE:], "tp_recv_counts": d[5], "expand_scales": d[6],
                     "combine past the active tokens": y[active[r]:]}
        for name, rest in untouched.items():
            assert_poison(rest, f"{tag} {name}")
