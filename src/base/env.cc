// Reading the environment: integers with a range, so no value can wrap the arithmetic that uses it.
#include "base/env.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <utility>

#include "moe_ep/error.h"
#include "moe_ep/options.h"

namespace moe_ep::env {
namespace {

constexpr char kLaunchHint[] = "; start the ranks with `moe-ep launch -n N -- PROGRAM` or with mpirun";

}  // namespace

std::optional<std::string> Text(const char* name) {
  const char* text = std::getenv(name);
  if (!text || !*text) return std::nullopt;
  return std::string(text);
}

int64_t Integer(const char* name, int64_t fallback, int64_t min, int64_t max) {
  const auto text = Text(name);
  if (!text) return fallback;
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text->c_str(), &end, 10);
  const bool spaced = std::isspace(static_cast<unsigned char>(text->front()));  // strtoll would skip it
  if (spaced || *end != '\0' || errno != 0 || value < min || value > max) {
    throw Error(ErrorCode::kInvalidParam, std::string("environment variable ") + name + " = '" + *text +
                                              "' must be an integer in [" + std::to_string(min) + ", " +
                                              std::to_string(max) + "]");
  }
  return value;
}

std::optional<bool> Switch(const char* name) {
  const auto text = Text(name);
  if (!text) return std::nullopt;
  if (*text != "0" && *text != "1") {
    throw Error(ErrorCode::kInvalidParam, std::string("environment variable ") + name + " = '" + *text +
                                              "' violates rule: \"0\" or \"1\" (or unset)");
  }
  return *text == "1";
}

std::chrono::milliseconds OperationTimeout() {
  return std::chrono::milliseconds(Integer("MOE_EP_TIMEOUT_MS", kDefaultTimeoutMs, 1, kMaxTimeoutMs));
}

uint64_t WindowBytes() { return static_cast<uint64_t>(Integer("MOE_EP_WINDOW_MB", 2048, 1, kMaxWindowMb)) << 20; }

int Threads(int fallback) { return static_cast<int>(Integer("MOE_EP_THREADS", fallback, 1, kMaxThreads)); }

uint64_t ThreadMinBytes(uint64_t fallback) {
  return static_cast<uint64_t>(Integer("MOE_EP_THREAD_MIN_BYTES", static_cast<int64_t>(fallback), 0, int64_t{1} << 40));
}

namespace {

// A variable naming one of two choices, or "auto" (also when unset); anything else is refused naming all three.
template <typename Choice>
Choice NamedChoice(const char* name, std::pair<const char*, Choice> first, std::pair<const char*, Choice> second,
                   Choice automatic) {
  const auto text = Text(name);
  if (!text || *text == "auto") return automatic;
  for (const auto& [word, choice] : {first, second}) {
    if (*text == word) return choice;
  }
  throw Error(ErrorCode::kInvalidParam, std::string("environment variable ") + name + " = '" + *text + "' must be '" +
                                            first.first + "', '" + second.first + "' or 'auto'");
}

}  // namespace

DataPath DataPathChoice() {
  return NamedChoice("MOE_EP_DATA_PATH", {"push", DataPath::kPush}, {"pull", DataPath::kPull}, DataPath::kAuto);
}

CrossMemory CrossMemoryChoice() {
  return NamedChoice("MOE_EP_CROSS_MEMORY", {"0", CrossMemory::kOff}, {"1", CrossMemory::kOn}, CrossMemory::kAuto);
}

std::optional<std::string> KernelIsa() { return Text("MOE_EP_ISA"); }

int32_t DeviceCount() { return static_cast<int32_t>(Integer("MOE_EP_DEVICE_COUNT", 16, 1, 65536)); }

std::pair<const char*, Product> SocName() {
  // The names CANN's operator build maps to each product (Ascend910_93xx: A3; Ascend910B<n>: A2).
  static constexpr std::pair<const char*, Product> kSocs[] = {
      {"Ascend910_9391", Product::kA3}, {"Ascend910_9381", Product::kA3}, {"Ascend910_9372", Product::kA3},
      {"Ascend910_9392", Product::kA3}, {"Ascend910_9382", Product::kA3}, {"Ascend910_9362", Product::kA3},
      {"Ascend910B1", Product::kA2},    {"Ascend910B2", Product::kA2},    {"Ascend910B2C", Product::kA2},
      {"Ascend910B3", Product::kA2},    {"Ascend910B4", Product::kA2},    {"Ascend910B4-1", Product::kA2}};
  const auto text = Text("MOE_EP_SOC_NAME");
  if (!text) return kSocs[0];
  std::string names;
  for (const auto& soc : kSocs) {
    if (*text == soc.first) return soc;
    names += names.empty() ? soc.first : std::string(", ") + soc.first;
  }
  throw Error(ErrorCode::kInvalidParam, "environment variable MOE_EP_SOC_NAME = '" + *text +
                                            "' must name an Atlas A3 or Atlas A2 SoC: one of " + names);
}

uint64_t HcclWindowBytes() { return static_cast<uint64_t>(Integer("HCCL_BUFFSIZE", 200, 1, kMaxWindowMb)) << 20; }

std::chrono::milliseconds HcclExecDeadline(int64_t seconds) {
  if (seconds == 0) return OperationTimeout();
  return std::chrono::milliseconds(std::min(seconds * 1000, kMaxTimeoutMs));  // < 2^31 s: the product fits
}

std::chrono::milliseconds HcclOperationTimeout() {
  const auto seconds = Integer("HCCL_EXEC_TIMEOUT", -1, 0, kMaxHcclExecSeconds);  // -1: unset
  return seconds < 0 ? OperationTimeout() : HcclExecDeadline(seconds);
}

std::chrono::seconds HcclConnectTimeout() {
  return std::chrono::seconds(Integer("HCCL_CONNECT_TIMEOUT", 120, 1, kMaxTimeoutMs / 1000));
}

int HostsSplit() { return static_cast<int>(Integer("MOE_EP_HOSTS_SPLIT", 0, 0, 1 << 20)); }

bool HostsRelay() { return Integer("MOE_EP_HOSTS_RELAY", 1, 0, 1) == 1; }

uint64_t HostsMessageBytes() {
  const auto bytes = static_cast<uint64_t>(
      Integer("MOE_EP_HOSTS_MESSAGE_BYTES", static_cast<int64_t>(kDefaultHostsMessageBytes), 1024, 64 << 20));
  return bytes / 8 * 8;
}

bool StartedByMpiLauncher() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"}) {
    if (Text(name)) return true;
  }
  return false;
}

std::optional<LaunchVariables> MpiLaunch() {
  // Open MPI, then MPICH's Hydra (PMIx-only launchers also set one of these through their MPI).
  const std::pair<const char*, const char*> launchers[] = {{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                                           {"PMI_RANK", "PMI_SIZE"}};
  for (const auto& [rank, size] : launchers) {
    if (!Text(rank) || !Text(size)) continue;
    LaunchVariables job;
    job.world_size = static_cast<int>(Integer(size, 0, 1, 1 << 20));
    job.rank = static_cast<int>(Integer(rank, 0, 0, job.world_size - 1));
    return job;  // rendezvous empty: the job's groups meet over MPI
  }
  return std::nullopt;
}

std::string RendezvousProblem(const std::string& rendezvous, const std::string& named) {
  // shm_open would cut a name at a NUL: two jobs' segments would meet under one name.
  const bool cut = rendezvous.find_first_of(std::string("/\0", 2)) != std::string::npos;
  if (rendezvous.size() <= kMaxRendezvousChars && !cut) return "";
  std::string shown;
  for (const char ch : rendezvous.substr(0, 32)) shown += ch ? std::string(1, ch) : "\\0";
  return named + " (" + std::to_string(rendezvous.size()) + " characters: '" + shown +
         (rendezvous.size() > 32 ? "...'" : "'") + ") must be 1 to " + std::to_string(kMaxRendezvousChars) +
         " characters without '/' and NUL: it names the job's shared-memory segments";
}

LaunchVariables Launch() {
  if (!Text("MOE_EP_RENDEZVOUS")) {
    if (auto job = MpiLaunch()) return *job;
  }
  const auto required = [](const char* name) {
    const auto text = Text(name);
    if (!text) throw Error(ErrorCode::kInvalidConfig, std::string(name) + " is not set" + kLaunchHint);
    return *text;
  };
  const auto rank_number = [&](const char* name, int64_t min) {
    required(name);
    try {
      return static_cast<int>(Integer(name, 0, min, 1 << 20));
    } catch (const Error& e) {
      throw Error(ErrorCode::kInvalidConfig, e.what() + std::string(kLaunchHint));
    }
  };
  LaunchVariables job;
  job.rank = rank_number("MOE_EP_RANK", 0);
  job.world_size = rank_number("MOE_EP_WORLD_SIZE", 1);
  job.rendezvous = required("MOE_EP_RENDEZVOUS");
  if (const std::string problem = RendezvousProblem(job.rendezvous, "MOE_EP_RENDEZVOUS"); !problem.empty()) {
    throw Error(ErrorCode::kInvalidConfig, problem + kLaunchHint);
  }
  if (job.rank >= job.world_size) {
    throw Error(ErrorCode::kInvalidConfig, "MOE_EP_RANK = " + std::to_string(job.rank) +
                                               " must be in [0, MOE_EP_WORLD_SIZE = " + std::to_string(job.world_size) +
                                               ")");
  }
  return job;
}

}  // namespace moe_ep::env

namespace moe_ep {

std::chrono::milliseconds DefaultTimeout() { return env::OperationTimeout(); }
uint64_t DefaultWindowBytes() { return env::WindowBytes(); }

}  // namespace moe_ep
