// JwtSource: JWT bundles kept current from the Workload API by a supervised stream, read
// without blocking, and JWT-SVIDs fetched on demand.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/execution/executor.hpp>
#include <asio/system_executor.hpp>

#include <awaken/clock.hpp>
#include <awaken/completion.hpp>
#include <awaken/detail/spawn_operation.hpp>
#include <awaken/diagnostics.hpp>
#include <awaken/spiffe/bundle.hpp>
#include <awaken/spiffe/jwt_svid.hpp>
#include <awaken/spiffe/workload_api.hpp>

namespace spdlog {
class logger;
}

namespace awaken::spiffe {

namespace detail {
template <class Set>
struct SourceState;  // shared by a source's handles, its update waiters and its supervisor
using JwtState = SourceState<JwtBundleSet>;
}  // namespace detail

/// The failures a `JwtSource` counts.
enum class MetricsErrorKind {
  client_creation,              ///< the Workload API client could not be made (a bad endpoint)
  stream_connect,               ///< the bundle stream failed before its first message
  stream_error,                 ///< the bundle stream failed after messages
  stream_ended,                 ///< the server ended the bundle stream (a reconnect follows)
  no_identity_issued,           ///< the agent has no identity for this workload yet
  initial_sync_failed,          ///< an attempt of the initial sync failed (besides its own kind)
  limit_max_bundles,            ///< an update had more trust domains than allowed
  limit_max_bundle_jwks_bytes,  ///< an update had a JWKS larger than allowed
  update_rejected,              ///< an update was malformed or over a limit; the last good set stays
};
/// "client_creation", "stream_connect", ...
std::string_view to_string(MetricsErrorKind kind) noexcept;

/// Hooks for a metrics system. Called from the source's executor; must not block or throw.
class MetricsRecorder {
 public:
  virtual ~MetricsRecorder() = default;
  /// A new bundle set was published (its content changed).
  virtual void record_update() noexcept {}
  /// The supervisor is about to wait before it reconnects.
  virtual void record_reconnect() noexcept {}
  virtual void record_error(MetricsErrorKind kind) noexcept { (void)kind; }
};

/// The sequence numbers of a source's bundle sets, and waiting for the next one. Each object
/// remembers the last sequence it returned (at first, the one current when it was made), so
/// `changed` waits for something this object has not seen yet. Slow readers skip sets.
///
/// Thread safety: one wait at a time per object; copies wait independently.
class JwtSourceUpdates {
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
  /// Completes with the first bundle set, the current one included, for which `predicate`
  /// holds: `void(std::error_code, std::shared_ptr<const JwtBundleSet>)`, failing as `changed`.
  /// This object must outlive the operation.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto wait_for(std::function<bool(const JwtBundleSet&)> predicate, CompletionToken&& token = {}) {
    return awaken::detail::async_spawn<std::shared_ptr<const JwtBundleSet>>(
        fallback_executor(), [this, p = std::move(predicate)]() mutable { return run_wait_for(std::move(p)); },
        std::forward<CompletionToken>(token));
  }

 private:
  friend class JwtSource;
  explicit JwtSourceUpdates(std::shared_ptr<detail::JwtState> state, std::uint64_t seen) noexcept
      : state_(std::move(state)), seen_(seen) {}
  asio::any_io_executor fallback_executor() const noexcept;
  void start_changed(std::unique_ptr<Completion<std::error_code, std::uint64_t>> completion);
  asio::awaitable<std::shared_ptr<const JwtBundleSet>> run_wait_for(std::function<bool(const JwtBundleSet&)> p);
  std::shared_ptr<detail::JwtState> state_;
  std::uint64_t seen_;
};

class JwtSourceBuilder;

/// The JWT bundles of every trust domain the Workload API tells this workload about, kept
/// current by a supervisor coroutine that holds a `FetchJWTBundles` stream open: each message is
/// checked against the resource limits and parsed, then published by an atomic swap; anything
/// rejected keeps the last good set. A stream that ends, fails or is reset is reopened after a
/// jittered exponential backoff (reset after a good update; at least 1 s after "no identity
/// issued"). A reconnect that delivers the same bundles publishes nothing.
///
/// A cheap handle: copies share one source. Destroying the last handle stops the supervisor
/// without waiting for it.
///
/// Thread safety: every member may be called from any thread at once. Readers
/// (`bundle_set`, `bundle_for_trust_domain`, `is_healthy`) never block and never wait for the
/// supervisor: a lookup takes no lock and writes no memory shared with other threads.
class JwtSource final : public BundleSource {
 public:
  /// An empty handle, which behaves as a closed source; for results that Asio
  /// default-constructs. Use `builder()`.
  JwtSource() = default;
  JwtSource(const JwtSource&) = default;
  JwtSource& operator=(const JwtSource&) = default;
  /// A moved-from handle is empty (a closed source).
  JwtSource(JwtSource&& other) noexcept : core_(std::move(other.core_)), state_(std::exchange(other.state_, nullptr)) {}
  JwtSource& operator=(JwtSource&& other) noexcept {
    core_ = std::move(other.core_);
    state_ = std::exchange(other.state_, nullptr);
    return *this;
  }
  ~JwtSource() override = default;

  static JwtSourceBuilder builder();

  /// The current bundle set. Throws `Error{spiffe_errc::source_closed}` after shutdown.
  std::shared_ptr<const JwtBundleSet> bundle_set() const;
  /// The current bundle of `td`, or null. Throws `source_closed` after shutdown.
  std::shared_ptr<const JwtBundle> bundle_for_trust_domain(const TrustDomain& td) const override;

  /// Open, supervisor running, and at least one JWT authority in the current set.
  bool is_healthy() const noexcept;
  /// The current sequence (see `JwtSourceUpdates`).
  std::uint64_t sequence() const noexcept;
  /// A waiter on later bundle sets.
  JwtSourceUpdates updates() const;

  /// A JWT-SVID for `audiences` (and `spiffe_id`, when given) from the Workload API, on a fresh
  /// connection; a transient failure (`is_transient_workload_error`) is retried once on another.
  /// Not cached: put a broker in front for that. Completes with
  /// `void(std::error_code, JwtSvid)`; `source_closed` after shutdown.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto fetch_jwt_svid(std::vector<std::string> audiences, std::optional<SpiffeId> spiffe_id = std::nullopt,
                      CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<JwtSvid>(
        fallback_executor(),
        [state = state_handle(), a = std::move(audiences), id = std::move(spiffe_id)]() mutable {
          return run_fetch_jwt_svid(std::move(state), std::move(a), std::move(id));
        },
        std::forward<CompletionToken>(token));
  }

  /// Stops the supervisor and waits until it has stopped, at most the builder's shutdown
  /// timeout (30 s by default): `spiffe_errc::shutdown_timeout` past it. Idempotent: later
  /// calls wait for the same stop. Waiters of `changed` fail with `source_closed`. Completes
  /// with `void(std::error_code)`.
  template <class CompletionToken = awaken::use_awaitable_t>
  requires(!std::is_convertible_v<CompletionToken, std::chrono::milliseconds>) auto shutdown(
      CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<void>(
        fallback_executor(), [self = *this]() mutable { return run_shutdown(std::move(self), std::nullopt); },
        std::forward<CompletionToken>(token));
  }
  /// As above, waiting at most `timeout`.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto shutdown(std::chrono::milliseconds timeout, CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<void>(
        fallback_executor(), [self = *this, timeout]() mutable { return run_shutdown(std::move(self), timeout); },
        std::forward<CompletionToken>(token));
  }

 private:
  friend class JwtSourceBuilder;
  struct Core;
  JwtSource(std::shared_ptr<Core> core, detail::JwtState* state) noexcept : core_(std::move(core)), state_(state) {}
  asio::any_io_executor fallback_executor() const noexcept;
  // The operations' coroutines take the handle by value: it lives in their frames.
  // A fetch holds the state only: it does not keep the supervisor running.
  std::shared_ptr<detail::JwtState> state_handle() const noexcept;
  static asio::awaitable<JwtSvid> run_fetch_jwt_svid(std::shared_ptr<detail::JwtState> state,
                                                     std::vector<std::string> audiences,
                                                     std::optional<SpiffeId> spiffe_id);
  static asio::awaitable<void> run_shutdown(JwtSource self, std::optional<std::chrono::milliseconds> timeout);

  std::shared_ptr<Core> core_;
  detail::JwtState* state_ = nullptr;  // core_'s, read without going through core_ on the hot path
};

/// Configures and builds a `JwtSource`.
class JwtSourceBuilder {
 public:
  /// The Workload API endpoint; by default `SPIFFE_ENDPOINT_SOCKET`, read when `build` is
  /// called (on the calling thread).
  JwtSourceBuilder& endpoint(WorkloadEndpoint endpoint);
  JwtSourceBuilder& endpoint(std::string_view uri) { return endpoint(WorkloadEndpoint::parse(uri)); }
  /// How the source makes its clients (one per connection); replaces `endpoint`. A throwing
  /// factory counts as `client_creation` and is retried with backoff.
  JwtSourceBuilder& client_factory(std::function<WorkloadApiClient()> factory);
  /// Reconnect backoff: from `min` doubling to `max`, each wait jittered down by up to 10%.
  /// Defaults 200 ms and 10 s; swapped when `min > max`; `min` at least 1 ms.
  JwtSourceBuilder& reconnect_backoff(std::chrono::milliseconds min, std::chrono::milliseconds max);
  std::chrono::milliseconds min_backoff() const noexcept { return min_backoff_; }
  std::chrono::milliseconds max_backoff() const noexcept { return max_backoff_; }
  /// Bounds on bundle updates (200 trust domains, 4 MiB of JWKS each, by default); an update
  /// over them is rejected and the last good set kept.
  JwtSourceBuilder& resource_limits(ResourceLimits limits);
  /// How long `build` waits for the first good bundle set; unbounded by default.
  JwtSourceBuilder& initial_sync_timeout(std::chrono::milliseconds timeout);
  /// The bound of `shutdown()`; 30 s by default.
  JwtSourceBuilder& shutdown_timeout(std::chrono::milliseconds timeout);
  JwtSourceBuilder& metrics(std::shared_ptr<MetricsRecorder> recorder);
  /// The logger for reconnects and rejected updates; `awaken::logger()` by default.
  JwtSourceBuilder& logger(std::shared_ptr<spdlog::logger> logger);
  /// The jitter of the reconnect waits (tests); `default_jitter()` by default. Must outlive the
  /// source.
  JwtSourceBuilder& jitter(JitterSource& jitter);

  /// Starts the source on `executor` and completes once the first good bundle set is
  /// published: `void(std::error_code, JwtSource)`. Fails with `initial_sync_timeout` (the
  /// last failure in the diagnostics); `invalid_argument` or `unimplemented` (`grpc_status`)
  /// at once, since retrying cannot help; `endpoint_not_configured` or `invalid_endpoint` for
  /// a missing or bad endpoint. On failure the supervisor is stopped. The builder is copied.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto build(asio::any_io_executor executor, CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<JwtSource>(
        executor, [b = resolved(), executor]() mutable { return run_build(std::move(b), executor); },
        std::forward<CompletionToken>(token));
  }
  /// As above, on the handler's associated executor (the awaiting coroutine's, for
  /// awaitables). A handler without one fails with `std::errc::invalid_argument`: a source
  /// needs an executor of yours, not Asio's system pool.
  template <class CompletionToken = awaken::use_awaitable_t>
  requires(!asio::execution::is_executor<std::decay_t<CompletionToken>>::value) auto build(
      CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<JwtSource, true>(
        asio::system_executor{}, [b = resolved()]() mutable { return run_build(std::move(b), std::nullopt); },
        std::forward<CompletionToken>(token));
  }

 private:
  std::optional<WorkloadEndpoint> endpoint_;
  std::function<WorkloadApiClient()> factory_;
  std::chrono::milliseconds min_backoff_{200};
  std::chrono::milliseconds max_backoff_{10'000};
  ResourceLimits limits_;
  std::optional<std::chrono::milliseconds> initial_sync_timeout_;
  std::chrono::milliseconds shutdown_timeout_{30'000};
  std::shared_ptr<MetricsRecorder> metrics_;
  std::shared_ptr<spdlog::logger> logger_;
  JitterSource* jitter_ = nullptr;
  Error endpoint_error_{std::error_code{}, {}};  // why the environment gave no endpoint

  // A copy with the endpoint read from the environment now, on the calling thread, so that no
  // background thread ever calls getenv (which races with a setenv elsewhere).
  JwtSourceBuilder resolved() const;
  static asio::awaitable<JwtSource> run_build(JwtSourceBuilder self, std::optional<asio::any_io_executor> executor);
};

}  // namespace awaken::spiffe
