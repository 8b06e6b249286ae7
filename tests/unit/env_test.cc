// The environment reader (src/base/env.h) and the variables it serves: every MOE_EP_* / HCCL_* value is
// range-checked, a bad one is an error naming the variable, and MOE_EP_ISA selects the kernels.
//   EnvInteger.*   defaults, ranges, malformed and huge values
//   EnvVariables.* each named variable's default, unit and bounds (MOE_EP_DATA_PATH: its three names)
//   EnvIsa.*       MOE_EP_ISA picks the kernels (in a fresh process), and a bad name is a clear error
#include "base/env.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "kernels/kernels.h"
#include "moe_ep/error.h"
#include "support/scoped_env.h"

namespace moe_ep {
namespace {

using testing::ScopedEnv;

// The message of the Error `body` throws, or "" when it throws none.
template <typename Body>
std::string ErrorOf(Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidParam) << e.what();
    return e.what();
  }
  return "";
}

// Checks that `message` refuses variable `name` = `text`, naming both and the rule it broke.
void ExpectRefused(const std::string& message, const std::string& name, const std::string& text,
                   const std::string& rule) {
  EXPECT_NE(message.find(name + " = '" + text + "'"), std::string::npos) << text << ": " << message;
  EXPECT_NE(message.find(rule), std::string::npos) << message;
}

constexpr char kVar[] = "MOE_EP_ENV_TEST_VALUE";

TEST(EnvInteger, UnsetOrEmptyGivesTheFallback) {
  ScopedEnv unset(kVar, nullptr);
  EXPECT_EQ(env::Integer(kVar, 17, 1, 100), 17);
  ScopedEnv empty(kVar, "");
  EXPECT_EQ(env::Integer(kVar, 18, 1, 100), 18);
}

TEST(EnvInteger, InRangeValuesAreRead) {
  for (const auto& [text, value] : {std::pair{"1", 1}, {"100", 100}, {"42", 42}}) {
    ScopedEnv set(kVar, text);
    EXPECT_EQ(env::Integer(kVar, 0, 1, 100), value) << text;
  }
}

TEST(EnvInteger, BadValuesNameTheVariableTheValueAndTheRange) {
  for (const char* text : {"0", "101", "-5", "abc", "12abc", "1.5", " 7", "99999999999999999999999"}) {
    ScopedEnv set(kVar, text);
    ExpectRefused(ErrorOf([] { env::Integer(kVar, 0, 1, 100); }), kVar, text, "[1, 100]");
  }
}

TEST(EnvVariables, DefaultsAndUnits) {
  ScopedEnv a("MOE_EP_TIMEOUT_MS", nullptr), b("MOE_EP_WINDOW_MB", nullptr), c("HCCL_BUFFSIZE", nullptr),
      d("HCCL_EXEC_TIMEOUT", nullptr), e("HCCL_CONNECT_TIMEOUT", nullptr), f("MOE_EP_DEVICE_COUNT", nullptr);
  EXPECT_EQ(env::OperationTimeout(), std::chrono::milliseconds(300000));
  EXPECT_EQ(env::WindowBytes(), uint64_t{2048} << 20);
  EXPECT_EQ(env::HcclWindowBytes(), uint64_t{200} << 20);
  EXPECT_EQ(env::HcclOperationTimeout(), std::chrono::milliseconds(300000));
  EXPECT_EQ(env::HcclConnectTimeout(), std::chrono::seconds(120));
  EXPECT_EQ(env::DeviceCount(), 16);
  ScopedEnv g("HCCL_EXEC_TIMEOUT", "7"), h("HCCL_BUFFSIZE", "3");
  EXPECT_EQ(env::HcclOperationTimeout(), std::chrono::milliseconds(7000));
  EXPECT_EQ(env::HcclWindowBytes(), uint64_t{3} << 20);
}

// HCCL_EXEC_TIMEOUT takes CANN's range of seconds: 0 (CANN: never time out) is moe_ep's own deadline, which never
// hangs on a dead rank; a deadline past moe_ep's longest (2^31 ms) is that; below it, the seconds asked.
TEST(EnvVariables, HcclExecTimeoutZeroIsTheOperationsDeadlineAndHugeOnesAreTheLongest) {
  ScopedEnv timeout("MOE_EP_TIMEOUT_MS", "4321");
  EXPECT_EQ(env::HcclExecDeadline(0), std::chrono::milliseconds(4321));
  EXPECT_EQ(env::HcclExecDeadline(1), std::chrono::milliseconds(1000));
  EXPECT_EQ(env::HcclExecDeadline(2147483), std::chrono::milliseconds(2147483000));
  EXPECT_EQ(env::HcclExecDeadline(2147484), std::chrono::milliseconds(env::kMaxTimeoutMs));
  EXPECT_EQ(env::HcclExecDeadline(env::kMaxHcclExecSeconds), std::chrono::milliseconds(env::kMaxTimeoutMs));
  for (const char* text : {"0", "2147483647"}) {
    ScopedEnv exec("HCCL_EXEC_TIMEOUT", text);
    EXPECT_EQ(env::HcclOperationTimeout(),
              text[0] == '0' ? std::chrono::milliseconds(4321) : std::chrono::milliseconds(env::kMaxTimeoutMs))
        << text;
  }
}

TEST(EnvVariables, DataPathIsPushPullOrAuto) {
  const std::pair<const char*, DataPath> values[] = {{nullptr, DataPath::kAuto},
                                                     {"", DataPath::kAuto},
                                                     {"auto", DataPath::kAuto},
                                                     {"push", DataPath::kPush},
                                                     {"pull", DataPath::kPull}};
  for (const auto& [text, path] : values) {
    ScopedEnv set("MOE_EP_DATA_PATH", text);
    EXPECT_EQ(env::DataPathChoice(), path) << (text ? text : "(unset)");
  }
  for (const char* text : {"PULL", "pulled", " push", "1"}) {
    ScopedEnv set("MOE_EP_DATA_PATH", text);
    ExpectRefused(ErrorOf([] { env::DataPathChoice(); }), "MOE_EP_DATA_PATH", text, "'push', 'pull' or 'auto'");
  }
}

// A switch (HCCL_INTRA_PCIE_ENABLE, HCCL_INTRA_ROCE_ENABLE) is "0" or "1", or unset; anything else refused.
TEST(EnvVariables, SwitchIsZeroOrOne) {
  const std::pair<const char*, std::optional<bool>> values[] = {
      {nullptr, std::nullopt}, {"", std::nullopt}, {"0", false}, {"1", true}};
  for (const auto& [text, on] : values) {
    ScopedEnv set("HCCL_INTRA_PCIE_ENABLE", text);
    EXPECT_EQ(env::Switch("HCCL_INTRA_PCIE_ENABLE"), on) << (text ? text : "(unset)");
  }
  for (const char* text : {"01", "true", " 1", "2", "-0"}) {
    ScopedEnv set("HCCL_INTRA_PCIE_ENABLE", text);
    ExpectRefused(ErrorOf([] { env::Switch("HCCL_INTRA_PCIE_ENABLE"); }), "HCCL_INTRA_PCIE_ENABLE", text,
                  "\"0\" or \"1\"");
  }
}

// Reading peers' private memory by copy: auto unless set to 0 or 1; anything else refused.
TEST(EnvVariables, CrossMemoryIsZeroOneOrAuto) {
  using env::CrossMemory;
  const std::pair<const char*, CrossMemory> values[] = {{nullptr, CrossMemory::kAuto},
                                                        {"", CrossMemory::kAuto},
                                                        {"auto", CrossMemory::kAuto},
                                                        {"0", CrossMemory::kOff},
                                                        {"1", CrossMemory::kOn}};
  for (const auto& [text, choice] : values) {
    ScopedEnv set("MOE_EP_CROSS_MEMORY", text);
    EXPECT_EQ(env::CrossMemoryChoice(), choice) << (text ? text : "(unset)");
  }
  for (const char* text : {"2", "-1", "yes", "on", "AUTO", " 1"}) {
    ScopedEnv set("MOE_EP_CROSS_MEMORY", text);
    ExpectRefused(ErrorOf([] { env::CrossMemoryChoice(); }), "MOE_EP_CROSS_MEMORY", text, "'0', '1' or 'auto'");
  }
}

// The least work a worker thread is woken for: the default when unset, 0 (split every loop) allowed,
// outside [0, 2^40] refused naming the variable, the value and the range.
TEST(EnvVariables, ThreadMinBytes) {
  const std::pair<const char*, uint64_t> values[] = {{nullptr, 4096}, {"0", 0}, {"131072", 131072}};
  for (const auto& [text, bytes] : values) {
    ScopedEnv set("MOE_EP_THREAD_MIN_BYTES", text);
    EXPECT_EQ(env::ThreadMinBytes(4096), bytes) << (text ? text : "(unset)");
  }
  for (const char* text : {"-1", "1099511627777", "128K"}) {
    ScopedEnv set("MOE_EP_THREAD_MIN_BYTES", text);
    ExpectRefused(ErrorOf([] { env::ThreadMinBytes(4096); }), "MOE_EP_THREAD_MIN_BYTES", text, "[0, 1099511627776]");
  }
}

// The hosts transport's message size: a default below Open MPI's eager limit, values rounded down to 8-byte
// records, outside [1024, 64 MiB] refused naming the variable, the value and the range.
TEST(EnvVariables, HostsMessageBytes) {
  const std::pair<const char*, uint64_t> values[] = {{nullptr, env::kDefaultHostsMessageBytes},
                                                     {"1024", 1024},
                                                     {"1048576", 1048576},
                                                     {"1031", 1024},
                                                     {"67108864", 67108864}};
  for (const auto& [text, bytes] : values) {
    ScopedEnv set("MOE_EP_HOSTS_MESSAGE_BYTES", text);
    EXPECT_EQ(env::HostsMessageBytes(), bytes) << (text ? text : "(unset)");
  }
  for (const char* text : {"1023", "67108865", "1MiB", "-4096"}) {
    ScopedEnv set("MOE_EP_HOSTS_MESSAGE_BYTES", text);
    ExpectRefused(ErrorOf([] { env::HostsMessageBytes(); }), "MOE_EP_HOSTS_MESSAGE_BYTES", text, "[1024, 67108864]");
  }
}

// Values so large that the byte or clock arithmetic behind them would wrap are refused, not clamped.
TEST(EnvVariables, HugeValuesAreRefusedNamingTheVariable) {
  for (const char* name : {"MOE_EP_TIMEOUT_MS", "MOE_EP_WINDOW_MB", "HCCL_BUFFSIZE", "HCCL_EXEC_TIMEOUT",
                           "HCCL_CONNECT_TIMEOUT", "MOE_EP_DEVICE_COUNT"}) {
    ScopedEnv set(name, "99999999999999");
    const std::string message = ErrorOf([] {
      env::OperationTimeout();
      env::WindowBytes();
      env::HcclWindowBytes();
      env::HcclOperationTimeout();
      env::HcclConnectTimeout();
      env::DeviceCount();
    });
    EXPECT_NE(message.find(name), std::string::npos) << name << ": " << message;
  }
}

TEST(EnvVariables, LaunchVariablesAreCheckedTogether) {
  ScopedEnv rank("MOE_EP_RANK", "3"), size("MOE_EP_WORLD_SIZE", "3"), token("MOE_EP_RENDEZVOUS", "abc");
  try {
    env::Launch();
    ADD_FAILURE() << "rank 3 of 3 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MOE_EP_RANK = 3"), std::string::npos) << e.what();
  }
  ScopedEnv no_token("MOE_EP_RENDEZVOUS", nullptr), rank_ok("MOE_EP_RANK", "1");
  try {
    env::Launch();
    ADD_FAILURE() << "missing MOE_EP_RENDEZVOUS accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MOE_EP_RENDEZVOUS is not set"), std::string::npos) << e.what();
  }
  // A rendezvous names the job's shared-memory segments: one that cannot (too long for NAME_MAX, or a path) is
  // refused here, naming the variable, not later as an internal error of shm_open.
  const std::string longest(env::kMaxRendezvousChars, 'r');
  for (const std::string& bad : {longest + "r", std::string("a/b")}) {
    ScopedEnv bad_token("MOE_EP_RENDEZVOUS", bad.c_str());
    try {
      env::Launch();
      ADD_FAILURE() << "MOE_EP_RENDEZVOUS '" << bad << "' accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
      EXPECT_NE(std::string(e.what()).find("MOE_EP_RENDEZVOUS (" + std::to_string(bad.size()) + " characters"),
                std::string::npos)
          << e.what();
    }
  }
  ScopedEnv longest_token("MOE_EP_RENDEZVOUS", longest.c_str());
  EXPECT_EQ(env::Launch().rendezvous, longest);
}

// The kernels read MOE_EP_ISA once per process, so each case runs in a fresh one (a re-executed death
// test): it prints the ISA the kernels chose, or the error, and exits.
void PrintChosenIsa() {
  try {
    std::fprintf(stderr, "isa=%s\n", kernels::IsaName(kernels::ActiveIsa()));
    std::exit(0);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    std::exit(3);
  }
}

TEST(EnvIsa, SelectsTheKernels) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ScopedEnv scalar("MOE_EP_ISA", "scalar");
  EXPECT_EXIT(PrintChosenIsa(), ::testing::ExitedWithCode(0), "isa=scalar");
  if (kernels::DetectedIsa() >= kernels::Isa::kAvx2) {
    ScopedEnv avx2("MOE_EP_ISA", "avx2");
    EXPECT_EXIT(PrintChosenIsa(), ::testing::ExitedWithCode(0), "isa=avx2");
  }
  ScopedEnv unset("MOE_EP_ISA", nullptr);
  const std::string best = std::string("isa=") + kernels::IsaName(kernels::DetectedIsa());
  EXPECT_EXIT(PrintChosenIsa(), ::testing::ExitedWithCode(0), best);
}

TEST(EnvIsa, AnUnknownNameIsAnErrorNamingTheVariable) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ScopedEnv bogus("MOE_EP_ISA", "avx9");
  EXPECT_EXIT(PrintChosenIsa(), ::testing::ExitedWithCode(3), "MOE_EP_ISA = 'avx9'.*scalar, avx2, avx512");
}

}  // namespace
}  // namespace moe_ep
