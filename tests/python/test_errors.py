# Bad input to moe_ep.torch_npu raises a moe_ep.Error subclass with the CANN code and a message naming parameter, value
# and rule; a peer that never comes gives moe_ep.TimeoutError naming it; nothing crashes the interpreter.
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import moe_ep
import moe_ep.distributed as md
import moe_ep.torch_npu as torch_npu
from bitwise import assert_bits, assert_prefix
from moe_ep import errors
from thread_ranks import on_threads
from torch_golden import golden_combine, golden_dispatch


@pytest.fixture(scope="module")
def names():
    torch_npu.npu.set_device(0)
    return md.thread_comm_names(2)


@pytest.fixture(scope="module")
def name(names):
    return names[0]


def good(name, **change):
    args = dict(x=torch.zeros(4, 1024, dtype=torch.bfloat16), expert_ids=torch.tensor([[0, 1]] * 4, dtype=torch.int32),
                group_ep=name, ep_world_size=2, ep_rank_id=0, moe_expert_num=4)
    args.update(change)
    return args


BAD = {
    "hidden_out_of_range": (dict(x=torch.zeros(4, 32, dtype=torch.bfloat16)), errors.INVALID_CONFIG, "H (x.dim1)"),
    "x_float32": (dict(x=torch.zeros(4, 1024)), errors.INVALID_PARAM, "'x'"),
    "x_float64": (dict(x=torch.zeros(4, 1024, dtype=torch.float64)), errors.INVALID_PARAM,
                  "parameter 'x' = torch.float64 violates rule: dtype must be bf16 or fp16"),
    "x_uint8": (dict(x=torch.zeros(4, 1024, dtype=torch.uint8)), errors.INVALID_PARAM, "'x' = torch.uint8"),
    "ids_int64": (dict(expert_ids=torch.zeros(4, 2, dtype=torch.int64)), errors.INVALID_PARAM, "expertIds"),
    "expert_out_of_range": (dict(expert_ids=torch.tensor([[0, 9]] * 4, dtype=torch.int32)), errors.INVALID_PARAM,
                            "expertIds"),
    "mask_not_a_prefix": (dict(x_active_mask=torch.tensor([True, False, True, False])), errors.INVALID_PARAM,
                          "true at [2] after false at [1]"),
    "rank_out_of_range": (dict(ep_rank_id=2), errors.INVALID_CONFIG, "ep_rank_id = 2"),
    "unknown_group": (dict(group_ep="no_such_group"), errors.INVALID_CONFIG, "no_such_group"),
    "quant_mode_1": (dict(quant_mode=1), errors.INVALID_CONFIG, "quantMode"),
    "hierarchy": (dict(comm_alg="hierarchy"), errors.INVALID_CONFIG, "hierarchy"),
    "performance_info": (dict(performance_info=torch.zeros(2, dtype=torch.int64)), errors.INVALID_PARAM,
                         "performance_info"),
    "y_dtype_fp8": (dict(y_dtype=24), errors.INVALID_PARAM, "y_dtype = 24"),
    # int8's number is 1: a bool or a float equal to it is no dtype, as torch_npu's parser says.
    "y_dtype_bool": (dict(quant_mode=2, y_dtype=True), errors.INVALID_PARAM, "y_dtype = True"),
    "y_dtype_float": (dict(quant_mode=2, y_dtype=1.0), errors.INVALID_PARAM, "y_dtype = 1.0"),
    "x_not_a_tensor": (dict(x=[[0.0] * 1024] * 4), errors.INVALID_PARAM, "x must be a torch.Tensor"),
    "x_1d": (dict(x=torch.zeros(1024, dtype=torch.bfloat16)), errors.INVALID_CONFIG, "it must be 2-D"),
    "token_nums_type_2": (dict(expert_token_nums_type=2), errors.INVALID_CONFIG, "expert_token_nums_type = 2"),
    "negative_moe_expert_num": (dict(moe_expert_num=-8), errors.INVALID_CONFIG, "moe_expert_num = -8"),
    "huge_global_bs": (dict(global_bs=2**64), errors.INVALID_PARAM, "global_bs = 18446744073709551616"),
    "group_name_not_a_string": (dict(group_ep=123), errors.INVALID_PARAM, "group_ep = 123 must be a str"),
    "group_name_none": (dict(group_ep=None), errors.INVALID_PARAM, "group_ep = None must be a str"),
    "group_tp_not_a_string": (dict(group_tp=b"tp"), errors.INVALID_PARAM, "group_tp = b'tp' must be a str"),
    "comm_alg_none": (dict(comm_alg=None), errors.INVALID_PARAM, "comm_alg = None must be a str"),
    "world_size_not_an_int": (dict(ep_world_size="2"), errors.INVALID_PARAM, "ep_world_size = '2' must be an int"),
    "mask_negative_stride": (dict(x_active_mask=np.ones(4, dtype=bool)[::-1]), errors.INVALID_PARAM,
                             "x_active_mask: aclCreateTensor"),
    # A tensor made from a buffer at an odd offset: its int32s are not where an int32 may be read.
    "ids_misaligned": (dict(expert_ids=torch.frombuffer(bytearray(33), dtype=torch.int32, count=8, offset=1)
                            .reshape(4, 2)), errors.INVALID_CONFIG, "a multiple of its element size (4 bytes)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_dispatch_input_raises_invalid_argument(name, case):
    change, code, named = BAD[case]
    with pytest.raises(moe_ep.InvalidArgumentError) as caught:
        torch_npu.npu_moe_distribute_dispatch_v2(**good(name, **change))
    assert caught.value.code == code, str(caught.value)
    assert named in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_remembered_checks_refuse_every_call_they_would_refuse():
    # dispatch remembers what its checks found for a call's attributes and shapes (torch_npu._prepared): the same
    # call again skips them; one that differs in any value, or in an integer's type, is checked anew.
    args = good("no_such_group")  # passes the Python checks, fails in the operator's
    for _ in range(2):
        with pytest.raises(moe_ep.InvalidArgumentError, match="no_such_group"):
            torch_npu.npu_moe_distribute_dispatch_v2(**args)
    for change, named in ((dict(ep_world_size=2.0), "ep_world_size = 2.0 must be an int"),
                          (dict(ep_rank_id=2), "ep_rank_id = 2"),
                          # True == 1 (and hashes alike), yet a bool is no int: refused, not taken from the 1 above.
                          (dict(expert_token_nums_type=True), "expert_token_nums_type = True must be an int, not a "
                                                              "bool"),
                          (dict(x=torch.zeros(1024, dtype=torch.bfloat16)), "it must be 2-D"),
                          (dict(x=torch.nn.Parameter(torch.zeros(4, 1024, dtype=torch.bfloat16))), "no_such_group"),
                          (dict(y_dtype=[15]), "y_dtype = \\[15\\]"),
                          # the same for a dtype argument: an int 1 remembered does not let the equal True or 1.0 by
                          (dict(quant_mode=2, y_dtype=1), "no_such_group"),
                          (dict(quant_mode=2, y_dtype=True), "y_dtype = True"),
                          (dict(quant_mode=2, y_dtype=1.0), "y_dtype = 1.0"),
                          (dict(x_dtype=15), "no_such_group"),
                          (dict(x_dtype=15.0), "x_dtype = 15.0")):
        with pytest.raises(moe_ep.InvalidArgumentError, match=named):
            torch_npu.npu_moe_distribute_dispatch_v2(**{**args, **change})
    for bs in range(1, 2 * torch_npu._PREPARED_MAX):  # bounded
        with pytest.raises(moe_ep.InvalidArgumentError, match="no_such_group"):
            torch_npu.npu_moe_distribute_dispatch_v2(**good("no_such_group", x=torch.zeros(bs, 1024, dtype=torch.bfloat16),
                                                            expert_ids=torch.zeros(bs, 2, dtype=torch.int32)))
        assert len(torch_npu._prepared) <= torch_npu._PREPARED_MAX


def test_combine_rejects_int32_expand_x(name):
    with pytest.raises(moe_ep.InvalidArgumentError, match="expand_x has dtype torch.int32"):
        torch_npu.npu_moe_distribute_combine_v2(
            torch.zeros(8, 1024, dtype=torch.int32), torch.zeros(4, 2, dtype=torch.int32), torch.zeros(8, dtype=torch.int32),
            torch.zeros(4, dtype=torch.int32), torch.zeros(4, 2), name, 2, 0, 4)


@pytest.mark.parametrize("op", ["combine_v2", "combine_add_rms_norm"])
def test_a_combine_output_sized_past_the_memory_is_refused_by_its_rule(name, op):
    # An expanded tensor costs no memory, and its H of 2^40 would size an output of 2^44 bytes: the call is refused
    # by H's rule (561002) before the output is made, not by the memory (and not after poisoning it).
    huge = torch.zeros(1, 1, dtype=torch.bfloat16).expand(8, 2**40)
    ids, assist, counts = torch.zeros(4, 2, dtype=torch.int32), torch.zeros(8, dtype=torch.int32), torch.zeros(
        4, dtype=torch.int32)
    torch_npu.poison_outputs = True
    try:
        with pytest.raises(moe_ep.InvalidArgumentError, match=r"H \(expandX.dim1\)") as caught:
            if op == "combine_v2":
                torch_npu.npu_moe_distribute_combine_v2(huge, ids, assist, counts, torch.zeros(4, 2), name, 2, 0, 4)
            else:
                torch_npu.npu_moe_distribute_combine_add_rms_norm(
                    huge, ids, assist, counts, torch.zeros(4, 2), huge[:4].unsqueeze(1), huge[0], name, 2, 0, 4)
    finally:
        torch_npu.poison_outputs = False
    assert caught.value.code == errors.INVALID_CONFIG, str(caught.value)


def test_combines_refuse_an_expand_scales_that_is_no_tensor(name):
    # Not read on A3, yet typed as torch_npu's parser types it: a tensor or None.
    args = (torch.zeros(8, 1024, dtype=torch.bfloat16), torch.zeros(4, 2, dtype=torch.int32),
            torch.zeros(8, dtype=torch.int32), torch.zeros(4, dtype=torch.int32), torch.zeros(4, 2), name, 2, 0, 4)
    with pytest.raises(moe_ep.InvalidArgumentError, match="expand_scales must be a torch.Tensor or None, not list"):
        torch_npu.npu_moe_distribute_combine_v2(*args, expand_scales=[1.0])
    with pytest.raises(moe_ep.InvalidArgumentError, match="expand_scales must be a torch.Tensor or None, not str"):
        torch_npu.npu_moe_distribute_combine_add_rms_norm(
            *args[:5], torch.zeros(4, 1, 1024, dtype=torch.bfloat16), torch.ones(1024, dtype=torch.bfloat16), *args[5:],
            expand_scales="no")


def test_add_rms_norm_const_experts_need_ori_x(name):
    with pytest.raises(moe_ep.InvalidArgumentError, match="oriX.*required when constExpertNum > 0"):
        torch_npu.npu_moe_distribute_combine_add_rms_norm(
            torch.zeros(8, 1024, dtype=torch.bfloat16), torch.zeros(4, 2, dtype=torch.int32),
            torch.zeros(2048, dtype=torch.int32), torch.zeros(4, dtype=torch.int32), torch.zeros(4, 2),
            torch.zeros(4, 1, 1024, dtype=torch.bfloat16), torch.zeros(1024, dtype=torch.bfloat16), name, 2, 0, 4,
            const_expert_num=1)


# Every integer attribute of dispatch: True is refused as torch_npu's argument parser refuses a bool for an int
# (Python's True would otherwise count as 1, a valid value for each of them).
DISPATCH_INTS = ("ep_world_size", "ep_rank_id", "moe_expert_num", "tp_world_size", "tp_rank_id", "expert_shard_type",
                 "shared_expert_num", "shared_expert_rank_num", "quant_mode", "global_bs", "expert_token_nums_type",
                 "zero_expert_num", "copy_expert_num", "const_expert_num")


@pytest.mark.parametrize("attr", DISPATCH_INTS)
def test_a_bool_is_no_integer_attribute(attr):
    with pytest.raises(moe_ep.InvalidArgumentError, match=f"npu_moe_distribute_dispatch_v2: {attr} = True must be an "
                                                          "int, not a bool") as caught:
        torch_npu.npu_moe_distribute_dispatch_v2(**good("no_such_group", **{attr: True}))
    assert caught.value.code == errors.INVALID_PARAM, str(caught.value)


def test_a_group_name_holding_nul_is_refused_not_cut_short(name):
    # C would read the name up to the NUL: the communicator `name` itself, which exists.
    with pytest.raises(moe_ep.InvalidArgumentError, match=r"group_ep = '.*\\x00x' must be a str without NUL"):
        torch_npu.npu_moe_distribute_dispatch_v2(**good(name, group_ep=name + "\0x"))
    with pytest.raises(moe_ep.InvalidArgumentError, match=r"buffer_reset: group_ep = '.*\\x00x' must be a str"):
        torch_npu.npu_moe_distribute_buffer_reset(torch.ones(2, dtype=torch.int32), name + "\0x", 2)


def test_the_extension_names_what_an_argument_must_be(name):
    # Past the Python front end's checks (a caller of the extension itself): the value and what it must be.
    from moe_ep import _moe_ep, _tensors
    elastic = {"elastic_info": _tensors.spec(torch.ones(16, dtype=torch.int32), "elastic_info")}
    with pytest.raises(moe_ep.InvalidArgumentError,
                       match=r"buffer_reset: ep_world_size = '16' must be an int in \[-2147483648, 2147483647\]"):
        _moe_ep.cann.buffer_reset(elastic, {"group_ep": name, "ep_world_size": "16", "need_sync": 1})
    with pytest.raises(moe_ep.InvalidArgumentError, match=r"buffer_reset: group_ep = 7 must be a str"):
        _moe_ep.cann.buffer_reset(elastic, {"group_ep": 7, "ep_world_size": 16, "need_sync": 1})


def test_buffer_reset_need_sync_is_an_int_not_a_bool():
    with pytest.raises(moe_ep.InvalidArgumentError, match="need_sync = True must be an int, not a bool"):
        torch_npu.npu_moe_distribute_buffer_reset(torch.ones(16, dtype=torch.int32), "no_such_group", 16,
                                                  need_sync=True)


def test_a_sparse_tensor_is_refused_naming_it():
    with pytest.raises(moe_ep.InvalidArgumentError, match="x has layout torch.sparse_coo; moe_ep takes dense tensors"):
        torch_npu.npu_moe_distribute_dispatch_v2(**good("no_such_group", x=torch.zeros(4, 1024).to(torch.bfloat16)
                                                        .to_sparse()))


@pytest.mark.parametrize("norm_eps", ["x", None, True])
def test_add_rms_norm_eps_must_be_a_real_number(norm_eps):
    with pytest.raises(moe_ep.InvalidArgumentError, match=f"npu_moe_distribute_combine_add_rms_norm: norm_eps = "
                                                          f"{norm_eps!r} must be a real number"):
        torch_npu.npu_moe_distribute_combine_add_rms_norm(
            torch.zeros(8, 1024, dtype=torch.bfloat16), torch.zeros(4, 2, dtype=torch.int32),
            torch.zeros(2048, dtype=torch.int32), torch.zeros(4, dtype=torch.int32), torch.zeros(4, 2),
            torch.zeros(4, 1, 1024, dtype=torch.bfloat16), torch.zeros(1024, dtype=torch.bfloat16), "no_such_group", 2,
            0, 4, norm_eps=norm_eps)


def test_set_device_takes_what_torch_npu_takes(seed):
    # An int, "npu:N", or "npu" (the current device); each on a thread of its own, as thread ranks set theirs.
    device = 1 + seed % 7
    print(f"seed {seed}: device {device}")

    def set_then_read(*devices):
        def body(_):
            for d in devices:
                torch_npu.npu.set_device(d)
            return torch_npu.npu.current_device()
        return on_threads(1, body)[0]

    assert set_then_read(f"npu:{device}") == device
    assert set_then_read(device, "npu") == device, "'npu' is the current device"
    assert set_then_read("npu") == 0, "'npu' on a thread that has no device is device 0"
    for bad in ("cuda:0", "1", "npu:", "npu:-1", torch.device("cpu"), 1.0, True, None):
        with pytest.raises(moe_ep.InvalidArgumentError, match="npu.set_device: device = "):
            set_then_read(bad)
    # A device past the runtime's devices is refused by the runtime itself (ACL_ERROR_RT_INVALID_DEVICEID): an
    # argument error too.
    with pytest.raises(moe_ep.InvalidArgumentError) as refused:
        set_then_read(100000)
    assert refused.value.code == 107001, refused.value


def test_missing_peer_is_a_timeout_naming_it():
    # A child interpreter: HCCL_EXEC_TIMEOUT is read when the communicator is made. Rank 1 never calls.
    script = textwrap.dedent("""
        import torch, moe_ep, moe_ep.distributed as md, moe_ep.torch_npu as torch_npu
        torch_npu.npu.set_device(0)
        name = md.thread_comm_names(2)[0]
        try:
            torch_npu.npu_moe_distribute_dispatch_v2(torch.zeros(4, 1024, dtype=torch.bfloat16),
                torch.tensor([[2, 3]] * 4, dtype=torch.int32), name, 2, 0, 4)
        except moe_ep.TimeoutError as e:
            print("missing", e.missing_ranks, e.code)
    """)
    env = dict(os.environ, HCCL_EXEC_TIMEOUT="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "missing [1] 507034" in done.stdout, done.stdout + done.stderr


def test_calls_after_the_errors_still_work(names, seed):
    # Runs after the bad inputs above on the same communicators: nothing they did stays behind. Fresh random tokens,
    # routing, weights and expert outputs; every output against the golden model, poison where nothing is defined.
    g = torch.Generator().manual_seed(seed)
    x = [torch.randn(4, 1024, generator=g).to(torch.bfloat16) for _ in range(2)]
    ids = [torch.stack([torch.randperm(4, generator=g)[:2] for _ in range(4)]).to(torch.int32) for _ in range(2)]
    weights = [torch.rand(4, 2, generator=g) for _ in range(2)]
    expert_out = [torch.randn(16, 1024, generator=g).to(torch.bfloat16) for _ in range(2)]  # 16 rows: Bs * E * K

    def rank(r):
        torch_npu.npu.set_device(r)
        dispatched = torch_npu.npu_moe_distribute_dispatch_v2(x[r], ids[r], names[r], 2, r, 4)
        _, _, assist, _, counts, tp_counts, _ = dispatched
        combined = torch_npu.npu_moe_distribute_combine_v2(expert_out[r], ids[r], assist, counts, weights[r], names[r],
                                                           2, r, 4, tp_send_counts=tp_counts)
        return dispatched, combined

    torch_npu.poison_outputs = True
    try:
        results = on_threads(2, rank)
    finally:
        torch_npu.poison_outputs = False
    layout = dict(ep_world_size=2, moe_expert_num=4, shared_expert_num=0)
    want = golden_dispatch(x, ids, **layout)
    want_x = golden_combine(expert_out, ids, weights, **layout)
    for r in range(2):
        (expand_x, _, assist, token_nums, ep_counts, _, _), combined = results[r]
        tag = f"seed {seed} rank {r}"
        assert_prefix(expand_x, want[r]["expand_x"], f"{tag} expand_x")
        assert_prefix(assist, want[r]["assist_info"], f"{tag} assist_info_for_combine")
        assert_bits(token_nums, want[r]["expert_token_nums"], f"{tag} expert_token_nums")
        n = want[r]["ep_recv_counts"].numel()
        assert_bits(ep_counts[:n], want[r]["ep_recv_counts"], f"{tag} ep_recv_counts")
        assert_bits(combined, want_x[r], f"{tag} combine_v2 x")
