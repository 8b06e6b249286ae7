// What capi_fuzz and native_fuzz share: the byte format of an input (ops of key/value settings, see README.md),
// a seeded PRNG for tensor contents, the watchdog that turns a hang into a crash, and the environment switch.
#pragma once

#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace moe_ep_fuzz {

// ---------------------------------------------------------------------------------------------------
// Failing loudly: a broken contract (or a harness bug) aborts, which libFuzzer reports as a crash.
// ---------------------------------------------------------------------------------------------------

[[noreturn]] inline void Die(const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::fputs("\n==== moe_ep fuzz: ", stderr);
  std::vfprintf(stderr, format, args);
  std::fputs("\n", stderr);
  va_end(args);
  std::fflush(stderr);
  std::abort();
}

/// MOE_EP_FUZZ_VERBOSE=1: the targets print every call's status and message (to write and check seeds).
inline bool Verbose() {
  static const bool verbose = [] {
    const char* v = std::getenv("MOE_EP_FUZZ_VERBOSE");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  return verbose;
}

// ---------------------------------------------------------------------------------------------------
// The byte format
// ---------------------------------------------------------------------------------------------------

/// Reads the input front to back; past the end every read is 0, so a truncated input is still an input.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint64_t Little(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t{Byte()} << (8 * i);
    return v;
  }
  /// One integer value: a selector byte, then 0, 1, 2, 4 or 8 more bytes (README.md, "Int").
  int64_t Int() {
    const uint8_t b = Byte();
    if (b < 0xE0) return b;
    switch (b) {
      case 0xE0:
        return -1;
      case 0xE1:
        return -int64_t{Byte()};
      case 0xE2:
        return static_cast<int64_t>(Little(2));
      case 0xE3:
        return static_cast<int32_t>(Little(4));
      case 0xE4:
        return static_cast<int64_t>(Little(8));
      case 0xE5:
        return std::numeric_limits<int64_t>::max();
      case 0xE6:
        return std::numeric_limits<int64_t>::min();
      case 0xE7:
        return std::numeric_limits<int32_t>::max();
      case 0xE8:
        return std::numeric_limits<int32_t>::min();
      case 0xE9:
        return std::numeric_limits<uint32_t>::max();
      case 0xEA:
        return int64_t{1} << 61;
      case 0xEB:
        return int64_t{1} << 62;
      case 0xEC:
        return int64_t{1} << 30;
      case 0xED:
        return int64_t{1} << 31;
      case 0xEE:
        return int64_t{1} << 32;
      case 0xEF:
        return 1024;
      case 0xF0:
        return 7168;
      case 0xF1:
        return 8192;
      case 0xF2:
        return 512;
      case 0xF3:
        return 256;
      case 0xF4:
        return 128;
      case 0xF5:
        return int64_t{1} << 20;
      case 0xF6:
        return int64_t{1} << 40;
      default:
        return int64_t{1} << (b - 0xF7 + 8);  // 0xF7..0xFF: 2^8 .. 2^16
    }
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

/// Ranks a setting can single out (the most any topology has).
inline constexpr int kMaxRanks = 4;

/// One operation of an input: its opcode and its settings (README.md): a key (1..127) with a value sets it
/// for every rank; key | 0x80, a rank byte, and a value set it for that rank only (a per-rank setting wins).
struct Op {
  int opcode = 0;
  std::map<int, int64_t> all;
  std::array<std::map<int, int64_t>, kMaxRanks> rank;

  bool Has(int key, int r = 0) const { return rank[r].count(key) || all.count(key); }
  int64_t Get(int key, int64_t fallback) const { return Get(key, 0, fallback); }
  int64_t Get(int key, int r, int64_t fallback) const {
    if (auto it = rank[r].find(key); it != rank[r].end()) return it->second;
    if (auto it = all.find(key); it != all.end()) return it->second;
    return fallback;
  }
  /// A choice among n: the value modulo n, negative values included (a value is a raw 64-bit pattern).
  int Pick(int key, int r, int64_t fallback, int n) const {
    return static_cast<int>(static_cast<uint64_t>(Get(key, r, fallback)) % static_cast<uint64_t>(n));
  }
  int Pick(int key, int64_t fallback, int n) const { return Pick(key, 0, fallback, n); }
  /// An odd value.
  bool Flag(int key, int r, int64_t fallback) const { return Pick(key, r, fallback, 2) == 1; }
  bool Flag(int key, int64_t fallback) const { return Flag(key, 0, fallback); }
  /// True when any rank sees a different value of `key` than rank 0 (asymmetric inputs).
  bool DiffersByRank(int key) const {
    for (int r = 1; r < kMaxRanks; ++r) {
      if (Has(key, r) != Has(key, 0) || Get(key, r, 0) != Get(key, 0, 0)) return true;
    }
    return false;
  }
};

/// Splits an input into at most `max_ops` operations (the rest is ignored: each input stays fast).
inline std::vector<Op> ParseOps(const uint8_t* data, size_t size, int opcode_count, size_t max_ops) {
  ByteReader in(data, size);
  std::vector<Op> ops;
  while (!in.done() && ops.size() < max_ops) {
    Op op;
    op.opcode = in.Byte() % opcode_count;
    while (!in.done()) {
      const uint8_t key = in.Byte();
      if (key == 0) break;  // end of this op
      if (key & 0x80) {
        const int r = in.Byte() % kMaxRanks;
        op.rank[r][key & 0x7F] = in.Int();
      } else {
        op.all[key] = in.Int();
      }
    }
    ops.push_back(std::move(op));
  }
  return ops;
}

// ---------------------------------------------------------------------------------------------------
// Contents
// ---------------------------------------------------------------------------------------------------

/// splitmix64: tensor contents are a function of (seed, rank, tensor), so a saved input replays exactly.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [lo, hi] (lo <= hi).
  int64_t Range(int64_t lo, int64_t hi) {
    const uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) + 1;
    return span == 0 ? static_cast<int64_t>(Next()) : lo + static_cast<int64_t>(Next() % span);
  }

 private:
  uint64_t state_;
};

inline uint64_t Mix(uint64_t a, uint64_t b, uint64_t c = 0) {
  Rng r(a * 0x100000001B3ull ^ (b << 17) ^ (c << 41) ^ 0x5151);
  return r.Next();
}

/// How a floating tensor is filled (settings *_FILL): every value the kernels could meet.
enum class Fill { kFinite = 0, kZeros = 1, kSpecials = 2, kHuge = 3, kDenormals = 4, kRandomBits = 5 };

/// One bf16 (or fp16) element as raw bits, drawn per `fill`.
inline uint16_t HalfBits(Rng& rng, bool bf16, Fill fill) {
  const uint16_t sign = static_cast<uint16_t>((rng.Next() & 1) << 15);
  switch (fill) {
    case Fill::kZeros:
      return 0;
    case Fill::kSpecials: {
      static const uint16_t kBf16[] = {0x7FC0, 0x7F80, 0xFF80, 0xFFC1, 0x7F7F, 0x0001, 0x8000};
      static const uint16_t kFp16[] = {0x7E00, 0x7C00, 0xFC00, 0xFE01, 0x7BFF, 0x0001, 0x8000};
      return (bf16 ? kBf16 : kFp16)[rng.Next() % 7];
    }
    case Fill::kHuge:
      return sign | (bf16 ? 0x7F7F : 0x7BFF);
    case Fill::kDenormals:
      return sign | static_cast<uint16_t>(rng.Range(1, bf16 ? 0x7F : 0x3FF));
    case Fill::kRandomBits:
      return static_cast<uint16_t>(rng.Next());
    case Fill::kFinite:
      break;
  }
  if (bf16) return sign | static_cast<uint16_t>(rng.Range(118, 131) << 7) | static_cast<uint16_t>(rng.Range(0, 127));
  return sign | static_cast<uint16_t>(rng.Range(9, 19) << 10) | static_cast<uint16_t>(rng.Range(0, 1023));
}

/// One fp32 element as raw bits, drawn per `fill`.
inline uint32_t FloatBits(Rng& rng, Fill fill) {
  const uint32_t sign = static_cast<uint32_t>(rng.Next() & 1) << 31;
  switch (fill) {
    case Fill::kZeros:
      return 0;
    case Fill::kSpecials: {
      static const uint32_t kSpecials[] = {0x7FC00000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0x00000001, 0x80000000};
      return kSpecials[rng.Next() % 6];
    }
    case Fill::kHuge:
      return sign | 0x7F7FFFFF;
    case Fill::kDenormals:
      return sign | static_cast<uint32_t>(rng.Range(1, 0x7FFFFF));
    case Fill::kRandomBits:
      return static_cast<uint32_t>(rng.Next());
    case Fill::kFinite:
      break;
  }
  float f = static_cast<float>(rng.Range(-1000, 1000)) / 997.0f;
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

// ---------------------------------------------------------------------------------------------------
// The watchdog: an input that runs past its limit is a hang, reported as a crash with what it was doing.
// ---------------------------------------------------------------------------------------------------

class Watchdog {
 public:
  /// The process-wide watchdog (its thread is never joined: it must outlive every input, even at exit).
  static Watchdog& Get() {
    static Watchdog* dog = new Watchdog;
    return *dog;
  }
  /// Starts timing an input; `limit` comes from MOE_EP_FUZZ_WATCHDOG_S (default 10 s).
  void Arm() {
    what_[0] = '\0';
    deadline_ns_.store(NowNs() + limit_ns_, std::memory_order_release);
  }
  void Disarm() { deadline_ns_.store(0, std::memory_order_release); }
  /// What the input is doing now, printed if it hangs (a fixed buffer: the watchdog must not allocate).
  void Doing(const char* format, ...) {
    va_list args;
    va_start(args, format);
    std::vsnprintf(what_, sizeof(what_), format, args);
    va_end(args);
  }

 private:
  Watchdog() {
    const char* text = std::getenv("MOE_EP_FUZZ_WATCHDOG_S");
    const long seconds = text ? std::strtol(text, nullptr, 10) : 10;
    limit_ns_ = (seconds > 0 ? seconds : 10) * int64_t{1000000000};
    std::thread([this] { Watch(); }).detach();
  }
  static int64_t NowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void Watch() {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const int64_t deadline = deadline_ns_.load(std::memory_order_acquire);
      if (deadline != 0 && NowNs() > deadline) {
        Die("watchdog: the input ran longer than %lld s (a hang: every wait has a deadline well below that); it was "
            "doing: %s",
            static_cast<long long>(limit_ns_ / 1000000000), what_);
      }
    }
  }
  std::atomic<int64_t> deadline_ns_{0};
  int64_t limit_ns_ = 0;
  char what_[512] = {0};
};

/// Arms the watchdog for one input, disarms it at the end of the scope.
struct WatchdogScope {
  WatchdogScope() { Watchdog::Get().Arm(); }
  ~WatchdogScope() { Watchdog::Get().Disarm(); }
};

// ---------------------------------------------------------------------------------------------------
// Rank threads
// ---------------------------------------------------------------------------------------------------

/// kMaxRanks persistent threads, one per rank, that run a job on several ranks at once. Persistent because a
/// rank's thread-bound state (the C API's current device, its stream) must survive from input to input.
class RankThreads {
 public:
  /// `init(g)` runs first on worker g's own thread; the constructor returns once every worker has run it.
  explicit RankThreads(std::function<void(int)> init) {
    for (int g = 0; g < kMaxRanks; ++g) {
      std::thread([this, g, init] {
        init(g);
        {
          std::lock_guard lock(mu_);
          ++ready_;
        }
        cv_.notify_all();
        Work(g);
      }).detach();
    }
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return ready_ == kMaxRanks; });
  }

  /// Runs job(g) on the worker of every g in `ranks`, all at once; returns when all are done.
  void Run(const std::vector<int>& ranks, const std::function<void(int)>& job) {
    if (ranks.empty()) return;
    std::unique_lock lock(mu_);
    for (int g : ranks) pending_[g] = &job;
    running_ = static_cast<int>(ranks.size());
    cv_.notify_all();
    cv_.wait(lock, [&] { return running_ == 0; });
  }

 private:
  void Work(int g) {
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return pending_[g] != nullptr; });
        job = pending_[g];
      }
      (*job)(g);
      {
        std::lock_guard lock(mu_);
        pending_[g] = nullptr;
        --running_;
      }
      cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::array<const std::function<void(int)>*, kMaxRanks> pending_{};
  int running_ = 0;
  int ready_ = 0;
};

// ---------------------------------------------------------------------------------------------------
// Environment variables
// ---------------------------------------------------------------------------------------------------

/// Sets (or, for nullopt, unsets) a variable. Only called while no library work runs: setenv races getenv.
inline void SetEnv(const char* name, const std::optional<std::string>& value) {
  if (value) {
    setenv(name, value->c_str(), 1);
  } else {
    unsetenv(name);
  }
}

inline std::optional<std::string> GetEnv(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::optional<std::string>(v) : std::nullopt;
}

/// One environment variable a target fuzzes: the harness's own value (what every input starts from) and the
/// values an input may pick (setting value v selects choices[v % size]; nullopt unsets the variable). Only
/// values that keep every deadline short: a valid 24-day timeout would turn a rank's early failure into a
/// false hang.
struct EnvKnob {
  const char* name;
  std::optional<std::string> harness_value;
  std::vector<std::optional<std::string>> choices;
};

/// Gives every knob the harness's own value again (each input starts from it).
inline void RestoreHarnessEnvironment(std::span<const EnvKnob> knobs) {
  for (const EnvKnob& knob : knobs) {
    if (GetEnv(knob.name) != knob.harness_value) SetEnv(knob.name, knob.harness_value);
  }
}

/// Sets the knobs `op` names: knobs[i] from the op's setting keys[i].
inline void ApplyEnvKnobs(const Op& op, std::span<const EnvKnob> knobs, std::span<const int> keys) {
  for (size_t i = 0; i < knobs.size(); ++i) {
    if (!op.Has(keys[i])) continue;
    const auto& choices = knobs[i].choices;
    SetEnv(knobs[i].name, choices[static_cast<uint64_t>(op.Get(keys[i], 0)) % choices.size()]);
  }
}

/// The rank layouts both targets run: EP 2, EP 4, and EP 2 x TP 2; worker g is EP rank g % ep_size of TP rank
/// g / ep_size.
struct Topology {
  int ep_size;
  int tp_size;
  int ranks() const { return ep_size * tp_size; }
  int EpRank(int g) const { return g % ep_size; }
  int TpRank(int g) const { return g / ep_size; }
};
inline constexpr Topology kTopologies[] = {{2, 1}, {4, 1}, {2, 2}};

/// The ops of one input, run in order by run(op), each named to the watchdog. Ops start only within the first
/// 3 s, so that an input of slow ops (deadlines of up to 2 s) ends well inside the watchdog's 10 s: only a wait
/// that overstays its own deadline can reach it.
template <typename RunOp>
void RunOps(const uint8_t* data, size_t size, int opcode_count, const char* const* names, RunOp&& run) {
  constexpr size_t kMaxOpsPerInput = 8;
  const std::vector<Op> ops = ParseOps(data, size, opcode_count, kMaxOpsPerInput);
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < ops.size() && std::chrono::steady_clock::now() - start < std::chrono::seconds(3); ++i) {
    Watchdog::Get().Doing("op %zu (%s)", i, names[ops[i].opcode]);
    run(ops[i]);
  }
}

}  // namespace moe_ep_fuzz
