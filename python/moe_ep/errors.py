"""moe_ep's exceptions: every failure of the package is a moe_ep.Error carrying the code of the C++
library or the CANN C API (CANN's numbers where CANN has one) and a message naming the parameter, its
value and the rule."""

import builtins
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


def checked_int(name, value, lo, hi):
    """`value` as an int (anything with __index__), or InvalidArgumentError naming `name` and [lo, hi]."""
    try:
        value = operator.index(value)
    except TypeError:
        raise InvalidArgumentError(f"{name} = {value!r} must be an int") from None
    if not lo <= value <= hi:
        raise InvalidArgumentError(f"{name} = {value} must be in [{lo}, {hi}]")
    return value


class TimeoutError(Error, builtins.TimeoutError):
    """A wait passed its deadline. `missing_ranks` lists the ranks (in the group's numbering) that did not
    arrive in time."""

    def __init__(self, message, code=TIMEOUT, missing_ranks=()):
        super().__init__(message, code)
        self.missing_ranks = list(missing_ranks)


_INVALID = {NULL_POINTER, INVALID_PARAM, INVALID_CONFIG, HCCL_E_PARA, HCCL_E_PTR, HCCL_E_NOT_SUPPORT,
            ACL_ERROR_INVALID_PARAM}
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
