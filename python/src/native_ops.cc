// moe_ep._moe_ep.native: the native C++ API (groups, dispatch, combine, probe, buffer reset) for
// moe_ep/__init__.py, outputs included (outputs.h). Every collective call releases the GIL: the other
// ranks may be threads of this interpreter.
#include <pybind11/chrono.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/ops.h"
#include "outputs.h"
#include "tensor_arg.h"

namespace py = pybind11;

namespace moe_ep::python {
namespace {

GroupOptions OptionsOf(py::dict d) {
  Args k("group options", d);
  GroupOptions o;
  o.timeout = std::chrono::milliseconds(k.Int("timeout_ms"));
  o.window_bytes = static_cast<uint64_t>(k.Int("window_bytes"));
  o.name = k.As<std::string>("name");
  const auto path = k.As<std::string>("data_path");
  if (path == "auto") {
    o.data_path = DataPath::kAuto;
  } else if (path == "push") {
    o.data_path = DataPath::kPush;
  } else if (path == "pull") {
    o.data_path = DataPath::kPull;
  } else {
    throw Error(ErrorCode::kInvalidParam, "data_path = '" + path + "' must be 'auto', 'push' or 'pull'");
  }
  o.threads = static_cast<int>(k.Int("threads"));
  k.CheckAllRead();
  return o;
}

ExpertLayout LayoutOf(py::dict d) {
  Args k("expert layout", d);
  ExpertLayout l;
  l.moe_expert_num = k.Int("moe_expert_num");
  l.shared_expert_num = k.Int("shared_expert_num");
  l.shared_expert_rank_num = k.Int("shared_expert_rank_num");
  l.global_bs = k.Int("global_bs");
  l.zero_expert_num = k.Int("zero_expert_num");
  l.copy_expert_num = k.Int("copy_expert_num");
  l.const_expert_num = k.Int("const_expert_num");
  l.survivors = k.As<std::vector<int32_t>>("survivors");
  k.CheckAllRead();
  return l;
}

Quant QuantOf(int64_t mode) {
  if (mode != 0 && mode != 2) {
    throw Error(ErrorCode::kInvalidParam, "quant = " + std::to_string(mode) + " must be 0 (none) or 2 (dynamic int8)");
  }
  return static_cast<Quant>(mode);
}

DispatchOptions DispatchOptionsOf(Args& k) {
  DispatchOptions o;
  o.experts = LayoutOf(k.As<py::dict>("layout"));
  o.quant = QuantOf(k.Int("quant"));
  o.cumulative_token_nums = k.As<bool>("cumulative_token_nums");
  o.smooth_scales = k.View("smooth_scales");
  o.active_mask = k.View("active_mask");
  return o;
}

CombineOptions CombineOptionsOf(py::dict d) {
  Args k("combine options", d);
  CombineOptions o;
  o.comm_quant = QuantOf(k.Int("comm_quant"));
  o.shared_expert_x = k.View("shared_expert_x");
  o.ori_x = k.View("ori_x");
  o.const_alpha1 = k.View("const_alpha1");
  o.const_alpha2 = k.View("const_alpha2");
  o.const_v = k.View("const_v");
  k.CheckAllRead();
  return o;
}

// Combine writes no row for an inactive token: past the active ones of a (Bs,) mask, or with no active pair
// in a (Bs, K) one (CombineInto leaves those rows as they are). The Python API's outputs are new, so those
// rows are made 0, as the C++ Combine's are.
void ZeroInactiveTokens(const DispatchHandle& h, std::initializer_list<TensorView> outputs) {
  if (!h.active_mask.view().present()) return;
  const auto* mask = h.active_mask.data_as<uint8_t>();
  const int64_t per_token = h.active_mask.numel() / h.bs;  // 1, or K
  for (int64_t t = 0; t < h.bs; ++t) {
    if (std::any_of(mask + t * per_token, mask + (t + 1) * per_token, [](uint8_t m) { return m != 0; })) continue;
    for (const TensorView& out : outputs) {
      const size_t row_bytes = out.numel() / h.bs * DTypeSize(out.dtype);
      std::memset(static_cast<char*>(out.data) + t * row_bytes, 0, row_bytes);
    }
  }
}

}  // namespace

// A block of this process's shared heap (Tensor::PeerVisible) as a Python buffer: tensors viewing it are
// read in place by process ranks of this host (the pull data path).
struct PeerVisibleBlock {
  Tensor storage;
};

// Dropping a Group may wait up to a second for peers still reading its staged rows (Communicator::kSettleTime):
// it waits without the GIL, so that the other Python threads (thread ranks among them) go on meanwhile.
// Not while the interpreter finalizes: a thread other than the main one that gave the GIL away then would be ended
// on taking it back, unwinding through this destructor.
struct DeleteWithoutGil {
  void operator()(Group* group) const {
#if PY_VERSION_HEX >= 0x030D0000
    const bool finalizing = Py_IsFinalizing();
#else
    const bool finalizing = _Py_IsFinalizing();
#endif
    std::optional<py::gil_scoped_release> unlocked;
    if (!finalizing) unlocked.emplace();
    delete group;
  }
};

void BindNative(py::module_& m) {
  py::class_<PeerVisibleBlock>(m, "PeerVisibleBlock", py::buffer_protocol()).def_buffer([](PeerVisibleBlock& b) {
    return py::buffer_info(b.storage.data(), 1, py::format_descriptor<uint8_t>::format(), 1,
                           {static_cast<py::ssize_t>(b.storage.bytes())}, {1});
  });
  m.def("peer_visible_block", [](int64_t bytes) {
    return PeerVisibleBlock{Tensor::PeerVisible(DType::kInt8, {std::max<int64_t>(bytes, 1)})};
  });
  py::class_<Group, std::unique_ptr<Group, DeleteWithoutGil>>(m, "Group")
      .def_property_readonly("rank", &Group::rank)
      .def_property_readonly("size", &Group::size)
      .def_property_readonly("timeout", &Group::timeout)
      .def_property_readonly("window_bytes", &Group::window_bytes)
      .def_property_readonly("name", &Group::name)
      .def_property_readonly("failed_ranks", &Group::failed_ranks);

  py::class_<DispatchHandle>(m, "DispatchHandle")
      .def_readonly("bs", &DispatchHandle::bs)
      .def_readonly("hidden", &DispatchHandle::hidden)
      .def_readonly("top_k", &DispatchHandle::top_k)
      .def_readonly("num_rows", &DispatchHandle::num_rows);

  m.def("create_thread_groups",
        [](int size, py::dict options) { return CreateThreadGroups(size, OptionsOf(options)); });
  // The job `moe-ep launch` (or an MPI launcher) describes, each variable checked as the library checks it.
  m.def("read_launch_environment", [] {
    const LaunchEnvironment job = ReadLaunchEnvironment();
    return py::make_tuple(job.rank, job.world_size, job.rendezvous);
  });
  m.def(
      "join_process_group",
      [](py::object job, std::optional<std::vector<int>> members, py::dict options) {
        const GroupOptions o = OptionsOf(options);
        LaunchEnvironment env;
        if (job.is_none()) {
          env = ReadLaunchEnvironment();
        } else {
          const auto t = job.cast<py::tuple>();
          env.rank = ArgAs<int>(t[0], "job rank");
          env.world_size = ArgAs<int>(t[1], "job world_size");
          env.rendezvous = ArgAs<std::string>(t[2], "job rendezvous");
        }
        py::gil_scoped_release unlocked;  // waits for the other processes
        return members ? JoinProcessGroup(env, *members, o) : JoinProcessGroup(env, o);
      },
      py::arg("job"), py::arg("members"), py::arg("options"));

  // Outputs are made here, in x's kind (torch or numpy), sized by the validated call: one Python call
  // per operation.
  m.def("dispatch", [](Group& ep, py::dict args, Group* tp, bool torch, bool poison) {
    Args k("dispatch arguments", args);
    const TensorView x = k.View("x"), ids = k.View("expert_ids");
    const DispatchOptions o = DispatchOptionsOf(k);
    k.CheckAllRead();
    const DispatchSizes n = DispatchOutputSizes(ep, x, ids, o, tp);
    const bool quantized = o.quant == Quant::kDynamicInt8;
    const auto output = [&](DType dtype, std::vector<int64_t> shape) { return NewOutput(dtype, shape, torch, poison); };
    const Output expand_x = output(quantized ? DType::kInt8 : x.dtype, {n.rows, x.shape[1]});
    const Output scales = quantized ? output(DType::kFloat32, {n.rows}) : Output{py::none(), {}};
    const Output assist = output(DType::kInt32, {n.assist_entries});
    const Output token_nums = output(DType::kInt64, {n.token_num_entries});
    const Output recv_counts = output(DType::kInt32, {n.recv_count_entries});
    const Output tp_recv_counts = output(DType::kInt32, {tp != nullptr ? 2 : 1});  // DispatchInto takes one
    const DispatchOutputs out{expand_x.view,   scales.view,      assist.view,
                              token_nums.view, recv_counts.view, tp_recv_counts.view};
    DispatchHandle handle;
    {
      py::gil_scoped_release unlocked;
      handle = DispatchInto(ep, x, ids, o, out, tp);
    }
    return py::make_tuple(expand_x.object, scales.object, assist.object, token_nums.object, recv_counts.object,
                          tp != nullptr ? tp_recv_counts.object : py::none(), std::move(handle));
  });

  // Combine (norm: CombineAddRmsNorm, returning (y, rstd, x)); outputs in expert_out's kind and dtype.
  m.def("combine",
        [](Group& ep, const DispatchHandle& handle, py::dict args, Group* tp, bool norm, bool torch,
           bool poison) -> py::object {
          Args k("combine arguments", args);
          const TensorView expert_out = k.View("expert_out"), scales = k.View("expert_scales");
          const CombineOptions o = CombineOptionsOf(k.As<py::dict>("options"));
          const TensorView residual = k.View("residual_x"), gamma = k.View("gamma");
          const float eps = k.NearestFloat("norm_eps");
          k.CheckAllRead();
          const auto output = [&](DType dtype, std::vector<int64_t> shape) {
            return NewOutput(dtype, shape, torch, poison);
          };
          // Outputs in a dtype combine takes: a bad expert_out is then reported by combine's own checks.
          const DType dtype = expert_out.dtype == DType::kFp16 ? DType::kFp16 : DType::kBf16;
          if (!norm) {
            const Output x = output(dtype, {handle.bs, handle.hidden});
            {
              py::gil_scoped_release unlocked;
              CombineInto(ep, handle, expert_out, scales, o, x.view, tp);
              ZeroInactiveTokens(handle, {x.view});
            }
            return x.object;
          }
          const Output y = output(dtype, {handle.bs, 1, handle.hidden});
          const Output rstd = output(DType::kFloat32, {handle.bs, 1, 1});
          const Output x = output(dtype, {handle.bs, 1, handle.hidden});
          {
            py::gil_scoped_release unlocked;
            CombineAddRmsNormInto(ep, handle, expert_out, scales, residual, gamma, eps, o, {y.view, rstd.view, x.view},
                                  tp);
            ZeroInactiveTokens(handle, {y.view, rstd.view, x.view});
          }
          return py::make_tuple(y.object, rstd.object, x.object);
        });

  m.def("probe_reachable", [](Group& ep, std::chrono::milliseconds wait) {
    py::gil_scoped_release unlocked;
    return ProbeReachable(ep, wait);
  });
  m.def("barrier", [](Group& ep) {
    py::gil_scoped_release unlocked;
    Barrier(ep);
  });
  m.def("buffer_reset", [](Group& ep, std::vector<int32_t> reachable, bool need_sync) {
    py::gil_scoped_release unlocked;
    BufferReset(ep, reachable, need_sync);
  });
}

}  // namespace moe_ep::python
