// The reference model's entry points: Dispatch (docs/semantics.md 2, with the V3 special experts of 2.8), Combine
// (docs/semantics.md 3.1-3.3) and CombineAddRmsNorm (docs/semantics.md 3.5), computed over all ranks at once from the
// layouts of layout.h. Bit-exact; plain loops. Build with -ffp-contract=off: every a * b + c below must round the
// product before the sum.
#include "reference/reference.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "reference/layout.h"
#include "reference/numerics.h"

namespace moe_ref {
namespace {

using layout::Dims;
using layout::EpResult;
using layout::Row;
using numerics::DtypeToFloat;
using numerics::FloatToDtype;

void Require(bool condition, const std::string& message) {
  if (!condition) throw std::invalid_argument("moe_ref: " + message);
}

// layouts[tp_rank][ep_rank]: what every rank receives from its own EP group.
using GroupLayouts = std::vector<std::vector<EpResult>>;

GroupLayouts LayoutAllGroups(const Config& config, const Dims& dims, const std::vector<RankInput>& inputs) {
  GroupLayouts layouts;
  for (int tp_rank = 0; tp_rank < dims.tp; ++tp_rank) {
    layouts.push_back(layout::LayoutEpGroup(config, dims, inputs, tp_rank));
  }
  return layouts;
}

// ---------------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------------

// docs/semantics.md 2.4: dynamic int8 quantization of one expanded row, with the smooth-scale row of its destination
// expert. ds = 127 / amax, q = rint(f * ds), scale = 1 / ds. amax == 0 (decision): q = 0 and
// scale = 1 / inf = 0.
void QuantizeRow(const Config& config, const Dims& dims, const RankInput& source, const Row& row, int8_t* q,
                 float* scale) {
  const uint16_t* x = source.x.data() + row.token * dims.H;
  const float* smooth = source.smooth_scales.empty() ? nullptr : source.smooth_scales.data() + row.smooth_row * dims.H;
  std::vector<float> f(dims.H);
  for (int64_t h = 0; h < dims.H; ++h) f[h] = DtypeToFloat(config.dtype, x[h]);
  if (smooth != nullptr) {
    for (int64_t h = 0; h < dims.H; ++h) f[h] = f[h] * smooth[h];
  }
  float amax = 0.0f;
  for (int64_t h = 0; h < dims.H; ++h) amax = std::max(amax, std::fabs(f[h]));
  if (amax == 0.0f) {
    std::fill(q, q + dims.H, int8_t{0});
    *scale = 0.0f;
    return;
  }
  const float ds = 127.0f / amax;
  for (int64_t h = 0; h < dims.H; ++h) f[h] = numerics::RoundHalfEven(f[h] * ds);
  for (int64_t h = 0; h < dims.H; ++h) q[h] = numerics::IntegralFloatToInt8(f[h]);
  *scale = 1.0f / ds;
}

// Writes row `index` of `out`: the payload (docs/semantics.md 2.2 / 2.4) and, on A3, the triple (srcRank, tokenIdx,
// kIdx). A2 has no triples.
void WriteDispatchRow(const Config& config, const Dims& dims, const RankInput& source, const Row& row, int64_t index,
                      DispatchOut& out) {
  if (config.quant_mode == 2) {
    QuantizeRow(config, dims, source, row, out.expand_x_q.data() + index * dims.H, &out.dynamic_scales[index]);
  } else {
    const uint16_t* x = source.x.data() + row.token * dims.H;
    std::copy(x, x + dims.H, out.expand_x.begin() + index * dims.H);
  }
  if (config.a2) return;
  out.assist_info[3 * index + 0] = row.src;
  out.assist_info[3 * index + 1] = row.token;
  out.assist_info[3 * index + 2] = row.k_idx;
}

// One rank's dispatch outputs. Without TP: its EP result. With TP (docs/semantics.md 2.7 / 2.3): [own rows][peer rows],
// epRecvCounts [own][peer] (each cumulative from 0), tpRecvCounts indexed by TP rank, expertTokenNums
// own + peer.
DispatchOut AssembleDispatchOut(const Config& config, const Dims& dims, const GroupLayouts& layouts,
                                const std::vector<RankInput>& inputs, int tp_rank, int ep_rank) {
  std::vector<int> part_tp_ranks = {tp_rank};
  if (dims.tp == 2) part_tp_ranks.push_back(1 - tp_rank);

  DispatchOut out;
  for (int part : part_tp_ranks) out.rows += static_cast<int64_t>(layouts[part][ep_rank].rows.size());
  out.own_rows = static_cast<int64_t>(layouts[tp_rank][ep_rank].rows.size());
  if (config.quant_mode == 2) {
    out.expand_x_q.assign(out.rows * dims.H, 0);
    out.dynamic_scales.assign(out.rows, 0.0f);
  } else {
    out.expand_x.assign(out.rows * dims.H, 0);
  }
  if (!config.a2) out.assist_info.assign(3 * out.rows, 0);

  int64_t index = 0;
  for (int part : part_tp_ranks) {
    const EpResult& result = layouts[part][ep_rank];
    for (const Row& row : result.rows) {
      // The triple's srcRank is numbered inside the EP group that produced the row.
      WriteDispatchRow(config, dims, inputs[dims.GlobalRank(part, row.src)], row, index, out);
      ++index;
    }
    out.ep_recv_counts.insert(out.ep_recv_counts.end(), result.ep_recv_counts.begin(), result.ep_recv_counts.end());
    if (out.expert_token_nums.empty()) {
      out.expert_token_nums = result.expert_token_nums;
    } else {
      for (size_t e = 0; e < out.expert_token_nums.size(); ++e) out.expert_token_nums[e] += result.expert_token_nums[e];
    }
  }
  if (dims.tp == 2) {
    out.tp_recv_counts.assign(2, 0);
    out.tp_recv_counts[tp_rank] = static_cast<int32_t>(layouts[tp_rank][ep_rank].rows.size());
    out.tp_recv_counts[1 - tp_rank] = static_cast<int32_t>(layouts[1 - tp_rank][ep_rank].rows.size());
  }
  return out;
}

// A2's expandIdx of one (sending) rank: for each flat pair i = t * K + k of the activeBs active tokens, the number
// of earlier pairs i' < i of this rank with the same MoE expert id; 0 for the special (zero / copy) experts.
// activeBs = bs, or with a 1-D mask the number of true entries (RouteRank marks tokens [0, activeBs) active).
std::vector<int32_t> ExpandIdx(const Dims& dims, const RankInput& input) {
  const layout::Routing routing = layout::RouteRank(dims, input);
  int64_t active_bs = 0;
  for (uint8_t active : routing.token_active) active_bs += active ? 1 : 0;
  std::vector<int32_t> expand_idx(active_bs * dims.K, 0);
  std::vector<int32_t> seen(dims.moe, 0);  // seen[e]: pairs i' < i with expert e so far
  for (int64_t i = 0; i < active_bs * dims.K; ++i) {
    const int32_t expert = input.expert_ids[i];
    if (expert >= dims.moe) continue;  // zero / copy expert: 0
    expand_idx[i] = seen[expert]++;
  }
  return expand_idx;
}

// ---------------------------------------------------------------------------------------------------
// Combine
// ---------------------------------------------------------------------------------------------------

// Where the row for one (token, kIdx) slot of an owner rank lies: on which rank, at which dispatch row.
struct Location {
  int rank = -1;
  int64_t row = -1;
};

// locations[owner][t * (K + n_s) + kIdx] for every owner rank (global index), from the layouts.
std::vector<std::vector<Location>> LocateRows(const Dims& dims, const GroupLayouts& layouts,
                                              const std::vector<RankInput>& inputs) {
  const int slots_per_token = dims.K + dims.n_s;
  std::vector<std::vector<Location>> locations(inputs.size());
  for (size_t g = 0; g < inputs.size(); ++g) locations[g].assign(inputs[g].bs * slots_per_token, Location{});
  for (int tp_rank = 0; tp_rank < dims.tp; ++tp_rank) {
    for (int ep_rank = 0; ep_rank < dims.E; ++ep_rank) {
      const std::vector<Row>& rows = layouts[tp_rank][ep_rank].rows;
      for (size_t i = 0; i < rows.size(); ++i) {
        const int owner = dims.GlobalRank(tp_rank, rows[i].src);
        locations[owner][static_cast<int64_t>(rows[i].token) * slots_per_token + rows[i].k_idx] =
            Location{dims.GlobalRank(tp_rank, ep_rank), static_cast<int64_t>(i)};
      }
    }
  }
  return locations;
}

// values[h] = float(dtype(values[h])), rounding half to even (the dtype test sits outside the loops).
void RoundThroughDtype(DType dtype, std::vector<float>& values) {
  const int64_t size = static_cast<int64_t>(values.size());
  float* data = values.data();
  if (dtype == DType::kBf16) {
    for (int64_t h = 0; h < size; ++h) data[h] = numerics::Bf16ToFloat(numerics::FloatToBf16(data[h]));
  } else {
    for (int64_t h = 0; h < size; ++h) data[h] = numerics::RoundToHalfGrid(data[h]);  // HalfToFloat(FloatToHalf)
  }
}

// docs/semantics.md 3.3: the int8 round trip of one returned row (sender quantizes, receiver dequantizes), per block of
// 8 elements (the zero padding of the last block cannot change its amax):
//   s = amax * (1/127); transmitted scale = dtype(s);
//   q = int8(rint(fp16(x / s))) with the unrounded s (s == 0 => q = 0);
//   receiver: v = float(dtype(float(fp16(q)) * float(transmitted scale))), where fp16(q) is exact.
// Written as whole-row passes so that the compiler can vectorize the simple ones.
void CommQuantRoundTrip(DType dtype, const std::vector<uint16_t>& row, std::vector<float>& values) {
  const float inv_127 = 1.0f / 127.0f;
  const int64_t size = static_cast<int64_t>(row.size());
  std::vector<float> x(size);
  for (int64_t h = 0; h < size; ++h) x[h] = DtypeToFloat(dtype, row[h]);

  // Per block: the divisor (s, or 1 where s == 0: the block is all zeros then, so x / 1 = 0 gives q = 0;
  // a nonzero bf16/fp16 amax times 1/127 never underflows to 0 in fp32)
  // and the transmitted scale, spread over the block's elements.
  std::vector<float> divisor(size);
  std::vector<float> transmitted_scale(size);
  for (int64_t begin = 0; begin < size; begin += 8) {
    const int64_t end = std::min(begin + 8, size);
    float amax = 0.0f;
    for (int64_t h = begin; h < end; ++h) amax = std::max(amax, std::fabs(x[h]));
    const float s = amax * inv_127;
    const float scale = DtypeToFloat(dtype, FloatToDtype(dtype, s));
    for (int64_t h = begin; h < end; ++h) {
      divisor[h] = s == 0.0f ? 1.0f : s;
      transmitted_scale[h] = scale;
    }
  }

  std::vector<float> ratio(size);
  for (int64_t h = 0; h < size; ++h) ratio[h] = x[h] / divisor[h];
  for (int64_t h = 0; h < size; ++h) ratio[h] = numerics::RoundToHalfGrid(ratio[h]);  // fp16(x / s)
  for (int64_t h = 0; h < size; ++h) {
    const int8_t q = numerics::IntegralFloatToInt8(numerics::RoundHalfEven(ratio[h]));
    values[h] = static_cast<float>(q) * transmitted_scale[h];
  }
  RoundThroughDtype(dtype, values);
}

// Everything combine needs, gathered once.
struct CombineContext {
  const Config& config;
  const Dims& dims;
  const GroupLayouts& layouts;
  const std::vector<RankInput>& inputs;
  const std::vector<CombineInput>& combine_inputs;
  std::vector<std::vector<Location>> locations;
};

// The values (as floats) that the receiver uses for dispatch row `row` of rank `rank`:
// - TP (docs/semantics.md 3.1): own row i becomes dtype(float(own[i]) + float(peer[j])), j = i + the peer's own row
//   count (where the peer placed our row). The fp32 add then rounding equals fp16's native add too
//   (fp32 has more than 2 * 11 + 2 bits, so the double rounding is innocuous);
// - comm_quant_mode 2 (docs/semantics.md 3.3): the int8 round trip.
void ReturnedRowValues(const CombineContext& context, int rank, int64_t row, std::vector<uint16_t>& bits,
                       std::vector<float>& values) {
  const Dims& dims = context.dims;
  const DType dtype = context.config.dtype;
  const uint16_t* own = context.combine_inputs[rank].expert_out.data() + row * dims.H;
  bits.assign(own, own + dims.H);
  if (dims.tp == 2) {
    const int tp_rank = rank / dims.E;
    const int ep_rank = rank % dims.E;
    const int peer = dims.GlobalRank(1 - tp_rank, ep_rank);
    const int64_t peer_row = static_cast<int64_t>(context.layouts[1 - tp_rank][ep_rank].rows.size()) + row;
    const uint16_t* partial = context.combine_inputs[peer].expert_out.data() + peer_row * dims.H;
    for (int64_t h = 0; h < dims.H; ++h) {
      const float sum = DtypeToFloat(dtype, bits[h]) + DtypeToFloat(dtype, partial[h]);
      bits[h] = FloatToDtype(dtype, sum);
    }
  }
  values.resize(dims.H);
  if (context.config.comm_quant_mode == 2) {
    CommQuantRoundTrip(dtype, bits, values);
  } else {
    for (int64_t h = 0; h < dims.H; ++h) values[h] = DtypeToFloat(dtype, bits[h]);
  }
}

const Location& FindRow(const CombineContext& context, int owner, int64_t token, int k_idx) {
  const Location& location = context.locations[owner][token * (context.dims.K + context.dims.n_s) + k_idx];
  Require(location.rank >= 0, "internal: no dispatch row for rank " + std::to_string(owner) + " token " +
                                  std::to_string(token) + " kIdx " + std::to_string(k_idx));
  return location;
}

// docs/semantics.md 3.2: the fp32 accumulator of an active token, in the kernel's exact order. Products and sums are
// rounded separately (two statements, and the file is compiled with -ffp-contract=off). Special experts
// (zero / copy / const) are computed here, on the owner, in k order together with the MoE rows.
void AccumulateToken(const CombineContext& context, const layout::Routing& routing, int owner, int64_t token,
                     std::vector<float>& acc) {
  const Dims& dims = context.dims;
  const CombineInput& input = context.combine_inputs[owner];
  std::vector<uint16_t> bits;
  std::vector<float> v;
  const DType dtype = context.config.dtype;
  acc.assign(dims.H, 0.0f);
  // MoE and special experts, weighted, in k order (masked pairs under a 2-D mask are skipped).
  for (int k = 0; k < dims.K; ++k) {
    const int64_t pair = token * dims.K + k;
    if (!routing.pair_active[pair]) continue;
    const int expert = context.inputs[owner].expert_ids[pair];
    const float w = input.expert_scales[pair];
    if (expert < dims.moe) {
      // MoE expert: the returned row (dequantized under comm_quant_mode 2).
      Require(routing.pair_sent[pair], "internal: MoE pair not sent");
      const Location& location = FindRow(context, owner, token, k);
      ReturnedRowValues(context, location.rank, location.row, bits, v);
    } else if (expert < dims.moe + dims.zero) {
      continue;  // zero expert: contributes nothing
    } else if (expert < dims.moe + dims.zero + dims.copy) {
      // copy expert: v = float(oriX[t]).
      const uint16_t* ori_x = input.ori_x.data() + token * dims.H;
      v.resize(dims.H);
      for (int64_t h = 0; h < dims.H; ++h) v[h] = DtypeToFloat(dtype, ori_x[h]);
    } else {
      // const expert c: a_i = sum over h of fp32(alpha_i[c][h] * oriX[t][h]) in the Sum order; (p1, p2) = the
      // softmax of (a1, a2), each exp taken in double and rounded to fp32; v = fp32(oriX * p1) + fp32(V[c] * p2).
      const int c = expert - dims.moe - dims.zero - dims.copy;
      const uint16_t* ori_x = input.ori_x.data() + token * dims.H;
      const uint16_t* const_v = input.const_v.data() + c * dims.H;
      std::vector<float> x(dims.H), products1(dims.H), products2(dims.H);
      for (int64_t h = 0; h < dims.H; ++h) {
        x[h] = DtypeToFloat(dtype, ori_x[h]);
        products1[h] = DtypeToFloat(dtype, input.const_alpha1[c * dims.H + h]) * x[h];
        products2[h] = DtypeToFloat(dtype, input.const_alpha2[c * dims.H + h]) * x[h];
      }
      const float a1 = numerics::ReduceSumTree(products1), a2 = numerics::ReduceSumTree(products2);
      const float larger = a1 > a2 ? a1 : a2;
      const float e1 = static_cast<float>(std::exp(static_cast<double>(a1 - larger)));
      const float e2 = static_cast<float>(std::exp(static_cast<double>(a2 - larger)));
      const float total = e1 + e2;
      const float p1 = e1 / total, p2 = e2 / total;
      v.resize(dims.H);
      for (int64_t h = 0; h < dims.H; ++h) {
        const float first = x[h] * p1;
        const float second = DtypeToFloat(dtype, const_v[h]) * p2;
        v[h] = first + second;
      }
    }
    for (int64_t h = 0; h < dims.H; ++h) {
      const float product = v[h] * w;
      acc[h] = acc[h] + product;
    }
  }
  // Shared experts, unweighted: expert i's row lies on shared rank i * R + r % R.
  for (int i = 0; i < dims.n_s; ++i) {
    const Location& location = FindRow(context, owner, token, dims.K + i);
    ReturnedRowValues(context, location.rank, location.row, bits, v);
    for (int64_t h = 0; h < dims.H; ++h) acc[h] = acc[h] + v[h];
  }
  // sharedExpertX, unweighted (A3 only: the A2 kernel never reads it).
  if (!context.config.a2 && !input.shared_expert_x.empty()) {
    const uint16_t* shared_x = input.shared_expert_x.data() + token * dims.H;
    for (int64_t h = 0; h < dims.H; ++h) acc[h] = acc[h] + DtypeToFloat(context.config.dtype, shared_x[h]);
  }
}

void CheckCombineInputs(const Config& config, const Dims& dims, const GroupLayouts& layouts,
                        const std::vector<RankInput>& inputs, const std::vector<CombineInput>& combine_inputs,
                        bool add_rms_norm) {
  Require(combine_inputs.size() == inputs.size(), "combine_inputs must hold one entry per rank");
  for (int g = 0; g < static_cast<int>(inputs.size()); ++g) {
    const std::string who = "rank " + std::to_string(g) + ": ";
    const CombineInput& input = combine_inputs[g];
    int64_t rows = 0;
    for (int tp_rank = 0; tp_rank < dims.tp; ++tp_rank) rows += layouts[tp_rank][g % dims.E].rows.size();
    const int64_t bs = inputs[g].bs;
    Require(static_cast<int64_t>(input.expert_out.size()) == rows * dims.H,
            who + "expert_out must hold rows * H values (rows = " + std::to_string(rows) + ")");
    Require(static_cast<int64_t>(input.expert_scales.size()) == bs * dims.K, who + "expert_scales must hold bs * K");
    Require(input.shared_expert_x.empty() || static_cast<int64_t>(input.shared_expert_x.size()) == bs * dims.H,
            who + "shared_expert_x must be empty or hold bs * H values");
    // Special experts (docs/semantics.md 3.2): oriX for copy and const experts, alpha1 / alpha2 / V for const experts.
    if (dims.copy + dims.cnst > 0) {
      Require(static_cast<int64_t>(input.ori_x.size()) == bs * dims.H,
              who + "ori_x must hold bs * H values when copy or const experts exist");
    } else {
      Require(input.ori_x.empty() || static_cast<int64_t>(input.ori_x.size()) == bs * dims.H,
              who + "ori_x must be empty or hold bs * H values");
    }
    Require(static_cast<int64_t>(input.const_alpha1.size()) == dims.cnst * dims.H,
            who + "const_alpha1 must hold const_expert_num * H values");
    Require(static_cast<int64_t>(input.const_alpha2.size()) == dims.cnst * dims.H,
            who + "const_alpha2 must hold const_expert_num * H values");
    Require(static_cast<int64_t>(input.const_v.size()) == dims.cnst * dims.H,
            who + "const_v must hold const_expert_num * H values");
    if (add_rms_norm) {
      Require(config.dtype == DType::kBf16, "CombineAddRmsNorm is bf16 only");
      Require(static_cast<int64_t>(input.residual_x.size()) == bs * dims.H, who + "residual_x must hold bs * H");
      Require(static_cast<int64_t>(input.gamma.size()) == dims.H, who + "gamma must hold H values");
    }
  }
}

// Runs the combine of every rank and hands each active token's fp32 accumulator to `finish`, which writes
// that token's outputs.
template <typename Finish>
std::vector<CombineOut> CombineAllRanks(const Config& config, const std::vector<RankInput>& inputs,
                                        const std::vector<CombineInput>& combine_inputs, bool add_rms_norm,
                                        Finish finish) {
  const Dims dims = layout::MakeDims(config, inputs);
  const GroupLayouts layouts = LayoutAllGroups(config, dims, inputs);
  CheckCombineInputs(config, dims, layouts, inputs, combine_inputs, add_rms_norm);
  const CombineContext context{config, dims, layouts, inputs, combine_inputs, LocateRows(dims, layouts, inputs)};

  std::vector<CombineOut> outs(inputs.size());
  std::vector<float> acc;
  for (int g = 0; g < static_cast<int>(inputs.size()); ++g) {
    const layout::Routing routing = layout::RouteRank(dims, inputs[g]);
    CombineOut& out = outs[g];
    out.written.assign(inputs[g].bs, 0);
    out.x.assign(inputs[g].bs * dims.H, 0);
    if (add_rms_norm) {
      out.y.assign(inputs[g].bs * dims.H, 0);
      out.rstd.assign(inputs[g].bs, 0.0f);
    }
    for (int64_t t = 0; t < inputs[g].bs; ++t) {
      if (!routing.token_active[t]) continue;  // inactive tokens: output rows untouched
      AccumulateToken(context, routing, g, t, acc);
      out.written[t] = 1;
      finish(dims, combine_inputs[g], t, acc, out);
    }
  }
  return outs;
}

// docs/semantics.md 3.5: the RMSNorm tail of CombineAddRmsNorm for one token (bf16 only).
void AddRmsNormToken(const Config& config, const Dims& dims, const CombineInput& input, int64_t t,
                     const std::vector<float>& acc, CombineOut& out) {
  const int64_t H = dims.H;
  std::vector<float> xs(H);
  std::vector<float> p(H);
  const float inv_h = 1.0f / static_cast<float>(H);  // tiling's avgFactor, in fp32
  for (int64_t h = 0; h < H; ++h) {
    xs[h] = acc[h] + numerics::Bf16ToFloat(input.residual_x[t * H + h]);
    out.x[t * H + h] = numerics::FloatToBf16(xs[h]);
    const float square = xs[h] * xs[h];
    p[h] = square * inv_h;
  }
  const float ms = numerics::ReduceSumInOrder(p);
  const float rstd = 1.0f / std::sqrt(ms + config.norm_eps);
  out.rstd[t] = rstd;
  for (int64_t h = 0; h < H; ++h) {
    const float normalized = numerics::Bf16ToFloat(numerics::FloatToBf16(xs[h] * rstd));
    out.y[t * H + h] = numerics::FloatToBf16(normalized * numerics::Bf16ToFloat(input.gamma[h]));
  }
}

}  // namespace

std::vector<DispatchOut> Dispatch(const Config& config, const std::vector<RankInput>& inputs) {
  const Dims dims = layout::MakeDims(config, inputs);
  const GroupLayouts layouts = LayoutAllGroups(config, dims, inputs);
  std::vector<DispatchOut> outs(inputs.size());
  for (int tp_rank = 0; tp_rank < dims.tp; ++tp_rank) {
    for (int ep_rank = 0; ep_rank < dims.E; ++ep_rank) {
      outs[dims.GlobalRank(tp_rank, ep_rank)] = AssembleDispatchOut(config, dims, layouts, inputs, tp_rank, ep_rank);
    }
  }
  // A2: expandIdx on every sending rank (A2 has no TP, so global rank = EP rank).
  if (config.a2) {
    for (size_t g = 0; g < inputs.size(); ++g) outs[g].expand_idx = ExpandIdx(dims, inputs[g]);
  }
  return outs;
}

std::vector<CombineOut> Combine(const Config& config, const std::vector<RankInput>& inputs,
                                const std::vector<CombineInput>& combine_inputs) {
  // docs/semantics.md 3.2: x[t] = dtype(acc), rounded half to even.
  auto finish = [&config](const Dims& dims, const CombineInput&, int64_t t, const std::vector<float>& acc,
                          CombineOut& out) {
    for (int64_t h = 0; h < dims.H; ++h) out.x[t * dims.H + h] = FloatToDtype(config.dtype, acc[h]);
  };
  return CombineAllRanks(config, inputs, combine_inputs, /*add_rms_norm=*/false, finish);
}

std::vector<CombineOut> CombineAddRmsNorm(const Config& config, const std::vector<RankInput>& inputs,
                                          const std::vector<CombineInput>& combine_inputs) {
  Require(!config.a2, "CombineAddRmsNorm does not exist on A2");
  auto finish = [&config](const Dims& dims, const CombineInput& input, int64_t t, const std::vector<float>& acc,
                          CombineOut& out) { AddRmsNormToken(config, dims, input, t, acc, out); };
  return CombineAllRanks(config, inputs, combine_inputs, /*add_rms_norm=*/true, finish);
}

}  // namespace moe_ref
