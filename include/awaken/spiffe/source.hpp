// What every Workload API source shares: the failures it counts, the metrics hooks, and the
// settings its builder takes (`SourceBuilder`, the base of `JwtSourceBuilder` and
// `X509SourceBuilder`).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>

#include <awaken/clock.hpp>
#include <awaken/completion.hpp>
#include <awaken/detail/spawn_operation.hpp>
#include <awaken/error.hpp>
#include <awaken/spiffe/workload_api.hpp>

namespace spdlog {
class logger;
}

namespace awaken::spiffe {

/// The failures a source counts.
enum class MetricsErrorKind {
  client_creation,              ///< the Workload API client could not be made (a bad endpoint)
  stream_connect,               ///< the stream failed before its first message
  stream_error,                 ///< the stream failed after messages
  stream_ended,                 ///< the server ended the stream (a reconnect follows)
  no_identity_issued,           ///< the agent has no identity for this workload yet
  initial_sync_failed,          ///< an attempt of the initial sync failed (besides its own kind)
  limit_max_bundles,            ///< an update had more trust domains than allowed
  limit_max_bundle_jwks_bytes,  ///< an update had a JWKS larger than allowed
  update_rejected,              ///< an update was malformed or over a limit; the last good set stays
  limit_max_svids,              ///< an X.509 update had more SVIDs than allowed
  limit_max_bundle_der_bytes,   ///< an X.509 update had a bundle larger than allowed
  no_suitable_svid,             ///< an X.509 update had no SVID the picker accepts
};
/// "client_creation", "stream_connect", ...
std::string_view to_string(MetricsErrorKind kind) noexcept;

/// Hooks for a metrics system. Called from the source's executor; must not block or throw.
class MetricsRecorder {
 public:
  virtual ~MetricsRecorder() = default;
  /// A new set was published (its content changed).
  virtual void record_update() noexcept {}
  /// The supervisor is about to wait before it reconnects.
  virtual void record_reconnect() noexcept {}
  virtual void record_error(MetricsErrorKind kind) noexcept { (void)kind; }
};

/// Picks, of a source's SVIDs (`X509Svid`s or WIT-SVIDs), the first whose hint (`Key` a
/// string) or SPIFFE ID (`Key` a `SpiffeId`) is the one given. Converts to `X509SvidPicker` and
/// `experimental::WitSvidPicker`.
template <class Key>
class SvidPicker {
 public:
  explicit SvidPicker(Key key) : key_(std::move(key)) {}
  template <class Svid>
  std::optional<std::size_t> operator()(std::span<const Svid> svids) const {
    for (std::size_t i = 0; i < svids.size(); ++i)
      if (key_of(svids[i]) == key_) return i;
    return std::nullopt;
  }

 private:
  template <class Svid>
  static decltype(auto) key_of(const Svid& svid) {
    if constexpr (std::is_same_v<Key, SpiffeId>)
      return svid.spiffe_id();
    else
      return svid.hint();
  }
  Key key_;
};
using HintPicker = SvidPicker<std::string>;
using IdPicker = SvidPicker<SpiffeId>;

/// The first SVID whose hint is `hint`, for any source's `svid_picker`.
inline HintPicker pick_by_hint(std::string hint) { return HintPicker{std::move(hint)}; }
/// The first SVID of `id`, for any source's `svid_picker`.
inline IdPicker pick_by_id(SpiffeId id) { return IdPicker{std::move(id)}; }

namespace detail {
template <class Snapshot>
struct SourceState;  // shared by a source's handles, its update waiters and its supervisor
}  // namespace detail
class JwtSource;
class X509Source;

/// The sequence numbers of a source's published sets, and waiting for the next one. Each object
/// remembers the last sequence it returned (at first, the one current when it was made), so
/// `changed` waits for something this object has not seen yet. Slow readers skip sets. `View` is
/// what the source publishes, as its readers see it (`JwtBundleSet`, `X509Context`).
///
/// Thread safety: one wait at a time per object; copies wait independently.
template <class Snapshot, class View>
class SourceUpdates {
 public:
  /// The source's current sequence: 1 after the initial sync, +1 per content change.
  std::uint64_t last() const noexcept;
  /// Waits until the sequence passes the last one this object saw, and completes with it:
  /// `void(std::error_code, std::uint64_t)`. Fails with `spiffe_errc::source_closed` once the
  /// source is shut down (at once when it already is), `operation_aborted` when cancelled
  /// (per-operation cancellation, any type). Any completion token; `co_await updates.changed()`
  /// throws `awaken::Error`. This object must outlive the operation.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto changed(CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, void(std::error_code, std::uint64_t)>(
        [this](auto handler) {
          start_changed(make_completion<std::error_code, std::uint64_t>(std::move(handler), fallback_executor()));
        },
        token);
  }
  /// Completes with the first published set, the current one included, for which `predicate`
  /// holds: `void(std::error_code, std::shared_ptr<const View>)`, failing as `changed`. This
  /// object must outlive the operation.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto wait_for(std::function<bool(const View&)> predicate, CompletionToken&& token = {}) {
    return awaken::detail::async_spawn<std::shared_ptr<const View>>(
        fallback_executor(), [this, p = std::move(predicate)]() mutable { return run_wait_for(std::move(p)); },
        std::forward<CompletionToken>(token));
  }

 private:
  friend class JwtSource;
  friend class X509Source;
  SourceUpdates(std::shared_ptr<detail::SourceState<Snapshot>> state, std::uint64_t seen) noexcept
      : state_(std::move(state)), seen_(seen) {}
  asio::any_io_executor fallback_executor() const noexcept;
  void start_changed(std::unique_ptr<Completion<std::error_code, std::uint64_t>> completion);
  asio::awaitable<std::shared_ptr<const View>> run_wait_for(std::function<bool(const View&)> predicate);
  std::shared_ptr<detail::SourceState<Snapshot>> state_;
  std::uint64_t seen_;
};

/// What every source handle offers alike, written once: its bounded, idempotent shutdown.
/// `Source` is the handle (`JwtSource`, `X509Source`, `experimental::WitSource`).
template <class Source>
class SourceShutdown {
 public:
  /// Stops the source's supervisors and waits until they have stopped, at most the builder's
  /// shutdown timeout (30 s by default): `spiffe_errc::shutdown_timeout` past it. Idempotent:
  /// later calls wait for the same stop. Waiters of `changed` fail with `source_closed`.
  /// Completes with `void(std::error_code)`.
  template <class CompletionToken = awaken::use_awaitable_t>
  requires(!std::is_convertible_v<CompletionToken, std::chrono::milliseconds>) auto shutdown(
      CompletionToken&& token = {}) const {
    return start(std::nullopt, std::forward<CompletionToken>(token));
  }
  /// As above, waiting at most `timeout`.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto shutdown(std::chrono::milliseconds timeout, CompletionToken&& token = {}) const {
    return start(timeout, std::forward<CompletionToken>(token));
  }

 private:
  template <class CompletionToken>
  auto start(std::optional<std::chrono::milliseconds> timeout, CompletionToken&& token) const {
    const Source& self = static_cast<const Source&>(*this);
    return awaken::detail::async_spawn<void>(
        self.fallback_executor(), [self, timeout]() mutable { return Source::run_shutdown(std::move(self), timeout); },
        std::forward<CompletionToken>(token));
  }
};

namespace detail {
/// A source builder's settings.
struct SourceSettings {
  std::optional<WorkloadEndpoint> endpoint;
  std::function<WorkloadApiClient()> factory;
  std::chrono::milliseconds min_backoff{200};
  std::chrono::milliseconds max_backoff{10'000};
  ResourceLimits limits;
  std::optional<std::chrono::milliseconds> initial_sync_timeout;
  std::chrono::milliseconds shutdown_timeout{30'000};
  std::shared_ptr<MetricsRecorder> metrics;
  std::shared_ptr<spdlog::logger> logger;
  JitterSource* jitter = nullptr;
  const Clock* clock = nullptr;
  Error endpoint_error{std::error_code{}, {}};  // why the environment gave no endpoint

  // A copy with the endpoint read from the environment now, on the calling thread, so that no
  // background thread ever calls getenv (which races with a setenv elsewhere).
  SourceSettings resolved() const;
};
}  // namespace detail

/// The settings every source builder takes. `Derived` is the builder.
template <class Derived>
class SourceBuilder {
 public:
  /// The Workload API endpoint; by default `SPIFFE_ENDPOINT_SOCKET`, read when `build` is
  /// called (on the calling thread).
  Derived& endpoint(WorkloadEndpoint endpoint) {
    settings_.endpoint = std::move(endpoint);
    settings_.factory = nullptr;
    return self();
  }
  Derived& endpoint(std::string_view uri) { return endpoint(WorkloadEndpoint::parse(uri)); }
  /// How the source makes its clients, called for each stream it opens and each one-shot call;
  /// replaces `endpoint` (whose default is one client, so one connection, for the source's
  /// life). A throwing factory counts as `client_creation` and is retried with backoff.
  Derived& client_factory(std::function<WorkloadApiClient()> factory) {
    settings_.factory = std::move(factory);
    settings_.endpoint.reset();
    return self();
  }
  /// Reconnect backoff: from `min` doubling to `max`, each wait jittered down by up to 10%.
  /// Defaults 200 ms and 10 s; swapped when `min > max`; `min` at least 1 ms.
  Derived& reconnect_backoff(std::chrono::milliseconds min, std::chrono::milliseconds max) {
    if (min > max) std::swap(min, max);
    settings_.min_backoff = std::max(min, std::chrono::milliseconds{1});
    settings_.max_backoff = std::max(max, settings_.min_backoff);
    return self();
  }
  std::chrono::milliseconds min_backoff() const noexcept { return settings_.min_backoff; }
  std::chrono::milliseconds max_backoff() const noexcept { return settings_.max_backoff; }
  /// Bounds on updates (see `ResourceLimits`); an update over them is rejected and the last
  /// good set kept.
  Derived& resource_limits(ResourceLimits limits) {
    settings_.limits = limits;
    return self();
  }
  /// How long `build` waits for the first good update; unbounded by default.
  Derived& initial_sync_timeout(std::chrono::milliseconds timeout) {
    settings_.initial_sync_timeout = timeout;
    return self();
  }
  /// The bound of `shutdown()`; 30 s by default.
  Derived& shutdown_timeout(std::chrono::milliseconds timeout) {
    settings_.shutdown_timeout = timeout;
    return self();
  }
  Derived& metrics(std::shared_ptr<MetricsRecorder> recorder) {
    settings_.metrics = std::move(recorder);
    return self();
  }
  /// The logger for reconnects and rejected updates; `awaken::logger()` by default.
  Derived& logger(std::shared_ptr<spdlog::logger> logger) {
    settings_.logger = std::move(logger);
    return self();
  }
  /// The jitter of the reconnect waits (tests); `default_jitter()` by default. Must outlive the
  /// source.
  Derived& jitter(JitterSource& jitter) {
    settings_.jitter = &jitter;
    return self();
  }
  /// The clock an SVID's expiry is judged by: an update whose picked SVID has expired is
  /// rejected, and `is_healthy` is false once the held one has. `system_clock()` by default;
  /// for tests. Must outlive the source.
  Derived& clock(const Clock& clock) {
    settings_.clock = &clock;
    return self();
  }

 protected:
  detail::SourceSettings settings_;

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }
};

}  // namespace awaken::spiffe
