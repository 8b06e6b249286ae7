// moe_ep errors: one exception type carrying a code (CANN's numbers where CANN has one) and a message
// that names the operation, the parameter, its value and the rule.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

// The public API: exported from libmoe_ep, whose other symbols are hidden.
#pragma GCC visibility push(default)
namespace moe_ep {

/// Error codes. The first three are the CANN aclnn status values the C API returns unchanged.
enum class ErrorCode : int32_t {
  kOk = 0,
  kNullPointer = 161001,    ///< ACLNN_ERR_PARAM_NULLPTR: a required tensor or string is missing
  kInvalidParam = 161002,   ///< ACLNN_ERR_PARAM_INVALID: unsupported dtype / parameter
  kInvalidConfig = 561002,  ///< ACLNN_ERR_INNER_TILING_ERROR: shape, attribute range or window size rule
  kTimeout = 507034,        ///< a wait passed its deadline (CANN ACL_ERROR_RT_VECTOR_CORE_TIMEOUT: the
                            ///< MoE kernels run on vector cores): some peer did not arrive in time
  kInternal = 500002,       ///< a bug in moe_ep or the system (e.g. mmap failed)
};

/// The exception moe_ep's functions throw for what they check and what they wait for; what() is the full message.
/// (The system's own, std::bad_alloc say, pass through as they are.)
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

/// Thrown when a wait passes its deadline; names the ranks that did not arrive.
class TimeoutError : public Error {
 public:
  TimeoutError(const std::string& message, std::vector<int> missing_ranks)
      : Error(ErrorCode::kTimeout, message), missing_ranks_(std::move(missing_ranks)) {}
  /// Ranks (in the group's numbering) whose signal never came.
  const std::vector<int>& missing_ranks() const { return missing_ranks_; }

 private:
  std::vector<int> missing_ranks_;
};

/// Thrown when a wait ended before its deadline because the interrupt check asked it to (SetInterruptCheck). Its
/// code() is kTimeout's; catch this class to tell the two apart. An operation interrupted failed part-way, as after
/// a timeout, and the group needs BufferReset before its next operation; an interrupted barrier, probe or join
/// needs none. missing_ranks() names the ranks still awaited (none where no peer was).
class InterruptedError : public TimeoutError {
 public:
  using TimeoutError::TimeoutError;
};

/// Installs `check`, which every wait of an operation, a barrier, a probe or a group's join calls on the waiting
/// thread about every 10 ms once it has waited that long (and a rank's thread while it waits for its worker threads):
/// when it returns true, the wait ends with InterruptedError.
/// Say, a SIGINT handler sets a flag that `check` reads (the Python package checks the interpreter's signals).
/// Process-wide; nullptr (the default) removes it. `check` must be quick and safe to call from any thread; a check
/// that throws counts as returning true (its exception is dropped). A call's threads (its rank's worker threads, the
/// other ranks of a thread group) each end their own wait only on their own true answer: a check must keep answering
/// true until the program handles the interrupt (a flag the handler sets and the program clears after the call
/// returned, not one the first check clears), or the others wait on to their deadline. A call that fails once its
/// rows were announced still waits, at most 10 s, for the peers reading them before it returns.
void SetInterruptCheck(bool (*check)());

}  // namespace moe_ep
#pragma GCC visibility pop
