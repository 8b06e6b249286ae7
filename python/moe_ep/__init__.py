"""moe_ep: Mixture-of-Experts expert-parallel dispatch and combine with the exact semantics of the CANN
operators, on CPU tensors (torch tensors or numpy arrays).

Native API (this module): make groups (thread_groups, join_process_group, join_torch_group), then
dispatch(...) -> DispatchResult with a handle, combine(...), combine_add_rms_norm(...), barrier,
probe_reachable, buffer_reset. torch_npu's functions: moe_ep.torch_npu; group names for them: moe_ep.distributed.
Every call that may wait for another rank releases the GIL; every failure raises a moe_ep.Error (see
moe_ep.errors).
"""

import collections
import datetime
import secrets

from . import _tensors
from ._moe_ep import native as _native
from ._tensors import bf16
from .errors import Error, InvalidArgumentError, TimeoutError, checked_int

__all__ = ["Error", "InvalidArgumentError", "TimeoutError", "bf16", "Group", "thread_groups", "join_process_group",
           "join_torch_group", "peer_visible", "DispatchResult", "dispatch", "combine", "combine_add_rms_norm", "probe_reachable",
           "barrier", "buffer_reset"]

Group = _native.Group
Group.__doc__ = """One rank's membership of a group: rank, size, timeout, window_bytes, name, failed_ranks.
Operations on a group are collective: every rank calls them in the same order."""


def _options(timeout, window_mb, name, data_path, threads):
    if timeout is not None and not 0 < timeout <= 2**31 / 1000:
        raise InvalidArgumentError(f"timeout = {timeout} must be a positive number of seconds up to 2^31 ms "
                                   "(or None: the default)")
    return {"timeout_ms": 0 if timeout is None else max(1, round(timeout * 1000)),
            "window_bytes": checked_int("window_mb", window_mb, 0, 2**20) << 20, "name": str(name), "data_path": data_path,
            "threads": checked_int("threads", threads, 0, 1024)}


def thread_groups(size, *, timeout=None, window_mb=0, name="moe_ep", data_path="auto", threads=0):
    """The `size` ranks of a group whose ranks are threads of this process: hand groups[r] to the thread
    that runs rank r. timeout: seconds each wait may take (None: MOE_EP_TIMEOUT_MS or 5 minutes);
    window_mb: each rank's window (0: MOE_EP_WINDOW_MB or 2048); data_path: "auto", "push" or "pull";
    threads: worker threads per rank (0: MOE_EP_THREADS or the cores shared out)."""
    return _native.create_thread_groups(checked_int("size", size, 1, 65536), _options(timeout, window_mb, name, data_path,
                                                                                threads))


def join_process_group(members=None, *, job=None, timeout=None, window_mb=0, name="moe_ep", data_path="auto",
                       threads=0):
    """[collective] Joins the group of the job's processes (one per rank; `moe-ep launch` or mpirun sets the
    job), or of the job ranks listed in `members` (this process's rank in the group is its position there).
    job: (rank, world_size, rendezvous) instead of the launcher's environment."""
    opts = _options(timeout, window_mb, name, data_path, threads)
    return _native.join_process_group(None if job is None else tuple(job),
                                      None if members is None else [int(m) for m in members], opts)


def join_torch_group(group=None, *, timeout=None, window_mb=0, name="moe_ep", data_path="auto", threads=0):
    """[collective over `group`] A moe_ep group of the processes of a torch.distributed group (default: the
    world), ranks numbered as in it. Its processes must be on this host (shared memory)."""
    import torch
    import torch.distributed as dist

    if group is None:
        group = dist.distributed_c10d._get_default_group()
    token = bytearray(secrets.token_hex(16).encode() if dist.get_rank(group) == 0 else bytes(32))
    payload = torch.frombuffer(token, dtype=torch.uint8)
    group.broadcast(payload, 0).wait()  # rank 0's unguessable token names the shared-memory rendezvous
    job = (dist.get_rank(group), dist.get_world_size(group), "torch-" + bytes(payload.numpy()).decode())
    return join_process_group(job=job, timeout=timeout, window_mb=window_mb, name=name, data_path=data_path,
                              threads=threads)


def peer_visible(shape, dtype):
    """A zeroed tensor in this process's shared heap: process ranks of this host read it in place, so a
    dispatch's x or a combine's expert outputs allocated here move with one copy per row (the pull data
    path) instead of two. dtype: a torch dtype (a torch tensor), a numpy dtype (a numpy array), or "bf16"
    (a moe_ep.bf16 array). Ranks that are threads need none of this: all their memory is shared."""
    shape = tuple(int(d) for d in shape)
    n = 1
    for d in shape:
        n *= d
    if _tensors.torch is not None and isinstance(dtype, _tensors.torch.dtype):
        if dtype not in _tensors._ELEMENT_SIZE:
            raise InvalidArgumentError(f"peer_visible: dtype {dtype} is not one moe_ep's operations take")
        block = _native.peer_visible_block(n * _tensors._ELEMENT_SIZE[dtype])
        return _tensors.torch.frombuffer(block, dtype=dtype, count=n).view(shape) if n else \
            _tensors.torch.empty(shape, dtype=dtype)
    import numpy as np

    numpy_dtype = np.dtype(np.uint16 if dtype == "bf16" else dtype)
    if numpy_dtype not in _tensors._NUMPY and dtype != "bf16":
        raise InvalidArgumentError(f"peer_visible: dtype {dtype} is not one moe_ep's operations take")
    a = np.frombuffer(_native.peer_visible_block(n * numpy_dtype.itemsize), dtype=numpy_dtype, count=n).reshape(shape)
    return _tensors.bf16(a) if dtype == "bf16" else a


DispatchResult = collections.namedtuple(
    "DispatchResult", "expand_x dynamic_scales assist_info expert_token_nums ep_recv_counts tp_recv_counts handle")
DispatchResult.__doc__ = """What dispatch returns. expand_x: room for every row this rank may receive, the
first handle.num_rows received (int8 with quant="int8", then dynamic_scales their fp32 scales, else
None), the rest uninitialised; assist_info: the (srcRank, tokenIdx, kIdx) triple of each received row;
expert_token_nums / ep_recv_counts / tp_recv_counts: the counts of the CANN operator; handle: what combine
needs. combine takes expert outputs of expand_x's shape, rows in the same order."""


def _layout(moe_expert_num, shared_expert_num, shared_expert_rank_num, global_bs, zero_expert_num, copy_expert_num,
            const_expert_num, survivors):
    return {"moe_expert_num": int(moe_expert_num), "shared_expert_num": int(shared_expert_num),
            "shared_expert_rank_num": int(shared_expert_rank_num), "global_bs": int(global_bs),
            "zero_expert_num": int(zero_expert_num), "copy_expert_num": int(copy_expert_num),
            "const_expert_num": int(const_expert_num),
            "survivors": [] if survivors is None else [int(s) for s in survivors]}


def _quant(value, name):
    if value in (None, 0, "none"):
        return 0
    if value in (2, "int8"):
        return 2
    raise InvalidArgumentError(f"{name} = {value!r} must be None (rows travel as they are) or 'int8' (dynamic int8)")


def dispatch(group, x, expert_ids, *, moe_expert_num, shared_expert_num=0, shared_expert_rank_num=0, global_bs=0,
             zero_expert_num=0, copy_expert_num=0, const_expert_num=0, survivors=None, quant=None,
             cumulative_token_nums=False, smooth_scales=None, active_mask=None, tp=None):
    """[collective over group (and tp)] Sends every token of x (Bs, H) bf16 / fp16 to its top-K experts
    (expert_ids (Bs, K) int32) and to the shared experts. moe_expert_num routed experts are spread evenly
    over ranks [shared_expert_rank_num, size). survivors: the 0/1 mask of probe_reachable after a failure
    (elastic scale-down; call buffer_reset first). tp: this rank's TP pair. Returns a DispatchResult."""
    args = {"x": _tensors.spec(x, "x"), "expert_ids": _tensors.spec(expert_ids, "expert_ids"),
            "layout": _layout(moe_expert_num, shared_expert_num, shared_expert_rank_num, global_bs, zero_expert_num,
                              copy_expert_num, const_expert_num, survivors),
            "quant": _quant(quant, "quant"), "cumulative_token_nums": bool(cumulative_token_nums),
            "smooth_scales": _tensors.spec(smooth_scales, "smooth_scales"),
            "active_mask": _tensors.spec(active_mask, "active_mask")}
    *outputs, handle = _native.dispatch(group, args, tp, _tensors.is_torch(x), _tensors.poison_outputs)
    return DispatchResult(*outputs, handle)


def _combine_options(comm_quant, shared_expert_x, ori_x, const_alpha1, const_alpha2, const_v):
    return {"comm_quant": _quant(comm_quant, "comm_quant"),
            "shared_expert_x": _tensors.spec(shared_expert_x, "shared_expert_x"), "ori_x": _tensors.spec(ori_x, "ori_x"),
            "const_alpha1": _tensors.spec(const_alpha1, "const_alpha1"),
            "const_alpha2": _tensors.spec(const_alpha2, "const_alpha2"), "const_v": _tensors.spec(const_v, "const_v")}


def combine(group, handle, expert_out, expert_scales, *, comm_quant=None, shared_expert_x=None, ori_x=None,
            const_alpha1=None, const_alpha2=None, const_v=None, tp=None):
    """[collective] Returns the expert outputs (rows of dispatch's expand_x, same order, x's dtype) to their
    tokens and sums them: x[t] = sum_k w[t, k] * out(t, k) + shared outputs + shared_expert_x, with
    expert_scales w (Bs, K) fp32. comm_quant="int8": int8 on the wire. Returns x (Bs, H); rows of inactive
    tokens are zero."""
    return _native.combine(group, handle, {
        "expert_out": _tensors.spec(expert_out, "expert_out"), "expert_scales": _tensors.spec(expert_scales, "expert_scales"),
        "options": _combine_options(comm_quant, shared_expert_x, ori_x, const_alpha1, const_alpha2, const_v),
        "residual_x": None, "gamma": None, "norm_eps": 0.0}, tp, False, _tensors.is_torch(expert_out),
        _tensors.poison_outputs)


def combine_add_rms_norm(group, handle, expert_out, expert_scales, residual_x, gamma, *, norm_eps=1e-6,
                         shared_expert_x=None, tp=None):
    """[collective] combine, then x = sum + residual_x and y = RMSNorm(x) * gamma (bf16 only). residual_x
    (Bs, 1, H), gamma (H,). Returns (y, rstd, x): y and x (Bs, 1, H), rstd (Bs, 1, 1) fp32."""
    return _native.combine(group, handle, {
        "expert_out": _tensors.spec(expert_out, "expert_out"), "expert_scales": _tensors.spec(expert_scales, "expert_scales"),
        "options": _combine_options(None, shared_expert_x, None, None, None, None),
        "residual_x": _tensors.spec(residual_x, "residual_x"), "gamma": _tensors.spec(gamma, "gamma"),
        "norm_eps": float(norm_eps)}, tp, True, _tensors.is_torch(expert_out), _tensors.poison_outputs)


def probe_reachable(group, wait=None):
    """[collective over the live ranks] One 0/1 entry per rank of the group: 1 for the ranks that all called
    probe_reachable within `wait` seconds (None: the group timeout) of each other."""
    if wait is not None and not 0 < wait <= 2**31 / 1000:
        raise InvalidArgumentError(f"probe_reachable: wait = {wait} must be a positive number of seconds (or None)")
    return _native.probe_reachable(group, datetime.timedelta(seconds=wait or 0))


def barrier(group):
    """[collective] Returns once every rank of the group has called barrier; a rank missing past the group
    timeout raises moe_ep.TimeoutError naming it."""
    _native.barrier(group)


def buffer_reset(group, reachable=None, need_sync=True):
    """[collective over the reachable ranks] Clears this rank's window; with need_sync waits until every
    reachable rank has cleared its own. reachable: probe_reachable's mask (None: every rank)."""
    _native.buffer_reset(group, [] if reachable is None else [int(r) for r in reachable], bool(need_sync))


