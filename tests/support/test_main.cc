// The test binaries' main: GoogleTest's, under the tests' malloc policy.
#include <gtest/gtest.h>

#include "support/freed_memory.h"

int main(int argc, char** argv) {
  moe_ep::testing::KeepFreedMemory();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
