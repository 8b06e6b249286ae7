// Scenario generation, thread-rank execution through the native API, and bit-exact comparison.
#include "verify/scenario.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <numeric>
#include <sstream>
#include <utility>

#include "moe_ep/ops.h"
#include "verify/run_ranks.h"

namespace moe_ep::verify {
namespace {

using moe_ref::MaskKind;

int64_t Uniform(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}
bool Chance(std::mt19937_64& rng, double p) { return std::bernoulli_distribution(p)(rng); }

int Ranks(const moe_ref::Config& c) { return c.ep_world_size * c.tp_world_size; }
// MoE experts plus the V3 zero / copy / const experts (ids past moe_expert_num).
int64_t AllExperts(const moe_ref::Config& c) {
  return c.moe_expert_num + c.zero_expert_num + c.copy_expert_num + c.const_expert_num;
}
int64_t LocalExperts(const moe_ref::Config& c) {
  return c.moe_expert_num / (c.ep_world_size - c.shared_expert_rank_num);
}

// A random finite 16-bit float of moderate magnitude (1% zeros of either sign), as raw bits. One 64-bit
// draw sliced into its fields (the slices' bias is below 1e-13): the inputs are millions of these, and
// drawing each field apart dominated the sanitized tests.
uint16_t RandomHalf(std::mt19937_64& rng, moe_ref::DType dtype) {
  uint64_t bits = rng();
  const auto take = [&bits](uint64_t n) {
    const uint64_t v = bits % n;
    bits /= n;
    return static_cast<uint16_t>(v);
  };
  if (take(100) == 0) return take(2) ? 0x8000 : 0;
  const auto sign = static_cast<uint16_t>(take(2) << 15);
  if (dtype == moe_ref::DType::kBf16) return sign | static_cast<uint16_t>((118 + take(15)) << 7) | take(128);
  return sign | static_cast<uint16_t>((8 + take(13)) << 10) | take(1024);
}

// With ScenarioSpec::special_values: a tenth of the rows all zero (of either sign: quantizing finds no largest
// value), and a tenth with a few elements that are infinities, NaNs, subnormals or the largest finite values (they
// travel through quantization, the weighted sums and RMSNorm as the kernels' rules say).
void AddSpecialValues(std::mt19937_64& rng, moe_ref::DType dtype, int64_t rows, int64_t h, std::vector<uint16_t>& x) {
  const bool bf16 = dtype == moe_ref::DType::kBf16;
  const uint16_t specials[] = {
      static_cast<uint16_t>(bf16 ? 0x7F80 : 0x7C00),  // +inf
      static_cast<uint16_t>(bf16 ? 0xFF80 : 0xFC00),  // -inf
      static_cast<uint16_t>(bf16 ? 0x7FC1 : 0x7E01),  // a quiet NaN with a payload
      static_cast<uint16_t>(bf16 ? 0x7F7F : 0x7BFF),  // the largest finite value
      0x0001,                                         // the smallest subnormal
      0x8003,                                         // a negative subnormal
  };
  for (int64_t r = 0; r < rows; ++r) {
    uint16_t* row = &x[r * h];
    const int64_t kind = Uniform(rng, 0, 9);
    if (kind == 0) {
      std::fill(row, row + h, Chance(rng, 0.5) ? 0x8000 : 0);
    } else if (kind == 1) {
      for (int i = 0; i < 3; ++i) row[Uniform(rng, 0, h - 1)] = specials[Uniform(rng, 0, std::size(specials) - 1)];
    }
  }
}

// Fresh routing for one rank: K distinct experts per token and a mask of the spec's kind.
void RouteRank(const ScenarioSpec& s, std::mt19937_64& rng, moe_ref::RankInput& in) {
  const auto& c = s.config;
  in.expert_ids.resize(in.bs * c.top_k);
  const int64_t all_experts = AllExperts(c);
  std::vector<int32_t> experts(all_experts);
  std::iota(experts.begin(), experts.end(), 0);
  for (int64_t t = 0; t < in.bs; ++t) {
    for (int k = 0; k < c.top_k; ++k) {  // partial Fisher-Yates: K distinct experts per token
      std::swap(experts[k], experts[Uniform(rng, k, all_experts - 1)]);
      in.expert_ids[t * c.top_k + k] = experts[k];
    }
  }
  in.mask_kind = s.mask;
  in.mask.clear();
  if (s.mask == MaskKind::kTokens) {
    const int64_t active = Chance(rng, 0.1) ? Uniform(rng, 0, in.bs) : Uniform(rng, (in.bs + 1) / 2, in.bs);
    for (int64_t t = 0; t < in.bs; ++t) in.mask.push_back(t < active ? 1 : 0);
  } else if (s.mask == MaskKind::kPairs) {
    for (int64_t i = 0; i < in.bs * c.top_k; ++i) in.mask.push_back(Chance(rng, 0.7) ? 1 : 0);
  }
}

// A rank's tokens x, drawn afresh (with the spec's special values).
void DrawTokens(const ScenarioSpec& s, std::mt19937_64& rng, moe_ref::RankInput& d) {
  for (auto& v : d.x) v = RandomHalf(rng, s.config.dtype);
  if (s.special_values) AddSpecialValues(rng, s.config.dtype, d.bs, s.config.hidden, d.x);
}

}  // namespace

uint16_t RandomCoefficientHalf(std::mt19937_64& rng, moe_ref::DType dtype) {
  const auto sign = static_cast<uint16_t>((rng() & 1) << 15);
  const auto exponent = static_cast<uint16_t>(rng() % 8);  // 2^-14 .. 2^-7
  if (dtype == moe_ref::DType::kBf16) return sign | static_cast<uint16_t>((113 + exponent) << 7) | (rng() % 128);
  return sign | static_cast<uint16_t>((1 + exponent) << 10) | (rng() % 1024);
}

ScenarioSpec RandomSpec(std::mt19937_64& rng, int max_ranks, int64_t max_hidden, int64_t max_bs) {
  ScenarioSpec s;
  auto& c = s.config;
  // Atlas A2's expandIdx layout (DispatchOptions::expand_idx_layout): no TP, shared or const experts, 2-D masks
  // or AddRmsNorm there.
  c.a2 = Chance(rng, 0.15);
  c.tp_world_size = !c.a2 && max_ranks >= 4 && Chance(rng, 0.15) ? 2 : 1;
  c.ep_world_size = static_cast<int>(Uniform(rng, 2, max_ranks / c.tp_world_size));
  if (!c.a2 && c.ep_world_size >= 3 && Chance(rng, 0.35)) {
    c.shared_expert_num = static_cast<int>(Uniform(rng, 1, std::min(4, c.ep_world_size - 1)));
    const int replicas = static_cast<int>(Uniform(rng, 1, std::max(1, (c.ep_world_size - 1) / c.shared_expert_num)));
    c.shared_expert_rank_num = c.shared_expert_num * replicas;
  }
  const int64_t local = c.tp_world_size == 2 ? 1 : Uniform(rng, 1, 8);
  c.moe_expert_num = static_cast<int>(local * (c.ep_world_size - c.shared_expert_rank_num));
  if (Chance(rng, 0.25)) {  // V3 special experts
    c.zero_expert_num = static_cast<int>(Uniform(rng, 0, 2));
    c.copy_expert_num = static_cast<int>(Uniform(rng, 0, 2));
    c.const_expert_num = static_cast<int>(Uniform(rng, c.zero_expert_num + c.copy_expert_num == 0 ? 1 : 0, 2));
    if (c.a2) c.zero_expert_num += std::exchange(c.const_expert_num, 0);
  }
  c.top_k = static_cast<int>(Uniform(rng, 1, std::min<int64_t>(16, AllExperts(c))));
  c.hidden = static_cast<int>(Chance(rng, 0.5) ? Uniform(rng, 1, std::min<int64_t>(96, max_hidden))
                                               : Uniform(rng, 1, max_hidden));
  c.dtype = Chance(rng, 0.5) ? moe_ref::DType::kBf16 : moe_ref::DType::kFp16;
  c.quant_mode = Chance(rng, 0.4) ? 2 : 0;
  c.expert_token_nums_type = static_cast<int>(Uniform(rng, 0, 1));
  c.comm_quant_mode = c.tp_world_size == 1 && Chance(rng, 0.35) ? 2 : 0;
  s.bs = Uniform(rng, 1, max_bs);
  const int64_t mask_pick = Uniform(rng, 0, c.a2 ? 1 : 2);
  s.mask = mask_pick == 0 ? MaskKind::kNone : mask_pick == 1 ? MaskKind::kTokens : MaskKind::kPairs;
  if (s.mask == MaskKind::kNone && Chance(rng, 0.3)) {
    s.unequal_bs = Chance(rng, 0.6);
    c.global_bs = (s.bs + Uniform(rng, 0, 3)) * c.ep_world_size;
  } else if (Chance(rng, 0.2)) {
    c.global_bs = s.bs * c.ep_world_size;
  }
  s.smooth_scales = c.quant_mode == 2 && Chance(rng, 0.6);
  s.shared_expert_x = c.shared_expert_rank_num == 0 && Chance(rng, 0.3);
  s.add_rms_norm = !c.a2 && c.dtype == moe_ref::DType::kBf16 && c.shared_expert_rank_num == 0 &&
                   c.comm_quant_mode == 0 && Chance(rng, 0.25);
  const int64_t layout = Uniform(rng, 0, 4);
  s.layout = layout == 3   ? InputLayout::kPaddedRows
             : layout == 4 ? InputLayout::kStridedColumns
                           : InputLayout::kContiguous;
  s.strided_outputs = Chance(rng, 0.25);
  s.smooth_on_even_ranks = s.smooth_scales && Chance(rng, 0.3);  // drawn last, so that a seed draws the same
                                                                 // configuration as before
  s.special_values = Chance(rng, 0.2);
  return s;
}

ScenarioSpec RoutedSpec(int ranks, int experts, int top_k, int hidden, int64_t bs) {
  ScenarioSpec spec;
  spec.config.ep_world_size = ranks;
  spec.config.moe_expert_num = experts;
  spec.config.top_k = top_k;
  spec.config.hidden = hidden;
  spec.bs = bs;
  return spec;
}

std::string Describe(const ScenarioSpec& s) {
  const auto& c = s.config;
  std::ostringstream o;
  o << "E=" << c.ep_world_size << " tp=" << c.tp_world_size << " moe=" << c.moe_expert_num
    << " n_s=" << c.shared_expert_num << " S=" << c.shared_expert_rank_num << " K=" << c.top_k << " H=" << c.hidden
    << " Bs=" << s.bs << (s.unequal_bs ? "(unequal)" : "") << " globalBs=" << c.global_bs
    << " dtype=" << (c.dtype == moe_ref::DType::kBf16 ? "bf16" : "fp16") << " quant=" << c.quant_mode
    << (s.smooth_scales ? s.smooth_on_even_ranks ? "+smooth(even ranks)" : "+smooth" : "")
    << " tokenNumsType=" << c.expert_token_nums_type << " commQuant=" << c.comm_quant_mode << " mask="
    << (s.mask == MaskKind::kNone     ? "none"
        : s.mask == MaskKind::kTokens ? "1-D"
                                      : "2-D")
    << (s.shared_expert_x ? " sharedExpertX" : "") << (s.add_rms_norm ? " AddRmsNorm" : "")
    << " layout=" << static_cast<int>(s.layout) << (s.strided_outputs ? " strided-outputs" : "")
    << (s.special_values ? " special-values" : "") << (c.a2 ? " A2-layout" : "");
  if (c.zero_expert_num + c.copy_expert_num + c.const_expert_num > 0) {
    o << " zero/copy/const=" << c.zero_expert_num << "/" << c.copy_expert_num << "/" << c.const_expert_num;
  }
  return o.str();
}

ScenarioSpec ScaledDown(const ScenarioSpec& spec, const std::vector<int32_t>& survivors) {
  const auto& c = spec.config;
  ScenarioSpec scaled = spec;
  scaled.config.ep_world_size = 0;
  scaled.config.shared_expert_rank_num = 0;
  for (int r = 0; r < c.ep_world_size; ++r) {
    if (!survivors[r]) continue;
    ++scaled.config.ep_world_size;
    if (r < c.shared_expert_rank_num) ++scaled.config.shared_expert_rank_num;
  }
  scaled.config.moe_expert_num =
      static_cast<int>(LocalExperts(c) * (scaled.config.ep_world_size - scaled.config.shared_expert_rank_num));
  return scaled;
}

int SurvivorRank(const std::vector<int32_t>& survivors, int rank) {
  if (!survivors[rank]) return -1;
  return static_cast<int>(std::count_if(survivors.begin(), survivors.begin() + rank, [](int32_t s) { return s != 0; }));
}

std::vector<int32_t> GroupExpertIds(const std::vector<int32_t>& ids, const moe_ref::Config& scaled,
                                    const moe_ref::Config& original) {
  std::vector<int32_t> out = ids;
  for (int32_t& id : out) {
    if (id >= scaled.moe_expert_num) id += original.moe_expert_num - scaled.moe_expert_num;
  }
  return out;
}

ScenarioInputs MakeInputs(const ScenarioSpec& s, std::mt19937_64& rng) {
  const auto& c = s.config;
  ScenarioInputs in;
  in.dispatch.resize(Ranks(c));
  in.combine.resize(Ranks(c));
  for (int g = 0; g < Ranks(c); ++g) {
    auto& d = in.dispatch[g];
    d.bs = s.unequal_bs ? Uniform(rng, 1, s.bs) : s.bs;
    d.x.resize(d.bs * c.hidden);
    DrawTokens(s, rng, d);
    if (s.smooth_scales && (!s.smooth_on_even_ranks || g % 2 == 0)) {
      d.smooth_scales.resize((c.shared_expert_num + c.moe_expert_num) * c.hidden);
      for (auto& v : d.smooth_scales) v = std::uniform_real_distribution<float>(0.25f, 4.0f)(rng);
    }
    RouteRank(s, rng, d);
    auto& m = in.combine[g];
    m.expert_scales.resize(d.bs * c.top_k);
    for (auto& v : m.expert_scales) v = std::uniform_real_distribution<float>(0.0f, 1.0f)(rng);
    if (s.shared_expert_x) {
      m.shared_expert_x.resize(d.bs * c.hidden);
      for (auto& v : m.shared_expert_x) v = RandomHalf(rng, c.dtype);
    }
    if (c.copy_expert_num + c.const_expert_num > 0) {
      m.ori_x.resize(d.bs * c.hidden);
      for (auto& v : m.ori_x) v = RandomHalf(rng, c.dtype);
    }
    for (auto* alpha : {&m.const_alpha1, &m.const_alpha2}) {
      alpha->resize(static_cast<size_t>(c.const_expert_num) * c.hidden);
      for (auto& v : *alpha) v = RandomCoefficientHalf(rng, c.dtype);
    }
    m.const_v.resize(static_cast<size_t>(c.const_expert_num) * c.hidden);
    for (auto& v : m.const_v) v = RandomHalf(rng, c.dtype);
    if (s.add_rms_norm) {
      m.residual_x.resize(d.bs * c.hidden);
      for (auto& v : m.residual_x) v = RandomHalf(rng, c.dtype);
      m.gamma.resize(c.hidden);
      for (auto& v : m.gamma) v = RandomHalf(rng, c.dtype);
    }
  }
  return in;
}

void RerouteInputs(const ScenarioSpec& s, std::mt19937_64& rng, ScenarioInputs& in) {
  for (auto& d : in.dispatch) {
    RouteRank(s, rng, d);
    DrawTokens(s, rng, d);
  }
  for (auto& m : in.combine) {
    for (auto& v : m.expert_scales) v = std::uniform_real_distribution<float>(0.0f, 1.0f)(rng);
  }
}

void FillExpertOutputs(const ScenarioSpec& s, const std::vector<moe_ref::DispatchOut>& expected, ScenarioInputs& in) {
  if (s.config.a2) {  // Atlas A2's outputs name no row's origin; the same rows in A3's layout do (triples)
    ScenarioSpec a3 = s;
    a3.config.a2 = false;
    FillExpertOutputs(a3, moe_ref::Dispatch(a3.config, in.dispatch), in);
    return;
  }
  const auto& c = s.config;
  const int64_t h = c.hidden;
  for (int g = 0; g < Ranks(c); ++g) {
    const auto& e = expected[g];
    const int tp_rank = g / c.ep_world_size;
    const int64_t ep_rank = g % c.ep_world_size;
    const bool shared = ep_rank < c.shared_expert_rank_num;
    const size_t entries = shared ? c.ep_world_size : c.ep_world_size * LocalExperts(c);
    const int64_t own_rows = e.ep_recv_counts.empty() ? 0 : e.ep_recv_counts[entries - 1];
    auto& out = in.combine[g].expert_out;
    out.resize(e.rows * h);
    for (int64_t i = 0; i < e.rows; ++i) {
      const int group = i < own_rows ? tp_rank : 1 - tp_rank;
      const int src = group * c.ep_world_size + e.assist_info[3 * i];
      const int64_t token = e.assist_info[3 * i + 1], k = e.assist_info[3 * i + 2];
      const auto& sd = in.dispatch[src];
      const int64_t expert = k < c.top_k ? sd.expert_ids[token * c.top_k + k] : -1 - (k - c.top_k);
      // "Expert" = flip the sign bit on odd experts and swap two neighbouring elements per expert id:
      // exact in both formats, and any misrouted row shows up.
      const int64_t shift = (expert % 3 + 3) % 3 % h;
      const uint16_t* in_row = &sd.x[token * h];
      uint16_t* out_row = &out[i * h];
      std::copy(in_row + shift, in_row + h, out_row);
      std::copy(in_row, in_row + shift, out_row + (h - shift));
      if (expert & 1) {
        for (int64_t j = 0; j < h; ++j) out_row[j] ^= 0x8000;
      }
    }
  }
}

}  // namespace moe_ep::verify
