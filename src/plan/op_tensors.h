// The tensors of one dispatch / combine call, as views (inputs first, then outputs; CANN names).
#pragma once

#include <array>

#include "moe_ep/tensor.h"

namespace moe_ep::plan {

struct DispatchTensors {
  TensorView x;                  // (Bs, H) bf16/fp16
  TensorView expert_ids;         // (Bs, K) int32
  TensorView scales;             // optional (n_s + moe, H) fp32 smooth scales
  TensorView x_active_mask;      // optional (Bs,) or (Bs, K) bool
  TensorView expand_x;           // out (>= tp*A, H): x dtype, or int8 with quant
  TensorView dynamic_scales;     // out (>= tp*A,) fp32 (quant only)
  TensorView assist_info;        // out (>= 3A,) int32
  TensorView expert_token_nums;  // out (L,) or (1,) int64
  TensorView ep_recv_counts;     // out (>= E*L*tp or E*tp,) int32
  TensorView tp_recv_counts;     // out (tpWorldSize,) int32
  TensorView expert_scales;      // optional (Bs, K) fp32: Atlas A2's, checked there, never read

  /// The outputs, for what treats them alike (ops::DenseOutputs).
  std::array<TensorView*, 6> outputs() {
    return {&expand_x, &dynamic_scales, &assist_info, &expert_token_nums, &ep_recv_counts, &tp_recv_counts};
  }
};

struct CombineTensors {
  TensorView expand_x;         // (tp*A, H) expert outputs, bf16/fp16
  TensorView expert_ids;       // (Bs, K) int32
  TensorView assist_info;      // from dispatch
  TensorView ep_send_counts;   // dispatch's epRecvCounts
  TensorView expert_scales;    // (Bs, K) fp32
  TensorView tp_send_counts;   // dispatch's tpRecvCounts (tp == 2)
  TensorView x_active_mask;    // optional, as in dispatch
  TensorView shared_expert_x;  // optional (Bs, H) or (d0, d1, H) with d0*d1 == Bs
  TensorView ori_x;            // V3: (Bs, H) tokens before the experts, for copy / const experts
  TensorView const_alpha1;     // V3: (constExpertNum, H) expandX dtype
  TensorView const_alpha2;     // V3: (constExpertNum, H) expandX dtype
  TensorView const_v;          // V3: (constExpertNum, H) expandX dtype
  TensorView x;                // out (Bs, H); CombineAddRmsNorm: (Bs, 1, H)
  // CombineAddRmsNorm only.
  TensorView residual_x;  // (Bs, 1, H) bf16
  TensorView gamma;       // (H,) bf16
  TensorView y;           // out (Bs, 1, H) bf16
  TensorView rstd;        // out (Bs, 1, 1) fp32
  float norm_eps = 1e-6f;
  bool add_rms_norm = false;

  /// The outputs, as DispatchTensors::outputs.
  std::array<TensorView*, 3> outputs() { return {&x, &y, &rstd}; }
};

}  // namespace moe_ep::plan
