// HCCL communicators: HcclCommInitAll (ranks as threads, thread transport), root-info and rank-table groups (ranks
// as threads or processes over shared memory, or over MPI), their configurations (window size, name, operation
// timeout), names, ranks, sizes and destruction, with a registry of live handles.
#include "cann/hccl/comm.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/entropy.h"
#include "base/env.h"
#include "base/hash.h"
#include "cann/guard.h"
#include "cann/hccl/rank_table.h"
#include "cann/runtime/handle_registry.h"
#include "cann/runtime/runtime.h"
#include "hccl/hccl.h"
#include "moe_ep/error.h"
#include "plan/layout.h"
#include "transport/shm/shm_window.h"
#ifdef MOE_EP_HAVE_MPI
#include "transport/mpi/hosts_window.h"
#include "transport/mpi/mpi_runtime.h"
#include "transport/mpi/rendezvous.h"
#endif
#include "transport/thread/thread_window.h"

namespace moe_ep::cann {
namespace {

constexpr char kRootMagic[] = "moe_ep-hccl-root-v1:";  // followed by a 32-hex-digit token
// A window has one synchronisation flag per rank; a larger group could not synchronise.
constexpr uint32_t kMaxRanks = static_cast<uint32_t>(plan::kMaxSyncFlags);

class Registry {
 public:
  static Registry& Get() {
    static Registry* registry = new Registry;  // never destroyed: handles may outlive static teardown
    return *registry;
  }

  // A handle is a token that never repeats, not the communicator's address: a handle destroyed already stays
  // unknown after a new communicator took the old one's memory.
  HcclComm Add(std::shared_ptr<Comm> comm) {
    std::lock_guard lock(mutex_);
    by_name_[{comm->name, comm->device}] = comm;
    return static_cast<HcclComm>(live_.Add(std::move(comm)));
  }
  std::shared_ptr<Comm> Lookup(HcclComm handle) { return live_.Find(handle); }
  std::shared_ptr<Comm> Find(const std::string& name, int32_t device) {
    std::lock_guard lock(mutex_);
    auto it = by_name_.find({name, device});
    return it == by_name_.end() ? nullptr : it->second;
  }
  bool Remove(HcclComm handle) {
    std::shared_ptr<Comm> comm;  // released after the lock: its destructor may wait for the operations still on it
    {
      std::lock_guard lock(mutex_);
      comm = live_.Remove(handle);
      if (!comm) return false;
      by_name_.erase({comm->name, comm->device});
    }
    comm->destroyed = true;
    comm.reset();
    return true;
  }
  /// Reserves (group, device) for a rank that is about to join, so two ranks of a group joining at the
  /// same time cannot both land on one device. False when taken.
  bool Claim(const std::string& name, int32_t device) {
    std::lock_guard lock(mutex_);
    return by_name_.count({name, device}) == 0 && claimed_.insert({name, device}).second;
  }
  void Release(const std::string& name, int32_t device) {
    std::lock_guard lock(mutex_);
    claimed_.erase({name, device});
  }
  /// Releases the claims of `name` on `devices` when it goes: the group is registered by then, or its making failed.
  struct ClaimsHeld {
    Registry& reg;
    const std::string& name;
    const std::set<int32_t>& devices;  // made before the claims: nothing may throw between them and this guard
    ~ClaimsHeld() {
      for (const int32_t device : devices) reg.Release(name, device);
    }
  };
  /// A name `prefix`N no live or joining group holds on any of `devices`, claimed on each of them (Release each).
  /// A configured group may have taken any name, a generated one's too.
  std::string ClaimNewName(const char* prefix, const std::set<int32_t>& devices) {
    std::lock_guard lock(mutex_);
    for (;;) {
      std::string name = prefix + std::to_string(++groups_);
      const auto taken = [&](int32_t device) {
        return by_name_.count({name, device}) != 0 || claimed_.count({name, device}) != 0;
      };
      if (std::none_of(devices.begin(), devices.end(), taken)) {
        try {
          for (const int32_t device : devices) claimed_.insert({name, device});
        } catch (...) {
          for (const int32_t device : devices) claimed_.erase({name, device});
          throw;
        }
        return name;
      }
    }
  }

 private:
  std::mutex mutex_;  // by_name_ and claimed_ (live_ has its own)
  runtime::HandleRegistry<Comm> live_{runtime::kCommHandleTag};
  std::map<std::pair<std::string, int32_t>, std::shared_ptr<Comm>> by_name_;
  std::set<std::pair<std::string, int32_t>> claimed_;
  std::atomic<uint64_t> groups_{0};
};

HcclResult Failed(HcclResult code, const std::string& message) {
  Fail(code, message);
  return code;
}

std::shared_ptr<Comm> MakeComm(const std::string& name, std::unique_ptr<transport::Window> window, int32_t device,
                               std::chrono::milliseconds timeout) {
  auto comm = std::make_shared<Comm>();
  comm->name = name;
  comm->device = device;
  comm->comm = std::make_unique<ops::Communicator>(std::move(window), timeout, name);
  return comm;
}

// What a communicator's configuration (HcclCommConfig) sets; unset: the environment decides.
struct CommSettings {
  std::optional<uint64_t> window_bytes;  // hcclBufferSize
  std::string name;                      // hcclCommName
  std::optional<int64_t> exec_seconds;   // hcclExecTimeOut, as env::HcclExecDeadline reads it
};

// Reads `config` (null: nothing set). Throws Error naming the field and its rule.
CommSettings SettingsOf(const HcclCommConfig* config, const char* api) {
  CommSettings settings;
  if (config == nullptr) return settings;
  const auto refuse = [&](const std::string& field, const std::string& value, const std::string& rule) {
    throw Error(ErrorCode::kInvalidParam,
                std::string(api) + ": config->" + field + " = " + value + " violates rule: " + rule);
  };
  uint32_t magic = 0;  // after the size_t of HcclCommConfigInit's header
  std::memcpy(&magic, config->reserved + sizeof(size_t), sizeof magic);
  if (magic != HCCL_COMM_CONFIG_MAGIC_WORD) {
    refuse("reserved", "(not filled)", "fill the configuration with HcclCommConfigInit first");
  }
  if (config->hcclBufferSize != HCCL_COMM_BUFFSIZE_CONFIG_NOT_SET) {
    if (config->hcclBufferSize < 1 || config->hcclBufferSize > env::kMaxWindowMb) {
      refuse("hcclBufferSize", std::to_string(config->hcclBufferSize),
             "in [1, " + std::to_string(env::kMaxWindowMb) + "] MB, or HCCL_COMM_BUFFSIZE_CONFIG_NOT_SET");
    }
    settings.window_bytes = uint64_t{config->hcclBufferSize} << 20;
  }
  const size_t name_length = strnlen(config->hcclCommName, COMM_NAME_MAX_LENGTH);
  if (name_length == COMM_NAME_MAX_LENGTH) {
    refuse("hcclCommName", "(" + std::to_string(COMM_NAME_MAX_LENGTH) + " characters without a terminating NUL)",
           "at most " + std::to_string(COMM_NAME_MAX_LENGTH - 1) + " characters");
  }
  settings.name.assign(config->hcclCommName, name_length);
  // CANN's range: [0, 2^31 - 1] seconds, 0 meaning "never"; here 0 is moe_ep's own deadline (env::HcclExecDeadline).
  if (config->hcclExecTimeOut != HCCL_COMM_EXECTIMEOUT_CONFIG_NOT_SET) {
    if (config->hcclExecTimeOut < 0) {
      refuse("hcclExecTimeOut", std::to_string(config->hcclExecTimeOut),
             "in [0, " + std::to_string(env::kMaxHcclExecSeconds) +
                 "] seconds (0: moe_ep's own deadline, MOE_EP_TIMEOUT_MS), or HCCL_COMM_EXECTIMEOUT_CONFIG_NOT_SET");
    }
    settings.exec_seconds = config->hcclExecTimeOut;
  }
  return settings;
}

// What a root info carries after kRootMagic: "<32-hex token>|<host name>[@<MPI world rank of its maker>]".
struct RootInfoText {
  std::string token;
  std::string host;
  int root_world = -1;  // >= 0: the group meets over MPI
};

std::string HostName() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

std::optional<RootInfoText> ParseRootInfo(const std::string& text) {
  const std::string magic = kRootMagic;
  if (text.rfind(magic, 0) != 0 || text.size() < magic.size() + 33 || text[magic.size() + 32] != '|') {
    return std::nullopt;
  }
  RootInfoText info;
  info.token = text.substr(magic.size(), 32);
  if (info.token.find_first_not_of("0123456789abcdef") != std::string::npos) return std::nullopt;
  std::string rest = text.substr(magic.size() + 33);
  if (const size_t at = rest.rfind('@'); at != std::string::npos) {
    const std::string world = rest.substr(at + 1);
    if (world.empty() || world.size() > 9 || world.find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
    info.root_world = std::stoi(world);
    rest.resize(at);
  }
  info.host = rest;
  return info;
}

// How a rank of a group joins: the window of `window_bytes` it makes, by `deadline`; `refused`, the first setting this
// rank refused, which a join over MPI tells the others before it fails them all.
using JoinWindow = std::function<std::unique_ptr<transport::Window>(
    uint64_t window_bytes, transport::Clock::time_point deadline, const std::optional<env::Refusal>& refused)>;

// One rank of a group made by `api` joins it on `device` (by `join`) and gets its handle in *comm: named
// `settings.name`, or `default_name` when that is empty.
HcclResult JoinGroup(const char* api, const std::string& default_name, const CommSettings& settings, int32_t device,
                     const JoinWindow& join, HcclComm* comm) {
  Registry& reg = Registry::Get();
  const std::string name = settings.name.empty() ? default_name : settings.name;
  const std::set<int32_t> devices{device};
  if (!reg.Claim(name, device)) {
    return Failed(HCCL_E_PARA,
                  std::string(api) + ": device " + std::to_string(device) + " already holds a rank of " +
                      (settings.name.empty() ? "this group" : "a group named '" + name + "' (config->hcclCommName)") +
                      "; one rank per device, and a name per group");
  }
  const Registry::ClaimsHeld release{reg, name, devices};
  // Every setting the communicator reads, read before the join: under MPI a rank that refuses one still joins, and
  // the root then fails every member at once naming it, where the others would wait for it until a deadline.
  std::optional<env::Refusal> refused;
  const auto timeout =
      env::ReadOrRefuse("HCCL_CONNECT_TIMEOUT", env::HcclConnectTimeout, std::chrono::seconds{120}, refused);
  const uint64_t window_bytes = settings.window_bytes
                                    ? *settings.window_bytes
                                    : env::ReadOrRefuse("HCCL_BUFFSIZE", CommWindowBytes, uint64_t{0}, refused);
  // A configuration's hcclExecTimeOut of 0 reads MOE_EP_TIMEOUT_MS too.
  const std::chrono::milliseconds exec_timeout = env::ReadOrRefuse(
      settings.exec_seconds ? "MOE_EP_TIMEOUT_MS" : "HCCL_EXEC_TIMEOUT/MOE_EP_TIMEOUT_MS",
      [&] {
        return settings.exec_seconds ? env::HcclExecDeadline(*settings.exec_seconds) : env::HcclOperationTimeout();
      },
      std::chrono::milliseconds{0}, refused);
  ops::CheckCommunicatorVariables(DataPath::kAuto, 0, refused);  // as MakeComm's communicator reads them
  const auto deadline = transport::Clock::now() + timeout;
  try {
    *comm = reg.Add(MakeComm(name, join(window_bytes, deadline, refused), device, exec_timeout));
  } catch (const InterruptedError& e) {
    return Failed(HCCL_E_TIMEOUT, std::string(api) + ": " + e.what());  // not the connect timeout's
  } catch (const TimeoutError& e) {
    return Failed(HCCL_E_TIMEOUT, std::string(api) + ": " + e.what() +
                                      " (HCCL_CONNECT_TIMEOUT = " + std::to_string(timeout.count()) + " s)");
  }
  return HCCL_SUCCESS;
}

// Every rank of a root-info group joins over shared memory when the group is on one host (the root
// info's token names the segments, so ranks in other processes find them and nobody else does), or over
// MPI (the hosts transport) when the root info's maker was an MPI process.
HcclResult JoinRootGroup(const char* api, const RootInfoText& info, uint32_t n_ranks, uint32_t rank,
                         const CommSettings& settings, int32_t device, HcclComm* comm) {
  if (info.root_world < 0 && info.host != HostName()) {
    return Failed(HCCL_E_PARA, std::string(api) + ": the root info was made on host '" + info.host +
                                   "' and this is host '" + HostName() +
                                   "'; ranks on several hosts meet over MPI: start every rank with mpirun");
  }
#ifndef MOE_EP_HAVE_MPI
  if (info.root_world >= 0) {
    return Failed(HCCL_E_NOT_SUPPORT, std::string(api) +
                                          ": the root info was made by an MPI process, and this moe_ep was built "
                                          "without MPI (install libopenmpi-dev and rebuild)");
  }
#else
  // MPI ends the process on a message to a rank it does not have.
  if (info.root_world >= 0 && info.root_world >= transport::mpi::WorldSize()) {
    return Failed(HCCL_E_PARA, std::string(api) + ": rootInfo was made by MPI world rank " +
                                   std::to_string(info.root_world) + ", and this job's MPI_COMM_WORLD has " +
                                   std::to_string(transport::mpi::WorldSize()) +
                                   " ranks: a world rank this job does not have (a root info of another job?)");
  }
#endif
  const auto join = [&](uint64_t window_bytes, transport::Clock::time_point deadline,
                        const std::optional<env::Refusal>& refused) -> std::unique_ptr<transport::Window> {
#ifdef MOE_EP_HAVE_MPI
    if (info.root_world >= 0) {
      return transport::mpi::JoinRootInfoGroup(info.token, info.root_world, static_cast<int>(rank),
                                               static_cast<int>(n_ranks), window_bytes, ops::kWindowFlagCount, deadline,
                                               refused);
    }
#endif
    if (refused) throw refused->error;
    return transport::JoinShmGroup(info.token, "hccl", static_cast<int>(rank), static_cast<int>(n_ranks), window_bytes,
                                   ops::kWindowFlagCount, deadline);
  };
  return JoinGroup(api, "hccl_root_" + info.token.substr(0, 24), settings, device, join, comm);
}

// What names the groups of a rank table: what the table says (each rank's server and device, the same on every host
// whatever the file's path or layout; on one server, with this user, whose segments they are).
std::string RankTableKey(const RankTable& table) {
  std::string key;
  for (const RankTable::Rank& r : table.ranks) key += r.server + '\0' + std::to_string(r.device) + '\0';
  if (table.servers == 1) key += "uid " + std::to_string(getuid());
  return key;
}

// Which group of a rank table (by its key) a rank joins: the n-th that rank joins from it, so that the same table
// makes one group after another and each rank's n-th join meets the others' n-th. A join that fails gives its number
// back (the lowest given back is taken first): the rank's retry then meets the peers that join under it later,
// where a number spent on the failure would leave the rank one group ahead of them for good. (Peers that were
// already waiting when it failed had its old segment, whose name the failure removed with theirs: their joins fail
// at their deadline too, and meet it again when they retry.)
class RankTableGroupNumber {
 public:
  RankTableGroupNumber(std::string key, uint32_t rank) : slot_{std::move(key), rank} {
    std::lock_guard lock(Mutex());
    Numbers& numbers = Made()[slot_];
    if (numbers.returned.empty()) {
      number_ = numbers.next++;
    } else {
      number_ = *numbers.returned.begin();
      numbers.returned.erase(numbers.returned.begin());
    }
  }
  ~RankTableGroupNumber() {
    if (joined_) return;
    std::lock_guard lock(Mutex());
    Made()[slot_].returned.insert(number_);
  }
  RankTableGroupNumber(const RankTableGroupNumber&) = delete;
  RankTableGroupNumber& operator=(const RankTableGroupNumber&) = delete;

  // The join succeeded: the number stays spent.
  void Joined() { joined_ = true; }

  // A 32-hex-digit token naming the group: a hash of the key and the number (two FNV-1a variants: 128 bits).
  std::string Token() const {
    const std::string named = slot_.first + "#" + std::to_string(number_);
    char token[33];
    std::snprintf(token, sizeof token, "%016llx%016llx", static_cast<unsigned long long>(hash::Fnv1a(named)),
                  static_cast<unsigned long long>(hash::Fnv1a(named, hash::kFnvPrime, 14029467366897019727ull)));
    return token;
  }

 private:
  struct Numbers {
    int next = 0;            // never taken yet
    std::set<int> returned;  // given back by failed joins
  };
  static std::mutex& Mutex() {
    static auto* const mutex = new std::mutex;  // never destroyed, as the map it guards
    return *mutex;
  }
  static std::map<std::pair<std::string, uint32_t>, Numbers>& Made() {
    static auto* const made = new std::map<std::pair<std::string, uint32_t>, Numbers>;
    return *made;
  }

  const std::pair<std::string, uint32_t> slot_;  // (table key, rank)
  int number_ = 0;
  bool joined_ = false;
};

// A rank of a rank table's group: over shared memory when the table has one server, over MPI (world rank = rank id)
// when it has several.
HcclResult JoinRankTableGroup(const char* api, const char* path, uint32_t rank, const CommSettings& settings,
                              HcclComm* comm) {
  const RankTable table = ReadRankTable(path, api);
  const auto size = static_cast<uint32_t>(table.ranks.size());
  if (rank >= size) {
    return Failed(HCCL_E_PARA, std::string(api) + ": rank = " + std::to_string(rank) + " must be in [0, " +
                                   std::to_string(size) + "), the ranks of rank table '" + path + "'");
  }
  const int32_t device = CurrentDevice();
  if (device != table.ranks[rank].device) {
    return Failed(HCCL_E_PARA, std::string(api) + ": rank " + std::to_string(rank) + " is on device_id " +
                                   std::to_string(table.ranks[rank].device) + " in rank table '" + path +
                                   "', and the calling thread's device is " +
                                   (device < 0 ? std::string("none") : std::to_string(device)) +
                                   "; call aclrtSetDevice(" + std::to_string(table.ranks[rank].device) + ") first");
  }
  RankTableGroupNumber number(RankTableKey(table), rank);
  const std::string token = number.Token();
  const auto joined = [&](HcclResult result) {
    if (result == HCCL_SUCCESS) number.Joined();
    return result;
  };
  if (table.servers > 1) {
#ifdef MOE_EP_HAVE_MPI
    const bool under_mpi = transport::mpi::Active();
    if (!under_mpi || transport::mpi::WorldRank() != static_cast<int>(rank) ||
        transport::mpi::WorldSize() < static_cast<int>(size)) {
      return Failed(HCCL_E_NOT_SUPPORT,
                    std::string(api) + ": rank table '" + path + "' has " + std::to_string(table.servers) +
                        " servers; ranks on several servers meet over MPI: start them with mpirun, rank r of the "
                        "table as MPI rank r (this process is " +
                        (under_mpi ? "MPI rank " + std::to_string(transport::mpi::WorldRank()) + " of " +
                                         std::to_string(transport::mpi::WorldSize())
                                   : std::string("not an MPI process")) +
                        ")");
    }
    const auto join = [&](uint64_t window_bytes, transport::Clock::time_point deadline,
                          const std::optional<env::Refusal>& refused) {
      std::vector<int> members(size);
      for (uint32_t r = 0; r < size; ++r) members[r] = static_cast<int>(r);
      return transport::JoinHostsGroupOfWorldRanks(members, "hccl_table_" + token, window_bytes, ops::kWindowFlagCount,
                                                   deadline, refused);
    };
    return joined(JoinGroup(api, "hccl_table_" + token.substr(0, 24), settings, device, join, comm));
#else
    return Failed(HCCL_E_NOT_SUPPORT, std::string(api) + ": rank table '" + path + "' has " +
                                          std::to_string(table.servers) +
                                          " servers, and this moe_ep was built without MPI, over which ranks on "
                                          "several servers meet (install libopenmpi-dev and rebuild)");
#endif
  }
  const auto join = [&](uint64_t window_bytes, transport::Clock::time_point deadline,
                        const std::optional<env::Refusal>& refused) {
    if (refused) throw refused->error;
    return transport::JoinShmGroup(token, "hccl", static_cast<int>(rank), static_cast<int>(size), window_bytes,
                                   ops::kWindowFlagCount, deadline);
  };
  return joined(JoinGroup(api, "hccl_table_" + token.substr(0, 24), settings, device, join, comm));
}

// HcclCommInitRootInfo(Config)'s checks, then the join.
HcclResult InitRootInfo(const char* api, uint32_t n_ranks, const HcclRootInfo* root_info, uint32_t rank,
                        const HcclCommConfig* config, HcclComm* comm) {
  const std::string name = api;
  if (!root_info) return Failed(HCCL_E_PTR, name + ": rootInfo must not be null");
  if (!comm) return Failed(HCCL_E_PTR, name + ": comm must not be null");
  if (n_ranks == 0 || n_ranks > kMaxRanks) {
    return Failed(HCCL_E_PARA, name + ": nRanks = " + std::to_string(n_ranks) + " must be in [1, " +
                                   std::to_string(kMaxRanks) + "]");
  }
  if (rank >= n_ranks) {
    return Failed(HCCL_E_PARA, name + ": rank = " + std::to_string(rank) +
                                   " must be in [0, nRanks = " + std::to_string(n_ranks) + ")");
  }
  const std::string id(root_info->internal, strnlen(root_info->internal, sizeof(root_info->internal)));
  const auto info = ParseRootInfo(id);
  if (!info) return Failed(HCCL_E_PARA, name + ": rootInfo was not filled by HcclGetRootInfo");
  const CommSettings settings = SettingsOf(config, api);
  const int32_t device = CurrentDevice();
  if (device < 0) return Failed(HCCL_E_PARA, name + ": the calling thread has no device; call aclrtSetDevice first");
  return JoinRootGroup(api, *info, n_ranks, rank, settings, device, comm);
}

}  // namespace

std::shared_ptr<Comm> FindComm(const std::string& name, int32_t device) { return Registry::Get().Find(name, device); }

uint64_t CommWindowBytes() { return env::HcclWindowBytes(); }

}  // namespace moe_ep::cann

using moe_ep::cann::ApiFamily;
using moe_ep::cann::Comm;
using moe_ep::cann::Failed;
using moe_ep::cann::Guarded;
using moe_ep::cann::Registry;

extern "C" {

HcclResult HcclCommInitAll(uint32_t ndev, int32_t* devices, HcclComm* comms) {
  return Guarded("HcclCommInitAll", ApiFamily::kHccl, [&]() -> HcclResult {
    if (!devices) return Failed(HCCL_E_PTR, "HcclCommInitAll: devices must not be null");
    if (!comms) return Failed(HCCL_E_PTR, "HcclCommInitAll: comms must not be null");
    if (ndev == 0) return Failed(HCCL_E_PARA, "HcclCommInitAll: ndev = 0; a group needs at least one device");
    const int32_t count = moe_ep::cann::DeviceCount();
    std::set<int32_t> seen;
    for (uint32_t i = 0; i < ndev; ++i) {
      if (devices[i] < 0 || devices[i] >= count) {
        return Failed(HCCL_E_PARA, "HcclCommInitAll: devices[" + std::to_string(i) +
                                       "] = " + std::to_string(devices[i]) + " is not a device in [0, " +
                                       std::to_string(count) + ")");
      }
      if (!seen.insert(devices[i]).second) {
        return Failed(HCCL_E_PARA,
                      "HcclCommInitAll: device " + std::to_string(devices[i]) + " appears twice; one rank per device");
      }
    }
    Registry& reg = Registry::Get();
    const std::string name = reg.ClaimNewName("moe_ep_hccl_group_", seen);
    const Registry::ClaimsHeld release{reg, name, seen};
    const auto timeout = moe_ep::env::HcclOperationTimeout();
    auto windows =
        moe_ep::transport::CreateThreadWindows(static_cast<int>(ndev), moe_ep::cann::CommWindowBytes(),
                                               moe_ep::ops::kWindowFlagCount, "HCCL communicator '" + name + "'");
    // Every rank is made before any handle is given out, and the handles given out go again if one cannot be: a
    // failure part way leaves no communicator behind.
    std::vector<std::shared_ptr<Comm>> made;
    for (uint32_t i = 0; i < ndev; ++i) {
      made.push_back(moe_ep::cann::MakeComm(name, std::move(windows[i]), devices[i], timeout));
    }
    uint32_t added = 0;
    try {
      for (; added < ndev; ++added) comms[added] = reg.Add(std::move(made[added]));
    } catch (...) {
      for (uint32_t i = 0; i < added; ++i) reg.Remove(comms[i]);
      throw;
    }
    return HCCL_SUCCESS;
  });
}

HcclResult HcclGetRootInfo(HcclRootInfo* root_info) {
  return Guarded("HcclGetRootInfo", ApiFamily::kHccl, [&]() -> HcclResult {
    if (!root_info) return Failed(HCCL_E_PTR, "HcclGetRootInfo: rootInfo must not be null");
    // Under MPI the maker's world rank travels along: the group then meets over MPI (docs/hosts.md).
    std::string id =
        std::string(moe_ep::cann::kRootMagic) + moe_ep::entropy::HexToken() + "|" + moe_ep::cann::HostName();
#ifdef MOE_EP_HAVE_MPI
    if (moe_ep::transport::mpi::Active()) (id += '@') += std::to_string(moe_ep::transport::mpi::WorldRank());
#endif
    if (id.size() >= sizeof(root_info->internal)) id.resize(sizeof(root_info->internal) - 1);
    std::memset(root_info->internal, 0, sizeof(root_info->internal));
    std::memcpy(root_info->internal, id.data(), id.size());
    return HCCL_SUCCESS;
  });
}

HcclResult HcclCommInitRootInfo(uint32_t n_ranks, const HcclRootInfo* root_info, uint32_t rank, HcclComm* comm) {
  return Guarded("HcclCommInitRootInfo", ApiFamily::kHccl, [&] {
    return moe_ep::cann::InitRootInfo("HcclCommInitRootInfo", n_ranks, root_info, rank, nullptr, comm);
  });
}

HcclResult HcclCommInitRootInfoConfig(uint32_t n_ranks, const HcclRootInfo* root_info, uint32_t rank,
                                      const HcclCommConfig* config, HcclComm* comm) {
  return Guarded("HcclCommInitRootInfoConfig", ApiFamily::kHccl, [&]() -> HcclResult {
    if (!config) return Failed(HCCL_E_PTR, "HcclCommInitRootInfoConfig: config must not be null");
    return moe_ep::cann::InitRootInfo("HcclCommInitRootInfoConfig", n_ranks, root_info, rank, config, comm);
  });
}

HcclResult HcclCommInitClusterInfo(const char* cluster_info, uint32_t rank, HcclComm* comm) {
  return Guarded("HcclCommInitClusterInfo", ApiFamily::kHccl, [&]() -> HcclResult {
    if (!cluster_info) return Failed(HCCL_E_PTR, "HcclCommInitClusterInfo: clusterInfo must not be null");
    if (!comm) return Failed(HCCL_E_PTR, "HcclCommInitClusterInfo: comm must not be null");
    return moe_ep::cann::JoinRankTableGroup("HcclCommInitClusterInfo", cluster_info, rank, {}, comm);
  });
}

HcclResult HcclCommInitClusterInfoConfig(const char* cluster_info, uint32_t rank, HcclCommConfig* config,
                                         HcclComm* comm) {
  return Guarded("HcclCommInitClusterInfoConfig", ApiFamily::kHccl, [&]() -> HcclResult {
    const char* api = "HcclCommInitClusterInfoConfig";
    if (!cluster_info) return Failed(HCCL_E_PTR, "HcclCommInitClusterInfoConfig: clusterInfo must not be null");
    if (!config) return Failed(HCCL_E_PTR, "HcclCommInitClusterInfoConfig: config must not be null");
    if (!comm) return Failed(HCCL_E_PTR, "HcclCommInitClusterInfoConfig: comm must not be null");
    return moe_ep::cann::JoinRankTableGroup(api, cluster_info, rank, moe_ep::cann::SettingsOf(config, api), comm);
  });
}

HcclResult HcclGetCommName(HcclComm comm, char* comm_name) {
  return Guarded("HcclGetCommName", ApiFamily::kHccl, [&]() -> HcclResult {
    if (!comm) return Failed(HCCL_E_PTR, "HcclGetCommName: comm must not be null");
    if (!comm_name) return Failed(HCCL_E_PTR, "HcclGetCommName: commName must not be null");
    auto c = Registry::Get().Lookup(comm);
    if (!c) return Failed(HCCL_E_PARA, "HcclGetCommName: comm is not a live communicator");
    std::memset(comm_name, 0, COMM_NAME_MAX_LENGTH);
    std::memcpy(comm_name, c->name.data(), std::min<size_t>(c->name.size(), COMM_NAME_MAX_LENGTH - 1));
    return HCCL_SUCCESS;
  });
}

HcclResult HcclGetRankId(HcclComm comm, uint32_t* rank) {
  return Guarded("HcclGetRankId", ApiFamily::kHccl, [&]() -> HcclResult {
    if (!comm) return Failed(HCCL_E_PTR, "HcclGetRankId: comm must not be null");
    if (!rank) return Failed(HCCL_E_PTR, "HcclGetRankId: rank must not be null");
    auto c = Registry::Get().Lookup(comm);
    if (!c) return Failed(HCCL_E_PARA, "HcclGetRankId: comm is not a live communicator");
    *rank = static_cast<uint32_t>(c->comm->rank());
    return HCCL_SUCCESS;
  });
}

HcclResult HcclGetRankSize(HcclComm comm, uint32_t* rank_size) {
  return Guarded("HcclGetRankSize", ApiFamily::kHccl, [&]() -> HcclResult {
    if (!comm) return Failed(HCCL_E_PTR, "HcclGetRankSize: comm must not be null");
    if (!rank_size) return Failed(HCCL_E_PTR, "HcclGetRankSize: rankSize must not be null");
    auto c = Registry::Get().Lookup(comm);
    if (!c) return Failed(HCCL_E_PARA, "HcclGetRankSize: comm is not a live communicator");
    *rank_size = static_cast<uint32_t>(c->comm->size());
    return HCCL_SUCCESS;
  });
}

HcclResult HcclCommDestroy(HcclComm comm) {
  return Guarded("HcclCommDestroy", ApiFamily::kHccl, [&]() -> HcclResult {
    if (!comm) return Failed(HCCL_E_PTR, "HcclCommDestroy: comm must not be null");
    if (!Registry::Get().Remove(comm)) {
      return Failed(HCCL_E_PARA, "HcclCommDestroy: comm is not a live communicator (destroyed already?)");
    }
    return HCCL_SUCCESS;
  });
}

// Never nullptr, even when the guard catches something: callers print the result without a check.
const char* HcclGetErrorString(HcclResult code) {
  const char* const unknown = "unknown error";
  return moe_ep::cann::GuardedValue("HcclGetErrorString", ApiFamily::kHccl, unknown, [&] {
    static const char* const kNames[] = {"success",
                                         "parameter error",
                                         "empty pointer",
                                         "memory error",
                                         "internal error",
                                         "not supported",
                                         "not found",
                                         "unavailable",
                                         "system call error",
                                         "timeout",
                                         "open file failure",
                                         "tcp connect failure",
                                         "roce connect failure",
                                         "tcp transfer failure",
                                         "roce transfer failure",
                                         "runtime error",
                                         "driver error",
                                         "profiling error",
                                         "cce error",
                                         "network error",
                                         "try again",
                                         "remote error",
                                         "suspending"};
    const int index = static_cast<int>(code);
    return index >= 0 && index < static_cast<int>(std::size(kNames)) ? kNames[index] : unknown;
  });
}

}  // extern "C"
