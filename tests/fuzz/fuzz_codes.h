// Value codes that capi_fuzz and native_fuzz settings share (expert ids, masks, corrupted counts), with the
// generators that turn them into tensor contents.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_support.h"

namespace moe_ep_fuzz {

/// expertIds contents.
enum IdsMode : int {
  kIdsDistinct = 0,    // K distinct valid ids per token
  kIdsAll = 1,         // every id = the op's ids value
  kIdsWild = 2,        // each id uniform in [-3, total + 3]: out of range both ways, duplicates
  kIdsDuplicate = 3,   // valid ids, the same one repeated within each token
  kIdsOneWild = 4,     // valid distinct ids, but one (seeded position) = the op's ids value
  kIdsRandomBits = 5,  // any 32-bit value
};

enum MaskKind : int { kMaskNone = 0, kMask1d = 1, kMask2d = 2, kMaskWrong1d = 3, kMask3d = 4 };
enum MaskFill : int { kMaskAllTrue = 0, kMaskRandom = 1, kMaskAllFalse = 2, kMaskBytes = 3, kMaskPrefix = 4 };

/// Changes to the contents of a combine handle's int32 tensor.
enum Corrupt : int {
  kCorruptNone = 0,
  kCorruptRandom = 1,  // every entry uniform in [-4, 2^31)
  kCorruptAll = 2,     // every entry = the op's corrupt value
  kCorruptPoke = 3,    // entry (corrupt index) = corrupt value
  kCorruptNegate = 4,  // every entry negated
  kCorruptSmall = 5,   // every entry uniform in [-2, 9]
};

/// CombineAddRmsNorm shapes.
enum RmsShapes : int { kRmsRight = 0, kRmsResidual2d = 1, kRmsGammaLong = 2, kRmsRstdWide = 3 };

inline std::vector<uint8_t> RandomBytes(Rng& rng, int64_t n) {
  std::vector<uint8_t> v(static_cast<size_t>(n > 0 ? n : 0));
  for (auto& b : v) b = static_cast<uint8_t>(rng.Next());
  return v;
}

inline std::vector<uint8_t> Int32Bytes(const std::vector<int32_t>& values) {
  std::vector<uint8_t> v(values.size() * 4);
  if (!values.empty()) std::memcpy(v.data(), values.data(), v.size());
  return v;
}

inline std::vector<int32_t> AsInt32(const std::vector<uint8_t>& bytes) {
  std::vector<int32_t> v(bytes.size() / 4);
  if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

/// The MoE experts a scale-down retired: ids drawn at or past `from` (the survivors' MoE experts) move up by `count`,
/// where the special experts keep their ids. None by default.
struct RetiredExperts {
  int64_t from = INT64_MAX;
  int64_t count = 0;
};

/// expertIds (bs, k) per IdsMode; valid ids range over [0, total), past `retired`'s gap.
inline std::vector<int32_t> ExpertIds(Rng& rng, int64_t bs, int64_t k, int64_t total, int64_t mode, int64_t value,
                                      RetiredExperts retired = {}) {
  std::vector<int32_t> ids(static_cast<size_t>(bs > 0 && k > 0 ? bs * k : 0));
  const int64_t range = total > 0 ? total : 1;
  for (int64_t t = 0; t < bs && !ids.empty(); ++t) {
    const int64_t start = rng.Range(0, range - 1);
    const int64_t wild_k = rng.Range(0, k - 1);
    for (int64_t j = 0; j < k; ++j) {
      int64_t id = (start + j) % range;  // distinct while k <= total
      switch (static_cast<int>(static_cast<uint64_t>(mode) % 6)) {
        case kIdsAll:
          id = value;
          break;
        case kIdsWild:
          id = rng.Range(-3, range + 3);
          break;
        case kIdsDuplicate:
          id = start;
          break;
        case kIdsOneWild:
          id = j == wild_k ? value : id;
          break;
        case kIdsRandomBits:
          id = static_cast<int32_t>(rng.Next());
          break;
        default:
          break;
      }
      if (id >= retired.from && id < range) id += retired.count;
      ids[t * k + j] = static_cast<int32_t>(id);
    }
  }
  return ids;
}

/// Bool mask contents (one byte per element) per MaskFill.
inline std::vector<uint8_t> MaskBytes(Rng& rng, int64_t numel, int64_t fill) {
  std::vector<uint8_t> m(static_cast<size_t>(numel > 0 ? numel : 0));
  for (int64_t i = 0; i < static_cast<int64_t>(m.size()); ++i) {
    switch (static_cast<int>(static_cast<uint64_t>(fill) % 5)) {
      case kMaskRandom:
        m[i] = rng.Next() & 1;
        break;
      case kMaskAllFalse:
        m[i] = 0;
        break;
      case kMaskBytes:
        m[i] = static_cast<uint8_t>(rng.Range(2, 255));
        break;
      case kMaskPrefix:
        m[i] = i < numel / 2 ? 1 : 0;
        break;
      default:
        m[i] = 1;
        break;
    }
  }
  return m;
}

inline void ApplyCorruption(std::vector<int32_t>& v, Rng& rng, int64_t mode, int64_t value, int64_t index) {
  if (v.empty()) return;
  switch (static_cast<int>(static_cast<uint64_t>(mode) % 6)) {
    case kCorruptRandom:
      for (auto& x : v) x = static_cast<int32_t>(rng.Range(-4, INT32_MAX));
      break;
    case kCorruptAll:
      for (auto& x : v) x = static_cast<int32_t>(value);
      break;
    case kCorruptPoke:
      v[static_cast<uint64_t>(index) % v.size()] = static_cast<int32_t>(value);
      break;
    case kCorruptNegate:
      for (auto& x : v) x = x == INT32_MIN ? INT32_MAX : -x;
      break;
    case kCorruptSmall:
      for (auto& x : v) x = static_cast<int32_t>(rng.Range(-2, 9));
      break;
    default:
      break;
  }
}

}  // namespace moe_ep_fuzz
