"""Tensors crossing into the C++ extension: torch tensors (CPU) and numpy arrays become tuples
(address, dtype name, shape, strides in elements); outputs are allocated in the caller's kind."""

from . import _moe_ep
from .errors import InvalidArgumentError

try:
    import torch
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


def dtype_name(t):
    """moe_ep's name for the element type of a torch tensor, a numpy array or a bf16() array."""
    if isinstance(t, bf16):
        return "bf16"
    if is_torch(t):
        return _TORCH.get(t.dtype, str(t.dtype))
    return _NUMPY.get(np.asarray(t).dtype, str(np.asarray(t).dtype))


def spec(t, name):
    """The tuple the extension reads, or None for None. Only CPU tensors: their memory is what ranks share."""
    if t is None:
        return None
    if is_torch(t):
        if t.device.type != "cpu":
            raise InvalidArgumentError(f"{name} is on {t.device}; moe_ep runs on CPU tensors")
        if t.dtype not in _TORCH:
            raise InvalidArgumentError(f"{name} has dtype {t.dtype}, which no moe_ep operator takes")
        return (t.data_ptr(), _TORCH[t.dtype], list(t.shape), list(t.stride()))
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


# Test aid: fill the native API's outputs with a byte pattern instead of zeros, so that an element the
# operation should write but does not shows up.
poison_outputs = False


def _count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


_ELEMENT_SIZE = {d: torch.empty((), dtype=d).element_size() for d in _TORCH} if torch is not None else {}


def empty_torch(shape, dtype):
    """An uninitialised torch tensor in a pooled block (its pages stay mapped for the next call's outputs)."""
    n = _count(shape)
    if n == 0:
        return torch.empty(shape, dtype=dtype)
    block = _moe_ep.allocate(n * _ELEMENT_SIZE[dtype])
    return torch.frombuffer(block, dtype=dtype, count=n).view(shape)


def output(like, dtype, shape, zeroed=True):
    """An output of `shape` in the kind of `like` (torch or numpy); dtype is a moe_ep name. zeroed=False
    leaves it uninitialised, in a pooled block: a receive bound the operation fills only in part costs no
    pass over memory, and no page faults once the pool holds a block of its size."""
    if is_torch(like):
        torch_dtype = {v: k for k, v in _TORCH.items()}[dtype]
        t = torch.zeros(shape, dtype=torch_dtype) if zeroed and not poison_outputs else empty_torch(shape, torch_dtype)
    else:
        numpy_dtype = np.dtype(np.uint16 if dtype == "bf16" else {v: k for k, v in _NUMPY.items()}[dtype])
        n = _count(shape)
        if zeroed and not poison_outputs or n == 0:
            t = np.zeros(shape, dtype=numpy_dtype)
        else:
            t = np.frombuffer(_moe_ep.allocate(n * numpy_dtype.itemsize), dtype=numpy_dtype, count=n).reshape(shape)
    if poison_outputs and is_torch(t):
        t.view(-1).view(torch.uint8).fill_(0xA5)
    elif poison_outputs:
        t.reshape(-1).view(np.uint8).fill(0xA5)
    return bf16(t) if dtype == "bf16" and not is_torch(t) else t
