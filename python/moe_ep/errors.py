"""moe_ep's exceptions: every failure of the package is a moe_ep.Error carrying the code of the C++
library or the CANN C API (CANN's numbers where CANN has one) and a message naming the parameter, its
value and the rule."""

import builtins
import numbers
import operator
import re

# aclnn parameter errors (the operators' validation) and the C++ library's own codes (moe_ep/error.h).
NULL_POINTER = 161001  # a required tensor or string is missing
INVALID_PARAM = 161002  # unsupported dtype or parameter value
INVALID_CONFIG = 561002  # a shape, attribute range or window size rule
TIMEOUT = 507034  # a wait passed its deadline: some peer did not arrive
STREAM_SYNC_TIMEOUT = 507046
INTERNAL = 500002
# HCCL statuses of the communicator calls (hccl_types.h).
HCCL_E_PARA, HCCL_E_PTR, HCCL_E_NOT_SUPPORT, HCCL_E_TIMEOUT = 1, 2, 5, 9
ACL_ERROR_INVALID_PARAM = 100000
# A device id out of range (acl_base.h).
ACL_ERROR_RT_INVALID_DEVICEID = 107001


class Error(RuntimeError):
    """Any failure of moe_ep. `code` is the status the C++ library or the CANN C API returned."""

    def __init__(self, message, code=INTERNAL):
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidArgumentError(Error, ValueError):
    """A parameter broke a rule of the operator or the call (also a ValueError)."""

    def __init__(self, message, code=INVALID_PARAM):
        super().__init__(message, code)


INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def checked_int(name, value, lo, hi):
    """`value` as an int (anything with __index__ but a bool), or InvalidArgumentError naming `name` and [lo, hi].
    A bool is refused, as torch_npu's argument parser refuses it for an int parameter: True is not a count."""
    if type(value) is not int:  # the common case costs no call
        if isinstance(value, bool):
            raise InvalidArgumentError(f"{name} = {value!r} must be an int, not a bool")
        try:
            value = operator.index(value)
        except TypeError:
            raise InvalidArgumentError(f"{name} = {value!r} must be an int") from None
    if not lo <= value <= hi:
        raise InvalidArgumentError(f"{name} = {value} must be in [{lo}, {hi}]")
    return value


def checked_ints(name, values, lo, hi):
    """A sequence of ints as a list, each by checked_int (named name[i]); a value that is no sequence is refused."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InvalidArgumentError(f"{name} = {values!r} must be a sequence of ints")
    return [checked_int(f"{name}[{i}]", v, lo, hi) for i, v in enumerate(values)]


def checked_attrs(op, values, lo=0, hi=INT32_MAX):
    """The dict of integer attributes `values`, each an int in [lo, hi] (named "op: name"); the operators bound them
    further. A value that is no int, or none an int64 holds, is refused as its type (INVALID_PARAM); an int outside
    [lo, hi] breaks the operator's range rule, refused as the library refuses one (INVALID_CONFIG)."""
    for name, value in values.items():
        if type(value) is not int or not lo <= value <= hi:  # the common case costs no call
            try:
                values[name] = checked_int(f"{op}: {name}", value, lo, hi)
            except InvalidArgumentError as e:
                if isinstance(value, numbers.Integral) and not isinstance(value, bool) and \
                        -INT64_MAX - 1 <= int(value) <= INT64_MAX:
                    e.code = INVALID_CONFIG
                raise
    return values


def checked_name(name, value, what):
    """`value` if it is a str without NUL (which would end it early on its way to C), else InvalidArgumentError
    naming `name` and saying it must be `what`."""
    if not isinstance(value, str) or "\0" in value:
        raise InvalidArgumentError(f"{name} = {value!r} must be a str without NUL characters ({what})")
    return value


def checked_bool(name, value):
    """`value` as a bool: True or False, 0 or 1, or a 0-d numpy / torch value of those (numpy.bool_, a bool
    tensor's element); else InvalidArgumentError naming `name`: "no" or 2 would otherwise be taken as True."""
    if value is True or value is False:
        return value
    item = value.item() if getattr(value, "ndim", None) == 0 and hasattr(value, "item") else value
    if isinstance(item, bool):
        return item
    if type(item) is int and item in (0, 1):
        return bool(item)
    raise InvalidArgumentError(f"{name} = {value!r} must be True or False (or 0 or 1)")


def checked_mask(name, values):
    """A 0/1 mask (a sequence of bools or of 0 and 1: a list, a numpy or torch bool array) as a list of ints, each
    by checked_bool (named name[i]); a value that is no sequence is refused. An int32 entry other than 0 or 1 breaks
    the operator's rule, refused as the library refuses one (INVALID_CONFIG); anything else as its type."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InvalidArgumentError(f"{name} = {values!r} must be a sequence of 0 and 1 (or of bools)")
    mask, wrong_value = [], None  # an entry of the wrong kind is named before one of the wrong value
    for i, value in enumerate(values):
        try:
            mask.append(int(checked_bool(f"{name}[{i}]", value)))
        except InvalidArgumentError:
            item = value.item() if getattr(value, "ndim", None) == 0 and hasattr(value, "item") else value
            if not (isinstance(item, numbers.Integral) and not isinstance(item, bool) and
                    -INT32_MAX - 1 <= int(item) <= INT32_MAX):
                raise
            wrong_value = wrong_value or InvalidArgumentError(f"{name}[{i}] = {value!r} must be 0 or 1",
                                                              code=INVALID_CONFIG)
    if wrong_value:
        raise wrong_value
    return mask


def checked_real(name, value):
    """`value` as a float if it is a real number (an int or a float, not a bool), else InvalidArgumentError
    naming `name`."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int past the largest float
            raise InvalidArgumentError(f"{name} = {value} is too large for a float") from None
    raise InvalidArgumentError(f"{name} = {value!r} must be a real number")


class TimeoutError(Error, builtins.TimeoutError):
    """A wait passed its deadline. `missing_ranks` lists the ranks (in the group's numbering) that did not
    arrive in time."""

    def __init__(self, message, code=TIMEOUT, missing_ranks=()):
        super().__init__(message, code)
        self.missing_ranks = list(missing_ranks)


_INVALID = {NULL_POINTER, INVALID_PARAM, INVALID_CONFIG, HCCL_E_PARA, HCCL_E_PTR, HCCL_E_NOT_SUPPORT,
            ACL_ERROR_INVALID_PARAM, ACL_ERROR_RT_INVALID_DEVICEID}
_TIMEOUTS = {TIMEOUT, STREAM_SYNC_TIMEOUT, HCCL_E_TIMEOUT}
# The C API reports a timeout as text; the library writes "... from rank 3; ..." / "from ranks 1, 5; ...".
_MISSING = re.compile(r"from ranks? ([0-9]+(?:, [0-9]+)*)[;)]")


def from_code(code, message, missing_ranks=None):
    """The exception for a failure with this code (called by the C++ extension)."""
    if code in _TIMEOUTS:
        if missing_ranks is None:
            found = _MISSING.search(message)
            missing_ranks = [int(r) for r in found.group(1).split(", ")] if found else []
        return TimeoutError(message, code, missing_ranks)
    if code in _INVALID:
        return InvalidArgumentError(message, code)
    return Error(message, code)
