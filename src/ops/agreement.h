// What every rank of a group must agree on for its windows to line up, and the check of it: each call stamps a
// fingerprint of its attributes into its start flags, and a rank reads its peers' before it reads any row of theirs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "ops/op_common.h"
#include "ops/protocol.h"
#include "plan/config.h"

namespace moe_ep::ops::protocol {

enum class AgreedBy : uint8_t { kDispatch, kCombine };

/// The attributes `op`'s ranks must agree on, named as the caller's API names them (a refusal's rule).
std::string AgreedNames(const plan::MoeConfig& c, AgreedBy op);
/// This rank's values of them, so that the refusals of two ranks show which one differs.
std::string AgreedValues(const plan::MoeConfig& c, AgreedBy op);
/// A 31-bit hash of AgreedValues: the value of `op`'s start flags (a dispatch's with kDispatchStartBit set).
uint32_t AttributeFingerprint(const plan::MoeConfig& c, AgreedBy op);
/// Stamps this rank's start of `call`, with its fingerprint, into every rank of the group (itself included), before
/// any payload of the call moves; returns the fingerprint.
uint32_t AnnounceAttributes(const plan::MoeConfig& c, AgreedBy op, transport::Window& ep, const CallSlot& call);
/// Waits for every rank's start of `call` and fails (561002, after `before_refusal`) naming a peer whose fingerprint
/// differs from this rank's: its rows lie where this rank does not look, or are of another size. Returns this rank's
/// fingerprint.
uint32_t CheckPeersAgree(const plan::MoeConfig& c, AgreedBy op, transport::Window& ep, const CallSlot& call,
                         const Link& ctx, const std::function<void()>& before_refusal);

}  // namespace moe_ep::ops::protocol
