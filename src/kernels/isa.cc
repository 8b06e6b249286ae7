// Instruction-set detection, MOE_EP_ISA, and the active-ISA switch that picks the row kernel table.
#include <cpuid.h>

#include <atomic>
#include <string>

#include "base/env.h"
#include "kernels/kernels.h"
#include "kernels/row_table.h"
#include "moe_ep/error.h"

namespace moe_ep::kernels {
namespace {

// F16C from CPUID leaf 1: clang 14's __builtin_cpu_supports does not know the name.
bool HasF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

Isa Detect() {
  // __builtin_cpu_supports also checks that the OS saves the ymm / zmm state (XGETBV); F16C needs AVX's.
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && HasF16c();
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return avx512 ? Isa::kAvx512 : avx2 ? Isa::kAvx2 : Isa::kScalar;
}

const internal::RowKernels& TableFor(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return internal::Avx512Kernels();
    case Isa::kAvx2:
      return internal::Avx2Kernels();
    case Isa::kScalar:
      break;
  }
  return internal::ScalarKernels();
}

// MOE_EP_ISA when set (it must name an ISA this CPU has), else the best the CPU has.
Isa ChosenIsa() {
  const auto name = env::KernelIsa();
  if (!name) return DetectedIsa();
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (*name != IsaName(isa)) continue;
    if (static_cast<int>(isa) > static_cast<int>(DetectedIsa())) {
      throw Error(ErrorCode::kInvalidParam,
                  "environment variable MOE_EP_ISA = '" + *name + "': this CPU has at most " + IsaName(DetectedIsa()));
    }
    return isa;
  }
  throw Error(ErrorCode::kInvalidParam,
              "environment variable MOE_EP_ISA = '" + *name + "' must be one of scalar, avx2, avx512 (or unset)");
}

// Both start unset and are filled on first use (no static-initialization-order dependence). Relaxed is
// enough: the tables are constant data, and racing first users store the same values.
std::atomic<const internal::RowKernels*> g_active_table{nullptr};
std::atomic<int> g_active_isa{-1};

}  // namespace

Isa DetectedIsa() {
  static const Isa detected = Detect();
  return detected;
}

Isa ActiveIsa() {
  const int isa = g_active_isa.load(std::memory_order_relaxed);
  if (isa >= 0) return static_cast<Isa>(isa);
  static const Isa chosen = ChosenIsa();  // a bad MOE_EP_ISA throws again on every call until fixed
  return chosen;
}

void SetActiveIsa(Isa isa) {
  const Isa usable = static_cast<int>(isa) <= static_cast<int>(DetectedIsa()) ? isa : DetectedIsa();
  g_active_isa.store(static_cast<int>(usable), std::memory_order_relaxed);
  g_active_table.store(&TableFor(usable), std::memory_order_relaxed);
}

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

namespace internal {

const RowKernels& ActiveKernels() {
  const RowKernels* table = g_active_table.load(std::memory_order_relaxed);
  if (table == nullptr) {
    table = &TableFor(ActiveIsa());
    g_active_table.store(table, std::memory_order_relaxed);
  }
  return *table;
}

}  // namespace internal
}  // namespace moe_ep::kernels
