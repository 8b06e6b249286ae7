# moe_ep.torch_npu's operators in the style of the vendor's operator tests: 4 rank processes, gloo groups, names from the
# groups, keyword calls; every output compared bit for bit with the torch golden model (tests/reference/torch_golden.py).
import random

import pytest
import torch

from bitwise import assert_bits, assert_poison
from rank_pool import WORLD, RankPool
from torch_golden import active_tokens, golden_combine, golden_combine_add_rms_norm, golden_dispatch


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    p = RankPool(str(tmp_path_factory.mktemp("ranks")))
    yield p
    p.close()


def make_case(seed, *, tp_world_size=0, bs=(6, 6, 6, 6), hidden=1024, top_k=4, moe_expert_num=8, dtype=torch.bfloat16,
              mask=None, **extra):
    """Inputs of every rank, drawn from `seed`. Ranks are world ranks (EP rank r // 2, TP rank r % 2 with TP)."""
    g = torch.Generator().manual_seed(seed)
    rnd = random.Random(seed)
    case = {"seed": seed, "tp_world_size": tp_world_size, "moe_expert_num": moe_expert_num, **extra}
    routed = moe_expert_num + sum(extra.get(k, 0) for k in ("zero_expert_num", "copy_expert_num", "const_expert_num"))
    ranks = []
    for r in range(WORLD):
        n = bs[r]
        ids = torch.stack([torch.randperm(routed, generator=g)[:top_k] for _ in range(n)]).to(torch.int32)
        mine = {"x": torch.randn(n, hidden, generator=g).to(dtype), "expert_ids": ids,
                "expert_scales": torch.rand(n, top_k, generator=g), "expert_out": None}
        if mask == "prefix":
            active = rnd.randrange(n + 1)
            mine["x_active_mask"] = torch.arange(n) < active
        elif mask == "pairs":
            mine["x_active_mask"] = torch.rand(n, top_k, generator=g) < 0.7
        if extra.get("copy_expert_num") or extra.get("const_expert_num"):
            mine["ori_x"] = torch.randn(n, hidden, generator=g).to(dtype)
        if "gamma" in extra:
            mine["residual_x"] = torch.randn(n, 1, hidden, generator=g).to(dtype)
        ranks.append(mine)
    # Expert outputs: random rows, as many as a rank may receive (torch_npu's expand_x rows).
    most = max(bs) * WORLD * top_k + max(bs) * WORLD
    for mine in ranks:
        mine["expert_out"] = torch.randn(most, hidden, generator=g).to(dtype)
    case["ranks"] = ranks
    if extra.get("const_expert_num"):
        c = extra["const_expert_num"]
        case["const_expert_alpha_1"] = (torch.randn(c, hidden, generator=g) / 16).to(dtype)
        case["const_expert_alpha_2"] = (torch.randn(c, hidden, generator=g) / 16).to(dtype)
        case["const_expert_v"] = torch.randn(c, hidden, generator=g).to(dtype)
    if extra.get("quant_mode") == 2 and extra.get("smooth"):
        shared = extra.get("shared_expert_num", 0) if extra.get("shared_expert_rank_num") else 0
        case["scales"] = torch.rand(shared + moe_expert_num, hidden, generator=g) + 0.5
    case.pop("smooth", None)
    return case


def golden_order(case):
    """World ranks in the golden model's order (g = tp_rank * E + ep_rank)."""
    if case["tp_world_size"] == 2:
        return [ep * 2 + tp for tp in range(2) for ep in range(WORLD // 2)]
    return list(range(WORLD))


def check(pool, case, job="dispatch_combine"):
    order = golden_order(case)
    got = pool.run(job, case)
    per = lambda key: [case["ranks"][w].get(key) for w in order]  # noqa: E731
    tp = case["tp_world_size"]
    layout = {k: case[k] for k in ("shared_expert_num", "shared_expert_rank_num", "global_bs", "zero_expert_num",
                                   "copy_expert_num", "const_expert_num") if k in case}
    if not case.get("shared_expert_rank_num"):
        layout["shared_expert_num"] = 0  # torch_npu's default (1, 0) means no shared experts
    ep_size = WORLD // 2 if tp == 2 else WORLD
    masks = per("x_active_mask")
    want = golden_dispatch(per("x"), per("expert_ids"), ep_world_size=ep_size, moe_expert_num=case["moe_expert_num"],
                           tp_world_size=max(tp, 1), quant_mode=case.get("quant_mode", 0), scales=case.get("scales"),
                           x_active_mask=masks if any(m is not None for m in masks) else None,
                           expert_token_nums_type=case.get("expert_token_nums_type", 1), **layout)
    for g, w in enumerate(order):
        ours = got[w]["dispatch"]
        expand_x, dynamic_scales, assist, token_nums, ep_counts, tp_counts, expand_scales = ours
        gold, rows, tag = want[g], want[g]["rows"], f"seed {case['seed']} rank {w}"
        assert_bits(expand_x[:rows], gold["expand_x"], f"{tag} expand_x")
        assert_poison(expand_x[rows:], f"{tag} expand_x past its {rows} rows")
        if gold["dynamic_scales"] is not None:
            assert_bits(dynamic_scales[:rows], gold["dynamic_scales"], f"{tag} dynamic_scales")
            assert_poison(dynamic_scales[rows:], f"{tag} dynamic_scales past its {rows} rows")
        else:
            assert_poison(dynamic_scales, f"{tag} dynamic_scales (quant_mode 0)")
        assert_bits(assist[: 3 * rows], gold["assist_info"], f"{tag} assist_info_for_combine")
        assert_poison(assist[3 * rows:], f"{tag} assist_info_for_combine past its {rows} triples")
        assert_bits(token_nums, gold["expert_token_nums"], f"{tag} expert_token_nums")
        n = gold["ep_recv_counts"].numel()
        assert_bits(ep_counts[:n], gold["ep_recv_counts"], f"{tag} ep_recv_counts")
        assert_poison(ep_counts[n:], f"{tag} ep_recv_counts past its {n} entries")
        if tp == 2:
            assert_bits(tp_counts, gold["tp_recv_counts"], f"{tag} tp_recv_counts")
        assert_poison(expand_scales, f"{tag} expand_scales (Atlas A2's: A3 leaves it)")
    outs = [case["ranks"][w]["expert_out"] for w in order]
    combine_args = dict(ep_world_size=ep_size, moe_expert_num=case["moe_expert_num"], tp_world_size=max(tp, 1),
                        x_active_mask=masks if any(m is not None for m in masks) else None,
                        shared_expert_x=None, **layout)
    special = dict(ori_x=per("ori_x"), const_expert_alpha_1=case.get("const_expert_alpha_1"),
                   const_expert_alpha_2=case.get("const_expert_alpha_2"), const_expert_v=case.get("const_expert_v"))
    if "gamma" in case:
        want_c = golden_combine_add_rms_norm(outs, per("expert_ids"), per("expert_scales"), per("residual_x"),
                                             case["gamma"], norm_eps=case["norm_eps"], **special, **combine_args)
    else:
        want_c = golden_combine(outs, per("expert_ids"), per("expert_scales"),
                                comm_quant_mode=case.get("comm_quant_mode", 0), **special, **combine_args)
    for g, w in enumerate(order):
        tag = f"seed {case['seed']} rank {w}"
        active = active_tokens(case["ranks"][w]["x"].shape[0], case["ranks"][w].get("x_active_mask"))
        if "gamma" in case:
            for name, ours, gold in zip(("y", "rstd", "x"), got[w]["combine"], want_c[g]):
                assert_bits(ours[active], gold[active], f"{tag} combine_add_rms_norm {name}")
                assert_poison(ours[~active], f"{tag} combine_add_rms_norm {name} of inactive tokens")
        else:
            assert_bits(got[w]["combine"][active], want_c[g][active], f"{tag} combine_v2 x")
            assert_poison(got[w]["combine"][~active], f"{tag} combine_v2 x of inactive tokens")


CASES = {
    "basic": dict(),
    "strided_x": dict(strided=True),
    "fp16_cumulative_counts": dict(dtype=torch.float16, expert_token_nums_type=0),
    "prefix_mask": dict(mask="prefix"),
    "pair_mask": dict(mask="pairs"),
    "unequal_bs_global_bs": dict(bs=(3, 7, 1, 5), global_bs=8 * WORLD),
    "shared_experts": dict(shared_expert_num=1, shared_expert_rank_num=1, moe_expert_num=6),
    "quant_int8": dict(quant_mode=2),
    "quant_int8_smooth_scales": dict(quant_mode=2, smooth=True),
    "comm_quant_int8": dict(comm_quant_mode=2),
    "special_experts": dict(zero_expert_num=1, copy_expert_num=1, const_expert_num=2, top_k=6),
    "tp2": dict(tp_world_size=2, moe_expert_num=2, top_k=2),
    "tp2_quant_int8": dict(tp_world_size=2, moe_expert_num=2, top_k=2, quant_mode=2),
    "combine_add_rms_norm": dict(norm_eps=1e-6),
    "combine_add_rms_norm_special_experts": dict(norm_eps=1e-5, zero_expert_num=1, copy_expert_num=1,
                                                 const_expert_num=2, top_k=6, mask="pairs"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_dispatch_then_combine_match_golden(pool, seed, name):
    extra = dict(CASES[name])
    case_seed = (seed * 1000003 + sorted(CASES).index(name)) % 2**31
    if "norm_eps" in extra:
        g = torch.Generator().manual_seed(case_seed + 1)
        extra["gamma"] = torch.randn(1024, generator=g).to(torch.bfloat16)
    print(f"case {name}: seed {case_seed}")
    check(pool, make_case(case_seed, **extra))


def test_group_name_from_a_backend_object_matches_golden(pool, seed):
    # torch >= 2.0 code asks group._get_backend(device).get_hccl_comm_name(rank, init_comm=True): a backend object.
    check(pool, make_case(seed, group_ep="backend_ep4"))


@pytest.mark.parametrize("quant_mode, peer_visible", [(0, False), (2, False), (0, True), (2, True)])
def test_native_group_from_torch_group_matches_golden(pool, seed, quant_mode, peer_visible):
    # moe_ep.join_torch_group: the native API on the processes of a torch.distributed group; with
    # peer_visible, x and the expert outputs are in the shared heap and pulled (MOE_EP_DATA_PATH=pull).
    case_seed = (seed * 7919 + quant_mode + 10 * peer_visible) % 2**31
    print(f"native, quant_mode {quant_mode}, peer_visible {peer_visible}: seed {case_seed}")
    check(pool, make_case(case_seed, quant_mode=quant_mode, shared_expert_num=0, peer_visible=peer_visible),
          job="native_dispatch_combine")


# torch_npu's output shapes (op-plugin's kernel), worked out by hand for each kind of rank.
SHAPES = {
    # E 4, Bs 6, K 4, moe 8: L = 2, A = Bs*E * min(L, K) = 48.
    "moe_rank": (dict(), 0, [(48, 1024), (48,), (6144,), (2,), (8,), (0,), (48,)]),
    # S 1, n_s 1, moe 6: rank 0 is the shared rank: L = 1, A = max_bs * ceil(E / (S / n_s)) = 6 * 4 = 24.
    "shared_rank": (dict(shared_expert_num=1, shared_expert_rank_num=1, moe_expert_num=6), 0,
                    [(24, 1024), (24,), (3072,), (1,), (4,), (0,), (24,)]),
    # ... and rank 1 a MoE rank: L = 6 / 3 = 2, A = 24 * 2 = 48.
    "moe_rank_beside_shared": (dict(shared_expert_num=1, shared_expert_rank_num=1, moe_expert_num=6), 1,
                               [(48, 1024), (48,), (6144,), (2,), (8,), (0,), (48,)]),
    # global_bs 40: A = 40 * 2 = 80.
    "global_bs": (dict(global_bs=40), 0, [(80, 1024), (80,), (10240,), (2,), (8,), (0,), (80,)]),
    # EP 2 x TP 2, moe 2, K 2: L = 1, A = 12, rows and scales for both TP ranks, counts E * L * tp.
    "tp2": (dict(tp_world_size=2, moe_expert_num=2, top_k=2), 0,
            [(24, 1024), (24,), (1536,), (1,), (4,), (2,), (12,)]),
    # quant_mode 2: expand_x int8, same shapes.
    "quant": (dict(quant_mode=2), 0, [(48, 1024), (48,), (6144,), (2,), (8,), (0,), (48,)]),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_output_shapes_are_torch_npus(pool, seed, name):
    extra, rank, want = SHAPES[name]
    case = make_case(seed, **extra)
    got = pool.run("dispatch_combine", case)[rank]["dispatch"]
    assert [tuple(t.shape) for t in got] == want
    assert got[0].dtype == (torch.int8 if extra.get("quant_mode") == 2 else torch.bfloat16)
    assert [t.dtype for t in got[1:]] == [torch.float32, torch.int32, torch.int64, torch.int32, torch.int32,
                                          torch.float32]
