// The tests' malloc policy: memory a round frees stays in the process for the next round.
#pragma once

namespace moe_ep::testing {

/// Keeps freed memory in the process instead of giving it back to the kernel. Each round of a test allocates and
/// poisons outputs of the sizes the round before freed; with glibc's defaults they were unmapped and faulted in
/// again, page by page, which took most of a many-round test's time (2.5x as long, in a 100-round test of 8
/// processes). Changes how fast the tests run, never what they check.
void KeepFreedMemory();

}  // namespace moe_ep::testing
