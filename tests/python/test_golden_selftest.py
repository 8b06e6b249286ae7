# Self-test of the PyTorch golden model (tests/reference/torch_golden.py): small cases worked out by hand from docs/semantics.md.
import math
import random
import struct
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import torch_golden as tg  # noqa: E402

BF16 = torch.bfloat16


# ---- scalar fp32 / bf16 / fp16 arithmetic from first principles (no torch) ----------------------------

def f32(v):
    """Round a Python float to fp32. +, -, *, / and sqrt of fp32 values done in double and rounded once are
    correctly rounded fp32 results (53 >= 2*24 + 2)."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def bf16(v):
    """Round an fp32 value to bf16, half to even, by its bits."""
    bits = struct.unpack("<I", struct.pack("<f", f32(v)))[0]
    upper, lower = bits >> 16, bits & 0xFFFF
    if lower > 0x8000 or (lower == 0x8000 and upper & 1):
        upper += 1
    return struct.unpack("<f", struct.pack("<I", upper << 16))[0]


def fp16(v):
    try:
        return struct.unpack("<e", struct.pack("<e", v))[0]  # PyFloat_Pack2 rounds half to even
    except OverflowError:
        return math.copysign(math.inf, v)


def t(rows, dtype=BF16):
    return torch.tensor(rows, dtype=torch.float32).to(dtype)


def ids(rows):
    return torch.tensor(rows, dtype=torch.int32)


def triples(out):
    return [tuple(v) for v in out["assist_info"].view(-1, 3).tolist()]


def token_x(rank, token, H=2):
    """Identifiable token rows: [10r + t, -(10r + t), ...]."""
    v = 10.0 * rank + token
    return [v if h % 2 == 0 else -v for h in range(H)]


# ---- dispatch layout (2.2, 2.3) ----------------------------------------------------------------------

def test_dispatch_order_and_counts_two_ranks_four_experts():
    # E = 2, moe = 4 -> L = 2: rank 0 hosts experts 0, 1; rank 1 hosts experts 2, 3.
    expert_ids = [ids([[1, 2], [0, 1], [3, 0]]), ids([[2, 0], [1, 3], [0, 2]])]
    x = [t([token_x(r, tok) for tok in range(3)]) for r in range(2)]
    for token_type, nums0, nums1 in ((1, [4, 3], [3, 2]), (0, [4, 7], [3, 5])):
        out = tg.golden_dispatch(x, expert_ids, ep_world_size=2, moe_expert_num=4,
                                 expert_token_nums_type=token_type)
        # Rank 0: expert 0 from src 0 (t1 k0, t2 k1), src 1 (t0 k1, t2 k0); expert 1 from src 0 (t0 k0,
        # t1 k1), src 1 (t1 k0).
        assert triples(out[0]) == [(0, 1, 0), (0, 2, 1), (1, 0, 1), (1, 2, 0), (0, 0, 0), (0, 1, 1), (1, 1, 0)]
        assert out[0]["ep_recv_counts"].tolist() == [2, 4, 6, 7]
        assert out[0]["expert_token_nums"].tolist() == nums0
        assert triples(out[1]) == [(0, 0, 1), (1, 0, 0), (1, 2, 1), (0, 2, 0), (1, 1, 1)]
        assert out[1]["ep_recv_counts"].tolist() == [1, 3, 4, 5]
        assert out[1]["expert_token_nums"].tolist() == nums1
        for r in range(2):
            o = out[r]
            assert o["rows"] == len(triples(o)) and o["expand_x"].dtype == BF16
            assert o["expand_x"].tolist() == [token_x(s, tok) for s, tok, _ in triples(o)]
            assert o["dynamic_scales"] is None and o["tp_recv_counts"] is None
            assert o["ep_recv_counts"].dtype == torch.int32 and o["expert_token_nums"].dtype == torch.int64


def test_dispatch_shared_expert_rank_one_replica():
    # E = 3, S = 1, n_s = 1 (R = 1); moe = 2 on ranks 1 and 2 (L = 1); K = 1.
    expert_ids = [ids([[1], [0]]), ids([[0], [0]]), ids([[1], [1]])]
    x = [t([token_x(r, tok) for tok in range(2)]) for r in range(3)]
    out = tg.golden_dispatch(x, expert_ids, ep_world_size=3, moe_expert_num=2, shared_expert_num=1,
                             shared_expert_rank_num=1)
    # Shared rank: every source's tokens in order, kIdx = K + 0 = 1.
    assert triples(out[0]) == [(0, 0, 1), (0, 1, 1), (1, 0, 1), (1, 1, 1), (2, 0, 1), (2, 1, 1)]
    assert out[0]["ep_recv_counts"].tolist() == [2, 4, 6]
    assert out[0]["expert_token_nums"].tolist() == [6]
    assert triples(out[1]) == [(0, 1, 0), (1, 0, 0), (1, 1, 0)]
    assert out[1]["ep_recv_counts"].tolist() == [1, 3, 3]
    assert triples(out[2]) == [(0, 0, 0), (2, 0, 0), (2, 1, 0)]
    assert out[2]["ep_recv_counts"].tolist() == [1, 1, 3]
    assert out[0]["expand_x"].tolist() == [token_x(s, tok) for s, tok, _ in triples(out[0])]


def test_dispatch_shared_replicas_and_several_shared_experts():
    # E = 4, S = 2, n_s = 1 -> R = 2: source r uses replica r % 2.
    expert_ids = [ids([[r % 2]]) for r in range(4)]
    x = [t([token_x(r, 0)]) for r in range(4)]
    out = tg.golden_dispatch(x, expert_ids, ep_world_size=4, moe_expert_num=2, shared_expert_num=1,
                             shared_expert_rank_num=2)
    assert triples(out[0]) == [(0, 0, 1), (2, 0, 1)]
    assert out[0]["ep_recv_counts"].tolist() == [1, 1, 2, 2]
    assert triples(out[1]) == [(1, 0, 1), (3, 0, 1)]
    assert out[1]["ep_recv_counts"].tolist() == [0, 1, 1, 2]
    # E = 4, S = 2, n_s = 2 -> R = 1: shared expert i on rank i, kIdx = K + i.
    out = tg.golden_dispatch(x, expert_ids, ep_world_size=4, moe_expert_num=2, shared_expert_num=2,
                             shared_expert_rank_num=2)
    assert triples(out[0]) == [(r, 0, 1) for r in range(4)]
    assert triples(out[1]) == [(r, 0, 2) for r in range(4)]
    assert triples(out[2]) == [(0, 0, 0), (2, 0, 0)] and triples(out[3]) == [(1, 0, 0), (3, 0, 0)]


def test_dispatch_masks():
    # 1-D mask: tokens [0, sum(mask)); a non-prefix mask still takes the first sum(mask) tokens (2.5).
    expert_ids = [ids([[0], [1], [0]]), ids([[1], [0], [1]])]
    x = [t([token_x(r, tok) for tok in range(3)]) for r in range(2)]
    mask = [torch.tensor([True, True, False]), torch.tensor([False, True, False])]
    out = tg.golden_dispatch(x, expert_ids, ep_world_size=2, moe_expert_num=2, x_active_mask=mask)
    assert triples(out[0]) == [(0, 0, 0)]
    assert triples(out[1]) == [(0, 1, 0), (1, 0, 0)]
    # 2-D mask with a shared expert: a token with any true entry goes to the shared expert, with its original
    # index; an inactive pair may hold any id.
    expert_ids = [ids([[1, 2], [99, -5], [2, 1]]), ids([[1, 2], [2, 1], [1, 2]])]
    mask2 = torch.tensor([[False, True], [False, False], [True, False]])
    x3 = x + [t([token_x(2, tok) for tok in range(3)])]
    expert_ids = expert_ids + [ids([[0, 1]] * 3)]
    out = tg.golden_dispatch(x3, [e.clamp(0, 1) if i == 2 else e for i, e in enumerate(expert_ids)],
                             ep_world_size=3, moe_expert_num=4, shared_expert_num=1, shared_expert_rank_num=1,
                             x_active_mask=[mask2, None, None])
    # Rank 0 (shared): source 0's valid tokens 0 and 2, then all tokens of sources 1 and 2.
    assert triples(out[0]) == [(0, 0, 2), (0, 2, 2)] + [(s, tok, 2) for s in (1, 2) for tok in range(3)]
    # Rank 2 hosts experts 2, 3: source 0 sends only (t0, k1) and (t2, k0).
    assert triples(out[2]) == [(0, 0, 1), (0, 2, 0), (1, 0, 1), (1, 1, 0), (1, 2, 1)]


def test_dispatch_global_bs_and_rejections():
    x = [t([token_x(0, 0)]), t([token_x(1, 0), token_x(1, 1)])]
    expert_ids = [ids([[1]]), ids([[0], [1]])]
    out = tg.golden_dispatch(x, expert_ids, ep_world_size=2, moe_expert_num=2, global_bs=4)
    assert triples(out[1]) == [(0, 0, 0), (1, 1, 0)]
    with pytest.raises(ValueError):
        tg.golden_dispatch(x, expert_ids, ep_world_size=2, moe_expert_num=2)  # unequal Bs, global_bs 0
    x = [t([token_x(0, 0)]), t([token_x(1, 0)])]
    with pytest.raises(ValueError):  # a repeated routed expert
        tg.golden_dispatch(x, [ids([[1, 1]]), ids([[0, 1]])], ep_world_size=2, moe_expert_num=2)
    with pytest.raises(ValueError):  # an id outside [0, moe + special)
        tg.golden_dispatch(x, [ids([[2]]), ids([[0]])], ep_world_size=2, moe_expert_num=2)


def test_dispatch_special_experts_do_not_travel():
    x = [t([token_x(0, 0), token_x(0, 1)])]
    out = tg.golden_dispatch(x, [ids([[0, 1, 2, 3], [3, 2, 1, 0]])], ep_world_size=1, moe_expert_num=1,
                             zero_expert_num=1, copy_expert_num=1, const_expert_num=1)
    assert triples(out[0]) == [(0, 0, 0), (0, 1, 3)]
    assert out[0]["ep_recv_counts"].tolist() == [2]


# ---- TP (2.7, 2.3, 3.1) -----------------------------------------------------------------------------

def test_tp_dispatch_and_reduce_scatter():
    # E = 2, tp = 2, moe = 2 (L = 1), K = 1. Flat rank g = tp_rank * 2 + ep_rank.
    expert_ids = [ids([[1]]), ids([[1]]), ids([[0]]), ids([[1]])]
    x = [t([token_x(g, 0)]) for g in range(4)]
    out = tg.golden_dispatch(x, expert_ids, ep_world_size=2, moe_expert_num=2, tp_world_size=2)
    expect = {  # rows as (global source rank), ep_recv_counts, tp_recv_counts, expert_token_nums
        0: ([2], [0, 0, 1, 1], [0, 1], [1]),
        1: ([0, 1, 3], [1, 2, 0, 1], [2, 1], [3]),
        2: ([2], [1, 1, 0, 0], [0, 1], [1]),
        3: ([3, 0, 1], [0, 1, 1, 2], [2, 1], [3]),
    }
    for g, (sources, counts, tp_counts, nums) in expect.items():
        assert out[g]["expand_x"].tolist() == [token_x(s, 0) for s in sources]
        assert out[g]["ep_recv_counts"].tolist() == counts
        assert out[g]["tp_recv_counts"].tolist() == tp_counts
        assert out[g]["expert_token_nums"].tolist() == nums
    assert triples(out[3]) == [(1, 0, 0)]  # srcRank inside the producing EP group; the TP peer's rows carry none
    assert [o["own_rows"] for o in out] == [0, 2, 1, 1]
    # Combine: each own row is own + the peer's partial (the peer keeps our rows after its own), rounded
    # to bf16 half to even. g1's rows are for (g0, g1, g3), g3's for (g3, g0, g1).
    expand = [t([[5.0, 5.0]]),
              t([[1.0, 1.0], [1 + 2 ** -7, 3.0], [7.0, 7.0]]),
              t([[0.25, 0.25]]),
              t([[0.5, 0.5], [2 ** -8, 0.0], [2 ** -8, 1.0]])]
    scales = [torch.ones(1, 1)] * 4
    res = tg.golden_combine(expand, expert_ids, scales, ep_world_size=2, moe_expert_num=2, tp_world_size=2)
    assert res[0].tolist() == [[1.0, 1.0]]               # 1 + 2^-8: a tie, to even
    assert res[1].tolist() == [[1 + 2 ** -6, 4.0]]       # 1 + 2^-7 + 2^-8: a tie, to even (up)
    assert res[2].tolist() == [[5.25, 5.25]]             # g2 own 0.25 + g0's partial 5 (g0 has 0 own rows)
    assert res[3].tolist() == [[7.5, 7.5]]               # g3 own 0.5 + g1's partial 7


# ---- dynamic int8 quantization (2.4) --------------------------------------------------------------------

def quantize_one_rank(rows, dtype=BF16, **kw):
    x = [t(rows, dtype)]
    out = tg.golden_dispatch(x, [ids([[0]] * len(rows))], ep_world_size=1, moe_expert_num=1, quant_mode=2, **kw)
    return out[0]["expand_x"], out[0]["dynamic_scales"]


def test_quantization_known_rows():
    nan = float("nan")
    q, s = quantize_one_rank([
        [0.5, 1.5, 2.5, -0.5, -2.5, 127.0, 3.0, -127.0],   # amax 127: ds = 1, q = rint half to even
        [1.0, -2.0, 0.5, 4.0, 0.0, 0.0, 0.0, 0.0],        # ds = 31.75: 31.75, -63.5, 15.875, 127
        [0.0] * 8,                                        # all zero: q = 0, scale = 1/inf = 0
        [nan, 2.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0],        # NaN ignored by amax, quantized to 0
        [1e-37, -1e-37, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],    # tiny amax: ds = inf, +-inf saturate to [-128, 127]
    ])
    assert q.dtype == torch.int8 and s.dtype == torch.float32
    assert q.tolist() == [[0, 2, 2, 0, -2, 127, 3, -127],
                          [32, -64, 16, 127, 0, 0, 0, 0],
                          [0] * 8,
                          [0, 127, -64, 0, 0, 0, 0, 0],
                          [127, -128, 0, 0, 0, 0, 0, 0]]
    assert s.tolist() == [1.0, f32(1 / f32(127 / 4.0)), 0.0, f32(1 / 63.5), 0.0]


def test_quantization_fp16_and_smooth_scales_per_destination():
    # E = 1, moe = 2 (L = 2), K = 2: the token goes to both experts, each with its own smooth row n_s + e.
    x = [t([[1.0, 1.0]], torch.float16)]
    smooth = torch.tensor([[2.0, 0.5], [1.0, 4.0]])
    out = tg.golden_dispatch(x, [ids([[0, 1]])], ep_world_size=1, moe_expert_num=2, quant_mode=2, scales=smooth)
    assert out[0]["expand_x"].tolist() == [[127, 32], [32, 127]]  # f = [2, .5] -> ds 63.5; f = [1, 4] -> 31.75
    assert out[0]["dynamic_scales"].tolist() == [f32(1 / 63.5), f32(1 / 31.75)]
    with pytest.raises(ValueError):  # scales without quantization
        tg.golden_dispatch(x, [ids([[0, 1]])], ep_world_size=1, moe_expert_num=2, scales=smooth)


def test_quantization_division_is_a_true_division(seed):
    # ds = 127 / amax must be a correctly rounded fp32 division (not 127 * (1/amax)).
    random.seed(seed + 7)
    rows = [[bf16(random.uniform(-3, 3)) for _ in range(16)] for _ in range(64)]
    q, s = quantize_one_rank(rows)
    for row, q_row, scale in zip(rows, q.tolist(), s.tolist()):
        amax = max(abs(v) for v in row)
        ds = f32(127 / amax)
        assert scale == f32(1 / ds)
        assert q_row == [max(-128, min(127, round(f32(v * ds)))) for v in row]  # round(): half to even


# ---- combine (3.2) ----------------------------------------------------------------------------------------

def test_combine_order_no_fma_and_signed_zero():
    # E = 1, moe = 2 (L = 2), K = 2: row 0 is the token's k = 0 output, row 1 its k = 1 output.
    a = 1 + 2 ** -7
    expand = [t([[-a, 1.0, -0.0], [a, 2.0 ** 24, -0.0]])]
    w = f32(1 + 2 ** -23)
    scales = [torch.tensor([[w, w]])]
    shared_x = [t([[0.0, -(2.0 ** 24), -0.0]])]
    res = tg.golden_combine(expand, [ids([[0, 1]])], scales, ep_world_size=1, moe_expert_num=2,
                            shared_expert_x=shared_x)[0]
    # elem 0: round(-a*w) + round(a*w) = 0 (an FMA would leave 2^-30);
    # elem 1: (1 + 2^-23) + (2^24 + 2) = 2^24 + 4 in fp32, then - 2^24 = 4 (sharedExpertX last);
    # elem 2: +0 + (-0) = +0.
    assert res.tolist() == [[0.0, 4.0, 0.0]]
    assert not torch.signbit(res).any()
    assert res.dtype == BF16


def test_combine_shared_expert_mask_and_untouched_rows():
    # E = 2, S = 1, n_s = 1, moe = 1 (rank 1), K = 1; 1-D mask: only token 0 of each rank is active.
    expert_ids = [ids([[0], [0]]), ids([[0], [0]])]
    mask = [torch.tensor([True, False])] * 2
    x = [t([token_x(r, tok) for tok in range(2)]) for r in range(2)]
    d = tg.golden_dispatch(x, expert_ids, ep_world_size=2, moe_expert_num=1, shared_expert_rank_num=1,
                           x_active_mask=mask)
    assert triples(d[0]) == [(0, 0, 1), (1, 0, 1)] and triples(d[1]) == [(0, 0, 0), (1, 0, 0)]
    expand = [t([[1.0, 2.0], [3.0, 4.0]]), t([[10.0, 20.0], [30.0, 40.0]])]
    scales = [torch.tensor([[0.5], [float("nan")]])] * 2    # an inactive token's weight is never read
    init = [torch.full((2, 2), 99.0).to(BF16)] * 2
    res = tg.golden_combine(expand, expert_ids, scales, ep_world_size=2, moe_expert_num=1,
                            shared_expert_rank_num=1, x_active_mask=mask, out=init)
    assert res[0].tolist() == [[6.0, 12.0], [99.0, 99.0]]    # 10*0.5 + 1, 20*0.5 + 2; row 1 untouched
    assert res[1].tolist() == [[18.0, 24.0], [99.0, 99.0]]
    assert tg.active_tokens(2, mask[0]).tolist() == [True, False]


def test_combine_special_experts_and_pair_mask():
    # ids: routed 0, zero 1, copy 2, const 3; the zero expert's infinite weight must not produce NaN.
    kw = dict(ep_world_size=1, moe_expert_num=1, zero_expert_num=1, copy_expert_num=1, const_expert_num=1,
              ori_x=[t([[1.0, 2.0]])], const_expert_alpha_1=t([[1.0, 0.0]]), const_expert_alpha_2=t([[0.0, 0.5]]),
              const_expert_v=t([[3.0, -2.0]]))
    expert_ids = [ids([[0, 1, 2, 3]])]
    scales = [torch.tensor([[0.5, float("inf"), 2.0, 0.25]])]
    res = tg.golden_combine([t([[4.0, 8.0]])], expert_ids, scales, **kw)[0]
    # const: a1 = 1*1 + 0*2 = 1, a2 = 0*1 + 0.5*2 = 1: p = (1/2, 1/2), v = [1, 2]/2 + [3, -2]/2 = [2, 0]
    # 4*.5 + 1*2 + 2*.25 = 4.5;  8*.5 + 2*2 + 0*.25 = 8
    assert res.tolist() == [[4.5, 8.0]]
    mask = [torch.tensor([[True, True, False, True]])]       # the copy pair masked off
    res = tg.golden_combine([t([[4.0, 8.0]])], expert_ids, scales, x_active_mask=mask, **kw)[0]
    assert res.tolist() == [[2.5, 4.0]]
    # a1 = 256 outweighs a2 = 1 (exp(-255) rounds to 0): p = (1, 0), v = oriX = [1, 2]
    kw["const_expert_alpha_1"] = t([[256.0, 0.0]])
    res = tg.golden_combine([t([[4.0, 8.0]])], expert_ids, scales, **kw)[0]
    assert res.tolist() == [[4.25, 8.5]]


def test_comm_quant_round_trip():
    # commQuantMode 2 (3.3), blocks of 8; H = 18: two full blocks and one padded block of 2. In the second
    # block x/s lands just off a .5 (15.497, 31.498, 0.50003, 64.508), where the fp16 step before the
    # integer rounding decides the result (16, 32, 0, 64; rounding x/s directly gives 15, 31, 1, 65).
    row = [127.0, 1.0, 0.5, -3.0, 0.0, 0.25, 100.0, -0.75,
           126.0, 15.375, 31.25, 0.49609375, -64.0, 0.0, 0.0, 0.0,
           2.0, -1.0]
    res = tg.golden_combine([t([row])], [ids([[0]])], [torch.ones(1, 1)], ep_world_size=1, moe_expert_num=1,
                            comm_quant_mode=2)[0]
    inv127 = f32(1 / 127)
    expect = []
    for block in (row[:8], row[8:16], row[16:]):
        s = f32(max(abs(v) for v in block) * inv127)
        scale = bf16(s)
        for v in block:
            q = max(-128, min(127, round(fp16(f32(v / s)))))
            expect.append(bf16(f32(q * scale)))
    assert res.tolist() == [expect]
    assert res.tolist() != [row]  # the round trip is lossy here
    zero = tg.golden_combine([t([[0.0] * 8])], [ids([[0]])], [torch.ones(1, 1)], ep_world_size=1,
                             moe_expert_num=1, comm_quant_mode=2)[0]
    assert zero.tolist() == [[0.0] * 8]


def test_round_trip_dispatch_identity_combine(seed):
    random.seed(seed + 3)
    E, moe, K, bs, H = 3, 6, 3, 4, 5
    x = [t([[bf16(random.uniform(-2, 2)) for _ in range(H)] for _ in range(bs)]) for _ in range(E)]
    expert_ids = [ids([random.sample(range(moe), K) for _ in range(bs)]) for _ in range(E)]
    w = [torch.tensor([[f32(random.random()) for _ in range(K)] for _ in range(bs)]) for _ in range(E)]
    d = tg.golden_dispatch(x, expert_ids, ep_world_size=E, moe_expert_num=moe)
    res = tg.golden_combine([o["expand_x"] for o in d], expert_ids, w, ep_world_size=E, moe_expert_num=moe)
    for r in range(E):
        for tok in range(bs):
            for h in range(H):
                acc = 0.0
                for k in range(K):
                    acc = f32(acc + f32(x[r][tok, h].item() * w[r][tok, k].item()))
                assert res[r][tok, h].item() == bf16(acc)


# ---- CombineAddRmsNorm (3.5) ------------------------------------------------------------------------------

def test_add_rms_norm_known_row():
    eps = 1e-6
    y, rstd, x = tg.golden_combine_add_rms_norm(
        [t([[1.0, 2.0]])], [ids([[0]])], [torch.ones(1, 1)], [t([[[2.0, 2.0]]])], t([1.0, 0.5]),
        ep_world_size=1, moe_expert_num=1, norm_eps=eps)[0]
    assert x.shape == (1, 1, 2) and y.shape == (1, 1, 2) and rstd.shape == (1, 1, 1)
    assert x.tolist() == [[[3.0, 4.0]]]
    inv_h = f32(1 / 2)
    ms = f32(f32(9.0 * inv_h) + f32(16.0 * inv_h))
    r = f32(1 / f32(math.sqrt(f32(ms + f32(eps)))))
    assert rstd.item() == r
    assert y.tolist() == [[[bf16(bf16(3 * r) * 1.0), bf16(f32(bf16(f32(4 * r)) * 0.5))]]]


def test_add_rms_norm_reduce_sum_order():
    # H = 256, (xs*xs)/256 = b = 2^24 at 0, 1 at 2, 3, 64, 128, 192, zeros elsewhere (b + 1 ties to even: b).
    # Chunk 0 by neighbour pairs: {b, 2} -> b + 2 (halving would meet each 1 with b alone: b). Chunk sums
    # {b + 2, 1, 1, 1} added in order: b + 3 -> b + 4, b + 5 -> b + 4, b + 5 -> b + 4 (as a tree: b + 6).
    row = [0.0] * 256
    row[0] = 2.0 ** 16
    for i in (2, 3, 64, 128, 192):
        row[i] = 16.0
    _, rstd, _ = tg.golden_combine_add_rms_norm([t([row])], [ids([[0]])], [torch.ones(1, 1)], [t([[[0.0] * 256]])],
                                                t([1.0] * 256), ep_world_size=1, moe_expert_num=1, norm_eps=0.0)[0]
    assert rstd.item() == f32(1 / f32(math.sqrt(2.0 ** 24 + 4)))


def in_order_sum(values):
    """docs/numerics.md, scalar: 64-wide zero-padded chunks, each summed by neighbour pairs, the chunk sums added
    in order to 0."""
    total = 0.0
    for begin in range(0, len(values), 64):
        c = values[begin:begin + 64] + [0.0] * (64 - len(values[begin:begin + 64]))
        while len(c) > 1:
            c = [f32(c[2 * i] + c[2 * i + 1]) for i in range(len(c) // 2)]
        total = f32(total + c[0])
    return total


def test_add_rms_norm_random_rows(seed):
    random.seed(seed + 5)
    bs, H, eps = 16, 200, 1e-6  # 200 = 4 chunks, added in order
    rows = [[bf16(random.uniform(-4, 4)) for _ in range(H)] for _ in range(bs)]
    residual = [[bf16(random.uniform(-1, 1)) for _ in range(H)] for _ in range(bs)]
    gamma = [bf16(random.uniform(0.5, 1.5)) for _ in range(H)]
    w = [f32(random.uniform(0, 1)) for _ in range(bs)]
    y, rstd, x = tg.golden_combine_add_rms_norm(
        [t(rows)], [ids([[0]] * bs)], [torch.tensor([[v] for v in w])], [t([[r] for r in residual])], t(gamma),
        ep_world_size=1, moe_expert_num=1, norm_eps=eps)[0]
    inv_h = f32(1 / H)
    for tok in range(bs):
        xs = [f32(f32(0.0 + f32(rows[tok][h] * w[tok])) + residual[tok][h]) for h in range(H)]
        ms = in_order_sum([f32(f32(v * v) * inv_h) for v in xs])
        r = f32(1 / f32(math.sqrt(f32(ms + f32(eps)))))
        assert rstd[tok, 0, 0].item() == r
        assert x[tok, 0].tolist() == [bf16(v) for v in xs]
        assert y[tok, 0].tolist() == [bf16(f32(bf16(f32(v * r)) * gamma[h])) for h, v in enumerate(xs)]


def test_add_rms_norm_sum_not_rounded_before_residual():
    # acc = 1 + 2^-8 (not a bf16 value) plus residual 2^-8 gives 1 + 2^-7 exactly; rounding first gives 1.
    expand = [t([[1.0], [2 ** -8]])]
    _, _, x = tg.golden_combine_add_rms_norm(expand, [ids([[0, 1]])], [torch.ones(1, 2)], [t([[[2 ** -8]]])],
                                             t([1.0]), ep_world_size=1, moe_expert_num=2)[0]
    assert x.item() == 1 + 2 ** -7


def test_reduce_sum_orders():
    b = 2.0 ** 24  # b + 1 ties, and rounds to even: b
    v = torch.zeros(1, 64)
    v[0, 0], v[0, 2], v[0, 3] = b, 1.0, 1.0  # neighbours first: {b, 2}, then b + 2; halving would give b
    assert tg._reduce_sum_tree(v).item() == b + 2
    assert tg._reduce_sum_in_order(v).item() == b + 2
    v = torch.zeros(1, 64)
    v[0, 0], v[0, 1], v[0, 33] = b, 1.0, 1.0  # b + 1 -> b; the 1 at 33 meets b at the last level: b
    assert tg._reduce_sum_tree(v).item() == b
    v = torch.zeros(1, 193)
    v[0, 0], v[0, 64], v[0, 128], v[0, 192] = b, 1.0, 1.0, 1.0  # chunk sums {b, 1, 1, 1}
    assert tg._reduce_sum_tree(v).item() == b + 2  # (b + 1 -> b) + (1 + 1)
    assert tg._reduce_sum_in_order(v).item() == b  # each 1 meets b alone


# ---- the casts the golden model relies on ---------------------------------------------------------------

def test_torch_casts_round_half_to_even(seed):
    random.seed(seed + 11)
    bits = [random.getrandbits(32) for _ in range(4000)]
    bits += [0x33000000, 0x33000001, 0x477FEFFF, 0x477FF000, 0x38800000, 0x387FFFFF, 0x3F808000, 0x3F818000]
    values = [struct.unpack("<f", struct.pack("<I", b))[0] for b in bits]
    values = [v for v in values if not math.isnan(v)]
    tensor = torch.tensor(values, dtype=torch.float32)
    assert tg._round_to(tensor, torch.float16).tolist() == [fp16(v) for v in values]
    assert tg._round_to(tensor, BF16).tolist() == [bf16(v) for v in values]
