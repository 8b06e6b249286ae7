# Independent PyTorch golden model of moe_ep's MoE dispatch / combine operators, written from docs/semantics.md and docs/numerics.md only.
"""Bit-exact golden model of MoeDistributeDispatchV2/V3, MoeDistributeCombineV2/V3 and
MoeDistributeCombineAddRmsNorm (docs/semantics.md sections 2 and 3), simulating the whole world in
one process on CPU.

Rank indexing (every per-rank list below): a flat global rank ``g = tp_rank * E + ep_rank`` with
``E = ep_world_size``. Without TP (``tp_world_size`` 0 or 1) a list holds ``E`` entries, indexed by EP
rank. With ``tp_world_size == 2`` it holds ``2E`` entries: ``[0, E)`` is EP group (TP rank) 0 and
``[E, 2E)`` EP group 1; ranks ``g`` and ``g +- E`` form a TP pair (docs/semantics.md 2.7). The
``srcRank`` of a triple is always the EP rank inside its own EP group.

Not modelled: elasticInfo (2.8 scale-down), the A2 variants, status codes (violations of the
documented rules raise ValueError instead).
"""

import math

import torch
import torch.nn.functional as F

__all__ = [
    "golden_dispatch",
    "golden_combine",
    "golden_combine_add_rms_norm",
    "active_tokens",
]

_F32 = torch.float32


def _f32(value):
    return torch.tensor(value, dtype=_F32)


def _div(numerator, denominator):
    """fp32 IEEE division. Never write `python_scalar / tensor`: torch evaluates that as
    reciprocal(tensor) * scalar, two roundings."""
    numerator = torch.as_tensor(numerator, dtype=_F32)
    return numerator.expand_as(denominator) / denominator


def _round_to(values, dtype):
    """fp32 -> dtype (round half to even) -> fp32."""
    return values.to(dtype).to(_F32)


def _to_int8(integral):
    """fp32 -> int8 (docs/numerics.md): NaN -> 0, saturate to [-128, 127]."""
    return torch.nan_to_num(integral, nan=0.0).clamp(-128.0, 127.0).to(torch.int8)


def _amax_ignoring_nan(values, dim):
    # docs/numerics.md: amax ignores NaN elements (torch.amax would propagate them).
    magnitude = values.abs()
    return torch.where(torch.isnan(magnitude), torch.zeros_like(magnitude), magnitude).amax(dim=dim, keepdim=True)


# --------------------------------------------------------------------------------------------------
# Configuration and routing
# --------------------------------------------------------------------------------------------------


class _Dims:
    """docs/semantics.md section 0 notation, with the structural rules of 1.2 checked."""

    def __init__(self, *, ep_world_size, moe_expert_num, shared_expert_num, shared_expert_rank_num,
                 tp_world_size, global_bs, zero_expert_num, copy_expert_num, const_expert_num, K, H,
                 batch_sizes, masked):
        self.E = int(ep_world_size)
        self.moe = int(moe_expert_num)
        self.S = int(shared_expert_rank_num)
        # 1.2: shared_expert_num defaults to 1; S == 0 with n_s == 1 quietly means n_s = 0.
        self.n_s = 0 if (self.S == 0 and shared_expert_num == 1) else int(shared_expert_num)
        if tp_world_size not in (0, 1, 2):
            raise ValueError("tp_world_size must be 0, 1 or 2")
        self.tp = 2 if tp_world_size == 2 else 1  # number of EP groups; CANN's 0 means no TP, like 1
        self.zero, self.copy, self.cnst = int(zero_expert_num), int(copy_expert_num), int(const_expert_num)
        self.K, self.H = int(K), int(H)
        if self.E < 1:
            raise ValueError("ep_world_size must be >= 1")
        if not 0 <= self.S < self.E:
            raise ValueError("shared_expert_rank_num must be in [0, E)")
        if (self.n_s == 0) != (self.S == 0) or (self.n_s and self.S % self.n_s):
            raise ValueError("shared experts: n_s == 0 exactly when S == 0, and S % n_s == 0")
        self.R = self.S // self.n_s if self.n_s else 1
        if self.moe < 1 or self.moe % (self.E - self.S):
            raise ValueError("moe_expert_num must be a positive multiple of E - S")
        self.L = self.moe // (self.E - self.S)
        if min(self.zero, self.copy, self.cnst) < 0:
            raise ValueError("special expert counts must be >= 0")
        self.total = self.moe + self.zero + self.copy + self.cnst
        if not 1 <= self.K <= self.total or self.H < 1:
            raise ValueError("need 1 <= K <= moe + zero + copy + const and H >= 1")
        if self.tp == 2 and self.L != 1:
            raise ValueError("tp_world_size == 2 requires L == 1 (2.7)")
        if len(batch_sizes) != self.E * self.tp:
            raise ValueError(f"per-rank lists must hold E * tp = {self.E * self.tp} entries")
        # 2.5: globalBs only sizes buffers; it never changes a result, but it bounds every Bs.
        if global_bs == 0:
            if len(set(batch_sizes)) > 1:
                raise ValueError("global_bs == 0 requires every rank to have the same Bs")
            self.max_bs = batch_sizes[0]
        else:
            if global_bs % self.E or max(batch_sizes) * self.E > global_bs:
                raise ValueError("global_bs must be a multiple of E and >= Bs * E on every rank")
            if masked and global_bs > min(batch_sizes) * self.E:
                raise ValueError("global_bs > Bs * E is illegal with xActiveMask (2.5)")
            self.max_bs = global_bs // self.E

    def rank(self, tp_rank, ep_rank):
        return tp_rank * self.E + ep_rank


def active_tokens(bs, x_active_mask=None):
    """The tokens that take part (docs/semantics.md 2.5, 3.2): bool (bs,). 1-D mask: tokens [0, sum(mask))
    (the kernel only counts the true values); 2-D mask: tokens with any true entry; no mask: all."""
    if x_active_mask is None:
        return torch.ones(bs, dtype=torch.bool)
    mask = x_active_mask.to(torch.bool)
    if mask.dim() == 1:
        return torch.arange(bs) < int(mask.sum())
    return mask.any(dim=1)


class _Route:
    """One rank's routing (2.1, 2.5, 2.8): token_active (Bs,), pair_active (Bs, K) (token active and pair
    unmasked, special experts included), pair_sent (Bs, K) (pair_active and id < moe)."""

    def __init__(self, dims, ids, mask, g):
        bs, K = ids.shape
        self.ids = ids.to(torch.int64)
        self.token_active = active_tokens(bs, mask)
        pair_unmasked = mask.to(torch.bool) if (mask is not None and mask.dim() == 2) else torch.ones(bs, K, dtype=torch.bool)
        self.pair_active = self.token_active[:, None] & pair_unmasked
        bad = self.pair_active & ((self.ids < 0) | (self.ids >= dims.total))
        if bad.any():
            t, k = bad.nonzero()[0].tolist()
            raise ValueError(f"rank {g}: expert id {int(ids[t, k])} at ({t}, {k}) outside [0, moe + zero + copy + const)")
        self.pair_sent = self.pair_active & (self.ids < dims.moe)
        # docs/validation.md: a token's active routed ids must be distinct (A counts one row per
        # (token, local expert)). Unsent pairs get distinct negative placeholders.
        placeholder = -1 - torch.arange(K, dtype=torch.int64).expand(bs, K)
        routed = torch.where(self.pair_sent, self.ids, placeholder).sort(dim=1).values
        if (routed[:, 1:] == routed[:, :-1]).any():
            raise ValueError(f"rank {g}: a token names the same routed expert twice")


def _check_masks(x_active_mask, n, bs, K):
    masks = [None] * n if x_active_mask is None else list(x_active_mask)
    if len(masks) != n:
        raise ValueError("x_active_mask must hold one entry per rank")
    for g, m in enumerate(masks):
        if m is not None and not ((m.dim() == 1 and m.shape[0] == bs[g]) or tuple(m.shape) == (bs[g], K)):
            raise ValueError(f"rank {g}: xActiveMask must be (Bs,) or (Bs, K)")
    return masks


class _EpRows:
    """What EP rank d receives from its own EP group, in expandX order (2.2): per row src, token, k_idx and
    the smooth-scale row (2.4: n_s + e for routed expert e, i for shared expert i); ep_recv_counts
    (int32 inclusive running totals, 2.3); expert_token_nums (int64, 2.3, before the TP sum)."""

    def __init__(self, src, token, k_idx, smooth_row, counts, token_nums):
        self.src, self.token, self.k_idx, self.smooth_row = src, token, k_idx, smooth_row
        self.ep_recv_counts = counts
        self.expert_token_nums = token_nums

    def __len__(self):
        return int(self.src.numel())


def _layout_group(dims, routes, expert_token_nums_type):
    """_EpRows for every EP rank of one EP group; routes indexed by EP rank."""
    E, L, K = dims.E, dims.L, dims.K
    i64 = torch.int64
    # Every sent pair of the group. nonzero() walks (t, k) row-major, i.e. each source's flattened t*K + k
    # order, and sources are concatenated in ascending order.
    src, tok, kk, exp = [], [], [], []
    for s, route in enumerate(routes):
        t, k = route.pair_sent.nonzero(as_tuple=True)
        src.append(torch.full_like(t, s))
        tok.append(t)
        kk.append(k)
        exp.append(route.ids[t, k])
    src, tok, kk, exp = (torch.cat(v).to(i64) for v in (src, tok, kk, exp))
    # 2.2: a stable sort by expert keeps (source, t*K + k) order within an expert; a MoE rank's experts are
    # consecutive ids, so its rows are one contiguous slice (local expert major).
    order = torch.sort(exp, stable=True).indices
    src, tok, kk, exp = src[order], tok[order], kk[order], exp[order]
    hist = torch.bincount(exp * E + src, minlength=dims.moe * E).view(dims.moe, E)
    expert_end = hist.sum(dim=1).cumsum(0)

    result = []
    for d in range(E):
        if d < dims.S:
            # 2.2 / 2.6: shared expert i = d / R gets the active tokens of the sources in its replica class.
            i = d // dims.R
            per_src = [routes[s].token_active.nonzero(as_tuple=True)[0] if s % dims.R == d % dims.R
                       else torch.zeros(0, dtype=i64) for s in range(E)]
            sizes = torch.tensor([len(p) for p in per_src], dtype=i64)
            t = torch.cat(per_src).to(i64)
            s_of_row = torch.repeat_interleave(torch.arange(E, dtype=i64), sizes)
            counts = sizes.cumsum(0).to(torch.int32)
            result.append(_EpRows(s_of_row, t, torch.full_like(t, K + i), torch.full_like(t, i), counts,
                                  torch.tensor([len(t)], dtype=i64)))
            continue
        lo = (d - dims.S) * L
        begin = int(expert_end[lo - 1]) if lo > 0 else 0
        end = int(expert_end[lo + L - 1])
        # 2.3: entry e_local*E + src, inclusive running total over the whole rank.
        counts = hist[lo:lo + L].reshape(-1).cumsum(0)
        per_expert = hist[lo:lo + L].sum(dim=1)
        if L == 1:
            token_nums = per_expert  # [total] for either type
        elif expert_token_nums_type == 1:
            token_nums = per_expert
        else:
            token_nums = per_expert.cumsum(0)
        result.append(_EpRows(src[begin:end], tok[begin:end], kk[begin:end], dims.n_s + exp[begin:end],
                              counts.to(torch.int32), token_nums.to(i64)))
    return result


def _per_rank(value, n, what):
    if value is None or isinstance(value, torch.Tensor):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{what} must be one tensor or one entry per rank")
    return value


def _setup(expert_ids, x_active_mask, H, layout_args, expert_token_nums_type=1):
    n = len(expert_ids)
    bs = [int(ids.shape[0]) for ids in expert_ids]
    K = int(expert_ids[0].shape[1])
    if any(ids.dim() != 2 or ids.shape[1] != K for ids in expert_ids):
        raise ValueError("expert_ids[r] must be (Bs_r, K) with one K")
    masks = _check_masks(x_active_mask, n, bs, K)
    dims = _Dims(K=K, H=H, batch_sizes=bs, masked=any(m is not None for m in masks), **layout_args)
    routes = [_Route(dims, expert_ids[g], masks[g], g) for g in range(n)]
    layouts = [_layout_group(dims, routes[p * dims.E:(p + 1) * dims.E], expert_token_nums_type)
               for p in range(dims.tp)]
    return dims, masks, routes, layouts


# --------------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------------


def _dynamic_quant(f):
    """docs/semantics.md 2.4 on fp32 rows f (n, H): ds = 127/amax, q = rint_half_even(f*ds), scale = 1/ds.
    amax 0 or tiny: ds = inf, 0*inf = NaN -> 0, nonzero values saturate, scale 1/inf = 0 (numerics.md)."""
    ds = _div(127.0, _amax_ignoring_nan(f, dim=1))
    q = _to_int8(torch.round(f * ds))  # torch.round is round half to even
    return q, _div(1.0, ds).reshape(-1)


def golden_dispatch(x, expert_ids, *, ep_world_size, moe_expert_num, shared_expert_num=1, shared_expert_rank_num=0,
                    tp_world_size=1, quant_mode=0, scales=None, x_active_mask=None, global_bs=0,
                    expert_token_nums_type=1, zero_expert_num=0, copy_expert_num=0, const_expert_num=0):
    """DispatchV2 / V3 (no elasticInfo) for every rank at once (docs/semantics.md section 2).

    Per-rank lists are indexed by the flat rank g = tp_rank * E + ep_rank (module docstring).
    x[g]: (Bs_g, H) bf16 or fp16 (one dtype for all); expert_ids[g]: (Bs_g, K) int32.
    scales: smooth scales for quant_mode 2 only, (n_s + moe, H) fp32, either one tensor used by every rank
    or a list per rank; the SENDING rank's scales quantize its rows (2.4).
    x_active_mask: None, or a list per rank of None / bool (Bs,) / bool (Bs, K) (2.5).

    Returns a list per rank g of dicts:
      rows: own EP rows + (TP) the peer's rows; only these rows of the outputs are defined (decision 4).
      expand_x: (rows, H), x's dtype, or int8 with quant_mode 2. Order 2.2; with TP [own][peer] (2.7).
      dynamic_scales: (rows,) fp32 = 1/ds with quant_mode 2 (2.4); None otherwise.
      assist_info: (3*own_rows,) int32, ints 3i..3i+2 = (srcRank, tokenIdx, kIdx) of row i (2.3): the rows of this
        rank's EP group; the TP peer's rows carry none (2.7).
      own_rows: rows of this rank's EP group (rows without TP).
      expert_token_nums: int64, (L,) on a MoE rank, (1,) on a shared rank; with TP own + peer (2.3).
      ep_recv_counts: int32 inclusive running totals, (E*L,) MoE rank / (E,) shared rank; with TP the
        peer's totals (counted from 0 again) are appended (2.3).
      tp_recv_counts: with TP int32 (2,) indexed by TP rank: [tp_rank] own rows, [1 - tp_rank] the peer's;
        None without TP (not written, 2.3).
      expand_scales: None (A2 only, not produced on A3).
    """
    if quant_mode not in (0, 2):
        raise ValueError("quant_mode must be 0 or 2 (1 is rejected)")
    if quant_mode == 0 and scales is not None:
        raise ValueError("scales require quant_mode 2")
    if expert_token_nums_type not in (0, 1):
        raise ValueError("expert_token_nums_type must be 0 or 1")
    dtype, H = x[0].dtype, int(x[0].shape[1])
    if dtype not in (torch.bfloat16, torch.float16) or any(t.dtype != dtype or t.shape[1] != H for t in x):
        raise ValueError("x must be bf16 or fp16, one dtype and one H on every rank")
    layout_args = dict(ep_world_size=ep_world_size, moe_expert_num=moe_expert_num,
                       shared_expert_num=shared_expert_num, shared_expert_rank_num=shared_expert_rank_num,
                       tp_world_size=tp_world_size, global_bs=global_bs, zero_expert_num=zero_expert_num,
                       copy_expert_num=copy_expert_num, const_expert_num=const_expert_num)
    dims, _, _, layouts = _setup(expert_ids, x_active_mask, H, layout_args, expert_token_nums_type)
    if any(x[g].shape[0] != expert_ids[g].shape[0] for g in range(len(x))):
        raise ValueError("x[g] and expert_ids[g] must have the same Bs")
    smooth = _per_rank(scales, len(x), "scales")
    for s in smooth:
        if s is not None and tuple(s.shape) != (dims.n_s + dims.moe, H):
            raise ValueError("scales must be (n_s + moe, H)")

    def payload(p, rows):
        """expandX rows (and scales) of one EP group's _EpRows, read from the senders of group p."""
        senders = [dims.rank(p, s) for s in range(dims.E)]
        if quant_mode == 0:
            out = torch.empty(len(rows), H, dtype=dtype)
        else:
            out = torch.empty(len(rows), H, dtype=torch.int8)
        scale = torch.empty(len(rows), dtype=_F32)
        for s, g in enumerate(senders):
            sel = (rows.src == s).nonzero(as_tuple=True)[0]
            if quant_mode == 0:
                out[sel] = x[g][rows.token[sel]]
                continue
            f = x[g][rows.token[sel]].to(_F32)  # exact widening
            if smooth[g] is not None:
                f = f * smooth[g].to(_F32)[rows.smooth_row[sel]]  # one fp32 multiply per element
            out[sel], scale[sel] = _dynamic_quant(f)
        return out, scale

    results = []
    for g in range(len(x)):
        p, d = divmod(g, dims.E)
        parts = [p, 1 - p] if dims.tp == 2 else [p]  # 2.7: [own EP group's rows][peer's rows]
        xs, scs, assist, counts, nums = [], [], [], [], None
        for part in parts:
            rows = layouts[part][d]
            out, scale = payload(part, rows)
            xs.append(out)
            scs.append(scale)
            if part == p:  # the TP peer's rows carry no triple (2.7)
                assist.append(torch.stack([rows.src, rows.token, rows.k_idx], dim=1).reshape(-1))
            counts.append(rows.ep_recv_counts)
            nums = rows.expert_token_nums if nums is None else nums + rows.expert_token_nums
        tp_counts = None
        if dims.tp == 2:
            tp_counts = torch.zeros(2, dtype=torch.int32)
            tp_counts[p] = len(layouts[p][d])
            tp_counts[1 - p] = len(layouts[1 - p][d])
        results.append(dict(
            rows=sum(len(layouts[part][d]) for part in parts),
            own_rows=len(layouts[p][d]),
            expand_x=torch.cat(xs),
            dynamic_scales=torch.cat(scs) if quant_mode == 2 else None,
            assist_info=torch.cat(assist).to(torch.int32),
            expert_token_nums=nums.to(torch.int64),
            ep_recv_counts=torch.cat(counts).to(torch.int32),
            tp_recv_counts=tp_counts,
            expand_scales=None,
        ))
    return results


# --------------------------------------------------------------------------------------------------
# Combine
# --------------------------------------------------------------------------------------------------


def _comm_quant_round_trip(values, dtype):
    """docs/semantics.md 3.3: int8 blocks of 8 on the wire, sender and receiver. values: (n, H) fp32 holding
    dtype values. Returns what the receiver uses, as fp32."""
    n, H = values.shape
    blocks = F.pad(values, (0, (-H) % 8)).view(n, (H + 7) // 8, 8)  # zero padding never changes a block max
    s = _amax_ignoring_nan(blocks, dim=2) * _div(1.0, _f32(127.0))  # the constant is fp32(1.0f / 127.0f)
    transmitted = _round_to(s, dtype)
    # Divide by the unrounded s, round to fp16, then to an integer (two roundings). s == 0 only for an
    # all-zero block: 0/0 = NaN -> q = 0 (numerics.md).
    q = _to_int8(torch.round(_round_to(blocks / s, torch.float16)))
    received = _round_to(q.to(_F32) * transmitted, dtype)
    return received.view(n, blocks.shape[1] * 8)[:, :H]  # no -1: a rank may receive no rows


def _combine_accumulate(expand_x, expert_ids, expert_scales, *, comm_quant_mode, shared_expert_x, x_active_mask,
                        ori_x, const_expert_alpha_1, const_expert_alpha_2, const_expert_v, layout_args):
    """Per rank: (acc (Bs, H) fp32 as 3.2 leaves it before the final cast, active tokens (Bs,))."""
    n = len(expand_x)
    dtype, H = expand_x[0].dtype, int(expand_x[0].shape[1])
    if dtype not in (torch.bfloat16, torch.float16) or any(t.dtype != dtype or t.shape[1] != H for t in expand_x):
        raise ValueError("expand_x must be bf16 or fp16, one dtype and one H on every rank")
    if comm_quant_mode not in (0, 2):
        raise ValueError("comm_quant_mode must be 0 or 2")
    dims, _, routes, layouts = _setup(expert_ids, x_active_mask, H, layout_args)
    if comm_quant_mode == 2 and dims.tp == 2:
        raise ValueError("comm_quant_mode 2 requires tp < 2")
    K, slots_per_token = dims.K, dims.K + dims.n_s
    shared_x = _per_rank(shared_expert_x, n, "shared_expert_x")
    if dims.S > 0 and any(s is not None for s in shared_x):
        raise ValueError("sharedExpertX is only allowed when S == 0 (1.3)")
    ori = _per_rank(ori_x, n, "ori_x")
    alpha1 = _per_rank(const_expert_alpha_1, n, "const_expert_alpha_1")
    alpha2 = _per_rank(const_expert_alpha_2, n, "const_expert_alpha_2")
    const_v = _per_rank(const_expert_v, n, "const_expert_v")
    if dims.copy + dims.cnst > 0 and any(o is None for o in ori):
        raise ValueError("copy / const experts require ori_x")
    if dims.cnst > 0 and any(a is None or b is None or v is None for a, b, v in zip(alpha1, alpha2, const_v)):
        raise ValueError("const experts require both alphas and const_expert_v")
    if dims.cnst > 0 and any(tuple(a.shape) != (dims.cnst, H) or tuple(b.shape) != (dims.cnst, H)
                             for a, b in zip(alpha1, alpha2)):
        raise ValueError("const_expert_alpha_1 / _2 must be (const_expert_num, H)")

    # 3.1: the rows each expert rank returns, as the owner will see them, stacked in `returned` (plus a
    # final NaN row: nothing arrives). slot[g][t, kIdx] = the row of `returned` that lands in slot
    # t*(K + n_s) + kIdx of owner g.
    returned = []
    slot = [torch.full((int(ids.shape[0]), slots_per_token), -1, dtype=torch.int64) for ids in expert_ids]
    base = 0
    for g in range(n):
        p, d = divmod(g, dims.E)
        rows = layouts[p][d]
        own = len(rows)
        need = own + (len(layouts[1 - p][d]) if dims.tp == 2 else 0)
        if expand_x[g].shape[0] < need:
            raise ValueError(f"rank {g}: expand_x has {expand_x[g].shape[0]} rows, dispatch produced {need}")
        values = expand_x[g][:own].to(_F32)
        if dims.tp == 2:
            # 3.1 reduce-scatter: the peer holds our rows after its own (2.7); fp32 add, one rounding.
            peer = dims.rank(1 - p, d)
            peer_own = len(layouts[1 - p][d])
            values = _round_to(values + expand_x[peer][peer_own:peer_own + own].to(_F32), dtype)
        if comm_quant_mode == 2:
            values = _comm_quant_round_trip(values, dtype)
        returned.append(values)
        for s in range(dims.E):
            sel = (rows.src == s).nonzero(as_tuple=True)[0]
            slot[dims.rank(p, s)][rows.token[sel], rows.k_idx[sel]] = base + sel
        base += own
    returned = torch.cat(returned + [torch.full((1, H), float("nan"), dtype=_F32)])
    for index in slot:
        index[index < 0] = base  # the NaN row

    results = []
    for g in range(n):
        route = routes[g]
        bs = int(expert_ids[g].shape[0])
        if tuple(expert_scales[g].shape) != (bs, K):
            raise ValueError(f"rank {g}: expert_scales must be (Bs, K)")
        w = expert_scales[g].to(_F32)
        ids = route.ids
        zero_end, copy_end = dims.moe + dims.zero, dims.moe + dims.zero + dims.copy
        ori_f = ori[g].to(_F32) if ori[g] is not None else None
        if dims.cnst > 0:
            # 3.2 const expert c: a_i = sum_h alpha_i[c, h] * oriX[h] (each product rounded, in Sum's order), the
            # softmax of (a1, a2) with each exp taken in double and rounded to fp32, then v = oriX*p1 + V[c]*p2,
            # each product and the sum rounded.
            c = (ids - copy_end).clamp(0, dims.cnst - 1)  # clamped only to gather; used where e >= copy_end
            d1 = _reduce_sum_tree(alpha1[g].to(_F32)[c] * ori_f[:, None, :])  # (Bs, K)
            d2 = _reduce_sum_tree(alpha2[g].to(_F32)[c] * ori_f[:, None, :])
            top = torch.where(d1 > d2, d1, d2)
            exp = lambda d: torch.tensor([math.exp(v) for v in d.double().flatten().tolist()],  # noqa: E731
                                         dtype=torch.float64).view(d.shape).to(_F32)
            e1, e2 = exp(d1 - top), exp(d2 - top)
            p1, p2 = e1 / (e1 + e2), e2 / (e1 + e2)
            vc = const_v[g].to(_F32)
        acc = torch.zeros(bs, H, dtype=_F32)  # +0.0f: +0 + (-0) = +0 (numerics.md)
        for k in range(K):
            e = ids[:, k:k + 1]
            v = returned[slot[g][:, k]]
            if dims.copy > 0:
                v = torch.where(e >= zero_end, ori_f, v)
            if dims.cnst > 0:
                const_k = ori_f * p1[:, k:k + 1] + vc[c[:, k]] * p2[:, k:k + 1]
                v = torch.where(e >= copy_end, const_k, v)
            # Zero experts and masked pairs are skipped: acc is kept as is, and their weight (even inf)
            # never meets a value. Multiply, then add: two roundings, never an FMA (3.2).
            take = route.pair_active[:, k:k + 1] & ((e < dims.moe) | (e >= zero_end))
            acc = torch.where(take, acc + v * w[:, k:k + 1], acc)
        for i in range(dims.n_s):
            acc = acc + returned[slot[g][:, K + i]]  # shared experts: no weight
        if shared_x[g] is not None:
            acc = acc + shared_x[g].reshape(bs, H).to(_F32)  # sharedExpertX: no weight
        results.append((acc, route.token_active))
    return results


def _initial(init, shape, dtype):
    """A fresh output: a copy of the caller's initial contents, or zeros."""
    if init is None:
        return torch.zeros(shape, dtype=dtype)
    if tuple(init.shape) != tuple(shape) or init.dtype != dtype:
        raise ValueError(f"initial output must be {tuple(shape)} {dtype}")
    return init.clone()


def golden_combine(expand_x, expert_ids, expert_scales, *, ep_world_size, moe_expert_num, shared_expert_num=1,
                   shared_expert_rank_num=0, tp_world_size=1, global_bs=0, zero_expert_num=0, copy_expert_num=0,
                   const_expert_num=0, comm_quant_mode=0, shared_expert_x=None, x_active_mask=None, ori_x=None,
                   const_expert_alpha_1=None, const_expert_alpha_2=None, const_expert_v=None, out=None):
    """CombineV2 / V3 (no elasticInfo) for every rank at once (docs/semantics.md 3.1 - 3.3).

    Lists per flat rank g = tp_rank * E + ep_rank. expand_x[g]: the expert outputs of rank g, (>= rows, H)
    bf16 / fp16, row i being the output for dispatch row i (rows past dispatch's count are ignored).
    expert_ids[g], x_active_mask[g]: as given to dispatch; the routing (hence where each slot's row lies)
    is recomputed from them, which is what assistInfoForCombine / epSendCounts / tpSendCounts encode.
    expert_scales[g]: (Bs, K) fp32; read only for active, unmasked pairs of routed, copy or const experts.
    shared_expert_x[g]: None or (Bs, H) / (d0, d1, H), only with S == 0. ori_x[g]: (Bs, H) (copy/const).
    const_expert_alpha_1/_2, const_expert_v: (const, H); expandX's dtype; one tensor for all
    ranks or a list per rank.
    out: optional list of initial (Bs, H) outputs; rows of inactive tokens keep them (decision 4: never
    written), default zeros.

    Returns a list per rank of x (Bs, H) in expandX's dtype.
    """
    layout_args = dict(ep_world_size=ep_world_size, moe_expert_num=moe_expert_num,
                       shared_expert_num=shared_expert_num, shared_expert_rank_num=shared_expert_rank_num,
                       tp_world_size=tp_world_size, global_bs=global_bs, zero_expert_num=zero_expert_num,
                       copy_expert_num=copy_expert_num, const_expert_num=const_expert_num)
    dtype = expand_x[0].dtype
    accs = _combine_accumulate(expand_x, expert_ids, expert_scales, comm_quant_mode=comm_quant_mode,
                               shared_expert_x=shared_expert_x, x_active_mask=x_active_mask, ori_x=ori_x,
                               const_expert_alpha_1=const_expert_alpha_1, const_expert_alpha_2=const_expert_alpha_2,
                               const_expert_v=const_expert_v, layout_args=layout_args)
    results = []
    for g, (acc, active) in enumerate(accs):
        x = _initial(None if out is None else out[g], tuple(acc.shape), dtype)
        x[active] = acc[active].to(dtype)  # one round-half-even cast (3.2)
        results.append(x)
    return results


def _chunk_sums(values):
    """docs/numerics.md: the last dim in 64-wide chunks (last one zero-padded), each summed by neighbour pairs
    ((c0 + c1), (c2 + c3), ...) until one value is left: one sum per chunk."""
    n = -(-values.shape[-1] // 64)  # chunks per row, named: a view cannot infer it for a batch of no rows
    chunks = F.pad(values, (0, (-values.shape[-1]) % 64)).view(*values.shape[:-1], n, 64)
    while chunks.shape[-1] > 1:
        chunks = chunks[..., 0::2] + chunks[..., 1::2]
    return chunks[..., 0]


def _reduce_sum_tree(values):
    """AscendC Sum over the last dim (the const experts' dot products): chunk sums of chunk sums until one is left."""
    values = _chunk_sums(values)
    while values.shape[-1] > 1:
        values = _chunk_sums(values)
    return values[..., 0]


def _reduce_sum_in_order(values):
    """AscendC ReduceSum of a count over the last dim (RMSNorm's mean square): the chunk sums added in order to 0."""
    sums = _chunk_sums(values)
    total = torch.zeros(sums.shape[:-1], dtype=torch.float32)
    for j in range(sums.shape[-1]):
        total = total + sums[..., j]
    return total


def golden_combine_add_rms_norm(expand_x, expert_ids, expert_scales, residual_x, gamma, *, ep_world_size,
                                moe_expert_num, shared_expert_num=1, shared_expert_rank_num=0, tp_world_size=1,
                                global_bs=0, comm_quant_mode=0, shared_expert_x=None, x_active_mask=None,
                                norm_eps=1e-6, zero_expert_num=0, copy_expert_num=0, const_expert_num=0, ori_x=None,
                                const_expert_alpha_1=None, const_expert_alpha_2=None, const_expert_v=None, out=None):
    """CombineAddRmsNorm and its V2 (docs/semantics.md 1.4, 3.5): bf16 only, S == 0, commQuantMode 0; special
    experts as golden_combine. Arguments as golden_combine, plus residual_x[g]: (Bs, 1, H) bf16, gamma: (H,) bf16
    (one tensor or a list per rank), norm_eps: the FLOAT attribute (rounded to fp32).
    out: optional list of initial (y, rstd, x) per rank, kept for inactive tokens (default zeros).

    Returns a list per rank of (y (Bs, 1, H) bf16, rstd (Bs, 1, 1) fp32, x (Bs, 1, H) bf16).
    """
    if expand_x[0].dtype != torch.bfloat16:
        raise ValueError("CombineAddRmsNorm is bf16 only")
    if shared_expert_rank_num != 0 or comm_quant_mode != 0:
        raise ValueError("CombineAddRmsNorm requires S == 0 and commQuantMode 0")
    layout_args = dict(ep_world_size=ep_world_size, moe_expert_num=moe_expert_num,
                       shared_expert_num=shared_expert_num, shared_expert_rank_num=shared_expert_rank_num,
                       tp_world_size=tp_world_size, global_bs=global_bs, zero_expert_num=zero_expert_num,
                       copy_expert_num=copy_expert_num, const_expert_num=const_expert_num)
    accs = _combine_accumulate(expand_x, expert_ids, expert_scales, comm_quant_mode=0,
                               shared_expert_x=shared_expert_x, x_active_mask=x_active_mask, ori_x=ori_x,
                               const_expert_alpha_1=const_expert_alpha_1, const_expert_alpha_2=const_expert_alpha_2,
                               const_expert_v=const_expert_v, layout_args=layout_args)
    gammas = _per_rank(gamma, len(accs), "gamma")
    eps = _f32(norm_eps)
    results = []
    for g, (acc, active) in enumerate(accs):
        bs, H = acc.shape
        if tuple(residual_x[g].shape) != (bs, 1, H) or residual_x[g].dtype != torch.bfloat16:
            raise ValueError(f"rank {g}: residual_x must be (Bs, 1, H) bf16")
        if tuple(gammas[g].shape) != (H,) or gammas[g].dtype != torch.bfloat16:
            raise ValueError(f"rank {g}: gamma must be (H,) bf16")
        # 3.5: the sum is not rounded before the residual add.
        xs = acc + residual_x[g].reshape(bs, H).to(_F32)
        inv_h = _div(1.0, _f32(float(H)))  # avgFactor = 1.0f / H, computed once
        ms = _reduce_sum_in_order((xs * xs) * inv_h)  # square rounded, then times the factor rounded
        rstd = _div(1.0, torch.sqrt(ms + eps))  # IEEE sqrt, then a true division (not rsqrt)
        y = (_round_to(xs * rstd[:, None], torch.bfloat16) * gammas[g].to(_F32)).to(torch.bfloat16)
        init = (None, None, None) if out is None or out[g] is None else out[g]
        y_out = _initial(init[0], (bs, 1, H), torch.bfloat16)
        rstd_out = _initial(init[1], (bs, 1, 1), _F32)
        x_out = _initial(init[2], (bs, 1, H), torch.bfloat16)
        y_out[active] = y[active][:, None]
        rstd_out[active] = rstd[active][:, None, None]
        x_out[active] = xs[active].to(torch.bfloat16)[:, None]
        results.append((y_out, rstd_out, x_out))
    return results
