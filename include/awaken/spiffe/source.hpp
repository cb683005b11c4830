// What every Workload API source shares: the failures it counts, the metrics hooks, and the
// settings its builder takes (`SourceBuilder`, the base of `JwtSourceBuilder` and
// `X509SourceBuilder`).
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include <awaken/clock.hpp>
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
