// ThrowsError: whether a call throws moe_ep's Error with the code and the words a test expects.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moe_ep/error.h"

namespace moe_ep::testing {

/// For EXPECT_TRUE: `call` threw a moe_ep::Error (or a subclass) whose code is `code` and whose message contains
/// every one of `parts`; the failure says what it did instead.
template <typename Call>
::testing::AssertionResult ThrowsError(Call&& call, ErrorCode code, const std::vector<std::string>& parts) {
  try {
    call();
  } catch (const Error& e) {
    const std::string what = e.what();
    if (e.code() != code) {
      return ::testing::AssertionFailure()
             << "threw code " << static_cast<int>(e.code()) << ", not " << static_cast<int>(code) << ": " << what;
    }
    for (const std::string& part : parts) {
      if (what.find(part) == std::string::npos) {
        return ::testing::AssertionFailure() << "the message does not say \"" << part << "\": " << what;
      }
    }
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "returned instead of throwing";
}

/// The same with one part.
template <typename Call>
::testing::AssertionResult ThrowsError(Call&& call, ErrorCode code, std::string_view part) {
  return ThrowsError(std::forward<Call>(call), code, std::vector<std::string>{std::string(part)});
}

}  // namespace moe_ep::testing
