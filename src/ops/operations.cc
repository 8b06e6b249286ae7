// Operation entries: lock the communicators, apply elasticInfo, run the protocol, remember failed peers and refuse
// operations after one that failed part-way until a reset.
#include "ops/operations.h"

#include "base/floating_point.h"
#include "moe_ep/error.h"
#include "ops/elastic.h"
#include "ops/protocol.h"

namespace moe_ep::ops {
namespace {

// What OpState::must_reset keeps of a failure: the operation, how it failed and whom it waited for.
std::string FailedPartWay(const char* op, const TimeoutError& e, bool interrupted) {
  const std::string how = std::string(op) + (interrupted ? " was interrupted" : " timed out");
  // An interrupt may come while no peer is awaited (as the rank's worker threads ran).
  return e.missing_ranks().empty() ? how : how + " waiting for " + transport::RanksNamed(e.missing_ranks());
}

// Runs body(link) holding ep's (and tp's) lock (telling the windows whether it may send through relays), marks the
// operation's end (failed or not), then waits until everything it sent has been taken (a message-passing transport must
// not leave a phase's last message for the next call); a deadline error's ranks are remembered as failed. After a
// timeout, an interrupt or an internal error (500002), every operation but a reset (`resets`) is refused until one
// succeeds. `also_gone`: ranks this operation leaves out (a scaled-down elasticInfo, a reset's unreachable ranks),
// which the transport neither relays through nor waits for.
template <typename Body>
void Locked(Communicator& ep, Communicator* tp, const char* op, bool may_relay, Body&& body,
            std::span<const int> also_gone = {}, bool resets = false) {
  std::unique_lock ep_lock(ep.mutex());
  std::unique_lock<std::mutex> tp_lock;
  if (tp) tp_lock = std::unique_lock(tp->mutex());
  // A TP pair numbers its calls apart from either EP group, and no reset of an EP group realigns it: a call one rank
  // of the pair failed part-way or skipped, its peer may have run (or run further), and from then on the two would
  // wait on each other's other calls, or one take the other's rows of another call for its own. So a pair through
  // which a call failed before its exchange was done (on this rank), or that a rank skipped a call of because its EP
  // group awaits a reset, takes no call until it is reset (BufferReset of the pair, on both of its ranks).
  const auto pair_out_of_step = [&](const std::string& why) {
    if (tp && tp->state().must_reset.empty()) tp->state().must_reset = why;
  };
  const auto pair_failed = [&](const std::string& why) {
    if (tp && tp->state().pair_call_open) pair_out_of_step(why);
  };
  if (!resets && !ep.state().must_reset.empty()) {
    pair_out_of_step(std::string(op) + " was refused on this rank, and its TP peer may have run it");
    throw Error(ErrorCode::kInvalidConfig,
                std::string(op) + ": refused on rank " + std::to_string(ep.rank()) + " of " + ep.window().name() +
                    ": an earlier operation failed part-way (" + ep.state().must_reset +
                    ") and may have left rows and flags in flight; rule: after a timeout, an interrupt or an internal "
                    "error, the ranks call BufferReset (aclnnMoeDistributeBufferReset in the C API; synced, or with "
                    "the reachable ranks' mask) before their next operation" +
                    (tp ? "; this call's TP pair is out of step on this rank now, and needs a reset too (BufferReset "
                          "of the pair's group on both of its ranks; in the C API, which resets no TP communicator, a "
                          "new TP communicator)"
                        : ""));
  }
  if (tp && !tp->state().must_reset.empty()) {
    throw Error(
        ErrorCode::kInvalidConfig,
        std::string(op) + ": refused on rank " + std::to_string(ep.rank()) + " of " + ep.window().name() +
            ": its TP pair (rank " + std::to_string(tp->rank()) + " of " + tp->window().name() + ") is out of step (" +
            tp->state().must_reset +
            "); rule: after a call with a TP pair fails on a rank before the pair's exchange is done, or is "
            "refused because the rank's EP group awaits a reset, both ranks of the pair reset it (BufferReset "
            "of the pair's group, synced) before their next call with it; the C API resets no TP communicator: destroy "
            "it (HcclCommDestroy) and make a new one");
  }
  const protocol::Link link{
      ep.window(),         ep.state(),   tp ? &tp->window() : nullptr, tp ? &tp->state() : nullptr, ep.Deadline(),
      ep.pull_min_bytes(), &ep.workers()};
  std::vector<int> gone = ep.failed_ranks();
  gone.insert(gone.end(), also_gone.begin(), also_gone.end());
  link.ep.SetFailedPeers(gone);
  link.ep.AllowRelay(may_relay);
  if (tp) {
    link.tp->SetFailedPeers(tp->failed_ranks());
    link.tp->AllowRelay(may_relay);
  }
  const auto end = [&] {
    link.ep.EndOperation(OperationSequence(ep.state()));
    if (tp) link.tp->EndOperation(OperationSequence(tp->state()));
  };
  try {
    try {
      body(link);
    } catch (...) {
      end();  // the peers' count of operations must not fall behind this rank's
      throw;
    }
    end();
    link.ep.Drain(link.deadline, op, gone);
    if (tp) protocol::WaitOnTpPeer([&] { link.tp->Drain(link.deadline, op, tp->failed_ranks()); });
  } catch (const InterruptedError& e) {
    ep.state().must_reset = FailedPartWay(op, e, true);  // the ranks awaited did nothing wrong
    pair_failed(ep.state().must_reset);
    throw;
  } catch (const protocol::TpPeerTimeout&) {
    // Its ranks are TP ranks (the EP group's of those numbers did nothing wrong), and no reset of the EP group would
    // clear them in the pair: nobody is remembered as failed.
    ep.state().must_reset = std::string(op) + " timed out waiting for its TP peer";
    pair_out_of_step(ep.state().must_reset);
    throw;
  } catch (const TimeoutError& e) {
    ep.RememberFailed(e.missing_ranks());
    ep.state().must_reset = FailedPartWay(op, e, false);
    pair_failed(ep.state().must_reset);
    throw;
  } catch (const Error& e) {
    // Refused input has rows sent at most where every rank refuses (a disagreement found by dispatch's checks of its
    // peers) or where the refused rank's peers go on; a failure of the system or the transport may have left any.
    // So with a TP pair: a rank that refused before it took the pair's call (and not every rank did) leaves its peer
    // waiting in it, until the peer's deadline, which puts the peer's side of the pair out of step; this rank's side
    // is then put so by its next call with the pair, which the peer refuses.
    if (e.code() == ErrorCode::kInternal) {
      ep.state().must_reset = std::string(op) + " failed: " + e.what();
      pair_failed(ep.state().must_reset);
    }
    throw;
  } catch (const std::exception& e) {
    // Not one of moe_ep's (memory ran out, say): the call may have stopped anywhere, as after an internal error.
    ep.state().must_reset = std::string(op) + " failed: " + e.what();
    pair_failed(ep.state().must_reset);
    throw;
  }
  if (resets) ep.state().must_reset.clear();
}

}  // namespace

plan::WindowCapacity CapacityOf(const Communicator& ep, const Communicator* tp) {
  return {ep.window_bytes(), tp ? tp->window_bytes() : 0};
}

plan::MoeConfig RunDispatch(Communicator& ep, Communicator* tp, const plan::MoeConfig& config,
                            const plan::DispatchTensors& tensors, std::span<const int32_t> elastic_info) {
  const DefaultFloatingPoint arithmetic;
  plan::MoeConfig ran = config;
  const std::optional<plan::ScaledDown> scaled = ScaledDownBy(config, elastic_info);
  // Through relays: a token bound for several ranks of one host crosses to it once.
  Locked(
      ep, tp, config.op.c_str(), /*may_relay=*/true,
      [&](const protocol::Link& link) {
        RunElastic(config, scaled, link, [&](const plan::MoeConfig& c, const protocol::Link& l) {
          ran = c;
          protocol::Dispatch(c, tensors, l);
        });
      },
      LeftOut(scaled, ep.size()));
  return ran;
}

void RunCombine(Communicator& ep, Communicator* tp, const plan::MoeConfig& config, const plan::CombineTensors& tensors,
                std::span<const int32_t> elastic_info) {
  const DefaultFloatingPoint arithmetic;
  // Straight to each owner: every row is for one rank alone (no pre-reduction, for bit-exactness), so a relay
  // would only add a hop and a copy.
  const std::optional<plan::ScaledDown> scaled = ScaledDownBy(config, elastic_info);
  Locked(
      ep, tp, config.op.c_str(), /*may_relay=*/false,
      [&](const protocol::Link& link) {
        RunElastic(config, scaled, link,
                   [&](const plan::MoeConfig& c, const protocol::Link& l) { protocol::Combine(c, tensors, l); });
      },
      LeftOut(scaled, ep.size()));
}

void RunBufferReset(Communicator& ep, std::span<const int32_t> reachable, bool need_sync, const char* op) {
  std::vector<int> unreachable;  // what was queued for them is given up
  for (int r = 0; r < static_cast<int>(reachable.size()); ++r) {
    if (!reachable[r]) unreachable.push_back(r);
  }
  // A sync waits for every reachable rank, and so does the rest of the reset: a rank this one had given up on (it
  // stalled) is reached again, through relays as well, and what it still owes is awaited, not dropped (it would
  // wait for the end marks this rank would otherwise leave out). A rank that fails the sync is given up on again, and
  // a reset that fails otherwise (interrupted, say) forgets no one.
  const std::vector<int> failed_before = ep.failed_ranks();
  if (need_sync) {
    for (int r = 0; r < ep.size(); ++r) {
      if (reachable[r]) ep.ForgetFailed(r);
    }
  }
  try {
    // Without sync the reset sends nothing a relay would hand on, and waits for no one: nor may a relay wait there
    // for the senders it relays for (their resets may come any time later).
    Locked(
        ep, nullptr, op, /*may_relay=*/need_sync,
        [&](const protocol::Link& link) {
          protocol::BufferReset(link.ep, link.ep_state, reachable, need_sync, link.deadline, op);
        },
        unreachable, /*resets=*/true);
  } catch (const InterruptedError&) {
    ep.RememberFailed(failed_before);
    throw;
  } catch (const TimeoutError&) {
    throw;  // Locked remembered whom the sync waited for in vain; the others synced
  } catch (...) {
    ep.RememberFailed(failed_before);
    throw;
  }
  // What the caller knows: a transport that relays stops relaying through them, and operations give up on them.
  std::erase(unreachable, ep.rank());  // a rank that resets is no failed peer of its own
  ep.RememberFailed(unreachable);
}

void RunBarrier(Communicator& ep) {
  // Not an operation of the protocol (no EndOperation: the operations' sequence is theirs), but it holds the
  // lock like one, and a rank it timed out on is remembered as failed. It leaves no rows in flight: a group whose
  // barrier failed goes on (a synced reset realigns its barriers).
  const std::lock_guard lock(ep.mutex());
  try {
    ep.window().Barrier(ep.Deadline(), "Barrier");
  } catch (const InterruptedError&) {
    throw;  // the ranks awaited did nothing wrong
  } catch (const TimeoutError& e) {
    ep.RememberFailed(e.missing_ranks());
    throw;
  }
}

std::vector<int32_t> ProbeReachable(Communicator& ep, transport::Clock::duration wait) {
  const std::lock_guard lock(ep.probe_mutex());
  return ep.window().Probe(wait);
}

}  // namespace moe_ep::ops
