// Bounded exponential backoff with jitter, as an Asio coroutine.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

#include <asio/awaitable.hpp>
#include <asio/error.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <awaken/clock.hpp>
#include <awaken/error.hpp>

namespace awaken {

/// How often and how patiently to retry.
///
/// The delay after the n-th failure is `min(initial_delay * multiplier^(n-1), max_delay)`, then
/// shortened by a random fraction of at most `jitter` (so it never exceeds `max_delay`). Out of
/// range values are clamped: `max_attempts` of 0 means 1, a `multiplier` below 1 means 1,
/// `jitter` is kept in [0, 1].
struct BackoffPolicy {
  unsigned max_attempts = 3;                          ///< attempts in all, the first included
  std::chrono::milliseconds initial_delay{100};       ///< delay after the first failure
  double multiplier = 2.0;                            ///< growth per further failure
  std::chrono::milliseconds max_delay{1000};          ///< cap of any computed delay
  double jitter = 0.2;                                ///< at most this fraction is taken off at random
  std::chrono::milliseconds max_retry_after{30'000};  ///< a longer server hint ends the retries

  /// One attempt, no retry.
  static BackoffPolicy disabled() noexcept {
    BackoffPolicy p;
    p.max_attempts = 1;
    return p;
  }

  /// The delay after `failures` failures (>= 1), before jitter.
  std::chrono::milliseconds base_delay(unsigned failures) const noexcept;
  /// The delay after `failures` failures with jitter drawn from `jitter_source`.
  std::chrono::milliseconds delay(unsigned failures, JitterSource& jitter_source) const noexcept;

  /// The rule, without I/O: after attempt `attempt` (from 1) failed, how long to wait before
  /// the next one, or nullopt to give up: when the failure is not `retryable`, the attempts
  /// are spent, or the server's retry `hint` is over `max_retry_after`. A hint lengthens the
  /// wait to at least itself.
  std::optional<std::chrono::milliseconds> retry_wait(unsigned attempt, bool retryable,
                                                      std::optional<std::chrono::milliseconds> hint,
                                                      JitterSource& jitter_source) const noexcept;
};

/// The time, the randomness and the waits of awaken's time rules (retries, reconnects, expiry,
/// the initial sync), injected one way everywhere: `BrokerOptions::timing`, a source builder's
/// `timing`, `with_backoff`. Tests pass a `ManualClock`, a `FixedJitter` and a `sleep` that
/// records its delays and returns at once. Each member left empty is the real one. The clock and
/// the jitter source must outlive the work that uses them.
struct Timing {
  const Clock* clock = nullptr;    ///< `system_clock()` when null
  JitterSource* jitter = nullptr;  ///< `default_jitter()` when null
  /// How to wait; a `steady_timer` on the awaiting coroutine's executor when empty. A sleep must
  /// end early, with `operation_aborted`, when its coroutine's cancellation is emitted (a
  /// source's shutdown relies on it).
  std::function<asio::awaitable<void>(std::chrono::milliseconds)> sleep;

  const Clock& clock_or_real() const noexcept { return clock != nullptr ? *clock : system_clock(); }
  JitterSource& jitter_or_real() const noexcept { return jitter != nullptr ? *jitter : default_jitter(); }
  /// Waits `d` as this timing says.
  asio::awaitable<void> wait(std::chrono::milliseconds d) const;
};

namespace detail {
template <class T>
struct awaitable_value;
template <class T, class E>
struct awaitable_value<asio::awaitable<T, E>> {
  using type = T;
};

// The server's retry hint carried by an awaken::Error, if any.
inline std::optional<std::chrono::milliseconds> retry_hint(const std::system_error& e) noexcept {
  if (const auto* ae = dynamic_cast<const Error*>(&e)) return ae->details().retry_after;
  return std::nullopt;
}
}  // namespace detail

/// Runs `op()` (a callable returning `asio::awaitable<T>`) until it succeeds, fails with an
/// error that is not retryable, or `policy.max_attempts` attempts have failed; then returns its
/// value or rethrows its last exception.
///
/// - Failures are exceptions derived from `std::system_error`; `is_retryable(std::error_code)`
///   decides. Any other exception, and `operation_aborted`, is rethrown at once.
/// - Before each wait, `on_retry(attempt, const std::system_error&, delay)` is called
///   (attempt counts from 1), e.g. to log. It must not throw.
/// - A retry hint carried by an `awaken::Error` (`details().retry_after`, from `Retry-After`)
///   lengthens the wait to at least the hint; a hint over `policy.max_retry_after` ends the
///   retries with that error rather than sleeping that long.
///
/// Per-operation cancellation: the wait honours the coroutine's cancellation state; a cancelled
/// wait throws `asio::error::operation_aborted` and no further attempt is made.
template <class Op, class IsRetryable, class OnRetry>
auto with_backoff(BackoffPolicy policy, IsRetryable is_retryable, OnRetry on_retry, Op op, Timing timing = {})
    -> asio::awaitable<typename detail::awaitable_value<std::invoke_result_t<Op&>>::type> {
  using T = typename detail::awaitable_value<std::invoke_result_t<Op&>>::type;
  JitterSource& jitter = timing.jitter_or_real();
  for (unsigned attempt = 1;; ++attempt) {
    auto cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none) throw std::system_error(asio::error::operation_aborted);
    std::chrono::milliseconds wait{0};
    try {
      if constexpr (std::is_void_v<T>) {
        co_await op();
        co_return;
      } else {
        co_return co_await op();
      }
    } catch (const std::system_error& e) {
      if (e.code() == asio::error::operation_aborted) throw;
      const auto next = policy.retry_wait(attempt, is_retryable(e.code()), detail::retry_hint(e), jitter);
      if (!next) throw;
      wait = *next;
      on_retry(attempt, e, wait);
    }
    co_await timing.wait(wait);
  }
}

}  // namespace awaken
