"""Group names for moe_ep.torch_npu's operators, as NPU code gets them from its process groups:

* get_hccl_comm_name(group, rank): the name of a torch.distributed group (any backend that can
  broadcast a CPU tensor, e.g. gloo); every rank of the group calls it, the first time collectively.
* register_hccl_backend(): opt-in "hccl" backend, gloo underneath, whose groups have
  group.get_hccl_comm_name(rank), so that `dist.init_process_group("hccl")`, `dist.new_group(backend="hccl")`
  and the name lookup of NPU code run unchanged.
* thread_comm_names(n): n ranks as threads of this process (no torch.distributed); thread i calls
  moe_ep.torch_npu.npu.set_device(i) and then uses names[i].
"""

import threading

import torch
import torch.distributed as dist

from ._moe_ep import cann as _cann
from .errors import InvalidArgumentError

_lock = threading.Lock()
_names = {}  # process group -> (communicator handle, name); a group keeps its communicator for life


def _ensure_device():
    # The communicator lives on the calling thread's device (torch_npu: torch.npu.set_device); a process
    # that never chose one runs on device 0, like a single-device process.
    if _cann.current_device() < 0:
        _cann.set_device(0)


def get_hccl_comm_name(group=None, rank=None):
    """The HCCL-style communicator name of `group` (default: the world group) for the torch_npu operators.
    Collective the first time for a group (every rank of it calls); then cached. `rank` (the global rank
    NPU code passes to pick the device) is accepted and not needed."""
    del rank
    if not dist.is_initialized():
        raise InvalidArgumentError("get_hccl_comm_name: torch.distributed is not initialized "
                                   "(call dist.init_process_group first, or use thread_comm_names)")
    if group is None:
        group = dist.distributed_c10d._get_default_group()
    with _lock:
        if group in _names:
            return _names[group][1]
    group_rank, size = dist.get_rank(group), dist.get_world_size(group)
    if group_rank < 0:
        raise InvalidArgumentError("get_hccl_comm_name: this process is not a member of the group")
    _ensure_device()
    # Rank 0 of the group makes the root info and the group's own broadcast hands it to the others, as
    # NPU programs do with HcclGetRootInfo + a broadcast + HcclCommInitRootInfo.
    root = bytearray(_cann.root_info()) if group_rank == 0 else bytearray(4108)
    payload = torch.frombuffer(root, dtype=torch.uint8)
    group.broadcast(payload, 0).wait()
    handle, name = _cann.init_root_info(size, bytes(payload.numpy()), group_rank)
    with _lock:
        _names[group] = (handle, name)
    return name


def thread_comm_names(n, first_device=0):
    """Names of one communicator of n ranks that are threads of this process, on devices first_device ..
    first_device + n - 1 (rank i's thread sets device first_device + i before calling an operator)."""
    if n < 1:
        raise InvalidArgumentError(f"thread_comm_names: n = {n} must be at least 1")
    return [name for _, name in _cann.init_all(list(range(first_device, first_device + n)))]


def _hccl_group_class():
    from torch.distributed import ProcessGroupGloo

    class HcclProcessGroup(ProcessGroupGloo):
        """A gloo process group that also names its moe_ep communicator, like torch_npu's HCCL groups."""

        def get_hccl_comm_name(self, rank=None):
            return get_hccl_comm_name(self, rank)

    return HcclProcessGroup


def register_hccl_backend():
    """Registers the "hccl" backend (gloo underneath). Idempotent."""
    if "HCCL" in dist.Backend._plugins:
        return
    group_class = _hccl_group_class()

    def create(store, rank, size, timeout):
        return group_class(store, rank, size, timeout)

    dist.Backend.register_backend("hccl", create)
