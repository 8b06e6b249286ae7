"""torch_npu's MoE distribute operators on CPU tensors: `import moe_ep.torch_npu as torch_npu`, and code
written for Ascend NPUs that calls them runs unchanged (of the npu namespace, set_device, current_device and
synchronize are here; the rest of torch_npu, device placement included, is not). Same names, parameter order,
keyword-only split, defaults, output tuples and output shapes as torch_npu (its op-plugin schema); each call runs
the CANN operator (aclnnMoeDistribute*, with Atlas A3's rules and error codes, or Atlas A2's fullmesh ones where
MOE_EP_SOC_NAME names an A2 chip) through moe_ep's C API, on the communicator whose name the group gives
(moe_ep.distributed.get_hccl_comm_name), and returns when the outputs are written.

Accepted with no effect, as on A3: expand_scales handed back to combine. Refused with an error naming
the value: performance_info (NPU wait times), comm_alg "hierarchy", y_dtype / x_dtype / scales_dtype
other than the dtypes the outputs and inputs have anyway, and anything the operator itself rejects.
combine_add_rms_norm runs the operator's second version, as torch_npu does: it takes elastic_info, ori_x,
the const-expert tensors and the special-expert counts as combine_v2 does.
"""

import math
import numbers
import re
import types

import torch

from . import _tensors
from ._moe_ep import cann as _cann
from .errors import (INT32_MAX, INVALID_CONFIG, INVALID_PARAM, InvalidArgumentError, checked_attrs, checked_int,
                     checked_name, checked_real)

# Test aid: fill every output with a byte pattern before the operator runs, so that an element the
# operator should write but does not shows up (torch_npu's outputs are uninitialised memory).
poison_outputs = False

# torch ScalarType numbers, as torch_npu's integer dtype arguments carry them.
_SCALAR_TYPE = {torch.int8: 1, torch.float16: 5, torch.float32: 6, torch.bfloat16: 15}


class _Npu(types.SimpleNamespace):
    """torch_npu.npu's device calls: moe_ep's virtual devices (one rank per device and process)."""

    @staticmethod
    def set_device(device):
        """device: an int, "npu:N", torch.device("npu", N) (torch >= 2.1, once the "npu" name is given), or "npu" /
        torch.device("npu") for the current device (device 0 on a thread that has none), as torch_npu takes them."""
        _cann.set_device(_device_index(device))

    @staticmethod
    def current_device():
        return max(_cann.current_device(), 0)

    @staticmethod
    def synchronize(device=None):
        """Operators return when done: nothing to wait for."""


npu = _Npu()

_NPU_DEVICE = re.compile(r"npu(?::([0-9]+))?")


def _device_index(device):
    """npu.set_device's argument as a device index. torch_npu parses a string with torch.device, which knows no
    "npu" type on torch < 2.1 (moe_ep's tests run 1.13): moe_ep reads "npu" and "npu:N" itself."""
    if isinstance(device, str):
        found = _NPU_DEVICE.fullmatch(device)
        if found is not None:
            index = found.group(1)
            return npu.current_device() if index is None else checked_int("npu.set_device: device index", int(index),
                                                                          0, INT32_MAX)
    elif isinstance(device, torch.device):
        if device.type == "npu":
            return npu.current_device() if device.index is None else device.index
    elif hasattr(device, "__index__"):  # an int (a bool is refused there)
        return checked_int("npu.set_device: device", device, 0, INT32_MAX)
    raise InvalidArgumentError(f"npu.set_device: device = {device!r} must be an int, 'npu:N', 'npu' (the current "
                               "device) or an npu torch.device")


# What dispatch and combine checked and sized for recent calls, by everything those checks read: a model
# calls them with the same attributes and shapes step after step, and the checks cost more Python than the
# rest of a call (about 5 of 8 us for a dispatch on the 2-core machine). Only calls whose integers are
# ints and whose main tensors are torch.Tensors take this path: equal keys then mean the same checks.
_prepared = {}
_PREPARED_MAX = 64
_INT_ONLY = {int}


def _cached(prepare, a, b, ints, *rest):
    """prepare() (the checks, then what the call hands the extension), remembered under the call's signature
    (its tensors a and b's shapes and dtype, its integers `ints`, and `rest`) when a and b are torch.Tensors and
    its integers ints."""
    if not (type(a) is torch.Tensor and type(b) is torch.Tensor and {*map(type, ints)} == _INT_ONLY):
        return prepare()
    # Each argument's type too: True == 1 == 1.0 (and they hash alike), yet only the int names a dtype.
    key = (ints, a.shape, a.dtype, b.shape, *rest, *map(type, rest))
    try:
        hit = _prepared.get(key)
    except TypeError:  # an unhashable argument: the checks below name it
        return prepare()
    if hit is None:
        hit = prepare()
        if len(_prepared) >= _PREPARED_MAX:
            _prepared.clear()
        _prepared[key] = hit
    return hit


def _fail(rule, code=INVALID_PARAM):
    raise InvalidArgumentError(rule, code)


_CHECK_FIRST_BYTES = 256 << 20
_BYTES = {"bf16": 2, "fp16": 2, "float32": 4, "int8": 1, "int32": 4, "int64": 8, "bool": 1}


def _large(outputs):
    """Whether the outputs, sized from attributes and shapes the operator has not checked yet, pass
    _CHECK_FIRST_BYTES: the extension then checks the call on stand-ins before it makes them, so that a value out of
    range (a world size, an H of 2^46 from an expanded tensor) is refused by its rule, not by the memory."""
    return sum(_BYTES[dtype] * math.prod(shape) for dtype, shape in outputs.values()) > _CHECK_FIRST_BYTES


def _output(shape, dtype):
    """An output as the extension makes it: uninitialised, as torch_npu's are."""
    return _tensors._TORCH[dtype], shape


def _check_dtype_arg(op, name, value, expected):
    """y_dtype / x_dtype / scales_dtype: accepted when they name the dtype the tensor has anyway, as a torch dtype or
    its int (not a bool or a float that equals it: torch_npu's argument parser refuses those for int?)."""
    if value is None:
        return
    ok = value == expected if isinstance(value, torch.dtype) else \
        isinstance(value, numbers.Integral) and not isinstance(value, bool) and value == _SCALAR_TYPE.get(expected)
    if not ok:
        _fail(f"{op}: {name} = {value} is not supported by moe_ep (only the dtype {expected} this call "
              "uses anyway, or None; the other dtypes are for Ascend 950's quantized formats)")


def _attrs(op, group_ep, group_tp, comm_alg, **ints):
    """The operator's attributes: its group names and comm_alg, and its integer ones: ints in [0, 2^31) (not
    bools, as torch_npu's argument parser; the operators bound them further), so that outputs can be sized."""
    return {"group_ep": checked_name(f"{op}: group_ep", group_ep, "the name of an HCCL communicator"),
            "group_tp": checked_name(f"{op}: group_tp", group_tp, "the name of an HCCL communicator, or \"\""),
            "comm_alg": checked_name(f"{op}: comm_alg", comm_alg, "an algorithm's name, or \"\""),
            **checked_attrs(op, ints)}


def _checked_ints(attrs, names):
    """The attributes `names` (space-separated) as _attrs checked them: Python ints, which the sizes below need (a
    numpy int32 would wrap in their products)."""
    return (attrs[name] for name in names.split())


def _global_bs(global_bs, bs, ep_world_size):
    """What torch_npu hands the operator: global_bs, or Bs * ep_world_size for 0."""
    return global_bs if global_bs else bs * ep_world_size


def _check_common(op, ep_world_size, ep_rank_id, shared_expert_num, shared_expert_rank_num, comm_alg,
                  performance_info):
    if performance_info is not None:
        _fail(f"{op}: performance_info is not supported by moe_ep (it accumulates NPU-side wait times); pass None")
    if comm_alg == "hierarchy":
        _fail(f"{op}: comm_alg = 'hierarchy' (the two-level algorithm across servers) is not supported by moe_ep; "
              "use '' (the default), 'fullmesh_v1' or 'fullmesh_v2' (Atlas A3), 'fullmesh' or '0' (Atlas A2, where '' "
              "follows the HCCL_INTRA_* variables)",
              INVALID_CONFIG)
    # The operators' range rules: the codes the library gives them (INVALID_CONFIG).
    if not 0 <= ep_rank_id < ep_world_size:
        _fail(f"{op}: ep_rank_id = {ep_rank_id} must be in [0, ep_world_size = {ep_world_size})", INVALID_CONFIG)
    if not 0 <= shared_expert_rank_num < ep_world_size:
        _fail(f"{op}: shared_expert_rank_num = {shared_expert_rank_num} must be in [0, ep_world_size = {ep_world_size})",
              INVALID_CONFIG)
    default_or_none = (shared_expert_num, shared_expert_rank_num) in ((1, 0), (0, 0))
    if not default_or_none and not (shared_expert_num > 0 and shared_expert_rank_num // shared_expert_num > 0
                                    and shared_expert_rank_num % shared_expert_num == 0):
        _fail(f"{op}: shared_expert_num = {shared_expert_num} with shared_expert_rank_num = {shared_expert_rank_num}: "
              "shared_expert_rank_num must be a positive multiple of shared_expert_num (or both 0, or 1 and 0)",
              INVALID_CONFIG)


def _check_unread(op, name, t):
    """A tensor callers hand back that A3 does not read (dispatch's expand_scales): a tensor or None, as torch_npu's
    argument parser takes it."""
    if t is not None and not isinstance(t, torch.Tensor):
        _fail(f"{op}: {name} must be a torch.Tensor or None, not {type(t).__name__}")


def _check_2d(op, **tensors):
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            _fail(f"{op}: {name} must be a torch.Tensor, not {type(t).__name__}", 161001 if t is None else INVALID_PARAM)
        if t.dim() != 2:
            _fail(f"{op}: {name} has shape {tuple(t.shape)}; it must be 2-D", INVALID_CONFIG)


def _receive_rows(bs, k, ep_world_size, ep_rank_id, moe_expert_num, expert_shard_type, shared_expert_num,
                  shared_expert_rank_num, global_bs, elastic):
    """(A, local experts): the rows a rank may receive and its expert count, as torch_npu sizes them."""
    global_bs_real = _global_bs(global_bs, bs, ep_world_size)
    moe_ranks = ep_world_size - shared_expert_rank_num
    moe_local = moe_expert_num // moe_ranks if moe_ranks > 0 else 0
    max_bs = global_bs_real // ep_world_size
    per_shared = shared_expert_rank_num // shared_expert_num if shared_expert_num else 0
    shared_groups = math.ceil(ep_world_size / per_shared) if per_shared else 0
    shared_front = expert_shard_type == 0
    if shared_front and ep_rank_id < shared_expert_rank_num:
        local, rows = 1, max_bs * shared_groups
    else:
        local, rows = moe_local, global_bs_real * min(moe_local, k)
    if shared_front and elastic:
        # Elastic scale-down may move this rank's role: size for the larger one.
        if (shared_expert_num, shared_expert_rank_num) in ((1, 0), (0, 0)):
            local = max(local, moe_local)
            rows = global_bs_real * min(local, k)
        else:
            rows = max(max_bs * shared_groups, global_bs_real * min(moe_local, k))
            local = max(local, moe_local)
    return rows, local, global_bs_real


def npu_moe_distribute_dispatch_v2(x, expert_ids, group_ep, ep_world_size, ep_rank_id, moe_expert_num, *,
                                   scales=None, x_active_mask=None, expert_scales=None, elastic_info=None,
                                   performance_info=None, group_tp="", tp_world_size=0, tp_rank_id=0,
                                   expert_shard_type=0, shared_expert_num=1, shared_expert_rank_num=0, quant_mode=0,
                                   global_bs=0, expert_token_nums_type=1, comm_alg="", zero_expert_num=0,
                                   copy_expert_num=0, const_expert_num=0, y_dtype=None, x_dtype=None,
                                   scales_dtype=None):
    """Sends each token of x (Bs, H) to its top-K experts (expert_ids (Bs, K) int32) and to the shared
    experts. Returns (expand_x, dynamic_scales, assist_info_for_combine, expert_token_nums, ep_recv_counts,
    tp_recv_counts, expand_scales)."""

    def prepare():
        return _prepare_dispatch(x, expert_ids, group_ep, ep_world_size, ep_rank_id, moe_expert_num, expert_scales,
                                 elastic_info, performance_info, group_tp, tp_world_size, tp_rank_id, expert_shard_type,
                                 shared_expert_num, shared_expert_rank_num, quant_mode, global_bs,
                                 expert_token_nums_type, comm_alg, zero_expert_num, copy_expert_num, const_expert_num,
                                 y_dtype, x_dtype, scales_dtype)

    ints = (ep_world_size, ep_rank_id, moe_expert_num, tp_world_size, tp_rank_id, expert_shard_type, shared_expert_num,
            shared_expert_rank_num, quant_mode, global_bs, expert_token_nums_type, zero_expert_num, copy_expert_num,
            const_expert_num)
    outputs, attrs, check_first = _cached(prepare, x, expert_ids, ints, "dispatch", group_ep, group_tp, comm_alg, y_dtype, x_dtype,
                             scales_dtype, expert_scales is None, elastic_info is None, performance_info is None)
    inputs = {"x": x, "expert_ids": expert_ids, "scales": scales, "x_active_mask": x_active_mask,
              "expert_scales": expert_scales, "elastic_info": elastic_info}
    return _cann.dispatch(_tensors.specs(inputs), outputs, attrs, poison_outputs, check_first)


def _prepare_dispatch(x, expert_ids, group_ep, ep_world_size, ep_rank_id, moe_expert_num, expert_scales, elastic_info,
                      performance_info, group_tp, tp_world_size, tp_rank_id, expert_shard_type, shared_expert_num,
                      shared_expert_rank_num, quant_mode, global_bs, expert_token_nums_type, comm_alg, zero_expert_num,
                      copy_expert_num, const_expert_num, y_dtype, x_dtype, scales_dtype):
    """Dispatch's checks; then its outputs (dtype name, shape) and attributes for the extension."""
    op = "npu_moe_distribute_dispatch_v2"
    attrs = _attrs(op, group_ep, group_tp, comm_alg, ep_world_size=ep_world_size, ep_rank_id=ep_rank_id,
                   moe_expert_num=moe_expert_num, tp_world_size=tp_world_size, tp_rank_id=tp_rank_id,
                   expert_shard_type=expert_shard_type, shared_expert_num=shared_expert_num,
                   shared_expert_rank_num=shared_expert_rank_num, quant_mode=quant_mode, global_bs=global_bs,
                   expert_token_nums_type=expert_token_nums_type, zero_expert_num=zero_expert_num,
                   copy_expert_num=copy_expert_num, const_expert_num=const_expert_num)
    (ep_world_size, ep_rank_id, moe_expert_num, tp_world_size, expert_shard_type, shared_expert_num,
     shared_expert_rank_num, quant_mode, global_bs, expert_token_nums_type) = _checked_ints(
        attrs, "ep_world_size ep_rank_id moe_expert_num tp_world_size expert_shard_type shared_expert_num "
        "shared_expert_rank_num quant_mode global_bs expert_token_nums_type")
    _check_2d(op, x=x, expert_ids=expert_ids)
    if x.dtype not in _tensors._TORCH:  # no output of its dtype can be made: refused as the operator refuses float32
        _fail(f"{op}: parameter 'x' = {x.dtype} violates rule: dtype must be bf16 or fp16")
    _check_common(op, ep_world_size, ep_rank_id, shared_expert_num, shared_expert_rank_num, comm_alg,
                  performance_info)
    if expert_token_nums_type not in (0, 1):
        _fail(f"{op}: expert_token_nums_type = {expert_token_nums_type} must be 0 (cumulative) or 1 (counts)",
              INVALID_CONFIG)
    out_dtype = x.dtype if quant_mode == 0 else torch.int8
    _check_dtype_arg(op, "y_dtype", y_dtype, out_dtype)
    _check_dtype_arg(op, "x_dtype", x_dtype, x.dtype)
    _check_dtype_arg(op, "scales_dtype", scales_dtype, torch.float32)
    (bs, h), k = x.shape, expert_ids.shape[1]
    rows, local, global_bs_real = _receive_rows(bs, k, ep_world_size, ep_rank_id, moe_expert_num, expert_shard_type,
                                                shared_expert_num, shared_expert_rank_num, global_bs,
                                                elastic_info is not None)
    tp = tp_world_size
    counts = ep_world_size * local * (tp if tp == 2 else 1)
    if expert_scales is not None:  # torch_npu sizes A2's layout whenever expert_scales is given (A3 ignores the rest)
        counts = ep_world_size * local + global_bs_real * 2 * k * (ep_world_size // 8)
    outputs = {  # made in this order, the order of the result
        "expand_x": _output((max(rows, rows * tp), h), out_dtype),
        "dynamic_scales": _output((rows * tp if tp else rows,), torch.float32),
        "assist_info_for_combine": _output((max(bs * k, rows * 128),), torch.int32),
        "expert_token_nums": _output((local,), torch.int64),
        "ep_recv_counts": _output((counts,), torch.int32),
        "tp_recv_counts": _output((tp,), torch.int32),
        "expand_scales": _output((rows,), torch.float32),
    }
    return outputs, {**attrs, "global_bs": global_bs_real}, _large(outputs)


def npu_moe_distribute_combine_v2(expand_x, expert_ids, assist_info_for_combine, ep_send_counts, expert_scales,
                                  group_ep, ep_world_size, ep_rank_id, moe_expert_num, *, tp_send_counts=None,
                                  x_active_mask=None, expand_scales=None, shared_expert_x=None, elastic_info=None,
                                  ori_x=None, const_expert_alpha_1=None, const_expert_alpha_2=None,
                                  const_expert_v=None, performance_info=None, group_tp="", tp_world_size=0,
                                  tp_rank_id=0, expert_shard_type=0, shared_expert_num=1, shared_expert_rank_num=0,
                                  global_bs=0, comm_quant_mode=0, comm_alg="", zero_expert_num=0, copy_expert_num=0,
                                  const_expert_num=0):
    """Returns the expert outputs expand_x (rows in dispatch's order) to their tokens and sums them with the
    weights expert_scales (Bs, K) fp32. Returns x (Bs, H) in expand_x's dtype."""
    _check_unread("npu_moe_distribute_combine_v2", "expand_scales", expand_scales)  # handed back; A3 does not read it

    def prepare():
        return _prepare_combine(expand_x, expert_ids, group_ep, ep_world_size, ep_rank_id, moe_expert_num,
                                performance_info, group_tp, tp_world_size, tp_rank_id, expert_shard_type,
                                shared_expert_num, shared_expert_rank_num, global_bs, comm_quant_mode, comm_alg,
                                zero_expert_num, copy_expert_num, const_expert_num)

    ints = (ep_world_size, ep_rank_id, moe_expert_num, tp_world_size, tp_rank_id, expert_shard_type, shared_expert_num,
            shared_expert_rank_num, global_bs, comm_quant_mode, zero_expert_num, copy_expert_num, const_expert_num)
    outputs, attrs = _cached(prepare, expand_x, expert_ids, ints, "combine", group_ep, group_tp, comm_alg,
                             performance_info is None)
    inputs = {"expand_x": expand_x, "expert_ids": expert_ids, "assist_info_for_combine": assist_info_for_combine,
              "ep_send_counts": ep_send_counts, "expert_scales": expert_scales, "tp_send_counts": tp_send_counts,
              "x_active_mask": x_active_mask, "shared_expert_x": shared_expert_x, "elastic_info": elastic_info,
              "ori_x": ori_x, "const_expert_alpha_1": const_expert_alpha_1,
              "const_expert_alpha_2": const_expert_alpha_2, "const_expert_v": const_expert_v}
    return _cann.combine(_tensors.specs(inputs), outputs, attrs, poison_outputs, _large(outputs))[0]


def _prepare_combine(expand_x, expert_ids, group_ep, ep_world_size, ep_rank_id, moe_expert_num, performance_info,
                     group_tp, tp_world_size, tp_rank_id, expert_shard_type, shared_expert_num, shared_expert_rank_num,
                     global_bs, comm_quant_mode, comm_alg, zero_expert_num, copy_expert_num, const_expert_num):
    """Combine's checks; then its output (dtype name, shape) and attributes for the extension."""
    op = "npu_moe_distribute_combine_v2"
    attrs = _attrs(op, group_ep, group_tp, comm_alg, ep_world_size=ep_world_size, ep_rank_id=ep_rank_id,
                   moe_expert_num=moe_expert_num, tp_world_size=tp_world_size, tp_rank_id=tp_rank_id,
                   expert_shard_type=expert_shard_type, shared_expert_num=shared_expert_num,
                   shared_expert_rank_num=shared_expert_rank_num, global_bs=global_bs,
                   comm_quant_mode=comm_quant_mode, zero_expert_num=zero_expert_num, copy_expert_num=copy_expert_num,
                   const_expert_num=const_expert_num)
    ep_world_size, ep_rank_id, shared_expert_num, shared_expert_rank_num, global_bs = _checked_ints(
        attrs, "ep_world_size ep_rank_id shared_expert_num shared_expert_rank_num global_bs")
    _check_2d(op, expand_x=expand_x, expert_ids=expert_ids)
    _check_common(op, ep_world_size, ep_rank_id, shared_expert_num, shared_expert_rank_num, comm_alg,
                  performance_info)
    if expand_x.dtype not in (torch.bfloat16, torch.float16):
        _fail(f"{op}: expand_x has dtype {expand_x.dtype}; moe_ep takes bf16 or fp16 (int32-packed int4 is A2's)")
    global_bs_real = _global_bs(global_bs, expert_ids.shape[0], ep_world_size)
    out = _output((expert_ids.shape[0], expand_x.shape[1]), expand_x.dtype)
    return {"out": out}, {**attrs, "global_bs": global_bs_real}


def npu_moe_distribute_combine_add_rms_norm(expand_x, expert_ids, expand_idx, ep_send_counts, expert_scales,
                                            residual_x, gamma, group_ep, ep_world_size, ep_rank_id, moe_expert_num, *,
                                            tp_send_counts=None, x_active_mask=None, activation_scale=None,
                                            weight_scale=None, group_list=None, expand_scales=None,
                                            shared_expert_x=None, elastic_info=None, ori_x=None,
                                            const_expert_alpha_1=None, const_expert_alpha_2=None,
                                            const_expert_v=None, group_tp="", tp_world_size=0, tp_rank_id=0,
                                            expert_shard_type=0, shared_expert_num=1, shared_expert_rank_num=0,
                                            global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                                            comm_alg="", norm_eps=1e-06, zero_expert_num=0, copy_expert_num=0,
                                            const_expert_num=0):
    """Combine, then x = sum + residual_x and y = RMSNorm(x) * gamma (bf16). Returns (y, rstd, x): y and x
    (Bs, 1, H), rstd (Bs, 1, 1) fp32. Runs aclnnMoeDistributeCombineAddRmsNormV2, as torch_npu does: elastic_info
    and the zero / copy / const experts work as in combine_v2."""
    op = "npu_moe_distribute_combine_add_rms_norm"
    _check_unread(op, "expand_scales", expand_scales)  # as in combine_v2: A3 does not read it
    attrs = _attrs(op, group_ep, group_tp, comm_alg, ep_world_size=ep_world_size, ep_rank_id=ep_rank_id,
                   moe_expert_num=moe_expert_num, tp_world_size=tp_world_size, tp_rank_id=tp_rank_id,
                   expert_shard_type=expert_shard_type, shared_expert_num=shared_expert_num,
                   shared_expert_rank_num=shared_expert_rank_num, global_bs=global_bs, out_dtype=out_dtype,
                   comm_quant_mode=comm_quant_mode, group_list_type=group_list_type, zero_expert_num=zero_expert_num,
                   copy_expert_num=copy_expert_num, const_expert_num=const_expert_num)
    norm_eps = checked_real(f"{op}: norm_eps", norm_eps)
    ep_world_size, ep_rank_id, shared_expert_num, shared_expert_rank_num, global_bs = _checked_ints(
        attrs, "ep_world_size ep_rank_id shared_expert_num shared_expert_rank_num global_bs")
    _check_2d(op, expand_x=expand_x, expert_ids=expert_ids)
    _check_common(op, ep_world_size, ep_rank_id, shared_expert_num, shared_expert_rank_num, comm_alg, None)
    if expand_x.dtype not in (torch.bfloat16, torch.float16):
        _fail(f"{op}: expand_x has dtype {expand_x.dtype}; the operator takes bf16 (and fp16, which it then refuses "
              "by its own rule)")
    n, h = expert_ids.shape[0], expand_x.shape[1]
    outputs = {"y": _output((n, 1, h), expand_x.dtype), "rstd": _output((n, 1, 1), torch.float32),
               "x": _output((n, 1, h), expand_x.dtype)}
    inputs = {"expand_x": expand_x, "expert_ids": expert_ids, "expand_idx": expand_idx,
              "ep_send_counts": ep_send_counts, "expert_scales": expert_scales, "residual_x": residual_x,
              "gamma": gamma, "tp_send_counts": tp_send_counts, "x_active_mask": x_active_mask,
              "activation_scale": activation_scale, "weight_scale": weight_scale, "group_list": group_list,
              "shared_expert_x": shared_expert_x, "elastic_info": elastic_info, "ori_x": ori_x,
              "const_expert_alpha_1": const_expert_alpha_1, "const_expert_alpha_2": const_expert_alpha_2,
              "const_expert_v": const_expert_v}
    global_bs_real = _global_bs(global_bs, n, ep_world_size)
    return _cann.combine_add_rms_norm(_tensors.specs(inputs), outputs,
                                      {**attrs, "global_bs": global_bs_real, "norm_eps": norm_eps}, poison_outputs,
                                      _large(outputs))


def npu_moe_distribute_buffer_reset(elastic_info, group_ep, ep_world_size, need_sync=1):
    """The BufferReset operator (aclnnMoeDistributeBufferReset; torch_npu has no binding for it): clears
    this rank's window of the EP group; elastic_info is the int32 0/1 mask (ep_world_size,) of the ranks
    that take part; need_sync 1 waits until each of them has cleared its own."""
    op = "npu_moe_distribute_buffer_reset"
    ints = checked_attrs(op, {"ep_world_size": ep_world_size, "need_sync": need_sync})
    tensors = {"elastic_info": _tensors.spec(elastic_info, "elastic_info")}
    group_ep = checked_name(f"{op}: group_ep", group_ep, "the name of an HCCL communicator")
    _cann.buffer_reset(tensors, {"group_ep": group_ep, **ints})
