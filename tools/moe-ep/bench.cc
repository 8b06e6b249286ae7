// `moe-ep bench`: the sweep, one measurement per (configuration, system), the table and the JSON file.
#include "moe-ep/bench.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>

#include "base/env.h"
#include "kernels/kernels.h"
#include "moe-ep/launch.h"
#include "moe-ep/options.h"
#include "moe-ep/rank_job.h"
#include "moe_ep/error.h"
#include "ops/workers.h"

namespace moe_ep::tools {

const char* SystemName(BenchSystem system) {
  switch (system) {
    case BenchSystem::kThreads:
      return "threads";
    case BenchSystem::kProcesses:
      return "processes";
    case BenchSystem::kHosts:
      return "hosts";
    case BenchSystem::kAlltoallv:
      return "alltoallv";
  }
  return "?";
}

namespace {

// What a rank process of a measurement is told (the hidden `bench-rank` command's one argument): the
// configuration as `moe-ep run` options, which systems it times, and where it leaves the times.
struct BenchPoint {
  JobOptions job;
  bool processes = false;  // a rank of a `moe-ep launch` job (kProcesses), else of an mpirun job
  bool hosts = false;      // mpirun: time moe_ep over the hosts transport
  bool alltoallv = false;  // mpirun: time the MPI_Alltoallv dispatcher
  std::string dir;
};

std::string Encode(const BenchPoint& p) {
  const JobOptions& o = p.job;
  std::ostringstream out;
  out << "processes=" << p.processes << ";hosts=" << p.hosts << ";alltoallv=" << p.alltoallv << ";ranks=" << o.ranks
      << ";tokens=" << o.bs << ";hidden=" << o.hidden << ";topk=" << o.top_k << ";experts=" << o.experts
      << ";quant=" << o.quant_int8 << ";repeats=" << o.repeats << ";warmup=" << o.warmup << ";seed=" << o.seed
      << ";private=" << o.private_inputs << ";dir=" << p.dir;
  return out.str();
}

// The inverse of Encode, checked as `bench` checks its flags (the argument comes from RunBench, but the command
// can be typed): throws Error naming the first field that is missing, malformed or breaks a rule.
BenchPoint Decode(const std::string& text) {
  constexpr const char* kPrefix = "moe-ep bench-rank: ";
  const size_t dir_at = text.find(";dir=");  // the last field: the rest of the text, whatever it holds
  std::map<std::string, std::string> fields;
  std::istringstream in(text.substr(0, dir_at));
  for (std::string field; std::getline(in, field, ';');) {
    const size_t equals = field.find('=');
    if (equals != std::string::npos) fields[field.substr(0, equals)] = field.substr(equals + 1);
  }
  auto number = [&](const char* name, int64_t min, int64_t max) -> int64_t {
    const std::string& value = fields[name];
    int64_t v = 0;
    const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (error != std::errc() || end != value.data() + value.size() || v < min || v > max) {
      throw Error(ErrorCode::kInvalidParam, std::string(kPrefix) + name + " '" + value +
                                                "' violates rule: an integer in [" + std::to_string(min) + ", " +
                                                std::to_string(max) + "] (this command is started by moe-ep bench)");
    }
    return v;
  };
  BenchPoint p;
  p.processes = number("processes", 0, 1) != 0;
  p.hosts = number("hosts", 0, 1) != 0;
  p.alltoallv = number("alltoallv", 0, 1) != 0;
  JobOptions& o = p.job;
  o.ranks = static_cast<int>(number("ranks", 1, kMaxRanks));
  o.bs = number("tokens", 1, kMaxBs);
  o.hidden = number("hidden", 1, kMaxHidden);
  o.top_k = number("topk", 1, kMaxTopK);
  o.experts = number("experts", 1, kMaxExperts);
  o.quant_int8 = number("quant", 0, 1) != 0;
  o.private_inputs = number("private", 0, 1) != 0;
  o.repeats = static_cast<int>(number("repeats", 1, kMaxRounds));
  o.warmup = static_cast<int>(number("warmup", 0, kMaxRounds));
  const std::string& seed = fields["seed"];
  const auto [end, error] = std::from_chars(seed.data(), seed.data() + seed.size(), o.seed);
  if (error != std::errc() || end != seed.data() + seed.size()) {
    throw Error(ErrorCode::kInvalidParam, std::string(kPrefix) + "seed '" + seed + "' violates rule: an integer");
  }
  if (std::string violation = BenchConfigurationViolation(o); !violation.empty()) {
    throw Error(ErrorCode::kInvalidParam, violation);
  }
  if (dir_at == std::string::npos) throw Error(ErrorCode::kInvalidParam, std::string(kPrefix) + "the point has no dir");
  p.dir = text.substr(dir_at + 5);
  return p;
}

}  // namespace

GroupOptions BenchGroupOptions(const JobOptions& o) {
  GroupOptions options;
  options.name = "moe-ep bench";
  options.window_bytes = std::max(WindowBytesNeeded(o), uint64_t{1} << 20);
  return options;
}

BenchInputs DrawBenchInputs(const JobOptions& o, int rank) {
  // seed_seq keeps 32 bits of each value: the seed goes in as two.
  std::seed_seq seq{o.seed & 0xFFFFFFFFu, o.seed >> 32, static_cast<uint64_t>(o.bs), static_cast<uint64_t>(rank)};
  std::mt19937_64 rng(seq);
  BenchInputs in;
  std::uniform_int_distribution<uint32_t> mantissa(0, 0x7F), exponent(0x7C, 0x7E);  // bf16 in +-[1/8, 1)
  in.x.resize(o.bs * o.hidden);
  for (auto& v : in.x) v = static_cast<uint16_t>((rng() & 0x8000) | (exponent(rng) << 7) | mantissa(rng));
  std::vector<int32_t> experts(o.experts);
  std::uniform_real_distribution<float> weight(0.0f, 1.0f);
  for (int64_t t = 0; t < o.bs; ++t) {
    std::iota(experts.begin(), experts.end(), 0);
    for (int64_t k = 0; k < o.top_k; ++k) {  // partial Fisher-Yates: the first K are a uniform draw
      std::uniform_int_distribution<int64_t> pick(k, o.experts - 1);
      std::swap(experts[k], experts[pick(rng)]);
      in.expert_ids.push_back(experts[k]);
      in.expert_scales.push_back(weight(rng));
    }
  }
  return in;
}

namespace {

// One row of the table: a configuration on one system.
struct BenchResult {
  BenchSystem system;
  JobOptions job;
  std::vector<double> medians;  // by TimedOp; empty when the measurement did not run
  int64_t rows = 0;             // received by all ranks together
  int dispatch_pulled = 0;      // ranks whose rows were read in place or by copy (pulled) in dispatch
  int combine_pulled = 0;       // ... in combine
  int combine_senders = 0;      // ranks with rows to give back in combine (every rank gives tokens in dispatch)
  std::string note;             // why there are no medians
};

uint64_t MemAvailableBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib << 10;
  }
  return 0;
}

// The memory a measurement touches, roughly: per rank x, and for the rows it receives (about bs x K) moe_ep's
// expandX, expert outputs, memcpy destination and, when rows are pushed, their window slots both ways; the
// baseline holds about seven buffers of those rows (sent, received, sorted, returned, ...).
uint64_t TouchedBytes(const JobOptions& o, BenchSystem system) {
  const uint64_t row = 2 * static_cast<uint64_t>(o.hidden);
  const uint64_t rows = static_cast<uint64_t>(o.bs) * static_cast<uint64_t>(o.top_k);
  const bool pushed = rows * row < kPullMinBytes;
  const uint64_t copies = system == BenchSystem::kAlltoallv ? 7 : pushed ? 5 : 3;
  return static_cast<uint64_t>(o.ranks) * (o.bs * row + rows * row * copies);
}

std::string GiB(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f GiB", static_cast<double>(bytes) / (1 << 30));
  return text;
}

#if MOE_EP_HAVE_MPI
constexpr bool kBuiltWithMpi = true;
#else
constexpr bool kBuiltWithMpi = false;
#endif

bool MpirunFound() { return kBuiltWithMpi && RunProgram({"sh", "-c", "command -v mpirun >/dev/null 2>&1"}) == 0; }

// Measures one configuration on the systems asked for; results in the order of `systems`.
std::vector<BenchResult> MeasureConfiguration(const BenchOptions& options, const JobOptions& job, bool mpirun) {
  std::vector<BenchResult> results;
  for (BenchSystem system : options.systems) results.push_back({system, job, {}, 0, 0, 0, 0, ""});
  auto result_of = [&](BenchSystem system) -> BenchResult& {
    return *std::find_if(results.begin(), results.end(), [&](const BenchResult& r) { return r.system == system; });
  };
  auto record = [&](BenchSystem system, const std::vector<RankTimes>& times) {
    BenchResult& r = result_of(system);
    r.medians = SlowestRankMedians(times);
    for (const RankTimes& rank : times) {
      r.rows += rank.rows;
      r.dispatch_pulled += rank.dispatch_readers > 0 ? 1 : 0;
      r.combine_pulled += rank.combine_readers > 0 ? 1 : 0;
      r.combine_senders += rank.rows > 0 ? 1 : 0;
    }
  };
  const uint64_t available = MemAvailableBytes();
  for (BenchResult& r : results) {
    if (const uint64_t touched = TouchedBytes(job, r.system); touched > available / 10 * 8) {
      r.note = "skipped: needs about " + GiB(touched) + ", " + GiB(available) + " available";
    }
  }
  // Asked for and not skipped.
  auto wanted = [&](BenchSystem s) {
    return std::count(options.systems.begin(), options.systems.end(), s) > 0 && result_of(s).note.empty();
  };
  auto attempt = [&](std::initializer_list<BenchSystem> systems, const std::function<void()>& measure) {
    try {
      measure();
    } catch (const std::exception& e) {
      for (BenchSystem s : systems) {
        if (wanted(s)) result_of(s).note = std::string("failed: ") + e.what();
      }
    }
  };
  if (wanted(BenchSystem::kThreads)) {
    attempt({BenchSystem::kThreads}, [&] {
      std::vector<BenchInputs> inputs(job.ranks);
      for (int r = 0; r < job.ranks; ++r) inputs[r] = DrawBenchInputs(job, r);
      record(BenchSystem::kThreads, TimeThreadRanks(
                                        job, BenchGroupOptions(job), [&](int r) { return inputs[r].View(); }, true));
    });
  }
  if (wanted(BenchSystem::kProcesses)) {
    attempt({BenchSystem::kProcesses}, [&] {
      const ResultsDir dir;
      const BenchPoint point{job, true, false, false, dir.path()};
      const int status =
          Launch(LaunchOptions{job.ranks, {SelfExecutable(), "bench-rank", Encode(point)}, /*end_on_failure=*/true});
      if (status != 0) throw Error(ErrorCode::kInternal, "a rank process exited with status " + std::to_string(status));
      record(BenchSystem::kProcesses, ReadRankTimes(dir.path(), "processes", job.ranks));
    });
  }
  if (wanted(BenchSystem::kAlltoallv) && job.quant_int8) {
    result_of(BenchSystem::kAlltoallv).note = "skipped: the baseline moves bf16 rows only";
  }
  const bool hosts = wanted(BenchSystem::kHosts), alltoallv = wanted(BenchSystem::kAlltoallv);
  if (InterruptedBy() != 0) {  // the processes' launcher caught a signal: the sweep ends (RunBench), no mpirun first
    for (BenchSystem s : {BenchSystem::kHosts, BenchSystem::kAlltoallv}) {
      if (wanted(s)) result_of(s).note = "not measured: the sweep was interrupted";
    }
    return results;
  }
  if ((hosts || alltoallv) && !mpirun) {
    for (BenchSystem s : {BenchSystem::kHosts, BenchSystem::kAlltoallv}) {
      if (wanted(s)) result_of(s).note = "skipped: no mpirun, or moe-ep built without MPI";
    }
  } else if (hosts || alltoallv) {
    attempt({BenchSystem::kHosts, BenchSystem::kAlltoallv}, [&] {
      const ResultsDir dir;
      const BenchPoint point{job, false, hosts, alltoallv, dir.path()};
      std::vector<std::string> mpirun = {"mpirun",
                                         "-n",
                                         std::to_string(job.ranks),
                                         "--oversubscribe",
                                         "--bind-to",
                                         "none",
                                         "--mca",
                                         "mpi_yield_when_idle",
                                         "1"};
      if (geteuid() == 0) mpirun.emplace_back("--allow-run-as-root");  // mpirun refuses root without it
      mpirun.insert(mpirun.end(), {SelfExecutable(), "bench-rank", Encode(point)});
      const int status = RunProgram(mpirun);
      if (status != 0) throw Error(ErrorCode::kInternal, "mpirun exited with status " + std::to_string(status));
      if (hosts) record(BenchSystem::kHosts, ReadRankTimes(dir.path(), "hosts", job.ranks));
      if (alltoallv) record(BenchSystem::kAlltoallv, ReadRankTimes(dir.path(), "alltoallv", job.ranks));
    });
  }
  return results;
}

uint64_t DispatchBytes(const BenchResult& r) { return r.rows * DispatchRowBytes(r.job); }
uint64_t CombineBytes(const BenchResult& r) { return r.rows * 2 * r.job.hidden; }

// The baseline's time over this system's for the same op, or 0 when either is missing.
double SpeedupOverBaseline(const std::vector<BenchResult>& results, const BenchResult& r, TimedOp op) {
  for (const BenchResult& other : results) {
    if (other.system == BenchSystem::kAlltoallv && !other.medians.empty() && !r.medians.empty()) {
      return other.medians[op] / r.medians[op];
    }
  }
  return 0;
}

// How a measurement's rows travelled in one op: those of every rank that had rows to give were pulled, none,
// or some. (At a few tokens a rank may receive no rows in dispatch and so give none back in combine.)
const char* PathOf(const BenchResult& r, int pulled_ranks, int senders) {
  if (r.system == BenchSystem::kAlltoallv) return "-";
  return pulled_ranks == senders ? "pull" : pulled_ranks == 0 ? "push" : "part";
}

void PrintHeader() {
  std::printf("%-9s %5s %6s %5s %9s | %11s %7s %7s | %11s %7s %7s | %10s | %s\n", "system", "ranks", "tokens", "quant",
              "path d/c", "dispatch us", "GB/s", "memcpy", "combine us", "GB/s", "memcpy", "barrier us",
              "alltoallv/this (dispatch, combine)");
}

void PrintResult(const std::vector<BenchResult>& results, const BenchResult& r) {
  const std::string path = r.medians.empty() ? std::string("")
                                             : std::string(PathOf(r, r.dispatch_pulled, r.job.ranks)) + "/" +
                                                   PathOf(r, r.combine_pulled, r.combine_senders);
  std::printf("%-9s %5d %6lld %5s %9s | ", SystemName(r.system), r.job.ranks, static_cast<long long>(r.job.bs),
              r.job.quant_int8 ? "int8" : "-", path.c_str());
  if (r.medians.empty()) {
    std::printf("%s\n", r.note.c_str());
    std::fflush(stdout);  // a sweep a signal ends leaves what it printed
    return;
  }
  const auto& m = r.medians;
  std::printf("%11.1f %7.2f %6.2fx | %11.1f %7.2f %6.2fx | %10.1f |", m[kDispatch] * 1e6,
              DispatchBytes(r) / m[kDispatch] / 1e9, m[kDispatch] / m[kMemcpyDispatch], m[kCombine] * 1e6,
              CombineBytes(r) / m[kCombine] / 1e9, m[kCombine] / m[kMemcpyCombine], m[kBarrier] * 1e6);
  if (r.system != BenchSystem::kAlltoallv && SpeedupOverBaseline(results, r, kDispatch) > 0) {
    std::printf(" %.2fx, %.2fx", SpeedupOverBaseline(results, r, kDispatch), SpeedupOverBaseline(results, r, kCombine));
  }
  std::printf("\n");
  std::fflush(stdout);
}

// A JSON string: quotes, backslashes and control characters escaped.
std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (const char ch : text) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(ch)));
      out += escaped;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

// A JSON number, or null for what JSON has no number for (a median of 0 divides into infinity).
std::string JsonNumber(double value) {
  if (!std::isfinite(value)) return "null";
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

// Writes the results to `out`, the file `path` (removed if writing fails).
void WriteJson(std::ofstream& out, const std::string& path, const BenchOptions& o, uint64_t seed,
               const std::vector<std::vector<BenchResult>>& all) {
  out << "{\n  \"config\": {\"hidden\": " << o.hidden << ", \"top_k\": " << o.top_k << ", \"experts\": " << o.experts
      << ", \"dtype\": \"bf16\", \"repeats\": " << o.repeats << ", \"warmup\": " << o.warmup << ", \"seed\": \"" << seed
      << "\", \"cores\": " << std::thread::hardware_concurrency() << ", \"kernels\": \""
      << kernels::IsaName(kernels::ActiveIsa()) << "\", \"memory\": \"" << (o.private_inputs ? "private" : "heap")
      << "\", \"statistic\": \"median over rounds of first start to last end\"},\n"
      << "  \"results\": [";
  const char* separator = "\n";
  for (const auto& configuration : all) {
    for (const BenchResult& r : configuration) {
      out << separator << "    {\"system\": \"" << SystemName(r.system) << "\", \"ranks\": " << r.job.ranks
          << ", \"tokens\": " << r.job.bs << ", \"quant\": " << (r.job.quant_int8 ? "\"int8\"" : "null");
      separator = ",\n";
      if (r.medians.empty()) {
        out << ", \"note\": " << JsonString(r.note) << "}";
        continue;
      }
      const auto& m = r.medians;
      out << ", \"rows\": " << r.rows << ", \"barrier_us\": " << JsonNumber(m[kBarrier] * 1e6);
      const struct {
        const char* name;
        TimedOp op, copy;
        uint64_t bytes;
        int pulled, senders;
      } ops[] = {{"dispatch", kDispatch, kMemcpyDispatch, DispatchBytes(r), r.dispatch_pulled, r.job.ranks},
                 {"combine", kCombine, kMemcpyCombine, CombineBytes(r), r.combine_pulled, r.combine_senders}};
      for (const auto& op : ops) {
        out << ", \"" << op.name << "\": {\"median_us\": " << JsonNumber(m[op.op] * 1e6) << ", \"bytes\": " << op.bytes
            << ", \"path\": \"" << PathOf(r, op.pulled, op.senders) << "\", \"pulled_ranks\": " << op.pulled
            << ", \"gb_per_s\": " << JsonNumber(op.bytes / m[op.op] / 1e9)
            << ", \"memcpy_us\": " << JsonNumber(m[op.copy] * 1e6)
            << ", \"ratio_to_memcpy\": " << JsonNumber(m[op.op] / m[op.copy]);
        if (const double s = SpeedupOverBaseline(configuration, r, op.op);
            s > 0 && r.system != BenchSystem::kAlltoallv) {
          out << ", \"alltoallv_over_this\": " << JsonNumber(s);
        }
        out << "}";
      }
      out << "}";
    }
  }
  out << "\n  ]\n}\n";
  out.flush();
  if (!out) {
    std::remove(path.c_str());
    throw Error(ErrorCode::kInvalidParam, "--json " + path + ": writing the file failed");
  }
}

}  // namespace

std::vector<JobOptions> Configurations(const BenchOptions& o, uint64_t seed) {
  std::vector<JobOptions> jobs;
  for (int ranks : o.ranks) {
    for (bool quant : o.quant) {
      for (int64_t tokens : o.tokens) {
        JobOptions& job = jobs.emplace_back();
        job.ranks = ranks;
        job.bs = tokens;
        job.hidden = o.hidden;
        job.top_k = o.top_k;
        job.experts = o.experts;
        job.quant_int8 = quant;
        job.repeats = o.repeats;
        job.warmup = o.warmup;
        job.seed = seed;
        job.private_inputs = o.private_inputs;
      }
    }
  }
  return jobs;
}

int RunBench(const BenchOptions& o) {
  const uint64_t seed = SeedOr(o.seed);
  const bool mpirun = MpirunFound();
  if (InterruptedBy() != 0) return 1;  // a signal came while looking for mpirun: the sweep ends before it begins
  std::printf(
      "moe-ep bench: H %lld, top-%lld of %lld experts, bf16 tokens; medians of %d rounds after %d warm-up, a round "
      "from the first rank's start to the last rank's end; x and expert outputs in %s, written anew before each "
      "dispatch and combine; kernels %s, %u cores; seed "
      "%llu\n",
      static_cast<long long>(o.hidden), static_cast<long long>(o.top_k), static_cast<long long>(o.experts), o.repeats,
      o.warmup, o.private_inputs ? "private memory" : "the shared heap", kernels::IsaName(kernels::ActiveIsa()),
      std::thread::hardware_concurrency(), static_cast<unsigned long long>(seed));
  std::printf(
      "  GB/s: rows received x row bytes, all ranks, over the median; memcpy: the op's median over that of a memcpy of "
      "the same bytes on every rank; barrier: a round trip of the same transport; alltoallv/this above 1: moe_ep is "
      "faster\n");
  // The results are written next to the --json file and renamed over it once complete, so that a sweep that fails
  // or is interrupted leaves an older file as it was; made (and removed) now, so that a bad path fails before
  // anything is measured.
  const std::string json_partial = o.json_path + ".partial." + std::to_string(getpid());  // two sweeps' apart
  if (!o.json_path.empty()) {
    if (!std::ofstream(json_partial)) {
      throw Error(ErrorCode::kInvalidParam,
                  "--json " + o.json_path + ": cannot write " + json_partial + ": " + std::strerror(errno));
    }
    std::remove(json_partial.c_str());
  }
  PrintHeader();
  std::vector<std::vector<BenchResult>> all;
  bool failed = false, measured = false;
  for (const JobOptions& job : Configurations(o, seed)) {
    all.push_back(MeasureConfiguration(o, job, mpirun));
    for (const BenchResult& r : all.back()) {
      PrintResult(all.back(), r);
      failed = failed || r.note.starts_with("failed");
      measured = measured || !r.medians.empty();
    }
    // A signal stopped the measurement (or its launcher caught one and forwarded it to the ranks): the sweep ends
    // as it did there, writing nothing.
    if (InterruptedBy() != 0) return 1;
  }
  if (!o.json_path.empty()) {
    std::ofstream json(json_partial);
    WriteJson(json, json_partial, o, seed, all);
    json.close();
    if (std::rename(json_partial.c_str(), o.json_path.c_str()) != 0) {
      const int rename_errno = errno;
      std::remove(json_partial.c_str());
      throw Error(ErrorCode::kInvalidParam, "--json " + o.json_path + ": cannot replace it with " + json_partial +
                                                ": " + std::strerror(rename_errno));
    }
    std::printf("wrote %s (scripts/plot_bench.py draws it)\n", o.json_path.c_str());
  }
  if (!measured) std::fprintf(stderr, "moe-ep bench: nothing was measured: every configuration was skipped\n");
  return failed || !measured ? 1 : 0;
}

#if !MOE_EP_HAVE_MPI
int RunBenchMpiRank(const JobOptions&, bool, bool, const std::string&) {
  throw Error(ErrorCode::kInvalidParam, "moe-ep bench-rank: this moe-ep was built without MPI");
}
#endif

int RunBenchRank(const std::string& text) {
  const BenchPoint p = Decode(text);
  if (!p.processes) return RunBenchMpiRank(p.job, p.hosts, p.alltoallv, p.dir);
  Group group = JoinProcessGroup(BenchGroupOptions(p.job));
  const BenchInputs inputs = DrawBenchInputs(p.job, group.rank());
  RankJob job(p.job, group.rank(), inputs.View(), group);
  WriteRankTimes(p.dir, "processes", group.rank(), job.Time([&] { job.LineUp(); }, true));
  return 0;
}

}  // namespace moe_ep::tools
