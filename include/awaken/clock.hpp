// Injectable time and randomness, so that state machines are tested without sleeping.
#pragma once

#include <atomic>
#include <chrono>
#include <string>

namespace awaken {

/// A source of the two times awaken reads: steady time for every decision (expiry, backoff),
/// system time for what is shown to people and put in tokens (`iat`, `exp`).
///
/// Thread safety: implementations must be safe to call from any thread.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point steady_now() const noexcept = 0;
  virtual std::chrono::system_clock::time_point system_now() const noexcept = 0;
  /// Steady time that may lag `steady_now()` by a few milliseconds, for hot paths whose
  /// decisions have coarser margins (cache expiry). Defaults to `steady_now()`.
  virtual std::chrono::steady_clock::time_point coarse_steady_now() const noexcept { return steady_now(); }
};

/// The real clocks; `coarse_steady_now` reads `CLOCK_MONOTONIC_COARSE` (a few ns instead of
/// about 20, lagging by at most one kernel tick) where the platform has it. Lives for the whole
/// program.
const Clock& system_clock() noexcept;

/// A clock that moves only when told to; both times advance together. For tests.
class ManualClock final : public Clock {
 public:
  ManualClock() noexcept : ManualClock(std::chrono::system_clock::time_point{std::chrono::seconds{1'700'000'000}}) {}
  explicit ManualClock(std::chrono::system_clock::time_point start) noexcept : start_system_(start) {}

  std::chrono::steady_clock::time_point steady_now() const noexcept override {
    return std::chrono::steady_clock::time_point{offset()};
  }
  std::chrono::system_clock::time_point system_now() const noexcept override {
    return start_system_ + std::chrono::duration_cast<std::chrono::system_clock::duration>(offset());
  }
  void advance(std::chrono::nanoseconds d) noexcept { offset_ns_.fetch_add(d.count()); }

 private:
  std::chrono::nanoseconds offset() const noexcept { return std::chrono::nanoseconds{offset_ns_.load()}; }

  std::chrono::system_clock::time_point start_system_;
  std::atomic<std::chrono::nanoseconds::rep> offset_ns_{1'000'000'000};
};

/// A source of uniform numbers in [0, 1) used to spread retries.
///
/// Thread safety: implementations must be safe to call from any thread.
class JitterSource {
 public:
  virtual ~JitterSource() = default;
  virtual double next_unit() noexcept = 0;
};

/// `t` as ISO 8601 UTC to the second, "2026-11-22T18:30:00Z"; "?" if it cannot be shown.
std::string utc_text(std::chrono::system_clock::time_point t);

/// The default jitter: a per-thread generator seeded from `std::random_device`.
JitterSource& default_jitter() noexcept;

/// Jitter that always returns the same value. For tests.
class FixedJitter final : public JitterSource {
 public:
  explicit FixedJitter(double unit) noexcept : unit_(unit) {}
  double next_unit() noexcept override { return unit_; }

 private:
  double unit_;
};

}  // namespace awaken
