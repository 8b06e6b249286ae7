// Communicators as Ascend programs also make them, through the C API only: HcclCommInitRootInfoConfig with a
// configuration (its window size, name and operation timeout take effect; an operation timeout of 0 is moe_ep's own
// deadline and a huge one is clamped; an unfilled or out-of-range one is refused naming the field; HcclCommInitAll's
// generated name never takes a configured group's),
// HcclCommInitClusterInfo(Config) from a rank table file (ranks on the devices the table names, a dispatch + combine
// round equal to the reference; a rank retrying a failed join meets its peers; a bad table, device or null pointer
// refused naming what is wrong), and the host types programs fill buffers with (op::fp16_t, op::bfloat16), bit for
// bit against the reference's conversions.
#include <gtest/gtest.h>
#include <unistd.h>

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "aclnn/opdev/bfloat16.h"
#include "aclnn/opdev/fp16_t.h"
#include "cann/capi_support.h"
#include "moe_ep/group.h"
#include "reference/numerics.h"
#include "support/test_seed.h"

namespace moe_ep::capi_testing {
namespace {

// Runs body(r) on `ranks` threads at once, thread r with `device_of(r)` current.
void OnRankThreads(int ranks, const std::function<int32_t(int)>& device_of, const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      ASSERT_EQ(aclrtSetDevice(device_of(r)), ACL_SUCCESS) << RecentErrMsg();
      body(r);
      aclrtResetDevice(device_of(r));
    });
  }
  for (auto& t : threads) t.join();
}

// A small EP-only case on `ranks` ranks, with its inputs and reference outputs.
struct SmallCase {
  CapiCase c;
  ScenarioInputs inputs;
  CapiExpected expected;
};
SmallCase MakeSmallCase(int ranks, uint64_t seed) {
  SmallCase s;
  auto& cfg = s.c.spec.config;
  cfg.ep_world_size = ranks;
  cfg.moe_expert_num = 2 * ranks;
  cfg.top_k = 3;
  cfg.hidden = 1024;
  s.c.spec.bs = 5;
  std::mt19937_64 rng(seed);
  s.inputs = moe_ep::verify::MakeInputs(s.c.spec, rng);
  s.expected = ExpectedOutputs(s.c, s.inputs);
  return s;
}

HcclRootInfo NewRootInfo() {
  HcclRootInfo root{};
  EXPECT_EQ(HcclGetRootInfo(&root), HCCL_SUCCESS) << RecentErrMsg();
  return root;
}

// ---------------------------------------------------------------------------------------------------
// Configurations
// ---------------------------------------------------------------------------------------------------

TEST(CapiCommConfig, ConfigInitSetsNothingAndMarksTheStructure) {
  HcclCommConfig config;
  std::memset(&config, 0xAB, sizeof config);
  HcclCommConfigInit(&config);
  EXPECT_EQ(config.hcclBufferSize, HCCL_COMM_BUFFSIZE_CONFIG_NOT_SET);
  EXPECT_EQ(config.hcclExecTimeOut, HCCL_COMM_EXECTIMEOUT_CONFIG_NOT_SET);
  EXPECT_EQ(config.hcclCommName[0], '\0');
  uint32_t magic = 0;
  std::memcpy(&magic, config.reserved + sizeof(size_t), sizeof magic);
  EXPECT_EQ(magic, HCCL_COMM_CONFIG_MAGIC_WORD);
  HcclCommConfigInit(nullptr);  // no effect, no crash
}

// Four threads join one group whose configuration names it, sets a 64 MB window and a 30 s timeout: every rank
// sees the name and a round equals the reference. A second group of the same name on those devices is refused;
// a group with a 1 MB window fails the round's phase one naming HCCL_BUFFSIZE (the window it asked for).
TEST(CapiCommConfig, NameWindowAndTimeoutTakeEffect) {
  EnsureAclReady();
  constexpr int kRanks = 4;
  const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0xC0F;
  SCOPED_TRACE("seed " + std::to_string(seed));
  SmallCase small = MakeSmallCase(kRanks, seed);
  const std::string name = "moe_ep_config_test_" + std::to_string(getpid());
  for (const uint32_t window_mb : {64u, 1u}) {
    SCOPED_TRACE("hcclBufferSize " + std::to_string(window_mb));
    const HcclRootInfo root = NewRootInfo();
    std::vector<HcclResult> init(kRanks, HCCL_E_RESERVED), again(kRanks, HCCL_E_RESERVED);
    std::vector<std::string> names(kRanks), again_messages(kRanks);
    std::vector<CapiRankOutcome> outcomes(kRanks);
    std::barrier joined(kRanks);
    OnRankThreads(
        kRanks, [](int r) { return r; },
        [&](int r) {
          HcclCommConfig config;
          HcclCommConfigInit(&config);
          config.hcclBufferSize = window_mb;
          config.hcclExecTimeOut = 30;
          std::snprintf(config.hcclCommName, sizeof config.hcclCommName, "%s", name.c_str());
          HcclComm comm = nullptr;
          init[r] = HcclCommInitRootInfoConfig(kRanks, &root, r, &config, &comm);
          if (init[r] != HCCL_SUCCESS) ADD_FAILURE() << "rank " << r << ": " << RecentErrMsg();
          joined.arrive_and_wait();
          if (init[r] != HCCL_SUCCESS) return;
          names[r] = CommName(comm);
          HcclComm second = nullptr;  // the same name again, on this device: refused at once
          again[r] = HcclCommInitRootInfoConfig(kRanks, &root, r, &config, &second);
          again_messages[r] = RecentErrMsg();
          outcomes[r] = RunCapiRank(small.c, small.inputs, r, comm, small.expected);
          joined.arrive_and_wait();
          EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
        });
    for (int r = 0; r < kRanks; ++r) {
      ASSERT_EQ(init[r], HCCL_SUCCESS);
      EXPECT_EQ(names[r], name);
      EXPECT_EQ(again[r], HCCL_E_PARA);
      EXPECT_NE(again_messages[r].find("hcclCommName"), std::string::npos) << again_messages[r];
      if (window_mb == 64) {
        EXPECT_EQ(outcomes[r].Summary(), "") << "rank " << r;
      } else {
        EXPECT_EQ(outcomes[r].status, 561002) << "rank " << r << ": " << outcomes[r].Summary();
        EXPECT_NE(outcomes[r].message.find("HCCL_BUFFSIZE"), std::string::npos) << outcomes[r].message;
        EXPECT_TRUE(ContainsValue(outcomes[r].message, std::to_string(1 << 20))) << outcomes[r].message;
      }
    }
  }
}

TEST(CapiCommConfig, UnfilledOrOutOfRangeConfigurationsAreRefusedNamingTheField) {
  EnsureAclReady();
  const HcclRootInfo root = NewRootInfo();
  struct Bad {
    const char* field;
    std::function<void(HcclCommConfig&)> spoil;
  };
  const std::vector<Bad> bad = {
      {"HcclCommConfigInit", [](HcclCommConfig& c) { std::memset(&c, 0, sizeof c); }},
      {"hcclBufferSize", [](HcclCommConfig& c) { c.hcclBufferSize = 0; }},
      {"hcclBufferSize", [](HcclCommConfig& c) { c.hcclBufferSize = (1u << 20) + 1; }},
      // -1 is HCCL_COMM_EXECTIMEOUT_CONFIG_NOT_SET; below it, and 0, hcclExecTimeOut was refused before.
      {"hcclExecTimeOut", [](HcclCommConfig& c) { c.hcclExecTimeOut = -2; }},
      {"hcclExecTimeOut", [](HcclCommConfig& c) { c.hcclExecTimeOut = INT32_MIN; }},
      {"hcclCommName", [](HcclCommConfig& c) { std::memset(c.hcclCommName, 'x', sizeof c.hcclCommName); }},
  };
  OnRankThreads(
      1, [](int) { return 3; },
      [&](int) {
        for (const Bad& b : bad) {
          HcclCommConfig config;
          HcclCommConfigInit(&config);
          b.spoil(config);
          HcclComm comm = nullptr;
          EXPECT_EQ(HcclCommInitRootInfoConfig(1, &root, 0, &config, &comm), HCCL_E_PARA) << b.field;
          const std::string message = RecentErrMsg();
          EXPECT_NE(message.find(b.field), std::string::npos) << message;
          EXPECT_EQ(comm, nullptr);
        }
        HcclComm comm = nullptr;
        EXPECT_EQ(HcclCommInitRootInfoConfig(1, &root, 0, nullptr, &comm), HCCL_E_PTR);
        EXPECT_NE(RecentErrMsg().find("config must not be null"), std::string::npos);
        // Each null pointer is named alone.
        EXPECT_EQ(HcclCommInitRootInfo(1, nullptr, 0, &comm), HCCL_E_PTR);
        EXPECT_NE(RecentErrMsg().find("HcclCommInitRootInfo: rootInfo must not be null"), std::string::npos);
        EXPECT_EQ(HcclCommInitRootInfo(1, &root, 0, nullptr), HCCL_E_PTR);
        EXPECT_NE(RecentErrMsg().find("HcclCommInitRootInfo: comm must not be null"), std::string::npos);
        int32_t device = 3;
        EXPECT_EQ(HcclCommInitAll(1, nullptr, &comm), HCCL_E_PTR);
        EXPECT_NE(RecentErrMsg().find("HcclCommInitAll: devices must not be null"), std::string::npos);
        EXPECT_EQ(HcclCommInitAll(1, &device, nullptr), HCCL_E_PTR);
        EXPECT_NE(RecentErrMsg().find("HcclCommInitAll: comms must not be null"), std::string::npos);
        HcclCommConfig config;
        HcclCommConfigInit(&config);
        ASSERT_EQ(HcclCommInitRootInfoConfig(1, &root, 0, &config, &comm), HCCL_SUCCESS) << RecentErrMsg();
        EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
      });
}

// HcclCommInitAll names its group moe_ep_hccl_group_N; a configured group may already hold the next such name on a
// device it takes, and then keeps it: the generated group gets another name, and destroying it leaves the configured
// one registered (a second group of that name is still refused).
TEST(CapiCommConfig, HcclCommInitAllNeverTakesAConfiguredGroupsName) {
  EnsureAclReady();
  OnRankThreads(
      1, [](int) { return 0; },
      [&](int) {
        int32_t device = 0;
        HcclComm generated = nullptr;
        ASSERT_EQ(HcclCommInitAll(1, &device, &generated), HCCL_SUCCESS) << RecentErrMsg();
        const std::string first = CommName(generated);
        ASSERT_EQ(HcclCommDestroy(generated), HCCL_SUCCESS);
        const std::string prefix = "moe_ep_hccl_group_";
        ASSERT_EQ(first.rfind(prefix, 0), 0u) << first;
        const std::string next = prefix + std::to_string(std::stoull(first.substr(prefix.size())) + 1);
        HcclCommConfig config;
        HcclCommConfigInit(&config);
        std::snprintf(config.hcclCommName, sizeof config.hcclCommName, "%s", next.c_str());
        const HcclRootInfo root = NewRootInfo();
        HcclComm configured = nullptr;
        ASSERT_EQ(HcclCommInitRootInfoConfig(1, &root, 0, &config, &configured), HCCL_SUCCESS) << RecentErrMsg();
        ASSERT_EQ(HcclCommInitAll(1, &device, &generated), HCCL_SUCCESS) << RecentErrMsg();
        EXPECT_NE(CommName(generated), next);
        EXPECT_EQ(CommName(configured), next);
        EXPECT_EQ(HcclCommDestroy(generated), HCCL_SUCCESS);
        HcclComm second = nullptr;
        EXPECT_EQ(HcclCommInitRootInfoConfig(1, &root, 0, &config, &second), HCCL_E_PARA);
        EXPECT_NE(RecentErrMsg().find("'" + next + "'"), std::string::npos) << RecentErrMsg();
        EXPECT_EQ(HcclCommDestroy(configured), HCCL_SUCCESS);
      });
}

// hcclExecTimeOut takes CANN's range, [0, 2^31 - 1] seconds: 0 (CANN's "never") is moe_ep's own deadline,
// MOE_EP_TIMEOUT_MS (so a malformed MOE_EP_TIMEOUT_MS is then refused, naming it); a value past moe_ep's longest
// deadline (24 days) is that deadline. (capi_stream_test.cc shows 0 failing an absent rank at MOE_EP_TIMEOUT_MS.)
TEST(CapiCommConfig, ExecTimeoutZeroIsTheDefaultDeadlineAndHugeValuesAreClamped) {
  EnsureAclReady();
  const HcclRootInfo root = NewRootInfo();
  OnRankThreads(
      1, [](int) { return 3; },
      [&](int) {
        for (const int32_t seconds : {0, 1, 2147483, 2147484, INT32_MAX}) {
          SCOPED_TRACE("hcclExecTimeOut " + std::to_string(seconds));
          HcclCommConfig config;
          HcclCommConfigInit(&config);
          config.hcclExecTimeOut = seconds;
          HcclComm comm = nullptr;
          ASSERT_EQ(HcclCommInitRootInfoConfig(1, &root, 0, &config, &comm), HCCL_SUCCESS) << RecentErrMsg();
          EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
        }
        // HCCL_EXEC_TIMEOUT likewise, as HcclCommInitRootInfo reads it.
        for (const char* seconds : {"0", "2147484", "2147483647"}) {
          SCOPED_TRACE(std::string("HCCL_EXEC_TIMEOUT=") + seconds);
          ScopedEnv exec("HCCL_EXEC_TIMEOUT", seconds);
          HcclComm comm = nullptr;
          ASSERT_EQ(HcclCommInitRootInfo(1, &root, 0, &comm), HCCL_SUCCESS) << RecentErrMsg();
          EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
        }
        for (const char* seconds : {"-1", "2147483648", "x"}) {
          SCOPED_TRACE(std::string("HCCL_EXEC_TIMEOUT=") + seconds);
          ScopedEnv exec("HCCL_EXEC_TIMEOUT", seconds);
          HcclComm comm = nullptr;
          EXPECT_EQ(HcclCommInitRootInfo(1, &root, 0, &comm), HCCL_E_PARA);
          const std::string message = RecentErrMsg();
          EXPECT_NE(message.find("HCCL_EXEC_TIMEOUT = '" + std::string(seconds) + "'"), std::string::npos) << message;
          EXPECT_NE(message.find("[0, 2147483647]"), std::string::npos) << message;
          EXPECT_EQ(comm, nullptr);
        }
        // 0 reads MOE_EP_TIMEOUT_MS, so a malformed one is refused naming it, as without a configuration.
        ScopedEnv exec("HCCL_EXEC_TIMEOUT", nullptr), deadline("MOE_EP_TIMEOUT_MS", "soon");
        HcclCommConfig config;
        HcclCommConfigInit(&config);
        config.hcclExecTimeOut = 0;
        HcclComm comm = nullptr;
        EXPECT_EQ(HcclCommInitRootInfoConfig(1, &root, 0, &config, &comm), HCCL_E_PARA);
        const std::string message = RecentErrMsg();
        EXPECT_NE(message.find("MOE_EP_TIMEOUT_MS = 'soon'"), std::string::npos) << message;
        EXPECT_EQ(comm, nullptr);
      });
}

// ---------------------------------------------------------------------------------------------------
// Rank tables
// ---------------------------------------------------------------------------------------------------

// A rank table file of one server whose rank r is on device 7 - r, in the layout CANN documents (ids as strings),
// removed when it goes.
class RankTableFile {
 public:
  explicit RankTableFile(const std::string& text) {
    char path[] = "/tmp/moe_ep_rank_table_XXXXXX";
    const int fd = mkstemp(path);
    path_ = path;
    if (fd >= 0) close(fd);
    std::ofstream(path_) << text;
  }
  ~RankTableFile() { std::remove(path_.c_str()); }
  const char* path() const { return path_.c_str(); }

  static std::string OneServer(int ranks) {
    std::string devices;
    for (int r = 0; r < ranks; ++r) {
      devices += std::string(r ? ",\n" : "") + "        {\"device_id\": \"" + std::to_string(7 - r) +
                 "\", \"device_ip\": \"192.168.1." + std::to_string(r) + "\", \"rank_id\": \"" + std::to_string(r) +
                 "\"}";
    }
    return "{\n  \"status\": \"completed\",\n  \"version\": \"1.0\",\n  \"server_count\": \"1\",\n"
           "  \"server_list\": [\n    {\"server_id\": \"10.0.0.1\", \"device\": [\n" +
           devices + "\n    ]}\n  ]\n}\n";
  }

 private:
  std::string path_;
};

// Four threads, rank r on device 7 - r as the table says, join through HcclCommInitClusterInfo (and once more,
// named, through HcclCommInitClusterInfoConfig: the same table makes one group after another); both rounds equal
// the reference.
TEST(CapiRankTable, ThreadsJoinTheGroupTheTableDescribesAndMatchTheReference) {
  EnsureAclReady();
  constexpr int kRanks = 4;
  const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0x7AB;
  SCOPED_TRACE("seed " + std::to_string(seed));
  SmallCase small = MakeSmallCase(kRanks, seed);
  const RankTableFile table(RankTableFile::OneServer(kRanks));
  for (const bool configured : {false, true}) {
    SCOPED_TRACE(configured ? "HcclCommInitClusterInfoConfig" : "HcclCommInitClusterInfo");
    std::vector<HcclResult> init(kRanks, HCCL_E_RESERVED);
    std::vector<std::string> names(kRanks);
    std::vector<uint32_t> ids(kRanks, 99), sizes(kRanks, 99);
    std::vector<CapiRankOutcome> outcomes(kRanks);
    std::barrier joined(kRanks);
    OnRankThreads(
        kRanks, [](int r) { return 7 - r; },
        [&](int r) {
          HcclComm comm = nullptr;
          if (configured) {
            HcclCommConfig config;
            HcclCommConfigInit(&config);
            std::snprintf(config.hcclCommName, sizeof config.hcclCommName, "table_group_%d", getpid());
            init[r] = HcclCommInitClusterInfoConfig(table.path(), r, &config, &comm);
          } else {
            init[r] = HcclCommInitClusterInfo(table.path(), r, &comm);
          }
          if (init[r] != HCCL_SUCCESS) ADD_FAILURE() << "rank " << r << ": " << RecentErrMsg();
          joined.arrive_and_wait();
          if (init[r] != HCCL_SUCCESS) return;
          names[r] = CommName(comm);
          EXPECT_EQ(HcclGetRankId(comm, &ids[r]), HCCL_SUCCESS);
          EXPECT_EQ(HcclGetRankSize(comm, &sizes[r]), HCCL_SUCCESS);
          outcomes[r] = RunCapiRank(small.c, small.inputs, r, comm, small.expected);
          joined.arrive_and_wait();
          EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
        });
    for (int r = 0; r < kRanks; ++r) {
      ASSERT_EQ(init[r], HCCL_SUCCESS);
      EXPECT_EQ(names[r], names[0]);
      if (configured) {
        EXPECT_EQ(names[r], "table_group_" + std::to_string(getpid()));
      }
      EXPECT_EQ(ids[r], static_cast<uint32_t>(r));
      EXPECT_EQ(sizes[r], static_cast<uint32_t>(kRanks));
      EXPECT_EQ(outcomes[r].Summary(), "") << "rank " << r;
    }
  }
}

// A rank whose join from a rank table fails (a setting it refuses, at once; or its peers not coming before
// HCCL_CONNECT_TIMEOUT) and that then joins again meets its peers: the failed join spent none of the numbers that
// tell one group of a table from the next. (A spent number would leave the rank one group ahead of its peers, and
// every retry would wait for them in vain.)
TEST(CapiRankTable, ARankRetryingAFailedJoinMeetsItsPeers) {
  EnsureAclReady();
  constexpr int kRanks = 4;
  // A server of its own: the table's groups are not the other tests' groups of the same layout.
  std::string text = RankTableFile::OneServer(kRanks);
  text.replace(text.find("10.0.0.1"), 8, "10.0.0.9");
  const RankTableFile table(text);
  ScopedEnv connect("HCCL_CONNECT_TIMEOUT", "1");  // a regression then fails in seconds, not minutes
  OnRankThreads(
      1, [](int) { return 7; },
      [&](int) {
        HcclComm comm = nullptr;
        {
          ScopedEnv refused("HCCL_BUFFSIZE", "0");
          EXPECT_EQ(HcclCommInitClusterInfo(table.path(), 0, &comm), HCCL_E_PARA);
          const std::string message = RecentErrMsg();
          EXPECT_NE(message.find("HCCL_BUFFSIZE = '0'"), std::string::npos) << message;
        }
        EXPECT_EQ(HcclCommInitClusterInfo(table.path(), 0, &comm), HCCL_E_TIMEOUT) << "its peers never came";
        EXPECT_EQ(comm, nullptr);
      });
  std::vector<HcclResult> init(kRanks, HCCL_E_RESERVED);
  std::vector<uint32_t> sizes(kRanks, 99);
  std::vector<std::string> names(kRanks);
  OnRankThreads(
      kRanks, [](int r) { return 7 - r; },
      [&](int r) {
        HcclComm comm = nullptr;
        init[r] = HcclCommInitClusterInfo(table.path(), r, &comm);
        if (init[r] != HCCL_SUCCESS) {
          ADD_FAILURE() << "rank " << r << ": " << RecentErrMsg();
          return;
        }
        names[r] = CommName(comm);
        EXPECT_EQ(HcclGetRankSize(comm, &sizes[r]), HCCL_SUCCESS);
        EXPECT_EQ(HcclCommDestroy(comm), HCCL_SUCCESS);
      });
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(init[r], HCCL_SUCCESS) << "rank " << r;
    EXPECT_EQ(sizes[r], static_cast<uint32_t>(kRanks)) << "rank " << r;
    EXPECT_EQ(names[r], names[0]) << "rank " << r;
  }
}

TEST(CapiRankTable, BadTablesAndDevicesAreRefusedNamingWhatIsWrong) {
  EnsureAclReady();
  struct Bad {
    std::string table;  // "" : a file that does not exist
    uint32_t rank;
    HcclResult status;
    std::string named;
  };
  const std::string good = RankTableFile::OneServer(2);
  std::string duplicate = good, missing = good, two_servers = good, not_number = good, shared_device = good;
  duplicate.replace(duplicate.rfind("\"rank_id\": \"1\""), 14, "\"rank_id\": \"0\"");
  shared_device.replace(shared_device.rfind("\"device_id\": \"6\""), 16, "\"device_id\": \"7\"");
  missing.replace(missing.rfind("\"rank_id\": \"1\""), 14, "\"rank_id\": \"2\"");
  not_number.replace(not_number.rfind("\"device_id\": \"6\""), 16, "\"device_id\": \"x\"");
  two_servers.replace(
      two_servers.find("]}\n  ]"), 6,
      "]},\n    {\"server_id\": \"10.0.0.2\", \"device\": [{\"device_id\": \"0\", \"rank_id\": \"2\"}]}\n  ]");
  std::vector<Bad> bad = {
      {"", 0, HCCL_E_PARA, "cannot be read: No such file or directory"},
      {"{\"server_list\": [", 0, HCCL_E_PARA, "not valid JSON"},
      {"[]", 0, HCCL_E_PARA, "object"},
      {"{\"server_list\": []}", 0, HCCL_E_PARA, "server_list"},
      {duplicate, 0, HCCL_E_PARA, "rank_id 0 appears twice"},
      {shared_device, 0, HCCL_E_PARA, "rank_id 1 is on device_id 7 of server '10.0.0.1', as rank_id 0 is"},
      {missing, 0, HCCL_E_PARA, "rank_id 1 is missing"},
      {not_number, 0, HCCL_E_PARA, "device_id"},
      {good, 2, HCCL_E_PARA, "rank = 2"},
      {good, 1, HCCL_E_PARA, "aclrtSetDevice(6)"},  // this thread is on device 7, rank 1's device is 6
      {two_servers, 0, HCCL_E_NOT_SUPPORT, "mpirun"},
      {"{\"server_list\": [{\"server_id\": \"\\u12G4\"}]}", 0, HCCL_E_PARA, "hex digits"},
      {"{\"server_list\": [{\"server_id\": \"a\tb\"}]}", 0, HCCL_E_PARA, "control character"},
      {"{\"server_list\": [{\"server_id\": 01}]}", 0, HCCL_E_PARA, "leading zero"},
      {"{\"server_list\": [{\"server_id\": \"a\", \"server_id\": \"b\"}]}", 0, HCCL_E_PARA,
       "\"server_id\" given twice in one object at byte 36"},
  };
  std::string too_many = "{\"server_list\": [{\"server_id\": \"s\", \"device\": [";
  for (int r = 0; r <= kMaxGroupRanks; ++r) {
    too_many += (r ? ", " : "") + std::string("{\"device_id\": \"7\", \"rank_id\": \"") + std::to_string(r) + "\"}";
  }
  too_many += "]}]}";
  bad.push_back({too_many, 0, HCCL_E_PARA, "it lists 65537 ranks; a group has at most 65536"});
  for (const char* number : {"-", "1.", "1e", "1e+", "-.5", "1.2.3", "+1"}) {
    bad.push_back(
        {"{\"server_list\": [{\"server_id\": " + std::string(number) + "}]}", 0, HCCL_E_PARA, "not valid JSON"});
  }
  OnRankThreads(
      1, [](int) { return 7; },
      [&](int) {
        for (const Bad& b : bad) {
          SCOPED_TRACE(b.named);
          std::unique_ptr<RankTableFile> file;
          std::string path = "/nonexistent/moe_ep_rank_table.json";
          if (!b.table.empty()) {
            file = std::make_unique<RankTableFile>(b.table);
            path = file->path();
          }
          HcclComm comm = nullptr;
          EXPECT_EQ(HcclCommInitClusterInfo(path.c_str(), b.rank, &comm), b.status);
          const std::string message = RecentErrMsg();
          EXPECT_NE(message.find(b.named), std::string::npos) << message;
          EXPECT_EQ(comm, nullptr);
        }
        // No table: a directory, and an endless file (/dev/zero was read until memory ran out).
        for (const auto& [path, why] :
             {std::pair{"/tmp", "is a directory"},
              std::pair{"/dev/zero", "holds more than 64 MiB; a rank table is far smaller"}}) {
          HcclComm comm = nullptr;
          EXPECT_EQ(HcclCommInitClusterInfo(path, 0, &comm), HCCL_E_PARA) << path;
          const std::string message = RecentErrMsg();
          EXPECT_NE(message.find("rank table '" + std::string(path) + "': " + why), std::string::npos) << message;
        }
        HcclComm comm = nullptr;
        EXPECT_EQ(HcclCommInitClusterInfo(nullptr, 0, &comm), HCCL_E_PTR);
        EXPECT_NE(RecentErrMsg().find("HcclCommInitClusterInfo: clusterInfo must not be null"), std::string::npos);
        EXPECT_EQ(HcclCommInitClusterInfo("/nonexistent/moe_ep_rank_table.json", 0, nullptr), HCCL_E_PTR);
        EXPECT_NE(RecentErrMsg().find("HcclCommInitClusterInfo: comm must not be null"), std::string::npos);
        HcclCommConfig config;
        HcclCommConfigInit(&config);
        EXPECT_EQ(HcclCommInitClusterInfoConfig("/nonexistent/moe_ep_rank_table.json", 0, nullptr, &comm), HCCL_E_PTR);
        EXPECT_NE(RecentErrMsg().find("HcclCommInitClusterInfoConfig: config must not be null"), std::string::npos);
        // The Config form's messages name it once, not the plain form after it.
        EXPECT_EQ(HcclCommInitClusterInfoConfig("/nonexistent/moe_ep_rank_table.json", 0, &config, &comm), HCCL_E_PARA);
        const std::string once = RecentErrMsg();
        EXPECT_EQ(once.rfind("HcclCommInitClusterInfoConfig: rank table '/nonexistent", 0), 0u) << once;
        EXPECT_EQ(once.find("HcclCommInitClusterInfo:"), std::string::npos) << once;
        // Any cut of a good table (before its closing brace) is refused as not JSON: the reader never takes a
        // prefix for a table, and never fails otherwise.
        std::mt19937_64 rng(moe_ep::testing::BaseSeed() ^ 0x7AC);
        for (int i = 0; i < 100; ++i) {
          const size_t cut = std::uniform_int_distribution<size_t>(0, good.size() - 3)(rng);
          const RankTableFile file(good.substr(0, cut));
          EXPECT_EQ(HcclCommInitClusterInfo(file.path(), 1, &comm), HCCL_E_PARA) << "cut at " << cut;
          const std::string message = RecentErrMsg();
          EXPECT_NE(message.find("not valid JSON"), std::string::npos) << "cut at " << cut << ": " << message;
        }
      });
}

// ---------------------------------------------------------------------------------------------------
// Host types
// ---------------------------------------------------------------------------------------------------

// Every fp16 and bf16 bit pattern converts to the float the reference gives, and floats (drawn, and the edges:
// ties, overflow, subnormals, NaN) convert to the bits the reference gives.
TEST(OpdevTypes, HalfAndBfloat16ConvertAsTheReferenceDoes) {
  const uint64_t seed = moe_ep::testing::BaseSeed() ^ 0xF16;
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const auto b = static_cast<uint16_t>(bits);
    const float half = op::fp16_t::FromBits(b).toFloat(), expected_half = moe_ref::numerics::HalfToFloat(b);
    const float bf16 = op::bfloat16::ToFloat(b), expected_bf16 = moe_ref::numerics::Bf16ToFloat(b);
    if (std::isnan(expected_half)) {
      ASSERT_TRUE(std::isnan(half)) << std::hex << bits;
    } else {
      ASSERT_EQ(std::bit_cast<uint32_t>(half), std::bit_cast<uint32_t>(expected_half)) << std::hex << bits;
    }
    if (std::isnan(expected_bf16)) {
      ASSERT_TRUE(std::isnan(bf16)) << std::hex << bits;
    } else {
      ASSERT_EQ(std::bit_cast<uint32_t>(bf16), std::bit_cast<uint32_t>(expected_bf16)) << std::hex << bits;
    }
  }
  std::vector<float> values = {0.0f,      -0.0f,     1.0f,          65504.0f,       65519.99f,      65520.0f,
                               -70000.0f, 1e-8f,     2.98e-8f,      5.9604645e-8f,  6.1e-5f,        3.0e-38f,
                               INFINITY,  -INFINITY, 1.0009765625f, 1.00048828125f, 1.00146484375f, NAN};
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 200000; ++i) values.push_back(std::bit_cast<float>(static_cast<uint32_t>(rng())));
  for (const float v : values) {
    const uint16_t half = op::fp16_t(v).val, bf16 = op::bfloat16(v).value;
    if (std::isnan(v)) {
      EXPECT_TRUE(std::isnan(moe_ref::numerics::HalfToFloat(half)));
      EXPECT_TRUE(std::isnan(moe_ref::numerics::Bf16ToFloat(bf16)));
      continue;
    }
    ASSERT_EQ(half, moe_ref::numerics::FloatToHalf(v)) << v;
    ASSERT_EQ(bf16, moe_ref::numerics::FloatToBf16(v)) << v;
  }
  const op::fp16_t one = 1;  // as the vendor's samples fill buffers: std::vector<op::fp16_t> x(n, 1)
  EXPECT_EQ(one.val, 0x3C00);
  EXPECT_EQ(static_cast<float>(one + one), 2.0f);
}

}  // namespace
}  // namespace moe_ep::capi_testing
