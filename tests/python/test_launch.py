# Ranks as processes started by `moe-ep launch`, without torch.distributed: group names from the launch environment
# (moe_ep.distributed.launch_comm_name) and the native process group. MOE_EP_TOOL names the moe-ep command.
import os
import re
import subprocess
import sys

import pytest
import torch

import moe_ep
import moe_ep.distributed as md
from operator_cases import check_results, make_case
from rank_pool import WORLD

HERE = os.path.dirname(os.path.abspath(__file__))


def root_files():
    return {f for f in os.listdir("/dev/shm") if f.startswith("moe_ep_root_")}


@pytest.mark.skipif(not os.environ.get("MOE_EP_TOOL"), reason="MOE_EP_TOOL (the moe-ep command) is not set")
def test_launch_job_ranks_dispatch_and_combine(seed, tmp_path):
    # Every rank's outputs, through torch_npu's functions and the native process group, come back here and are
    # compared with the golden model (random expert outputs, outputs poisoned first).
    case = make_case(seed, shared_expert_num=0)
    torch.save(case, tmp_path / "case.pt")
    script = f"import sys; sys.path.insert(0, {HERE!r}); import launch_rank; launch_rank.main()"
    before = root_files()
    env = dict(os.environ, MOE_EP_TIMEOUT_MS="60000")
    done = subprocess.run([os.environ["MOE_EP_TOOL"], "launch", "-n", str(WORLD), "--", sys.executable, "-c", script,
                           str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for path in ("torch_npu", "native"):
        check_results(case, [g[path] for g in got])
    assert root_files() <= before, "a root info file was left behind"


def test_launch_comm_name_outside_a_job_says_how_to_start_one(monkeypatch):
    for var in ("MOE_EP_RANK", "MOE_EP_WORLD_SIZE", "MOE_EP_RENDEZVOUS"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(moe_ep.InvalidArgumentError,
                       match=re.escape("MOE_EP_RANK is not set; start the ranks with `moe-ep launch -n N`")):
        md.launch_comm_name()


def test_a_failed_root_info_file_leaves_nothing_that_blocks_the_retry(monkeypatch, seed):
    # A job of one rank whose first attempt fails writing the root info (a full /dev/shm, say): the retry makes the
    # file again and joins (the first attempt's partial file once stayed, and every retry failed on it).
    monkeypatch.setenv("MOE_EP_RANK", "0")
    monkeypatch.setenv("MOE_EP_WORLD_SIZE", "1")
    monkeypatch.setenv("MOE_EP_RENDEZVOUS", f"retry-{os.getpid()}-{seed}")
    real_rename, renamed = os.rename, []

    def full(src, dst):
        renamed.append(src)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", full)
    with pytest.raises(OSError, match="No space left"):
        md.launch_comm_name()
    monkeypatch.setattr(os, "rename", real_rename)
    assert not os.path.exists(renamed[0]), f"{renamed[0]} stayed"
    assert md.launch_comm_name().startswith("hccl_root_")
    assert not os.path.exists(renamed[0].removesuffix(".part")), "the root info file stayed"


# The refusals below come before anything is made (no device, no root info, no segment), from what
# launch_comm_name reads at the call: rank 1 of a job of 2 whose first rank never comes. Were one of them to pass,
# the next step, setting the device, fails the test at once (instead of waiting for the root info).
@pytest.fixture
def second_rank_of_a_job(monkeypatch):
    for var, value in (("MOE_EP_RANK", "1"), ("MOE_EP_WORLD_SIZE", "2"), ("MOE_EP_RENDEZVOUS", "test-token")):
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("HCCL_CONNECT_TIMEOUT", raising=False)

    def got_past_the_checks():
        raise AssertionError("launch_comm_name went on to set the device")

    monkeypatch.setattr(md, "_ensure_device", got_past_the_checks)
    return monkeypatch


# The last three: Python's int() took them, which the library refuses.
@pytest.mark.parametrize("value", ["abc", "0", "2147484", "1.5", " 120", "120 ", "1_20"])
def test_a_bad_connect_timeout_names_the_variable_and_its_rule(second_rank_of_a_job, value):
    # A member other than the first reads HCCL_CONNECT_TIMEOUT for how long to wait for the root info.
    second_rank_of_a_job.setenv("HCCL_CONNECT_TIMEOUT", value)
    with pytest.raises(moe_ep.InvalidArgumentError, match=re.escape(
            f"HCCL_CONNECT_TIMEOUT = '{value}' must be an integer number of seconds in [1, 2147483]")):
        md.launch_comm_name()


@pytest.mark.parametrize("var, value, rule", [
    ("MOE_EP_RANK", " 1", "must be an integer in [0, 1048576]"),  # Python's int() took these two
    ("MOE_EP_WORLD_SIZE", "1_0", "must be an integer in [1, 1048576]"),
    ("MOE_EP_RANK", "5", "MOE_EP_RANK = 5 must be in [0, MOE_EP_WORLD_SIZE = 2)"),  # was blamed on members
    ("MOE_EP_RENDEZVOUS", "a/b", "MOE_EP_RENDEZVOUS (3 characters: 'a/b') must be"),
])
def test_bad_launch_variables_are_refused_as_the_library_reads_them(second_rank_of_a_job, var, value, rule):
    second_rank_of_a_job.setenv(var, value)
    with pytest.raises(moe_ep.InvalidArgumentError, match=re.escape(rule)) as refused:
        md.launch_comm_name()
    message = str(refused.value)
    assert var in message and message.startswith("launch_comm_name: ") and "mpirun" not in message, message


@pytest.mark.parametrize("kwargs, refusal", [
    (dict(members=[0, 1.9]), "launch_comm_name: members[1] = 1.9 must be an int"),
    (dict(members=[True, 1]), "launch_comm_name: members[0] = True must be an int, not a bool"),
    (dict(members="01"), "launch_comm_name: members = '01' must be a sequence of ints"),
    (dict(timeout="5"), "launch_comm_name: timeout = '5' must be a real number"),
    (dict(timeout=0), "launch_comm_name: timeout = 0.0 must be a positive number of seconds"),
    (dict(timeout=float("inf")), "launch_comm_name: timeout = inf must be a positive number of seconds"),
])
def test_bad_members_and_timeouts_are_refused_naming_them(second_rank_of_a_job, kwargs, refusal):
    # Nothing is truncated (1.9 is not rank 1) or left to fail inside the wait.
    before = root_files()
    with pytest.raises(moe_ep.InvalidArgumentError, match=re.escape(refusal)):
        md.launch_comm_name(**kwargs)
    assert root_files() == before


def test_registered_hccl_names_any_process_group_and_keeps_its_name():
    # After register_hccl_backend(), a group of any backend answers get_hccl_comm_name (torch >= 2.0's new_group
    # returns a plain ProcessGroup), with torch_npu's keyword, once per group: asked again, the same name.
    code = """
import tempfile
import torch.distributed as dist
import moe_ep.distributed as md
dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
md.register_hccl_backend()
md.register_hccl_backend()  # idempotent
hccl, gloo = dist.new_group([0], backend="hccl"), dist.new_group([0], backend="gloo")
names = [hccl.get_hccl_comm_name(0), gloo.get_hccl_comm_name(0, init_comm=True), gloo.get_hccl_comm_name(0)]
assert names[1] == names[2] and names[0] != names[1], names
print("named", names)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MOE_EP_")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "named" in done.stdout
