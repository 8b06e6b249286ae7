# The native Python API on thread ranks: torch and numpy inputs bit for bit against the golden model, elastic scale-down
# after a rank stops, and clear errors (bad input, a missing peer).
import datetime
import random
import threading
import time

import numpy as np
import pytest
import torch

import moe_ep
from torch_golden import active_tokens, golden_combine, golden_combine_add_rms_norm, golden_dispatch
from bitwise import assert_bits, assert_prefix
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
        assert_prefix(back(d.expand_x), want[r]["expand_x"], f"seed {seed} rank {r} expand_x")
        assert_prefix(back(d.assist_info), want[r]["assist_info"], f"seed {seed} rank {r} assist_info")
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
        assert_prefix(d.expand_x, want[r]["expand_x"], f"{tag} expand_x")
        if want[r]["dynamic_scales"] is not None:
            assert_prefix(d.dynamic_scales, want[r]["dynamic_scales"], f"{tag} dynamic_scales")
        else:
            assert d.dynamic_scales is None, tag
        assert_prefix(d.assist_info, want[r]["assist_info"], f"{tag} assist_info")
        assert_bits(d.expert_token_nums, want[r]["expert_token_nums"], f"{tag} expert_token_nums")
        assert_bits(d.ep_recv_counts, want[r]["ep_recv_counts"], f"{tag} ep_recv_counts")
        assert_bits(y, want_y[r], f"{tag} combine")


def test_tp_pairs_match_golden(seed):
    # Two EP groups of 2 thread ranks joined in TP pairs (flat rank g = tp_rank * E + ep_rank), one routed expert per
    # rank as a TP pair needs: every output of dispatch (the peer's rows appended, tp_recv_counts) and combine
    # (the pair's partial rows added) bit for bit, poison past the rows.
    ep_size, experts, bs, hidden, top_k = 2, 2, 4, 64, 1
    ranks = 2 * ep_size
    x, ids, w, _ = draw(seed, ranks, bs=bs, hidden=hidden, top_k=top_k, experts=experts)
    g = torch.Generator().manual_seed(seed + 1)
    outs = [torch.randn(2 * ep_size * bs * top_k, hidden, generator=g).to(torch.bfloat16) for _ in range(ranks)]
    eps = [moe_ep.thread_groups(ep_size, timeout=60, name=f"ep{t}") for t in range(2)]
    pairs = [moe_ep.thread_groups(2, timeout=60, name=f"tp{e}") for e in range(ep_size)]

    def body(r):
        t, e = divmod(r, ep_size)
        d = moe_ep.dispatch(eps[t][e], x[r], ids[r], moe_expert_num=experts, tp=pairs[e][t])
        y = moe_ep.combine(eps[t][e], d.handle, outs[r][: d.expand_x.shape[0]], w[r], tp=pairs[e][t])
        return d, y

    got = on_threads(ranks, body)
    layout = dict(ep_world_size=ep_size, moe_expert_num=experts, shared_expert_num=0, tp_world_size=2)
    want = golden_dispatch(x, ids, **layout)
    want_y = golden_combine(outs, ids, w, **layout)
    for r, (d, y) in enumerate(got):
        rows, tag = want[r]["rows"], f"seed {seed} rank {r}"
        assert d.handle.num_rows == rows, tag
        assert_prefix(d.expand_x, want[r]["expand_x"], f"{tag} expand_x")
        assert_prefix(d.assist_info, want[r]["assist_info"], f"{tag} assist_info")
        assert_bits(d.expert_token_nums, want[r]["expert_token_nums"], f"{tag} expert_token_nums")
        assert_bits(d.ep_recv_counts, want[r]["ep_recv_counts"], f"{tag} ep_recv_counts")
        assert_bits(d.tp_recv_counts, want[r]["tp_recv_counts"], f"{tag} tp_recv_counts")
        assert_bits(y, want_y[r], f"{tag} combine")


@pytest.mark.parametrize("op", ["combine", "combine_add_rms_norm"])
def test_copy_and_const_experts_take_their_tensors(seed, op):
    # Zero, copy and const experts beside the routed ones: both combines take ori_x and the const tensors by keyword,
    # bit for bit against the golden model.
    experts, special = 6, dict(zero_expert_num=1, copy_expert_num=1, const_expert_num=2)
    x, ids, w, _ = draw(seed, RANKS, top_k=4, experts=experts + 4)
    g = torch.Generator().manual_seed(seed + 2)
    outs = [torch.randn(5 * RANKS * 4, H, generator=g).to(torch.bfloat16) for _ in range(RANKS)]
    ori = [torch.randn(5, H, generator=g).to(torch.bfloat16) for _ in range(RANKS)]
    alpha1, alpha2, v = (torch.randn(2, H, generator=g).to(torch.bfloat16) for _ in range(3))
    residual = [torch.randn(5, 1, H, generator=g).to(torch.bfloat16) for _ in range(RANKS)]
    gamma = torch.randn(H, generator=g).to(torch.bfloat16)
    tensors = lambda r: dict(ori_x=ori[r], const_alpha1=alpha1, const_alpha2=alpha2, const_v=v)  # noqa: E731

    def body(r, group):
        d = moe_ep.dispatch(group, x[r], ids[r], moe_expert_num=experts, **special)
        out = outs[r][: d.expand_x.shape[0]]
        if op == "combine":
            return moe_ep.combine(group, d.handle, out, w[r], **tensors(r))
        return moe_ep.combine_add_rms_norm(group, d.handle, out, w[r], residual[r], gamma, **tensors(r))

    groups = moe_ep.thread_groups(RANKS, timeout=60)
    got = on_threads(RANKS, lambda r: body(r, groups[r]))
    golden = dict(ep_world_size=RANKS, moe_expert_num=experts, shared_expert_num=0, ori_x=ori,
                  const_expert_alpha_1=alpha1, const_expert_alpha_2=alpha2, const_expert_v=v, **special)
    if op == "combine":
        want = golden_combine(outs, ids, w, **golden)
    else:
        want = golden_combine_add_rms_norm(outs, ids, w, residual, gamma, **golden)
    for r in range(RANKS):
        names = ("y", "rstd", "x") if op != "combine" else ("x",)
        for name, mine, theirs in zip(names, got[r] if op != "combine" else (got[r],),
                                      want[r] if op != "combine" else (want[r],), strict=True):
            assert_bits(mine, theirs, f"seed {seed} {op} rank {r} {name}")


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


def test_small_outputs_cost_no_page_each():
    # A caller that keeps many results of small calls holds their bytes, not a page per output; dropped, they leave
    # no idle blocks in the pool.
    group = moe_ep.thread_groups(1)[0]
    x, ids = torch.ones(1, 16, dtype=torch.bfloat16), torch.zeros(1, 1, dtype=torch.int32)
    in_use, idle_blocks, idle_bytes = moe_ep._moe_ep.pool_stats()
    kept = [moe_ep.dispatch(group, x, ids, moe_expert_num=1) for _ in range(200)]
    assert moe_ep._moe_ep.pool_stats()[0] >= in_use + 4 * len(kept)
    del kept
    assert moe_ep._moe_ep.pool_stats() == (in_use, idle_blocks, idle_bytes), "small outputs went to the pool"


def test_combine_zeroes_tokens_without_an_active_pair(seed):
    # A (Bs, K) mask: combine writes no row for a token whose pairs are all inactive; the outputs Python gets
    # are new, so that row is 0 (not pool memory), and the other rows are the golden model's.
    x, ids, w, outs = draw(seed, 1, experts=6)
    mask = torch.ones(5, 3, dtype=torch.bool)
    mask[1] = False
    mask[3, 1:] = False
    group = moe_ep.thread_groups(1)[0]
    d = moe_ep.dispatch(group, x[0], ids[0], moe_expert_num=6, active_mask=mask)
    g = torch.Generator().manual_seed(seed + 1)
    residual = torch.randn(5, 1, 64, generator=g).to(torch.bfloat16)
    gamma = torch.randn(64, generator=g).to(torch.bfloat16)
    layout = dict(ep_world_size=1, moe_expert_num=6, shared_expert_num=0, x_active_mask=[mask])
    want_x = golden_combine([d.expand_x], ids, w, **layout)[0]
    want_y, want_rstd, want_xs = golden_combine_add_rms_norm([d.expand_x], ids, w, [residual], gamma, **layout)[0]
    got_all = (moe_ep.combine(group, d.handle, d.expand_x, w[0]),
               *moe_ep.combine_add_rms_norm(group, d.handle, d.expand_x, w[0], residual, gamma))
    active = active_tokens(5, mask)  # all but token 1
    for name, got, want in zip(("x", "y", "rstd", "x + residual"), got_all, (want_x, want_y, want_rstd, want_xs),
                                 strict=True):
        bits = got.reshape(5, -1).contiguous().view(torch.uint8)
        assert (bits[1] == 0).all(), f"{name}: the row of a token without an active pair is not 0"
        assert_bits(got.reshape(5, -1)[active], want.reshape(5, -1)[active], f"seed {seed} combine {name}")


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
        rows = want[r]["rows"]
        assert d.handle.num_rows == rows
        assert_prefix(d.expand_x, want[r]["expand_x"], f"seed {seed} survivor {r} expand_x")
        assert_prefix(d.assist_info, want[r]["assist_info"], f"seed {seed} survivor {r} assist_info")
        assert_bits(d.expert_token_nums, want[r]["expert_token_nums"], f"seed {seed} survivor {r} token nums")
        # Sized for the group of 4: the survivors' counts first, then zeros.
        counts = want[r]["ep_recv_counts"]
        assert_bits(d.ep_recv_counts[: len(counts)], counts, f"seed {seed} survivor {r} ep_recv_counts")
        assert (d.ep_recv_counts[len(counts):] == 0).all(), f"seed {seed} survivor {r}: counts past the survivors'"
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
    d = moe_ep.dispatch(group, torch.zeros(2, 8, dtype=torch.bfloat16), torch.zeros(2, 1, dtype=torch.int32),
                        moe_expert_num=1)
    with pytest.raises(moe_ep.InvalidArgumentError, match="expert_out has dtype torch.float64"):
        moe_ep.combine(group, d.handle, torch.zeros(2, 8, dtype=torch.float64), torch.zeros(2, 1))
    with pytest.raises(moe_ep.InvalidArgumentError,
                       match=r"'expert_out' = \(2, 8\) bool violates rule: dtype must be the dispatch's x dtype, bf16"
                       ) as caught:
        moe_ep.combine(group, d.handle, torch.zeros(2, 8, dtype=torch.bool), torch.zeros(2, 1))
    assert caught.value.code == moe_ep.errors.INVALID_PARAM
    with pytest.raises(moe_ep.InvalidArgumentError, match=r"\) fp16 violates rule: .* x dtype, bf16") as caught:
        moe_ep.combine(group, d.handle, torch.zeros(2, 8, dtype=torch.float16), torch.zeros(2, 1))
    assert caught.value.code == moe_ep.errors.INVALID_PARAM
    with pytest.raises(moe_ep.InvalidArgumentError, match=r"window_mb = -1 must be in \[0, 1048576\]"):
        moe_ep.thread_groups(2, window_mb=-1)
    with pytest.raises(moe_ep.InvalidArgumentError, match=r"size = 1099511627776 must be in"):
        moe_ep.thread_groups(2**40)
    with pytest.raises(moe_ep.InvalidArgumentError, match="wait = -5"):
        moe_ep.probe_reachable(group, -5)
    with pytest.raises(moe_ep.InvalidArgumentError, match=r"dispatch: moe_expert_num = 1180591620717411303424 must "
                                                         r"be in \[0, 2147483647\]"):
        moe_ep.dispatch(group, torch.zeros(2, 8, dtype=torch.bfloat16), torch.zeros(2, 1, dtype=torch.int32),
                        moe_expert_num=2**70)


def test_missing_peer_times_out_naming_it():
    groups = moe_ep.thread_groups(2, timeout=0.5)
    with pytest.raises(moe_ep.TimeoutError) as caught:
        moe_ep.dispatch(groups[0], torch.zeros(2, 8, dtype=torch.bfloat16), torch.ones(2, 1, dtype=torch.int32),
                        moe_expert_num=2)
    assert caught.value.missing_ranks == [1]
    assert groups[0].failed_ranks == [1]


def test_a_dropped_group_waits_for_its_readers_without_the_gil():
    # Rank 0 stages x for rank 1 (the pull path), which never comes to read it: dropped, rank 0's group gives rank 1
    # up to a second to finish reading (so that it reads nothing freed), and meanwhile other Python threads run.
    groups = moe_ep.thread_groups(2, timeout=2, data_path="pull")
    with pytest.raises(moe_ep.TimeoutError):
        moe_ep.dispatch(groups[0], torch.ones(2, 8, dtype=torch.bfloat16), torch.ones(2, 1, dtype=torch.int32),
                        moe_expert_num=2)
    ticks, stop = [], threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.001)

    ticker = threading.Thread(target=tick)
    ticker.start()
    time.sleep(0.05)
    start = time.monotonic()
    del groups
    end = time.monotonic()
    stop.set()
    ticker.join()
    assert end - start > 0.5, "the group did not wait for its reader: this test shows nothing"
    ticked = sum(start < t < end for t in ticks)
    assert ticked > 10, f"another thread ticked {ticked} times in the {end - start:.2f} s the group took to go"


def test_barrier_waits_for_every_rank_and_names_a_missing_one():
    groups = moe_ep.thread_groups(2, timeout=0.5)
    on_threads(len(groups), lambda r: moe_ep.barrier(groups[r]))  # both arrive: both leave
    with pytest.raises(moe_ep.TimeoutError, match="Barrier") as caught:
        moe_ep.barrier(groups[0])
    assert caught.value.missing_ranks == [1]


def test_a_wait_under_a_millisecond_is_not_the_group_timeout(seed):
    # The extension takes whole milliseconds, 0 meaning the group timeout: a shorter wait is rounded up, not down to 0.
    wait = random.Random(seed).uniform(1e-6, 0.999e-3)
    print(f"seed {seed}: wait {wait} s")
    groups = moe_ep.thread_groups(2, timeout=5)
    start = time.monotonic()
    reachable = moe_ep.probe_reachable(groups[0], wait)  # rank 1 never calls
    took = time.monotonic() - start
    assert reachable == [1, 0], reachable
    assert took < 2.5, f"probe_reachable(wait={wait}) took {took:.2f} s: the group timeout (5 s), not the wait"
    for wait, ms in ((1e-9, 1), (0.001, 1), (0.0015, 2), (0.007, 7), (2.5, 2500)):
        assert moe_ep._whole_ms(wait) == datetime.timedelta(milliseconds=ms), f"wait {wait} s is not {ms} ms"
    for wait in (-1e-4, 0, float("nan")):
        with pytest.raises(moe_ep.InvalidArgumentError, match=f"probe_reachable: wait = {wait} must be a positive "
                                                              "number of seconds"):
            moe_ep.probe_reachable(groups[0], wait)


def bf16_zeros(*shape):
    return torch.zeros(*shape, dtype=torch.bfloat16)


def ids_zeros(*shape):
    return torch.zeros(*shape, dtype=torch.int32)


# Native calls with a value of the wrong kind, each once with every other argument good (the test's group and handle
# stand in for "g" and "h"), and how the refusal names it: integers must be ints (a float is not truncated, a string
# not parsed, a bool not 1), flags bools, and what the extension would refuse with pybind11's TypeError, IndexError or
# torch's RuntimeError (no moe_ep.Error) is refused in Python first.
def call_dispatch(g, h, **change):
    del h  # dispatch makes the handle
    return moe_ep.dispatch(g, **{"x": bf16_zeros(2, 8), "expert_ids": ids_zeros(2, 1), "moe_expert_num": 1, **change})


def call_norm(g, h, **change):
    args = {"handle": h, "expert_out": bf16_zeros(2, 8), "expert_scales": torch.ones(2, 1),
            "residual_x": bf16_zeros(2, 1, 8), "gamma": bf16_zeros(8), **change}
    return moe_ep.combine_add_rms_norm(g, **args)


BAD_NATIVE = {
    "moe_expert_num_float": (lambda g, h: call_dispatch(g, h, moe_expert_num=1.9),
                             "dispatch: moe_expert_num = 1.9 must be an int"),
    "moe_expert_num_str": (lambda g, h: call_dispatch(g, h, moe_expert_num="1"),
                           "dispatch: moe_expert_num = '1' must be an int"),
    "moe_expert_num_bool": (lambda g, h: call_dispatch(g, h, moe_expert_num=True),
                            "dispatch: moe_expert_num = True must be an int, not a bool"),
    "global_bs_float": (lambda g, h: call_dispatch(g, h, global_bs=2.5), "dispatch: global_bs = 2.5 must be an int"),
    "survivors_floats": (lambda g, h: call_dispatch(g, h, survivors=[1.0, 0.5]),
                         r"dispatch: survivors\[0\] = 1.0 must be True or False \(or 0 or 1\)"),
    "survivors_not_a_list": (lambda g, h: call_dispatch(g, h, survivors=1),
                             r"dispatch: survivors = 1 must be a sequence of 0 and 1 \(or of bools\)"),
    "cumulative_str": (lambda g, h: call_dispatch(g, h, cumulative_token_nums="no"),
                       r"dispatch: cumulative_token_nums = 'no' must be True or False \(or 0 or 1\)"),
    "quant_float": (lambda g, h: call_dispatch(g, h, quant=2.0), "quant = 2.0 must be None"),
    "quant_bool": (lambda g, h: call_dispatch(g, h, quant=True), "quant = True must be None"),
    "tp_str": (lambda g, h: call_dispatch(g, h, tp="abc"), "dispatch: tp = 'abc' must be a moe_ep.Group"),
    "x_sparse": (lambda g, h: call_dispatch(g, h, x=bf16_zeros(2, 8).to_sparse()),
                 r"x has layout torch.sparse_coo; moe_ep takes dense tensors \(torch.strided"),
    "dispatch_group_none": (lambda g, h: call_dispatch(None, h), "dispatch: group = None must be a moe_ep.Group"),
    "combine_handle_none": (lambda g, h: moe_ep.combine(g, None, bf16_zeros(2, 8), torch.ones(2, 1)),
                            "combine: handle = None must be the handle of this rank's dispatch result"),
    "combine_group_none": (lambda g, h: moe_ep.combine(None, h, bf16_zeros(2, 8), torch.ones(2, 1)),
                           "combine: group = None must be a moe_ep.Group"),
    "norm_eps_str": (lambda g, h: call_norm(g, h, norm_eps="x"),
                     "combine_add_rms_norm: norm_eps = 'x' must be a real number"),
    "norm_eps_none": (lambda g, h: call_norm(g, h, norm_eps=None),
                      "combine_add_rms_norm: norm_eps = None must be a real number"),
    "barrier_group_none": (lambda g, h: moe_ep.barrier(None), "barrier: group = None must be a moe_ep.Group"),
    "probe_wait_str": (lambda g, h: moe_ep.probe_reachable(g, wait="1"),
                       "probe_reachable: wait = '1' must be a real number"),
    "reachable_float": (lambda g, h: moe_ep.buffer_reset(g, reachable=[0.6]),
                        r"buffer_reset: reachable\[0\] = 0.6 must be True or False"),
    "reachable_huge": (lambda g, h: moe_ep.buffer_reset(g, reachable=[2**40]),
                       r"buffer_reset: reachable\[0\] = 1099511627776 must be True or False"),
    "need_sync_str": (lambda g, h: moe_ep.buffer_reset(g, need_sync="no"),
                      r"buffer_reset: need_sync = 'no' must be True or False \(or 0 or 1\)"),
    "timeout_str": (lambda g, h: moe_ep.thread_groups(2, timeout="5"), "timeout = '5' must be a real number"),
    "size_bool": (lambda g, h: moe_ep.thread_groups(True), "size = True must be an int, not a bool"),
    "members_huge": (lambda g, h: moe_ep.join_process_group(members=[2**40], job=(0, 1, "x")),
                     r"join_process_group: members\[0\] = 1099511627776 must be in \[0, 2147483647\]"),
    "members_float": (lambda g, h: moe_ep.join_process_group(members=[0.0], job=(0, 1, "x")),
                      r"join_process_group: members\[0\] = 0.0 must be an int"),
    "job_short": (lambda g, h: moe_ep.join_process_group(job=(0, 1)),
                  r"join_process_group: job = \(0, 1\) must be \(rank, world_size, rendezvous\)"),
    "job_rank_bool": (lambda g, h: moe_ep.join_process_group(job=(True, 1, "x")),
                      "join_process_group: job rank = True must be an int, not a bool"),
    "peer_visible_float_dim": (lambda g, h: moe_ep.peer_visible((2.7, 4), torch.bfloat16),
                               r"peer_visible: shape\[0\] = 2.7 must be an int"),
    "peer_visible_negative_dim": (lambda g, h: moe_ep.peer_visible((-1, 4), torch.float32),
                                  r"peer_visible: shape\[0\] = -1 must be in \[0, 9223372036854775807\]"),
    "peer_visible_negative_dims": (lambda g, h: moe_ep.peer_visible((-2, -3), torch.float32),
                                   r"peer_visible: shape\[0\] = -2 must be in \[0, "),
    "peer_visible_too_many_bytes": (lambda g, h: moe_ep.peer_visible((2**62,), torch.float32),
                                    r"peer_visible: shape \(4611686018427387904,\) of torch.float32 is "
                                    r"18446744073709551616 bytes; the rule: at most 2\^63 - 1"),
    "peer_visible_bad_dtype": (lambda g, h: moe_ep.peer_visible((2,), "abc"),
                               "peer_visible: dtype 'abc' is not one moe_ep's operations take"),
}


@pytest.mark.parametrize("case", sorted(BAD_NATIVE))
def test_a_value_of_the_wrong_kind_is_refused_naming_it(case):
    call, named = BAD_NATIVE[case]
    group = moe_ep.thread_groups(1)[0]
    handle = moe_ep.dispatch(group, bf16_zeros(2, 8), ids_zeros(2, 1), moe_expert_num=1).handle
    with pytest.raises(moe_ep.InvalidArgumentError, match=named) as caught:
        call(group, handle)
    assert caught.value.code == moe_ep.errors.INVALID_PARAM, str(caught.value)


@pytest.mark.parametrize("call", [lambda g: moe_ep.buffer_reset(g, reachable=[2]),
                                  lambda g: call_dispatch(g, None, survivors=[-1]),
                                  lambda g: moe_ep.buffer_reset(g, reachable=np.array([3], dtype=np.int32))])
def test_a_mask_entry_other_than_0_or_1_is_the_operators_rule(call):
    # An int32 (a C++ caller's entry) of the wrong value: 561002, as the library and the C API refuse it.
    group = moe_ep.thread_groups(1)[0]
    with pytest.raises(moe_ep.InvalidArgumentError, match=r"\[0\] = .* must be 0 or 1") as caught:
        call(group)
    assert caught.value.code == moe_ep.errors.INVALID_CONFIG, str(caught.value)


def test_a_mask_entry_of_the_wrong_kind_is_named_before_one_of_the_wrong_value():
    group = moe_ep.thread_groups(2)[0]
    with pytest.raises(moe_ep.InvalidArgumentError, match=r"reachable\[1\] = 1.5 must be True or False") as caught:
        moe_ep.buffer_reset(group, reachable=[2, 1.5])
    assert caught.value.code == moe_ep.errors.INVALID_PARAM, str(caught.value)


def test_flush_denormal_keeps_a_subnormal_norm_eps():
    # norm_eps 1e-40 is a float subnormal: flushed to 0 on the way in, rstd of a zero row would be inf and y NaN.
    group = moe_ep.thread_groups(1)[0]
    handle = moe_ep.dispatch(group, bf16_zeros(2, 8), ids_zeros(2, 1), moe_expert_num=1).handle
    want = call_norm(group, handle, norm_eps=1e-40)
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        got = call_norm(group, handle, norm_eps=1e-40)
    finally:
        torch.set_flush_denormal(False)
    golden = golden_combine_add_rms_norm([bf16_zeros(2, 8)], [ids_zeros(2, 1)], [torch.ones(2, 1)],
                                         [bf16_zeros(2, 1, 8)], bf16_zeros(8), ep_world_size=1, moe_expert_num=1,
                                         shared_expert_num=0, norm_eps=1e-40)[0]
    for name, ours, unflushed, expected in zip(("y", "rstd", "x"), got, want, golden, strict=True):
        assert_bits(unflushed, expected, f"{name} (golden model)")
        assert_bits(ours, expected, f"{name} with denormals flushed")
    assert not torch.isnan(want[0]).any()


@pytest.mark.parametrize("norm_eps", [-1.0, float("nan"), float("inf")])
def test_add_rms_norm_eps_must_be_finite_and_not_negative(norm_eps):
    # A real number of the wrong value is the operator's rule (561002, as CANN's tiling refuses attributes), not the
    # binding's: the library names it.
    group = moe_ep.thread_groups(1)[0]
    handle = moe_ep.dispatch(group, bf16_zeros(2, 8), ids_zeros(2, 1), moe_expert_num=1).handle
    with pytest.raises(moe_ep.InvalidArgumentError, match=f"parameter 'norm_eps' = {norm_eps:g} violates rule: "
                                                          "must be finite and >= 0") as caught:
        call_norm(group, handle, norm_eps=norm_eps)
    assert caught.value.code == moe_ep.errors.INVALID_CONFIG, str(caught.value)
    call_norm(group, handle, norm_eps=0.0)  # the group still works, and 0 is a valid epsilon


def test_integers_may_be_any_index_type(seed):
    # operator.index, not type(x) is int: numpy's integers (and survivors / reachable as arrays) are integers, and
    # masks and flags may be bools of any kind.
    group = moe_ep.thread_groups(1)[0]
    x, ids, w, _ = draw(seed, 1, experts=6)
    d = moe_ep.dispatch(group, x[0], ids[0], moe_expert_num=np.int64(6), global_bs=np.int32(5),
                        survivors=np.array([1]))
    want = golden_dispatch(x, ids, ep_world_size=1, moe_expert_num=6, shared_expert_num=0)
    assert_bits(d.expand_x[: want[0]["rows"]], want[0]["expand_x"], f"seed {seed} expand_x")
    moe_ep.buffer_reset(group, np.array([1], dtype=np.int32), need_sync=False)
    assert moe_ep.peer_visible(np.array([2, 3]), torch.float32).shape == (2, 3)
    # Masks of bools and flags as 0 / 1 or numpy / torch bools, as such code writes them.
    for survivors in ([True], np.array([True]), torch.tensor([True])):
        d = moe_ep.dispatch(group, x[0], ids[0], moe_expert_num=6, survivors=survivors,
                            cumulative_token_nums=np.bool_(False))
        assert_bits(d.expand_x[: want[0]["rows"]], want[0]["expand_x"], f"seed {seed} survivors {survivors!r}")
    for need_sync in (1, 0, np.bool_(True), torch.tensor(False)):
        moe_ep.buffer_reset(group, torch.tensor([True]), need_sync=need_sync)
