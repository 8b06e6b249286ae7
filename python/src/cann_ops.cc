// moe_ep._moe_ep.cann: the CANN C API as torch_npu drives it (devices, HCCL communicators, the aclnn
// operators run on the calling thread's stream and waited for), for moe_ep/torch_npu.py.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "acl/acl.h"
#include "aclnn/acl_meta.h"
#include "aclnn/aclnn_base.h"
#include "aclnnop/aclnn_moe_distribute_buffer_reset.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v3.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"
#include "args.h"
#include "errors.h"
#include "hccl/hccl.h"
#include "interrupt.h"
#include "moe_ep/error.h"
#include "outputs.h"
#include "tensor_arg.h"

namespace py = pybind11;

namespace moe_ep::python {
namespace {

aclDataType AclType(DType dtype) {
  switch (dtype) {
    case DType::kBf16:
      return ACL_BF16;
    case DType::kFp16:
      return ACL_FLOAT16;
    case DType::kFloat32:
      return ACL_FLOAT;
    case DType::kInt8:
      return ACL_INT8;
    case DType::kInt32:
      return ACL_INT32;
    case DType::kInt64:
      return ACL_INT64;
    case DType::kBool:
      return ACL_BOOL;
  }
  throw Error(ErrorCode::kInternal, "moe_ep Python binding: unknown dtype");
}

// The named arguments of one operator call: input tensors and outputs (as aclTensors, destroyed with
// this; outputs made here, as torch tensors) and attributes.
// With `stand_ins`, outputs are described to the operator but not allocated (their data points at one byte that is
// never written): what a first phase needs to check the call.
class OpArgs {
 public:
  OpArgs(const char* op, py::dict tensors, py::dict outputs, py::dict attrs, bool poison, bool stand_ins = false)
      : tensors_(op, tensors), outputs_(op, outputs), attrs_(op, attrs), poison_(poison), stand_ins_(stand_ins) {}
  OpArgs(const OpArgs&) = delete;
  OpArgs& operator=(const OpArgs&) = delete;
  ~OpArgs() {
    for (aclTensor* t : made_) aclDestroyTensor(t);
  }

  aclTensor* Tensor(const char* key) {
    const py::handle spec = tensors_[key];  // read once: Args counts the reads
    if (spec.is_none()) return nullptr;
    return Made(ViewOf(spec, key), key);
  }
  // An output described as (dtype name, shape) in `outputs`; Outputs() returns them in the order made.
  aclTensor* Output(const char* key) {
    const auto [dtype, shape] = outputs_.As<std::pair<std::string, std::vector<int64_t>>>(key);
    if (stand_ins_) {
      alignas(64) static std::byte never_written;  // aligned for any element type: validation checks it
      return Made(TensorView(&never_written, DTypeNamed(dtype, key), shape), key);
    }
    python::Output made = NewOutput(DTypeNamed(dtype, key), shape, /*torch=*/true, poison_);
    outputs_made_.append(made.object);
    return Made(made.view, key);
  }
  py::tuple Outputs() const { return py::tuple(outputs_made_); }

  int64_t Int(const char* key) { return attrs_.Int(key); }
  int32_t Int32(const char* key) { return attrs_.As<int32_t>(key); }
  float NearestFloat(const char* key) { return attrs_.NearestFloat(key); }
  // The string stays alive in this object until the operator has run.
  const char* Str(const char* key) { return strings_.emplace_back(attrs_.As<std::string>(key)).c_str(); }

  void CheckAllRead() const {
    tensors_.CheckAllRead();
    outputs_.CheckAllRead();
    attrs_.CheckAllRead();
  }

 private:
  aclTensor* Made(const TensorView& view, const char* key) {
    const std::vector<int64_t> strides = StridesOf(view);
    const std::vector<int64_t> storage{ElementSpan(view, key)};
    aclTensor* t = aclCreateTensor(view.shape.data(), view.shape.size(), AclType(view.dtype), strides.data(), 0,
                                   ACL_FORMAT_ND, storage.data(), storage.size(), view.data);
    if (t == nullptr) {  // the runtime's message, which cannot know the parameter, after its name
      const char* message = aclGetRecentErrMsg();
      throw CannFailure{ACLNN_ERR_PARAM_INVALID,
                        std::string(key) + ": " + (message && *message ? message : "aclCreateTensor failed")};
    }
    made_.push_back(t);
    return t;
  }

  Args tensors_, outputs_, attrs_;
  bool poison_;
  bool stand_ins_;
  py::list outputs_made_;
  std::vector<aclTensor*> made_;
  std::deque<std::string> strings_;
};

// The calling thread's device; a thread with none is given device 0, as a process that never called set_device
// is (before the first phase, which looks the communicators up on it).
int32_t ThreadDevice() {
  int32_t device = -1;
  if (aclrtGetDevice(&device) != ACL_SUCCESS) {
    CheckCann(aclrtSetDevice(0), "aclrtSetDevice");
    device = 0;
  }
  return device;
}

// The calling thread's stream on `device` (made on first use, like torch_npu's current stream, with
// ACL_STREAM_FAST_SYNC).
aclrtStream ThreadStream(int32_t device) {
  struct Streams {
    std::map<int32_t, aclrtStream> by_device;
    ~Streams() {
      for (auto& [device, stream] : by_device) aclrtDestroyStream(stream);
    }
  };
  thread_local Streams streams;
  aclrtStream& stream = streams.by_device[device];
  // FAST_SYNC: every operator here is synchronized as soon as it is launched (RunOperator).
  if (stream == nullptr) {
    CheckCann(aclrtCreateStreamWithConfig(&stream, 0, ACL_STREAM_FAST_SYNC), "aclrtCreateStreamWithConfig");
  }
  return stream;
}

// Runs one aclnn operator the way torch_npu does: first phase (validation, workspace size), workspace,
// second phase on the stream, then waits for it (the tensors are CPU memory the caller reads next).
// Without the GIL: the other ranks may be threads of this interpreter. On stand-ins (OpArgs), the first phase only.
template <typename Prepare, typename Launch>
void RunOperator(const char* op, bool stand_ins, Prepare prepare, Launch launch) {
  {
    py::gil_scoped_release unlocked;
    const int32_t device = ThreadDevice();
    uint64_t workspace_bytes = 0;
    aclOpExecutor* executor = nullptr;
    CheckCann(prepare(&workspace_bytes, &executor), op);
    // Until a launch takes it: a launch refused (its group destroyed since) gives it back, and so does a failure
    // before the launch.
    const auto destroy = [](aclOpExecutor* e) { aclDestroyAclOpExecutor(e); };
    std::unique_ptr<aclOpExecutor, decltype(destroy)> unlaunched(executor, destroy);
    if (stand_ins) return;
    aclrtStream stream = ThreadStream(device);
    void* workspace = nullptr;
    if (workspace_bytes > 0)
      CheckCann(aclrtMalloc(&workspace, workspace_bytes, ACL_MEM_MALLOC_HUGE_FIRST), "aclrtMalloc");
    std::unique_ptr<void, decltype(&aclrtFree)> free_workspace(workspace, &aclrtFree);
    CheckCann(launch(workspace, workspace_bytes, executor, stream), op);
    (void)unlaunched.release();  // the launch took it
    CheckCann(aclrtSynchronizeStream(stream), op);
  }
  // Ctrl-C during the call, which finished anyway: the interrupt is its outcome (python/src/interrupt.h).
  if (RestoreInterrupt()) throw py::error_already_set();
}

// Runs `call(args)` on the outputs made for it, after `call` on stand-ins with `check_first`: the outputs are sized in
// Python from the call's attributes and tensor shapes, before the operator has checked them, and when they are large
// (moe_ep/torch_npu.py) a value out of range is then refused naming its rule rather than sizing them.
template <typename Call>
py::tuple WithOutputs(const char* op, py::dict tensors, py::dict outputs, py::dict attrs, bool poison, bool check_first,
                      Call call) {
  if (check_first) {
    OpArgs stand_ins(op, tensors, outputs, attrs, poison, /*stand_ins=*/true);
    call(stand_ins, true);
  }
  OpArgs a(op, tensors, outputs, attrs, poison);
  call(a, false);
  return a.Outputs();
}

// The attributes all three operators take. moe_ep/torch_npu.py checked them (ints in [0, 2^31)): none fails here, so
// the order they are read in changes nothing.
struct SharedAttrs {
  explicit SharedAttrs(OpArgs& a)
      : group_ep(a.Str("group_ep")),
        group_tp(a.Str("group_tp")),
        comm_alg(a.Str("comm_alg")),
        ep_world_size(a.Int("ep_world_size")),
        ep_rank_id(a.Int("ep_rank_id")),
        moe_expert_num(a.Int("moe_expert_num")),
        tp_world_size(a.Int("tp_world_size")),
        tp_rank_id(a.Int("tp_rank_id")),
        expert_shard_type(a.Int("expert_shard_type")),
        shared_expert_num(a.Int("shared_expert_num")),
        shared_rank_num(a.Int("shared_expert_rank_num")),
        global_bs(a.Int("global_bs")),
        zero(a.Int("zero_expert_num")),
        copy(a.Int("copy_expert_num")),
        constant(a.Int("const_expert_num")) {}
  const char *group_ep, *group_tp, *comm_alg;
  int64_t ep_world_size, ep_rank_id, moe_expert_num, tp_world_size, tp_rank_id, expert_shard_type, shared_expert_num,
      shared_rank_num, global_bs, zero, copy, constant;
};

py::tuple Dispatch(py::dict tensors, py::dict outputs, py::dict attrs, bool poison, bool check_first) {
  return WithOutputs(
      "npu_moe_distribute_dispatch_v2", tensors, outputs, attrs, poison, check_first, [](OpArgs& a, bool stand_ins) {
        aclTensor *x = a.Tensor("x"), *ids = a.Tensor("expert_ids"), *scales = a.Tensor("scales"),
                  *mask = a.Tensor("x_active_mask"), *expert_scales = a.Tensor("expert_scales"),
                  *elastic = a.Tensor("elastic_info"), *expand_x = a.Output("expand_x"),
                  *dynamic_scales = a.Output("dynamic_scales"), *assist = a.Output("assist_info_for_combine"),
                  *token_nums = a.Output("expert_token_nums"), *ep_counts = a.Output("ep_recv_counts"),
                  *tp_counts = a.Output("tp_recv_counts"), *expand_scales = a.Output("expand_scales");
        const SharedAttrs s(a);
        const int64_t quant_mode = a.Int("quant_mode"), token_nums_type = a.Int("expert_token_nums_type");
        a.CheckAllRead();
        RunOperator(
            "aclnnMoeDistributeDispatchV3", stand_ins,
            [&](uint64_t* bytes, aclOpExecutor** executor) {
              return aclnnMoeDistributeDispatchV3GetWorkspaceSize(
                  x, ids, scales, mask, expert_scales, elastic, s.group_ep, s.ep_world_size, s.ep_rank_id,
                  s.moe_expert_num, s.group_tp, s.tp_world_size, s.tp_rank_id, s.expert_shard_type, s.shared_expert_num,
                  s.shared_rank_num, quant_mode, s.global_bs, token_nums_type, s.comm_alg, s.zero, s.copy, s.constant,
                  expand_x, dynamic_scales, assist, token_nums, ep_counts, tp_counts, expand_scales, bytes, executor);
            },
            aclnnMoeDistributeDispatchV3);
      });
}

py::tuple Combine(py::dict tensors, py::dict outputs, py::dict attrs, bool poison, bool check_first) {
  return WithOutputs(
      "npu_moe_distribute_combine_v2", tensors, outputs, attrs, poison, check_first, [](OpArgs& a, bool stand_ins) {
        aclTensor *expand_x = a.Tensor("expand_x"), *ids = a.Tensor("expert_ids"),
                  *assist = a.Tensor("assist_info_for_combine"), *send_counts = a.Tensor("ep_send_counts"),
                  *expert_scales = a.Tensor("expert_scales"), *tp_counts = a.Tensor("tp_send_counts"),
                  *mask = a.Tensor("x_active_mask"), *shared_x = a.Tensor("shared_expert_x"),
                  *elastic = a.Tensor("elastic_info"), *ori_x = a.Tensor("ori_x"),
                  *alpha1 = a.Tensor("const_expert_alpha_1"), *alpha2 = a.Tensor("const_expert_alpha_2"),
                  *const_v = a.Tensor("const_expert_v"), *out = a.Output("out");
        const SharedAttrs s(a);
        const int64_t comm_quant_mode = a.Int("comm_quant_mode");
        a.CheckAllRead();
        RunOperator(
            "aclnnMoeDistributeCombineV3", stand_ins,
            [&](uint64_t* bytes, aclOpExecutor** executor) {
              // torch_npu passes no activation / weight scales or group list, out_dtype 0 and group_list_type 0;
              // expandScales is A2's (moe_ep/torch_npu.py accepts it and does not pass it on).
              return aclnnMoeDistributeCombineV3GetWorkspaceSize(
                  expand_x, ids, assist, send_counts, expert_scales, tp_counts, mask, nullptr, nullptr, nullptr,
                  nullptr, shared_x, elastic, ori_x, alpha1, alpha2, const_v, s.group_ep, s.ep_world_size, s.ep_rank_id,
                  s.moe_expert_num, s.group_tp, s.tp_world_size, s.tp_rank_id, s.expert_shard_type, s.shared_expert_num,
                  s.shared_rank_num, s.global_bs, 0, comm_quant_mode, 0, s.comm_alg, s.zero, s.copy, s.constant, out,
                  bytes, executor);
            },
            aclnnMoeDistributeCombineV3);
      });
}

py::tuple CombineAddRmsNorm(py::dict tensors, py::dict outputs, py::dict attrs, bool poison, bool check_first) {
  return WithOutputs("npu_moe_distribute_combine_add_rms_norm", tensors, outputs, attrs, poison, check_first,
                     [](OpArgs& a, bool stand_ins) {
                       aclTensor *expand_x = a.Tensor("expand_x"), *ids = a.Tensor("expert_ids"),
                                 *assist = a.Tensor("expand_idx"), *send_counts = a.Tensor("ep_send_counts"),
                                 *expert_scales = a.Tensor("expert_scales"), *residual_x = a.Tensor("residual_x"),
                                 *gamma = a.Tensor("gamma"), *tp_counts = a.Tensor("tp_send_counts"),
                                 *mask = a.Tensor("x_active_mask"), *activation_scale = a.Tensor("activation_scale"),
                                 *weight_scale = a.Tensor("weight_scale"), *group_list = a.Tensor("group_list"),
                                 *shared_x = a.Tensor("shared_expert_x"), *elastic = a.Tensor("elastic_info"),
                                 *ori_x = a.Tensor("ori_x"), *alpha1 = a.Tensor("const_expert_alpha_1"),
                                 *alpha2 = a.Tensor("const_expert_alpha_2"), *const_v = a.Tensor("const_expert_v"),
                                 *y = a.Output("y"), *rstd = a.Output("rstd"), *x = a.Output("x");
                       const SharedAttrs s(a);
                       const int64_t out_dtype = a.Int("out_dtype"), comm_quant_mode = a.Int("comm_quant_mode"),
                                     group_list_type = a.Int("group_list_type");
                       const float norm_eps = a.NearestFloat("norm_eps");
                       a.CheckAllRead();
                       RunOperator(
                           "aclnnMoeDistributeCombineAddRmsNormV2", stand_ins,
                           [&](uint64_t* bytes, aclOpExecutor** executor) {
                             return aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
                                 expand_x, ids, assist, send_counts, expert_scales, residual_x, gamma, tp_counts, mask,
                                 activation_scale, weight_scale, group_list, nullptr, shared_x, elastic, ori_x, alpha1,
                                 alpha2, const_v, s.group_ep, s.ep_world_size, s.ep_rank_id, s.moe_expert_num,
                                 s.group_tp, s.tp_world_size, s.tp_rank_id, s.expert_shard_type, s.shared_expert_num,
                                 s.shared_rank_num, s.global_bs, out_dtype, comm_quant_mode, group_list_type,
                                 s.comm_alg, norm_eps, s.zero, s.copy, s.constant, y, rstd, x, bytes, executor);
                           },
                           aclnnMoeDistributeCombineAddRmsNormV2);
                     });
}

void BufferReset(py::dict tensors, py::dict attrs) {
  OpArgs a("npu_moe_distribute_buffer_reset", tensors, py::dict(), attrs, false);
  aclTensor* elastic = a.Tensor("elastic_info");
  const char* group_ep = a.Str("group_ep");
  const auto ep_world_size = a.Int32("ep_world_size");
  const auto need_sync = a.Int32("need_sync");
  a.CheckAllRead();
  RunOperator(
      "aclnnMoeDistributeBufferReset", /*stand_ins=*/false,
      [&](uint64_t* bytes, aclOpExecutor** executor) {
        return aclnnMoeDistributeBufferResetGetWorkspaceSize(elastic, group_ep, ep_world_size, need_sync, bytes,
                                                             executor);
      },
      aclnnMoeDistributeBufferReset);
}

// A communicator as Python sees it: its handle (for destroy) and its name (what the operators take).
py::tuple CommEntry(HcclComm comm) {
  char name[128] = {};
  CheckCann(HcclGetCommName(comm, name), "HcclGetCommName");
  return py::make_tuple(reinterpret_cast<uintptr_t>(comm), std::string(name));
}

}  // namespace

void BindCann(py::module_& m) {
  m.attr("ROOT_INFO_BYTES") = sizeof(HcclRootInfo::internal);
  m.def("set_device", [](int32_t device) { CheckCann(aclrtSetDevice(device), "aclrtSetDevice"); });
  m.def("current_device", [] {
    int32_t device = -1;
    return aclrtGetDevice(&device) == ACL_SUCCESS ? device : -1;
  });
  m.def("root_info", [] {
    HcclRootInfo info{};
    CheckCann(HcclGetRootInfo(&info), "HcclGetRootInfo");
    return py::bytes(info.internal, sizeof(info.internal));
  });
  m.def("init_root_info", [](uint32_t n_ranks, const std::string& root, uint32_t rank) {
    HcclRootInfo info{};
    if (root.size() != sizeof(info.internal)) {
      throw Error(ErrorCode::kInvalidParam, "root info must be " + std::to_string(sizeof(info.internal)) +
                                                " bytes (from root_info()), not " + std::to_string(root.size()));
    }
    std::memcpy(info.internal, root.data(), root.size());
    HcclComm comm = nullptr;
    {
      py::gil_scoped_release unlocked;  // waits for every rank of the group
      CheckCann(HcclCommInitRootInfo(n_ranks, &info, rank, &comm), "HcclCommInitRootInfo");
    }
    return CommEntry(comm);
  });
  m.def("init_all", [](std::vector<int32_t> devices) {
    std::vector<HcclComm> comms(devices.size());
    CheckCann(HcclCommInitAll(static_cast<uint32_t>(devices.size()), devices.data(), comms.data()), "HcclCommInitAll");
    py::list entries;
    for (HcclComm comm : comms) entries.append(CommEntry(comm));
    return entries;
  });
  m.def("destroy", [](uintptr_t comm) {
    py::gil_scoped_release unlocked;  // waits for the operations still running on it, which may be other threads'
    CheckCann(HcclCommDestroy(reinterpret_cast<HcclComm>(comm)), "HcclCommDestroy");
  });
  m.def("dispatch", &Dispatch);
  m.def("combine", &Combine);
  m.def("combine_add_rms_norm", &CombineAddRmsNorm);
  m.def("buffer_reset", &BufferReset);
}

}  // namespace moe_ep::python
