// moe_ep._moe_ep.native: the native C++ API (groups, dispatch, combine, probe, buffer reset) for
// moe_ep/__init__.py, which allocates the outputs and shapes the results. Every collective call
// releases the GIL: the other ranks may be threads of this interpreter.
#include <pybind11/chrono.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/ops.h"
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

}  // namespace

// A block of this process's shared heap (Tensor::PeerVisible) as a Python buffer: tensors viewing it are
// read in place by process ranks of this host (the pull data path).
struct PeerVisibleBlock {
  Tensor storage;
};

void BindNative(py::module_& m) {
  py::class_<PeerVisibleBlock>(m, "PeerVisibleBlock", py::buffer_protocol()).def_buffer([](PeerVisibleBlock& b) {
    return py::buffer_info(b.storage.data(), 1, py::format_descriptor<uint8_t>::format(), 1,
                           {static_cast<py::ssize_t>(b.storage.bytes())}, {1});
  });
  m.def("peer_visible_block", [](int64_t bytes) {
    return PeerVisibleBlock{Tensor::PeerVisible(DType::kInt8, {std::max<int64_t>(bytes, 1)})};
  });
  py::class_<Group>(m, "Group")
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

  m.def("output_sizes", [](const Group& ep, py::dict args, const Group* tp) {
    Args k("dispatch arguments", args);
    const TensorView x = k.View("x"), ids = k.View("expert_ids");
    const DispatchOptions o = DispatchOptionsOf(k);
    k.CheckAllRead();
    const DispatchSizes n = DispatchOutputSizes(ep, x, ids, o, tp);
    return py::make_tuple(n.rows, n.assist_entries, n.token_num_entries, n.recv_count_entries);
  });

  m.def("dispatch", [](Group& ep, py::dict args, py::dict outputs, Group* tp) {
    Args k("dispatch arguments", args);
    const TensorView x = k.View("x"), ids = k.View("expert_ids");
    const DispatchOptions o = DispatchOptionsOf(k);
    k.CheckAllRead();
    Args ko("dispatch outputs", outputs);
    DispatchOutputs out;
    out.expand_x = ko.View("expand_x");
    out.dynamic_scales = ko.View("dynamic_scales");
    out.assist_info = ko.View("assist_info");
    out.expert_token_nums = ko.View("expert_token_nums");
    out.ep_recv_counts = ko.View("ep_recv_counts");
    out.tp_recv_counts = ko.View("tp_recv_counts");
    ko.CheckAllRead();
    py::gil_scoped_release unlocked;
    return DispatchInto(ep, x, ids, o, out, tp);
  });

  m.def("combine", [](Group& ep, const DispatchHandle& handle, py::dict args, Group* tp) {
    Args k("combine arguments", args);
    const TensorView expert_out = k.View("expert_out"), scales = k.View("expert_scales"), out = k.View("out");
    const CombineOptions o = CombineOptionsOf(k.As<py::dict>("options"));
    const TensorView residual = k.View("residual_x"), gamma = k.View("gamma");
    const TensorView rstd = k.View("rstd"), y = k.View("y");
    const auto eps = k.As<float>("norm_eps");
    k.CheckAllRead();
    py::gil_scoped_release unlocked;
    if (residual.present()) {
      CombineAddRmsNormInto(ep, handle, expert_out, scales, residual, gamma, eps, o, {y, rstd, out}, tp);
    } else {
      CombineInto(ep, handle, expert_out, scales, o, out, tp);
    }
  });

  m.def("probe_reachable", [](Group& ep, std::chrono::milliseconds wait) {
    py::gil_scoped_release unlocked;
    return ProbeReachable(ep, wait);
  });
  m.def("buffer_reset", [](Group& ep, std::vector<int32_t> reachable, bool need_sync) {
    py::gil_scoped_release unlocked;
    BufferReset(ep, reachable, need_sync);
  });
}

}  // namespace moe_ep::python
