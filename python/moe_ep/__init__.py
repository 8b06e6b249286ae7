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
import math
import operator
import secrets

from . import _tensors
from ._moe_ep import native as _native
from ._tensors import bf16
from .errors import (INT32_MAX, INT64_MAX, Error, InvalidArgumentError, TimeoutError, checked_attrs, checked_bool,
                     checked_int, checked_ints, checked_mask, checked_real)

__all__ = ["Error", "InvalidArgumentError", "TimeoutError", "bf16", "Group", "thread_groups", "join_process_group",
           "join_torch_group", "peer_visible", "DispatchResult", "dispatch", "combine", "combine_add_rms_norm", "probe_reachable",
           "barrier", "buffer_reset"]

Group = _native.Group
Group.__doc__ = """One rank's membership of a group: rank, size, timeout, window_bytes, name, failed_ranks.
Operations on a group are collective: every rank calls them in the same order."""


def _check_type(op, name, value, kind, rule):
    """Refuses a `value` that is not a `kind` as InvalidArgumentError naming it: the extension's own refusal
    would be pybind11's TypeError ("incompatible function arguments"), no moe_ep.Error."""
    if not isinstance(value, kind):
        raise InvalidArgumentError(f"{op}: {name} = {value!r} must be {rule}")


_GROUP = "a moe_ep.Group (from thread_groups, join_process_group or join_torch_group)"


def _check_groups(op, group, tp=None):
    _check_type(op, "group", group, Group, _GROUP)
    _check_type(op, "tp", tp, (Group, type(None)), _GROUP + " or None")


def _options(timeout, window_mb, name, data_path, threads):
    if timeout is not None and not 0 < checked_real("timeout", timeout) <= 2**31 / 1000:
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
    members = None if members is None else checked_ints("join_process_group: members", members, 0, INT32_MAX)
    return _native.join_process_group(None if job is None else _job(job), members, opts)


def _job(job):
    """join_process_group's job as the extension reads it: (rank, world_size, rendezvous), each checked."""
    try:
        rank, world_size, rendezvous = job
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"join_process_group: job = {job!r} must be (rank, world_size, "
                                   "rendezvous)") from None
    _check_type("join_process_group", "job rendezvous", rendezvous, str, "a str")
    return (checked_int("join_process_group: job rank", rank, 0, INT32_MAX),
            checked_int("join_process_group: job world_size", world_size, 1, INT32_MAX), rendezvous)


def join_torch_group(group=None, *, timeout=None, window_mb=0, name="moe_ep", data_path="auto", threads=0):
    """[collective over `group`] A moe_ep group of the processes of a torch.distributed group (default: the
    world), ranks numbered as in it. Its processes must be on this host (shared memory)."""
    import torch
    from . import distributed

    group = distributed._group_or_world("join_torch_group", group, "thread_groups or join_process_group")
    group_rank, size, _ = distributed._membership(group)
    token = bytearray(secrets.token_hex(16).encode() if group_rank == 0 else bytes(32))
    payload = torch.frombuffer(token, dtype=torch.uint8)
    group.broadcast(payload, 0).wait()  # rank 0's unguessable token names the shared-memory rendezvous
    job = (group_rank, size, "torch-" + bytes(payload.numpy()).decode())
    return join_process_group(job=job, timeout=timeout, window_mb=window_mb, name=name, data_path=data_path,
                              threads=threads)


def peer_visible(shape, dtype):
    """A zeroed tensor in this process's shared heap: process ranks of this host read it in place, so a
    dispatch's x or a combine's expert outputs allocated here move with one copy per row (the pull data
    path) instead of two. dtype: a torch dtype (a torch tensor), a numpy dtype (a numpy array), or "bf16"
    (a moe_ep.bf16 array). Ranks that are threads need none of this: all their memory is shared."""
    shape = tuple(checked_ints("peer_visible: shape", shape, 0, INT64_MAX))
    n = math.prod(shape)
    torch = _tensors.torch
    if torch is not None and isinstance(dtype, torch.dtype):
        if dtype not in _tensors._ELEMENT_SIZE:
            raise InvalidArgumentError(f"peer_visible: dtype {dtype} is not one moe_ep's operations take")
        block = _peer_visible_block(shape, dtype, n * _tensors._ELEMENT_SIZE[dtype])
        return torch.frombuffer(block, dtype=dtype, count=n).view(shape) if n else torch.empty(shape, dtype=dtype)
    is_bf16 = isinstance(dtype, str) and dtype == "bf16"
    numpy_dtype = _tensors.np.dtype(_tensors.np.uint16) if is_bf16 else _numpy_dtype(dtype)
    block = _peer_visible_block(shape, dtype, n * numpy_dtype.itemsize)
    a = _tensors.np.frombuffer(block, dtype=numpy_dtype, count=n).reshape(shape)
    return _tensors.bf16(a) if is_bf16 else a


def _numpy_dtype(dtype):
    try:
        numpy_dtype = _tensors.np.dtype(dtype)
    except TypeError:  # not a dtype at all
        numpy_dtype = None
    if numpy_dtype not in _tensors._NUMPY:  # np.dtype(None) is float64: refused here too
        raise InvalidArgumentError(f"peer_visible: dtype {dtype!r} is not one moe_ep's operations take")
    return numpy_dtype


def _peer_visible_block(shape, dtype, nbytes):
    if nbytes > INT64_MAX:  # the extension takes an int64 (and refuses more than the machine's memory)
        raise InvalidArgumentError(f"peer_visible: shape {shape} of {dtype} is {nbytes} bytes; the rule: at most "
                                   "2^63 - 1")
    return _native.peer_visible_block(nbytes)


DispatchResult = collections.namedtuple(
    "DispatchResult", "expand_x dynamic_scales assist_info expert_token_nums ep_recv_counts tp_recv_counts handle")
DispatchResult.__doc__ = """What dispatch returns. expand_x: room for every row this rank may receive, the
first handle.num_rows received (int8 with quant="int8", then dynamic_scales their fp32 scales, else
None), the rest uninitialised; assist_info: the (srcRank, tokenIdx, kIdx) triple of each row received from this
rank's EP group (the TP peer's rows have none);
expert_token_nums / ep_recv_counts / tp_recv_counts: the counts of the CANN operator; handle: what combine
needs. combine takes expert outputs of expand_x's shape, rows in the same order."""


def _layout(moe_expert_num, shared_expert_num, shared_expert_rank_num, global_bs, zero_expert_num, copy_expert_num,
            const_expert_num, survivors):
    """The expert layout, its counts ints of the operators' int32 range (the extension bounds them further) and
    survivors a 0/1 mask: a float or a string is refused, not truncated or parsed."""
    layout = checked_attrs("dispatch", {
        "moe_expert_num": moe_expert_num, "shared_expert_num": shared_expert_num,
        "shared_expert_rank_num": shared_expert_rank_num, "global_bs": global_bs, "zero_expert_num": zero_expert_num,
        "copy_expert_num": copy_expert_num, "const_expert_num": const_expert_num})
    layout["survivors"] = [] if survivors is None else checked_mask("dispatch: survivors", survivors)
    return layout


_QUANT_NAMES = {None: 0, "none": 0, "int8": 2}


def _quant(value, name):
    """None / "none" -> 0, "int8" -> 2, or the CANN mode itself as an int (0 or 2; not a bool or a float)."""
    if value is None or isinstance(value, str):
        mode = _QUANT_NAMES.get(value)
    elif isinstance(value, bool):
        mode = None
    else:
        try:
            mode = operator.index(value)
        except TypeError:
            mode = None
    if mode not in (0, 2):
        raise InvalidArgumentError(f"{name} = {value!r} must be None (rows travel as they are) or 'int8' (dynamic "
                                   "int8)")
    return mode


def dispatch(group, x, expert_ids, *, moe_expert_num, shared_expert_num=0, shared_expert_rank_num=0, global_bs=0,
             zero_expert_num=0, copy_expert_num=0, const_expert_num=0, survivors=None, quant=None,
             cumulative_token_nums=False, smooth_scales=None, active_mask=None, tp=None):
    """[collective over group (and tp)] Sends every token of x (Bs, H) bf16 / fp16 to its top-K experts
    (expert_ids (Bs, K) int32) and to the shared experts. moe_expert_num routed experts are spread evenly
    over ranks [shared_expert_rank_num, size). survivors: the 0/1 mask of probe_reachable after a failure
    (elastic scale-down; call buffer_reset first). tp: this rank's TP pair. Returns a DispatchResult."""
    _check_groups("dispatch", group, tp)
    args = {"x": _tensors.spec(x, "x"), "expert_ids": _tensors.spec(expert_ids, "expert_ids"),
            "layout": _layout(moe_expert_num, shared_expert_num, shared_expert_rank_num, global_bs, zero_expert_num,
                              copy_expert_num, const_expert_num, survivors),
            "quant": _quant(quant, "quant"),
            "cumulative_token_nums": checked_bool("dispatch: cumulative_token_nums", cumulative_token_nums),
            "smooth_scales": _tensors.spec(smooth_scales, "smooth_scales"),
            "active_mask": _tensors.spec(active_mask, "active_mask")}
    *outputs, handle = _native.dispatch(group, args, tp, _tensors.is_torch(x), _tensors.poison_outputs)
    return DispatchResult(*outputs, handle)


def _combine_options(comm_quant, shared_expert_x, ori_x, const_alpha1, const_alpha2, const_v):
    return {"comm_quant": _quant(comm_quant, "comm_quant"),
            "shared_expert_x": _tensors.spec(shared_expert_x, "shared_expert_x"), "ori_x": _tensors.spec(ori_x, "ori_x"),
            "const_alpha1": _tensors.spec(const_alpha1, "const_alpha1"),
            "const_alpha2": _tensors.spec(const_alpha2, "const_alpha2"), "const_v": _tensors.spec(const_v, "const_v")}


def _check_combine_args(op, group, handle, tp):
    _check_groups(op, group, tp)
    _check_type(op, "handle", handle, _native.DispatchHandle, "the handle of this rank's dispatch result")


def combine(group, handle, expert_out, expert_scales, *, comm_quant=None, shared_expert_x=None, ori_x=None,
            const_alpha1=None, const_alpha2=None, const_v=None, tp=None):
    """[collective] Returns the expert outputs (rows of dispatch's expand_x, same order, x's dtype) to their
    tokens and sums them: x[t] = sum_k w[t, k] * out(t, k) + shared outputs + shared_expert_x, with
    expert_scales w (Bs, K) fp32. comm_quant="int8": int8 on the wire. Returns x (Bs, H); rows of inactive
    tokens are zero."""
    _check_combine_args("combine", group, handle, tp)
    return _native.combine(group, handle, {
        "expert_out": _tensors.spec(expert_out, "expert_out"), "expert_scales": _tensors.spec(expert_scales, "expert_scales"),
        "options": _combine_options(comm_quant, shared_expert_x, ori_x, const_alpha1, const_alpha2, const_v),
        "residual_x": None, "gamma": None, "norm_eps": 0.0}, tp, False, _tensors.is_torch(expert_out),
        _tensors.poison_outputs)


def combine_add_rms_norm(group, handle, expert_out, expert_scales, residual_x, gamma, *, norm_eps=1e-6,
                         shared_expert_x=None, ori_x=None, const_alpha1=None, const_alpha2=None, const_v=None,
                         tp=None):
    """[collective] combine, then x = sum + residual_x and y = RMSNorm(x) * gamma (bf16 only). residual_x
    (Bs, 1, H), gamma (H,); norm_eps finite and >= 0 (as a float32); ori_x and the const_* tensors as combine
    takes them (copy and const experts). Returns (y, rstd, x): y and x (Bs, 1, H), rstd (Bs, 1, 1) fp32."""
    _check_combine_args("combine_add_rms_norm", group, handle, tp)
    return _native.combine(group, handle, {
        "expert_out": _tensors.spec(expert_out, "expert_out"), "expert_scales": _tensors.spec(expert_scales, "expert_scales"),
        "options": _combine_options(None, shared_expert_x, ori_x, const_alpha1, const_alpha2, const_v),
        "residual_x": _tensors.spec(residual_x, "residual_x"), "gamma": _tensors.spec(gamma, "gamma"),
        "norm_eps": checked_real("combine_add_rms_norm: norm_eps", norm_eps)}, tp, True, _tensors.is_torch(expert_out),
        _tensors.poison_outputs)


def probe_reachable(group, wait=None):
    """[collective over the live ranks] One 0/1 entry per rank of the group: 1 for the ranks that all called
    probe_reachable within `wait` seconds (None: the group timeout) of each other. A wait is rounded up to
    whole milliseconds."""
    _check_groups("probe_reachable", group)
    return _native.probe_reachable(group, _whole_ms(wait))


def _whole_ms(wait):
    """probe_reachable's wait for the extension, which takes std::chrono::milliseconds (pybind11 truncates a
    timedelta to them) and reads 0 as the group timeout: whole milliseconds, rounded up, at least 1."""
    if wait is None:
        return datetime.timedelta(0)
    seconds = checked_real("probe_reachable: wait", wait)
    if not 0 < seconds <= 2**31 / 1000:
        raise InvalidArgumentError(f"probe_reachable: wait = {wait} must be a positive number of seconds up to 2^31 "
                                   "ms (or None: the group timeout)")
    # Counted in whole microseconds first (timedelta's own rounding), so that 0.007 s is 7 ms, not 8.
    microseconds = datetime.timedelta(seconds=seconds) // datetime.timedelta(microseconds=1)
    return datetime.timedelta(milliseconds=max(1, -(-microseconds // 1000)))


def barrier(group):
    """[collective] Returns once every rank of the group has called barrier; a rank missing past the group
    timeout raises moe_ep.TimeoutError naming it."""
    _check_groups("barrier", group)
    _native.barrier(group)


def buffer_reset(group, reachable=None, need_sync=True):
    """[collective over the reachable ranks] Clears this rank's window; with need_sync waits until every
    reachable rank has cleared its own. reachable: probe_reachable's mask (None: every rank)."""
    _check_groups("buffer_reset", group)
    reachable = [] if reachable is None else checked_mask("buffer_reset: reachable", reachable)
    _native.buffer_reset(group, reachable, checked_bool("buffer_reset: need_sync", need_sync))


