// Process-wide defaults: the real clock, the default jitter, the logger, backoff arithmetic.
#include <awaken/backoff.hpp>
#include <awaken/clock.hpp>
#include <awaken/log.hpp>

#include <time.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <mutex>
#include <random>

#include <spdlog/logger.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <asio/steady_timer.hpp>

namespace awaken {
namespace {

class RealClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point steady_now() const noexcept override {
    return std::chrono::steady_clock::now();
  }
  std::chrono::system_clock::time_point system_now() const noexcept override {
    return std::chrono::system_clock::now();
  }
  std::chrono::steady_clock::time_point coarse_steady_now() const noexcept override {
#if defined(CLOCK_MONOTONIC_COARSE)
    // libstdc++'s steady_clock is CLOCK_MONOTONIC; the coarse clock counts on the same base.
    timespec ts{};
    if (::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0)
      return std::chrono::steady_clock::time_point{std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::seconds{ts.tv_sec} + std::chrono::nanoseconds{ts.tv_nsec})};
#endif
    return std::chrono::steady_clock::now();
  }
};

class ThreadLocalJitter final : public JitterSource {
 public:
  double next_unit() noexcept override {
    thread_local std::mt19937_64 engine{std::random_device{}()};
    return std::uniform_real_distribution<double>{0.0, 1.0}(engine);
  }
};

std::shared_ptr<spdlog::logger> make_default_logger() {
  auto l = std::make_shared<spdlog::logger>("awaken", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  l->set_level(spdlog::level::warn);
  return l;
}

struct LoggerSlot {
  std::mutex mutex;
  std::shared_ptr<spdlog::logger> current = make_default_logger();
};

LoggerSlot& logger_slot() {
  static LoggerSlot slot;
  return slot;
}

}  // namespace

std::string utc_text(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  std::array<char, 32> buf{};
  if (::gmtime_r(&secs, &tm) == nullptr || std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    return "?";
  return buf.data();
}

const Clock& system_clock() noexcept {
  static const RealClock clock;
  return clock;
}

JitterSource& default_jitter() noexcept {
  static ThreadLocalJitter jitter;
  return jitter;
}

std::shared_ptr<spdlog::logger> logger() noexcept {
  auto& slot = logger_slot();
  std::lock_guard lock{slot.mutex};
  return slot.current;
}

void set_logger(std::shared_ptr<spdlog::logger> replacement) noexcept {
  auto& slot = logger_slot();
  auto fresh = replacement ? std::move(replacement) : make_default_logger();
  std::lock_guard lock{slot.mutex};
  slot.current.swap(fresh);
}

std::chrono::milliseconds BackoffPolicy::base_delay(unsigned failures) const noexcept {
  const double cap = static_cast<double>(std::max<std::int64_t>(max_delay.count(), 0));
  const double growth = (multiplier >= 1.0 && std::isfinite(multiplier)) ? multiplier : 1.0;
  double d = static_cast<double>(std::max<std::int64_t>(initial_delay.count(), 0));
  for (unsigned i = 1; i < failures && d < cap; ++i) d *= growth;
  return std::chrono::milliseconds{static_cast<std::int64_t>(std::min(d, cap))};
}

std::chrono::milliseconds BackoffPolicy::delay(unsigned failures, JitterSource& jitter_source) const noexcept {
  const auto base = base_delay(failures);
  const double j = std::clamp(std::isfinite(jitter) ? jitter : 0.0, 0.0, 1.0);
  if (j == 0.0) return base;
  const double u = std::clamp(jitter_source.next_unit(), 0.0, 1.0);
  return std::chrono::milliseconds{static_cast<std::int64_t>(static_cast<double>(base.count()) * (1.0 - j * u))};
}

std::optional<std::chrono::milliseconds> BackoffPolicy::retry_wait(unsigned attempt, bool retryable,
                                                                   std::optional<std::chrono::milliseconds> hint,
                                                                   JitterSource& jitter_source) const noexcept {
  if (!retryable || attempt >= std::max(max_attempts, 1u)) return std::nullopt;
  auto wait = delay(attempt, jitter_source);
  if (hint) {
    if (*hint > max_retry_after) return std::nullopt;
    wait = std::max(wait, *hint);
  }
  return wait;
}

asio::awaitable<void> Timing::wait(std::chrono::milliseconds d) const {
  if (sleep) {
    co_await sleep(d);
    co_return;
  }
  asio::steady_timer timer{co_await asio::this_coro::executor};
  timer.expires_after(d);
  co_await timer.async_wait(asio::use_awaitable);
}

}  // namespace awaken
