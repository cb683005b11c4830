// The one supervisor of every Workload API stream a source keeps open, without I/O: events in
// (connect failed, message rejected, update applied, stream failed, stream ended), actions out
// (connect, read next, publish, wait, give up), with the metrics each event counts. A source's
// driver runs the I/O; unit tests drive this with plain values.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <system_error>

#include <awaken/backoff.hpp>
#include <awaken/clock.hpp>
#include <awaken/spiffe/source.hpp>

namespace awaken::spiffe::detail {

/// What happened.
struct StreamEvent {
  enum class Kind;
  StreamEvent(Kind k, std::error_code e = {}, bool is_changed = false, bool is_no_identity = false) noexcept
      : kind(k), error(e), changed(is_changed), no_identity(is_no_identity) {}

  enum class Kind {
    connect_failed,    ///< no client could be made (`error`: why)
    message_rejected,  ///< a message broke a rule or a limit (`error`); the stream goes on
    update_applied,    ///< a valid message; `changed`: its content differs from what is published
    stream_failed,     ///< the call failed (`error`; `no_identity`: the agent has none for us yet)
    stream_ended,      ///< the server ended the stream cleanly
  } kind;
  std::error_code error;
  bool changed = false;
  bool no_identity = false;
};

/// What to do next, and what to count.
struct StreamAction {
  enum class Kind;
  StreamAction(Kind k) noexcept : kind(k) {}  // NOLINT: actions read as their kind

  enum class Kind {
    connect,    ///< make a client and open the stream
    read_next,  ///< read the next message
    publish,    ///< publish the message just applied, then read the next one
    wait,       ///< wait `delay`, then connect (`SupervisorCore::connect_now` first)
    give_up,    ///< stop: retrying cannot help (`error`)
  } kind;
  std::chrono::milliseconds delay{0};
  std::error_code error;
  /// The failures this event counts, in order (`count` of them).
  std::array<MetricsErrorKind, 3> metrics{};
  std::size_t count = 0;
  /// A reconnect follows (counted before the wait).
  bool reconnect = false;

  void add(MetricsErrorKind k) noexcept { metrics[count++] = k; }
};

/// A source still waiting for its first update says so after this long, then at the intervals
/// `next_sync_warning` gives.
inline constexpr std::chrono::milliseconds first_sync_warning{3000};
/// The wait before the next "still no update" warning: double the last one, at most a minute.
constexpr std::chrono::milliseconds next_sync_warning(std::chrono::milliseconds previous) noexcept {
  return std::min(previous * 2, std::chrono::milliseconds{60'000});
}

/// The rules:
/// - before the first valid update (the initial sync), `InvalidArgument` and `Unimplemented`
///   from the server, and a missing or invalid endpoint, give up; after it nothing does, but
///   `not_offered` (an optional profile the agent lacks) gives up whenever it comes;
/// - every other failure, and a clean end of stream, waits and reconnects: the wait is
///   `policy.delay(n)` for the n-th reconnect since the last valid update (reset by one), at
///   least 1 s and growing to 10 s at most after "no identity issued";
/// - a rejected message keeps the stream and the last good set;
/// - the first valid update is always published, later ones only when their content changed.
class SupervisorCore {
 public:
  /// Reconnect waits: from `min` doubling to `max`, each shortened at random by up to 10%.
  static BackoffPolicy reconnect_policy(std::chrono::milliseconds min, std::chrono::milliseconds max) noexcept;

  /// `x509`: the stream carries X.509 material (bundle size failures count as DER bytes).
  SupervisorCore(BackoffPolicy policy, JitterSource& jitter, bool x509 = false) noexcept
      : policy_(policy), jitter_(&jitter), x509_(x509) {}

  /// The first action: connect.
  StreamAction start() noexcept { return {StreamAction::Kind::connect}; }
  /// A stream is open: read from it.
  StreamAction connected() noexcept {
    first_message_ = true;
    return {StreamAction::Kind::read_next};
  }
  StreamAction on(const StreamEvent& event) noexcept;

  /// Whether a valid update has been applied (the initial sync is done).
  bool synced() const noexcept { return synced_; }
  /// Reconnects since the last valid update.
  unsigned failures() const noexcept { return failures_; }

 private:
  StreamAction retry(StreamAction a, bool no_identity) noexcept;

  BackoffPolicy policy_;
  JitterSource* jitter_;
  bool x509_ = false;
  bool synced_ = false;
  bool first_message_ = true;  // nothing read on this stream yet
  unsigned failures_ = 0;
};

}  // namespace awaken::spiffe::detail
