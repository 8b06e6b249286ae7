// Seeds for randomized tests: drawn fresh each run, printed, and forced with MOE_EP_TEST_SEED to replay.
#pragma once

#include <cstdint>

namespace moe_ep::testing {

/// The run's base seed: MOE_EP_TEST_SEED if set, else random. Printed once to stderr.
uint64_t BaseSeed();

}  // namespace moe_ep::testing
