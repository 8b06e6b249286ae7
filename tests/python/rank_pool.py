# Rank processes for the operator suite, as the vendor's tests make them: torch.multiprocessing (spawn), one process per rank,
# torch.distributed on gloo, new_group for every EP group and TP pair, group names from the groups.
import datetime
import io
import os
import queue
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 4  # EP 4, or EP 2 x TP 2


def _pack(obj):
    # Tensors travel as bytes: torch's fd-sharing pickler loses tensors freed before its feeder thread runs.
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _unpack(data):
    return torch.load(io.BytesIO(data))


def _worker(rank, init_file, jobs, results):
    import moe_ep.distributed as md
    import moe_ep.torch_npu as torch_npu

    import moe_ep

    torch_npu.poison_outputs = moe_ep._tensors.poison_outputs = True  # the native API's outputs too
    torch_npu.npu.set_device(0)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    # Every rank makes every group, in one order. EP 2 x TP 2: EP groups {0, 2} and {1, 3}, TP pairs {0, 1} and {2, 3}.
    ep4 = dist.new_group(list(range(WORLD)))
    ep2 = [dist.new_group([0, 2]), dist.new_group([1, 3])]
    tp = [dist.new_group([0, 1]), dist.new_group([2, 3])]
    names = {"ep4": md.get_hccl_comm_name(ep4, rank), "ep2": md.get_hccl_comm_name(ep2[rank % 2], rank),
             "tp": md.get_hccl_comm_name(tp[rank // 2], rank), "torch_ep4": ep4}
    # A backend object torch.distributed never registered, as torch >= 2.0's group._get_backend(device) gives NPU
    # code, asked with torch_npu's keyword: it knows only its own rank and size.
    store = dist.PrefixStore("moe_ep_backend_object", dist.distributed_c10d._get_default_store())
    backend = dist.ProcessGroupGloo(store, rank, WORLD, datetime.timedelta(seconds=120))
    names["backend_ep4"] = md.get_hccl_comm_name(backend, rank, init_comm=True)
    while True:
        job = jobs.get()
        if job is None:
            break
        fn, case = job
        try:
            results.put((rank, _pack(globals()[fn](torch_npu, names, rank, _unpack(case)))))
        except BaseException as e:  # the driver reports it, naming the rank
            results.put((rank, RuntimeError(f"rank {rank}: {type(e).__name__}: {e}\n{traceback.format_exc()}")))


def outside_a_group(torch_npu, names, rank, case):
    """What a process outside a new_group subset is told by the name lookup and the native join (ranks 0 and 1 are
    in it, and join)."""
    import moe_ep
    import moe_ep.distributed as md

    subset = dist.new_group([0, 1])
    said = []
    for call in (md.get_hccl_comm_name, moe_ep.join_torch_group):
        try:
            call(subset)
            said.append("joined")
        except moe_ep.Error as e:
            said.append(f"{type(e).__name__}: {e}")
    return said


def _kw(case, *names):
    return {n: case[n] for n in names if n in case}


_LAYOUT = ("expert_shard_type", "shared_expert_num", "shared_expert_rank_num", "global_bs", "zero_expert_num",
           "copy_expert_num", "const_expert_num")


def dispatch_combine(torch_npu, names, rank, case):
    """One rank's dispatch_v2 then combine_v2 (or combine_add_rms_norm), keyword calls as callers write them."""
    tp = case.get("tp_world_size", 0)
    ep_rank, tp_rank = (rank // 2, rank % 2) if tp == 2 else (rank, 0)
    ep_size = WORLD // 2 if tp == 2 else WORLD
    group_ep = names[case.get("group_ep", "ep2" if tp == 2 else "ep4")]
    group_tp = names["tp"] if tp == 2 else ""
    mine = case["ranks"][rank]
    x = mine["x"]
    if case.get("strided"):  # the same values in a column-major layout: strides must be honoured
        x = x.t().contiguous().t()
    # Optional: expert_scales handed to dispatch too (torch_npu then sizes ep_recv_counts for A2's layout), and
    # elastic_info that scales nothing down (the outputs are then sized for either role).
    elastic = None
    if case.get("unscaled_elastic_info"):
        layout = [0, ep_size, case.get("shared_expert_rank_num", 0), case["moe_expert_num"]]
        elastic = torch.tensor(layout + list(range(ep_size)) * 2, dtype=torch.int32)
    out = torch_npu.npu_moe_distribute_dispatch_v2(
        x=x, expert_ids=mine["expert_ids"], group_ep=group_ep, ep_world_size=ep_size, ep_rank_id=ep_rank,
        moe_expert_num=case["moe_expert_num"], scales=case.get("scales"), x_active_mask=mine.get("x_active_mask"),
        expert_scales=mine["expert_scales"] if case.get("dispatch_expert_scales") else None, elastic_info=elastic,
        group_tp=group_tp, tp_world_size=tp, tp_rank_id=tp_rank, quant_mode=case.get("quant_mode", 0),
        expert_token_nums_type=case.get("expert_token_nums_type", 1), **_kw(case, *_LAYOUT))
    expand_x, dynamic_scales, assist, token_nums, ep_counts, tp_counts, expand_scales = out
    # The experts: the driver's random rows stand in for their outputs (same row order as expand_x).
    expert_out = mine["expert_out"][: expand_x.shape[0]]
    common = dict(expand_x=expert_out, expert_ids=mine["expert_ids"], ep_send_counts=ep_counts,
                  expert_scales=mine["expert_scales"], group_ep=group_ep, ep_world_size=ep_size, ep_rank_id=ep_rank,
                  moe_expert_num=case["moe_expert_num"], tp_send_counts=tp_counts,
                  x_active_mask=mine.get("x_active_mask"), expand_scales=expand_scales,
                  shared_expert_x=mine.get("shared_expert_x"), elastic_info=elastic, group_tp=group_tp, tp_world_size=tp,
                  tp_rank_id=tp_rank, **_kw(case, "expert_shard_type", "shared_expert_num", "shared_expert_rank_num",
                                            "global_bs"))
    special = dict(ori_x=mine.get("ori_x"), const_expert_alpha_1=case.get("const_expert_alpha_1"),
                   const_expert_alpha_2=case.get("const_expert_alpha_2"), const_expert_v=case.get("const_expert_v"),
                   **_kw(case, "zero_expert_num", "copy_expert_num", "const_expert_num"))
    if "gamma" in case:
        combined = torch_npu.npu_moe_distribute_combine_add_rms_norm(
            expand_idx=assist, residual_x=mine["residual_x"], gamma=case["gamma"], norm_eps=case["norm_eps"],
            **special, **common)
    else:
        combined = torch_npu.npu_moe_distribute_combine_v2(
            assist_info_for_combine=assist, comm_quant_mode=case.get("comm_quant_mode", 0), **special, **common)
    return {"dispatch": out, "combine": combined}


_native_groups = {}


def native_dispatch_combine(torch_npu, names, rank, case):
    """One rank's dispatch and combine through the native API, on a moe_ep group made from the torch group."""
    import moe_ep

    if "ep4" not in _native_groups:
        _native_groups["ep4"] = moe_ep.join_torch_group(names["torch_ep4"], timeout=60)
    group, mine = _native_groups["ep4"], case["ranks"][rank]
    x, expert_out = mine["x"], mine["expert_out"]
    if case.get("peer_visible"):  # in the shared heap: peers read them in place (pull forced by the driver)
        x = moe_ep.peer_visible(x.shape, x.dtype).copy_(x)
        expert_out = moe_ep.peer_visible(expert_out.shape, expert_out.dtype).copy_(expert_out)
    d = moe_ep.dispatch(group, x, mine["expert_ids"], moe_expert_num=case["moe_expert_num"],
                        quant="int8" if case.get("quant_mode") == 2 else None)
    y = moe_ep.combine(group, d.handle, expert_out[: d.expand_x.shape[0]], mine["expert_scales"])
    return {"dispatch": (d.expand_x, d.dynamic_scales, d.assist_info, d.expert_token_nums, d.ep_recv_counts,
                         d.tp_recv_counts, None), "combine": y}


class RankPool:
    """WORLD rank processes that run jobs (a function of this module and a case) and return each rank's result."""

    def __init__(self, tmpdir, timeout_s=300):
        ctx = mp.get_context("spawn")
        os.environ.setdefault("MOE_EP_TIMEOUT_MS", "60000")
        # Rows in the shared heap are pulled, the rest copied out of their process (at every size, where the
        # system lets ranks read each other) or pushed.
        os.environ.setdefault("MOE_EP_DATA_PATH", "pull")
        self.timeout_s = timeout_s
        self.results = ctx.Queue()
        self.jobs = [ctx.Queue() for _ in range(WORLD)]
        init_file = os.path.join(tmpdir, "torch_dist_init")
        self.procs = [ctx.Process(target=_worker, args=(r, init_file, self.jobs[r], self.results), daemon=True)
                      for r in range(WORLD)]
        for p in self.procs:
            p.start()

    def run(self, fn, case):
        packed = _pack(case)
        for q in self.jobs:
            q.put((fn, packed))
        got = {}
        while len(got) < WORLD:
            try:
                rank, result = self.results.get(timeout=self.timeout_s)
            except queue.Empty:
                dead = [r for r, p in enumerate(self.procs) if not p.is_alive()]
                raise AssertionError(f"no result from ranks {sorted(set(range(WORLD)) - set(got))} within "
                                     f"{self.timeout_s} s (dead: {dead})")
            got[rank] = result if isinstance(result, BaseException) else _unpack(result)
        # Every rank's answer is in before one is raised: the next job must not read this one's leftovers.
        for r in range(WORLD):
            if isinstance(got[r], BaseException):
                raise got[r]
        return [got[r] for r in range(WORLD)]

    def close(self):
        for q in self.jobs:
            q.put(None)
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
