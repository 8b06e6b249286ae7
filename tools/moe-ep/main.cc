// The moe-ep command line: parses subcommands and flags and hands them to the tools.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "moe-ep/launch.h"
#include "moe-ep/run_job.h"
#include "moe_ep/error.h"

namespace {

constexpr const char* kUsage = R"(usage: moe-ep <command> [flags]

commands:
  run     dispatch + combine across in-process ranks (threads), verified bit for bit against the
          reference model, with per-operation median timings next to a memcpy of the same bytes
  launch  -n N [--] PROGRAM [ARGS...]: start N processes of PROGRAM as the ranks of one job, with
          MOE_EP_RANK, MOE_EP_WORLD_SIZE and a fresh MOE_EP_RENDEZVOUS set (moe_ep::JoinProcessGroup
          reads them); their output is prefixed "[rank r] "; the exit status is the first non-zero
          one of the ranks (128 + signal for a killed rank)
  help    this text

run flags (defaults: the realistic decode configuration):
  --ranks N            EP ranks (threads)                          [8]
  --bs N               tokens per rank                             [128]
  --hidden N           hidden size H                               [7168]
  --topk N             experts per token K                         [8]
  --experts N          routed (MoE) experts                        [64]
  --shared-experts N   one shared expert replicated on N ranks     [0 = none]
  --fp16               fp16 tokens instead of bf16
  --quant int8         dispatch with dynamic int8 quantization (quantMode 2)
  --comm-quant int8    combine with int8 communication quantization (commQuantMode 2)
  --repeats N          timed rounds (medians are reported)         [20]
  --warmup N           untimed rounds first                        [3]
  --seed N             input seed (default: random, printed)

environment: MOE_EP_TIMEOUT_MS, MOE_EP_WINDOW_MB, MOE_EP_ISA (see include/moe_ep/options.h)
exit status: 0 verified, 1 mismatch or error, 2 bad usage
)";

[[noreturn]] void BadUsage(const std::string& why) {
  std::fprintf(stderr, "moe-ep: %s\n\n%s", why.c_str(), kUsage);
  std::exit(2);
}

int64_t ParseInt(const char* flag, const char* text, int64_t min) {
  char* end = nullptr;
  const long long v = text ? std::strtoll(text, &end, 10) : 0;
  if (!text || *end != '\0' || v < min) {
    BadUsage(std::string(flag) + " needs an integer >= " + std::to_string(min) + ", got '" + (text ? text : "") + "'");
  }
  return v;
}

moe_ep::tools::JobOptions ParseRun(int argc, char** argv) {
  moe_ep::tools::JobOptions o;
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    auto take_int = [&](int64_t min) {
      ++i;
      return ParseInt(flag.c_str(), value, min);
    };
    if (flag == "--ranks")
      o.ranks = static_cast<int>(take_int(1));
    else if (flag == "--bs")
      o.bs = take_int(1);
    else if (flag == "--hidden")
      o.hidden = take_int(1);
    else if (flag == "--topk")
      o.top_k = take_int(1);
    else if (flag == "--experts")
      o.experts = take_int(1);
    else if (flag == "--shared-experts")
      o.shared_expert_ranks = take_int(0);
    else if (flag == "--repeats")
      o.repeats = static_cast<int>(take_int(1));
    else if (flag == "--warmup")
      o.warmup = static_cast<int>(take_int(0));
    else if (flag == "--seed")
      o.seed = static_cast<uint64_t>(take_int(1));
    else if (flag == "--fp16")
      o.fp16 = true;
    else if (flag == "--quant" || flag == "--comm-quant") {
      ++i;
      if (!value || std::strcmp(value, "int8") != 0) BadUsage(flag + " takes 'int8'");
      (flag == "--quant" ? o.quant_int8 : o.comm_quant_int8) = true;
    } else {
      BadUsage("unknown flag '" + flag + "'");
    }
  }
  return o;
}

moe_ep::tools::LaunchOptions ParseLaunch(int argc, char** argv) {
  moe_ep::tools::LaunchOptions o;
  int i = 2;
  for (; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--") {
      ++i;
      break;
    }
    if (flag == "-n" || flag == "--ranks") {
      o.ranks = static_cast<int>(ParseInt(flag.c_str(), i + 1 < argc ? argv[i + 1] : nullptr, 1));
      ++i;
    } else if (!flag.empty() && flag[0] == '-') {
      BadUsage("unknown launch flag '" + flag + "'");
    } else {
      break;
    }
  }
  for (; i < argc; ++i) o.command.push_back(argv[i]);
  if (o.ranks < 1) BadUsage("launch needs -n N");
  if (o.command.empty()) BadUsage("launch needs a program to run");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::fputs(kUsage, stdout);
    return argc < 2 ? 2 : 0;
  }
  try {
    if (!std::strcmp(argv[1], "run")) return moe_ep::tools::RunJob(ParseRun(argc, argv));
    if (!std::strcmp(argv[1], "launch")) return moe_ep::tools::Launch(ParseLaunch(argc, argv));
  } catch (const moe_ep::Error& e) {
    std::fprintf(stderr, "moe-ep: error %d: %s\n", static_cast<int>(e.code()), e.what());
    return 1;
  }
  BadUsage(std::string("unknown command '") + argv[1] + "'");
}
