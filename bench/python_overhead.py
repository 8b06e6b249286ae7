"""What the Python package adds to an operation: dispatch and combine on 8 thread ranks (H 7168, top-8 of 64
experts, bf16) through moe_ep's native Python API and through moe_ep.torch_npu, next to the same
configuration from C++ (`moe-ep bench --transports threads`), all in one run. A round's time is the span
from the first rank's start to the last rank's end (as moe-ep bench measures); medians over the rounds.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_overhead.py [--moe-ep build/tools/moe-ep] [--repeats 15]
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time

import torch

# The communicators' windows: A3's rule asks for 260 MB at 128 tokens (HCCL_BUFFSIZE defaults to 200).
os.environ.setdefault("HCCL_BUFFSIZE", "1024")
import moe_ep  # noqa: E402
import moe_ep.distributed as md  # noqa: E402
import moe_ep.torch_npu as torch_npu  # noqa: E402

RANKS, H, K, EXPERTS = 8, 7168, 8, 64


def inputs(bs, rank):
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(bs, H, generator=g).to(torch.bfloat16)
    ids = torch.stack([torch.randperm(EXPERTS, generator=g)[:K] for _ in range(bs)]).to(torch.int32)
    return x, ids, torch.rand(bs, K, generator=g)


def native_rank(group, rank, bs):
    x, ids, w = inputs(bs, rank)

    def run():
        t0 = time.perf_counter()
        d = moe_ep.dispatch(group, x, ids, moe_expert_num=EXPERTS)
        t1 = time.perf_counter()
        moe_ep.combine(group, d.handle, d.expand_x, w)
        return t0, t1, time.perf_counter()
    return run


def torch_npu_rank(name, rank, bs):
    x, ids, w = inputs(bs, rank)
    torch_npu.npu.set_device(rank)

    def run():
        t0 = time.perf_counter()
        expand_x, _, assist, _, counts, tp_counts, _ = torch_npu.npu_moe_distribute_dispatch_v2(
            x, ids, name, RANKS, rank, EXPERTS)
        t1 = time.perf_counter()
        torch_npu.npu_moe_distribute_combine_v2(expand_x, ids, assist, counts, w, name, RANKS, rank, EXPERTS,
                                                tp_send_counts=tp_counts)
        return t0, t1, time.perf_counter()
    return run


def measure(make_rank, handles, bs, repeats, warmup):
    """Median dispatch and combine spans (us) over `repeats` rounds after `warmup`."""
    barrier = threading.Barrier(RANKS)
    times = [[None] * (warmup + repeats) for _ in range(RANKS)]

    failures = []

    def body(r):
        try:
            run = make_rank(handles[r], r, bs)
            for i in range(warmup + repeats):
                barrier.wait()
                times[r][i] = run()
        except BaseException as e:  # noqa: BLE001 - reported below; the other ranks stop at the barrier
            failures.append(e)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(r,)) for r in range(RANKS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise next((e for e in failures if not isinstance(e, threading.BrokenBarrierError)), failures[0])
    rounds = range(warmup, warmup + repeats)
    dispatch = [max(times[r][i][1] for r in range(RANKS)) - min(times[r][i][0] for r in range(RANKS)) for i in rounds]
    combine = [max(times[r][i][2] for r in range(RANKS)) - min(times[r][i][1] for r in range(RANKS)) for i in rounds]
    return statistics.median(dispatch) * 1e6, statistics.median(combine) * 1e6


def cpp(moe_ep_cmd, sizes, repeats, warmup):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        subprocess.run([moe_ep_cmd, "bench", "--transports", "threads", "--ranks", str(RANKS), "--bs",
                        ",".join(map(str, sizes)), "--hidden", str(H), "--topk", str(K), "--experts", str(EXPERTS),
                        "--repeats", str(repeats), "--warmup", str(warmup), "--json", out],
                       check=True, stdout=subprocess.DEVNULL)
        results = json.load(open(out))["results"]
    return {r["tokens"]: (r["dispatch"]["median_us"], r["combine"]["median_us"]) for r in results}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moe-ep", default="build/tools/moe-ep", help="the moe-ep command [build/tools/moe-ep]")
    parser.add_argument("--bs", default="1,128", help="tokens per rank, comma-separated [1,128]")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.bs.split(",")]
    groups = moe_ep.thread_groups(RANKS)
    names = md.thread_comm_names(RANKS)
    base = cpp(args.moe_ep, sizes, args.repeats, args.warmup)
    print(f"{RANKS} thread ranks, H {H}, top-{K} of {EXPERTS} experts, bf16; medians of {args.repeats} rounds (us)")
    print(f"{'tokens':>6}  {'op':8} {'C++':>9} {'native py':>10} {'overhead':>9} {'torch_npu':>10} {'overhead':>9}")
    for bs in sizes:
        native = measure(native_rank, groups, bs, args.repeats, args.warmup)
        npu = measure(torch_npu_rank, names, bs, args.repeats, args.warmup)
        for i, op in enumerate(("dispatch", "combine")):
            c = base[bs][i]
            print(f"{bs:>6}  {op:8} {c:9.1f} {native[i]:10.1f} {native[i] - c:+9.1f} {npu[i]:10.1f} {npu[i] - c:+9.1f}")


if __name__ == "__main__":
    main()
