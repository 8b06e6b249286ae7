// CombineV2 / CombineAddRmsNorm (docs/semantics.md 3, 5.3): optionally reduce-scatter with the TP peer, send every
// expert output row back to its token's owner slot t*(K+n_s)+k (pushed; pulled, the slot's flag carries
// the row's index and the owner reads it from this rank's buffer), then on the owner sum each active
// token's rows in the exact fp32 order of docs/semantics.md 3.2 (and the RMSNorm tail of docs/semantics.md 3.5).
#include <algorithm>
#include <cstring>
#include <exception>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kernels/kernels.h"
#include "moe_ep/error.h"
#include "ops/agreement.h"
#include "ops/op_common.h"
#include "ops/protocol.h"
#include "ops/pull.h"
#include "ops/tensor_access.h"
#include "plan/layout.h"
#include "plan/routing.h"
#include "plan/validate.h"

namespace moe_ep::ops::protocol {
namespace {

using plan::MoeConfig;
using plan::WindowLayout;
using transport::MakeFlag;
using transport::Window;

CallSlot NextCombineCall(const Window& w, OpState& state) {
  return NextCall(w, state, plan::kCombineFlagBase, plan::kMaxCombineFlags);
}

[[noreturn]] void BadHandle(const MoeConfig& c, const std::string& param, const std::string& value,
                            const std::string& rule) {
  throw Error(ErrorCode::kInvalidParam, c.op + ": parameter '" + plan::ParamNames(c, param) + "' = " + value +
                                            " violates rule: " + plan::ParamNames(c, rule));
}

// docs/semantics.md 3.1 with tp == 2: our rows for the peer go to its TP window; each of our own rows becomes
// own + peer partial (rounded to the row type) before the EP send. Returns the reduced own rows.
std::vector<uint16_t> ReduceScatterWithTpPeer(const MoeConfig& c, const WindowLayout& layout, Window& tp,
                                              RowReader& expand_x, int64_t own_rows, int64_t peer_rows,
                                              const Link& ctx) {
  const CallSlot call = NextCombineCall(tp, *ctx.tp_state);
  ctx.tp_state->pair_call_open = true;
  const int peer = 1 - tp.rank();
  const uint64_t row_bytes = 2 * static_cast<uint64_t>(c.hidden);
  for (int64_t j = 0; j < peer_rows; ++j) {
    tp.Put(peer, call.half_offset + layout.tp_combine_offset + j * layout.combine_slot_bytes,
           expand_x.Half(own_rows + j), row_bytes);
  }
  tp.Signal(peer, call.flag_base, MakeFlag(call.epoch, static_cast<uint32_t>(peer_rows)));
  const uint32_t partial_rows = transport::FlagCount(WaitOnTpPeer([&] {
    return transport::WaitFlag(tp, call.flag_base, call.epoch, ctx.deadline, peer, c.op.c_str(),
                               "the TP peer's partial rows");
  }));
  ctx.tp_state->pair_call_open = false;
  // Rows the peer did not send would be summed from whatever its window slots held: the pair's handles differ.
  if (partial_rows != own_rows) {
    std::string entry = "[";  // built in steps: "[" + std::string trips GCC 12's -Wrestrict (a false positive)
    entry += std::to_string(tp.rank()) + "] = " + std::to_string(partial_rows) + " on TP rank " + std::to_string(peer);
    BadHandle(c, "tpSendCounts", entry,
              "equals this TP rank's own rows (epSendCounts' last entry = " + std::to_string(own_rows) +
                  "): both ranks of the TP pair pass the handles of one dispatch");
  }
  std::vector<uint16_t> reduced(own_rows * c.hidden);
  for (int64_t i = 0; i < own_rows; ++i) {
    const auto* partial = reinterpret_cast<const uint16_t*>(tp.LocalData() + call.half_offset +
                                                            layout.tp_combine_offset + i * layout.combine_slot_bytes);
    kernels::AddHalfRows(HalfOf(c.x_dtype), expand_x.Half(i), partial, c.hidden, &reduced[i * c.hidden]);
  }
  return reduced;
}

// Combine's wire format of one row: the row itself, or under commQuantMode 2 its int8 values and half
// scales in `staging`.
const uint8_t* WireRow(const MoeConfig& c, const WindowLayout& layout, const uint16_t* row,
                       std::vector<uint8_t>& staging) {
  if (c.comm_quant_mode != 2) return reinterpret_cast<const uint8_t*>(row);
  staging.resize(layout.combine_payload_bytes);
  auto* q = reinterpret_cast<int8_t*>(staging.data());
  auto* scales = reinterpret_cast<uint16_t*>(staging.data() + layout.combine_scale_offset);
  kernels::CommQuantRow(HalfOf(c.x_dtype), row, c.hidden, q, scales);
  return staging.data();
}

// Where one own row goes back to: its token's owner and the owner's combine slot.
struct ReturnRoute {
  int32_t owner;
  int64_t slot;
};

// Atlas A3: from the row's triple, into slot t*(K+n_s)+k.
std::vector<ReturnRoute> TripleRoutes(const WindowLayout& layout, const std::vector<int32_t>& assist,
                                      int64_t own_rows) {
  std::vector<ReturnRoute> routes(own_rows);
  for (int64_t i = 0; i < own_rows; ++i) {
    routes[i] = {assist[3 * i],
                 static_cast<int64_t>(assist[3 * i + 1]) * layout.combine_slots_per_token + assist[3 * i + 2]};
  }
  return routes;
}

// Atlas A2: owner `owner`'s announcement to an expert rank: where that rank's rows start among its slots (field 0)
// and where they end (field 1). Atlas A3 (ReturnedRowsFlag): field 0 of an expert rank's, in the owner's window.
uint64_t SlotBaseFlag(const CallSlot& call, int64_t owner, int field = 0) {
  return plan::kCombineBaseFlagBase + call.parity * plan::kCombineBaseFlagsPerHalf + 2 * owner + field;
}

// Atlas A3: in an owner's window, how many rows expert rank `sender` returns to it in this call.
uint64_t ReturnedRowsFlag(const CallSlot& call, int64_t sender) { return SlotBaseFlag(call, sender, 0); }

// Atlas A3: tells every rank how many rows this one returns to it (none too), once they are announced: an owner that
// refuses them (CheckReturnedRows) then finds the announcement to decline, so this rank does not wait for it.
void AnnounceReturnedRows(const MoeConfig& c, Window& ep, const CallSlot& call,
                          const std::vector<ReturnRoute>& routes) {
  std::vector<uint32_t> rows(c.ep_world_size, 0);
  for (const ReturnRoute& route : routes) ++rows[route.owner];
  for (int owner = 0; owner < static_cast<int>(c.ep_world_size); ++owner) {
    ep.Signal(owner, ReturnedRowsFlag(call, c.ep_rank), MakeFlag(call.epoch, rows[owner]));
  }
}

// Atlas A3: the rows each rank must return to this one as this rank's expertIds and xActiveMask route its tokens
// (dispatch's plan): one per active pair to a MoE expert, from its rank, and one per active token from the rank of each
// of the n_s shared experts serving this rank.
std::vector<int64_t> ExpectedReturnedRows(const MoeConfig& c, const std::vector<int32_t>& ids,
                                          const std::vector<uint8_t>& mask) {
  const plan::RoutingPlan routing = plan::BuildRoutingPlan(c, ids.data(), mask.empty() ? nullptr : mask.data());
  std::vector<int64_t> rows(c.ep_world_size, 0);
  for (const plan::RoutedPair& p : routing.pairs) ++rows[c.ExpertRank(p.expert)];
  for (int64_t i = 0; i < c.shared_expert_num; ++i) {
    rows[c.SharedRank(i, c.ep_rank)] += static_cast<int64_t>(routing.valid_tokens.size());
  }
  return rows;
}

// Atlas A3: refuses the call (161002) when a rank returns this one another number of rows than this rank's expertIds
// and xActiveMask route to it: they are not those of the dispatch that made the handles, and this rank would sum rows
// of other tokens, or wait for rows that never come, while a rank whose rows it never reads waited for it. Refusing, it
// declines every announced row (pull: their senders go on) and lets the ranks reading its own rows finish first (their
// calls are sound); then no output is written. A rank that stopped before telling (its call failed) is waited for
// until the deadline, and named.
void CheckReturnedRows(const MoeConfig& c, Window& ep, const CallSlot& call, const std::vector<int32_t>& ids,
                       const std::vector<uint8_t>& mask, const std::vector<uint8_t>& readers, const Link& ctx) {
  std::vector<uint64_t> flags(c.ep_world_size);
  for (int64_t sender = 0; sender < c.ep_world_size; ++sender) flags[sender] = ReturnedRowsFlag(call, sender);
  transport::WaitFlags(
      ep, flags, call.epoch, ctx.deadline,
      [&](uint64_t index) { return static_cast<int>(std::find(flags.begin(), flags.end(), index) - flags.begin()); },
      c.op.c_str(), "every rank's count of the rows it returns");
  const std::vector<int64_t> expected = ExpectedReturnedRows(c, ids, mask);
  for (int64_t sender = 0; sender < c.ep_world_size; ++sender) {
    const int64_t returned = transport::FlagCount(ep.ReadFlag(flags[sender]));
    if (returned == expected[sender]) continue;
    const pull::CallFlags pull_flags(plan::kCombinePullFlagBase, call);
    { pull::Claims none(ep, pull_flags, c.op.c_str()); }  // going unfinished, it declines every sender's rows
    std::vector<uint8_t> peers = readers;
    peers[c.ep_rank] = pull::kNoReader;  // its own rows, unread, are withdrawn with the rest (Combine's catch)
    // A reader still reading at the deadline fails the call as a timeout (the group then needs a reset), not this
    // refusal, which would leave it usable.
    pull::WaitDone(ep, pull_flags, peers, ctx.deadline, c.op.c_str());
    const std::string who = "rank " + std::to_string(sender);
    BadHandle(c, "expertIds",
              std::to_string(expected[sender]) + " rows from " + who +
                  " (the active pairs to its experts, by xActiveMask, and the shared experts' rows it serves)",
              "equals the rows " + who + " returns (" + std::to_string(returned) +
                  ", by its assistInfoForCombine and epSendCounts): expertIds and xActiveMask are those of the "
                  "dispatch that made the handles");
  }
}

// Atlas A2 (docs/a2.md): an owner's slots hold its (token, k) pairs in expert order, so the row of pair (t, k)
// to expert e is at slot first[e] + expandIdx[t*K+k], first[e] = the owner's pairs to lower experts.
struct ExpandIdxSlots {
  std::vector<int64_t> first;  // per MoE expert, then the total
  std::vector<int64_t> slots;  // per (token, k) pair: its slot, -1 for none
};

// This rank's slots as an owner, from its routing and expandIdx alone: checked before anything is announced, so a
// bad expandIdx is refused before the call communicates (its peers then wait for this rank, and time out naming it).
ExpandIdxSlots PlanExpandIdxSlots(const MoeConfig& c, const std::vector<int32_t>& ids, const std::vector<uint8_t>& mask,
                                  const std::vector<int32_t>& expand_idx) {
  // The pairs dispatch sent, as dispatch routed them.
  const plan::RoutingPlan routing = plan::BuildRoutingPlan(c, ids.data(), mask.empty() ? nullptr : mask.data());
  ExpandIdxSlots out{std::vector<int64_t>(c.moe_expert_num + 1, 0), std::vector<int64_t>(c.bs * c.top_k, -1)};
  std::vector<int64_t>& first = out.first;
  for (int64_t e = 0; e < c.moe_expert_num; ++e) first[e + 1] = first[e] + routing.expert_counts[e];
  std::vector<uint8_t> taken(first.back(), 0);
  for (const plan::RoutedPair& p : routing.pairs) {
    const int64_t i = p.token * c.top_k + p.k, block = routing.expert_counts[p.expert];
    if (expand_idx[i] < 0 || expand_idx[i] >= block || taken[first[p.expert] + expand_idx[i]]) {
      BadHandle(c, "assistInfoForCombine", std::to_string(expand_idx[i]) + " at [" + std::to_string(i) + "]",
                "expandIdx of the pairs to expert " + std::to_string(p.expert) + " are distinct and in [0, " +
                    std::to_string(block) + "), this rank's pairs to that expert (as dispatch wrote them)");
    }
    out.slots[i] = first[p.expert] + expand_idx[i];
    taken[out.slots[i]] = 1;
  }
  return out;
}

// Tells every rank where its own experts' rows start and end among this rank's slots (first[rank * L],
// first[(rank + 1) * L]).
void AnnounceSlotBases(const MoeConfig& c, const ExpandIdxSlots& own, Window& ep, const CallSlot& call) {
  const int64_t l = c.local_expert_num();
  for (int64_t rank = 0; rank < c.ep_world_size; ++rank) {
    for (int field = 0; field < 2; ++field) {
      const auto slot = static_cast<uint32_t>(own.first[(rank + field) * l]);
      ep.Signal(static_cast<int>(rank), SlotBaseFlag(call, c.ep_rank, field), MakeFlag(call.epoch, slot));
    }
  }
}

// Atlas A2: refuses epSendCounts entry `entry`.
[[noreturn]] void BadCount(const MoeConfig& c, const std::vector<int32_t>& counts, int64_t entry,
                           const std::string& rule) {
  BadHandle(c, "epSendCounts", std::to_string(counts[entry]) + " at [" + std::to_string(entry) + "]", rule);
}

// Atlas A2: epSendCounts as dispatch wrote them never decrease; checked, as expandIdx is, before the call
// communicates (BlockRoutes relies on it: no row index past the last count).
void CheckCountsNeverDecrease(const MoeConfig& c, const std::vector<int32_t>& counts) {
  for (size_t entry = 0; entry < counts.size(); ++entry) {
    if (counts[entry] < (entry ? counts[entry - 1] : 0)) {
      BadCount(c, counts, static_cast<int64_t>(entry), "cumulative counts never decrease (as dispatch wrote them)");
    }
  }
}

// Atlas A2 (docs/a2.md): own rows come in blocks (local expert, owner) as epSendCounts lays them out; row j of
// block (e_local, owner) goes to the owner's slot start + (its rows from lower local experts) + j, where
// start is what the owner announced.
std::vector<ReturnRoute> BlockRoutes(const MoeConfig& c, const WindowLayout& layout, const std::vector<int32_t>& counts,
                                     Window& ep, const CallSlot& call, const Link& ctx) {
  const int64_t slots = layout.max_bs * layout.combine_slots_per_token;  // an owner's combine area
  const int64_t e_num = c.ep_world_size, l = c.local_expert_num(), own_rows = counts.back();
  std::vector<ReturnRoute> routes(own_rows);
  std::vector<int64_t> next(e_num, -1), end_of(e_num, -1);  // per owner, once it announced: next and end slot
  int64_t previous = 0;                                     // the counts never decrease: CheckCountsNeverDecrease
  for (int64_t el = 0; el < l; ++el) {
    for (int64_t owner = 0; owner < e_num; ++owner) {
      const int64_t entry = el * e_num + owner, end = counts[entry];
      if (end > previous && next[owner] < 0) {
        const char* what = "where its rows go (every rank must run combine in Atlas A2's expandIdx layout)";
        next[owner] = transport::FlagCount(transport::WaitFlag(
            ep, SlotBaseFlag(call, owner, 0), call.epoch, ctx.deadline, static_cast<int>(owner), c.op.c_str(), what));
        end_of[owner] = transport::FlagCount(transport::WaitFlag(
            ep, SlotBaseFlag(call, owner, 1), call.epoch, ctx.deadline, static_cast<int>(owner), c.op.c_str(), what));
        if (next[owner] > end_of[owner] || end_of[owner] > slots) {  // rows past its area would land anywhere
          throw Error(ErrorCode::kInternal, c.op + ": rank " + std::to_string(owner) + " of " + ep.name() +
                                                " announced slots [" + std::to_string(next[owner]) + ", " +
                                                std::to_string(end_of[owner]) + ") for this rank's rows, outside its " +
                                                std::to_string(slots) + " slots");
        }
      }
      if (end - previous > end_of[owner] - next[owner]) {
        BadCount(c, counts, entry,
                 "they return rank " + std::to_string(owner) +
                     " more rows than its expertIds and xActiveMask sent to this rank's experts");
      }
      for (int64_t row = previous; row < end; ++row) routes[row] = {static_cast<int32_t>(owner), next[owner]++};
      previous = end;
    }
  }
  for (int64_t owner = 0; owner < e_num; ++owner) {
    if (next[owner] != end_of[owner]) {
      BadCount(c, counts, l * e_num - 1,
               "they return rank " + std::to_string(owner) + " " + std::to_string(end_of[owner] - next[owner]) +
                   " rows fewer than its expertIds and xActiveMask sent to this rank's experts");
    }
  }
  return routes;
}

// Tells every owner that can read `source` (in place or by copy) where it is. Returns, per rank, whether and how it
// reads `source` (pull::ReaderKind).
std::vector<uint8_t> AnnounceRowsBack(const MoeConfig& c, const WindowLayout& layout, Window& ep, const CallSlot& call,
                                      const std::vector<ReturnRoute>& routes, const std::optional<pull::Rows>& source,
                                      const PullMinBytes& min_bytes) {
  const auto own_rows = static_cast<int64_t>(routes.size());
  std::vector<uint8_t> owns_rows(c.ep_world_size, 0);
  for (const ReturnRoute& route : routes) owns_rows[route.owner] = 1;
  const std::vector<uint64_t> tokens = pull::Expose(ep, source, own_rows * layout.combine_payload_bytes, min_bytes);
  const pull::CallFlags flags(plan::kCombinePullFlagBase, call);
  std::vector<uint8_t> readers(c.ep_world_size, 0);
  for (int owner = 0; owner < static_cast<int>(c.ep_world_size); ++owner) {
    if (!owns_rows[owner] || tokens[owner] == 0) continue;
    pull::Announce(ep, flags, owner, tokens[owner], *source);
    readers[owner] = pull::ReaderKindOf(ep, owner, tokens[owner]);
  }
  return readers;
}

// Sends every own row back to its token's owner: into the owner's slot, or, to a reader of `source` (readers,
// from AnnounceRowsBack), only the row's index in the slot's flag.
void SendRowsBack(const MoeConfig& c, const WindowLayout& layout, Window& ep, const CallSlot& call,
                  const std::vector<ReturnRoute>& routes, const std::vector<uint16_t>& reduced,
                  const RowReader& expand_x, const std::vector<uint8_t>& readers, const Link& ctx) {
  const uint64_t payload = layout.combine_payload_bytes;
  const auto own_rows = static_cast<int64_t>(routes.size());
  // Rows go out in slot order, not expandX's (expert-major) one: an owner sums its tokens in order, and rows
  // that cross hosts travel in messages sent as they fill (docs/hosts.md), so its first tokens can be summed
  // while later rows are still on the way.
  std::vector<int64_t> order(own_rows);
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return routes[a].slot < routes[b].slot; });
  ctx.ForEachPart(own_rows, payload, [&](int, int64_t begin, int64_t end) {
    RowReader rows(expand_x);  // its own: a strided row is gathered into the reader
    std::vector<uint8_t> staging;
    for (int64_t at = begin; at < end; ++at) {
      const int64_t i = order[at];
      const int32_t src = routes[i].owner;
      const int64_t slot = routes[i].slot;
      if (readers[src]) {
        ep.Signal(src, call.flag_base + slot, MakeFlag(call.epoch, static_cast<uint32_t>(i)));
        continue;
      }
      const uint16_t* row = reduced.empty() ? rows.Half(i) : &reduced[i * c.hidden];
      ep.PutRow(src, call.half_offset + layout.CombineSlotOffset(slot), WireRow(c, layout, row, staging), payload,
                call.epoch);
      ep.Signal(src, call.flag_base + slot, MakeFlag(call.epoch, 1));
    }
  });
}

// Sums the arrived rows of each active token (docs/semantics.md 3.2) and writes x (or x, y, rstd:
// docs/semantics.md 3.5).
class TokenReducer {
 public:
  // `ids`, `weights` and `mask` are the call's expertIds, expertScales and xActiveMask, shared by the
  // reducers of all parts.
  TokenReducer(const MoeConfig& c, const WindowLayout& layout, const plan::CombineTensors& t, Window& ep,
               const CallSlot& call, const Link& ctx, const std::vector<int32_t>& ids,
               const std::vector<float>& weights, const std::vector<uint8_t>& mask,
               const std::vector<int64_t>& pair_slots, pull::Claims& claims)
      : c_(c),
        layout_(layout),
        t_(t),
        ep_(ep),
        call_(call),
        ctx_(ctx),
        type_(HalfOf(c.x_dtype)),
        ids_(ids),
        weights_(weights),
        mask_(mask),
        pair_slots_(pair_slots),
        shared_x_(t.shared_expert_x),
        residual_(t.residual_x),
        gamma_(t.gamma),
        ori_x_(t.ori_x),
        const_alpha1_(t.const_alpha1),
        const_alpha2_(t.const_alpha2),
        const_v_(t.const_v),
        acc_(c.hidden),
        dequant_(c.comm_quant_mode == 2 ? c.hidden : 0),
        scratch_(t.add_rms_norm ? c.hidden : 0),
        special_(c.const_expert_num > 0 ? c.hidden : 0),
        const_row_(special_.size()),
        pull_flags_(plan::kCombinePullFlagBase, call),
        sources_(c.ep_world_size),
        held_(c.ep_world_size, 0),
        claims_(claims) {
    if (t.add_rms_norm) gamma_row_ = gamma_.Half(0);
  }

  // Sums tokens [begin, end).
  void Run(int64_t begin, int64_t end) {
    try {
      for (int64_t t = begin; t < end; ++t) {
        if (c_.mask == plan::MaskKind::kPairs && !AnyPair(t)) continue;  // inactive: output row untouched
        WaitToken(t);
        Reduce(t);
      }
    } catch (...) {
      // The other parts may wait on until the deadline: no sender waits on this one's claims meanwhile.
      try {
        ReleaseClaims();
      } catch (...) {  // the error that ended the part is the call's
      }
      throw;
    }
    ReleaseClaims();
  }

 private:
  bool PairActive(int64_t t, int64_t k) const { return c_.mask != plan::MaskKind::kPairs || mask_[t * c_.top_k + k]; }
  bool AnyPair(int64_t t) const {
    for (int64_t k = 0; k < c_.top_k; ++k) {
      if (mask_[t * c_.top_k + k]) return true;
    }
    return false;
  }
  bool IsMoeExpert(int64_t t, int64_t k) const { return ids_[t * c_.top_k + k] < c_.moe_expert_num; }
  int64_t Slot(int64_t t, int64_t k) const {
    return pair_slots_.empty() ? t * layout_.combine_slots_per_token + k : pair_slots_[t * c_.top_k + k];
  }
  // The rank that sends slot (t, k): the expert's, or for k >= K the shared expert's serving this rank.
  int SenderOf(int64_t t, int64_t k) const {
    return static_cast<int>(k < c_.top_k ? c_.ExpertRank(ids_[t * c_.top_k + k])
                                         : c_.SharedRank(k - c_.top_k, c_.ep_rank));
  }
  // Where `sender`'s rows are for this call (pulled() false: it pushes them), claimed by this part when pulled.
  const pull::Rows& Source(int sender) {
    if (!sources_[sender]) {
      const uint64_t row_bytes = 2 * static_cast<uint64_t>(c_.hidden);
      sources_[sender] = pull::Announced(ep_, pull_flags_, sender, row_bytes, c_.op.c_str()).value_or(pull::Rows{});
    }
    if (sources_[sender]->pulled() && !held_[sender]) {
      claims_.Claim(sender, *sources_[sender]);
      held_[sender] = 1;
    }
    return *sources_[sender];
  }
  // Gives back this part's claims (pull::Claims::Release): before it waits for a rank, which may take until a
  // sender's deadline (the sender then withdraws its rows instead of giving up on a reader that holds pointers
  // into them), and when it ends (another part may still wait).
  // Every one of them, before it throws the first error a release met (a sender that gave up on this rank).
  void ReleaseClaims() {
    std::exception_ptr given_up;
    for (int sender = 0; sender < static_cast<int>(held_.size()); ++sender) {
      if (!held_[sender]) continue;
      held_[sender] = 0;
      try {
        claims_.Release(sender);
      } catch (...) {
        if (!given_up) given_up = std::current_exception();
      }
    }
    if (given_up) std::rethrow_exception(given_up);
  }
  // The index of slot (t, k)'s row among those its sender exposed.
  uint32_t PulledIndex(int64_t t, int64_t k, const pull::Rows& source) const {
    const uint32_t index = transport::FlagCount(ep_.ReadFlag(call_.flag_base + Slot(t, k)));
    if (index >= source.count) {
      throw Error(ErrorCode::kInternal, c_.op + ": rank " + std::to_string(SenderOf(t, k)) + " announced row " +
                                            std::to_string(index) + " of the " + std::to_string(source.count) +
                                            " it exposed");
    }
    return index;
  }
  // Slot (t, k)'s row in the wire format: where it landed, read in place from the sender's buffer, or
  // copied out of it (StageCopiedRows).
  const uint8_t* SlotData(int64_t t, int64_t k) {
    const pull::Rows& source = Source(SenderOf(t, k));
    if (!source.pulled()) {
      return ep_.Row(call_.half_offset + layout_.CombineSlotOffset(Slot(t, k)), layout_.combine_payload_bytes,
                     call_.epoch);
    }
    const uint8_t* row = source.base ? source.Row(PulledIndex(t, k, source)) : staged_[k];
    return WireRow(c_, layout_, reinterpret_cast<const uint16_t*>(row), wire_);
  }
  // Copies token t's rows that senders exposed by copy into staging, one kernel call per sender, and
  // points staged_[k] at slot (t, k)'s.
  void StageCopiedRows(int64_t t) {
    const int64_t slots = c_.top_k + c_.shared_expert_num;
    const uint64_t row_bytes = 2 * static_cast<uint64_t>(c_.hidden);
    staged_.assign(slots, nullptr);
    for (int64_t k = 0; k < slots; ++k) {
      if (staged_[k] || !SlotSent(t, k)) continue;
      const int sender = SenderOf(t, k);
      const pull::Rows& source = Source(sender);
      if (source.copy_token == 0) continue;
      staging_.resize(slots * row_bytes);
      copies_.clear();
      for (int64_t j = k; j < slots; ++j) {
        if (staged_[j] || !SlotSent(t, j) || SenderOf(t, j) != sender) continue;
        staged_[j] = staging_.data() + j * row_bytes;
        copies_.push_back({staging_.data() + j * row_bytes, PulledIndex(t, j, source)});
      }
      claims_.CopyRows(source, copies_);
    }
  }

  // Whether a rank sends slot (t, k) a row: a shared expert's, or an active pair's with a MoE expert.
  bool SlotSent(int64_t t, int64_t k) const { return k >= c_.top_k || (PairActive(t, k) && IsMoeExpert(t, k)); }

  void WaitToken(int64_t t) {
    pending_.clear(), pending_k_.clear();
    for (int64_t k = 0; k < c_.top_k + c_.shared_expert_num; ++k) {
      if (SlotSent(t, k)) {
        pending_.push_back(call_.flag_base + Slot(t, k));
        pending_k_.push_back(k);
      }
    }
    // Rows that have come need no wait (WaitFlags then only flushes what this rank sends); else no claim is held
    // across it.
    const bool arrived = std::all_of(pending_.begin(), pending_.end(), [&](uint64_t idx) {
      return transport::FlagEpoch(ep_.ReadFlag(idx)) == call_.epoch;
    });
    if (!arrived) ReleaseClaims();
    transport::WaitFlags(
        ep_, pending_, call_.epoch, ctx_.deadline,
        [&](uint64_t idx) {
          return SenderOf(t, pending_k_[std::find(pending_.begin(), pending_.end(), idx) - pending_.begin()]);
        },
        c_.op.c_str(), "expert output rows");
  }

  // acc += slot (t, k)'s row (times w when weighted), dequantizing first under commQuantMode 2.
  void AddSlot(int64_t t, int64_t k, const float* w) {
    const uint8_t* data = SlotData(t, k);
    if (c_.comm_quant_mode == 2) {
      const auto* q = reinterpret_cast<const int8_t*>(data);
      const auto* scales = reinterpret_cast<const uint16_t*>(data + layout_.combine_scale_offset);
      kernels::CommDequantRow(type_, q, scales, c_.hidden, dequant_.data());
      if (w)
        kernels::AccumulateWeightedFloat(dequant_.data(), *w, c_.hidden, acc_.data());
      else
        kernels::AccumulateFloat(dequant_.data(), c_.hidden, acc_.data());
      return;
    }
    const auto* row = reinterpret_cast<const uint16_t*>(data);
    if (w)
      kernels::AccumulateWeightedHalf(type_, row, *w, c_.hidden, acc_.data());
    else
      kernels::AccumulateHalf(type_, row, c_.hidden, acc_.data());
  }

  // docs/semantics.md 3.2, V3 special experts computed here from oriX: zero adds nothing, copy adds w * oriX, const
  // expert i adds w * (p1 * oriX + p2 * V[i]) with (p1, p2) the softmax of the dot products of oriX with
  // alpha1[i] and alpha2[i]; every multiply and add rounded to fp32 on its own.
  void AddSpecialExpert(int64_t t, int64_t special, float w) {
    if (special < c_.zero_expert_num) return;
    special -= c_.zero_expert_num;
    if (special < c_.copy_expert_num) {
      kernels::AccumulateWeightedHalf(type_, ori_x_.Half(t), w, c_.hidden, acc_.data());
      return;
    }
    const int64_t i = special - c_.copy_expert_num;
    kernels::HalfRowToFloat(type_, ori_x_.Half(t), special_.data(), c_.hidden);
    const auto [p1, p2] =
        kernels::SoftmaxOfTwo(Dot(const_alpha1_.Half(i), special_.data()), Dot(const_alpha2_.Half(i), special_.data()));
    kernels::HalfRowToFloat(type_, const_v_.Half(i), const_row_.data(), c_.hidden);
    for (int64_t h = 0; h < c_.hidden; ++h) special_[h] = special_[h] * p1 + const_row_[h] * p2;
    kernels::AccumulateWeightedFloat(special_.data(), w, c_.hidden, acc_.data());
  }

  // The sum over h of float(alpha[h]) * x[h], each product rounded, in AscendC Sum's order (const_row_ is scratch).
  float Dot(const uint16_t* alpha, const float* x) {
    kernels::HalfRowToFloat(type_, alpha, const_row_.data(), c_.hidden);
    for (int64_t h = 0; h < c_.hidden; ++h) const_row_[h] = const_row_[h] * x[h];
    return kernels::ReduceSumTree(const_row_.data(), c_.hidden);
  }

  // Token t's contributions when every one is a half row (no const expert, no dequantized or float row), in
  // Reduce's order, into rows_ / row_weights_ / row_weighted_; false when some is not.
  bool GatherHalfRows(int64_t t) {
    rows_.clear(), row_weights_.clear(), row_weighted_.clear();
    auto add = [&](const void* row, float w, bool weighted) {
      rows_.push_back(static_cast<const uint16_t*>(row));
      row_weights_.push_back(w);
      row_weighted_.push_back(weighted ? 1 : 0);
    };
    for (int64_t k = 0; k < c_.top_k; ++k) {
      if (!PairActive(t, k)) continue;
      const float w = weights_[t * c_.top_k + k];
      if (IsMoeExpert(t, k)) {
        add(SlotData(t, k), w, true);
        continue;
      }
      const int64_t special = ids_[t * c_.top_k + k] - c_.first_special_expert() - c_.zero_expert_num;
      if (special < 0) continue;                        // a zero expert adds nothing
      if (special >= c_.copy_expert_num) return false;  // a const expert's row is computed in fp32
      add(ori_x_.Half(t), w, true);
    }
    for (int64_t i = 0; i < c_.shared_expert_num; ++i) add(SlotData(t, c_.top_k + i), 0.0f, false);
    if (t_.shared_expert_x.present()) add(shared_x_.Half(t), 0.0f, false);
    return true;
  }

  void Reduce(int64_t t) {
    StageCopiedRows(t);
    // The common case in one pass over the rows (kernels::SumHalfRows: the same bits as the steps below).
    if (!t_.add_rms_norm && c_.comm_quant_mode != 2 && GatherHalfRows(t)) {
      kernels::SumHalfRows(type_, rows_.data(), row_weights_.data(), row_weighted_.data(),
                           static_cast<int64_t>(rows_.size()), c_.hidden,
                           static_cast<uint16_t*>(t_.x.data) + t * c_.hidden);
      return;
    }
    std::fill(acc_.begin(), acc_.end(), 0.0f);
    for (int64_t k = 0; k < c_.top_k; ++k) {
      if (!PairActive(t, k)) continue;
      const float w = weights_[t * c_.top_k + k];
      if (IsMoeExpert(t, k))
        AddSlot(t, k, &w);
      else
        AddSpecialExpert(t, ids_[t * c_.top_k + k] - c_.first_special_expert(), w);
    }
    for (int64_t i = 0; i < c_.shared_expert_num; ++i) AddSlot(t, c_.top_k + i, nullptr);
    if (t_.shared_expert_x.present()) kernels::AccumulateHalf(type_, shared_x_.Half(t), c_.hidden, acc_.data());

    auto* x_out = static_cast<uint16_t*>(t_.x.data) + t * c_.hidden;
    if (!t_.add_rms_norm) {
      kernels::FloatRowToHalf(type_, acc_.data(), x_out, c_.hidden);
      return;
    }
    auto* y_out = static_cast<uint16_t*>(t_.y.data) + t * c_.hidden;
    static_cast<float*>(t_.rstd.data)[t] = kernels::AddRmsNormRow(acc_.data(), residual_.Half(t), gamma_row_, c_.hidden,
                                                                  t_.norm_eps, x_out, y_out, scratch_.data());
  }

  const MoeConfig& c_;
  const WindowLayout& layout_;
  const plan::CombineTensors& t_;
  Window& ep_;
  const CallSlot& call_;
  const Link& ctx_;
  kernels::Half type_;
  const std::vector<int32_t>& ids_;
  const std::vector<float>& weights_;
  const std::vector<uint8_t>& mask_;
  const std::vector<int64_t>& pair_slots_;  // Atlas A2's slot of each (token, k); empty: t*(K+n_s)+k
  RowReader shared_x_, residual_, gamma_, ori_x_, const_alpha1_, const_alpha2_, const_v_;
  const uint16_t* gamma_row_ = nullptr;
  std::vector<float> acc_, dequant_, scratch_, special_, const_row_;
  std::vector<uint64_t> pending_;
  std::vector<int64_t> pending_k_;  // the k of each pending flag
  pull::CallFlags pull_flags_;
  std::vector<const uint16_t*> rows_;  // GatherHalfRows' rows, weights and whether each is weighted
  std::vector<float> row_weights_;
  std::vector<uint8_t> row_weighted_;
  std::vector<std::optional<pull::Rows>> sources_;  // per sender, once its first row is read (Source)
  std::vector<uint8_t> held_;                       // per sender: whether this part holds a claim of its rows
  pull::Claims& claims_;                            // of the senders pulled from, shared by the parts
  std::vector<uint8_t> wire_;                       // a pulled row quantized as the sender would have sent it
  std::vector<uint8_t> staging_;                    // the token's rows copied out of their senders
  std::vector<const uint8_t*> staged_;              // per k: its row in staging_, or null
  std::vector<pull::RowCopy> copies_;
};

// Counts and triples come from the caller: check them before any byte moves, so a corrupted handle is
// an error and never a write outside a window.
void CheckReturnRoutes(const MoeConfig& c, const WindowLayout& layout, const std::vector<int32_t>& assist,
                       int64_t own_rows, int64_t peer_rows, int64_t expand_rows) {
  const std::string rows_rule = "own rows (" + std::to_string(own_rows) + ") + TP peer rows (" +
                                std::to_string(peer_rows) +
                                ") within [0, expandX rows = " + std::to_string(expand_rows) +
                                "] and own rows <= A = " + std::to_string(layout.a);
  if (own_rows < 0 || peer_rows < 0 || own_rows + peer_rows > expand_rows || own_rows > layout.a) {
    BadHandle(c, "epSendCounts", std::to_string(own_rows), rows_rule);
  }
  if (peer_rows > layout.a) {  // the TP peer's window holds A partial rows
    BadHandle(c, "tpSendCounts", std::to_string(peer_rows) + " rows of the TP peer",
              "at most A = " + std::to_string(layout.a));
  }
  // Atlas A2: PlanExpandIdxSlots, CheckCountsNeverDecrease and BlockRoutes check expandIdx and the counts.
  if (c.expand_idx()) return;
  if (static_cast<int64_t>(assist.size()) < 3 * own_rows) {
    BadHandle(c, "assistInfoForCombine", std::to_string(assist.size()) + " entries", "needs 3 per returned row");
  }
  for (int64_t i = 0; i < own_rows; ++i) {
    const int32_t src = assist[3 * i], token = assist[3 * i + 1], k = assist[3 * i + 2];
    if (src < 0 || src >= c.ep_world_size || token < 0 || token >= layout.max_bs || k < 0 ||
        k >= layout.combine_slots_per_token) {
      std::string triple = "(";
      triple += std::to_string(src) + ", " + std::to_string(token) + ", " + std::to_string(k) + ") at row ";
      triple += std::to_string(i);
      BadHandle(c, "assistInfoForCombine", triple,
                "triples (srcRank < epWorldSize, tokenIdx < maxBs, kIdx < K + sharedExpertNum) as dispatch wrote them");
    }
  }
}

// A failed combine's withdrawal of the rows it announced. An owner it gave up on (one stalled past kWithdrawWait while
// reading) may still read them: the TP partial sums, this call's own memory, are then kept for the life of the
// process rather than freed under it (the caller's expandX is the caller's to keep, as the design says).
void WithdrawRowsBack(transport::Window& ep, const pull::CallFlags& flags,
                      const std::optional<std::vector<uint8_t>>& readers, std::vector<uint16_t>& reduced) {
  if (!readers || pull::Withdraw(ep, flags, *readers) || reduced.empty()) return;
  static auto* const kept_mutex = new std::mutex;  // never destroyed: a reader may still copy while the process exits
  static auto* const kept = new std::vector<std::vector<uint16_t>>;
  const std::lock_guard lock(*kept_mutex);
  kept->push_back(std::move(reduced));
}

}  // namespace

void Combine(const MoeConfig& c, const plan::CombineTensors& t, const Link& ctx) {
  const WindowLayout layout(c);
  const int64_t entries = c.receive_entries();
  // Only the prefixes that are used are read: a view may be far longer than its data (stride 0).
  const std::vector<int32_t> send_counts = GatherInt32(t.ep_send_counts, entries);
  const int64_t own_rows = send_counts[entries - 1];
  const int64_t peer_rows = c.has_tp() ? GatherInt32(t.tp_send_counts)[1 - c.tp_rank] : 0;
  const std::vector<uint8_t> mask = GatherBool(t.x_active_mask);
  const std::vector<int32_t> assist = GatherInt32(
      t.assist_info, c.expand_idx() ? plan::ActiveTokenLimit(c, mask.empty() ? nullptr : mask.data()) * c.top_k
                                    : 3 * std::clamp<int64_t>(own_rows, 0, t.expand_x.shape[0]));
  CheckReturnRoutes(c, layout, assist, own_rows, peer_rows, t.expand_x.shape[0]);
  const std::vector<int32_t> ids = GatherInt32(t.expert_ids);
  plan::CheckRouting(c, ids.data(), mask.empty() ? nullptr : mask.data(), c.op.c_str());
  RowReader expand_x(t.expand_x);

  std::vector<uint16_t> reduced;
  if (c.has_tp()) reduced = ReduceScatterWithTpPeer(c, layout, *ctx.tp, expand_x, own_rows, peer_rows, ctx);
  const uint64_t row_bytes = 2 * static_cast<uint64_t>(c.hidden);
  const std::optional<pull::Rows> source = reduced.empty()
                                               ? pull::RowsOf(t.expand_x)
                                               : pull::Rows{reinterpret_cast<const uint8_t*>(reduced.data()), row_bytes,
                                                            static_cast<uint64_t>(own_rows), row_bytes};
  const CallSlot call = NextCombineCall(ctx.ep, ctx.ep_state);
  // A combine hears from every peer before it returns, even one it exchanges no row with (StartFlag): its next call may
  // then write anywhere in the other half of the peers' windows, and the one after in this half. The start carries
  // the attributes that place and size the rows (ops/agreement.h), checked before any peer's row is read.
  AnnounceAttributes(c, AgreedBy::kCombine, ctx.ep, call);
  const auto wait_for_every_start = [&] {
    WaitForStarts(c, ctx.ep, call, ctx.deadline, /*this_is_dispatch=*/false, "every rank's start of the call");
  };
  const pull::CallFlags flags(plan::kCombinePullFlagBase, call);
  std::optional<std::vector<uint8_t>> readers;  // once announcing began: whoever it reached, should it stop part-way
  try {
    // Atlas A2's own data is checked once the call has its slot, as its peers', and before it announces where its
    // rows go (peers returning rows to a rank that refuses alone time out naming it).
    ExpandIdxSlots own_slots;
    std::vector<ReturnRoute> routes;
    // A peer laid out otherwise puts its rows where this rank does not look, or rows of another size: refused before
    // this rank acts on anything of a peer's (Atlas A2: the owners' slot bases; else: the rows, or their pull
    // announcements), or writes an output. Its rows stay in this call's half of the window (Atlas A3: placed by its
    // own layout, which fits the window; Atlas A2: by the bases its owners announced, bounded by BlockRoutes).
    const auto check_peers_agree = [&] { CheckPeersAgree(c, AgreedBy::kCombine, ctx.ep, call, ctx, [] {}); };
    if (c.expand_idx()) {
      own_slots = PlanExpandIdxSlots(c, ids, mask, assist);
      CheckCountsNeverDecrease(c, send_counts);
      AnnounceSlotBases(c, own_slots, ctx.ep, call);
      check_peers_agree();
      routes = BlockRoutes(c, layout, send_counts, ctx.ep, call, ctx);
    } else {
      routes = TripleRoutes(layout, assist, own_rows);
    }
    readers.emplace(c.ep_world_size, 1);
    readers = AnnounceRowsBack(c, layout, ctx.ep, call, routes, source, ctx.pull_min_bytes);
    if (!c.expand_idx()) AnnounceReturnedRows(c, ctx.ep, call, routes);
    SendRowsBack(c, layout, ctx.ep, call, routes, reduced, expand_x, *readers, ctx);
    if (!c.expand_idx()) {
      check_peers_agree();
      CheckReturnedRows(c, ctx.ep, call, ids, mask, *readers, ctx);
    }
    const std::vector<float> weights = GatherFloat(t.expert_scales);
    pull::Claims claims(ctx.ep, flags, c.op.c_str());
    // A token's part reads its K (and shared) rows.
    const uint64_t token_bytes = (c.top_k + c.shared_expert_num) * layout.combine_payload_bytes;
    ctx.ForEachPart(plan::ActiveTokenLimit(c, mask.data()), token_bytes, [&](int, int64_t begin, int64_t end) {
      TokenReducer(c, layout, t, ctx.ep, call, ctx, ids, weights, mask, own_slots.slots, claims).Run(begin, end);
    });
    claims.Finish();
    const pull::ReaderCounts counts = pull::CountReaders(*readers);
    ctx.ep_state.combine_readers = counts.readers;
    ctx.ep_state.combine_copy_readers = counts.by_copy;
    // The caller may overwrite expandX once this returns: not before every owner reading it is done.
    pull::WaitDone(ctx.ep, flags, *readers, ctx.deadline, c.op.c_str());
  } catch (const Error& e) {
    // expandX (or `reduced`, about to go) is the caller's again once this returns: no owner may still read it.
    WithdrawRowsBack(ctx.ep, flags, readers, reduced);
    // A refusal that leaves the group usable (no deadline, interrupt or internal error) still waits for every peer's
    // start, as the call would have: this rank's next call may write into their windows.
    if (e.code() != ErrorCode::kTimeout && e.code() != ErrorCode::kInternal) wait_for_every_start();
    throw;
  } catch (...) {
    WithdrawRowsBack(ctx.ep, flags, readers, reduced);
    throw;
  }
}

}  // namespace moe_ep::ops::protocol
