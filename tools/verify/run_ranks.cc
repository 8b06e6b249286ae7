// Rank threads for tests.
#include "verify/run_ranks.h"

#include <thread>

namespace moe_ep::verify {

std::vector<std::exception_ptr> RunRanksCollect(int n, const std::function<void(int)>& body) {
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

void RunRanks(int n, const std::function<void(int)>& body) {
  for (const auto& e : RunRanksCollect(n, body)) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace moe_ep::verify
