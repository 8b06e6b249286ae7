// The attributes a group's ranks must agree on, their fingerprint, and the check of the peers' (ops/agreement.h).
#include "ops/agreement.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "moe_ep/error.h"

namespace moe_ep::ops::protocol {
namespace {

using plan::MoeConfig;

// Each attribute as the C API and the native API name it, this rank's value as a refusal shows it ("": not shown, the
// survivors' order unless scaled down), and the operations whose ranks must agree on it (CANN makes it a
// precondition; moe_ep checks it). The fingerprint hashes the values; a refusal lists them.
struct AgreedAttribute {
  const char* cann;
  const char* native;
  std::string (*shown)(const MoeConfig& c);
  bool dispatch = true;
  bool combine = true;
};
const AgreedAttribute kAgreed[] = {
    {"epWorldSize", "the group's size", [](const MoeConfig& c) { return std::to_string(c.ep_world_size); }},
    {"moeExpertNum", "ExpertLayout::moe_expert_num",
     [](const MoeConfig& c) {  // scaled down: the survivors' experts, of the group's (where special ids start)
       return std::to_string(c.moe_expert_num) +
              (c.retired_expert_num > 0 ? " of " + std::to_string(c.first_special_expert()) : "");
     }},
    {"sharedExpertNum", "ExpertLayout::shared_expert_num",
     [](const MoeConfig& c) { return std::to_string(c.shared_expert_num); }},
    {"sharedExpertRankNum", "ExpertLayout::shared_expert_rank_num",
     [](const MoeConfig& c) { return std::to_string(c.shared_expert_rank_num); }},
    {"zero/copy/constExpertNum", "ExpertLayout::zero/copy/const_expert_num",
     [](const MoeConfig& c) {
       return std::to_string(c.zero_expert_num) + "/" + std::to_string(c.copy_expert_num) + "/" +
              std::to_string(c.const_expert_num);
     }},
    {"maxBs (globalBs / epWorldSize, else Bs)", "maxBs (ExpertLayout::global_bs / the group's size, else Bs)",
     [](const MoeConfig& c) { return std::to_string(c.max_bs()); }},
    {"K", "K", [](const MoeConfig& c) { return std::to_string(c.top_k); }},
    {"H", "H", [](const MoeConfig& c) { return std::to_string(c.hidden); }},
    {"x dtype", "x dtype", [](const MoeConfig& c) { return std::string(DTypeName(c.x_dtype)); }},
    {"quantMode (on Atlas A2: expandXOut's dtype)", "DispatchOptions::quant",
     [](const MoeConfig& c) { return std::to_string(c.quant_mode); }, true, false},
    {"commQuantMode", "CombineOptions::comm_quant",
     [](const MoeConfig& c) { return std::to_string(c.comm_quant_mode); }, false, true},
    {"tpWorldSize", "tpWorldSize (2 with a tp pair)",
     [](const MoeConfig& c) { return std::string(c.has_tp() ? "2" : "0 or 1"); }},
    {"product (MOE_EP_SOC_NAME)", "layout (DispatchOptions::expand_idx_layout)",
     [](const MoeConfig& c) { return std::string(c.expand_idx() ? "Atlas A2" : "Atlas A3"); }},
    {"survivors' order (elasticInfo's Table2)", "survivors' order (ExpertLayout::survivors)",
     [](const MoeConfig& c) {
       char hex[19] = "";
       if (c.survivors) std::snprintf(hex, sizeof hex, "0x%016llx", static_cast<unsigned long long>(c.survivors));
       return std::string(hex);
     }},
};

bool AgreedIn(const AgreedAttribute& a, AgreedBy op) { return op == AgreedBy::kDispatch ? a.dispatch : a.combine; }

}  // namespace

std::string AgreedNames(const MoeConfig& c, AgreedBy op) {
  std::string names;
  for (const AgreedAttribute& a : kAgreed) {
    if (AgreedIn(a, op)) (names += names.empty() ? "" : ", ") += c.native_names ? a.native : a.cann;
  }
  return names;
}

std::string AgreedValues(const MoeConfig& c, AgreedBy op) {
  std::string values;
  for (const AgreedAttribute& a : kAgreed) {
    const std::string shown = AgreedIn(a, op) ? a.shown(c) : std::string();
    if (shown.empty()) continue;
    std::string name = c.native_names ? a.native : a.cann;
    name.resize(std::min(name.find(" ("), name.size()));  // the name without its explanation
    (((values += values.empty() ? "" : ", ") += name) += " ") += shown;
  }
  return values;
}

// FNV-1a over the values, each ended by a NUL.
uint32_t AttributeFingerprint(const MoeConfig& c, AgreedBy op) {
  uint32_t hash = 2166136261u;
  for (const AgreedAttribute& a : kAgreed) {
    if (!AgreedIn(a, op)) continue;
    for (const unsigned char ch : a.shown(c)) hash = (hash ^ ch) * 16777619u;
    hash *= 16777619u;  // the NUL: "1" "23" and "12" "3" differ
  }
  return op == AgreedBy::kDispatch ? hash | kDispatchStartBit : hash & ~kDispatchStartBit;
}

uint32_t AnnounceAttributes(const MoeConfig& c, AgreedBy op, transport::Window& ep, const CallSlot& call) {
  const uint32_t fingerprint = AttributeFingerprint(c, op);
  SignalStart(ep, c.ep_world_size, c.ep_rank, call, fingerprint);
  return fingerprint;
}

uint32_t CheckPeersAgree(const MoeConfig& c, AgreedBy op, transport::Window& ep, const CallSlot& call, const Link& ctx,
                         const std::function<void()>& before_refusal) {
  const bool dispatch = op == AgreedBy::kDispatch;
  const std::vector<uint32_t> starts =
      WaitForStarts(c, ep, call, ctx.deadline, dispatch,
                    dispatch ? "the announcements (attributes, then token counts)" : "every rank's start of the call");
  const uint32_t own = starts[c.ep_rank];
  for (int64_t peer = 0; peer < c.ep_world_size; ++peer) {
    if (starts[peer] == own) continue;
    before_refusal();
    throw Error(ErrorCode::kInvalidConfig, c.op + ": rank " + std::to_string(peer) + " of " + ep.name() +
                                               " called with attributes that differ from rank " +
                                               std::to_string(c.ep_rank) + "'s (" + AgreedValues(c, op) +
                                               "); rule: " + AgreedNames(c, op) + " must be the same on every rank");
  }
  return own;
}

}  // namespace moe_ep::ops::protocol
