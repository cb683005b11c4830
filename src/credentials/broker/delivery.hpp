// Delivering a flight's outcome to its waiters: batched per executor, nothing lost should a
// handler throw.
#pragma once

#include <memory>
#include <vector>

#include "credentials/broker/broker_core.hpp"

namespace awaken::detail {

// Runs a batch of completions that share an executor, from a function posted to it. Should a
// handler throw, the rest are posted again before the exception leaves, so none is lost.
struct Batch {
  Waiters waiters;
  Outcome outcome;

  void operator()() {
    for (std::size_t i = 0; i < waiters.size(); ++i) {
      try {
        waiters[i]->invoke(outcome.error, outcome.entry);
      } catch (...) {
        auto rest = std::make_shared<Batch>(
            Batch{Waiters(std::make_move_iterator(waiters.begin() + static_cast<std::ptrdiff_t>(i) + 1),
                          std::make_move_iterator(waiters.end())),
                  outcome});
        if (!rest->waiters.empty()) rest->waiters.front()->post([rest] { (*rest)(); });
        throw;
      }
    }
  }
};

// Completes `waiters` with one posted function per run of waiters sharing an executor (usually
// one for all): ten thousand waiters cost one queue entry, not ten thousand.
inline void deliver(Waiters& waiters, const Outcome& outcome) {
  auto batch = std::make_shared<Batch>(Batch{{}, outcome});
  auto flush = [&] {
    if (batch->waiters.empty()) return;
    auto& first = *batch->waiters.front();
    first.post([b = std::move(batch)] { (*b)(); });
    batch = std::make_shared<Batch>(Batch{{}, outcome});
  };
  batch->waiters.reserve(waiters.size());
  for (auto& w : waiters) {
    if (!w) continue;
    if (outcome.error && outcome.diagnostics) w->set_diagnostics(*outcome.diagnostics);
    if (!batch->waiters.empty() && !batch->waiters.front()->same_executor(*w)) flush();
    batch->waiters.push_back(std::move(w));
  }
  flush();
  waiters.clear();
}

inline void deliver_closed(std::vector<ClosedFlight>& closed, const Outcome& outcome) {
  for (auto& c : closed) {
    try {
      deliver(c.waiters, outcome);
    } catch (...) {  // out of memory: these waiters are lost with their completions' work
    }
    c.flight->cancel();
  }
}

}  // namespace awaken::detail
