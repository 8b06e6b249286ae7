# Self-test of the reference model: small cases worked out by hand (include()d by the test tree).
include(GoogleTest)
add_executable(reference_selftest ${CMAKE_CURRENT_LIST_DIR}/reference_selftest.cc)
target_link_libraries(reference_selftest PRIVATE moe_ep_reference moe_ep_test_main)
target_compile_options(reference_selftest PRIVATE -ffp-contract=off)
gtest_discover_tests(reference_selftest DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 300)
