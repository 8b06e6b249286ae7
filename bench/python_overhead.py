"""What the Python package adds to an operation: dispatch and combine on 8 ranks (H 7168, top-8 of 64
experts, bf16) through moe_ep's native Python API and through moe_ep.torch_npu, next to the same
configuration from C++ (`moe-ep bench`), all in one run, the two measured alternately (--trials). Ranks
are processes (torch.multiprocessing, gloo groups, as Python callers run them), or with --threads threads
of this interpreter (sharing its GIL). As moe-ep bench does: before each operation, untimed, x and then the
expert outputs are written anew, as the layers before them would; the ranks are then lined up by two of
moe_ep's barriers; a round's time is the span from the first rank's start to the last rank's end (one
clock on one host). The native API's x and expert outputs are in the shared heap (moe_ep.peer_visible) and
its overhead is against moe-ep bench's default (tensors in the shared heap); torch_npu's are torch's, in
each process's private memory, and with process ranks its overhead is against moe-ep bench --memory
private, which moves rows the same way. Medians over the rounds. torch runs one thread per rank
(--torch-threads), as a job of ranks that share the cores would set it.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_overhead.py [--threads] [--ranks 8] [--bs 1,128] [--torch-threads 1]
"""

import argparse
import json
import os
import queue
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

H, K, EXPERTS = 7168, 8, 64
RANKS = 8  # --ranks


def inputs(bs, rank):
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(bs, H, generator=g).to(torch.bfloat16)
    ids = torch.stack([torch.randperm(EXPERTS, generator=g)[:K] for _ in range(bs)]).to(torch.int32)
    return x, ids, torch.rand(bs, K, generator=g)


def native_rank(group, rank, bs, heap=False):
    """heap: x and the expert outputs in the shared heap (moe_ep.peer_visible), as moe-ep bench has them."""
    x_rows, ids, w = inputs(bs, rank)
    new = moe_ep.peer_visible if heap else (lambda shape, dtype: torch.empty(shape, dtype=dtype))
    x = new(x_rows.shape, x_rows.dtype)
    expert_out = []  # the experts' output buffer, made once

    def run(sync):
        x.copy_(x_rows)
        sync()
        t0 = time.perf_counter()
        d = moe_ep.dispatch(group, x, ids, moe_expert_num=EXPERTS)
        t1 = time.perf_counter()
        if not expert_out:
            expert_out.append(new(d.expand_x.shape, d.expand_x.dtype))
        rows = d.handle.num_rows
        expert_out[0][:rows].copy_(d.expand_x[:rows])
        sync()
        t2 = time.perf_counter()
        moe_ep.combine(group, d.handle, expert_out[0], w)
        return t0, t1, t2, time.perf_counter()
    return run


def torch_npu_rank(name, rank, bs, threads=True):
    x_rows, ids, w = inputs(bs, rank)
    if threads:  # thread i of thread_comm_names runs on device i; a process's communicators are on its device 0
        torch_npu.npu.set_device(rank)
    x = x_rows.clone()
    expert_out = []  # the experts' output buffer, made once

    def run(sync):
        x.copy_(x_rows)
        sync()
        t0 = time.perf_counter()
        expand_x, _, assist, token_nums, counts, tp_counts, _ = torch_npu.npu_moe_distribute_dispatch_v2(
            x, ids, name, RANKS, rank, EXPERTS)
        t1 = time.perf_counter()
        if not expert_out:
            expert_out.append(torch.empty_like(expand_x))
        rows = int(token_nums.sum())  # expert_token_nums_type 1: each local expert's rows
        expert_out[0][:rows].copy_(expand_x[:rows])
        sync()
        t2 = time.perf_counter()
        torch_npu.npu_moe_distribute_combine_v2(expert_out[0], ids, assist, counts, w, name, RANKS, rank, EXPERTS,
                                                tp_send_counts=tp_counts)
        return t0, t1, t2, time.perf_counter()
    return run


def measure(make_rank, handles, groups, bs, repeats, warmup):
    """Median dispatch and combine spans (us) over `repeats` rounds after `warmup`; each op after a Python
    barrier (which a failing rank can break) and then two of moe_ep's, as moe-ep bench lines thread ranks up
    (a sleeping barrier wakes its threads microseconds apart)."""
    barrier = threading.Barrier(RANKS)
    times = [[None] * (warmup + repeats) for _ in range(RANKS)]

    failures = []

    def body(r):
        try:
            run = make_rank(handles[r], r, bs)

            def sync():
                barrier.wait()
                moe_ep.barrier(groups[r])
                moe_ep.barrier(groups[r])
            for i in range(warmup + repeats):
                times[r][i] = run(sync)
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
    return spans([t[warmup:] for t in times])


def process_rank(rank, ranks, init_file, sizes, repeats, warmup, results, torch_threads):
    """One rank process: every size through both APIs; its (t0, t1, t2, t3) per round (dispatch from t0 to t1, combine from t2 to t3) go to the parent."""
    import torch.distributed as dist

    global RANKS
    RANKS = ranks
    torch.set_num_threads(torch_threads)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=ranks)
    group = moe_ep.join_torch_group()
    name = md.get_hccl_comm_name() if ranks >= 2 else None
    mine = {}
    for bs in sizes:
        runs = {"native": native_rank(group, rank, bs, heap=True)}
        if name:
            runs["torch_npu"] = torch_npu_rank(name, rank, bs, threads=False)
        for api, run in runs.items():
            # Each operation after two of moe_ep's barriers, as moe-ep bench lines ranks up (a gloo barrier lets
            # processes go at instants milliseconds apart, more than the operations take).
            mine[(api, bs)] = [run(lambda: (moe_ep.barrier(group), moe_ep.barrier(group)))
                               for _ in range(warmup + repeats)][warmup:]
    results.put((rank, mine))
    dist.barrier()


def measure_processes(sizes, repeats, warmup, torch_threads):
    """{(api, bs): (dispatch us, combine us)} with every rank a process."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        procs = [ctx.Process(target=process_rank, args=(r, RANKS, os.path.join(tmp, "init"), sizes, repeats, warmup,
                                                        results, torch_threads)) for r in range(RANKS)]
        for p in procs:
            p.start()
        got = {}
        while len(got) < RANKS:
            try:
                rank, times = results.get(timeout=5)
                got[rank] = times
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs):
                    for p in procs:
                        p.kill()
                    raise SystemExit("a rank process failed (its error is above)")
        for p in procs:
            p.join()
    # perf_counter is CLOCK_MONOTONIC, one clock for every process of the host.
    return {key: spans([got[r][key] for r in range(RANKS)]) for key in got[0]}


def spans(times):
    """Median spans (us) of dispatch and combine, from each rank's (t0, t1, t2, t3) per round."""
    rounds = range(len(times[0]))
    ranks = range(len(times))
    dispatch = [max(times[r][i][1] for r in ranks) - min(times[r][i][0] for r in ranks) for i in rounds]
    combine = [max(times[r][i][3] for r in ranks) - min(times[r][i][2] for r in ranks) for i in rounds]
    return statistics.median(dispatch) * 1e6, statistics.median(combine) * 1e6


def median_trial(trials):
    """(dispatch, combine): the median over trials of each."""
    return tuple(statistics.median(t[i] for t in trials) for i in range(2))


def cpp(moe_ep_cmd, sizes, repeats, warmup, transport, memory="heap"):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        subprocess.run([moe_ep_cmd, "bench", "--transports", transport, "--ranks", str(RANKS), "--bs",
                        ",".join(map(str, sizes)), "--hidden", str(H), "--topk", str(K), "--experts", str(EXPERTS),
                        "--repeats", str(repeats), "--warmup", str(warmup), "--memory", memory, "--json", out],
                       check=True, stdout=subprocess.DEVNULL)
        results = json.load(open(out))["results"]
    return {r["tokens"]: (r["dispatch"]["median_us"], r["combine"]["median_us"]) for r in results}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moe-ep", default="build/tools/moe-ep", help="the moe-ep command [build/tools/moe-ep]")
    parser.add_argument("--bs", default="1,128", help="tokens per rank, comma-separated [1,128]")
    parser.add_argument("--ranks", type=int, default=8, help="ranks [8]; 1 shows the cost of a call alone")
    parser.add_argument("--threads", action="store_true", help="ranks as threads of this interpreter")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch's threads in each rank process [1]: with more, every process keeps OpenMP "
                             "threads of its own on the cores the ranks share (on 16 cores, 8 processes: a 1-token "
                             "call +120-215 us over C++, against +7-27 us with 1)")
    parser.add_argument("--trials", type=int, default=3,
                        help="C++ and Python measured this many times, alternately; the median trial is shown [3]")
    args = parser.parse_args()
    global RANKS
    RANKS = args.ranks
    sizes = [int(s) for s in args.bs.split(",")]
    if args.threads:
        torch.set_num_threads(args.torch_threads)
        groups = moe_ep.thread_groups(RANKS)
        names = md.thread_comm_names(RANKS) if RANKS >= 2 else None  # A3's operators need at least 2 ranks
    bases, privates, pys = [], [], []
    transport = "threads" if args.threads else "processes"
    for _ in range(args.trials):  # alternately: this machine's speed drifts over seconds
        bases.append(cpp(args.moe_ep, sizes, args.repeats, args.warmup, transport))
        # Thread ranks read each other's memory wherever it is: torch_npu's tensors cost them nothing more (and
        # one rank runs no torch_npu call: A3's operators need two).
        same = args.threads or RANKS < 2
        privates.append(bases[-1] if same else cpp(args.moe_ep, sizes, args.repeats, args.warmup, transport, "private"))
        if args.threads:
            py = {}
            for bs in sizes:
                py[("native", bs)] = measure(native_rank, groups, groups, bs, args.repeats, args.warmup)
                if names:
                    py[("torch_npu", bs)] = measure(torch_npu_rank, names, groups, bs, args.repeats, args.warmup)
        else:
            py = measure_processes(sizes, args.repeats, args.warmup, args.torch_threads)
        pys.append(py)
    base = {bs: median_trial([b[bs] for b in bases]) for bs in sizes}
    private = {bs: median_trial([b[bs] for b in privates]) for bs in sizes}
    py = {key: median_trial([p[key] for p in pys]) for key in pys[0]}
    kind = "thread" if args.threads else "process"
    print(f"{RANKS} {kind} ranks, H {H}, top-{K} of {EXPERTS} experts, bf16; medians of {args.repeats} rounds, "
          f"median of {args.trials} alternating trials (us); " +
          ("thread ranks read any memory in place: one C++ run for both" if args.threads else
           "native against C++ with tensors in the shared heap, torch_npu against C++ with private tensors"))
    print(f"{'tokens':>6}  {'op':8} {'C++ heap':>9} {'native py':>10} {'overhead':>9} {'C++ priv':>9} "
          f"{'torch_npu':>10} {'overhead':>9}")
    for bs in sizes:
        for i, op in enumerate(("dispatch", "combine")):
            c, c_private = base[bs][i], private[bs][i]
            native, npu = py[("native", bs)][i], py.get(("torch_npu", bs))
            npu_text = f"{npu[i]:10.1f} {npu[i] - c_private:+9.1f}" if npu else f"{'-':>10} {'-':>9}"
            print(f"{bs:>6}  {op:8} {c:9.1f} {native:10.1f} {native - c:+9.1f} {c_private:9.1f} {npu_text}")

if __name__ == "__main__":
    main()
