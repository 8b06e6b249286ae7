// Numeric kernels on one 7168-element row (the decode hidden size), per instruction set, with a memcpy
// of the row's bytes as the yardstick; and rows copied by memcpy and by CopyBytes (base/copy.h) at
// distances between source and destination where the CPU's string copy may stall.
// Run: build/bench/kernels_bench [--benchmark_filter=...].
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "base/copy.h"
#include "kernels/kernels.h"

namespace {

using moe_ep::kernels::Half;
using moe_ep::kernels::Isa;

constexpr int64_t kH = 7168;

struct Row {
  std::vector<uint16_t> half = std::vector<uint16_t>(kH);
  std::vector<float> f = std::vector<float>(kH), acc = std::vector<float>(kH);
  std::vector<int8_t> q = std::vector<int8_t>(kH);
  std::vector<uint16_t> out = std::vector<uint16_t>(kH), scales = std::vector<uint16_t>(kH / 8 + 1);
  Row() {
    std::mt19937 rng(7);
    for (auto& v : half) v = static_cast<uint16_t>(0x3C00 + rng() % 0x0800);  // bf16 in [2^-7, 2)
    for (auto& v : f) v = static_cast<float>(rng() % 1000) / 997.0f;
  }
};

// Runs `body` with the kernels on `isa`, or skips when this CPU lacks it.
template <typename Body>
void OnIsa(benchmark::State& state, Isa isa, Body body) {
  if (static_cast<int>(isa) > static_cast<int>(moe_ep::kernels::DetectedIsa())) {
    state.SkipWithError("instruction set not available on this CPU");
    return;
  }
  moe_ep::kernels::SetActiveIsa(isa);
  Row row;
  for (auto _ : state) {
    body(row);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kH * 2);
  moe_ep::kernels::SetActiveIsa(moe_ep::kernels::DetectedIsa());
}

void BM_Memcpy(benchmark::State& state) {
  Row row;
  for (auto _ : state) {
    std::memcpy(row.out.data(), row.half.data(), kH * 2);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kH * 2);
}
BENCHMARK(BM_Memcpy);

// 1024 rows of 7168 bf16 (14 MiB, past the caches) from a page-aligned source to a destination
// range(1) bytes further modulo a page; range(0): 0 memcpy, 1 CopyBytes. 16 is where a row pulled from the
// shared heap lands in a malloc'd expandX.
void BM_RowCopy(benchmark::State& state) {
  constexpr size_t kRowBytes = kH * 2, kRows = 1024, kPage = 4096;
  std::vector<uint8_t> src(kRows * kRowBytes + kPage, 1), dst(kRows * kRowBytes + 2 * kPage, 2);
  const auto page = [](uint8_t* p) { return p + (kPage - reinterpret_cast<uintptr_t>(p) % kPage) % kPage; };
  uint8_t* const from = page(src.data());
  uint8_t* const to = page(dst.data()) + state.range(1);
  for (auto _ : state) {
    for (size_t r = 0; r < kRows; ++r) {
      if (state.range(0) == 0) {
        std::memcpy(to + r * kRowBytes, from + r * kRowBytes, kRowBytes);
      } else {
        moe_ep::CopyBytes(to + r * kRowBytes, from + r * kRowBytes, kRowBytes);
      }
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kRows * kRowBytes));
  state.SetLabel(state.range(0) == 0 ? "memcpy" : "CopyBytes");
}
BENCHMARK(BM_RowCopy)->ArgsProduct({{0, 1}, {0, 16, 64, 2048}});

void BM_HalfRowToFloat(benchmark::State& state) {
  OnIsa(state, static_cast<Isa>(state.range(0)),
        [](Row& r) { moe_ep::kernels::HalfRowToFloat(Half::kBf16, r.half.data(), r.f.data(), kH); });
}
void BM_AccumulateWeightedHalf(benchmark::State& state) {
  OnIsa(state, static_cast<Isa>(state.range(0)),
        [](Row& r) { moe_ep::kernels::AccumulateWeightedHalf(Half::kBf16, r.half.data(), 0.3f, kH, r.acc.data()); });
}
void BM_FloatRowToHalf(benchmark::State& state) {
  OnIsa(state, static_cast<Isa>(state.range(0)),
        [](Row& r) { moe_ep::kernels::FloatRowToHalf(Half::kBf16, r.f.data(), r.out.data(), kH); });
}
void BM_DynamicQuantRow(benchmark::State& state) {
  OnIsa(state, static_cast<Isa>(state.range(0)), [](Row& r) {
    benchmark::DoNotOptimize(moe_ep::kernels::DynamicQuantRow(Half::kBf16, r.half.data(), nullptr, kH, r.q.data()));
  });
}
void BM_CommQuantRow(benchmark::State& state) {
  OnIsa(state, static_cast<Isa>(state.range(0)),
        [](Row& r) { moe_ep::kernels::CommQuantRow(Half::kBf16, r.half.data(), kH, r.q.data(), r.scales.data()); });
}

// Arg: 0 scalar, 1 AVX2, 2 AVX-512.
BENCHMARK(BM_HalfRowToFloat)->DenseRange(0, 2);
BENCHMARK(BM_AccumulateWeightedHalf)->DenseRange(0, 2);
BENCHMARK(BM_FloatRowToHalf)->DenseRange(0, 2);
BENCHMARK(BM_DynamicQuantRow)->DenseRange(0, 2);
BENCHMARK(BM_CommQuantRow)->DenseRange(0, 2);

}  // namespace

BENCHMARK_MAIN();
