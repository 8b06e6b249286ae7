# The native Python API on thread ranks: torch and numpy inputs bit for bit against the golden model, elastic scale-down
# after a rank stops, and clear errors (bad input, a missing peer).
import numpy as np
import pytest
import torch

import moe_ep
from torch_golden import golden_combine, golden_dispatch
from bitwise import assert_bits, assert_poison
from thread_ranks import on_threads


@pytest.fixture(autouse=True)
def poisoned_outputs():
    # Outputs start as a byte pattern, not zeros: an element that should be written and is not shows up.
    moe_ep._tensors.poison_outputs = True
    yield
    moe_ep._tensors.poison_outputs = False


def draw(seed, ranks, bs=5, hidden=64, top_k=3, experts=6):
    g = torch.Generator().manual_seed(seed)
    x = [torch.randn(bs, hidden, generator=g).to(torch.bfloat16) for _ in range(ranks)]
    ids = [torch.stack([torch.randperm(experts, generator=g)[:top_k] for _ in range(bs)]).to(torch.int32)
           for _ in range(ranks)]
    w = [torch.rand(bs, top_k, generator=g) for _ in range(ranks)]
    outs = [torch.randn(bs * ranks * top_k, hidden, generator=g).to(torch.bfloat16) for _ in range(ranks)]
    return x, ids, w, outs


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_dispatch_combine_match_golden(seed, kind):
    ranks, experts = 3, 6
    x, ids, w, outs = draw(seed, ranks, experts=experts)
    as_input = (lambda t: t) if kind == "torch" else (
        lambda t: moe_ep.bf16(t.view(torch.int16).numpy().view(np.uint16)) if t.dtype == torch.bfloat16 else t.numpy())

    def body(r, group):
        d = moe_ep.dispatch(group, as_input(x[r]), as_input(ids[r]), moe_expert_num=experts)
        y = moe_ep.combine(group, d.handle, as_input(outs[r][: d.expand_x.shape[0]]), as_input(w[r]))
        return d, y

    groups = moe_ep.thread_groups(ranks, timeout=60)
    got = on_threads(len(groups), lambda r: body(r, groups[r]))
    want = golden_dispatch(x, ids, ep_world_size=ranks, moe_expert_num=experts, shared_expert_num=0)
    want_y = golden_combine(outs, ids, w, ep_world_size=ranks, moe_expert_num=experts, shared_expert_num=0)
    back = (lambda t: t) if kind == "torch" else (
        lambda t: torch.from_numpy(t.array.view(np.int16)).view(torch.bfloat16) if isinstance(t, moe_ep.bf16)
        else torch.from_numpy(t))
    for r, (d, y) in enumerate(got):
        rows = want[r]["rows"]
        assert d.handle.num_rows == rows
        assert_bits(back(d.expand_x)[:rows], want[r]["expand_x"], f"seed {seed} rank {r} expand_x")
        assert_poison(back(d.expand_x)[rows:], f"seed {seed} rank {r} expand_x past its {rows} rows")
        assert_bits(back(d.assist_info)[: 3 * rows], want[r]["assist_info"], f"seed {seed} rank {r} assist_info")
        assert_poison(back(d.assist_info)[3 * rows:], f"seed {seed} rank {r} assist_info past its {rows} triples")
        assert_bits(back(d.expert_token_nums), want[r]["expert_token_nums"], f"seed {seed} rank {r} token nums")
        assert_bits(back(d.ep_recv_counts), want[r]["ep_recv_counts"], f"seed {seed} rank {r} ep_recv_counts")
        assert_bits(back(y), want_y[r], f"seed {seed} rank {r} combine")


# Each keyword of the native dispatch and combine reaches its operation: one case per option (dispatch keywords, then
# combine keywords), bit for bit against the golden model, so that a keyword dropped or handed to another option shows.
# The golden model's names for the same options follow each case.
RANKS, H = 3, 64
OPTIONS = {
    "shared_experts": (dict(shared_expert_num=1, shared_expert_rank_num=1), {}, dict(shared_expert_num=1,
                                                                                      shared_expert_rank_num=1)),
    "quant_int8": (dict(quant="int8"), {}, dict(quant_mode=2)),
    "quant_int8_smooth_scales": (dict(quant="int8", smooth_scales="draw"), {}, dict(quant_mode=2, scales="draw")),
    "cumulative_token_nums": (dict(cumulative_token_nums=True), {}, dict(expert_token_nums_type=0)),
    "global_bs": (dict(global_bs=8 * RANKS), {}, dict(global_bs=8 * RANKS)),
    "active_mask": (dict(active_mask="prefix"), {}, dict(x_active_mask="prefix")),
    "comm_quant_int8": ({}, dict(comm_quant="int8"), dict(comm_quant_mode=2)),
    "shared_expert_x": ({}, dict(shared_expert_x="draw"), dict(shared_expert_x="draw")),
}


@pytest.mark.parametrize("option", OPTIONS)
def test_each_option_reaches_the_operation(seed, option):
    dispatch_kw, combine_kw, golden_kw = (dict(d) for d in OPTIONS[option])
    experts = 4 if option == "shared_experts" else 6  # 4 routed experts over the 2 ranks after the shared one
    x, ids, w, _ = draw(seed, RANKS, experts=experts)
    g = torch.Generator().manual_seed(seed + 1)
    outs = [torch.randn(8 * RANKS * 3, H, generator=g).to(torch.bfloat16) for _ in range(RANKS)]  # A rows: global_bs
    scales = torch.rand(experts, H, generator=g) + 0.5
    masks = [torch.arange(5) < 3 - r % 2 for r in range(RANKS)]
    shared_x = [torch.randn(5, H, generator=g).to(torch.bfloat16) for _ in range(RANKS)]
    drawn = {"scales": scales, "smooth_scales": scales, "x_active_mask": masks, "active_mask": masks,
             "shared_expert_x": shared_x}
    per_rank = {"active_mask", "shared_expert_x"}  # the native API takes this rank's, the golden model every rank's
    for kw in (dispatch_kw, combine_kw, golden_kw):
        for key, value in kw.items():
            if value in ("draw", "prefix"):
                kw[key] = drawn[key]

    def body(r, group):
        mine = lambda kw: {k: v[r] if k in per_rank else v for k, v in kw.items()}  # noqa: E731
        d = moe_ep.dispatch(group, x[r], ids[r], moe_expert_num=experts, **mine(dispatch_kw))
        y = moe_ep.combine(group, d.handle, outs[r][: d.expand_x.shape[0]], w[r], **mine(combine_kw))
        return d, y

    groups = moe_ep.thread_groups(RANKS, timeout=60)
    got = on_threads(RANKS, lambda r: body(r, groups[r]))
    layout = {k: golden_kw.pop(k) for k in ("shared_expert_num", "shared_expert_rank_num") if k in golden_kw}
    layout.setdefault("shared_expert_num", 0)
    dispatch_only = {k: golden_kw[k] for k in ("quant_mode", "scales", "expert_token_nums_type") if k in golden_kw}
    both = {k: v for k, v in golden_kw.items() if k not in dispatch_only and k not in ("comm_quant_mode",
                                                                                         "shared_expert_x")}
    want = golden_dispatch(x, ids, ep_world_size=RANKS, moe_expert_num=experts, **layout, **dispatch_only, **both)
    combine_only = {k: golden_kw[k] for k in ("comm_quant_mode", "shared_expert_x") if k in golden_kw}
    want_y = golden_combine(outs, ids, w, ep_world_size=RANKS, moe_expert_num=experts, **layout, **both,
                            **combine_only)
    for r, (d, y) in enumerate(got):
        rows, tag = want[r]["rows"], f"seed {seed} {option} rank {r}"
        assert d.handle.num_rows == rows, tag
        assert_bits(d.expand_x[:rows], want[r]["expand_x"], f"{tag} expand_x")
        if want[r]["dynamic_scales"] is not None:
            assert_bits(d.dynamic_scales[:rows], want[r]["dynamic_scales"], f"{tag} dynamic_scales")
        else:
            assert d.dynamic_scales is None, tag
        assert_bits(d.assist_info[: 3 * rows], want[r]["assist_info"], f"{tag} assist_info")
        assert_bits(d.expert_token_nums, want[r]["expert_token_nums"], f"{tag} expert_token_nums")
        assert_bits(d.ep_recv_counts, want[r]["ep_recv_counts"], f"{tag} ep_recv_counts")
        assert_bits(y, want_y[r], f"{tag} combine")


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_outputs_come_from_the_pool_and_go_back(seed, kind):
    # The extension makes the outputs: rows past what arrived keep the poison pattern (nothing zeroes them),
    # combine's rows of inactive tokens are 0, and once the caller drops the outputs every block is back in
    # the pool.
    x, ids, w, outs = draw(seed, 1, experts=6)
    mask = torch.tensor([True, True, False, False, False])  # 2 of 5 tokens: 6 of the 15 rows arrive
    if kind == "numpy":
        x, ids, w, mask = moe_ep.bf16(x[0].view(torch.int16).numpy().view(np.uint16)), ids[0].numpy(), w[0].numpy(), \
            mask.numpy()
    else:
        x, ids, w = x[0], ids[0], w[0]
    group = moe_ep.thread_groups(1)[0]
    in_use = moe_ep._moe_ep.pool_stats()[0]
    d = moe_ep.dispatch(group, x, ids, moe_expert_num=6, active_mask=mask)
    expand_x = d.expand_x if kind == "torch" else torch.from_numpy(d.expand_x.array.view(np.int16))
    assert tuple(expand_x.shape) == (15, 64) and d.handle.num_rows == 6
    assert (expand_x[6:].contiguous().view(torch.uint8) == 0xA5).all(), "rows past num_rows were written"
    assert moe_ep._moe_ep.pool_stats()[0] == in_use + 4  # expand_x, assist_info, two counts; no TP: none for tp
    y = moe_ep.combine(group, d.handle, d.expand_x, w)
    assert moe_ep._moe_ep.pool_stats()[0] == in_use + 5
    y_bits = (y if kind == "torch" else torch.from_numpy(y.array.view(np.int16))).contiguous().view(torch.int16)
    assert (y_bits[2:] == 0).all(), "rows of inactive tokens are not 0"
    del d, y, y_bits, expand_x
    assert moe_ep._moe_ep.pool_stats()[0] == in_use


def test_combine_zeroes_tokens_without_an_active_pair(seed):
    # A (Bs, K) mask: combine writes no row for a token whose pairs are all inactive; the outputs Python gets
    # are new, so that row is 0 (not pool memory), and the other rows are written.
    x, ids, w, outs = draw(seed, 1, experts=6)
    mask = torch.ones(5, 3, dtype=torch.bool)
    mask[1] = False
    mask[3, 1:] = False
    group = moe_ep.thread_groups(1)[0]
    d = moe_ep.dispatch(group, x[0], ids[0], moe_expert_num=6, active_mask=mask)
    residual, gamma = torch.randn(5, 1, 64).to(torch.bfloat16), torch.randn(64).to(torch.bfloat16)
    for got in (moe_ep.combine(group, d.handle, d.expand_x, w[0]),
                *moe_ep.combine_add_rms_norm(group, d.handle, d.expand_x, w[0], residual, gamma)):
        bits = got.reshape(5, -1).contiguous().view(torch.uint8)
        assert (bits[1] == 0).all(), "the row of a token without an active pair is not 0"
        for t in (0, 2, 3, 4):
            assert not (bits[t] == 0xA5).all(), f"row {t} was not written"


def test_survivors_go_on_after_a_rank_stops(seed):
    # Rank 3 of 4 never calls again: the others probe, reset and dispatch among themselves, as a 3-rank group would.
    x, ids, w, outs = draw(seed, 3, experts=6)
    groups = moe_ep.thread_groups(4, timeout=2)

    def body(r, group):
        if r == 3:
            return None
        reachable = moe_ep.probe_reachable(group, wait=1)
        moe_ep.buffer_reset(group, reachable)
        d = moe_ep.dispatch(group, x[r], ids[r], moe_expert_num=8, survivors=reachable)
        return reachable, d, moe_ep.combine(group, d.handle, outs[r][: d.expand_x.shape[0]], w[r])

    got = on_threads(len(groups), lambda r: body(r, groups[r]))
    want = golden_dispatch(x, ids, ep_world_size=3, moe_expert_num=6, shared_expert_num=0)
    want_y = golden_combine(outs, ids, w, ep_world_size=3, moe_expert_num=6, shared_expert_num=0)
    for r in range(3):
        reachable, d, y = got[r]
        assert reachable == [1, 1, 1, 0]
        assert_bits(d.expand_x[: want[r]["rows"]], want[r]["expand_x"], f"seed {seed} survivor {r} expand_x")
        assert_bits(y, want_y[r], f"seed {seed} survivor {r} combine")


def test_bad_input_names_the_parameter():
    group = moe_ep.thread_groups(1)[0]
    with pytest.raises(moe_ep.InvalidArgumentError, match="'x'.*bf16 or fp16") as caught:
        moe_ep.dispatch(group, torch.zeros(2, 8), torch.zeros(2, 1, dtype=torch.int32), moe_expert_num=1)
    assert caught.value.code == moe_ep.errors.INVALID_PARAM
    with pytest.raises(moe_ep.InvalidArgumentError, match="quant = 'int4'"):
        moe_ep.dispatch(group, torch.zeros(2, 8, dtype=torch.bfloat16), torch.zeros(2, 1, dtype=torch.int32),
                        moe_expert_num=1, quant="int4")
    with pytest.raises(moe_ep.InvalidArgumentError, match="x has dtype float64"):
        moe_ep.dispatch(group, np.zeros((2, 8)), np.zeros((2, 1), dtype=np.int32), moe_expert_num=1)
    with pytest.raises(moe_ep.InvalidArgumentError, match="expert_out has dtype torch.float64"):
        moe_ep.combine(group, None, torch.zeros(2, 8, dtype=torch.float64), torch.zeros(2, 1))
    d = moe_ep.dispatch(group, torch.zeros(2, 8, dtype=torch.bfloat16), torch.zeros(2, 1, dtype=torch.int32),
                        moe_expert_num=1)
    with pytest.raises(moe_ep.InvalidArgumentError, match="'expert_out' = bool.*bf16 or fp16") as caught:
        moe_ep.combine(group, d.handle, torch.zeros(2, 8, dtype=torch.bool), torch.zeros(2, 1))
    assert caught.value.code == moe_ep.errors.INVALID_PARAM
    with pytest.raises(moe_ep.InvalidArgumentError, match=r"window_mb = -1 must be in \[0, 1048576\]"):
        moe_ep.thread_groups(2, window_mb=-1)
    with pytest.raises(moe_ep.InvalidArgumentError, match=r"size = 1099511627776 must be in"):
        moe_ep.thread_groups(2**40)
    with pytest.raises(moe_ep.InvalidArgumentError, match="wait = -5"):
        moe_ep.probe_reachable(group, -5)
    with pytest.raises(moe_ep.InvalidArgumentError, match="expert layout: moe_expert_num"):
        moe_ep.dispatch(group, torch.zeros(2, 8, dtype=torch.bfloat16), torch.zeros(2, 1, dtype=torch.int32),
                        moe_expert_num=2**70)


def test_missing_peer_times_out_naming_it():
    groups = moe_ep.thread_groups(2, timeout=0.5)
    with pytest.raises(moe_ep.TimeoutError) as caught:
        moe_ep.dispatch(groups[0], torch.zeros(2, 8, dtype=torch.bfloat16), torch.ones(2, 1, dtype=torch.int32),
                        moe_expert_num=2)
    assert caught.value.missing_ranks == [1]
    assert groups[0].failed_ranks == [1]


def test_barrier_waits_for_every_rank_and_names_a_missing_one():
    groups = moe_ep.thread_groups(2, timeout=0.5)
    on_threads(len(groups), lambda r: moe_ep.barrier(groups[r]))  # both arrive: both leave
    with pytest.raises(moe_ep.TimeoutError, match="Barrier") as caught:
        moe_ep.barrier(groups[0])
    assert caught.value.missing_ranks == [1]
