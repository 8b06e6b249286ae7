// moe_ref_py: the C++ reference model of tests/reference for the Python suite's one cross-check (the torch
// golden model against it on the same inputs). Arrays cross as numpy arrays of the raw element bits.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "reference/reference.h"

namespace py = pybind11;

namespace {

template <typename T>
std::vector<T> Vec(const py::dict& d, const char* key) {
  if (!d.contains(key) || d[key].is_none()) return {};
  auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(d[key]);
  return std::vector<T>(a.data(), a.data() + a.size());
}

template <typename T>
py::array_t<T> Array(const std::vector<T>& v) {
  return py::array_t<T>(static_cast<py::ssize_t>(v.size()), v.data());
}

moe_ref::Config ConfigOf(const py::dict& c) {
  moe_ref::Config config;
  config.ep_world_size = c["ep_world_size"].cast<int>();
  config.tp_world_size = c["tp_world_size"].cast<int>();
  config.moe_expert_num = c["moe_expert_num"].cast<int>();
  config.shared_expert_num = c["shared_expert_num"].cast<int>();
  config.shared_expert_rank_num = c["shared_expert_rank_num"].cast<int>();
  config.top_k = c["top_k"].cast<int>();
  config.hidden = c["hidden"].cast<int>();
  config.global_bs = c["global_bs"].cast<int64_t>();
  config.dtype = c["fp16"].cast<bool>() ? moe_ref::DType::kFp16 : moe_ref::DType::kBf16;
  config.quant_mode = c["quant_mode"].cast<int>();
  config.expert_token_nums_type = c["expert_token_nums_type"].cast<int>();
  config.comm_quant_mode = c["comm_quant_mode"].cast<int>();
  config.zero_expert_num = c.contains("zero_expert_num") ? c["zero_expert_num"].cast<int>() : 0;
  config.copy_expert_num = c.contains("copy_expert_num") ? c["copy_expert_num"].cast<int>() : 0;
  config.const_expert_num = c.contains("const_expert_num") ? c["const_expert_num"].cast<int>() : 0;
  if (c.contains("norm_eps")) config.norm_eps = c["norm_eps"].cast<float>();
  return config;
}

std::vector<moe_ref::RankInput> InputsOf(const py::list& ranks) {
  std::vector<moe_ref::RankInput> inputs;
  for (auto item : ranks) {
    const auto r = item.cast<py::dict>();
    moe_ref::RankInput in;
    in.bs = r["bs"].cast<int64_t>();
    in.x = Vec<uint16_t>(r, "x");
    in.expert_ids = Vec<int32_t>(r, "expert_ids");
    in.mask = Vec<uint8_t>(r, "mask");
    const auto kind = r["mask_kind"].cast<int>();
    in.mask_kind = kind == 0   ? moe_ref::MaskKind::kNone
                   : kind == 1 ? moe_ref::MaskKind::kTokens
                               : moe_ref::MaskKind::kPairs;
    in.smooth_scales = Vec<float>(r, "smooth_scales");
    inputs.push_back(std::move(in));
  }
  return inputs;
}

}  // namespace

PYBIND11_MODULE(moe_ref_py, m) {
  m.def("dispatch", [](py::dict config, py::list ranks) {
    py::list out;
    for (const auto& d : moe_ref::Dispatch(ConfigOf(config), InputsOf(ranks))) {
      py::dict o;
      o["rows"] = d.rows;
      o["expand_x"] = d.expand_x.empty() ? py::object(Array(d.expand_x_q)) : py::object(Array(d.expand_x));
      o["dynamic_scales"] = Array(d.dynamic_scales);
      // What the operator writes: the triples of this rank's EP rows (the TP peer's rows carry none).
      o["assist_info"] = Array(std::vector<int32_t>(d.assist_info.begin(), d.assist_info.begin() + 3 * d.own_rows));
      o["own_rows"] = d.own_rows;
      o["expert_token_nums"] = Array(d.expert_token_nums);
      o["ep_recv_counts"] = Array(d.ep_recv_counts);
      o["tp_recv_counts"] = Array(d.tp_recv_counts);
      out.append(o);
    }
    return out;
  });
  // combine(config, ranks, combine_ranks, add_rms_norm=False): per rank (written, x), or with add_rms_norm
  // (written, x, y, rstd).
  m.def(
      "combine",
      [](py::dict config, py::list ranks, py::list combine_ranks, bool add_rms_norm) {
        std::vector<moe_ref::CombineInput> inputs;
        for (auto item : combine_ranks) {
          const auto r = item.cast<py::dict>();
          moe_ref::CombineInput in;
          in.expert_out = Vec<uint16_t>(r, "expert_out");
          in.expert_scales = Vec<float>(r, "expert_scales");
          in.ori_x = Vec<uint16_t>(r, "ori_x");
          in.const_alpha1 = Vec<uint16_t>(r, "const_alpha1");
          in.const_alpha2 = Vec<uint16_t>(r, "const_alpha2");
          in.const_v = Vec<uint16_t>(r, "const_v");
          in.residual_x = Vec<uint16_t>(r, "residual_x");
          in.gamma = Vec<uint16_t>(r, "gamma");
          inputs.push_back(std::move(in));
        }
        py::list out;
        const moe_ref::Config c = ConfigOf(config);
        const auto results = add_rms_norm ? moe_ref::CombineAddRmsNorm(c, InputsOf(ranks), inputs)
                                          : moe_ref::Combine(c, InputsOf(ranks), inputs);
        for (const auto& r : results) {
          if (add_rms_norm) {
            out.append(py::make_tuple(Array(r.written), Array(r.x), Array(r.y), Array(r.rstd)));
          } else {
            out.append(py::make_tuple(Array(r.written), Array(r.x)));
          }
        }
        return out;
      },
      py::arg("config"), py::arg("ranks"), py::arg("combine_ranks"), py::arg("add_rms_norm") = false);
}
