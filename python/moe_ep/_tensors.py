"""Tensors crossing into the C++ extension: torch tensors (CPU) and numpy arrays become tuples
(address, dtype name, shape, strides in elements). Outputs come back made by the extension, in the
caller's kind."""

from . import _moe_ep
from .errors import InvalidArgumentError

try:
    import torch
    import torch.utils.dlpack
except ImportError:  # numpy-only use of the native API
    torch = None
import numpy as np

# moe_ep's dtype names (moe_ep/tensor.h DTypeName) for torch and numpy dtypes. numpy has no bf16: a
# uint16 array marked with bf16() travels as bf16.
_TORCH = {}
if torch is not None:
    _TORCH = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "float32", torch.int8: "int8",
              torch.int32: "int32", torch.int64: "int64", torch.bool: "bool"}
_NUMPY = {np.dtype(np.float16): "fp16", np.dtype(np.float32): "float32", np.dtype(np.int8): "int8",
          np.dtype(np.int32): "int32", np.dtype(np.int64): "int64", np.dtype(np.bool_): "bool"}


class bf16:
    """A numpy uint16 array whose elements are bf16 bit patterns (numpy has no bf16 type)."""

    def __init__(self, array):
        array = np.asarray(array)
        if array.dtype != np.uint16:
            raise InvalidArgumentError(f"bf16() takes a uint16 array of bf16 bit patterns, not {array.dtype}")
        self.array = array

    @property
    def shape(self):
        return self.array.shape


def is_torch(t):
    return torch is not None and isinstance(t, torch.Tensor)


def spec(t, name):
    """The tuple the extension reads, or None for None. Only CPU tensors: their memory is what ranks share."""
    if t is None:
        return None
    if is_torch(t):
        if not t.is_cpu:
            raise InvalidArgumentError(f"{name} is on {t.device}; moe_ep runs on CPU tensors")
        if t.layout != torch.strided:  # a sparse or mkldnn tensor has no data pointer: its elements are elsewhere
            raise InvalidArgumentError(f"{name} has layout {t.layout}; moe_ep takes dense tensors (torch.strided: "
                                       "call .to_dense() first)")
        dtype = _TORCH.get(t.dtype)
        if dtype is None:
            raise InvalidArgumentError(f"{name} has dtype {t.dtype}, which no moe_ep operator takes")
        return (t.data_ptr(), dtype, t.shape, t.stride())  # torch.Size is a tuple
    if isinstance(t, bf16):
        a, name_of_dtype = t.array, "bf16"
    elif isinstance(t, np.ndarray):
        a = t
        if a.dtype not in _NUMPY:
            raise InvalidArgumentError(f"{name} has dtype {a.dtype}, which no moe_ep operator takes "
                                       "(bf16 data: pass moe_ep.bf16(uint16_array))")
        name_of_dtype = _NUMPY[a.dtype]
    else:
        raise InvalidArgumentError(f"{name} is a {type(t).__name__}; moe_ep takes torch tensors and numpy arrays")
    if any(s % a.itemsize for s in a.strides):
        raise InvalidArgumentError(f"{name} has strides {a.strides} that are not whole elements")
    return (a.ctypes.data, name_of_dtype, list(a.shape), [s // a.itemsize for s in a.strides])


def specs(named):
    """{name: spec(t, name)} of a dict of tensors (None stays None, without a call)."""
    return {name: t if t is None else spec(t, name) for name, t in named.items()}


# Test aid: fill the native API's outputs with a byte pattern before the operation runs, so that an
# element the operation should write but does not shows up (outputs are otherwise uninitialised).
poison_outputs = False

_ELEMENT_SIZE = {d: torch.empty((), dtype=d).element_size() for d in _TORCH} if torch is not None else {}

# The extension makes every output (in its pool) and hands torch ones over DLPack.
_moe_ep.set_tensor_types(torch.utils.dlpack.from_dlpack if torch is not None else None, bf16)
