// C API test helpers: tensors over aclrtMalloc memory, communicator sets, and the scenario runner that
// drives dispatch + combine through the C entry points only and compares with the reference.
#include "cann/capi_support.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "reference/reference.h"

namespace moe_ep::capi_testing {
namespace {

int64_t Numel(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

int64_t Uniform(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

// A random finite bf16/fp16 of moderate magnitude, as raw bits.
uint16_t RandomHalf(std::mt19937_64& rng, moe_ref::DType dtype) {
  const uint16_t sign = static_cast<uint16_t>(Uniform(rng, 0, 1) << 15);
  if (dtype == moe_ref::DType::kBf16) {
    return sign | static_cast<uint16_t>(Uniform(rng, 118, 131) << 7) | static_cast<uint16_t>(Uniform(rng, 0, 127));
  }
  return sign | static_cast<uint16_t>(Uniform(rng, 9, 19) << 10) | static_cast<uint16_t>(Uniform(rng, 0, 1023));
}

std::string Hex(const uint8_t* p, size_t n) {
  std::ostringstream o;
  o << "0x";
  for (size_t i = n; i-- > 0;) {
    static const char* digits = "0123456789abcdef";
    o << digits[p[i] >> 4] << digits[p[i] & 15];
  }
  return o.str();
}

aclDataType HalfType(const moe_ref::Config& c) { return c.dtype == moe_ref::DType::kBf16 ? ACL_BF16 : ACL_FLOAT16; }

}  // namespace

std::string CompareElements(const std::string& what, const void* expected, size_t defined, size_t elem,
                            const std::vector<uint8_t>& got, size_t got_offset, size_t got_elems,
                            moe_ep::verify::Nans nans) {
  const size_t available = (got.size() - got_offset) / elem;
  const size_t n = std::min(got_elems, available);
  if (defined > n)
    return what + ": buffer holds " + std::to_string(n) + " elements, expected " + std::to_string(defined);
  const uint8_t* g = got.data() + got_offset;
  const uint8_t* e = static_cast<const uint8_t*>(expected);
  if (defined == 0 || std::memcmp(g, e, defined * elem) == 0) {
    bool clean = true;
    for (size_t i = defined * elem; clean && i < n * elem; ++i) clean = g[i] == kPoison;
    if (clean) return "";
  }
  for (size_t i = 0; i < n; ++i) {
    if (i < defined) {
      if (moe_ep::verify::SameUnder(nans, e + i * elem, g + i * elem, elem)) continue;
      return what + "[" + std::to_string(i) + "]: expected " + Hex(e + i * elem, elem) + " got " +
             Hex(g + i * elem, elem);
    }
    for (size_t b = 0; b < elem; ++b) {
      if (g[i * elem + b] != kPoison) {
        return what + "[" + std::to_string(i) + "]: written (" + Hex(g + i * elem, elem) + ") past the " +
               std::to_string(defined) + " defined elements, must stay untouched";
      }
    }
  }
  return "";
}

// ---------------------------------------------------------------------------------------------------
// Process setup, environment
// ---------------------------------------------------------------------------------------------------

void EnsureAclReady() {
  static const bool ready = [] {
    setenv("MOE_EP_TIMEOUT_MS", "20000", /*overwrite=*/0);
    const aclError e = aclInit(nullptr);
    if (e != ACL_SUCCESS && e != ACL_ERROR_REPEAT_INITIALIZE) {
      ADD_FAILURE() << "aclInit returned " << e << ": " << RecentErrMsg();
      return false;
    }
    std::atexit([] { aclFinalize(); });
    return true;
  }();
  ASSERT_TRUE(ready);
}

std::string RecentErrMsg() {
  const char* m = aclGetRecentErrMsg();
  return m == nullptr ? std::string() : std::string(m);
}

ScopedEnv::ScopedEnv(const char* name, const char* value) : name_(name) {
  if (const char* old = std::getenv(name)) old_ = old;
  if (value != nullptr) {
    setenv(name, value, 1);
  } else {
    unsetenv(name);
  }
}

ScopedEnv::~ScopedEnv() {
  if (old_) {
    setenv(name_.c_str(), old_->c_str(), 1);
  } else {
    unsetenv(name_.c_str());
  }
}

int64_t ProcStatusBytes(const char* key) {
  std::ifstream f("/proc/self/status");
  const std::string prefix = std::string(key) + ":";
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(prefix, 0) == 0) return std::stoll(line.substr(prefix.size())) * 1024;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------------

namespace {

bool IdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

bool ContainsOneValue(const std::string& msg, const std::string& value) {
  std::string m = msg, v = value;
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return std::tolower(c); });
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
  const bool numeric = !v.empty() && (std::isdigit(static_cast<unsigned char>(v[0])) || v[0] == '-');
  for (size_t pos = m.find(v); pos != std::string::npos; pos = m.find(v, pos + 1)) {
    if (!numeric) return true;
    const bool before_ok = pos == 0 || !std::isdigit(static_cast<unsigned char>(m[pos - 1]));
    const size_t end = pos + v.size();
    const bool after_ok = end >= m.size() || !std::isdigit(static_cast<unsigned char>(m[end]));
    if (before_ok && after_ok) return true;
  }
  return false;
}

}  // namespace

// `name` appears as a whole identifier, optionally followed by "Out" or "Optional".
bool NamesParam(const std::string& msg, const std::string& name) {
  for (size_t pos = msg.find(name); pos != std::string::npos; pos = msg.find(name, pos + 1)) {
    if (pos > 0 && IdentChar(msg[pos - 1])) continue;
    size_t end = pos + name.size();
    for (const char* suffix : {"Optional", "Out"}) {
      if (msg.compare(end, std::strlen(suffix), suffix) == 0) {
        end += std::strlen(suffix);
        break;
      }
    }
    if (end >= msg.size() || !IdentChar(msg[end])) return true;
  }
  return false;
}

bool ContainsValue(const std::string& msg, const std::string& value) {
  size_t start = 0;
  for (size_t bar = value.find('|'); bar != std::string::npos; start = bar + 1, bar = value.find('|', start)) {
    if (ContainsOneValue(msg, value.substr(start, bar - start))) return true;
  }
  return ContainsOneValue(msg, value.substr(start));
}

bool NamesRank(const std::string& msg, int rank) {
  const std::string key = "rank " + std::to_string(rank);
  for (size_t pos = msg.find(key); pos != std::string::npos; pos = msg.find(key, pos + 1)) {
    const size_t end = pos + key.size();
    if (end >= msg.size() || !std::isdigit(static_cast<unsigned char>(msg[end]))) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------
// Tensors
// ---------------------------------------------------------------------------------------------------

Tensor::Tensor(aclDataType dtype, std::vector<int64_t> dims, const void* data, aclFormat format) {
  const size_t elem = aclDataTypeSize(dtype);
  const size_t used = static_cast<size_t>(Numel(dims)) * elem;
  bytes_ = std::max(used, elem);
  EXPECT_EQ(aclrtMalloc(&data_, bytes_, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_EQ(aclrtMemset(data_, bytes_, kPoison, bytes_), ACL_SUCCESS) << RecentErrMsg();
  if (data != nullptr && used > 0) {
    EXPECT_EQ(aclrtMemcpy(data_, bytes_, data, used, ACL_MEMCPY_HOST_TO_DEVICE), ACL_SUCCESS) << RecentErrMsg();
  }
  std::vector<int64_t> strides(dims.size(), 1);
  for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * dims[i + 1];
  tensor_ =
      aclCreateTensor(dims.data(), dims.size(), dtype, strides.data(), 0, format, dims.data(), dims.size(), data_);
  EXPECT_NE(tensor_, nullptr) << RecentErrMsg();
}

Tensor Tensor::View(aclDataType dtype, std::vector<int64_t> dims, std::vector<int64_t> strides, int64_t offset,
                    int64_t storage_elems, aclFormat format) {
  Tensor t;
  const size_t elem = aclDataTypeSize(dtype);
  t.bytes_ = std::max<size_t>(storage_elems, 1) * elem;
  EXPECT_EQ(aclrtMalloc(&t.data_, t.bytes_, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS) << RecentErrMsg();
  EXPECT_EQ(aclrtMemset(t.data_, t.bytes_, kPoison, t.bytes_), ACL_SUCCESS) << RecentErrMsg();
  const int64_t storage_dims[1] = {storage_elems};
  t.tensor_ =
      aclCreateTensor(dims.data(), dims.size(), dtype, strides.data(), offset, format, storage_dims, 1, t.data_);
  EXPECT_NE(t.tensor_, nullptr) << RecentErrMsg();
  return t;
}

Tensor Tensor::Strided(aclDataType dtype, int64_t rows, int64_t cols, const void* data, InputLayout layout) {
  if (layout == InputLayout::kContiguous) return Tensor(dtype, {rows, cols}, data);
  int64_t row_stride = cols, col_stride = 1, offset = 0;
  if (layout == InputLayout::kPaddedRows) row_stride = cols + 3, offset = 5;
  if (layout == InputLayout::kStridedColumns) col_stride = 2, row_stride = 2 * cols + 1, offset = 1;
  const int64_t storage =
      offset + (rows > 0 && cols > 0 ? (rows - 1) * row_stride + (cols - 1) * col_stride + 1 : 0) + 2;
  const size_t elem = aclDataTypeSize(dtype);
  std::vector<uint8_t> host(storage * elem, kPadding);
  const uint8_t* dense = static_cast<const uint8_t*>(data);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      std::memcpy(&host[(offset + r * row_stride + c * col_stride) * elem], dense + (r * cols + c) * elem, elem);
    }
  }
  Tensor t = View(dtype, {rows, cols}, {row_stride, col_stride}, offset, storage);
  EXPECT_EQ(aclrtMemcpy(t.data_, t.bytes_, host.data(), host.size(), ACL_MEMCPY_HOST_TO_DEVICE), ACL_SUCCESS);
  return t;
}

Tensor::~Tensor() { Release(); }

void Tensor::Release() {
  if (tensor_ != nullptr) aclDestroyTensor(tensor_);
  if (data_ != nullptr) aclrtFree(data_);
  tensor_ = nullptr;
  data_ = nullptr;
  bytes_ = 0;
}

Tensor::Tensor(Tensor&& o) noexcept
    : tensor_(o.tensor_), data_(o.data_), bytes_(o.bytes_), gapped_dims_(std::move(o.gapped_dims_)), elem_(o.elem_) {
  o.tensor_ = nullptr;
  o.data_ = nullptr;
  o.bytes_ = 0;
}

Tensor& Tensor::operator=(Tensor&& o) noexcept {
  if (this != &o) {
    Release();
    std::swap(tensor_, o.tensor_);
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
    std::swap(gapped_dims_, o.gapped_dims_);
    std::swap(elem_, o.elem_);
  }
  return *this;
}

Tensor Tensor::Output(aclDataType dtype, std::vector<int64_t> dims, bool gapped) {
  int64_t numel = 1;
  for (int64_t d : dims) numel *= d;
  if (!gapped || numel == 0) return Tensor(dtype, std::move(dims));
  std::vector<int64_t> strides = moe_ep::verify::GappedStrides(dims);
  const int64_t storage = moe_ep::verify::GappedStorageElements(dims, strides);
  Tensor t = View(dtype, dims, std::move(strides), 0, storage);
  t.gapped_dims_ = std::move(dims);
  t.elem_ = aclDataTypeSize(dtype);
  return t;
}

std::vector<uint8_t> Tensor::Elements(std::string* gap_error) const {
  if (gapped_dims_.empty()) return Bytes();
  int64_t numel = 1;
  for (int64_t d : gapped_dims_) numel *= d;
  std::vector<uint8_t> dense(numel * elem_);
  const std::string m = moe_ep::verify::GatherGapped(Bytes(), gapped_dims_, moe_ep::verify::GappedStrides(gapped_dims_),
                                                     elem_, dense.data());
  if (!m.empty() && gap_error->empty()) *gap_error = m;
  return dense;
}

std::vector<uint8_t> Tensor::Bytes() const {
  std::vector<uint8_t> out(bytes_);
  if (bytes_ > 0) {
    EXPECT_EQ(aclrtMemcpy(out.data(), out.size(), data_, bytes_, ACL_MEMCPY_DEVICE_TO_HOST), ACL_SUCCESS);
  }
  return out;
}

bool Tensor::AllBytesAre(uint8_t byte) const {
  const std::vector<uint8_t> b = Bytes();
  return std::all_of(b.begin(), b.end(), [&](uint8_t v) { return v == byte; });
}

void Tensor::Fill(uint8_t byte) { EXPECT_EQ(aclrtMemset(data_, bytes_, byte, bytes_), ACL_SUCCESS); }

// ---------------------------------------------------------------------------------------------------
// Communicators
// ---------------------------------------------------------------------------------------------------

std::vector<HcclComm> CreateGroup(std::vector<int32_t> devices) {
  std::vector<HcclComm> comms(devices.size(), nullptr);
  const HcclResult r = HcclCommInitAll(static_cast<uint32_t>(devices.size()), devices.data(), comms.data());
  EXPECT_EQ(r, HCCL_SUCCESS) << "HcclCommInitAll: " << RecentErrMsg();
  return comms;
}

std::string CommName(HcclComm comm) {
  char name[COMM_NAME_MAX_LENGTH] = {0};
  EXPECT_EQ(HcclGetCommName(comm, name), HCCL_SUCCESS);
  return name;
}

Comms::Comms(int ep_size, int tp_size) : ep_size_(ep_size), tp_size_(tp_size) {
  for (int t = 0; t < tp_size; ++t) {
    std::vector<int32_t> devices;
    for (int e = 0; e < ep_size; ++e) devices.push_back(Device(e, t));
    ep_.push_back(CreateGroup(devices));
  }
  if (tp_size == 2) {
    for (int e = 0; e < ep_size; ++e) tp_.push_back(CreateGroup({Device(e, 0), Device(e, 1)}));
  }
}

Comms::Comms(int ep_size, int tp_size, int ep_rank, int tp_rank, HcclComm ep, HcclComm tp)
    : ep_size_(ep_size), tp_size_(tp_size), owned_(false) {
  ep_.assign(tp_size, std::vector<HcclComm>(ep_size, nullptr));
  ep_[tp_rank][ep_rank] = ep;
  if (tp_size == 2) {
    tp_.assign(ep_size, std::vector<HcclComm>(2, nullptr));
    tp_[ep_rank][tp_rank] = tp;
  }
}

Comms::~Comms() {
  if (!owned_) return;
  for (auto& group : ep_) {
    for (HcclComm c : group) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);
  }
  for (auto& group : tp_) {
    for (HcclComm c : group) EXPECT_EQ(HcclCommDestroy(c), HCCL_SUCCESS);
  }
}

// ---------------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------------

CapiCase SeedSampleCase() {
  CapiCase c;
  auto& cfg = c.spec.config;
  cfg.ep_world_size = 8;
  cfg.tp_world_size = 2;
  cfg.shared_expert_num = 1;
  cfg.shared_expert_rank_num = 1;
  cfg.moe_expert_num = 7;
  cfg.top_k = 3;
  cfg.hidden = 7168;
  cfg.global_bs = 8 * 8;
  cfg.expert_token_nums_type = 1;
  c.spec.bs = 8;
  c.group_list_type = 1;
  c.pass_a2_params = true;
  return c;
}

std::string Describe(const CapiCase& c) {
  std::ostringstream o;
  const auto& cfg = c.spec.config;
  o << moe_ep::verify::Describe(c.spec) << (c.use_v3 ? " V3" : " V2") << (cfg.a2 ? " AtlasA2" : "");
  if (cfg.zero_expert_num + cfg.copy_expert_num + cfg.const_expert_num > 0) {
    o << " zero=" << cfg.zero_expert_num << " copy=" << cfg.copy_expert_num << " const=" << cfg.const_expert_num;
  }
  o << " noTpAttr=" << c.no_tp_attr << (c.default_shared_num ? " n_s=1(default)" : "")
    << (c.pass_a2_params ? " a2params" : "") << (c.null_comm_alg ? " commAlg=null" : "")
    << (c.shared_x_3d ? " sharedX3d" : "") << (c.pass_zero_ori_x ? " oriX" : "")
    << " groupListType=" << c.group_list_type;
  if (c.a2_quant_mode_attr >= 0) o << " quantModeAttr=" << c.a2_quant_mode_attr;
  return o.str();
}

void RouteSpecialExperts(const CapiCase& c, std::mt19937_64& rng, ScenarioInputs& inputs) {
  const auto& cfg = c.spec.config;
  const int total = cfg.moe_expert_num + cfg.zero_expert_num + cfg.copy_expert_num + cfg.const_expert_num;
  const int64_t h = cfg.hidden;
  for (size_t g = 0; g < inputs.dispatch.size(); ++g) {
    auto& d = inputs.dispatch[g];
    std::vector<int32_t> ids(total);
    for (int i = 0; i < total; ++i) ids[i] = i;
    for (int64_t t = 0; t < d.bs; ++t) {
      for (int k = 0; k < cfg.top_k; ++k) {
        std::swap(ids[k], ids[Uniform(rng, k, total - 1)]);
        d.expert_ids[t * cfg.top_k + k] = ids[k];
      }
    }
    auto& m = inputs.combine[g];
    m.ori_x.clear();
    if (cfg.copy_expert_num + cfg.const_expert_num > 0 || c.pass_zero_ori_x) {
      m.ori_x.resize(d.bs * h);
      for (auto& v : m.ori_x) v = RandomHalf(rng, cfg.dtype);
    }
    m.const_alpha1.resize(cfg.const_expert_num * h);
    m.const_alpha2.resize(cfg.const_expert_num * h);
    m.const_v.resize(cfg.const_expert_num * h);
    for (auto& v : m.const_alpha1) v = moe_ep::verify::RandomCoefficientHalf(rng, cfg.dtype);
    for (auto& v : m.const_alpha2) v = moe_ep::verify::RandomCoefficientHalf(rng, cfg.dtype);
    for (auto& v : m.const_v) v = RandomHalf(rng, cfg.dtype);
  }
}

namespace {

// One rank's tensors, streams and outcome.
struct RankIo {
  int g = 0, ep_rank = 0, tp_rank = 0, device = 0;
  int64_t bs = 0, a = 0, local_experts = 1;
  bool shared_rank = false;
  std::string ep_name, tp_name;
  aclrtContext context = nullptr;
  aclrtStream dispatch_stream = nullptr, combine_stream = nullptr;
  Tensor x, ids, scales, mask, expand_x, dyn_scales, assist, token_nums, ep_recv, tp_recv, expand_scales_out;
  Tensor expert_out, combine_scales, shared_x, ori_x, alpha1, alpha2, const_v, residual, gamma;
  Tensor x_out, y_out, rstd_out;
  std::string error;
  // Outputs copied out after the run.
  std::vector<uint8_t> got_expand_x, got_dyn_scales, got_assist, got_token_nums, got_ep_recv, got_tp_recv,
      got_expand_scales, got_x, got_y, got_rstd;
};

class Runner {
 public:
  Runner(const CapiCase& c, const ScenarioInputs& in, const CapiRunOptions& o, const Comms& comms)
      : c_(c), cfg_(c.spec.config), in_(in), o_(o), comms_(comms) {}

  int tp() const { return cfg_.tp_world_size; }
  int64_t TpAttr() const { return tp() == 2 ? 2 : c_.no_tp_attr; }
  int64_t SharedNumAttr() const {
    return cfg_.shared_expert_rank_num == 0 && c_.default_shared_num ? 1 : cfg_.shared_expert_num;
  }
  const char* CommAlg() const { return c_.null_comm_alg ? nullptr : cfg_.a2 ? "fullmesh" : ""; }
  int64_t QuantModeAttr() const { return c_.a2_quant_mode_attr >= 0 ? c_.a2_quant_mode_attr : cfg_.quant_mode; }

  void Init(RankIo& r, int g) {
    r.g = g;
    r.tp_rank = g / cfg_.ep_world_size;
    r.ep_rank = g % cfg_.ep_world_size;
    r.device = comms_.Device(r.ep_rank, r.tp_rank);
    r.bs = in_.dispatch[g].bs;
    r.shared_rank = r.ep_rank < cfg_.shared_expert_rank_num;
    r.local_experts = cfg_.moe_expert_num / (cfg_.ep_world_size - cfg_.shared_expert_rank_num);
    const int64_t global_bs = cfg_.global_bs != 0 ? cfg_.global_bs : r.bs * cfg_.ep_world_size;
    if (r.shared_rank) {
      const int64_t ranks_per_shared = cfg_.shared_expert_rank_num / cfg_.shared_expert_num;
      r.a = global_bs / cfg_.ep_world_size * ((cfg_.ep_world_size + ranks_per_shared - 1) / ranks_per_shared);
    } else {
      r.a = global_bs * std::min<int64_t>(r.local_experts, cfg_.top_k);
    }
  }

  // Streams and every tensor, on the current device.
  void Prepare(RankIo& r) {
    const auto& d = in_.dispatch[r.g];
    const auto& m = in_.combine[r.g];
    const int64_t h = cfg_.hidden, k = cfg_.top_k, tp_rows = std::max(tp(), 1) * r.a;
    const aclDataType half = HalfType(cfg_);
    const InputLayout layout = c_.spec.layout;
    r.ep_name = CommName(comms_.ep(r.tp_rank, r.ep_rank));
    if (tp() == 2) r.tp_name = CommName(comms_.tp(r.ep_rank, r.tp_rank));
    if (aclrtCreateStream(&r.dispatch_stream) != ACL_SUCCESS) r.error = "aclrtCreateStream: " + RecentErrMsg();
    r.combine_stream = r.dispatch_stream;
    if (o_.two_streams && aclrtCreateStream(&r.combine_stream) != ACL_SUCCESS) {
      r.error = "aclrtCreateStream: " + RecentErrMsg();
    }
    // Dispatch inputs.
    r.x = Tensor::Strided(half, r.bs, h, d.x.data(), layout);
    r.ids = Tensor::Strided(ACL_INT32, r.bs, k, d.expert_ids.data(), layout);
    if (!d.smooth_scales.empty()) {
      r.scales = Tensor(ACL_FLOAT, {cfg_.shared_expert_num + cfg_.moe_expert_num, h}, d.smooth_scales.data());
    }
    if (d.mask_kind == moe_ref::MaskKind::kTokens) r.mask = Tensor(ACL_BOOL, {r.bs}, d.mask.data());
    if (d.mask_kind == moe_ref::MaskKind::kPairs) r.mask = Tensor::Strided(ACL_BOOL, r.bs, k, d.mask.data(), layout);
    // Dispatch outputs (poisoned), two spare expandX rows and one spare scale that must stay untouched.
    const bool quant = cfg_.quant_mode == 2;
    // With strided_outputs, every output has a poisoned gap after each row (the operators take strided outputs).
    const bool gapped = c_.spec.strided_outputs;
    r.expand_x = Tensor::Output(quant ? ACL_INT8 : half, {tp_rows + 2, h}, gapped);
    r.dyn_scales = Tensor::Output(ACL_FLOAT, {tp_rows + 1}, gapped);
    r.assist = Tensor::Output(ACL_INT32, {r.a * 128}, gapped);
    r.token_nums = Tensor::Output(ACL_INT64, {r.shared_rank ? 1 : r.local_experts}, gapped);
    r.ep_recv = Tensor::Output(
        ACL_INT32, {(r.shared_rank ? 1 : r.local_experts) * cfg_.ep_world_size * std::max(tp(), 1)}, gapped);
    r.tp_recv = Tensor::Output(ACL_INT32, {TpAttr()}, gapped);
    if (c_.pass_a2_params) r.expand_scales_out = Tensor(ACL_FLOAT, {r.a});
    // Combine inputs: expert outputs over tp*A rows (rows past the defined ones hold poison).
    std::vector<uint16_t> expert_out(tp_rows * h);
    std::memset(expert_out.data(), kPoison, expert_out.size() * 2);
    std::copy(m.expert_out.begin(), m.expert_out.end(), expert_out.begin());
    r.expert_out = Tensor::Strided(half, tp_rows, h, expert_out.data(), layout);
    r.combine_scales = Tensor::Strided(ACL_FLOAT, r.bs, k, m.expert_scales.data(), layout);
    if (!m.shared_expert_x.empty()) {
      r.shared_x = c_.shared_x_3d ? Tensor(half, {r.bs, 1, h}, m.shared_expert_x.data())
                                  : Tensor::Strided(half, r.bs, h, m.shared_expert_x.data(), layout);
    }
    if (!m.ori_x.empty()) r.ori_x = Tensor::Strided(half, r.bs, h, m.ori_x.data(), layout);
    if (cfg_.const_expert_num > 0) {
      r.alpha1 = Tensor(half, {cfg_.const_expert_num, h}, m.const_alpha1.data());
      r.alpha2 = Tensor(half, {cfg_.const_expert_num, h}, m.const_alpha2.data());
      r.const_v = Tensor(half, {cfg_.const_expert_num, h}, m.const_v.data());
    }
    if (c_.spec.add_rms_norm) {
      r.residual = Tensor(ACL_BF16, {r.bs, 1, h}, m.residual_x.data());
      r.gamma = Tensor(ACL_BF16, {h}, m.gamma.data());
      r.y_out = Tensor::Output(ACL_BF16, {r.bs, 1, h}, gapped);
      r.rstd_out = Tensor::Output(ACL_FLOAT, {r.bs, 1, 1}, gapped);
      r.x_out = Tensor::Output(ACL_BF16, {r.bs, 1, h}, gapped);
    } else {
      r.x_out = Tensor::Output(half, {r.bs, h}, gapped);
    }
  }

  void LaunchDispatch(RankIo& r) {
    if (!r.error.empty()) return;
    uint64_t ws = 123;
    aclOpExecutor* exec = nullptr;
    const char* group_tp = tp() == 2 ? r.tp_name.c_str() : "";
    aclnnStatus st;
    if (c_.use_v3) {
      st = aclnnMoeDistributeDispatchV3GetWorkspaceSize(
          r.x.get(), r.ids.get(), r.scales.get(), r.mask.get(), c_.pass_a2_params ? r.combine_scales.get() : nullptr,
          nullptr, r.ep_name.c_str(), cfg_.ep_world_size, r.ep_rank, cfg_.moe_expert_num, group_tp, TpAttr(), r.tp_rank,
          0, SharedNumAttr(), cfg_.shared_expert_rank_num, QuantModeAttr(), cfg_.global_bs, cfg_.expert_token_nums_type,
          CommAlg(), cfg_.zero_expert_num, cfg_.copy_expert_num, cfg_.const_expert_num, r.expand_x.get(),
          r.dyn_scales.get(), r.assist.get(), r.token_nums.get(), r.ep_recv.get(), r.tp_recv.get(),
          r.expand_scales_out.get(), &ws, &exec);
    } else {
      st = aclnnMoeDistributeDispatchV2GetWorkspaceSize(
          r.x.get(), r.ids.get(), r.scales.get(), r.mask.get(), c_.pass_a2_params ? r.combine_scales.get() : nullptr,
          r.ep_name.c_str(), cfg_.ep_world_size, r.ep_rank, cfg_.moe_expert_num, group_tp, TpAttr(), r.tp_rank, 0,
          SharedNumAttr(), cfg_.shared_expert_rank_num, QuantModeAttr(), cfg_.global_bs, cfg_.expert_token_nums_type,
          CommAlg(), r.expand_x.get(), r.dyn_scales.get(), r.assist.get(), r.token_nums.get(), r.ep_recv.get(),
          r.tp_recv.get(), r.expand_scales_out.get(), &ws, &exec);
    }
    if (!Check(r, "dispatch GetWorkspaceSize", st, ws, exec)) return;
    st = c_.use_v3 ? aclnnMoeDistributeDispatchV3(nullptr, 0, exec, r.dispatch_stream)
                   : aclnnMoeDistributeDispatchV2(nullptr, 0, exec, r.dispatch_stream);
    if (st != ACL_SUCCESS) r.error = "dispatch launch returned " + std::to_string(st) + ": " + RecentErrMsg();
  }

  void LaunchCombine(RankIo& r) {
    if (!r.error.empty()) return;
    uint64_t ws = 123;
    aclOpExecutor* exec = nullptr;
    const char* group_tp = tp() == 2 ? r.tp_name.c_str() : "";
    aclnnStatus st;
    const char* what = "combine";
    if (c_.spec.add_rms_norm && c_.use_v3) {
      what = "combineAddRmsNormV2";
      st = aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
          r.expert_out.get(), r.ids.get(), r.assist.get(), r.ep_recv.get(), r.combine_scales.get(), r.residual.get(),
          r.gamma.get(), r.tp_recv.get(), r.mask.get(), nullptr, nullptr, nullptr, nullptr, r.shared_x.get(), nullptr,
          r.ori_x.get(), r.alpha1.get(), r.alpha2.get(), r.const_v.get(), r.ep_name.c_str(), cfg_.ep_world_size,
          r.ep_rank, cfg_.moe_expert_num, group_tp, TpAttr(), r.tp_rank, 0, SharedNumAttr(),
          cfg_.shared_expert_rank_num, cfg_.global_bs, 0, cfg_.comm_quant_mode, c_.group_list_type, CommAlg(),
          cfg_.norm_eps, cfg_.zero_expert_num, cfg_.copy_expert_num, cfg_.const_expert_num, r.y_out.get(),
          r.rstd_out.get(), r.x_out.get(), &ws, &exec);
    } else if (c_.spec.add_rms_norm) {
      what = "combineAddRmsNorm";
      st = aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize(
          r.expert_out.get(), r.ids.get(), r.assist.get(), r.ep_recv.get(), r.combine_scales.get(), r.residual.get(),
          r.gamma.get(), r.tp_recv.get(), r.mask.get(), nullptr, nullptr, nullptr, nullptr, r.shared_x.get(),
          r.ep_name.c_str(), cfg_.ep_world_size, r.ep_rank, cfg_.moe_expert_num, group_tp, TpAttr(), r.tp_rank, 0,
          SharedNumAttr(), cfg_.shared_expert_rank_num, cfg_.global_bs, 0, cfg_.comm_quant_mode, c_.group_list_type,
          CommAlg(), cfg_.norm_eps, r.y_out.get(), r.rstd_out.get(), r.x_out.get(), &ws, &exec);
    } else if (c_.use_v3) {
      st = aclnnMoeDistributeCombineV3GetWorkspaceSize(
          r.expert_out.get(), r.ids.get(), r.assist.get(), r.ep_recv.get(), r.combine_scales.get(), r.tp_recv.get(),
          r.mask.get(), nullptr, nullptr, nullptr, nullptr, r.shared_x.get(), nullptr, r.ori_x.get(), r.alpha1.get(),
          r.alpha2.get(), r.const_v.get(), r.ep_name.c_str(), cfg_.ep_world_size, r.ep_rank, cfg_.moe_expert_num,
          group_tp, TpAttr(), r.tp_rank, 0, SharedNumAttr(), cfg_.shared_expert_rank_num, cfg_.global_bs, 0,
          cfg_.comm_quant_mode, c_.group_list_type, CommAlg(), cfg_.zero_expert_num, cfg_.copy_expert_num,
          cfg_.const_expert_num, r.x_out.get(), &ws, &exec);
    } else {
      st = aclnnMoeDistributeCombineV2GetWorkspaceSize(
          r.expert_out.get(), r.ids.get(), r.assist.get(), r.ep_recv.get(), r.combine_scales.get(), r.tp_recv.get(),
          r.mask.get(), nullptr, nullptr, nullptr, nullptr, r.shared_x.get(), r.ep_name.c_str(), cfg_.ep_world_size,
          r.ep_rank, cfg_.moe_expert_num, group_tp, TpAttr(), r.tp_rank, 0, SharedNumAttr(),
          cfg_.shared_expert_rank_num, cfg_.global_bs, 0, cfg_.comm_quant_mode, c_.group_list_type, CommAlg(),
          r.x_out.get(), &ws, &exec);
    }
    if (!Check(r, std::string(what) + " GetWorkspaceSize", st, ws, exec)) return;
    if (c_.spec.add_rms_norm) {
      st = c_.use_v3 ? aclnnMoeDistributeCombineAddRmsNormV2(nullptr, 0, exec, r.combine_stream)
                     : aclnnMoeDistributeCombineAddRmsNorm(nullptr, 0, exec, r.combine_stream);
    } else {
      st = c_.use_v3 ? aclnnMoeDistributeCombineV3(nullptr, 0, exec, r.combine_stream)
                     : aclnnMoeDistributeCombineV2(nullptr, 0, exec, r.combine_stream);
    }
    if (st != ACL_SUCCESS)
      r.error = std::string(what) + " launch returned " + std::to_string(st) + ": " + RecentErrMsg();
  }

  void Sync(RankIo& r, aclrtStream s, const char* what) {
    if (!r.error.empty()) return;
    const aclError e = aclrtSynchronizeStreamWithTimeout(s, o_.sync_timeout_ms);
    if (e != ACL_SUCCESS)
      r.error = std::string(what) + ": synchronize returned " + std::to_string(e) + ": " + RecentErrMsg();
  }

  void Collect(RankIo& r) {
    std::string gaps;  // a gapped output's gap written
    r.got_expand_x = r.expand_x.Elements(&gaps);
    r.got_dyn_scales = r.dyn_scales.Elements(&gaps);
    r.got_assist = r.assist.Elements(&gaps);
    r.got_token_nums = r.token_nums.Elements(&gaps);
    r.got_ep_recv = r.ep_recv.Elements(&gaps);
    r.got_tp_recv = TpAttr() > 0 ? r.tp_recv.Elements(&gaps) : std::vector<uint8_t>{};
    if (c_.pass_a2_params) r.got_expand_scales = r.expand_scales_out.Bytes();
    r.got_x = r.x_out.Elements(&gaps);
    if (c_.spec.add_rms_norm) {
      r.got_y = r.y_out.Elements(&gaps);
      r.got_rstd = r.rstd_out.Elements(&gaps);
    }
    if (!gaps.empty() && r.error.empty()) r.error = gaps;
  }

  // Frees tensors and streams on the rank's device.
  // One rank's whole round on its own thread: prepare, dispatch, combine, collect, release.
  void RunRound(RankIo& r) {
    Prepare(r);
    LaunchDispatch(r);
    Sync(r, r.dispatch_stream, "dispatch");
    LaunchCombine(r);
    Sync(r, r.combine_stream, "combine");
    Collect(r);
    Release(r);
  }

  void Release(RankIo& r) {
    if (r.combine_stream != nullptr && r.combine_stream != r.dispatch_stream) aclrtDestroyStream(r.combine_stream);
    if (r.dispatch_stream != nullptr) aclrtDestroyStream(r.dispatch_stream);
    r.dispatch_stream = r.combine_stream = nullptr;
    for (Tensor* t : {&r.x,
                      &r.ids,
                      &r.scales,
                      &r.mask,
                      &r.expand_x,
                      &r.dyn_scales,
                      &r.assist,
                      &r.token_nums,
                      &r.ep_recv,
                      &r.tp_recv,
                      &r.expand_scales_out,
                      &r.expert_out,
                      &r.combine_scales,
                      &r.shared_x,
                      &r.ori_x,
                      &r.alpha1,
                      &r.alpha2,
                      &r.const_v,
                      &r.residual,
                      &r.gamma,
                      &r.x_out,
                      &r.y_out,
                      &r.rstd_out}) {
      *t = Tensor();
    }
  }

  std::string Compare(const RankIo& r, const moe_ref::DispatchOut& e, const moe_ref::CombineOut& ce) const {
    const std::string who = "rank " + std::to_string(r.g) + " (ep " + std::to_string(r.ep_rank) + ", tp " +
                            std::to_string(r.tp_rank) + ") ";
    const int64_t h = cfg_.hidden;
    std::string m;
    auto first = [&](std::string s) {
      if (m.empty() && !s.empty()) m = who + s;
    };
    if (cfg_.quant_mode == 2) {
      first(CompareElements("expandX", e.expand_x_q.data(), e.rows * h, 1, r.got_expand_x));
      first(CompareElements("dynamicScales", e.dynamic_scales.data(), e.rows, 4, r.got_dyn_scales));
    } else {
      first(CompareElements("expandX", e.expand_x.data(), e.rows * h, 2, r.got_expand_x));
      first(CompareElements("dynamicScales (quantMode 0)", nullptr, 0, 4, r.got_dyn_scales));
    }
    if (cfg_.a2) {  // Atlas A2: this rank's expandIdx per (token, k), written by the sender
      first(CompareElements("assistInfoForCombine (expandIdx)", e.expand_idx.data(), e.expand_idx.size(), 4,
                            r.got_assist));
    } else {
      first(CompareElements("assistInfoForCombine", e.assist_info.data(), 3 * e.own_rows, 4, r.got_assist));
    }
    first(CompareElements("expertTokenNums", e.expert_token_nums.data(), e.expert_token_nums.size(), 8,
                          r.got_token_nums));
    first(CompareElements("epRecvCounts", e.ep_recv_counts.data(), e.ep_recv_counts.size(), 4, r.got_ep_recv));
    // With tpWorldSize 1 the A3 kernel without TP leaves tpRecvCounts alone; that case has its own test
    // (CapiProperty.TpRecvCountsUntouchedWithTpWorldSize1) so that it does not mask everything else here.
    if (TpAttr() != 1 || c_.strict_tp_recv_counts) {
      first(CompareElements("tpRecvCounts", e.tp_recv_counts.data(), e.tp_recv_counts.size(), 4, r.got_tp_recv));
    }
    if (c_.pass_a2_params) first(CompareElements("expandScalesOut (A2 only)", nullptr, 0, 4, r.got_expand_scales));
    for (int64_t t = 0; m.empty() && t < r.bs; ++t) {
      const size_t defined = ce.written[t] ? h : 0;
      const std::string tok = "(token " + std::to_string(t) + ")";
      const auto half = moe_ep::verify::HalfNans(cfg_);
      first(CompareElements("x" + tok, ce.x.data() + t * h, defined, 2, r.got_x, t * h * 2, h, half));
      if (c_.spec.add_rms_norm) {
        first(CompareElements("y" + tok, ce.y.data() + t * h, defined, 2, r.got_y, t * h * 2, h, half));
        first(CompareElements("rstd" + tok, ce.rstd.data() + t, defined ? 1 : 0, 4, r.got_rstd, t * 4, 1,
                              moe_ep::verify::Nans::kFp32));
      }
    }
    return m;
  }

 private:
  bool Check(RankIo& r, const std::string& what, aclnnStatus st, uint64_t ws, aclOpExecutor* exec) {
    if (st != ACL_SUCCESS) {
      r.error = what + " returned " + std::to_string(st) + ": " + RecentErrMsg();
    } else if (ws != kWorkspaceBytes) {
      r.error = what + ": workspace size " + std::to_string(ws) + ", expected " + std::to_string(kWorkspaceBytes);
    } else if (exec == nullptr) {
      r.error = what + ": null executor";
    }
    return r.error.empty();
  }

  const CapiCase& c_;
  const moe_ref::Config& cfg_;
  const ScenarioInputs& in_;
  const CapiRunOptions& o_;
  const Comms& comms_;
};

}  // namespace

std::string RunCapiCase(const CapiCase& c, ScenarioInputs& inputs, const CapiRunOptions& options, const Comms* comms) {
  const auto& cfg = c.spec.config;
  const int ranks = cfg.ep_world_size * cfg.tp_world_size;
  std::unique_ptr<Comms> own;
  if (comms == nullptr) {
    own = std::make_unique<Comms>(cfg.ep_world_size, cfg.tp_world_size);
    comms = own.get();
  }
  const auto expected = moe_ref::Dispatch(cfg, inputs.dispatch);
  moe_ep::verify::FillExpertOutputs(c.spec, expected, inputs);
  const auto expected_combine = c.spec.add_rms_norm ? moe_ref::CombineAddRmsNorm(cfg, inputs.dispatch, inputs.combine)
                                                    : moe_ref::Combine(cfg, inputs.dispatch, inputs.combine);

  Runner runner(c, inputs, options, *comms);
  std::vector<RankIo> io(ranks);
  for (int g = 0; g < ranks; ++g) runner.Init(io[g], g);

  auto context_error = [](aclError e, const char* what) {
    return e == ACL_SUCCESS ? std::string()
                            : std::string(what) + " returned " + std::to_string(e) + ": " + RecentErrMsg();
  };
  if (options.launch == Launch::kThreadPerRank) {
    std::vector<std::thread> threads;
    for (int g = 0; g < ranks; ++g) {
      threads.emplace_back([&, g] {
        RankIo& r = io[g];
        r.error = context_error(aclrtSetDevice(r.device), "aclrtSetDevice");
        runner.RunRound(r);
        aclrtResetDevice(r.device);
      });
    }
    for (auto& t : threads) t.join();
  } else {
    // The main thread makes one context per rank (as the seeds' samples do).
    for (int g = 0; g < ranks; ++g) {
      RankIo& r = io[g];
      r.error = context_error(aclrtSetDevice(r.device), "aclrtSetDevice");
      if (r.error.empty()) r.error = context_error(aclrtCreateContext(&r.context, r.device), "aclrtCreateContext");
    }
    auto use = [&](RankIo& r) {
      const std::string e = context_error(aclrtSetCurrentContext(r.context), "aclrtSetCurrentContext");
      if (r.error.empty()) r.error = e;
    };
    if (options.launch == Launch::kThreadPerRankContexts) {
      std::vector<std::thread> threads;
      for (int g = 0; g < ranks; ++g) {
        threads.emplace_back([&, g] {
          RankIo& r = io[g];
          use(r);
          runner.Prepare(r);
          runner.LaunchDispatch(r);
          runner.Sync(r, r.dispatch_stream, "dispatch");
          runner.LaunchCombine(r);
          runner.Sync(r, r.combine_stream, "combine");
          runner.Collect(r);
          runner.Release(r);
        });
      }
      for (auto& t : threads) t.join();
    } else {
      // One thread: launch every rank's dispatch (nothing may block), then synchronize them all; same
      // for combine.
      for (auto& r : io) use(r), runner.Prepare(r), runner.LaunchDispatch(r);
      for (auto& r : io) use(r), runner.Sync(r, r.dispatch_stream, "dispatch");
      for (auto& r : io) use(r), runner.LaunchCombine(r);
      for (auto& r : io) use(r), runner.Sync(r, r.combine_stream, "combine");
      for (auto& r : io) use(r), runner.Collect(r), runner.Release(r);
    }
    for (auto& r : io) {
      if (r.context != nullptr) aclrtDestroyContext(r.context);
      aclrtResetDevice(r.device);
    }
  }
  for (const auto& r : io) {
    if (!r.error.empty()) return "rank " + std::to_string(r.g) + ": " + r.error;
  }
  for (const auto& r : io) {
    const std::string m = runner.Compare(r, expected[r.g], expected_combine[r.g]);
    if (!m.empty()) return m;
  }
  return "";
}

// ---------------------------------------------------------------------------------------------------
// Ranks whose communicators the caller made (root info, other processes, elastic survivors)
// ---------------------------------------------------------------------------------------------------

CapiExpected ExpectedOutputs(const CapiCase& c, ScenarioInputs& inputs) {
  const auto& cfg = c.spec.config;
  CapiExpected e;
  e.dispatch = moe_ref::Dispatch(cfg, inputs.dispatch);
  moe_ep::verify::FillExpertOutputs(c.spec, e.dispatch, inputs);
  e.combine = c.spec.add_rms_norm ? moe_ref::CombineAddRmsNorm(cfg, inputs.dispatch, inputs.combine)
                                  : moe_ref::Combine(cfg, inputs.dispatch, inputs.combine);
  return e;
}

std::string RunCapiCaseRank(const CapiCase& c, const ScenarioInputs& inputs, const CapiExpected& expected, int ep_rank,
                            int tp_rank, HcclComm ep, HcclComm tp, const CapiRunOptions& options) {
  const auto& cfg = c.spec.config;
  const Comms comms(cfg.ep_world_size, cfg.tp_world_size, ep_rank, tp_rank, ep, tp);
  Runner runner(c, inputs, options, comms);
  RankIo r;
  runner.Init(r, tp_rank * cfg.ep_world_size + ep_rank);
  runner.RunRound(r);
  if (!r.error.empty()) return "rank " + std::to_string(r.g) + ": " + r.error;
  return runner.Compare(r, expected.dispatch[r.g], expected.combine[r.g]);
}

std::vector<int32_t> ScaleDownTable(const moe_ref::Config& original, const std::vector<int32_t>& alive) {
  const int e = original.ep_world_size;
  std::vector<int32_t> table(4 + 2 * e, -1);
  int32_t new_e = 0, new_s = 0;
  for (int r = 0; r < e; ++r) {
    if (!alive[r]) continue;
    table[4 + r] = new_e;      // Table1: old -> new
    table[4 + e + new_e] = r;  // Table2: new -> old
    ++new_e;
    if (r < original.shared_expert_rank_num) ++new_s;
  }
  const int32_t local = original.moe_expert_num / (e - original.shared_expert_rank_num);
  table[0] = 1;
  table[1] = new_e;
  table[2] = new_s;
  table[3] = local * (new_e - new_s);
  return table;
}

std::string RootInfoToken(const HcclRootInfo& root) {
  const std::string text(root.internal, strnlen(root.internal, sizeof(root.internal)));
  const size_t colon = text.find(':');
  if (colon == std::string::npos) return "";
  size_t end = colon + 1;
  while (end < text.size() && std::isxdigit(static_cast<unsigned char>(text[end]))) ++end;
  return text.substr(colon + 1, end - colon - 1);
}

std::string CapiRankOutcome::Summary() const {
  if (!failed_call.empty()) return failed_call + " returned " + std::to_string(status) + ": " + message;
  return mismatch;
}

CapiRankOutcome RunCapiRank(const CapiCase& c, const ScenarioInputs& inputs, int rank, HcclComm ep,
                            const CapiExpected& expected, const CapiElastic* elastic, int32_t sync_timeout_ms) {
  const auto& cfg = c.spec.config;
  const moe_ref::Config& oc = elastic != nullptr ? elastic->original : cfg;  // attributes and buffer sizes
  const int64_t ep_rank = elastic != nullptr ? elastic->original_rank : rank;
  const auto& d = inputs.dispatch[rank];
  const auto& m = inputs.combine[rank];
  const int64_t h = cfg.hidden, k = cfg.top_k, bs = d.bs, e = oc.ep_world_size;
  const bool shared = ep_rank < oc.shared_expert_rank_num;
  const int64_t local = oc.moe_expert_num / (e - oc.shared_expert_rank_num);
  const int64_t global_bs = oc.global_bs != 0 ? oc.global_bs : bs * e;
  // A by role; with elasticInfo every rank is sized for the larger role (docs/semantics.md 1.2).
  const int64_t moe_a = global_bs * std::min<int64_t>(local, k);
  int64_t shared_a = 0;
  if (oc.shared_expert_rank_num > 0) {
    const int64_t replicas = oc.shared_expert_rank_num / oc.shared_expert_num;
    shared_a = global_bs / e * ((e + replicas - 1) / replicas);
  }
  const int64_t a = elastic != nullptr ? std::max(moe_a, shared_a) : shared ? shared_a : moe_a;
  const aclDataType half = HalfType(cfg);
  const bool quant = cfg.quant_mode == 2;
  const InputLayout layout = c.spec.layout;

  CapiRankOutcome out;
  auto failed = [&](const std::string& call, int32_t status) {
    if (status == ACL_SUCCESS) return false;
    out.failed_call = "rank " + std::to_string(rank) + ": " + call;
    out.status = status;
    out.message = RecentErrMsg();
    return true;
  };
  char group[COMM_NAME_MAX_LENGTH] = {0};
  if (failed("HcclGetCommName", HcclGetCommName(ep, group))) return out;
  aclrtStream stream = nullptr;
  if (failed("aclrtCreateStream", aclrtCreateStream(&stream))) return out;
  struct StreamOwner {
    aclrtStream s;
    ~StreamOwner() { aclrtDestroyStream(s); }
  } stream_owner{stream};

  // Inputs.
  Tensor x = Tensor::Strided(half, bs, h, d.x.data(), layout);
  // Scaled down, the special experts keep their ids from the group's moeExpertNum (the inputs count them from the
  // survivors' experts, as the reference's scaled-down job does).
  const std::vector<int32_t> expert_ids = moe_ep::verify::GroupExpertIds(d.expert_ids, cfg, oc);
  Tensor ids = Tensor::Strided(ACL_INT32, bs, k, expert_ids.data(), layout);
  Tensor scales, mask, table, shared_x, ori_x, alpha1, alpha2, const_v;
  if (!d.smooth_scales.empty()) {
    scales = Tensor(ACL_FLOAT, {cfg.shared_expert_num + cfg.moe_expert_num, h}, d.smooth_scales.data());
  }
  if (d.mask_kind == moe_ref::MaskKind::kTokens) mask = Tensor(ACL_BOOL, {bs}, d.mask.data());
  if (d.mask_kind == moe_ref::MaskKind::kPairs) mask = Tensor::Strided(ACL_BOOL, bs, k, d.mask.data(), layout);
  if (elastic != nullptr) {
    table = Tensor(ACL_INT32, {static_cast<int64_t>(elastic->elastic_info.size())}, elastic->elastic_info.data());
  }
  // Dispatch outputs, poisoned, sized for the group as created: two spare expandX rows, one spare scale.
  Tensor expand_x(quant ? ACL_INT8 : half, {a + 2, h});
  Tensor dyn_scales(ACL_FLOAT, {a + 1});
  Tensor assist(ACL_INT32, {a * 128});
  // The counts too, sized for either role with elasticInfo (CANN: expertTokenNums max(L, 1), epRecvCounts
  // max(E, E * L)).
  const int64_t count_experts = elastic != nullptr ? std::max<int64_t>(local, 1) : shared ? 1 : local;
  Tensor token_nums(ACL_INT64, {count_experts});
  Tensor ep_recv(ACL_INT32, {count_experts * e});
  Tensor tp_recv(ACL_INT32, {0});
  // Combine inputs: expert outputs over A rows (rows past the defined ones hold poison).
  std::vector<uint16_t> expert_rows(a * h);
  std::memset(expert_rows.data(), kPoison, expert_rows.size() * 2);
  std::copy(m.expert_out.begin(), m.expert_out.end(), expert_rows.begin());
  Tensor expert_out = Tensor::Strided(half, a, h, expert_rows.data(), layout);
  Tensor combine_scales = Tensor::Strided(ACL_FLOAT, bs, k, m.expert_scales.data(), layout);
  if (!m.shared_expert_x.empty()) shared_x = Tensor::Strided(half, bs, h, m.shared_expert_x.data(), layout);
  if (!m.ori_x.empty()) ori_x = Tensor::Strided(half, bs, h, m.ori_x.data(), layout);
  if (cfg.const_expert_num > 0) {
    alpha1 = Tensor(half, {cfg.const_expert_num, h}, m.const_alpha1.data());
    alpha2 = Tensor(half, {cfg.const_expert_num, h}, m.const_alpha2.data());
    const_v = Tensor(half, {cfg.const_expert_num, h}, m.const_v.data());
  }
  Tensor x_out(half, {bs, h});

  const char* op = c.use_v3 ? "aclnnMoeDistributeDispatchV3" : "aclnnMoeDistributeDispatchV2";
  uint64_t ws = 123;
  aclOpExecutor* exec = nullptr;
  aclnnStatus st;
  if (c.use_v3) {
    st = aclnnMoeDistributeDispatchV3GetWorkspaceSize(
        x.get(), ids.get(), scales.get(), mask.get(), nullptr, table.get(), group, e, ep_rank, oc.moe_expert_num, "", 0,
        0, 0, oc.shared_expert_num, oc.shared_expert_rank_num, cfg.quant_mode, oc.global_bs, cfg.expert_token_nums_type,
        "", cfg.zero_expert_num, cfg.copy_expert_num, cfg.const_expert_num, expand_x.get(), dyn_scales.get(),
        assist.get(), token_nums.get(), ep_recv.get(), tp_recv.get(), nullptr, &ws, &exec);
  } else {
    st = aclnnMoeDistributeDispatchV2GetWorkspaceSize(
        x.get(), ids.get(), scales.get(), mask.get(), nullptr, group, e, ep_rank, oc.moe_expert_num, "", 0, 0, 0,
        oc.shared_expert_num, oc.shared_expert_rank_num, cfg.quant_mode, oc.global_bs, cfg.expert_token_nums_type, "",
        expand_x.get(), dyn_scales.get(), assist.get(), token_nums.get(), ep_recv.get(), tp_recv.get(), nullptr, &ws,
        &exec);
  }
  if (failed(std::string(op) + "GetWorkspaceSize", st)) return out;
  st = c.use_v3 ? aclnnMoeDistributeDispatchV3(nullptr, 0, exec, stream)
                : aclnnMoeDistributeDispatchV2(nullptr, 0, exec, stream);
  if (failed(op, st)) return out;
  if (failed(std::string(op) + ": aclrtSynchronizeStreamWithTimeout",
             aclrtSynchronizeStreamWithTimeout(stream, sync_timeout_ms))) {
    return out;
  }

  op = c.use_v3 ? "aclnnMoeDistributeCombineV3" : "aclnnMoeDistributeCombineV2";
  ws = 123;
  exec = nullptr;
  if (c.use_v3) {
    st = aclnnMoeDistributeCombineV3GetWorkspaceSize(
        expert_out.get(), ids.get(), assist.get(), ep_recv.get(), combine_scales.get(), tp_recv.get(), mask.get(),
        nullptr, nullptr, nullptr, nullptr, shared_x.get(), table.get(), ori_x.get(), alpha1.get(), alpha2.get(),
        const_v.get(), group, e, ep_rank, oc.moe_expert_num, "", 0, 0, 0, oc.shared_expert_num,
        oc.shared_expert_rank_num, oc.global_bs, 0, cfg.comm_quant_mode, 0, "", cfg.zero_expert_num,
        cfg.copy_expert_num, cfg.const_expert_num, x_out.get(), &ws, &exec);
  } else {
    st = aclnnMoeDistributeCombineV2GetWorkspaceSize(
        expert_out.get(), ids.get(), assist.get(), ep_recv.get(), combine_scales.get(), tp_recv.get(), mask.get(),
        nullptr, nullptr, nullptr, nullptr, shared_x.get(), group, e, ep_rank, oc.moe_expert_num, "", 0, 0, 0,
        oc.shared_expert_num, oc.shared_expert_rank_num, oc.global_bs, 0, cfg.comm_quant_mode, 0, "", x_out.get(), &ws,
        &exec);
  }
  if (failed(std::string(op) + "GetWorkspaceSize", st)) return out;
  st = c.use_v3 ? aclnnMoeDistributeCombineV3(nullptr, 0, exec, stream)
                : aclnnMoeDistributeCombineV2(nullptr, 0, exec, stream);
  if (failed(op, st)) return out;
  if (failed(std::string(op) + ": aclrtSynchronizeStreamWithTimeout",
             aclrtSynchronizeStreamWithTimeout(stream, sync_timeout_ms))) {
    return out;
  }

  // Compare every output with the reference; everything past the defined elements must be poison.
  const auto& ed = expected.dispatch[rank];
  const auto& ec = expected.combine[rank];
  std::string& mm = out.mismatch;
  auto first = [&](std::string s) {
    if (mm.empty() && !s.empty())
      mm = "rank " + std::to_string(rank) + " (epRankId " + std::to_string(ep_rank) + ") " + s;
  };
  if (quant) {
    first(CompareElements("expandX", ed.expand_x_q.data(), ed.rows * h, 1, expand_x.Bytes()));
    first(CompareElements("dynamicScales", ed.dynamic_scales.data(), ed.rows, 4, dyn_scales.Bytes()));
  } else {
    first(CompareElements("expandX", ed.expand_x.data(), ed.rows * h, 2, expand_x.Bytes()));
    first(CompareElements("dynamicScales (quantMode 0)", nullptr, 0, 4, dyn_scales.Bytes()));
  }
  first(CompareElements("assistInfoForCombine", ed.assist_info.data(), 3 * ed.own_rows, 4, assist.Bytes()));
  first(CompareElements("expertTokenNums", ed.expert_token_nums.data(), ed.expert_token_nums.size(), 8,
                        token_nums.Bytes()));
  first(CompareElements("epRecvCounts", ed.ep_recv_counts.data(), ed.ep_recv_counts.size(), 4, ep_recv.Bytes()));
  const std::vector<uint8_t> got_x = x_out.Bytes();
  for (int64_t t = 0; mm.empty() && t < bs; ++t) {
    first(CompareElements("x(token " + std::to_string(t) + ")", ec.x.data() + t * h, ec.written[t] ? h : 0, 2, got_x,
                          t * h * 2, h));
  }
  return out;
}

std::vector<CapiRankOutcome> RunCapiRanks(const CapiCase& c, ScenarioInputs& inputs, const std::vector<HcclComm>& comms,
                                          const std::vector<int32_t>& devices,
                                          const std::vector<CapiElastic>* elastic) {
  const CapiExpected expected = ExpectedOutputs(c, inputs);
  const int ranks = static_cast<int>(comms.size());
  std::vector<CapiRankOutcome> outcomes(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      const aclError set = aclrtSetDevice(devices[r]);
      if (set != ACL_SUCCESS) {
        outcomes[r].failed_call = "rank " + std::to_string(r) + ": aclrtSetDevice";
        outcomes[r].status = set;
        outcomes[r].message = RecentErrMsg();
        return;
      }
      outcomes[r] = RunCapiRank(c, inputs, r, comms[r], expected, elastic != nullptr ? &(*elastic)[r] : nullptr);
      aclrtResetDevice(devices[r]);
    });
  }
  for (auto& t : threads) t.join();
  return outcomes;
}

}  // namespace moe_ep::capi_testing
