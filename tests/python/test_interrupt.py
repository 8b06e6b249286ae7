# Ctrl-C during a wait: a call waiting for a rank that never comes ends with KeyboardInterrupt at once, not at its
# deadline, through the native API and through moe_ep.torch_npu; after a reset the group works again. Each case runs
# in a process of its own, which sends itself SIGINT (pytest would take a stray one for its own).
import os
import subprocess
import sys

import pytest

# The interpreter's main thread is rank 0 of 2 (rank 1 never comes); SIGINT arrives 0.3 s into the wait, and the
# deadline is 60 s. Prints the exception's class and how long the call took.
IMPORTS = "import os, signal, threading, time, torch, moe_ep\n"
PRELUDE = """
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
started = time.monotonic()
try:
    CALL
    print("returned")
except BaseException as e:
    print(type(e).__name__, "after", round(time.monotonic() - started, 1), "s")
"""

CASES = {
    "native barrier": ("g = moe_ep.thread_groups(2, timeout=60)", "moe_ep.barrier(g[0])"),
    "native dispatch": ("g = moe_ep.thread_groups(2, timeout=60)",
                        "moe_ep.dispatch(g[0], torch.ones(4, 64, dtype=torch.bfloat16),"
                        " torch.tensor([[0, 1]] * 4, dtype=torch.int32), moe_expert_num=4)"),
    "torch_npu dispatch": ("import moe_ep.torch_npu as tn, moe_ep.distributed as md\n"
                           "names = md.thread_comm_names(2)\ntn.npu.set_device(0)",
                           "tn.npu_moe_distribute_dispatch_v2(torch.ones(4, 1024, dtype=torch.bfloat16),"
                           " torch.tensor([[0, 1]] * 4, dtype=torch.int32), names[0], 2, 0, 4)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_ctrl_c_ends_a_wait_for_an_absent_rank(case):
    setup, call = CASES[case]
    script = IMPORTS + setup + "\n" + PRELUDE.replace("CALL", call)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HCCL_EXEC_TIMEOUT": "60"})
    assert done.returncode == 0, done.stdout + done.stderr
    words = done.stdout.split()
    assert words[:2] == ["KeyboardInterrupt", "after"], done.stdout + done.stderr
    assert float(words[2]) < 30, f"{case}: the interrupt waited for the deadline: {done.stdout}"


def test_a_group_works_again_after_an_interrupt_and_a_reset(seed):
    # The round after the reset sends other rows (random ones, to random experts) than the interrupted dispatch: a row
    # or flag of that dispatch taken for the new round's, or a row of another token, makes a combined token differ
    # from its x (each of its two rows comes back unchanged and weighs 0.5).
    script = """
import os, signal, threading, time, torch, moe_ep
g = moe_ep.thread_groups(2, timeout=60)
ids = torch.tensor([[0, 1]] * 4, dtype=torch.int32)
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    moe_ep.dispatch(g[0], torch.ones(4, 64, dtype=torch.bfloat16), ids, moe_expert_num=4)
except KeyboardInterrupt:
    print("interrupted")
torch.manual_seed(SEED)
x = [torch.randn(4, 64).to(torch.bfloat16) for r in range(2)]
routes = [torch.stack([torch.randperm(4)[:2] for t in range(4)]).to(torch.int32) for r in range(2)]
weights = torch.full((4, 2), 0.5)
out = [None, None]
def rank(r):
    moe_ep.buffer_reset(g[r])
    d = moe_ep.dispatch(g[r], x[r], routes[r], moe_expert_num=4)
    out[r] = moe_ep.combine(g[r], d.handle, d.expand_x, weights)
threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
print("equal" if all(torch.equal(out[r], x[r]) for r in range(2)) else f"differ: {out}")
""".replace("SEED", str(seed))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["interrupted", "equal"], done.stdout + done.stderr
