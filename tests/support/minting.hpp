// Test support for minters: a broker with quick retries, the error a request ends with, and a
// clock whose steady time is moved by hand while its wall time stays real (so assertions that a
// real peer checks against its own clock stay valid while the broker's windows are crossed).
#pragma once

#include <chrono>
#include <string>

#include <asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <awaken/clock.hpp>
#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/error.hpp>

#include "support/peer.hpp"

namespace awaken::test {

/// Broker options that retry `attempts` times with waits of a few milliseconds.
inline BrokerOptions quick_retries(unsigned attempts = 3) {
  using namespace std::chrono_literals;
  BrokerOptions o;
  o.retry.max_attempts = attempts;
  o.retry.initial_delay = 5ms;
  o.retry.max_delay = 20ms;
  o.retry.max_retry_after = 2s;
  return o;
}

/// The awaken::Error that `broker.token_for(provider, scope)` ends with; fails the test if it
/// returns a token.
inline Error mint_failure(asio::io_context& io, AwakenBroker& broker, const std::string& provider,
                          const std::string& scope = "s") {
  try {
    run(io, broker.token_for(provider, scope), std::chrono::seconds{30});
  } catch (const Error& e) {
    return e;
  }
  FAIL("no error");
  throw std::logic_error("unreachable");
}

/// Steady time moved by `advance`; system time real.
class SteadyOnlyClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point steady_now() const noexcept override { return manual_.steady_now(); }
  std::chrono::system_clock::time_point system_now() const noexcept override {
    return std::chrono::system_clock::now();
  }
  void advance(std::chrono::nanoseconds d) noexcept { manual_.advance(d); }

 private:
  ManualClock manual_;
};

/// Runs `io` until `broker` has no flight left (a background refresh has ended); fails the test
/// after 4 s.
inline void settle(asio::io_context& io, const AwakenBroker& broker) {
  io.restart();
  for (int i = 0; i < 200 && broker.stats().flights != 0; ++i) io.run_for(std::chrono::milliseconds{20});
  REQUIRE(broker.stats().flights == 0);
}

}  // namespace awaken::test
