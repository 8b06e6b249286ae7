// Events: a record is a task of its stream that marks the event complete (and when), a stream's wait is a task
// that waits for the event's last record made before it, and a host thread waits, queries or times two records.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>

#include "base/env.h"
#include "cann/runtime/handle_registry.h"
#include "cann/runtime/internal.h"

namespace moe_ep::cann::runtime {
namespace {

using Clock = std::chrono::steady_clock;

inline constexpr uintptr_t kEventHandleTag = uintptr_t{0x4556} << 48;  // "EV"

class Event {
 public:
  explicit Event(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }

  // A record about to be launched: its number, outstanding until its stream runs it. Launched() once its launch
  // returned.
  uint64_t NextRecord() {
    std::lock_guard lock(mu_);
    outstanding_.insert(numbered_ + 1);  // first: a throw numbers nothing
    return ++numbered_;
  }
  // The launch of `record` returned: the event's last record from now on when `made`, else one that never runs.
  void Launched(uint64_t record, bool made) {
    std::lock_guard lock(mu_);
    if (made) {
      recorded_ = std::max(recorded_, record);
    } else {
      outstanding_.erase(record);
    }
  }
  // The stream ran record `record` (a reset: no time).
  void Complete(uint64_t record, bool timed) {
    {
      std::lock_guard lock(mu_);
      outstanding_.erase(record);
      // An older record that runs late (on a stream slower than a later record's) leaves the later one's time.
      if (record >= completed_) {
        completed_ = record;
        time_ = timed ? std::optional<Clock::time_point>(Clock::now()) : std::nullopt;
      }
    }
    done_.notify_all();
  }
  // The last record launched so far (0: never recorded).
  uint64_t LastRecord() {
    std::lock_guard lock(mu_);
    return recorded_;
  }
  // Waits until record `record` itself ran, until `deadline` when given; false on expiry. A later record that ran
  // first (on another stream) does not count: a wait is for the record that was the last when it began.
  bool WaitFor(uint64_t record, std::optional<Clock::time_point> deadline) {
    std::unique_lock lock(mu_);
    const auto ran = [&] { return Ran(record); };
    if (!deadline) {
      WaitAskingTheInterruptCheck(done_, lock, ran);  // as a stream's synchronize does
      return true;
    }
    return done_.wait_until(lock, *deadline, ran);
  }
  bool IsComplete() {
    std::lock_guard lock(mu_);
    return Ran(recorded_);
  }
  // When the last record ran: nullopt while it has not, or after a reset.
  std::optional<Clock::time_point> Time() {
    std::lock_guard lock(mu_);
    return Ran(recorded_) ? time_ : std::nullopt;
  }

 private:
  // Locked. Record 0 (never recorded) has always run.
  bool Ran(uint64_t record) const { return !outstanding_.contains(record); }

  const std::string name_;
  std::mutex mu_;
  std::condition_variable done_;
  uint64_t numbered_ = 0, recorded_ = 0, completed_ = 0;
  // Records numbered and not run yet: records run in their own streams' order, not in the order they were numbered.
  std::set<uint64_t> outstanding_;
  std::optional<Clock::time_point> time_;  // of record completed_, the latest that ran
};

HandleRegistry<Event>& Events() {
  static auto* const events = new HandleRegistry<Event>(kEventHandleTag);
  return *events;
}

aclError CreateEvent(const char* api, aclrtEvent* event) {
  if (event == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, std::string(api) + ": parameter 'event' is nullptr");
  *event = Events().AddMade([](void* handle) { return std::make_shared<Event>("event " + HandleName(handle)); });
  return ACL_SUCCESS;
}

// The event of `handle`, or nullptr after Fail()ing naming `api` and `what` the handle is, with *status: as in CANN,
// ACL_ERROR_INVALID_PARAM for a null handle (refused before the runtime sees it), like every null pointer, and
// ACL_ERROR_RT_PARAM_INVALID for one that is not a live event.
std::shared_ptr<Event> FindEvent(const char* api, aclrtEvent handle, aclError* status, const char* what = "event") {
  if (handle == nullptr) {
    *status = Fail(ACL_ERROR_INVALID_PARAM, std::string(api) + ": parameter '" + what + "' is nullptr");
    return nullptr;
  }
  std::shared_ptr<Event> event = Events().Find(handle);
  if (event == nullptr) {
    *status = Fail(ACL_ERROR_RT_PARAM_INVALID, std::string(api) + ": parameter '" + what + "' = " + HandleName(handle) +
                                                   " is not a live event (never created, or already destroyed)");
  }
  return event;
}

// Launches on `stream` a task that completes the event's next record; `timed`: a record, else a reset.
aclError LaunchRecord(const char* api, aclrtEvent handle, aclrtStream stream, bool timed) {
  aclError status = ACL_SUCCESS;
  std::shared_ptr<Event> event = FindEvent(api, handle, &status);
  if (event == nullptr) return status;
  const uint64_t record = event->NextRecord();
  try {
    status = LaunchOnStream(stream, api, [event, record, timed] { event->Complete(record, timed); });
  } catch (...) {
    event->Launched(record, /*made=*/false);
    throw;
  }
  event->Launched(record, /*made=*/status == ACL_SUCCESS);
  return status;
}

// A host wait for the event's last record so far: ACL_SUCCESS, or ACL_ERROR_RT_EVENT_SYNC_TIMEOUT after `timeout`.
aclError SynchronizeEvent(const char* api, aclrtEvent handle, std::optional<std::chrono::milliseconds> timeout) {
  aclError status = ACL_SUCCESS;
  std::shared_ptr<Event> event = FindEvent(api, handle, &status);
  if (event == nullptr) return status;
  const uint64_t record = event->LastRecord();
  const std::optional<Clock::time_point> deadline =
      timeout ? std::optional<Clock::time_point>(Clock::now() + *timeout) : std::nullopt;
  if (event->WaitFor(record, deadline)) return ACL_SUCCESS;
  return Fail(ACL_ERROR_RT_EVENT_SYNC_TIMEOUT, std::string(api) + ": " + event->name() + " was not complete after " +
                                                   std::to_string(timeout->count()) + " ms (its stream goes on)");
}

}  // namespace
}  // namespace moe_ep::cann::runtime

using moe_ep::cann::ApiFamily;
using moe_ep::cann::Fail;
using moe_ep::cann::Guarded;
namespace runtime = moe_ep::cann::runtime;

extern "C" aclError aclrtCreateEvent(aclrtEvent* event) {
  return Guarded("aclrtCreateEvent", ApiFamily::kAcl, [&] { return runtime::CreateEvent("aclrtCreateEvent", event); });
}

// Every flag (ACL_EVENT_SYNC, ACL_EVENT_TIME_LINE, ...) gives the same event: it can be waited for and timed.
extern "C" aclError aclrtCreateEventWithFlag(aclrtEvent* event, uint32_t /*flag*/) {
  return Guarded("aclrtCreateEventWithFlag", ApiFamily::kAcl,
                 [&] { return runtime::CreateEvent("aclrtCreateEventWithFlag", event); });
}

extern "C" aclError aclrtCreateEventExWithFlag(aclrtEvent* event, uint32_t /*flag*/) {
  return Guarded("aclrtCreateEventExWithFlag", ApiFamily::kAcl,
                 [&] { return runtime::CreateEvent("aclrtCreateEventExWithFlag", event); });
}

// A record or wait already launched keeps the event until it ran.
extern "C" aclError aclrtDestroyEvent(aclrtEvent event) {
  return Guarded("aclrtDestroyEvent", ApiFamily::kAcl, [&]() -> aclError {
    if (event == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, "aclrtDestroyEvent: parameter 'event' is nullptr");
    if (runtime::Events().Remove(event) == nullptr) {
      return Fail(ACL_ERROR_RT_PARAM_INVALID, "aclrtDestroyEvent: parameter 'event' = " + runtime::HandleName(event) +
                                                  " is not a live event (never created, or already destroyed)");
    }
    return ACL_SUCCESS;
  });
}

extern "C" aclError aclrtRecordEvent(aclrtEvent event, aclrtStream stream) {
  return Guarded("aclrtRecordEvent", ApiFamily::kAcl,
                 [&] { return runtime::LaunchRecord("aclrtRecordEvent", event, stream, /*timed=*/true); });
}

// Back to the state of a new event once the stream reaches it: complete, with no time to measure from.
extern "C" aclError aclrtResetEvent(aclrtEvent event, aclrtStream stream) {
  return Guarded("aclrtResetEvent", ApiFamily::kAcl,
                 [&] { return runtime::LaunchRecord("aclrtResetEvent", event, stream, /*timed=*/false); });
}

// The stream waits for the last record of `event` made before this call (none: it does not wait), that record itself:
// as in CANN, a later record, even one that runs first on another stream, does not release it. At most the
// operations' deadline, after which its task fails with a timeout naming the event. That deadline is the longer of
// MOE_EP_TIMEOUT_MS and HCCL_EXEC_TIMEOUT: the event often stands behind an operator that may take its whole
// HCCL_EXEC_TIMEOUT, and the wait must not give up before the operator does.
extern "C" aclError aclrtStreamWaitEvent(aclrtStream stream, aclrtEvent event) {
  return Guarded("aclrtStreamWaitEvent", ApiFamily::kAcl, [&]() -> aclError {
    const char* api = "aclrtStreamWaitEvent";
    aclError status = ACL_SUCCESS;
    std::shared_ptr<runtime::Event> waited = runtime::FindEvent(api, event, &status);
    if (waited == nullptr) return status;
    std::chrono::milliseconds timeout{0};
    try {
      timeout = std::max(moe_ep::env::OperationTimeout(), moe_ep::env::HcclOperationTimeout());
    } catch (const moe_ep::Error& e) {  // a malformed variable: an aclrt call's parameter error, not aclnn's 161002
      return Fail(ACL_ERROR_INVALID_PARAM, std::string(api) + ": " + e.what());
    }
    const uint64_t record = waited->LastRecord();
    return moe_ep::cann::LaunchOnStream(stream, api, [waited, record, timeout] {
      if (!waited->WaitFor(record, runtime::Clock::now() + timeout)) {
        throw moe_ep::Error(moe_ep::ErrorCode::kTimeout,
                            waited->name() + " was not complete after " + std::to_string(timeout.count()) +
                                " ms (the longer of MOE_EP_TIMEOUT_MS and HCCL_EXEC_TIMEOUT): the stream stopped "
                                "waiting");
      }
    });
  });
}

extern "C" aclError aclrtSynchronizeEvent(aclrtEvent event) {
  return Guarded("aclrtSynchronizeEvent", ApiFamily::kAcl,
                 [&] { return runtime::SynchronizeEvent("aclrtSynchronizeEvent", event, std::nullopt); });
}

// timeout in ms: -1 waits for good, 0 only looks.
extern "C" aclError aclrtSynchronizeEventWithTimeout(aclrtEvent event, int32_t timeout) {
  return Guarded("aclrtSynchronizeEventWithTimeout", ApiFamily::kAcl, [&]() -> aclError {
    const char* api = "aclrtSynchronizeEventWithTimeout";
    if (timeout < -1) {
      return Fail(ACL_ERROR_INVALID_PARAM, std::string(api) + ": parameter 'timeout' = " + std::to_string(timeout) +
                                               " violates rule: -1 (wait for good) or a number of ms >= 0");
    }
    return runtime::SynchronizeEvent(api, event,
                                     timeout == -1 ? std::nullopt : std::optional<std::chrono::milliseconds>(timeout));
  });
}

extern "C" aclError aclrtQueryEventStatus(aclrtEvent event, aclrtEventRecordedStatus* status) {
  return Guarded("aclrtQueryEventStatus", ApiFamily::kAcl, [&]() -> aclError {
    if (status == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, "aclrtQueryEventStatus: parameter 'status' is nullptr");
    aclError lookup = ACL_SUCCESS;
    std::shared_ptr<runtime::Event> found = runtime::FindEvent("aclrtQueryEventStatus", event, &lookup);
    if (found == nullptr) return lookup;
    *status = found->IsComplete() ? ACL_EVENT_RECORDED_STATUS_COMPLETE : ACL_EVENT_RECORDED_STATUS_NOT_READY;
    return ACL_SUCCESS;
  });
}

extern "C" aclError aclrtQueryEvent(aclrtEvent event, aclrtEventStatus* status) {
  return Guarded("aclrtQueryEvent", ApiFamily::kAcl, [&]() -> aclError {
    if (status == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, "aclrtQueryEvent: parameter 'status' is nullptr");
    aclError lookup = ACL_SUCCESS;
    std::shared_ptr<runtime::Event> found = runtime::FindEvent("aclrtQueryEvent", event, &lookup);
    if (found == nullptr) return lookup;
    *status = found->IsComplete() ? ACL_EVENT_STATUS_COMPLETE : ACL_EVENT_STATUS_NOT_READY;
    return ACL_SUCCESS;
  });
}

// Milliseconds from when the stream ran startEvent's last record to when it ran endEvent's; both must have run.
extern "C" aclError aclrtEventElapsedTime(float* ms, aclrtEvent start_event, aclrtEvent end_event) {
  return Guarded("aclrtEventElapsedTime", ApiFamily::kAcl, [&]() -> aclError {
    const char* api = "aclrtEventElapsedTime";
    if (ms == nullptr) return Fail(ACL_ERROR_INVALID_PARAM, std::string(api) + ": parameter 'ms' is nullptr");
    aclError lookup = ACL_SUCCESS;
    std::shared_ptr<runtime::Event> start = runtime::FindEvent(api, start_event, &lookup, "startEvent");
    if (start == nullptr) return lookup;
    std::shared_ptr<runtime::Event> end = runtime::FindEvent(api, end_event, &lookup, "endEvent");
    if (end == nullptr) return lookup;
    const auto start_time = start->Time(), end_time = end->Time();
    for (const auto& [time, event, what] :
         {std::tuple{start_time, start.get(), "startEvent"}, std::tuple{end_time, end.get(), "endEvent"}}) {
      if (!time) {
        return Fail(ACL_ERROR_RT_PARAM_INVALID, std::string(api) + ": parameter '" + what + "' (" + event->name() +
                                                    ") has no completed record to time (never recorded, reset, "
                                                    "or its stream has not reached the record yet)");
      }
    }
    *ms = std::chrono::duration<float, std::milli>(*end_time - *start_time).count();
    return ACL_SUCCESS;
  });
}
