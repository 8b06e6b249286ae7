# moe_ep.distributed's communicators live as long as what names them: a torch.distributed group's goes when the group
# is destroyed and collected, a backend object's with the world group, thread_comm_names' on destroy(); a communicator
# that is gone is refused by name (the operator's "must name a live HCCL communicator"), one still there is found.
import copy
import gc
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

import moe_ep
import moe_ep.distributed as md
import moe_ep.torch_npu as torch_npu
from thread_ranks import on_threads

GONE = "must name a live HCCL communicator"


def lookup(name, size):
    """What a dispatch on this thread's device says of `name`: "found: ..." when the operator finds its communicator
    of `size` ranks (the call asks for size + 1, so the operator refuses it there, before any wait), "gone" when it
    finds none."""
    x, ids = torch.zeros(4, 1024, dtype=torch.bfloat16), torch.tensor([[0, 1]] * 4, dtype=torch.int32)
    try:
        torch_npu.npu_moe_distribute_dispatch_v2(x, ids, name, size + 1, 0, size + 1)
    except moe_ep.InvalidArgumentError as e:
        return "gone" if GONE in str(e) else f"found: {e}" if f"communicator's size {size}" in str(e) else str(e)
    return "ran"


def run_child(script):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOE_EP_")}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120,
                          env=dict(env, PYTHONPATH=os.pathsep.join(sys.path)))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_groups_communicator_is_destroyed_with_the_group():
    # One process, a world of 1: a group from new_group, a backend object torch.distributed never registered (torch
    # >= 2.0's group._get_backend(device)), the world group. Each communicator lives while its group does.
    out = run_child("""
        import datetime, gc, tempfile
        import torch.distributed as dist
        import moe_ep, moe_ep.distributed as md
        from test_distributed import lookup  # tests/python is on the child's path

        def say(what, name):
            print(what, lookup(name, 1).split(":")[0])

        dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
        group = dist.new_group([0])
        assert md.get_hccl_comm_name(group, 0, init_comm=False) == ""  # as torch_npu's: nothing is made
        name = md.get_hccl_comm_name(group, 0)
        assert md.get_hccl_comm_name(group, 0, False) == name
        say("group, alive:", name)
        dist.destroy_process_group(group)
        say("group, destroyed but held:", name)
        del group
        gc.collect()
        say("group, destroyed and dropped:", name)
        store = dist.PrefixStore("backend", dist.distributed_c10d._get_default_store())
        backend = dist.ProcessGroupGloo(store, 0, 1, datetime.timedelta(seconds=30))
        backend_name = md.get_hccl_comm_name(backend, 0, init_comm=True)
        del backend  # NPU code asks the name of a temporary backend object and keeps the name
        gc.collect()
        say("backend object, dropped:", backend_name)
        world_name = md.get_hccl_comm_name()
        try:
            md.get_hccl_comm_name("abc")
        except moe_ep.InvalidArgumentError as e:
            print("refused:", e)
        dist.destroy_process_group()
        gc.collect()
        say("backend object, world destroyed:", backend_name)
        say("world, destroyed:", world_name)
    """)
    for line in ("group, alive: found", "group, destroyed but held: found", "group, destroyed and dropped: gone",
                 "backend object, dropped: found", "backend object, world destroyed: gone", "world, destroyed: gone",
                 "refused: get_hccl_comm_name: group = 'abc' must be a torch.distributed process group"):
        assert line in out, f"expected {line!r} in:\n{out}"


def on_device_0(body):
    """body() on a new thread whose device is 0 (rank 0's of a thread communicator); its result."""
    return on_threads(1, lambda _: (torch_npu.npu.set_device(0), body())[1])[0]


def test_thread_comm_names_destroy_their_communicators(seed):
    n = 2 + seed % 3
    print(f"seed {seed}: {n} thread ranks")
    with md.thread_comm_names(n) as names:
        assert isinstance(names, list) and len(names) == n and all(isinstance(s, str) for s in names), names
        name = names[0]
        assert on_device_0(lambda: lookup(name, n)).startswith("found"), "no communicator of thread_comm_names"
    assert on_device_0(lambda: lookup(name, n)) == "gone", "the end of the with block left the communicators"
    names.destroy()  # once is enough: a second destroy() does nothing
    owner = md.thread_comm_names(n)
    name = owner[0]
    assert type(copy.copy(owner)) is list and type(pickle.loads(pickle.dumps(owner))) is list, "a copy owns nothing"
    del owner
    gc.collect()
    # `name = thread_comm_names(n)[0]`: the names outlive the list, and so do their communicators (until exit).
    assert on_device_0(lambda: lookup(name, n)).startswith("found"), "collecting the list destroyed the communicators"


def test_a_thread_that_set_no_device_runs_on_device_0():
    # The docs' promise, for the operators' first phase too: it looks the communicator up on device 0, not on none.
    with md.thread_comm_names(2) as names:
        assert on_threads(1, lambda _: lookup(names[0], 2))[0].startswith("found"), "a thread without a device"


def test_group_lookups_before_torch_distributed_raise_moe_ep_errors():
    out = run_child("""
        import moe_ep, moe_ep.distributed as md
        for call in (md.get_hccl_comm_name, moe_ep.join_torch_group):
            try:
                call()
            except moe_ep.InvalidArgumentError as e:
                print(call.__name__, "refused:", e)
    """)
    for who in ("get_hccl_comm_name", "join_torch_group"):
        assert f"{who} refused: {who}: torch.distributed is not initialized" in out, out


@pytest.mark.parametrize("args, named", [((2.5,), "thread_comm_names: n = 2.5 must be an int"),
                                         ((True,), "thread_comm_names: n = True must be an int, not a bool"),
                                         ((0,), r"thread_comm_names: n = 0 must be in \[1, 65536\]"),
                                         ((2, -1), r"thread_comm_names: first_device = -1 must be in \[0, ")])
def test_thread_comm_names_refuses_what_is_not_a_count(args, named):
    with pytest.raises(moe_ep.InvalidArgumentError, match=named):
        md.thread_comm_names(*args)
