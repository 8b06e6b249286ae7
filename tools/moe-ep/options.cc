// Parsing and validation of the moe-ep command line: one table of `run` flags drives parsing, range checks and the
// --help text, then the cross-flag rules run in a fixed order, so the first broken rule is the one reported.
#include "moe-ep/options.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <exception>
#include <limits>
#include <set>
#include <string_view>
#include <vector>

#include "moe_ep/options.h"
#include "plan/config.h"
#include "plan/layout.h"

namespace moe_ep::tools {
namespace {

// How a message shows a value the user typed: as typed when it is short and plain, else quoted with escapes and
// cut short, so that a message stays one line whatever bytes the argument holds.
std::string Shown(std::string_view text) {
  constexpr size_t kMaxShown = 48;
  const bool plain = !text.empty() && text.size() <= kMaxShown && std::all_of(text.begin(), text.end(), [](char ch) {
    return ch > ' ' && ch < 0x7f && ch != '\'' && ch != '\\';
  });
  if (plain) return std::string(text);
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    const auto ch = static_cast<unsigned char>(text[i]);
    if (ch == '\'' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch >= ' ' && ch < 0x7f) {
      out += static_cast<char>(ch);
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", ch);
      out += escaped;
    }
  }
  return out + (text.size() > kMaxShown ? "'..." : "'");
}

// `text` with every control character turned into a space: a message from elsewhere kept to one line.
std::string OneLine(std::string text) {
  std::replace_if(
      text.begin(), text.end(), [](char ch) { return static_cast<unsigned char>(ch) < ' '; }, ' ');
  return text;
}

// The decimal integer `text` spells, if it spells one exactly (no sign but '-', no spaces, no suffix) and it
// fits T. Overflow is "not a number in range", never a wrapped value.
template <typename T>
std::optional<T> DecimalInteger(std::string_view text) {
  T value{};
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc() || stop != end) return std::nullopt;
  return value;
}

std::string RangeRule(int64_t min, int64_t max) {
  return "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
}

// One `run` flag: how its value is read and where it goes. The table below is the whole list: the parser, the
// range checks and --help all read it.
struct RunFlag {
  enum class Kind { kInteger, kSeed, kSwitch, kInt8 };
  const char* name;
  Kind kind;
  int64_t min = 0, max = 0;  // kInteger
  const char* help = "";
  const char* default_text = "";
  void (*store_integer)(JobOptions&, int64_t) = nullptr;  // kInteger
  bool JobOptions::*store_switch = nullptr;               // kSwitch, kInt8
};

using Kind = RunFlag::Kind;
const std::array<RunFlag, 14> kRunFlags{{
    {"--ranks", Kind::kInteger, 1, kMaxRanks, "EP ranks (threads; under mpirun: -np)", "8",
     [](JobOptions& o, int64_t v) { o.ranks = static_cast<int>(v); }},
    {"--bs", Kind::kInteger, 1, kMaxBs, "tokens per rank", "128", [](JobOptions& o, int64_t v) { o.bs = v; }},
    {"--hidden", Kind::kInteger, 1, kMaxHidden, "hidden size H", "7168",
     [](JobOptions& o, int64_t v) { o.hidden = v; }},
    {"--topk", Kind::kInteger, 1, kMaxTopK, "experts per token K", "8", [](JobOptions& o, int64_t v) { o.top_k = v; }},
    {"--experts", Kind::kInteger, 1, kMaxExperts, "routed (MoE) experts", "64",
     [](JobOptions& o, int64_t v) { o.experts = v; }},
    {"--shared-experts", Kind::kInteger, 0, kMaxRanks - 1, "one shared expert replicated on N ranks", "0 = none",
     [](JobOptions& o, int64_t v) { o.shared_expert_ranks = v; }},
    {"--repeats", Kind::kInteger, 1, kMaxRounds, "timed rounds (medians are reported)", "20",
     [](JobOptions& o, int64_t v) { o.repeats = static_cast<int>(v); }},
    {"--warmup", Kind::kInteger, 0, kMaxRounds, "untimed rounds first", "3",
     [](JobOptions& o, int64_t v) { o.warmup = static_cast<int>(v); }},
    {"--seed", Kind::kSeed, 0, 0, "input seed, 1 to 2^64-1", "random, printed"},
    {"--fp16", Kind::kSwitch, 0, 0, "fp16 tokens instead of bf16", "", nullptr, &JobOptions::fp16},
    {"--quant", Kind::kInt8, 0, 0, "dispatch with dynamic int8 quantization (quantMode 2)", "", nullptr,
     &JobOptions::quant_int8},
    {"--comm-quant", Kind::kInt8, 0, 0, "combine with int8 communication quantization (commQuantMode 2)", "", nullptr,
     &JobOptions::comm_quant_int8},
    {"--processes", Kind::kSwitch, 0, 0, "ranks as processes of this host (shared memory), not threads", "", nullptr,
     &JobOptions::processes},
    {"--private", Kind::kSwitch, 0, 0,
     "x and the expert outputs in each rank's private memory (as torch tensors are), not the shared heap (process "
     "ranks and mpirun; thread ranks read each other's memory either way)",
     "", nullptr, &JobOptions::private_inputs},
}};

std::string RuleOf(const RunFlag& flag) {
  switch (flag.kind) {
    case Kind::kInteger:
      return RangeRule(flag.min, flag.max);
    case Kind::kSeed:
      return "an integer in [1, 18446744073709551615]";
    case Kind::kInt8:
      return "must be int8";
    case Kind::kSwitch:
      break;
  }
  return "takes no value";
}

ParseResult Invalid(std::string message) {
  ParseResult result;
  result.exit_code = kBadUsageExitCode;
  result.error = std::move(message);
  return result;
}

ParseResult Valid(CommandLine command_line) {
  ParseResult result;
  result.command_line = std::move(command_line);
  return result;
}

bool IsHelp(std::string_view word) { return word == "help" || word == "--help" || word == "-h"; }

// A word in the value position that is really the next flag: the value is missing (negative numbers start with a
// single '-' and stay values, to be refused by their range).
bool LooksLikeFlag(std::string_view word) { return word.size() > 2 && word.substr(0, 2) == "--"; }

std::string UnknownFlag(const char* prefix, std::string_view word) {
  std::string message = std::string(prefix) + "unknown flag " + Shown(word);
  if (const size_t equals = word.find('='); equals != std::string_view::npos && equals > 2) {
    message += " (write '" + Shown(word.substr(0, equals)) + " VALUE', without '=')";
  }
  return message;
}

// The configuration every rank of the job validates, seen from `rank` (the window and A depend on its role).
plan::MoeConfig ConfigOf(const JobOptions& o, int64_t rank) {
  plan::MoeConfig c;
  c.ep_world_size = o.ranks;
  c.ep_rank = rank;
  c.tp_world_size = 1;
  c.moe_expert_num = o.experts;
  c.shared_expert_num = o.shared_expert_ranks > 0 ? 1 : 0;
  c.shared_expert_rank_num = o.shared_expert_ranks;
  c.bs = o.bs;
  c.hidden = o.hidden;
  c.top_k = o.top_k;
  c.x_dtype = o.fp16 ? DType::kFp16 : DType::kBf16;
  c.quant_mode = o.quant_int8 ? 2 : 0;
  c.comm_quant_mode = o.comm_quant_int8 ? 2 : 0;
  return c;
}

constexpr const char* kRunPrefix = "moe-ep run: ";
constexpr const char* kLaunchPrefix = "moe-ep launch: ";

std::string Violation(const char* prefix, const std::string& flag, int64_t value, const std::string& rule) {
  return prefix + flag + " " + std::to_string(value) + " violates rule: " + rule;
}

std::string MiB(uint64_t bytes) { return std::to_string((bytes + (uint64_t{1} << 20) - 1) >> 20) + " MiB"; }

// The rules between flags (each flag is already in its own range), in a fixed order; "" when all hold. They are
// those of src/plan/validate.cc (native profile) for the configuration the job builds, plus (for `run`, whose
// window is MOE_EP_WINDOW_MB and whose verification holds every rank's rows) the window and memory bounds.
// Messages start with `prefix`, the command.
std::string CrossFlagViolation(const JobOptions& o, std::optional<uint64_t> window_bytes, const char* prefix,
                               bool bound_window_and_memory) {
  if (o.shared_expert_ranks >= o.ranks) {
    return Violation(prefix, "--shared-experts", o.shared_expert_ranks,
                     "< --ranks (" + std::to_string(o.ranks) + "), so that a rank is left for the routed experts");
  }
  const int64_t moe_ranks = o.ranks - o.shared_expert_ranks;
  if (o.experts % moe_ranks != 0) {
    return Violation(prefix, "--experts", o.experts,
                     "a multiple of the MoE ranks, --ranks - --shared-experts = " + std::to_string(moe_ranks));
  }
  if (o.top_k > o.experts)
    return Violation(prefix, "--topk", o.top_k, "<= --experts (" + std::to_string(o.experts) + ")");
  const int64_t shared_slots = o.shared_expert_ranks > 0 ? 1 : 0;
  const int64_t combine_flags = o.bs * (o.top_k + shared_slots);
  if (static_cast<uint64_t>(combine_flags) > plan::kMaxCombineFlags) {
    return Violation(prefix, "--bs", o.bs,
                     "--bs x (--topk + shared experts) <= " + std::to_string(plan::kMaxCombineFlags) +
                         " (combine flags of a window); it is " + std::to_string(combine_flags));
  }
  // The library's other flag rule, experts per MoE rank x ranks <= kMaxDispatchFlags, holds within the bounds.
  static_assert(static_cast<uint64_t>(kMaxExperts * kMaxRanks) <= plan::kMaxDispatchFlags);
  if (!bound_window_and_memory) return "";

  const std::string sizes = " with --hidden " + std::to_string(o.hidden) + ", --topk " + std::to_string(o.top_k) +
                            ", --experts " + std::to_string(o.experts) + ", --ranks " + std::to_string(o.ranks);
  uint64_t window = 0;
  try {
    window = window_bytes ? *window_bytes : DefaultWindowBytes();
  } catch (const std::exception& e) {  // MOE_EP_WINDOW_MB out of its range: the job could not start either
    return kRunPrefix + OneLine(e.what());
  }
  const uint64_t needed = WindowBytesNeeded(o);
  if (needed > window) {
    return kRunPrefix + std::string("--bs ") + std::to_string(o.bs) + sizes +
           " violates rule: each rank's window needs 2 x (bs x tokD x E x L + bs x tokC x (K + shared)) = " +
           MiB(needed) + ", more than MOE_EP_WINDOW_MB = " + MiB(window) +
           "; lower these flags or raise MOE_EP_WINDOW_MB";
  }
  const uint64_t memory = EstimatedJobBytes(o);
  if (memory > kMaxJobBytes) {
    return kRunPrefix + std::string("--bs ") + std::to_string(o.bs) + sizes + " violates rule: the job's memory, " +
           "estimated at " + MiB(memory) + ", must stay <= " + MiB(kMaxJobBytes) + "; lower these flags";
  }
  return "";
}

ParseResult ParseRun(std::span<const std::string> args, std::optional<uint64_t> window_bytes) {
  CommandLine line;
  line.command = Command::kRun;
  JobOptions& o = line.job;
  std::array<std::optional<std::string>, kRunFlags.size()> seen;  // the value each flag was given
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (IsHelp(word) && word != "help") return Valid(CommandLine{});
    const auto flag =
        std::find_if(kRunFlags.begin(), kRunFlags.end(), [&](const RunFlag& f) { return word == f.name; });
    if (flag == kRunFlags.end()) {
      if (!LooksLikeFlag(word)) {
        return Invalid(kRunPrefix + std::string("unexpected argument ") + Shown(word) + " (flags start with --)");
      }
      return Invalid(UnknownFlag(kRunPrefix, word));
    }
    const std::string name = flag->name;
    std::string value;
    if (flag->kind != Kind::kSwitch) {
      if (i + 1 >= args.size() || LooksLikeFlag(args[i + 1])) {
        return Invalid(kRunPrefix + name + " needs a value: " + RuleOf(*flag));
      }
      value = args[++i];
    }
    auto& earlier = seen[flag - kRunFlags.begin()];
    if (earlier) {
      return Invalid(kRunPrefix + name + (value.empty() ? "" : " " + Shown(value)) +
                     " violates rule: each flag at most once (already given" +
                     (earlier->empty() ? "" : " as " + Shown(*earlier)) + ")");
    }
    earlier = value;
    const std::string bad_value = kRunPrefix + name + " " + Shown(value) + " violates rule: " + RuleOf(*flag);
    switch (flag->kind) {
      case Kind::kInteger: {
        const auto v = DecimalInteger<int64_t>(value);
        if (!v || *v < flag->min || *v > flag->max) return Invalid(bad_value);
        flag->store_integer(o, *v);
        break;
      }
      case Kind::kSeed: {
        const auto v = DecimalInteger<uint64_t>(value);
        if (!v || *v == 0) return Invalid(bad_value);
        o.seed = *v;
        break;
      }
      case Kind::kInt8:
        if (value != "int8") return Invalid(bad_value);
        o.*(flag->store_switch) = true;
        break;
      case Kind::kSwitch:
        o.*(flag->store_switch) = true;
        break;
    }
  }
  if (std::string violation = CrossFlagViolation(o, window_bytes, kRunPrefix, true); !violation.empty()) {
    return Invalid(std::move(violation));
  }
  return Valid(std::move(line));
}

constexpr const char* kBenchPrefix = "moe-ep bench: ";

// The words of a comma-separated list ("" gives one empty word, which no list accepts).
std::vector<std::string> ListWords(const std::string& text) {
  std::vector<std::string> words;
  size_t start = 0;
  for (size_t comma; (comma = text.find(',', start)) != std::string::npos; start = comma + 1) {
    words.push_back(text.substr(start, comma - start));
  }
  words.push_back(text.substr(start));
  return words;
}

// `bench` takes run's sizing flags, --bs and --ranks as lists, --quant as a list of off / int8, and its own
// --transports and --json. Every configuration of the sweep must pass run's rules between flags.
ParseResult ParseBench(std::span<const std::string> args) {
  CommandLine line;
  line.command = Command::kBench;
  BenchOptions& b = line.bench;
  std::vector<std::string> seen;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (IsHelp(word) && word != "help") return Valid(CommandLine{});
    if (!LooksLikeFlag(word)) {
      return Invalid(kBenchPrefix + std::string("unexpected argument ") + Shown(word) + " (flags start with --)");
    }
    static constexpr std::array<std::string_view, 12> kBenchFlags = {"--bs",     "--ranks", "--transports", "--quant",
                                                                     "--hidden", "--topk",  "--experts",    "--repeats",
                                                                     "--warmup", "--seed",  "--json",       "--memory"};
    if (std::find(kBenchFlags.begin(), kBenchFlags.end(), word) == kBenchFlags.end()) {
      return Invalid(UnknownFlag(kBenchPrefix, word));
    }
    const bool list_flag = word == "--bs" || word == "--ranks" || word == "--transports" || word == "--quant";
    const auto run_flag =
        std::find_if(kRunFlags.begin(), kRunFlags.end(), [&](const RunFlag& f) { return word == f.name; });
    const std::string rule = word == "--transports" ? "a list of threads, processes, hosts, alltoallv"
                             : word == "--quant"    ? "a list of off, int8"
                             : word == "--json"     ? "a file name"
                             : word == "--memory"   ? "heap or private"
                                                    : RuleOf(*run_flag) + (list_flag ? ", or a list of them" : "");
    if (i + 1 >= args.size() || LooksLikeFlag(args[i + 1])) {
      return Invalid(kBenchPrefix + word + " needs a value: " + rule);
    }
    const std::string& value = args[++i];
    if (std::find(seen.begin(), seen.end(), word) != seen.end()) {
      return Invalid(kBenchPrefix + word + " " + Shown(value) + " violates rule: each flag at most once");
    }
    seen.push_back(word);
    const std::string bad_value = kBenchPrefix + word + " " + Shown(value) + " violates rule: ";
    if (const std::vector<std::string> items = ListWords(value);
        list_flag && std::set<std::string>(items.begin(), items.end()).size() != items.size()) {
      return Invalid(bad_value + "each value of a list at most once");
    }
    if (word == "--json") {
      if (value.empty()) return Invalid(bad_value + rule);
      // Checked now, not once the sweep is over: a directory cannot be replaced with the results.
      if (struct stat st{}; value.back() == '/' || (stat(value.c_str(), &st) == 0 && S_ISDIR(st.st_mode))) {
        return Invalid(bad_value + "a file name, not a directory");
      }
      b.json_path = value;
      continue;
    }
    if (word == "--memory") {
      if (value != "heap" && value != "private") return Invalid(bad_value + rule);
      b.private_inputs = value == "private";
      continue;
    }
    if (word == "--transports" || word == "--quant") {
      const bool transports = word == "--transports";
      const std::vector<std::string> choices =
          transports ? std::vector<std::string>{"threads", "processes", "hosts", "alltoallv"}
                     : std::vector<std::string>{"off", "int8"};
      if (transports) {
        b.systems.clear();
      } else {
        b.quant.clear();
      }
      for (const std::string& item : ListWords(value)) {
        const auto at = std::find(choices.begin(), choices.end(), item);
        if (at == choices.end()) return Invalid(bad_value + rule);
        const auto index = at - choices.begin();
        if (transports) {
          b.systems.push_back(static_cast<BenchSystem>(index));
        } else {
          b.quant.push_back(index == 1);
        }
      }
      continue;
    }
    const RunFlag& flag = *run_flag;
    if (flag.kind == Kind::kSeed) {
      const auto v = DecimalInteger<uint64_t>(value);
      if (!v || *v == 0) return Invalid(bad_value + rule);
      b.seed = *v;
      continue;
    }
    std::vector<int64_t> numbers;
    for (const std::string& item : list_flag ? ListWords(value) : std::vector<std::string>{value}) {
      const auto v = DecimalInteger<int64_t>(item);
      if (!v || *v < flag.min || *v > flag.max) return Invalid(bad_value + rule);
      numbers.push_back(*v);
    }
    // 8 and 08 are one value: the rule holds for the numbers, not only the words.
    if (std::set<int64_t>(numbers.begin(), numbers.end()).size() != numbers.size()) {
      return Invalid(bad_value + "each value of a list at most once");
    }
    if (word == "--bs") b.tokens = numbers;
    if (word == "--ranks") b.ranks.assign(numbers.begin(), numbers.end());
    if (word == "--hidden") b.hidden = numbers[0];
    if (word == "--topk") b.top_k = numbers[0];
    if (word == "--experts") b.experts = numbers[0];
    if (word == "--repeats") b.repeats = static_cast<int>(numbers[0]);
    if (word == "--warmup") b.warmup = static_cast<int>(numbers[0]);
  }
  for (const JobOptions& o : Configurations(b, 0)) {
    if (std::string violation = BenchConfigurationViolation(o); !violation.empty())
      return Invalid(std::move(violation));
  }
  return Valid(std::move(line));
}

ParseResult ParseLaunch(std::span<const std::string> args) {
  CommandLine line;
  line.command = Command::kLaunch;
  LaunchOptions& o = line.launch;
  std::optional<std::string> ranks_text;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (word == "--") {
      ++i;
      break;
    }
    if (word == "--help" || word == "-h") return Valid(CommandLine{});
    if (word == "-n" || word == "--ranks") {
      const std::string rule = RangeRule(1, kMaxLaunchRanks);
      if (i + 1 >= args.size() || LooksLikeFlag(args[i + 1])) {
        return Invalid(kLaunchPrefix + word + " needs a value: " + rule);
      }
      const std::string& value = args[++i];
      if (ranks_text) {
        return Invalid(kLaunchPrefix + word + " " + Shown(value) +
                       " violates rule: -n / --ranks at most once (already given as " + Shown(*ranks_text) + ")");
      }
      ranks_text = value;
      const auto v = DecimalInteger<int64_t>(value);
      if (!v || *v < 1 || *v > kMaxLaunchRanks) {
        return Invalid(kLaunchPrefix + word + " " + Shown(value) + " violates rule: " + rule);
      }
      o.ranks = static_cast<int>(*v);
    } else if (!word.empty() && word[0] == '-') {
      return Invalid(UnknownFlag(kLaunchPrefix, word));
    } else {
      break;  // the program: it and everything after it are the ranks' command
    }
  }
  if (!ranks_text) return Invalid(kLaunchPrefix + std::string("-n N is required: the number of rank processes"));
  if (i >= args.size()) return Invalid(kLaunchPrefix + std::string("missing PROGRAM: the command each rank runs"));
  if (args[i].empty()) return Invalid(kLaunchPrefix + std::string("PROGRAM '' violates rule: a non-empty name"));
  o.command.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  return Valid(std::move(line));
}

std::string BuildUsage() {
  std::string text = R"(usage: moe-ep <command> [flags]

commands:
  run     dispatch + combine across in-process ranks (threads), verified bit for bit against the
          reference model, with per-operation median timings next to a memcpy of the same bytes;
          --processes: each rank a process of this host; started by mpirun, each process is one
          rank (on one or more hosts; docs/hosts.md)
  bench   dispatch + combine timed over a sweep (tokens per rank, ranks, transports, quantization):
          medians, GB/s, the ratio to a memcpy of the same bytes and the barrier round trip of the
          same transport, measured in the same run, next to an MPI_Alltoallv dispatcher; see below
  launch  -n|--ranks N [--] PROGRAM [ARGS...]: start N processes of PROGRAM as the ranks of one job, with
          MOE_EP_RANK, MOE_EP_WORLD_SIZE and a fresh MOE_EP_RENDEZVOUS set (moe_ep::JoinProcessGroup
          reads them); their output is prefixed "[rank r] "; the exit status is the first non-zero
          one of the ranks (128 + signal for a killed rank); SIGINT, SIGTERM and SIGHUP are handed on
          to the ranks (a second one kills them); N in [1, )" +
                     std::to_string(kMaxLaunchRanks) + R"(]
  help    [run|bench|launch]: this text, which covers every command (also --help or -h, after any command)

run flags (each at most once), their bounds and [defaults: the realistic decode configuration]:
)";
  for (const RunFlag& flag : kRunFlags) {
    const char* value = flag.kind == Kind::kSwitch ? "" : flag.kind == Kind::kInt8 ? " int8" : " N";
    std::string row = "  " + std::string(flag.name) + value;
    row.resize(std::max<size_t>(row.size() + 1, 23), ' ');
    row += flag.help;
    if (flag.kind == Kind::kInteger) {
      row.resize(std::max<size_t>(row.size() + 1, 66), ' ');
      row += std::to_string(flag.min) + ".." + std::to_string(flag.max);
      row.resize(std::max<size_t>(row.size() + 1, 79), ' ');
      row.append("[").append(flag.default_text).append("]");
    } else if (flag.kind == Kind::kSeed) {
      row.append(" [").append(flag.default_text).append("]");
    }
    text += row + "\n";
  }
  text += R"(
run rules, all checked before any input is made (E = --ranks, S = --shared-experts, K = --topk):
  --shared-experts < --ranks                  (a rank is left for the routed experts)
  --experts a multiple of E - S               (every MoE rank holds L = --experts / (E - S) experts)
  --topk <= --experts
  --bs x (K + shared) <= )" +
          std::to_string(plan::kMaxCombineFlags) +
          R"(              (the combine flags of a rank's window)
  each rank's window, 2 x (bs x tokD x E x L + bs x tokC x (K + shared)) bytes with tokD ~ tokC ~ 2 x
  --hidden, fits MOE_EP_WINDOW_MB (reserved, not committed: raising it costs no memory)
  the job's memory, estimated at 2 x --hidden x (4 x the receive rows of all ranks + 8 x E x --bs x
  (K + shared)) bytes, stays <= )" +
          std::to_string(kMaxJobBytes >> 30) + R"( GiB (a MoE rank's receive rows: --bs x E x min(L, K);
  with --processes the second term counts E times: every rank process holds every rank's inputs)

bench flags (each at most once; run's flag rules above hold for every configuration of the sweep, not the
window and memory ones: bench sizes each configuration's window itself, whatever MOE_EP_WINDOW_MB says):
  --bs N[,N...]        tokens per rank                                      [1,8,64,128,512,2048]
  --ranks N[,N...]     EP ranks                                             [8]
  --transports LIST    of threads, processes (this host, shared memory), hosts (the MPI transport,
                       mpirun on this host), alltoallv (the baseline, bf16 only; needs mpirun)
                                                                   [threads,processes,alltoallv]
  --quant LIST         of off, int8 (dispatch quantMode 2)                  [off]
  --hidden, --topk, --experts, --seed as for run; --repeats N [9], --warmup N [2]
  --memory heap|private  x and the expert outputs in the shared heap, or in each rank's private memory
                       as torch tensors are (pushed, or copied out by their readers from 8 MiB of rows
                       a call: MOE_EP_CROSS_MEMORY)                                           [heap]
  --json FILE          also write the results as JSON (scripts/plot_bench.py draws them), once the sweep is
                       done: a sweep a signal or an error ends leaves the file as it was
  A configuration whose memory would pass 80% of MemAvailable is skipped, with a note; a sweep that measured
  nothing (every configuration skipped) exits 1.

environment: MOE_EP_TIMEOUT_MS, MOE_EP_WINDOW_MB, MOE_EP_ISA, MOE_EP_DATA_PATH, MOE_EP_CROSS_MEMORY, MOE_EP_THREADS,
MOE_EP_THREAD_MIN_BYTES, MOE_EP_HOSTS_RELAY, MOE_EP_HOSTS_MESSAGE_BYTES (see include/moe_ep/options.h); TMPDIR
(run --processes and bench keep the ranks' timings in a directory there, default /tmp)
exit status: 0 verified (bench: something measured, nothing failed), 1 mismatch or error, 2 bad usage (one line on stderr naming the flag and the rule)
)";
  return text;
}

}  // namespace

std::string BenchConfigurationViolation(const JobOptions& o) {
  return CrossFlagViolation(o, std::nullopt, kBenchPrefix, false);
}

uint64_t WindowBytesNeeded(const JobOptions& o) {
  return plan::WindowLayout(ConfigOf(o, o.shared_expert_ranks)).ep_window_bytes;
}

uint64_t EstimatedJobBytes(const JobOptions& o) {
  // In double: exact enough for a bound, and it cannot wrap for any option values.
  const double shared_ranks = static_cast<double>(o.shared_expert_ranks);
  const double moe_ranks = static_cast<double>(o.ranks) - shared_ranks;
  const double receive_rows = shared_ranks * static_cast<double>(plan::ReceiveRows(ConfigOf(o, 0))) +
                              moe_ranks * static_cast<double>(plan::ReceiveRows(ConfigOf(o, o.ranks - 1)));
  const double travelling_rows = static_cast<double>(o.ranks) * static_cast<double>(o.bs) *
                                 static_cast<double>(o.top_k + (o.shared_expert_ranks > 0 ? 1 : 0));
  // Rank processes (--processes) each draw every rank's inputs and compute the reference: that term E times.
  const double holders = o.processes ? static_cast<double>(o.ranks) : 1.0;
  const double bytes = 2.0 * static_cast<double>(o.hidden) * (4.0 * receive_rows + 8.0 * travelling_rows * holders);
  constexpr double kAll = static_cast<double>(std::numeric_limits<uint64_t>::max());
  return bytes >= kAll ? std::numeric_limits<uint64_t>::max() : static_cast<uint64_t>(bytes);
}

ParseResult ParseCommandLine(std::span<const std::string> args, std::optional<uint64_t> window_bytes) {
  try {
    if (args.empty()) return Invalid("moe-ep: missing command: run, bench, launch or help");
    const std::string& command = args.front();
    if (IsHelp(command)) {  // one text covers every command, so "help run" is help too; anything else is a typo
      const bool about_a_command = args.size() == 2 && (args[1] == "run" || args[1] == "bench" || args[1] == "launch");
      if (args.size() == 1 || about_a_command) return Valid(CommandLine{});
      return Invalid("moe-ep: " + command + " takes no argument but a command (run, bench or launch), not " +
                     Shown(args[1]) + (args.size() > 2 ? " ..." : ""));
    }
    if (command == "run") return ParseRun(args.subspan(1), window_bytes);
    if (command == "launch") return ParseLaunch(args.subspan(1));
    if (command == "bench") return ParseBench(args.subspan(1));
    if (command == "bench-rank" && args.size() == 2) {  // started by `bench` itself, with the point to measure
      CommandLine line;
      line.command = Command::kBenchRank;
      line.bench_point = args[1];
      return Valid(std::move(line));
    }
    return Invalid("moe-ep: unknown command " + Shown(command) + " (commands: run, bench, launch, help)");
  } catch (const std::exception& e) {  // only std::bad_alloc can reach here; the caller still gets an answer
    ParseResult result = Invalid(std::string("moe-ep: ") + e.what());
    result.exit_code = 1;
    return result;
  }
}

const std::string& UsageText() {
  static const std::string text = BuildUsage();
  return text;
}

}  // namespace moe_ep::tools
