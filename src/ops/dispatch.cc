// DispatchV2 (docs/semantics.md 2, 5.2): send every routed (token, k) and shared copy into the destination's window
// slot (pushed) or only its triple there (pulled: the destination reads the row from this rank's x),
// announce per-(expert, source) counts, then compact the received rows into expandX in status order
// (local expert major, source minor); with TP, all-gather the rows with the TP peer.
#include <algorithm>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/copy.h"
#include "kernels/kernels.h"
#include "moe_ep/error.h"
#include "ops/agreement.h"
#include "ops/op_common.h"
#include "ops/protocol.h"
#include "ops/pull.h"
#include "ops/tensor_access.h"
#include "plan/layout.h"
#include "plan/routing.h"

namespace moe_ep::ops::protocol {
namespace {

using plan::MoeConfig;
using plan::WindowLayout;
using transport::MakeFlag;
using transport::Window;

// Builds and puts slot payloads: [token bytes][fp32 scale at +Align32][int32 triple at +32].
class SlotWriter {
 public:
  SlotWriter(const MoeConfig& c, const WindowLayout& layout, const plan::DispatchTensors& t)
      : c_(c),
        layout_(layout),
        x_(t.x),
        smooth_(t.scales),
        has_smooth_(t.scales.present()),
        staging_(layout.dispatch_slot_bytes) {}

  // Sends token `token` to `dst` at byte `offset`, quantized with smooth row `smooth_row`; a pulled
  // token sends its triple alone (the destination reads and quantizes the row itself).
  void Send(Window& ep, int dst, uint64_t offset, int32_t token, int64_t smooth_row, const int32_t triple[3],
            bool pulled) {
    uint8_t* slot = staging_.data();
    if (pulled) {
      // nothing but the triple below
    } else if (c_.quant_mode == 2) {
      if (has_smooth_ || cached_token_ != token) {
        const float* smooth = has_smooth_ ? smooth_.Float(smooth_row) : nullptr;
        cached_scale_ = kernels::DynamicQuantRow(HalfOf(c_.x_dtype), x_.Half(token), smooth, c_.hidden,
                                                 reinterpret_cast<int8_t*>(slot));
        cached_token_ = has_smooth_ ? -1 : token;  // without smooth scales a token quantizes the same everywhere
      }
      std::memcpy(slot + layout_.dispatch_scale_offset, &cached_scale_, sizeof(float));
      ep.Put(dst, offset, slot, layout_.dispatch_scale_offset + sizeof(float));
    } else {
      ep.Put(dst, offset, x_.Half(token), layout_.dispatch_token_bytes);
    }
    // The triple travels apart from the row, so a row bound for several experts is the same bytes each
    // time (the hosts transport sends it to another host once).
    ep.Put(dst, offset + layout_.dispatch_triple_offset, triple, 3 * sizeof(int32_t));
  }

 private:
  const MoeConfig& c_;
  const WindowLayout& layout_;
  RowReader x_;
  RowReader smooth_;
  bool has_smooth_;
  std::vector<uint8_t> staging_;
  int32_t cached_token_ = -1;
  float cached_scale_ = 0.0f;
};

// Writes received slots into the outputs, row by row, never past the rows the outputs hold.
class RowSink {
 public:
  RowSink(const MoeConfig& c, const WindowLayout& layout, const plan::DispatchTensors& t)
      : op_(c.op),
        layout_(layout),
        quant_(c.quant_mode == 2),
        expand_x_(static_cast<uint8_t*>(t.expand_x.data)),
        scales_(static_cast<float*>(t.dynamic_scales.data)),
        assist_(c.expand_idx() ? nullptr : static_cast<int32_t*>(t.assist_info.data)),
        capacity_(std::min(t.expand_x.shape[0], quant_ ? t.dynamic_scales.shape[0] : t.expand_x.shape[0])),
        triple_capacity_(assist_ ? t.assist_info.shape[0] / 3 : capacity_) {}

  // Validation sized the outputs for every row the peers can send; this is the last line of defence
  // against a peer that announces more (a layout disagreement or corrupted memory), checked before a
  // row is written.
  // `triples`: rows of this rank's EP group, which carry one (the TP peer's carry none, as on the hardware).
  void Reserve(int64_t more, const std::string& from, bool triples = true) const {
    const int64_t capacity = triples ? std::min(capacity_, triple_capacity_) : capacity_;
    if (more > capacity - rows_) {
      throw Error(ErrorCode::kInternal, op_ + ": " + from + " announced " + std::to_string(more) + " rows, but only " +
                                            std::to_string(capacity - rows_) + " of the outputs' " +
                                            std::to_string(capacity) +
                                            " rows are left; the ranks disagree about the layout");
    }
  }

  // Takes the next `n` rows (after Reserve); returns the first. Rows taken are then written, in any order
  // and from any thread, with Write or WritePulled: streamed past the caches when they are more than
  // kStreamMinBytes and this call does not read them again (`read_again`: TP sends the group's rows on to
  // its peer) (docs/protocol.md, "Row copies").
  int64_t Take(int64_t n, bool read_again) {
    const int64_t first = rows_;
    rows_ += n;
    stream_ = !read_again && static_cast<uint64_t>(n) * layout_.dispatch_token_bytes > kStreamMinBytes;
    return first;
  }
  void Write(int64_t i, const uint8_t* slot) const {
    WritePayload(i, slot);
    WriteTriple(i, slot);
  }
  // A row's payload and scale: all a row of the TP peer's group gets (its triple is the peer's alone).
  void WritePayload(int64_t i, const uint8_t* slot) const {
    CopyRow(Row(i), slot);
    if (quant_) std::memcpy(scales_ + i, slot + layout_.dispatch_scale_offset, sizeof(float));
  }
  // A pulled row: the sender's token `row` (and smooth row), quantized here as the sender would have.
  void WritePulled(int64_t i, const uint8_t* slot, kernels::Half type, int64_t hidden, const uint8_t* row,
                   const float* smooth) const {
    if (quant_) {
      scales_[i] = kernels::DynamicQuantRow(type, reinterpret_cast<const uint16_t*>(row), smooth, hidden,
                                            reinterpret_cast<int8_t*>(Row(i)));
    } else {
      CopyRow(Row(i), row);
    }
    WriteTriple(i, slot);
  }
  // A pulled row copied into Row(i) by the caller.
  void Landed(int64_t i, const uint8_t* slot) const { WriteTriple(i, slot); }
  int64_t rows() const { return rows_; }
  uint8_t* Row(int64_t i) const { return expand_x_ + i * layout_.dispatch_token_bytes; }
  const float* Scale(int64_t i) const { return scales_ + i; }

 private:
  void CopyRow(uint8_t* dst, const uint8_t* src) const {
    (stream_ ? StreamBytes : CopyBytes)(dst, src, layout_.dispatch_token_bytes);
  }
  void WriteTriple(int64_t i, const uint8_t* slot) const {
    if (!assist_) return;  // Atlas A2's layout: the sender wrote expandIdx instead
    std::memcpy(assist_ + 3 * i, slot + layout_.dispatch_triple_offset, 3 * sizeof(int32_t));
  }

  const std::string& op_;  // MoeConfig::op
  const WindowLayout& layout_;
  bool quant_;
  uint8_t* expand_x_;
  float* scales_;
  int32_t* assist_;          // null under AssistLayout::kExpandIdx
  int64_t capacity_;         // rows expandX (and dynamicScales) hold
  int64_t triple_capacity_;  // rows assistInfoForCombine holds triples for
  int64_t rows_ = 0;
  bool stream_ = false;  // the rows of the last Take
};

CallSlot NextDispatchCall(const Window& w, OpState& state) {
  return NextCall(w, state, plan::kDispatchFlagBase, plan::kMaxDispatchFlags);
}

// Who reads this rank's rows: per rank, whether and how it pulls them (pull::ReaderKind: it receives at least
// one and has been told where x, and any smooth scales, are); and whether they were staged, so that no reader
// needs waiting for.
struct Pulls {
  std::vector<uint8_t> readers;
  bool staged = false;
};

// How many other ranks that receive rows from this one can read [p, p + bytes) in place (not by copy).
int ReadersOf(const Window& ep, const void* p, uint64_t bytes, const std::vector<uint8_t>& receives) {
  int readers = 0;
  for (int peer = 0; peer < ep.size(); ++peer) {
    if (!receives[peer] || peer == ep.rank()) continue;
    const uint64_t token = ep.Expose(peer, p, bytes);
    readers += token != 0 && !ep.ExposedByCopy(peer, token);
  }
  return readers;
}

Pulls AnnouncePulls(const MoeConfig& c, const WindowLayout& layout, const plan::DispatchTensors& t,
                    const plan::RoutingPlan& plan, Window& ep, const CallSlot& call, const PullMinBytes& min_bytes,
                    StageBuffers* stage) {
  std::vector<uint8_t> receives(c.ep_world_size, 0);
  uint64_t rows_to_others = 0;
  const auto sends_to = [&](int64_t rank, uint64_t rows) {
    receives[rank] = 1;
    if (rank != c.ep_rank) rows_to_others += rows;
  };
  for (const plan::RoutedPair& p : plan.pairs) sends_to(c.ExpertRank(p.expert), 1);
  if (!plan.valid_tokens.empty()) {
    for (int64_t i = 0; i < c.shared_expert_num; ++i) sends_to(c.SharedRank(i, c.ep_rank), plan.valid_tokens.size());
  }
  const uint64_t rows = plan.pairs.size() + c.shared_expert_num * plan.valid_tokens.size();
  const uint64_t sent_bytes = rows * layout.dispatch_token_bytes;
  std::optional<pull::Rows> x = pull::RowsOf(t.x);
  const bool smoothed = c.quant_mode == 2 && t.scales.present();
  const std::optional<pull::Rows> smooth = smoothed ? pull::RowsOf(t.scales) : std::nullopt;
  // x is staged (ops/stage.h) when some receiver can read a copy in the shared heap and either x is small, or
  // that receiver cannot read x in place (a torch tensor of a process rank) and x is no larger than the rows
  // sent to other ranks: peers read the copy, which stays put after the call returns, so the call needs no
  // round trip in which its readers say they are done, and a private x costs one copy of its rows here
  // instead of two of each row it sends (into the receiver's window, then out) or a kernel copy of each
  // (process_vm_readv, about twice as slow as reading in place: docs/protocol.md). Not with smooth scales,
  // which the readers read in place as well.
  bool staged = false;
  if (stage && x && !smoothed && sent_bytes >= min_bytes.in_place) {
    const uint64_t x_bytes = x->count * x->row_bytes;
    const bool small = x_bytes <= kStageMaxBytes;
    const int readers = small ? 0 : ReadersOf(ep, x->base, x->span(), receives);
    const int others = static_cast<int>(std::count(receives.begin(), receives.end(), 1)) - receives[ep.rank()];
    if (small || (readers < others && x_bytes <= rows_to_others * layout.dispatch_token_bytes)) {
      // Whether the heap gains readers, asked of the buffer as it is (at least kStageMaxBytes) before it grows.
      const uint8_t* probe = stage->Take(ep, call.parity, kStageMaxBytes);
      uint8_t* copy =
          probe && ReadersOf(ep, probe, 1, receives) > readers ? stage->Take(ep, call.parity, x_bytes) : nullptr;
      if (copy) {
        for (uint64_t i = 0; i < x->count; ++i) {
          CopyBytes(copy + i * x->row_bytes, x->base + i * x->stride, x->row_bytes);
        }
        x = pull::Rows{copy, x->row_bytes, x->count, x->row_bytes};
        staged = true;
      }
    }
  }
  const std::vector<uint64_t> x_tokens = pull::Expose(ep, x, sent_bytes, min_bytes);
  const std::vector<uint64_t> smooth_tokens = pull::Expose(ep, smooth, smoothed ? sent_bytes : 0, min_bytes);
  std::vector<uint8_t> pulled(c.ep_world_size, 0);
  const pull::CallFlags flags(plan::kDispatchPullFlagBase, call);
  // A call that stages nothing re-arms the words of the last call staged in this parity's buffer: settle it.
  if (stage && !staged) stage->Retire(ep, call.parity);
  for (int dst = 0; dst < static_cast<int>(c.ep_world_size); ++dst) {
    if (!receives[dst] || x_tokens[dst] == 0 || (smoothed && smooth_tokens[dst] == 0)) continue;
    pulled[dst] = pull::ReaderKindOf(ep, dst, x_tokens[dst]);
    // By copy when either tensor is (kReadsByCopy > kReadsInPlace).
    if (smoothed) pulled[dst] = std::max(pulled[dst], pull::ReaderKindOf(ep, dst, smooth_tokens[dst]));
  }
  // The staged buffer knows its readers before any is told where it is: should announcing fail part-way, the
  // call withdraws nothing staged, and the buffer stays put until whoever was told is done.
  if (staged) stage->Readers(call.parity, call.epoch, pull::DoneFlags(flags, pulled));
  const uint32_t staged_mark = staged ? pull::NewStagedMark() : 0;
  for (int dst = 0; dst < static_cast<int>(c.ep_world_size); ++dst) {
    if (!pulled[dst]) continue;
    pull::Announce(ep, flags, dst, x_tokens[dst], *x, smoothed ? smooth_tokens[dst] : 0, smooth.value_or(pull::Rows{}),
                   staged_mark);
  }
  return {pulled, staged};
}

void SendToExperts(const MoeConfig& c, const WindowLayout& layout, const plan::RoutingPlan& plan, SlotWriter& writer,
                   Window& ep, const CallSlot& call, const std::vector<uint8_t>& pulled) {
  const int64_t l = c.local_expert_num();
  for (const plan::RoutedPair& p : plan.pairs) {
    const int32_t triple[3] = {static_cast<int32_t>(c.ep_rank), p.token, p.k};
    const uint64_t offset = call.half_offset + layout.DispatchSlotOffset(c.ep_rank * l + p.expert % l, p.slot);
    const int dst = static_cast<int>(c.ExpertRank(p.expert));
    writer.Send(ep, dst, offset, p.token, c.shared_expert_num + p.expert, triple, pulled[dst]);
  }
  for (int64_t i = 0; i < c.shared_expert_num; ++i) {
    const int dst = static_cast<int>(c.SharedRank(i, c.ep_rank));
    for (size_t slot = 0; slot < plan.valid_tokens.size(); ++slot) {
      const int32_t token = plan.valid_tokens[slot];
      const int32_t triple[3] = {static_cast<int32_t>(c.ep_rank), token, static_cast<int32_t>(c.top_k + i)};
      writer.Send(ep, dst, call.half_offset + layout.DispatchSlotOffset(c.ep_rank, slot), token, i, triple,
                  pulled[dst]);
    }
  }
}

// The two ranks of a TP pair append each other's rows to their own, so they must agree as an EP group's ranks do,
// and have the same role (shared-expert or MoE-expert rank: their counts and windows are laid out differently): a
// peer laid out otherwise would hand over rows of another size, or counts this rank does not wait for. Each tells
// the other its fingerprint with its EP announcement; CheckTpPeerAgrees reads it before any output is written.
// `fingerprint`: the rank's AttributeFingerprint.
uint32_t TpFingerprint(const MoeConfig& c, uint32_t fingerprint) {
  return (fingerprint ^ static_cast<uint32_t>(c.is_shared_rank())) * 16777619u;
}
void AnnounceToTpPeer(const MoeConfig& c, uint32_t fingerprint, Window& tp, const CallSlot& tp_call) {
  tp.Signal(1 - tp.rank(), StartFlag(tp_call, tp.rank()), MakeFlag(tp_call.epoch, TpFingerprint(c, fingerprint)));
}
// Waits for the TP peer's start of the call (its attributes); returns them.
uint32_t TpPeerStart(const MoeConfig& c, Window& tp, const CallSlot& tp_call, const Link& ctx) {
  const int peer = 1 - tp.rank();
  const uint64_t index = StartFlag(tp_call, peer);
  // The EP window keeps moving meanwhile, as in AllGatherWithTpPeer.
  WaitOnTpPeer([&] {
    transport::WaitFlags(
        tp, {&index, 1}, tp_call.epoch, ctx.deadline, [&](uint64_t) { return peer; }, c.op.c_str(),
        "the TP peer's attributes", &ctx.ep);
  });
  return transport::FlagCount(tp.ReadFlag(index));
}
void CheckTpPeerAgrees(const MoeConfig& c, uint32_t fingerprint, Window& tp, const CallSlot& tp_call, const Link& ctx) {
  const int peer = 1 - tp.rank();
  if (TpPeerStart(c, tp, tp_call, ctx) != TpFingerprint(c, fingerprint)) {
    throw Error(ErrorCode::kInvalidConfig,
                c.op + ": TP rank " + std::to_string(peer) + " of " + tp.name() +
                    " called with attributes that differ from TP rank " + std::to_string(tp.rank()) + "'s (" +
                    (c.is_shared_rank() ? "a shared-expert rank, " : "a MoE-expert rank, ") +
                    AgreedValues(c, AgreedBy::kDispatch) +
                    "); rule: the two ranks of a TP pair must both host shared experts or both MoE experts "
                    "(epRankId below sharedExpertRankNum or not), and have the same " +
                    AgreedNames(c, AgreedBy::kDispatch));
  }
}

// The flag of the count `src` sends for local expert `e_local` of a rank with `l` local experts (1 on a shared
// rank). A source's counts for one rank lie side by side (L flags of 8 bytes): sources share a cache line only
// where one's counts end and the next's begin. Laid out in entry order (by local expert, then source),
// every source would write into every line, and the writers would take each line from one another in turn.
uint64_t CountFlag(const CallSlot& call, int64_t src, int64_t e_local, int64_t l) {
  return call.flag_base + src * l + e_local;
}

// One count flag per destination entry, zero counts included, so every receiver knows when it is done.
// One batch: a transport may wake each rank once for all of them.
void AnnounceCounts(const MoeConfig& c, const plan::RoutingPlan& plan, Window& ep, const CallSlot& call) {
  const int64_t l = c.local_expert_num(), r = c.shared_replicas();
  std::vector<Window::FlagWrite> counts;
  counts.reserve(static_cast<size_t>(c.shared_expert_rank_num + c.moe_expert_num));
  for (int64_t s = 0; s < c.shared_expert_rank_num; ++s) {
    const uint32_t count = s % r == c.ep_rank % r ? static_cast<uint32_t>(plan.valid_tokens.size()) : 0;
    counts.push_back({static_cast<int>(s), CountFlag(call, c.ep_rank, 0, 1), MakeFlag(call.epoch, count)});
  }
  for (int64_t expert = 0; expert < c.moe_expert_num; ++expert) {
    counts.push_back({static_cast<int>(c.ExpertRank(expert)), CountFlag(call, c.ep_rank, expert % l, l),
                      MakeFlag(call.epoch, static_cast<uint32_t>(plan.expert_counts[expert]))});
  }
  ep.SignalAll(counts);
}

// The smooth-scale row a source quantized rows for this rank with: shared expert i on a shared rank,
// n_s + the expert on a MoE rank (as SendToExperts chose it).
int64_t SmoothRowHere(const MoeConfig& c, int64_t e_local) {
  return c.is_shared_rank()
             ? c.ep_rank / c.shared_replicas()
             : c.shared_expert_num + (c.ep_rank - c.shared_expert_rank_num) * c.local_expert_num() + e_local;
}

[[noreturn]] void BadPulledRow(const MoeConfig& c, int src, const std::string& what, uint64_t value, uint64_t limit) {
  throw Error(ErrorCode::kInternal, c.op + ": rank " + std::to_string(src) + " sent a row whose " + what + " = " +
                                        std::to_string(value) + " is outside the " + std::to_string(limit) +
                                        " it announced; the ranks disagree about the layout");
}

// Where a source's pulled rows are: its x and (quantizing with smooth scales) its scales, or the rows of
// them this rank uses, copied here when the source exposed them by copy (smooth_first: the first one's index).
struct PulledSource {
  pull::Rows x, smooth;
  std::vector<float> smooth_copy;
  int64_t smooth_first = 0;
};

// Copies the smooth-scale rows this rank quantizes with out of a source that exposed them by copy.
void CopySmoothRows(const MoeConfig& c, const pull::Claims& claims, PulledSource& source) {
  const int64_t first = SmoothRowHere(c, 0), count = c.is_shared_rank() ? 1 : c.local_expert_num();
  if (static_cast<uint64_t>(first + count) > source.smooth.count) {
    BadPulledRow(c, source.smooth.copy_from, "smooth-scale row", first + count - 1, source.smooth.count);
  }
  source.smooth_copy.resize(count * c.hidden);
  std::vector<pull::RowCopy> copies;
  for (int64_t i = 0; i < count; ++i) copies.push_back({source.smooth_copy.data() + i * c.hidden, uint64_t(first + i)});
  claims.CopyRows(source.smooth, copies);
  source.smooth = {reinterpret_cast<const uint8_t*>(source.smooth_copy.data()), c.hidden * sizeof(float),
                   static_cast<uint64_t>(count), c.hidden * sizeof(float)};
  source.smooth_first = first;
}

// Reads the pull announcement of every source that sends rows here (nullopt: it pushed them), and claims the
// announced rows.
std::vector<std::optional<PulledSource>> PulledSources(const MoeConfig& c, const plan::DispatchTensors& t,
                                                       const Window& ep, const CallSlot& call,
                                                       const std::vector<uint64_t>& counts_by_source,
                                                       pull::Claims& claims) {
  const pull::CallFlags flags(plan::kDispatchPullFlagBase, call);
  const uint64_t row_bytes = c.hidden * DTypeSize(t.x.dtype);
  std::vector<std::optional<PulledSource>> sources(c.ep_world_size);
  for (int src = 0; src < static_cast<int>(c.ep_world_size); ++src) {
    if (counts_by_source[src] == 0) continue;
    const std::optional<pull::Rows> x = pull::Announced(ep, flags, src, row_bytes, c.op.c_str());
    if (!x) continue;
    PulledSource source{*x, {}, {}, 0};
    // Rows are quantized as their sender would have on the push path: with its smooth scales, if it has them (each
    // rank decides alone, from its own `scales`), which it then announced with them.
    if (c.quant_mode == 2) {
      if (auto smooth = pull::Announced(ep, flags, src, c.hidden * sizeof(float), c.op.c_str(), /*second=*/true)) {
        source.smooth = *smooth;
      }
    }
    claims.Claim(src, *x);
    if (source.smooth.copy_token != 0) CopySmoothRows(c, claims, source);
    sources[src] = std::move(source);
  }
  return sources;
}

// The rows a part of ReceiveFromGroup pulls by copy, in batches from one source, each read in one kernel
// call: straight into expandX, or (quantizing) into staging and quantized from there.
class CopiedRows {
 public:
  CopiedRows(const pull::Claims& claims, const RowSink& sink, kernels::Half type, int64_t hidden, bool quant)
      : claims_(claims), sink_(sink), type_(type), hidden_(hidden), quant_(quant) {}
  void Add(const pull::Rows& x, int64_t row, const uint8_t* slot, uint64_t token, const float* smooth) {
    if (!pending_.empty() && (pending_.size() == kBatchRows || x.copy_from != source_->copy_from)) Flush();
    source_ = &x;
    pending_.push_back({row, slot, token, smooth});
  }
  void Flush() {
    if (pending_.empty()) return;
    const uint64_t row_bytes = source_->row_bytes;
    if (quant_) staging_.resize(kBatchRows * row_bytes);
    copies_.clear();
    for (size_t i = 0; i < pending_.size(); ++i) {
      copies_.push_back({quant_ ? staging_.data() + i * row_bytes : sink_.Row(pending_[i].row), pending_[i].token});
    }
    claims_.CopyRows(*source_, copies_);
    for (size_t i = 0; i < pending_.size(); ++i) {
      const Pending& p = pending_[i];
      if (quant_) {
        sink_.WritePulled(p.row, p.slot, type_, hidden_, staging_.data() + i * row_bytes, p.smooth);
      } else {
        sink_.Landed(p.row, p.slot);
      }
    }
    pending_.clear();
  }

 private:
  // Rows per kernel call: enough to make its cost small next to the copies, few enough that quantizing
  // finds the staged rows still in cache.
  static constexpr size_t kBatchRows = 32;
  struct Pending {
    int64_t row;
    const uint8_t* slot;
    uint64_t token;
    const float* smooth;
  };
  const pull::Claims& claims_;
  const RowSink& sink_;
  kernels::Half type_;
  int64_t hidden_;
  bool quant_;
  const pull::Rows* source_ = nullptr;
  std::vector<Pending> pending_;
  std::vector<pull::RowCopy> copies_;
  std::vector<uint8_t> staging_;
};

// Waits for every source's count for this rank's experts; returns their flags, entry i (epRecvCounts' order: by local
// expert, then source) source i % E's count for local expert i / E. Every source announced its pull before them.
std::vector<uint64_t> WaitForCounts(const MoeConfig& c, Window& ep, const CallSlot& call, const Link& ctx) {
  const int64_t e = c.ep_world_size, entries = c.receive_entries(), flags_per_source = entries / e;
  std::vector<uint64_t> indices(entries);
  for (int64_t i = 0; i < entries; ++i) indices[i] = CountFlag(call, i % e, i / e, flags_per_source);
  transport::WaitFlags(
      ep, indices, call.epoch, ctx.deadline,
      [&](uint64_t idx) { return static_cast<int>((idx - call.flag_base) / flags_per_source); }, c.op.c_str(),
      "token counts");
  return indices;
}

// Waits for every source's count, then copies rows out in status order, from the window's slots or (pulled)
// straight from the source's x, and tells each source it pulled from that it is done; fills
// epRecvCounts[0, entries).
void ReceiveFromGroup(const MoeConfig& c, const WindowLayout& layout, const plan::DispatchTensors& t, Window& ep,
                      const CallSlot& call, const Link& ctx, RowSink& sink, int32_t* recv_counts) {
  const int64_t e = c.ep_world_size, l = c.local_expert_num();
  const int64_t entries = c.receive_entries();
  // First: should this rank fail before it pulls (a count that never comes, a bad one), its sources are told at once.
  pull::Claims claims(ep, pull::CallFlags(plan::kDispatchPullFlagBase, call), c.op.c_str());
  const std::vector<uint64_t> indices = WaitForCounts(c, ep, call, ctx);

  // A count beyond maxBs would read slots of the next block (or past the window): refuse it first.
  std::vector<int64_t> counts(entries);
  std::vector<uint64_t> counts_by_source(e, 0);
  int64_t total = 0;
  for (int64_t entry = 0; entry < entries; ++entry) {
    const uint32_t count = transport::FlagCount(ep.ReadFlag(indices[entry]));
    counts[entry] = count;
    counts_by_source[entry % e] += count;
    if (count > static_cast<uint64_t>(layout.max_bs)) {
      throw Error(ErrorCode::kInternal, c.op + ": rank " + std::to_string(entry % e) + " announced " +
                                            std::to_string(count) + " rows for one expert, more than maxBs = " +
                                            std::to_string(layout.max_bs) + "; the ranks disagree about the layout");
    }
    total += count;
  }
  sink.Reserve(total, "the EP group");
  const std::vector<std::optional<PulledSource>> pulled = PulledSources(c, t, ep, call, counts_by_source, claims);

  // Rows come out in entry order: entry i's rows start where entry i-1's end (its epRecvCounts value).
  const int64_t first = sink.Take(total, /*read_again=*/c.has_tp());
  std::vector<int64_t> entry_end(entries);
  for (int64_t entry = 0, end = first; entry < entries; ++entry) {
    end += counts[entry];
    entry_end[entry] = end;
    recv_counts[entry] = static_cast<int32_t>(end);
  }
  const kernels::Half type = HalfOf(c.x_dtype);
  ctx.ForEachPart(total, layout.dispatch_token_bytes, [&](int, int64_t begin, int64_t end) {
    CopiedRows copied(claims, sink, type, c.hidden, c.quant_mode == 2);
    int64_t entry = std::upper_bound(entry_end.begin(), entry_end.end(), first + begin) - entry_end.begin();
    for (int64_t row = first + begin; row < first + end; ++row) {
      while (row >= entry_end[entry]) ++entry;
      const int64_t src = entry % e, e_local = entry / e;
      const int64_t block = c.is_shared_rank() ? src : src * l + e_local;
      const int64_t s = row - (entry_end[entry] - counts[entry]);
      const uint8_t* slot = ep.LocalData() + call.half_offset + layout.DispatchSlotOffset(block, s);
      if (!pulled[src]) {
        sink.Write(row, slot);
        continue;
      }
      const PulledSource& source = *pulled[src];
      int32_t token = 0;
      std::memcpy(&token, slot + layout.dispatch_triple_offset + sizeof(int32_t), sizeof token);
      if (token < 0 || static_cast<uint64_t>(token) >= source.x.count) {
        BadPulledRow(c, static_cast<int>(src), "token index", static_cast<uint64_t>(token), source.x.count);
      }
      const float* smooth = nullptr;
      if (source.smooth.base) {
        const int64_t smooth_row = SmoothRowHere(c, e_local) - source.smooth_first;
        if (static_cast<uint64_t>(smooth_row) >= source.smooth.count) {
          BadPulledRow(c, static_cast<int>(src), "smooth-scale row", smooth_row, source.smooth.count);
        }
        smooth = reinterpret_cast<const float*>(source.smooth.Row(smooth_row));
      }
      if (source.x.copy_token != 0) {
        copied.Add(source.x, row, slot, token, smooth);
      } else {
        sink.WritePulled(row, slot, type, c.hidden, source.x.Row(token), smooth);
      }
    }
    copied.Flush();
  });
  claims.Finish();
}

// docs/semantics.md 2.7: rows and scales go to the TP peer (from the outputs, where they are whichever path brought
// them); the peer's rows are appended after ours, without triples (combine reads its own rows' only).
void AllGatherWithTpPeer(const MoeConfig& c, const WindowLayout& layout, Window& tp, const CallSlot& call,
                         const Link& ctx, RowSink& sink, int32_t* recv_counts, int64_t entries) {
  const int peer = 1 - tp.rank();
  for (int64_t i = 0; i < sink.rows(); ++i) {
    const uint64_t slot = call.half_offset + i * layout.dispatch_slot_bytes;
    tp.Put(peer, slot, sink.Row(i), layout.dispatch_token_bytes);
    if (c.quant_mode == 2) tp.Put(peer, slot + layout.dispatch_scale_offset, sink.Scale(i), sizeof(float));
  }
  for (int64_t entry = 0; entry < entries; ++entry) {
    tp.Signal(peer, call.flag_base + entry, MakeFlag(call.epoch, static_cast<uint32_t>(recv_counts[entry])));
  }
  std::vector<uint64_t> indices(entries);
  for (int64_t i = 0; i < entries; ++i) indices[i] = call.flag_base + i;
  // The EP window keeps moving meanwhile: this rank may relay EP rows the TP peer is still waiting for.
  WaitOnTpPeer([&] {
    transport::WaitFlags(
        tp, indices, call.epoch, ctx.deadline, [&](uint64_t) { return peer; }, c.op.c_str(), "the TP peer's rows",
        &ctx.ep);
  });
  ctx.tp_state->pair_call_open = false;  // the peer's part is in: a failure from here on leaves the pair in step
  for (int64_t entry = 0; entry < entries; ++entry) {
    recv_counts[entries + entry] = static_cast<int32_t>(transport::FlagCount(tp.ReadFlag(call.flag_base + entry)));
  }
  const int64_t peer_rows = entries > 0 ? recv_counts[2 * entries - 1] : 0;
  if (peer_rows < 0 || peer_rows > layout.a) {  // the TP window holds A slots
    throw Error(ErrorCode::kInternal, c.op + ": the TP peer announced " + std::to_string(peer_rows) +
                                          " rows, outside [0, A = " + std::to_string(layout.a) +
                                          "]; the ranks disagree about the layout");
  }
  sink.Reserve(peer_rows, "the TP peer", /*triples=*/false);
  const int64_t first = sink.Take(peer_rows, /*read_again=*/false);
  ctx.ForEachPart(peer_rows, layout.dispatch_token_bytes, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      sink.WritePayload(first + i, tp.LocalData() + call.half_offset + i * layout.dispatch_slot_bytes);
    }
  });
}

// Atlas A2's assistInfoForCombine (docs/a2.md): for each (token, k) of the active tokens, in flattened order, how
// many earlier pairs of this rank went to the same expert (the row's place in its block on the expert's rank); 0
// for pairs that travel nowhere. Later entries are left untouched.
void WriteExpandIdx(const MoeConfig& c, const plan::RoutingPlan& plan, int64_t active_tokens, int32_t* expand_idx) {
  std::fill(expand_idx, expand_idx + active_tokens * c.top_k, 0);
  for (const plan::RoutedPair& p : plan.pairs) expand_idx[p.token * c.top_k + p.k] = p.slot;
}

void WriteExpertTokenNums(const MoeConfig& c, const int32_t* recv_counts, int64_t total, int64_t* token_nums) {
  const int64_t e = c.ep_world_size, l = c.local_expert_num();
  if (c.is_shared_rank() || l == 1) {
    token_nums[0] = total;
    return;
  }
  int64_t previous = 0;
  for (int64_t el = 0; el < l; ++el) {
    const int64_t cumulative = recv_counts[el * e + e - 1];
    token_nums[el] = c.expert_token_nums_type == 0 ? cumulative : cumulative - previous;
    previous = cumulative;
  }
}

// A call the EP group agreed on that fails on this rank's TP side (its peer disagrees, or does not come): the EP ranks
// go on with it, and are neither failed nor held to their deadline for this rank. Unless it `received` their rows
// already, it tells each sender that it is done with the rows it will not read (once their counts are in: each
// announced its rows before them), and it waits for the ranks reading its x to finish, instead of withdrawing x from
// under them. Never throws: the TP side's error is the call's (what is left, WithdrawX covers).
void LetEpPeersFinish(const MoeConfig& c, Window& ep, const CallSlot& call, const Link& ctx, const Pulls& pulls,
                      bool received) noexcept {
  const pull::CallFlags flags(plan::kDispatchPullFlagBase, call);
  try {
    if (!received) {
      WaitForCounts(c, ep, call, ctx);
      pull::Claims none(ep, flags, c.op.c_str());  // going unfinished, it says done to every sender
    }
    // Not for itself: rows of its own it did not read are withdrawn with the rest (WithdrawX).
    std::vector<uint8_t> peers = pulls.readers;
    if (!received) peers[c.ep_rank] = pull::kNoReader;
    if (!pulls.staged) pull::WaitDone(ep, flags, peers, ctx.deadline, c.op.c_str());
  } catch (...) {
  }
}

// Everything of a dispatch after its pull announcement (what may fail with x announced): rows and counts out,
// rows in (and to the TP peer), and the wait for the ranks reading x in place.
void SendAndReceive(const MoeConfig& c, const WindowLayout& layout, const plan::DispatchTensors& t,
                    const plan::RoutingPlan& plan, int64_t active_tokens, const Link& ctx, const CallSlot& call,
                    const std::optional<CallSlot>& tp_call, const Pulls& pulls) {
  Window& ep = ctx.ep;
  SlotWriter writer(c, layout, t);
  SendToExperts(c, layout, plan, writer, ep, call, pulls.readers);
  AnnounceCounts(c, plan, ep, call);
  const uint32_t fingerprint = CheckPeersAgree(c, AgreedBy::kDispatch, ep, call, ctx, [&] {
    // Every rank refuses such a call before it reads a row (each sees some fingerprint that differs from its own):
    // a staged x has no reader, and its buffer is free again instead of kept for readers that never come.
    if (pulls.staged) ctx.ep_state.dispatch_stage.Readers(call.parity, call.epoch, {});
  });
  if (tp_call) {
    try {
      CheckTpPeerAgrees(c, fingerprint, *ctx.tp, *tp_call, ctx);
    } catch (const InterruptedError&) {
      throw;  // the caller wants the call ended now, not after its peers
    } catch (...) {
      LetEpPeersFinish(c, ep, call, ctx, pulls, /*received=*/false);
      throw;
    }
  }
  // No output is written before the group is known to agree: a call refused for a disagreement leaves them as
  // they were.
  if (c.expand_idx()) WriteExpandIdx(c, plan, active_tokens, static_cast<int32_t*>(t.assist_info.data));

  RowSink sink(c, layout, t);
  auto* recv_counts = static_cast<int32_t*>(t.ep_recv_counts.data);
  ReceiveFromGroup(c, layout, t, ep, call, ctx, sink, recv_counts);
  const int64_t own_rows = sink.rows();
  if (c.has_tp()) {
    const int64_t entries = c.receive_entries();
    try {
      AllGatherWithTpPeer(c, layout, *ctx.tp, *tp_call, ctx, sink, recv_counts, entries);
    } catch (const InterruptedError&) {
      throw;  // the caller wants the call ended now, not after its peers
    } catch (...) {
      LetEpPeersFinish(c, ep, call, ctx, pulls, /*received=*/true);
      throw;
    }
    auto* tp_counts = static_cast<int32_t*>(t.tp_recv_counts.data);
    tp_counts[c.tp_rank] = static_cast<int32_t>(own_rows);
    tp_counts[1 - c.tp_rank] = static_cast<int32_t>(sink.rows() - own_rows);
  }
  WriteExpertTokenNums(c, recv_counts, sink.rows(), static_cast<int64_t*>(t.expert_token_nums.data));
  const pull::ReaderCounts counts = pull::CountReaders(pulls.readers);
  ctx.ep_state.dispatch_readers = counts.readers;
  ctx.ep_state.dispatch_copy_readers = counts.by_copy;
  // The caller may overwrite x once this returns: not before every rank reading it in place is done (a staged
  // copy stays put until every peer has finished this call).
  if (!pulls.staged) {
    pull::WaitDone(ep, pull::CallFlags(plan::kDispatchPullFlagBase, call), pulls.readers, ctx.deadline, c.op.c_str());
  }
}

// x is the caller's again once dispatch returns: no peer may still be about to read it (a staged copy stays;
// announcing stopped part-way: whoever it reached).
void WithdrawX(const MoeConfig& c, Window& ep, const CallSlot& call, const std::optional<Pulls>& pulls) {
  const std::vector<uint8_t> everyone(c.ep_world_size, 1);
  if (!pulls || !pulls->staged) {
    pull::Withdraw(ep, pull::CallFlags(plan::kDispatchPullFlagBase, call), pulls ? pulls->readers : everyone);
  }
}

}  // namespace

void Dispatch(const MoeConfig& c, const plan::DispatchTensors& t, const Link& ctx) {
  const WindowLayout layout(c);
  const std::vector<int32_t> ids = GatherInt32(t.expert_ids);
  const std::vector<uint8_t> mask = GatherBool(t.x_active_mask);
  plan::CheckRouting(c, ids.data(), mask.empty() ? nullptr : mask.data(), c.op.c_str());
  const plan::RoutingPlan plan = plan::BuildRoutingPlan(c, ids.data(), mask.empty() ? nullptr : mask.data());
  const int64_t active_tokens = plan::ActiveTokenLimit(c, mask.empty() ? nullptr : mask.data());

  Window& ep = ctx.ep;
  const CallSlot call = NextDispatchCall(ep, ctx.ep_state);
  const uint32_t fingerprint = AnnounceAttributes(c, AgreedBy::kDispatch, ep, call);
  std::optional<CallSlot> tp_call;
  if (c.has_tp()) {
    tp_call = NextDispatchCall(*ctx.tp, *ctx.tp_state);
    ctx.tp_state->pair_call_open = true;
    AnnounceToTpPeer(c, fingerprint, *ctx.tp, *tp_call);
  }
  std::optional<Pulls> pulls;
  try {
    pulls = AnnouncePulls(c, layout, t, plan, ep, call, ctx.pull_min_bytes, &ctx.ep_state.dispatch_stage);
    SendAndReceive(c, layout, t, plan, active_tokens, ctx, call, tp_call, *pulls);
  } catch (const Error& e) {
    WithdrawX(c, ep, call, pulls);
    // A refusal that leaves the group usable (a disagreement: every EP start is in) waits for the TP peer's start
    // too, as the call would have: this rank's next call may write into the peer's TP window.
    if (tp_call && e.code() != ErrorCode::kTimeout && e.code() != ErrorCode::kInternal) {
      TpPeerStart(c, *ctx.tp, *tp_call, ctx);
      ctx.tp_state->pair_call_open = false;
    }
    throw;
  } catch (...) {
    WithdrawX(c, ep, call, pulls);
    throw;
  }
}

}  // namespace moe_ep::ops::protocol
