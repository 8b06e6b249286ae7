# moe_ep.torch_npu's operators in the style of the vendor's operator tests: 4 rank processes, gloo groups, names from the
# groups, keyword calls; every output compared bit for bit with the torch golden model (tests/reference/torch_golden.py).
import pytest
import torch

from operator_cases import check_results, make_case
from rank_pool import WORLD, RankPool


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    p = RankPool(str(tmp_path_factory.mktemp("ranks")))
    yield p
    p.close()


def check(pool, case, job="dispatch_combine"):
    check_results(case, pool.run(job, case))


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
    # elastic_info on the shared rank: sized for either role, A = max(24, 48) = 48 and L = max(1, 2) = 2.
    "elastic_shared_rank": (dict(shared_expert_num=1, shared_expert_rank_num=1, moe_expert_num=6,
                                 unscaled_elastic_info=True), 0,
                            [(48, 1024), (48,), (6144,), (2,), (8,), (0,), (48,)]),
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


def test_expert_scales_size_ep_recv_counts_as_torch_npu_does():
    # Given expert_scales, torch_npu sizes ep_recv_counts for A2's layout: E * L + global_bs * 2 * K * (E // 8). The
    # pool's 4 ranks make E // 8 zero, so the sizing alone, which needs no group, is checked at E 16 (L 2, K 4, Bs 6).
    from moe_ep.torch_npu import _prepare_dispatch
    x, ids = torch.zeros(6, 1024, dtype=torch.bfloat16), torch.zeros(6, 4, dtype=torch.int32)
    for scales, want in ((None, 16 * 2), (torch.rand(6, 4), 16 * 2 + 6 * 16 * 2 * 4 * 2)):
        outputs, _, _ = _prepare_dispatch(
            x, ids, "ep", 16, 0, 32, scales, None, None, "", 0, 0, 0, 0, 0, 0, 0, 1, "", 0, 0, 0, None, None, None)
        assert outputs["ep_recv_counts"][1] == (want,), (scales is not None, outputs["ep_recv_counts"])


def test_processes_outside_a_subset_are_told_so(pool, seed):
    # dist.new_group hands a process outside it a stand-in: both entry points say so (a moe_ep.Error, not torch's
    # AttributeError or a misleading "must be a process group"); the members join.
    got = pool.run("outside_a_group", seed)
    for rank in range(WORLD):
        said = got[rank]
        if rank < 2:
            assert said == ["joined", "joined"], f"rank {rank}: {said}"
        else:
            for text, who in zip(said, ("get_hccl_comm_name", "join_torch_group")):
                assert text.startswith(f"InvalidArgumentError: {who}: this process is not a member"), text
