// The validation rules of docs/semantics.md section 1 as checks that run before any data moves. Each failure throws
// moe_ep::Error with CANN's code and a message naming the operation, parameter, value and rule.
#pragma once

#include <cstdint>
#include <string>

#include "plan/config.h"
#include "plan/op_tensors.h"

namespace moe_ep::plan {

/// `text` (a parameter's name, or a rule naming parameters) as `config`'s caller knows them: the native API's names
/// (expert_ids, DispatchHandle::ep_recv_counts, ...) when config.native_names, else CANN's (expertIds, epSendCounts).
std::string ParamNames(const MoeConfig& config, const std::string& text);

/// Window capacities the rule of docs/semantics.md 1.2 is checked against (bytes; tp 0 when there is no TP window).
struct WindowCapacity {
  uint64_t ep_bytes = 0;
  uint64_t tp_bytes = 0;
};

/// Checks dispatch attributes and tensors. Fills the shape fields of `config` (bs, hidden, top_k,
/// x_dtype, mask) from the tensors. `op` names the operation in messages.
void ValidateDispatch(MoeConfig& config, const DispatchTensors& tensors, Profile profile, WindowCapacity window,
                      const char* op);

/// The attribute rules alone (group, experts, Bs, H, K, globalBs) on a `config` that holds bs, hidden
/// and top_k: what must hold before A is computed from it.
void ValidateAttributes(MoeConfig& config, Profile profile, const char* op);

/// The rules on dispatch's inputs and attributes alone (outputs may be absent), and that `window` holds
/// the call: what must hold before outputs are sized, and allocated, from `config`. Fills the same shape
/// fields.
void ValidateDispatchInputs(MoeConfig& config, const DispatchTensors& tensors, Profile profile, WindowCapacity window,
                            const char* op);

/// Checks combine (and CombineAddRmsNorm when tensors.add_rms_norm) attributes and tensors; fills the
/// shape fields of `config` from the tensors.
void ValidateCombine(MoeConfig& config, const CombineTensors& tensors, Profile profile, WindowCapacity window,
                     const char* op);

/// No output may share memory with another output or with an input (the span from a view's first byte to its
/// last): peers read the inputs in place while this rank writes its outputs, and an output written over another
/// loses one of them. 161002 naming both. On views a Validate* accepted, where the outputs are the caller's own
/// (not stand-ins that only describe them, which Validate* may be given). With `compared`, only the views whose
/// memory it accepts are compared (the C API's phase one: those in its allocations, which stand-ins never are).
using MemoryFilter = bool (*)(const void* data);
void CheckOutputsApart(const DispatchTensors& tensors, Profile profile, const char* op,
                       MemoryFilter compared = nullptr);
void CheckOutputsApart(const CombineTensors& tensors, Profile profile, const char* op, MemoryFilter compared = nullptr);

}  // namespace moe_ep::plan
