# Global flags of a fuzzing build (MOE_EP_BUILD_FUZZERS): included by the top-level CMakeLists.txt before src/, so
# that every object of both libraries carries libFuzzer's coverage instrumentation; the targets themselves link
# -fsanitize=fuzzer (tests/fuzz/CMakeLists.txt).
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "MOE_EP_BUILD_FUZZERS needs clang (libFuzzer ships with it), but the C++ compiler is "
                      "${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER}: configure a fresh build directory with "
                      "CC=clang-14 CXX=clang++-14 (scripts/fuzz.sh does), and install libclang-rt-14-dev.")
endif()
if(MOE_EP_SANITIZE MATCHES "thread")
  message(FATAL_ERROR "MOE_EP_BUILD_FUZZERS does not combine with MOE_EP_SANITIZE=thread (libFuzzer supports "
                      "ASan/UBSan/MSan only): use -DMOE_EP_SANITIZE=address\\;undefined")
endif()
if(NOT MOE_EP_SANITIZE MATCHES "address")
  # Still useful for crashes and hangs, but an out-of-bounds write then goes unnoticed.
  message(WARNING "MOE_EP_BUILD_FUZZERS without ASan: set -DMOE_EP_SANITIZE=address\\;undefined to catch memory errors")
endif()
# MOE_EP_SANITIZE already compiles with -fno-sanitize-recover=all, so UBSan findings abort the input as crashes.
add_compile_options(-fsanitize=fuzzer-no-link)

