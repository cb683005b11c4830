// Test support for the Workload API sources: a metrics recorder that counts, and running an
// io_context until a condition holds.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>

#include <asio/io_context.hpp>

#include <awaken/spiffe/source.hpp>

namespace awaken::test {

/// Counts what a source records, by kind.
struct CountingMetrics final : spiffe::MetricsRecorder {
  std::atomic<int> updates{0};
  std::atomic<int> reconnects{0};
  std::array<std::atomic<int>, 16> errors{};
  void record_update() noexcept override { ++updates; }
  void record_reconnect() noexcept override { ++reconnects; }
  void record_error(spiffe::MetricsErrorKind kind) noexcept override { ++errors[static_cast<std::size_t>(kind)]; }
  int count(spiffe::MetricsErrorKind kind) const { return errors[static_cast<std::size_t>(kind)].load(); }
};

/// Runs `io` until `done()` holds or `deadline` passes; returns whether it held.
template <class Pred>
bool run_until(asio::io_context& io, Pred done, std::chrono::milliseconds deadline = std::chrono::seconds{10}) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    io.restart();
    io.run_for(std::chrono::milliseconds{5});
  }
  return true;
}

}  // namespace awaken::test
