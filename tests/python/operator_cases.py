# The operator suite's cases and their check: every rank's inputs drawn from one seed, and every output of every rank
# compared bit for bit with the torch golden model, poison where the operators define nothing.
import random

import torch

from bitwise import assert_bits, assert_poison, assert_prefix
from rank_pool import WORLD
from torch_golden import active_tokens, golden_combine, golden_combine_add_rms_norm, golden_dispatch


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


def check_results(case, got):
    """got: each world rank's {"dispatch": dispatch's 7 outputs, "combine": combine's} for `case`."""
    order = golden_order(case)
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
        gold, tag = want[g], f"seed {case['seed']} rank {w}"
        assert_prefix(expand_x, gold["expand_x"], f"{tag} expand_x")
        if gold["dynamic_scales"] is not None:
            assert_prefix(dynamic_scales, gold["dynamic_scales"], f"{tag} dynamic_scales")
        else:
            assert_poison(dynamic_scales, f"{tag} dynamic_scales (quant_mode 0)")
        assert_prefix(assist, gold["assist_info"], f"{tag} assist_info_for_combine")
        assert_bits(token_nums, gold["expert_token_nums"], f"{tag} expert_token_nums")
        n = gold["ep_recv_counts"].numel()
        assert_bits(ep_counts[:n], gold["ep_recv_counts"], f"{tag} ep_recv_counts")
        assert_poison(ep_counts[n:], f"{tag} ep_recv_counts past its {n} entries")
        if tp == 2:
            assert_bits(tp_counts, gold["tp_recv_counts"], f"{tag} tp_recv_counts")
        else:
            assert_poison(tp_counts, f"{tag} tp_recv_counts (no TP peer)")
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
            for name, ours, gold in zip(("y", "rstd", "x"), got[w]["combine"], want_c[g], strict=True):
                assert_bits(ours[active], gold[active], f"{tag} combine_add_rms_norm {name}")
                assert_poison(ours[~active], f"{tag} combine_add_rms_norm {name} of inactive tokens")
        else:
            assert_bits(got[w]["combine"][active], want_c[g][active], f"{tag} combine_v2 x")
            assert_poison(got[w]["combine"][~active], f"{tag} combine_v2 x of inactive tokens")
