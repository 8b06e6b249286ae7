"""Group names for moe_ep.torch_npu's operators, as NPU code gets them from its process groups:

* get_hccl_comm_name(group, rank): the name of a torch.distributed group (any backend that can
  broadcast a CPU tensor, e.g. gloo), or of one of its backend objects (torch >= 2.0's
  group._get_backend(device)); every rank of the group calls it, the first time collectively.
* register_hccl_backend(): opt-in "hccl" backend, gloo underneath, whose groups have
  group.get_hccl_comm_name(rank), so that `dist.init_process_group("hccl")`, `dist.new_group(backend="hccl")`
  and the name lookup of NPU code run unchanged (on torch >= 2.1 also
  `group._get_backend(torch.device("npu")).get_hccl_comm_name(rank)`, as vllm-ascend writes it).
* thread_comm_names(n, first_device=0): n ranks as threads of this process (no torch.distributed); thread i
  calls moe_ep.torch_npu.npu.set_device(first_device + i) and then uses names[i]; names.destroy() (or the end
  of a `with` block) destroys the communicators.
* launch_comm_name(members): the processes of a `moe-ep launch` job (no torch.distributed).
"""

import hashlib
import os
import re
import threading
import time
import weakref

import torch
import torch.distributed as dist

from ._moe_ep import cann as _cann
from ._moe_ep import native as _native
from . import errors
from .errors import INT32_MAX, InvalidArgumentError, checked_int, checked_ints, checked_real

_lock = threading.Lock()
# A group's communicator lives as long as the group object: these hold it weakly, and a finalizer on the group
# destroys the communicator once the group is collected (after torch.distributed.destroy_process_group, when the
# program holds it no more) or the interpreter exits. A strong reference here would keep every group and its
# communicator (about 2 MiB of a 2-rank one) for the life of the process.
_names = weakref.WeakKeyDictionary()  # process group -> its communicator's name
_making = weakref.WeakKeyDictionary()  # process group -> the lock its first name lookup holds while making it
# Backend objects named, by the world group. torch (>= 2.0) makes a new Python object for each
# group._get_backend(device) once the last one is gone, and NPU code (vllm-ascend) asks the name of such a
# temporary and keeps the name: held only weakly, its communicator would go with the temporary. No registry of
# torch.distributed knows which group a backend object belongs to: it is kept as long as the world group.
_backends = weakref.WeakKeyDictionary()


def _ensure_device():
    # The communicator lives on the calling thread's device (torch_npu: torch.npu.set_device); a process
    # that never chose one runs on device 0, like a single-device process.
    if _cann.current_device() < 0:
        _cann.set_device(0)


def _membership(group):
    """(this process's rank in the group, its size, whether torch.distributed registered the group)."""
    # A group torch.distributed made knows its rank in it (-1: not a member); a backend object that NPU code got
    # from group._get_backend(device) (torch >= 2.0) is registered nowhere, and knows only itself.
    try:
        return dist.get_rank(group), dist.get_world_size(group), True
    except (RuntimeError, ValueError):  # "not registered": RuntimeError in torch 1.13, ValueError in 2.x
        return group.rank(), group.size(), False


def _group_or_world(who, group, alternative):
    """The group `who` works on: `group` (a ProcessGroup, or torch >= 2.0's Backend: what is used of it is
    broadcast, rank and size), or the world group for None. Refused, naming `who`, before torch.distributed is
    initialized (pointing at `alternative`), and on a process outside the group (to which dist.new_group hands
    a stand-in, not a group)."""
    if not dist.is_initialized():
        raise InvalidArgumentError(f"{who}: torch.distributed is not initialized (call dist.init_process_group "
                                   f"first, or use {alternative})")
    if group is None:
        return dist.distributed_c10d._get_default_group()
    if group is dist.GroupMember.NON_GROUP_MEMBER:
        raise InvalidArgumentError(f"{who}: this process is not a member of the group (dist.new_group handed it "
                                   "GroupMember.NON_GROUP_MEMBER)")
    if not all(callable(getattr(group, method, None)) for method in ("broadcast", "rank", "size")):
        raise InvalidArgumentError(f"{who}: group = {group!r} must be a torch.distributed process group "
                                   "(or one of its backend objects), or None for the world group")
    return group


def get_hccl_comm_name(group=None, rank=None, init_comm=True, *args, **kwargs):
    """The HCCL-style communicator name of `group` (default: the world group; a process group or one of its
    backend objects) for the torch_npu operators. Collective the first time for a group (every rank of it
    calls); then cached. `rank` (the global rank NPU code passes to pick the device) is accepted and not needed.
    With init_comm=False, as torch_npu's, nothing is made: the name made already, or "" when there is none."""
    del rank, args, kwargs
    group = _group_or_world("get_hccl_comm_name", group, "thread_comm_names or launch_comm_name")
    if not init_comm:
        with _lock:
            return _names.get(group, "")
    with _lock:
        making = _making.setdefault(group, threading.Lock())
    with making:  # one maker per group; other threads of this process asking for it wait for its name
        name = _names.get(group)
        if name is not None:
            return name
        group_rank, size, registered = _membership(group)
        if group_rank < 0:
            raise InvalidArgumentError("get_hccl_comm_name: this process is not a member of the group")
        # Rank 0 of the group makes the root info and the group's own broadcast hands it to the others, as
        # NPU programs do with HcclGetRootInfo + a broadcast + HcclCommInitRootInfo. A rank that failed before
        # the broadcast still takes part in it (the others would wait there until torch.distributed's timeout):
        # rank 0's empty root info tells the others, who raise at once; another rank's failure leaves the others
        # to time out joining without it (HCCL_CONNECT_TIMEOUT), naming it.
        root = bytearray(_cann.ROOT_INFO_BYTES)
        failed = None
        try:
            _ensure_device()
            if group_rank == 0:
                root = bytearray(_cann.root_info())
        except Exception as e:  # raised again once the broadcast is done
            failed = e
        payload = torch.frombuffer(root, dtype=torch.uint8)
        group.broadcast(payload, 0).wait()
        if failed is not None:
            raise failed
        if not any(root):
            raise errors.Error("get_hccl_comm_name: rank 0 of the group could not make its root info (its own "
                               "error says why)")
        handle, name = _cann.init_root_info(size, bytes(payload.numpy()), group_rank)
        # Destroyed with the group. An operation already running on it finishes (the C API holds a communicator
        # while it runs); later calls with the name fail naming it.
        weakref.finalize(group, _cann.destroy, handle)
        if not registered:
            with _lock:
                _backends.setdefault(dist.distributed_c10d._get_default_group(), []).append(group)
        _names[group] = name
        return name


class ThreadCommNames(list):
    """thread_comm_names' names, one per rank (names[i] for the thread on device first_device + i), owning the
    communicators: destroy() (or the end of a `with` block) destroys them. Collecting the list does not: the
    names are strings that code keeps and passes around (`name = thread_comm_names(2)[0]`), so until destroy()
    the communicators live as long as the process. A copy or a pickle is a plain list, owning nothing."""

    def __init__(self, entries):
        super().__init__(name for _, name in entries)
        self._handles = [handle for handle, _ in entries]

    def destroy(self):
        """Destroys the communicators, once (later calls do nothing). An operation already running on one of them
        finishes; later calls with the names fail naming them. Every rank should be done with them: a peer's
        operation waits for this rank in vain (HCCL_EXEC_TIMEOUT)."""
        with _lock:  # two threads calling destroy() destroy each communicator once
            handles, self._handles = self._handles, []
        for handle in handles:
            _cann.destroy(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.destroy()

    def __reduce__(self):
        return list, (list(self),)


def thread_comm_names(n, first_device=0):
    """Names of one communicator of n ranks that are threads of this process, on devices first_device ..
    first_device + n - 1 (rank i's thread sets device first_device + i before calling an operator). Returns a
    ThreadCommNames: a list of the names, whose destroy() destroys the communicators."""
    n = checked_int("thread_comm_names: n", n, 1, 65536)
    first_device = checked_int("thread_comm_names: first_device", first_device, 0, INT32_MAX - (n - 1))
    return ThreadCommNames(_cann.init_all(list(range(first_device, first_device + n))))


_launch_groups = {}  # member list -> how many groups of it this process has made (the n-th is the same everywhere)


def _launch_job():
    for var in ("MOE_EP_RANK", "MOE_EP_WORLD_SIZE", "MOE_EP_RENDEZVOUS"):
        if not os.environ.get(var):
            raise InvalidArgumentError(f"launch_comm_name: {var} is not set; start the ranks with `moe-ep launch -n N`")
    # The library's reading: decimal digits only, 0 <= rank < size <= 2^20, a rendezvous it can name segments with.
    try:
        return _native.read_launch_environment()
    except errors.Error as e:
        # Without the library's hint (which offers mpirun): this function needs a `moe-ep launch` job.
        message = str(e).split("; start the ranks with", 1)[0]
        raise errors.from_code(e.code, f"launch_comm_name: {message}; start the ranks with `moe-ep launch -n N`") from None


def _connect_timeout_s():
    """HCCL_CONNECT_TIMEOUT in seconds (default 120), by the library's rule for it: an integer in [1, 2147483]."""
    text = os.environ.get("HCCL_CONNECT_TIMEOUT", "")
    if not text:
        return 120
    # Digits only, as the library reads it (int() would also take spaces and underscores, which it refuses).
    seconds = int(text, 10) if re.fullmatch(r"[+-]?[0-9]+", text) else None
    if seconds is None or not 1 <= seconds <= (1 << 31) // 1000:
        raise InvalidArgumentError(f"HCCL_CONNECT_TIMEOUT = {text!r} must be an integer number of seconds in "
                                   f"[1, {(1 << 31) // 1000}]")
    return seconds


def launch_comm_name(members=None, timeout=None):
    """[collective over `members`] The name of a communicator of the processes of a `moe-ep launch` job: every
    rank, or the job ranks in `members` (this process's rank in the communicator is its position there), on
    this host. Every process makes its communicators in the same order. timeout: seconds each member waits
    for the root info (None: HCCL_CONNECT_TIMEOUT, else 120); the join that follows always waits
    HCCL_CONNECT_TIMEOUT. A TimeoutError for the root info lists the first member's job rank."""
    rank, size, token = _launch_job()
    members = list(range(size)) if members is None else checked_ints("launch_comm_name: members", members, 0, INT32_MAX)
    if timeout is not None:
        timeout = checked_real("launch_comm_name: timeout", timeout)
        if not 0 < timeout < float("inf"):
            raise InvalidArgumentError(f"launch_comm_name: timeout = {timeout} must be a positive number of seconds "
                                       "(None: HCCL_CONNECT_TIMEOUT, else 120)")
    if rank not in members or len(set(members)) != len(members) or not all(0 <= m < size for m in members):
        raise InvalidArgumentError(f"launch_comm_name: members {members} must be distinct job ranks in [0, {size}) "
                                   f"and include this process's rank {rank}")
    is_root = members.index(rank) == 0
    # How long a member waits for the root info: checked before anything is made.
    wait = None if is_root else timeout if timeout is not None else _connect_timeout_s()
    with _lock:
        nth = _launch_groups.get(tuple(members), 0)
    # The first member makes the root info and hands it over in a file only the job can name (its name comes
    # from the job's unguessable token) and only this user can read; the others wait for it.
    key = hashlib.sha256(f"{token}|{members}|{nth}".encode()).hexdigest()[:40]
    path = f"/dev/shm/moe_ep_root_{key}"
    _ensure_device()
    if is_root:
        root = _cann.root_info()
        try:
            fd = os.open(path + ".part", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise errors.Error(f"launch_comm_name: cannot create {path}.part: {e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(root)
            os.rename(path + ".part", path)
        except BaseException:  # a full /dev/shm, Ctrl-C: a retry of this attempt makes the file again
            _remove(path + ".part")
            raise
    else:
        deadline = time.monotonic() + wait
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise errors.TimeoutError(f"launch_comm_name: job rank {members[0]} (the first member) made no root info "
                                    f"within {wait} s", missing_ranks=[members[0]])
            time.sleep(0.01)
        with open(path, "rb") as f:
            root = f.read()
    try:
        _, name = _cann.init_root_info(len(members), root, members.index(rank))
    finally:
        if is_root:  # every member has joined (or the wait failed): nobody needs the root info any more
            _remove(path)
    with _lock:  # counted once it exists: a failed attempt does not shift this process's numbering
        _launch_groups[tuple(members)] = nth + 1
    return name


def _remove(path):
    """Removes path, which someone else may have removed already."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _hccl_group_class():
    from torch.distributed import ProcessGroupGloo

    class HcclProcessGroup(ProcessGroupGloo):
        """A gloo process group that also names its moe_ep communicator, like torch_npu's HCCL groups."""

        def get_hccl_comm_name(self, rank=None, *args, **kwargs):
            return get_hccl_comm_name(self, rank, *args, **kwargs)

    return HcclProcessGroup


def register_hccl_backend():
    """Registers the "hccl" backend (gloo underneath). Idempotent.

    On torch >= 2.0, where dist.new_group returns a ProcessGroup wrapping the backend, ProcessGroup also gets
    get_hccl_comm_name; on torch >= 2.1 the "npu" device name is given to torch's extension device (as
    torch_npu does) and the backend serves it too, so that group._get_backend(torch.device("npu")) finds it."""
    with _lock:  # two threads registering at once: one registers, the other finds it registered
        if "HCCL" in dist.Backend._plugins:
            return
        group_class = _hccl_group_class()

        def create(store, rank, size, timeout):
            return group_class(store, rank, size, timeout)

        import inspect

        devices = None
        rename = getattr(torch.utils, "rename_privateuse1_backend", None)
        if rename is not None and "devices" in inspect.signature(dist.Backend.register_backend).parameters:
            if torch._C._get_privateuse1_backend_name() == "privateuseone":
                rename("npu")
            if torch._C._get_privateuse1_backend_name() == "npu":
                devices = ["cpu", "npu"]
        if devices is None:
            dist.Backend.register_backend("hccl", create)
        else:
            dist.Backend.register_backend("hccl", create, devices=devices)
        # ProcessGroupGloo too: torch >= 2.1 keeps the backend create() returned only in C++, and a later
        # group._get_backend(device) hands out a new Python object of the class C++ knows it by, gloo's.
        for cls in (dist.ProcessGroup, getattr(dist, "ProcessGroupGloo", None)):
            if cls is not None and not hasattr(cls, "get_hccl_comm_name"):
                cls.get_hccl_comm_name = lambda self, rank=None, *args, **kwargs: get_hccl_comm_name(
                    self, rank, *args, **kwargs)
