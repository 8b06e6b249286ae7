// The moe-ep command line: tables of bad flag sets (exit 2, one line naming the flag) and good ones (parsed values),
// the --help text's bounds, and the built binary refusing `run --topk 65` / `run --experts 7` instead of crashing, and
// an MPI job too large for `run` naming its size; a bench's inputs follow every bit of its seed; a job that needs
// every rank ends when one fails.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "moe-ep/bench.h"
#include "moe-ep/launch.h"
#include "moe-ep/options.h"
#include "support/scoped_env.h"

extern char** environ;

namespace moe_ep::tools {
namespace {

// The default window (MOE_EP_WINDOW_MB unset), passed explicitly so that no row depends on the environment.
constexpr uint64_t kDefaultWindow = uint64_t{2048} << 20;

ParseResult Parse(std::initializer_list<const char*> words, uint64_t window = kDefaultWindow) {
  const std::vector<std::string> args(words.begin(), words.end());
  return ParseCommandLine(args, window);
}

std::string Joined(std::initializer_list<const char*> words) {
  std::string text;
  for (const char* word : words) text += std::string(text.empty() ? "" : " ") + "'" + word + "'";
  return text;
}

struct BadRow {
  std::initializer_list<const char*> args;
  const char* named;  // what the message must contain: the flag (and its value where it has one)
};

const BadRow kBadRows[] = {
    // The two that crashed in the input generator.
    {{"run", "--topk", "65"}, "--topk 65 violates rule: <= --experts (64)"},
    {{"run", "--experts", "7"}, "--experts 7 violates rule: a multiple of the MoE ranks"},
    // Not numbers, overflow, negative, zero, out of the documented bounds.
    {{"run", "--bs", "99999999999999999999"}, "--bs 99999999999999999999 violates rule: an integer in [1, 8192]"},
    {{"run", "--ranks", "4294967297"}, "--ranks 4294967297"},
    {{"run", "--hidden", "-5"}, "--hidden -5"},
    {{"run", "--warmup", "-1"}, "--warmup -1"},
    {{"run", "--shared-experts", "-1"}, "--shared-experts -1"},
    {{"run", "--ranks", "0"}, "--ranks 0"},
    {{"run", "--bs", "0"}, "--bs 0"},
    {{"run", "--topk", "0"}, "--topk 0"},
    {{"run", "--experts", "0"}, "--experts 0"},
    {{"run", "--repeats", "0"}, "--repeats 0"},
    {{"run", "--seed", "0"}, "--seed 0"},
    {{"run", "--seed", "18446744073709551616"}, "--seed 18446744073709551616"},
    {{"run", "--seed", "-1"}, "--seed -1"},
    {{"run", "--bs", "abc"}, "--bs abc"},
    {{"run", "--bs", "12x"}, "--bs 12x"},
    {{"run", "--bs", "0x10"}, "--bs 0x10"},
    {{"run", "--bs", "+8"}, "--bs +8"},
    {{"run", "--bs", " 8"}, "--bs ' 8'"},
    {{"run", "--bs", ""}, "--bs ''"},
    {{"run", "--hidden", "1e3"}, "--hidden 1e3"},
    {{"run", "--ranks", "257"}, "--ranks 257"},
    {{"run", "--bs", "8193"}, "--bs 8193"},
    {{"run", "--hidden", "65537"}, "--hidden 65537"},
    {{"run", "--experts", "4097"}, "--experts 4097"},
    {{"run", "--topk", "1025"}, "--topk 1025"},
    {{"run", "--repeats", "100001"}, "--repeats 100001"},
    {{"run", "--quant", "fp8"}, "--quant fp8 violates rule: must be int8"},
    {{"run", "--comm-quant", "INT8"}, "--comm-quant INT8"},
    // Unknown flags, missing values, stray words, repeats.
    {{"run", "--frobnicate"}, "unknown flag --frobnicate"},
    {{"run", "--bs=8"}, "unknown flag --bs=8 (write '--bs VALUE'"},
    {{"run", "-bs", "8"}, "unexpected argument -bs"},
    {{"run", "8"}, "unexpected argument 8"},
    {{"run", "--bs"}, "--bs needs a value"},
    {{"run", "--bs", "--hidden", "8"}, "--bs needs a value"},
    {{"run", "--quant"}, "--quant needs a value"},
    {{"run", "--seed"}, "--seed needs a value"},
    {{"run", "--bs", "8", "--bs", "16"}, "--bs 16 violates rule: each flag at most once (already given as 8)"},
    {{"run", "--fp16", "--fp16"}, "--fp16 violates rule: each flag at most once"},
    // Cross-flag rules.
    {{"run", "--shared-experts", "8"}, "--shared-experts 8 violates rule: < --ranks (8)"},
    {{"run", "--ranks", "1", "--shared-experts", "1"}, "--shared-experts 1 violates rule: < --ranks (1)"},
    {{"run", "--ranks", "4", "--shared-experts", "1"},
     "--experts 64 violates rule: a multiple of the MoE ranks, "
     "--ranks - --shared-experts = 3"},
    {{"run", "--ranks", "3"}, "--experts 64 violates rule: a multiple of the MoE ranks"},
    {{"run", "--ranks", "2", "--experts", "2", "--topk", "3"}, "--topk 3 violates rule: <= --experts (2)"},
    {{"run", "--ranks", "1", "--experts", "1024", "--topk", "1024", "--bs", "8192", "--hidden", "1"},
     "--bs 8192 violates rule: --bs x (--topk + shared experts) <= 4194304 (combine flags of a window); it is 8388608"},
    {{"run", "--bs", "1024"},
     "--bs 1024 with --hidden 7168, --topk 8, --experts 64, --ranks 8 violates rule: each "
     "rank's window needs"},
    {{"run", "--ranks", "256", "--experts", "256", "--topk", "1"},
     "--bs 128 with --hidden 7168, --topk 1, "
     "--experts 256, --ranks 256 violates rule: the "
     "job's memory"},
    // launch and the command itself.
    {{"launch", "prog"}, "-n N is required"},
    {{"launch", "-n", "0", "prog"}, "-n 0 violates rule: an integer in [1, 512]"},
    {{"launch", "-n", "513", "prog"}, "-n 513"},
    {{"launch", "--ranks", "99999999999999999999", "prog"}, "--ranks 99999999999999999999"},
    {{"launch", "-n", "two", "prog"}, "-n two"},
    {{"launch", "-n"}, "-n needs a value"},
    {{"launch", "-n", "4"}, "missing PROGRAM"},
    {{"launch", "-n", "4", "--"}, "missing PROGRAM"},
    {{"launch", "-n", "2", "-n", "3", "prog"}, "-n 3 violates rule: -n / --ranks at most once"},
    {{"launch", "--bogus", "-n", "2", "prog"}, "unknown flag --bogus"},
    // bench: run's ranges element by element, its own lists, and run's rules for every configuration.
    {{"bench", "--bs", "0"}, "moe-ep bench: --bs 0 violates rule: an integer in [1, 8192], or a list of them"},
    {{"bench", "--bs", "1,,8"}, "--bs 1,,8 violates rule"},
    {{"bench", "--bs", "1,8193"}, "--bs 1,8193 violates rule"},
    {{"bench", "--ranks", "2,0"}, "--ranks 2,0 violates rule"},
    {{"bench", "--transports", "threads,gpu"}, "--transports threads,gpu violates rule: a list of threads, processes"},
    {{"bench", "--quant", "fp8"}, "--quant fp8 violates rule: a list of off, int8"},
    {{"bench", "--hidden", "1,2"}, "--hidden 1,2 violates rule: an integer in [1, 65536]"},
    {{"bench", "--seed", "0"}, "--seed 0"},
    {{"bench", "--json", ""}, "--json '' violates rule: a file name"},
    {{"bench", "--json", "/tmp"}, "--json /tmp violates rule: a file name, not a directory"},
    {{"bench", "--json", "results/"}, "--json results/ violates rule: a file name, not a directory"},
    {{"bench", "--ranks", "4,3"}, "moe-ep bench: --experts 64 violates rule: a multiple of the MoE ranks"},
    {{"bench", "--topk", "65"}, "moe-ep bench: --topk 65 violates rule: <= --experts (64)"},
    {{"bench", "--bs"}, "--bs needs a value: an integer in [1, 8192], or a list of them"},
    {{"bench", "--memory"}, "--memory needs a value: heap or private"},
    {{"bench", "--bs", "8", "--bs", "16"}, "--bs 16 violates rule: each flag at most once"},
    {{"bench", "--fp16"}, "unknown flag --fp16"},
    {{"bench", "--transports", "threads,threads"}, "--transports threads,threads violates rule: each value of a list"},
    {{"bench", "--bs", "8,1,8"}, "--bs 8,1,8 violates rule: each value of a list at most once"},
    {{"bench", "--ranks", "8,08"}, "--ranks 8,08 violates rule: each value of a list at most once"},
    {{"bench", "8"}, "unexpected argument 8"},
    {{"run", "--processes", "--processes"}, "--processes violates rule: each flag at most once"},
    {{"bench-rank"}, "unknown command bench-rank"},
    {{}, "missing command"},
    {{"frob"}, "unknown command frob"},
};

TEST(CliFlags, EveryBadSetExitsTwoWithOneLineNamingTheFlag) {
  ASSERT_GE(std::size(kBadRows), 25u);
  for (const BadRow& row : kBadRows) {
    SCOPED_TRACE(Joined(row.args));
    const ParseResult result = Parse(row.args);
    EXPECT_FALSE(result.ok());
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_NE(result.error.find(row.named), std::string::npos) << result.error;
    EXPECT_EQ(result.error.find('\n'), std::string::npos) << result.error;
    EXPECT_EQ(result.error.rfind("moe-ep", 0), 0u) << result.error;
  }
}

TEST(CliFlags, WindowRuleFollowsTheGivenWindow) {
  const ParseResult small = Parse({"run"}, uint64_t{64} << 20);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.error.find("more than MOE_EP_WINDOW_MB = 64 MiB"), std::string::npos) << small.error;
  EXPECT_TRUE(Parse({"run"}, uint64_t{512} << 20).ok());
}

TEST(CliFlags, UnprintableValuesAreEscapedOntoOneLine) {
  const ParseResult result = Parse({"run", "--bs", "8\n\x01'x"});
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.error.find("--bs '8\\x0a\\x01\\'x'"), std::string::npos) << result.error;
}

struct GoodRow {
  std::initializer_list<const char*> args;
  JobOptions expected;
};

JobOptions With(void (*change)(JobOptions&)) {
  JobOptions o;
  change(o);
  return o;
}

const GoodRow kGoodRuns[] = {
    {{"run"}, JobOptions{}},
    {{"run", "--bs", "8", "--repeats", "2"}, With([](JobOptions& o) { o.bs = 8, o.repeats = 2; })},
    {{"run", "--bs", "0008"}, With([](JobOptions& o) { o.bs = 8; })},
    {{"run", "--bs", "512"}, With([](JobOptions& o) { o.bs = 512; })},
    {{"run", "--shared-experts", "1", "--experts", "63"},
     With([](JobOptions& o) { o.shared_expert_ranks = 1, o.experts = 63; })},
    {{"run", "--ranks", "4", "--experts", "12", "--shared-experts", "1", "--topk", "12"},
     With([](JobOptions& o) { o.ranks = 4, o.experts = 12, o.shared_expert_ranks = 1, o.top_k = 12; })},
    {{"run", "--fp16", "--quant", "int8", "--comm-quant", "int8", "--seed", "18446744073709551615"},
     With([](JobOptions& o) { o.fp16 = o.quant_int8 = o.comm_quant_int8 = true, o.seed = UINT64_MAX; })},
    {{"run", "--ranks", "1", "--experts", "1", "--topk", "1", "--bs", "1", "--hidden", "1", "--repeats", "1",
      "--warmup", "0"},
     With([](JobOptions& o) {
       o.ranks = 1, o.experts = 1, o.top_k = 1, o.bs = 1, o.hidden = 1, o.repeats = 1, o.warmup = 0;
     })},
    {{"run", "--ranks", "256", "--experts", "256", "--topk", "1", "--bs", "1", "--hidden", "8"},
     With([](JobOptions& o) { o.ranks = 256, o.experts = 256, o.top_k = 1, o.bs = 1, o.hidden = 8; })},
    {{"run", "--ranks", "2", "--experts", "4096", "--topk", "1024", "--bs", "16", "--hidden", "1", "--repeats",
      "100000", "--warmup", "100000"},
     With([](JobOptions& o) {
       o.ranks = 2, o.experts = 4096, o.top_k = 1024, o.bs = 16, o.hidden = 1, o.repeats = 100000, o.warmup = 100000;
     })},
};

TEST(CliFlags, GoodRunSetsParseToTheirValues) {
  for (const GoodRow& row : kGoodRuns) {
    SCOPED_TRACE(Joined(row.args));
    const ParseResult result = Parse(row.args);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.command_line->command, Command::kRun);
    const JobOptions& got = result.command_line->job;
    const JobOptions& want = row.expected;
    EXPECT_EQ(got.ranks, want.ranks);
    EXPECT_EQ(got.bs, want.bs);
    EXPECT_EQ(got.hidden, want.hidden);
    EXPECT_EQ(got.top_k, want.top_k);
    EXPECT_EQ(got.experts, want.experts);
    EXPECT_EQ(got.shared_expert_ranks, want.shared_expert_ranks);
    EXPECT_EQ(got.fp16, want.fp16);
    EXPECT_EQ(got.quant_int8, want.quant_int8);
    EXPECT_EQ(got.comm_quant_int8, want.comm_quant_int8);
    EXPECT_EQ(got.repeats, want.repeats);
    EXPECT_EQ(got.warmup, want.warmup);
    EXPECT_EQ(got.seed, want.seed);
    EXPECT_LE(EstimatedJobBytes(got), kMaxJobBytes);
  }
}

TEST(CliFlags, GoodLaunchSetsKeepTheProgramsArguments) {
  struct Row {
    std::initializer_list<const char*> args;
    int ranks;
    std::vector<std::string> command;
  };
  const Row rows[] = {
      {{"launch", "-n", "4", "--", "prog", "a", "-n", "9"}, 4, {"prog", "a", "-n", "9"}},
      {{"launch", "-n", "2", "prog", "--help"}, 2, {"prog", "--help"}},
      {{"launch", "--ranks", "512", "sh", "-c", "true"}, 512, {"sh", "-c", "true"}},
      {{"launch", "-n", "1", "--", "--odd-name"}, 1, {"--odd-name"}},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(Joined(row.args));
    const ParseResult result = Parse(row.args);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.command_line->command, Command::kLaunch);
    EXPECT_EQ(result.command_line->launch.ranks, row.ranks);
    EXPECT_EQ(result.command_line->launch.command, row.command);
  }
}

TEST(CliFlags, GoodBenchSetsParseToTheirLists) {
  const ParseResult result =
      Parse({"bench", "--bs", "1,8,4096", "--ranks", "2,4", "--transports", "alltoallv,threads", "--quant", "int8,off",
             "--hidden", "64", "--repeats", "3", "--warmup", "0", "--seed", "7", "--json", "out.json"});
  ASSERT_TRUE(result.ok()) << result.error;
  ASSERT_EQ(result.command_line->command, Command::kBench);
  const BenchOptions& b = result.command_line->bench;
  EXPECT_EQ(b.tokens, (std::vector<int64_t>{1, 8, 4096}));
  EXPECT_EQ(b.ranks, (std::vector<int>{2, 4}));
  EXPECT_EQ(b.systems, (std::vector<BenchSystem>{BenchSystem::kAlltoallv, BenchSystem::kThreads}));
  EXPECT_EQ(b.quant, (std::vector<bool>{true, false}));
  EXPECT_EQ(b.hidden, 64);
  EXPECT_EQ(b.top_k, 8);
  EXPECT_EQ(b.repeats, 3);
  EXPECT_EQ(b.warmup, 0);
  EXPECT_EQ(b.seed, 7u);
  EXPECT_EQ(b.json_path, "out.json");
  // Defaults, and run's --processes switch.
  const ParseResult defaults = Parse({"bench"});
  ASSERT_TRUE(defaults.ok()) << defaults.error;
  EXPECT_EQ(defaults.command_line->bench.tokens, BenchOptions{}.tokens);
  const ParseResult processes = Parse({"run", "--processes"});
  ASSERT_TRUE(processes.ok()) << processes.error;
  EXPECT_TRUE(processes.command_line->job.processes);
}

TEST(CliFlags, HelpWinsWherePlacedBeforeAnyProblem) {
  for (const auto& args : {std::initializer_list<const char*>{"help"},
                           {"--help"},
                           {"-h"},
                           {"run", "--help"},
                           {"run", "--bs", "8", "-h"},
                           {"bench", "--bs", "1", "--help"},
                           {"launch", "--help"},
                           {"help", "bench"},
                           {"--help", "launch"}}) {
    SCOPED_TRACE(Joined(args));
    const ParseResult result = Parse(args);
    ASSERT_TRUE(result.ok()) << result.error;
    EXPECT_EQ(result.command_line->command, Command::kHelp);
  }
}

TEST(CliFlags, HelpRefusesWhatIsNotACommand) {
  for (const auto& args :
       {std::initializer_list<const char*>{"help", "bogus"}, {"-h", "--bs", "8"}, {"help", "run", "--bs"}}) {
    SCOPED_TRACE(Joined(args));
    const ParseResult result = Parse(args);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_NE(result.error.find("takes no argument but a command"), std::string::npos) << result.error;
    EXPECT_NE(result.error.find(*(args.begin() + 1)), std::string::npos) << result.error;
  }
}

TEST(CliFlags, HelpStatesEveryBound) {
  const std::string& help = UsageText();
  for (const std::string bound :
       {"1..256", "1..8192", "1..65536", "1..1024", "1..4096", "0..255", "1..100000", "0..100000", "[1, 512]",
        "4194304", "32 GiB", "--topk <= --experts", "--experts a multiple of E - S", "MOE_EP_WINDOW_MB"}) {
    EXPECT_NE(help.find(bound), std::string::npos) << bound;
  }
}

// Runs the built moe-ep with `args` (under the open-files limit `files`, soft and hard, when given; with SIGCHLD
// ignored, as `trap '' CHLD` leaves it, when asked; under the CPU-time limit `cpu_seconds` when given); returns its
// wait status and what it wrote on stdout and stderr.
int RunTool(std::vector<std::string> args, std::string& output, std::optional<rlimit> files = std::nullopt,
            bool ignoring_sigchld = false, std::optional<rlimit> cpu_seconds = std::nullopt) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return -1;
  args.insert(args.begin(), MOE_EP_TOOL);
  std::vector<char*> argv;
  for (auto& word : args) argv.push_back(word.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    close(pipe_fds[0]);
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    if (files && setrlimit(RLIMIT_NOFILE, &*files) != 0) _exit(99);
    const rlimit no_core{0, 0};  // a rank SIGXCPU ends dumps no core
    if (cpu_seconds && (setrlimit(RLIMIT_CPU, &*cpu_seconds) != 0 || setrlimit(RLIMIT_CORE, &no_core) != 0)) _exit(99);
    if (ignoring_sigchld) signal(SIGCHLD, SIG_IGN);
    execv(MOE_EP_TOOL, argv.data());
    _exit(98);
  }
  close(pipe_fds[1]);
  char buffer[4096];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0;) output.append(buffer, static_cast<size_t>(n));
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(CliFlags, BinaryRefusesWhatUsedToCrash) {
  const struct {
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{"run", "--topk", "65"}, "moe-ep run: --topk 65 violates rule: <= --experts (64) (see 'moe-ep --help')\n"},
      {{"run", "--experts", "7"},
       "moe-ep run: --experts 7 violates rule: a multiple of the MoE ranks, --ranks - --shared-experts = 8 (see "
       "'moe-ep --help')\n"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args[1]);
    std::string output;
    const int status = RunTool(c.args, output);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status << ": " << output;  // not a signal
    EXPECT_EQ(WEXITSTATUS(status), 2) << output;
    EXPECT_EQ(output, c.message);  // nothing else: no job was described or started
  }
}

// Under mpirun, `run` takes --ranks from the job's size: a job too large for it is refused naming mpirun's -np, not
// only a --ranks the user never typed.
TEST(CliFlags, AnMpiJobTooLargeForRunNamesItsSize) {
  const moe_ep::testing::ScopedEnv rank("PMI_RANK", "0"), size("PMI_SIZE", "300");
  const moe_ep::testing::ScopedEnv no_job("MOE_EP_RENDEZVOUS", nullptr), no_ompi("OMPI_COMM_WORLD_RANK", nullptr);
  std::string output;
  const int status = RunTool({"run"}, output);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << ": " << output;
  EXPECT_EQ(WEXITSTATUS(status), 2) << output;
  EXPECT_EQ(output,
            "moe-ep run: --ranks 300 violates rule: an integer in [1, 256] (--ranks is the MPI job's size, mpirun -np) "
            "(see 'moe-ep --help')\n");
}

// The launcher's variables are checked as flags are: a size of 0, or a rank outside the size, is a one-line refusal
// naming the variable, not an uncaught exception.
TEST(CliFlags, BadMpiLauncherVariablesAreRefused) {
  const moe_ep::testing::ScopedEnv no_job("MOE_EP_RENDEZVOUS", nullptr), no_pmi_rank("PMI_RANK", nullptr),
      no_pmi_size("PMI_SIZE", nullptr);
  for (const auto& [rank_value, size_value] : {std::pair{"0", "0"}, std::pair{"5", "4"}, std::pair{"0", "abc"}}) {
    const moe_ep::testing::ScopedEnv rank("OMPI_COMM_WORLD_RANK", rank_value), size("OMPI_COMM_WORLD_SIZE", size_value);
    std::string output;
    const int status = RunTool({"run"}, output);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status << ": " << output;  // not a signal
    EXPECT_EQ(WEXITSTATUS(status), 2) << output;
    EXPECT_TRUE(output.starts_with("moe-ep run: ")) << output;
    EXPECT_NE(output.find("OMPI_COMM_WORLD_"), std::string::npos) << output;
    EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 1) << output;
  }
}

// The fuzzer's first find: with --quant int8 and H < 4 a quantized row (H + 4 bytes) outgrew the 2H-byte buffer of
// the memcpy baseline. Under the ASan build this fails if the buffer is undersized again.
TEST(CliFlags, BinaryRunsTheSmallestQuantizedJob) {
  std::string output;
  const int status = RunTool(
      {"run",  "--ranks",      "2",    "--experts", "2", "--topk",   "2", "--bs",   "2", "--hidden", "1", "--quant",
       "int8", "--comm-quant", "int8", "--repeats", "1", "--warmup", "0", "--seed", "5"},
      output);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << ": " << output;
  EXPECT_EQ(WEXITSTATUS(status), 0) << output;
  EXPECT_NE(output.find("verified"), std::string::npos) << output;
}

// A job on processes whose rank is killed (here by SIGXCPU: one second of CPU each, and the ranks spin) exits 1, as
// every failed job does (--help), with the launcher's line naming the rank and the signal, not with the rank's status.
TEST(CliFlags, AJobOnProcessesWhoseRankIsKilledExitsWithOne) {
  std::string output;
  const int status = RunTool({"run", "--processes", "--ranks", "2", "--experts", "4", "--topk", "2", "--bs", "512",
                              "--hidden", "7168", "--repeats", "100000", "--warmup", "0"},
                             output, std::nullopt, false, rlimit{1, 10});
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << ": " << output;
  EXPECT_EQ(WEXITSTATUS(status), 1) << output;
  EXPECT_NE(output.find("was killed by signal " + std::to_string(SIGXCPU)), std::string::npos) << output;
}

// The main job with its ranks as processes of this host: every rank verifies its outputs, the launcher prints the
// timings of all of them.
TEST(CliFlags, BinaryRunsTheJobOnProcesses) {
  // Rows pulled (read in place through the shared heap) whatever their size; the job must say so.
  const moe_ep::testing::ScopedEnv pull("MOE_EP_DATA_PATH", "pull");
  std::string output;
  const int status = RunTool({"run", "--processes", "--ranks", "3", "--experts", "6", "--topk", "2", "--bs", "5",
                              "--hidden", "64", "--repeats", "2", "--warmup", "0"},
                             output);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << ": " << output;
  EXPECT_EQ(WEXITSTATUS(status), 0) << output;
  for (const char* line : {"transport: processes (3 ranks", "[rank 0] verified", "[rank 2] verified",
                           "verified: every rank's", "the rows of 3 of 3 ranks were pulled in dispatch",
                           "of 3 of 3 ranks with rows in combine", "dispatch   median", "combine    median"}) {
    EXPECT_NE(output.find(line), std::string::npos) << line << " in\n" << output;
  }
}

// A job of more ranks than the launcher may hold pipes for is refused naming -n and the limit, before any rank starts
// (it used to start ranks until pipe2 failed, then say only "Too many open files"). The hard limit bounds the raise.
TEST(CliFlags, LaunchRefusesMoreRanksThanItsOpenFilesLimit) {
  std::string output;
  const int status = RunTool({"launch", "-n", "100", "--", "true"}, output, rlimit{64, 64});
  ASSERT_TRUE(WIFEXITED(status)) << output;
  EXPECT_EQ(WEXITSTATUS(status), 2) << output;
  EXPECT_EQ(output,
            "moe-ep launch: -n 100 violates rule: the launcher keeps 2 pipes per rank open, 232 files in all, and this "
            "process may open 64 (ulimit -n; its hard limit 64)\n");
}

// The launcher raises its own soft limit on open files for its pipes (100 ranks need 232); its ranks keep the limit it
// was given.
TEST(CliFlags, LaunchRanksKeepTheCallersOpenFilesLimit) {
  std::string output;
  const int status = RunTool({"launch", "-n", "100", "--", "sh", "-c", "ulimit -n"}, output, rlimit{64, 1024});
  ASSERT_TRUE(WIFEXITED(status)) << output;
  EXPECT_EQ(WEXITSTATUS(status), 0) << output;
  for (int r = 0; r < 100; ++r) {
    EXPECT_NE(output.find("[rank " + std::to_string(r) + "] 64\n"), std::string::npos) << output;
  }
}

// Sends `sig` to `moe-ep launch` once its two ranks are ready, and `times` times over once every rank noted the first
// in a file (ranks that catch it and go on with `keep_running`, else end); returns the launcher's wait status, and
// whether each rank noted the signal. A launcher that did not hand it on would leave them only its death's SIGKILL
// (PR_SET_PDEATHSIG); one that waited for ranks that catch it would never end.
struct LaunchSignalled {
  int status = 0;
  bool noted[2] = {false, false};
};
LaunchSignalled SignalLaunch(int sig, const char* trap_name, bool keep_running, int times) {
  LaunchSignalled result;
  char folder[] = "/tmp/moe_ep_signal_XXXXXX";
  if (mkdtemp(folder) == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    return result;
  }
  const std::string dir = folder;
  struct Removed {  // the folder, whatever the test's outcome
    const std::string& dir;
    ~Removed() {
      for (const char* name : {"ready.0", "ready.1", "noted.0", "noted.1"}) unlink((dir + "/" + name).c_str());
      rmdir(dir.c_str());
    }
  } removed{dir};
  const std::string rank_script = "trap 'echo > " + dir + "/noted.$MOE_EP_RANK" + (keep_running ? "" : "; exit 0") +
                                  "' " + trap_name + "; echo > " + dir +
                                  "/ready.$MOE_EP_RANK; while :; do sleep 0.02; done";
  std::vector<std::string> words{MOE_EP_TOOL, "launch", "-n", "2", "--", "sh", "-c", rank_script};
  std::vector<char*> argv;
  for (auto& word : words) argv.push_back(word.data());
  argv.push_back(nullptr);
  const auto exists = [&](const std::string& name) { return access((dir + "/" + name).c_str(), F_OK) == 0; };
  // The launcher starts with the signals at their defaults and none blocked, whatever this test inherited (nohup).
  posix_spawnattr_t defaults;
  posix_spawnattr_init(&defaults);
  sigset_t signals;
  sigemptyset(&signals);
  posix_spawnattr_setsigmask(&defaults, &signals);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, s);
  posix_spawnattr_setsigdefault(&defaults, &signals);
  posix_spawnattr_setflags(&defaults, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, MOE_EP_TOOL, nullptr, &defaults, argv.data(), environ);
  posix_spawnattr_destroy(&defaults);
  if (spawned != 0) {
    ADD_FAILURE() << "posix_spawn " << MOE_EP_TOOL;
    return result;
  }
  // Waits (up to 10 s) for both files named `stem`.N; kills the launcher if they never come.
  const auto wait_for = [&](const std::string& stem) {
    for (int waited_ms = 0; !(exists(stem + ".0") && exists(stem + ".1")); waited_ms += 10) {
      if (waited_ms >= 10000) {
        kill(pid, SIGKILL), waitpid(pid, nullptr, 0);
        ADD_FAILURE() << "no " << stem << " files from both ranks within 10 s";
        return false;
      }
      usleep(10 * 1000);
    }
    return true;
  };
  if (!wait_for("ready")) return result;
  kill(pid, sig);
  if (times > 1 && !wait_for("noted")) return result;
  for (int again = 1; again < times; ++again) kill(pid, sig);
  for (int waited_ms = 0; waitpid(pid, &result.status, WNOHANG) == 0; waited_ms += 10) {
    if (waited_ms >= 10000) {
      kill(pid, SIGKILL), waitpid(pid, nullptr, 0);
      ADD_FAILURE() << "the launcher outlived the signal by 10 s";
      return result;
    }
    usleep(10 * 1000);
  }
  for (int rank = 0; rank < 2; ++rank) result.noted[rank] = exists("noted." + std::to_string(rank));
  return result;
}

// SIGTERM to `moe-ep launch`, and SIGHUP (its terminal closed), reach the ranks, and the launcher ends by it too once
// they are gone (a bench that launches job after job stops rather than going on to the next).
TEST(CliFlags, LaunchHandsOnSigtermAndSighupAndEndsByThem) {
  for (const auto& [sig, name] : {std::pair{SIGTERM, "TERM"}, std::pair{SIGHUP, "HUP"}}) {
    const LaunchSignalled launch = SignalLaunch(sig, name, /*keep_running=*/false, 1);
    ASSERT_TRUE(WIFSIGNALED(launch.status)) << name << ": status " << launch.status;
    EXPECT_EQ(WTERMSIG(launch.status), sig) << name;
    for (int rank = 0; rank < 2; ++rank) EXPECT_TRUE(launch.noted[rank]) << "rank " << rank << " never got " << name;
  }
}

// Ranks that catch SIGTERM and go on: a second SIGTERM (a repeated Ctrl-C) kills them, and the launcher ends by the
// signal instead of waiting for them.
TEST(CliFlags, ASecondSignalToLaunchKillsTheRanksLeft) {
  const LaunchSignalled launch = SignalLaunch(SIGTERM, "TERM", /*keep_running=*/true, 2);
  ASSERT_TRUE(WIFSIGNALED(launch.status)) << "status " << launch.status;
  EXPECT_EQ(WTERMSIG(launch.status), SIGTERM);
  for (int rank = 0; rank < 2; ++rank) EXPECT_TRUE(launch.noted[rank]) << "rank " << rank << " never got the first";
}

// A job whose ranks are of no use without each other (run --processes, a bench's measurement) ends when one fails:
// the launcher ends the others, which would otherwise wait for it until their deadline, and returns its status.
TEST(CliFlags, LaunchEndsTheJobWhenARankFailsWhereAsked) {
  const auto start = std::chrono::steady_clock::now();
  const int status = Launch(LaunchOptions{3, {"sh", "-c", "[ \"$MOE_EP_RANK\" = 1 ] && exit 3; exec sleep 60"}, true});
  EXPECT_EQ(status, 3);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20)) << "the other ranks were left to run";
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// A bench's inputs follow every bit of its seed: seeds 2^32 apart draw other tokens (std::seed_seq keeps 32 bits of
// each value it is given).
TEST(CliFlags, BenchInputsFollowTheSeedsHighBits) {
  JobOptions job;
  job.bs = 4;
  job.hidden = 64;
  job.seed = 1;
  const BenchInputs low = DrawBenchInputs(job, 0);
  job.seed = (uint64_t{1} << 32) | 1;
  const BenchInputs high = DrawBenchInputs(job, 0);
  EXPECT_NE(low.x, high.x);
  job.seed = 1;
  EXPECT_EQ(DrawBenchInputs(job, 0).x, low.x);  // and the same seed draws the same tokens
}

// A small sweep on threads and processes with and without quantization: a table row and a JSON entry with both
// operations' medians for each of the 2 x 2 x 2 measurements, nothing skipped or failed, and every row pulled as
// MOE_EP_DATA_PATH asks (process ranks reach each other's tensors through the library's shared heap).
TEST(CliFlags, BinaryBenchesASweepAndWritesJson) {
  const moe_ep::testing::ScopedEnv pull("MOE_EP_DATA_PATH", "pull");
  const std::string json = ::testing::TempDir() + "/moe_ep_bench_test.json";
  std::string output;
  const int status = RunTool({"bench",
                              "--ranks",
                              "2",
                              "--experts",
                              "4",
                              "--topk",
                              "2",
                              "--bs",
                              "1,6",
                              "--hidden",
                              "64",
                              "--transports",
                              "threads,processes",
                              "--quant",
                              "off,int8",
                              "--repeats",
                              "2",
                              "--warmup",
                              "1",
                              "--json",
                              json},
                             output);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << ": " << output;
  EXPECT_EQ(WEXITSTATUS(status), 0) << output;
  EXPECT_EQ(Count(output, "\nthreads "), 4u) << output;
  EXPECT_EQ(Count(output, "\nprocesses "), 4u) << output;
  EXPECT_EQ(Count(output, "skipped") + Count(output, "failed"), 0u) << output;
  EXPECT_EQ(Count(output, " pull/pull | "), 8u) << output;
  FILE* file = std::fopen(json.c_str(), "r");
  ASSERT_NE(file, nullptr) << json;
  std::string text;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), file)) > 0;) text.append(buffer, n);
  std::fclose(file);
  EXPECT_EQ(Count(text, "\"system\": "), 8u) << text;
  EXPECT_EQ(Count(text, "\"median_us\": "), 16u) << text;
  EXPECT_EQ(Count(text, "\"quant\": \"int8\""), 4u) << text;
  EXPECT_EQ(Count(text, "\"note\""), 0u) << text;
  EXPECT_EQ(Count(text, "\"path\": \"pull\""), 16u) << text;
}

// A sweep whose every configuration is skipped measured nothing: exit 1, saying so, not 0.
TEST(CliFlags, BinaryBenchThatMeasuresNothingFails) {
  std::string output;
  const int status = RunTool({"bench", "--ranks", "2", "--experts", "4", "--topk", "2", "--bs", "1", "--hidden", "64",
                              "--transports", "alltoallv", "--quant", "int8"},
                             output);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << ": " << output;
  EXPECT_EQ(WEXITSTATUS(status), 1) << output;
  EXPECT_EQ(Count(output, "skipped: the baseline moves bf16 rows only"), 1u) << output;
  EXPECT_EQ(Count(output, "moe-ep bench: nothing was measured"), 1u) << output;
}

// Started with SIGCHLD ignored, bench still sees the exit status of what it runs: without mpirun on PATH, the hosts
// transport is skipped for want of mpirun (the kernel reaping the probe made it look found, and then fail).
TEST(CliFlags, BenchFindsNoMpirunEvenWithSigchldIgnored) {
  const std::string bin = ::testing::TempDir() + "/moe_ep_sh_only_" + std::to_string(getpid());
  ASSERT_EQ(mkdir(bin.c_str(), 0700), 0) << bin;
  ASSERT_EQ(symlink("/bin/sh", (bin + "/sh").c_str()), 0);
  std::string output;
  int status = 0;
  {
    const moe_ep::testing::ScopedEnv path("PATH", bin.c_str());
    status = RunTool({"bench", "--ranks", "2", "--experts", "4", "--topk", "2", "--bs", "1", "--hidden", "64",
                      "--transports", "hosts"},
                     output, std::nullopt, /*ignoring_sigchld=*/true);
  }
  unlink((bin + "/sh").c_str());
  rmdir(bin.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << ": " << output;
  EXPECT_EQ(WEXITSTATUS(status), 1) << output;
  EXPECT_EQ(Count(output, "skipped: no mpirun"), 1u) << output;
}

// A sweep that a signal ends leaves the --json file it would have replaced as it was: on threads, the signal's default
// action ends it (the file was emptied at the start); on processes, the launcher forwards it to the ranks and the
// measurement fails, and the sweep, its last configuration measured, must not write the file before it ends by the
// signal too.
// The processes case asks for the MPI baseline too: the signal the processes' launcher forwarded ends the sweep before
// mpirun starts (it ran the whole baseline measurement first). The baseline alone (with mpirun): the signal reaches
// mpirun, and the sweep removes the folder its ranks' timings go to before it ends.
TEST(CliFlags, AnInterruptedBenchLeavesTheJsonFileAsItWas) {
  const bool mpirun = std::system("command -v mpirun >/dev/null 2>&1") == 0;
  for (const char* transport : {"threads", "processes,alltoallv", "alltoallv"}) {
    SCOPED_TRACE(transport);
    const bool mpi_alone = std::string(transport) == "alltoallv";
    if (mpi_alone && !mpirun) continue;
    char tmp[] = "/tmp/moe_ep_bench_tmpdir_XXXXXX";  // the sweep's TMPDIR: what it leaves there shows
    ASSERT_NE(mkdtemp(tmp), nullptr);
    struct Removed {  // whatever the outcome
      const char* dir;
      ~Removed() { std::filesystem::remove_all(dir); }
    } removed{tmp};
    const moe_ep::testing::ScopedEnv tmpdir("TMPDIR", tmp);
    // The folder the ranks' timings go to, once the sweep made one (right before it starts the ranks).
    const auto results_folders = [&] {
      std::vector<std::string> found;
      for (const auto& entry : std::filesystem::directory_iterator(tmp)) {
        if (entry.path().filename().string().starts_with("moe-ep.")) found.push_back(entry.path().string());
      }
      return found;
    };
    const std::string json = ::testing::TempDir() + "/moe_ep_bench_interrupted_" + std::to_string(getpid()) + "_" +
                             std::string(transport).substr(0, 7) + ".json";
    const std::string printed = json + ".out";
    const std::string old_results = "{\"results\": []}\n";
    ASSERT_TRUE(std::ofstream(json) << old_results);
    std::vector<std::string> words{MOE_EP_TOOL, "bench", "--ranks",      "2",       "--experts", "4",
                                   "--topk",    "2",     "--bs",         "2048",    "--hidden",  "7168",
                                   "--repeats", "100",   "--transports", transport, "--json",    json};
    std::vector<char*> argv;
    for (auto& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t quiet;
    posix_spawn_file_actions_init(&quiet);
    posix_spawn_file_actions_addopen(&quiet, STDOUT_FILENO, printed.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&quiet, STDOUT_FILENO, STDERR_FILENO);
    pid_t pid = 0;
    const int spawned = posix_spawn(&pid, MOE_EP_TOOL, &quiet, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&quiet);
    if (spawned == 0) {
      // Well into the measurement, which takes seconds; the baseline's once mpirun started (a while after the folder).
      for (int waited_ms = 0; mpi_alone && results_folders().empty() && waited_ms < 30000; waited_ms += 10) {
        usleep(10 * 1000);
      }
      usleep((mpi_alone ? 500 : 300) * 1000);
      kill(pid, SIGTERM);
    }
    int status = 0;
    if (spawned == 0) waitpid(pid, &status, 0);
    std::stringstream text, output;
    text << std::ifstream(json).rdbuf();
    output << std::ifstream(printed).rdbuf();
    std::remove(json.c_str());
    std::remove(printed.c_str());
    ASSERT_EQ(spawned, 0);
    EXPECT_TRUE(WIFSIGNALED(status)) << "status " << status << ": the sweep ended before the signal";
    EXPECT_EQ(text.str(), old_results);
    if (mpirun && std::string(transport) == "processes,alltoallv") {
      EXPECT_NE(output.str().find("not measured: the sweep was interrupted"), std::string::npos) << output.str();
    }
    EXPECT_NE(access((json + ".partial." + std::to_string(pid)).c_str(), F_OK), 0) << "the sweep left its partial file";
    const std::vector<std::string> left = results_folders();
    EXPECT_TRUE(left.empty()) << "the sweep left " << left.front();
  }
}

}  // namespace
}  // namespace moe_ep::tools
