// MPI benchmark: moe_ep's dispatch and combine across hosts against an MPI_Alltoallv dispatcher and a memcpy.
//
// Run under mpirun (every rank joins a moe_ep group over the hosts transport), e.g.
//   mpirun -np 8 -H host1:4,host2:4 --bind-to none --mca mpi_yield_when_idle 1 build/bench/hosts_bench
// or on simulated hosts: scripts/bench_hosts.sh. `hosts_bench --help` lists the options.
#include <mpi.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "alltoallv_dispatcher.h"
#include "moe_ep/error.h"
#include "moe_ep/group.h"
#include "moe_ep/ops.h"

namespace {

using moe_ep_bench::AlltoallvDispatcher;
using moe_ep_bench::Bf16ToFloat;
using moe_ep_bench::FloatToBf16;

constexpr const char* kUsage = R"(usage: mpirun ... hosts_bench [options]

Per configuration (one per --tokens value), on every rank of the job: warm up, then REPEATS rounds of
moe_ep dispatch, moe_ep combine, the MPI_Alltoallv dispatcher's dispatch and combine, and a memcpy of
the bytes dispatch receives on this rank. Each op is timed after an MPI_Barrier as the slowest rank's
time; the table shows medians over the rounds. Once per configuration the baseline's expandX and combine
output are compared with moe_ep's, bit for bit, on every rank ("verified").

options:
  --tokens N[,N...]  tokens per rank, one configuration each, 1..8192 (default 128,512)
  --hidden H         hidden size, 1..65536 (default 7168)
  --top-k K          experts per token, 1..1024 (default 8)
  --experts E        routed experts, spread evenly over the ranks, 1..4096 (default 64)
  --repeats N        timed rounds per configuration, 1..100000 (default 15)
  --warmup N         untimed rounds first, 1..100000 (default 3)
  --seed S           routing and token values, 1..2^64-1 (default: drawn, printed)
  --help             this text
Data type: bf16. Routing: each token picks K distinct experts uniformly at random. moe_ep's window is
2 GiB per rank unless MOE_EP_WINDOW_MB says otherwise; larger configurations say how much they need.
)";

struct Options {
  std::vector<int64_t> tokens_per_rank = {128, 512};
  int64_t hidden = 7168;
  int top_k = 8;
  int experts = 64;
  int repeats = 15;
  int warmup = 3;
  uint64_t seed = 0;
  bool seed_given = false;
};

// Parses the command line; returns false (having said why on rank 0) when the program should stop.
bool ParseOptions(int argc, char** argv, bool talk, Options& options, int& exit_status) {
  // The bounds of `moe-ep run`'s flags: beyond them a count wraps an int, or the sizes their product.
  const auto max_of = [](const std::string& flag) -> int64_t {
    if (flag == "--tokens") return 8192;
    if (flag == "--hidden") return 65536;
    if (flag == "--top-k") return 1024;
    if (flag == "--experts") return 4096;
    return 100000;  // --repeats, --warmup
  };
  // The whole text, in digits (from_chars takes no space and no '+').
  const auto whole_number = [](const std::string& text, auto& value) {
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    return error == std::errc() && end == text.data() + text.size();
  };
  auto positive = [&](const std::string& flag, const std::string& text, int64_t& value) {
    if (!whole_number(text, value) || value <= 0 || value > max_of(flag)) {
      if (talk) {
        std::fprintf(stderr, "hosts_bench: %s wants an integer in [1, %lld], not '%s'\n", flag.c_str(),
                     static_cast<long long>(max_of(flag)), text.c_str());
      }
      return false;
    }
    return true;
  };
  exit_status = 2;
  std::set<std::string> given;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      if (talk) std::fputs(kUsage, stdout);
      exit_status = 0;
      return false;
    }
    if (i + 1 >= argc) {
      if (talk) std::fprintf(stderr, "hosts_bench: unknown option or missing value: %s (see --help)\n", flag.c_str());
      return false;
    }
    const std::string value = argv[++i];
    if (!given.insert(flag).second) {
      if (talk) std::fprintf(stderr, "hosts_bench: %s given twice; give each flag at most once\n", flag.c_str());
      return false;
    }
    int64_t number = 0;
    if (flag == "--tokens") {
      options.tokens_per_rank.clear();
      for (size_t start = 0; start <= value.size();) {
        const size_t comma = std::min(value.find(',', start), value.size());
        if (!positive(flag, value.substr(start, comma - start), number)) return false;
        options.tokens_per_rank.push_back(number);
        start = comma + 1;
      }
    } else if (flag == "--seed") {
      if (!whole_number(value, options.seed) || options.seed == 0) {
        if (talk) {
          std::fprintf(stderr, "hosts_bench: --seed wants an integer in [1, 2^64 - 1], not '%s'\n", value.c_str());
        }
        return false;
      }
      options.seed_given = true;
    } else if (flag == "--hidden" || flag == "--top-k" || flag == "--experts" || flag == "--repeats" ||
               flag == "--warmup") {
      if (!positive(flag, value, number)) return false;
      if (flag == "--hidden") options.hidden = number;
      if (flag == "--top-k") options.top_k = static_cast<int>(number);
      if (flag == "--experts") options.experts = static_cast<int>(number);
      if (flag == "--repeats") options.repeats = static_cast<int>(number);
      if (flag == "--warmup") options.warmup = static_cast<int>(number);
    } else {
      if (talk) std::fprintf(stderr, "hosts_bench: unknown option %s (see --help)\n", flag.c_str());
      return false;
    }
  }
  if (options.top_k > options.experts) {
    if (talk) std::fprintf(stderr, "hosts_bench: --top-k %d exceeds --experts %d\n", options.top_k, options.experts);
    return false;
  }
  return true;
}

// Memory that is not touched until written, so outputs sized for the worst case (moe_ep's A rows) cost
// only the rows that arrive.
template <typename T>
std::unique_ptr<T[]> Untouched(size_t count) {
  return std::unique_ptr<T[]>(new T[count]);
}

// One rank's inputs: token rows, K distinct experts per token, and the combine weights.
struct RankInputs {
  std::vector<uint16_t> x;
  std::vector<int32_t> expert_ids;
  std::vector<float> weights;
};

RankInputs DrawInputs(uint64_t seed, int config_index, int rank, int64_t tokens, const Options& options) {
  // seed_seq keeps 32 bits of each value: the seed goes in as two.
  std::seed_seq seq{seed & 0xFFFFFFFFu, seed >> 32, static_cast<uint64_t>(config_index), static_cast<uint64_t>(rank)};
  std::mt19937_64 rng(seq);
  RankInputs in;
  std::uniform_real_distribution<float> value(-1.0f, 1.0f), weight(0.0f, 1.0f);
  in.x.resize(tokens * options.hidden);
  for (auto& v : in.x) v = FloatToBf16(value(rng));
  std::vector<int32_t> experts(options.experts);
  for (int64_t t = 0; t < tokens; ++t) {
    std::iota(experts.begin(), experts.end(), 0);
    for (int k = 0; k < options.top_k; ++k) {  // partial Fisher-Yates: the first K are a uniform draw
      std::uniform_int_distribution<int> pick(k, options.experts - 1);
      std::swap(experts[k], experts[pick(rng)]);
      in.expert_ids.push_back(experts[k]);
      in.weights.push_back(weight(rng));
    }
  }
  return in;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double ProcessCpuSeconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

struct OpTime {
  double slowest_rank = 0;   // seconds of wall time, the slowest rank's
  double cpu_all_ranks = 0;  // CPU seconds, all ranks' processes together
};

// The time `op` took, all ranks starting together: wall time of the slowest rank, and the CPU time all
// ranks spent (on a machine with fewer cores than ranks, what one rank burns waiting another lacks).
OpTime TimeOp(const std::function<void()>& op) {
  MPI_Barrier(MPI_COMM_WORLD);
  const double cpu_start = ProcessCpuSeconds();
  const auto start = std::chrono::steady_clock::now();
  op();
  const double mine[2] = {std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                          ProcessCpuSeconds() - cpu_start};
  double slowest = 0, cpu = 0;
  MPI_Allreduce(&mine[0], &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(&mine[1], &cpu, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return {slowest, cpu};
}

struct JobShape {
  int rank = 0, ranks = 0, hosts = 0;
};

// Hosts as MPI sees them (ranks that can share memory), which is how moe_ep's hosts transport groups them.
JobShape DescribeJob() {
  JobShape job;
  MPI_Comm_rank(MPI_COMM_WORLD, &job.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &job.ranks);
  MPI_Comm host;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &host);
  int host_rank = 0;
  MPI_Comm_rank(host, &host_rank);
  const int first_of_host = host_rank == 0 ? 1 : 0;
  MPI_Allreduce(&first_of_host, &job.hosts, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Comm_free(&host);
  return job;
}

// Runs one configuration; returns false when the baseline disagreed with moe_ep on some rank.
bool RunConfiguration(moe_ep::Group& group, const JobShape& job, const Options& options, int config_index,
                      uint64_t seed) {
  const int64_t tokens = options.tokens_per_rank[config_index];
  const int64_t hidden = options.hidden;
  const int top_k = options.top_k;
  const int local_experts = options.experts / job.ranks;
  const RankInputs in = DrawInputs(seed, config_index, job.rank, tokens, options);

  // moe_ep: caller-owned outputs sized by its receive bound A, reused every round.
  moe_ep::DispatchOptions dispatch_options;
  dispatch_options.experts.moe_expert_num = options.experts;
  const int64_t max_rows = moe_ep::DispatchReceiveRows(group, tokens, top_k, dispatch_options.experts);
  auto expand_x = Untouched<uint16_t>(max_rows * hidden);
  auto expert_out = Untouched<uint16_t>(max_rows * hidden);
  std::vector<int32_t> assist_info(3 * max_rows), ep_recv_counts(options.experts), tp_recv_counts(1);
  std::vector<int64_t> expert_token_nums(local_experts);
  moe_ep::DispatchOutputs outputs;
  outputs.expand_x = moe_ep::TensorView(expand_x.get(), moe_ep::DType::kBf16, {max_rows, hidden});
  outputs.assist_info = moe_ep::TensorView(assist_info.data(), moe_ep::DType::kInt32, {3 * max_rows});
  outputs.expert_token_nums = moe_ep::TensorView(expert_token_nums.data(), moe_ep::DType::kInt64, {local_experts});
  outputs.ep_recv_counts = moe_ep::TensorView(ep_recv_counts.data(), moe_ep::DType::kInt32, {options.experts});
  outputs.tp_recv_counts = moe_ep::TensorView(tp_recv_counts.data(), moe_ep::DType::kInt32, {1});
  const moe_ep::TensorView x_view(in.x.data(), moe_ep::DType::kBf16, {tokens, hidden});
  const moe_ep::TensorView ids_view(in.expert_ids.data(), moe_ep::DType::kInt32, {tokens, top_k});
  const moe_ep::TensorView weights_view(in.weights.data(), moe_ep::DType::kFloat32, {tokens, top_k});
  const moe_ep::TensorView expert_out_view(expert_out.get(), moe_ep::DType::kBf16, {max_rows, hidden});
  std::vector<uint16_t> moe_ep_combined(tokens * hidden), alltoallv_combined(tokens * hidden);
  const moe_ep::TensorView combined_view(moe_ep_combined.data(), moe_ep::DType::kBf16, {tokens, hidden});
  moe_ep::DispatchHandle handle;

  AlltoallvDispatcher alltoallv(MPI_COMM_WORLD, options.experts, hidden);

  // Verify once: the same routing through both, expandX and the combined tokens equal bit for bit.
  handle = moe_ep::DispatchInto(group, x_view, ids_view, dispatch_options, outputs);
  alltoallv.Dispatch(in.x, in.expert_ids, top_k);
  const int64_t rows = handle.num_rows;
  const size_t row_bytes = hidden * sizeof(uint16_t);
  std::string mismatch;
  if (alltoallv.received_rows() != rows) {
    mismatch = "received " + std::to_string(alltoallv.received_rows()) + " rows, moe_ep " + std::to_string(rows);
  } else if (std::memcmp(alltoallv.expand_x().data(), expand_x.get(), rows * row_bytes) != 0) {
    mismatch = "expandX differs";
  }
  // The experts: each scales its rows by its own factor, so a row combined under the wrong pair shows.
  for (int64_t row = 0, local = 0, end_of_expert = expert_token_nums[0]; row < rows; ++row) {
    while (row >= end_of_expert) end_of_expert += expert_token_nums[++local];
    const float factor = 1.0f + static_cast<float>(local + 1) / 64.0f;
    for (int64_t h = 0; h < hidden; ++h) {
      expert_out[row * hidden + h] = FloatToBf16(Bf16ToFloat(expand_x[row * hidden + h]) * factor);
    }
  }
  moe_ep::CombineInto(group, handle, expert_out_view, weights_view, {}, combined_view);
  alltoallv.Combine({expert_out.get(), static_cast<size_t>(rows * hidden)}, in.weights, alltoallv_combined);
  if (mismatch.empty() && moe_ep_combined != alltoallv_combined) mismatch = "combined tokens differ";
  if (!mismatch.empty()) std::printf("rank %d: the baseline disagrees with moe_ep: %s\n", job.rank, mismatch.c_str());
  int disagreeing_ranks = mismatch.empty() ? 0 : 1;
  MPI_Allreduce(MPI_IN_PLACE, &disagreeing_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);

  // memcpy yardstick: the bytes dispatch receives on this rank, between buffers touched beforehand.
  std::vector<uint8_t> copy_from(std::max<size_t>(rows * row_bytes, 1), 1), copy_to(copy_from.size(), 0);

  enum Op { kMoeEpDispatch, kMoeEpCombine, kAlltoallvDispatch, kAlltoallvCombine, kMemcpy, kOps };
  const std::function<void()> ops[kOps] = {
      [&] { handle = moe_ep::DispatchInto(group, x_view, ids_view, dispatch_options, outputs); },
      [&] { moe_ep::CombineInto(group, handle, expert_out_view, weights_view, {}, combined_view); },
      [&] { alltoallv.Dispatch(in.x, in.expert_ids, top_k); },
      [&] {
        alltoallv.Combine({expert_out.get(), static_cast<size_t>(rows * hidden)}, in.weights, alltoallv_combined);
      },
      [&] { std::memcpy(copy_to.data(), copy_from.data(), rows * row_bytes); },
  };
  std::vector<double> seconds[kOps], cpu_seconds[kOps];
  for (int round = 0; round < options.warmup + options.repeats; ++round) {
    for (int op = 0; op < kOps; ++op) {
      const OpTime time = TimeOp(ops[op]);
      if (round < options.warmup) continue;
      seconds[op].push_back(time.slowest_rank);
      cpu_seconds[op].push_back(time.cpu_all_ranks);
    }
  }

  int64_t fewest_rows = rows, most_rows = rows;
  MPI_Allreduce(MPI_IN_PLACE, &fewest_rows, 1, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &most_rows, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
  if (job.rank == 0) {
    double ms[kOps];
    for (int op = 0; op < kOps; ++op) ms[op] = Median(seconds[op]) * 1e3;
    std::printf("\n== %ld tokens/rank, H %ld, top-%d of %d experts, bf16; %d ranks on %d host%s; seed %llu ==\n",
                static_cast<long>(tokens), static_cast<long>(hidden), top_k, options.experts, job.ranks, job.hosts,
                job.hosts == 1 ? "" : "s", static_cast<unsigned long long>(seed));
    std::printf("rows received per rank %ld..%ld (%.1f..%.1f MB); medians of %d rounds, slowest rank each\n",
                static_cast<long>(fewest_rows), static_cast<long>(most_rows), fewest_rows * row_bytes / 1e6,
                most_rows * row_bytes / 1e6, options.repeats);
    std::printf("%-9s %10s %13s %10s %14s %17s %18s\n", "op", "moe_ep ms", "alltoallv ms", "memcpy ms", "moe_ep/memcpy",
                "alltoallv/memcpy", "alltoallv/moe_ep");
    const char* names[2] = {"dispatch", "combine"};
    for (int which = 0; which < 2; ++which) {
      const double mine = ms[kMoeEpDispatch + which], theirs = ms[kAlltoallvDispatch + which], copy = ms[kMemcpy];
      std::printf("%-9s %10.2f %13.2f %10.2f %13.2fx %16.2fx %17.2fx\n", names[which], mine, theirs, copy, mine / copy,
                  theirs / copy, theirs / mine);
    }
    std::printf(
        "CPU ms, all ranks together (medians): moe_ep dispatch %.1f, combine %.1f; alltoallv dispatch %.1f, "
        "combine %.1f\n",
        Median(cpu_seconds[kMoeEpDispatch]) * 1e3, Median(cpu_seconds[kMoeEpCombine]) * 1e3,
        Median(cpu_seconds[kAlltoallvDispatch]) * 1e3, Median(cpu_seconds[kAlltoallvCombine]) * 1e3);
    if (disagreeing_ranks == 0) {
      std::printf(
          "verified: the alltoallv baseline's expandX and combined tokens equal moe_ep's, bit for bit, "
          "on every rank\n");
    } else {
      std::printf("NOT verified: the baseline disagrees with moe_ep on %d ranks\n", disagreeing_ranks);
    }
    std::fflush(stdout);
  }
  return disagreeing_ranks == 0;
}

int Run(int argc, char** argv) {
  const JobShape job = DescribeJob();
  Options options;
  int exit_status = 0;
  if (!ParseOptions(argc, argv, job.rank == 0, options, exit_status)) return exit_status;
  if (options.experts % job.ranks != 0) {
    if (job.rank == 0)
      std::fprintf(stderr, "hosts_bench: %d experts do not spread over %d ranks\n", options.experts, job.ranks);
    return 2;
  }
  uint64_t seed =
      options.seed_given ? options.seed : std::random_device{}() * uint64_t{0x100000000} + std::random_device{}();
  MPI_Bcast(&seed, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  if (job.rank == 0) {
    std::printf("hosts_bench: %d ranks on %d host%s; seed %llu (replay with --seed %llu)\n", job.ranks, job.hosts,
                job.hosts == 1 ? "" : "s", static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(seed));
    // moe_ep's path between hosts (docs/hosts.md): two-level with 1, flat with 0, the library's default unset.
    const char* relay = std::getenv("MOE_EP_HOSTS_RELAY");
    std::printf("moe_ep between hosts: MOE_EP_HOSTS_RELAY=%s\n", relay != nullptr ? relay : "(unset: the default)");
    std::fflush(stdout);
  }

  bool all_verified = true;
  {
    moe_ep::Group group = moe_ep::JoinProcessGroup();  // under mpirun: the hosts transport
    for (size_t config = 0; config < options.tokens_per_rank.size(); ++config) {
      all_verified = RunConfiguration(group, job, options, static_cast<int>(config), seed) && all_verified;
    }
  }  // the group goes before MPI_Finalize
  MPI_Barrier(MPI_COMM_WORLD);
  // One line per rank: what simulated_hosts.sh and mpi_job.sh count as the job's success.
  if (all_verified) std::printf("rank %d: hosts_bench done, baseline verified OK\n", job.rank);
  return all_verified ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Thread-multiple, as moe_ep asks for itself: its hosts transport may move messages from a thread of its
  // own while this program's collectives run.
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  if (provided < MPI_THREAD_MULTIPLE) std::fprintf(stderr, "hosts_bench: warning: MPI lacks MPI_THREAD_MULTIPLE\n");
  int status = 1;
  try {
    status = Run(argc, argv);
  } catch (const std::exception& e) {  // moe_ep::Error included: a peer may wait in a collective, so end the job
    std::printf("ERROR: %s\n", e.what());
    std::fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return status;
}
