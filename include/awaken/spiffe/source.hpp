// The one Workload API source, `basic_source<Profile>`, and its builder: what every source
// shares (the supervisors, the initial sync, publication, updates, health, metrics, shutdown),
// written once. Each profile (jwt_source.hpp, x509_source.hpp, experimental/wit_source.hpp)
// names what it publishes and the readers it adds.
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
#include <asio/execution/executor.hpp>
#include <asio/system_executor.hpp>

#include <awaken/backoff.hpp>
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
struct SourceState;  // shared by a source's handles, its update waiters and its supervisors
template <class Snapshot>
struct SourceCore;  // the handles' share: its end stops the supervisors
}  // namespace detail
template <class Profile>
class basic_source;
template <class Profile>
class basic_source_builder;

/// The sequence numbers of a source's published snapshots, and waiting for the next one. Each
/// object remembers the last sequence it returned (at first, the one current when it was made),
/// so `changed` waits for something this object has not seen yet. Slow readers skip snapshots.
/// `wait_for` sees the profile's view of each (`JwtBundleSet`, `X509Context`, `WitContext`).
///
/// Thread safety: one wait at a time per object; copies wait independently.
template <class Profile>
class SourceUpdates {
 public:
  using view_type = typename Profile::view_type;

  /// The source's current sequence: 1 after the initial sync, +1 per content change.
  std::uint64_t last() const noexcept;
  /// Waits until the sequence passes the last one this object saw, and completes with it:
  /// `void(std::error_code, std::uint64_t)`. Fails with `spiffe_errc::source_closed` once the
  /// source is shut down (at once when it already is), or with the code that ended it (such
  /// as `not_offered`), `operation_aborted` when cancelled
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
  /// Completes with the first published view, the current one included, for which `predicate`
  /// holds: `void(std::error_code, std::shared_ptr<const view_type>)`, failing as `changed`.
  /// This object must outlive the operation.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto wait_for(std::function<bool(const view_type&)> predicate, CompletionToken&& token = {}) {
    return awaken::detail::async_spawn<std::shared_ptr<const view_type>>(
        fallback_executor(), [this, p = std::move(predicate)]() mutable { return run_wait_for(std::move(p)); },
        std::forward<CompletionToken>(token));
  }

 private:
  using snapshot_type = typename Profile::snapshot_type;
  friend class basic_source<Profile>;
  SourceUpdates(std::shared_ptr<detail::SourceState<snapshot_type>> state, std::uint64_t seen) noexcept
      : state_(std::move(state)), seen_(seen) {}
  asio::any_io_executor fallback_executor() const noexcept;
  void start_changed(std::unique_ptr<Completion<std::error_code, std::uint64_t>> completion);
  asio::awaitable<std::shared_ptr<const view_type>> run_wait_for(std::function<bool(const view_type&)> predicate);
  std::shared_ptr<detail::SourceState<snapshot_type>> state_;
  std::uint64_t seen_;
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
  Timing timing;
  Error endpoint_error{std::error_code{}, {}};  // why the environment gave no endpoint

  // A copy with the endpoint read from the environment now, on the calling thread, so that no
  // background thread ever calls getenv (which races with a setenv elsewhere).
  SourceSettings resolved() const;
};
}  // namespace detail

/// A Workload API source: what its profile publishes (`JwtSource`: the JWT bundles;
/// `X509Source`: the X.509-SVIDs and bundles; `experimental::WitSource`: the WIT-SVIDs and WIT
/// bundles), kept current by a supervisor per Workload API stream the profile opens, and read
/// without blocking. The profile names the published snapshot, the view `updates()` gives, the
/// streams, and the readers (`bundle_set`, `svid`, ...) that `Profile::readers` adds.
///
/// Every source, whatever its profile:
/// - `build` completes once each stream's first good update is published (the initial sync;
///   started together, within one timeout); `invalid_argument`, `unimplemented` and
///   `not_offered` fail at once, since retrying cannot help;
/// - a stream that ends, fails or is reset is reopened after a jittered exponential backoff,
///   reset by a good update (at least 1 s after "no identity issued");
/// - an update is checked against the resource limits and the profile's rules (an X.509 or WIT
///   update is refused with `no_svid` when no SVID fits the picker, `svid_expired` when the
///   picked one has expired by the builder's clock); anything refused keeps the last good
///   snapshot;
/// - a snapshot whose content changed is published by an atomic swap, and `sequence()` counts
///   them (1 after the initial sync);
/// - a stream that gives up after the initial sync (an agent that withdraws an optional
///   profile) closes the source: what the agent no longer offers must not be used;
/// - `shutdown` is bounded and idempotent, and closes readers and waiters.
///
/// A cheap handle: copies share one source. Destroying the last handle stops the supervisors
/// without waiting for them. An empty (default-constructed or moved-from) handle behaves as a
/// closed source.
///
/// Thread safety: every member may be called from any thread at once. Readers take no lock,
/// never wait for a supervisor and allocate nothing once their thread has seen the current
/// snapshot (a thread keeps one view: reading two sources in turn on one thread allocates). A
/// thread's view keeps the snapshot it last read, private keys included, until that thread
/// reads again.
template <class Profile>
class basic_source final : public Profile::readers {
 public:
  using profile_type = Profile;
  using snapshot_type = typename Profile::snapshot_type;
  using view_type = typename Profile::view_type;
  using builder_type = basic_source_builder<Profile>;
  using updates_type = SourceUpdates<Profile>;

  basic_source() = default;
  basic_source(const basic_source&) = default;
  basic_source& operator=(const basic_source&) = default;
  basic_source(basic_source&& other) noexcept
      : core_(std::move(other.core_)), state_(std::exchange(other.state_, nullptr)) {}
  basic_source& operator=(basic_source&& other) noexcept {
    core_ = std::move(other.core_);
    state_ = std::exchange(other.state_, nullptr);
    return *this;
  }
  ~basic_source() override = default;

  static builder_type builder() { return builder_type{}; }

  /// Open, every supervisor running, and the profile's own test of the current snapshot (an
  /// SVID that has not expired by the builder's clock, at least one authority).
  bool is_healthy() const noexcept;
  /// The current sequence: 1 after the initial sync, +1 per published change (0 when empty).
  std::uint64_t sequence() const noexcept;
  /// A waiter on later snapshots. Throws `source_closed` on an empty handle.
  updates_type updates() const;

  /// Stops the source's supervisors and waits until they have stopped, at most the builder's
  /// shutdown timeout (30 s by default): `spiffe_errc::shutdown_timeout` past it. Idempotent:
  /// later calls wait for the same stop. Waiters of `changed` fail with `source_closed`.
  /// Completes with `void(std::error_code)`.
  template <class CompletionToken = awaken::use_awaitable_t>
  requires(!std::is_convertible_v<CompletionToken, std::chrono::milliseconds>) auto shutdown(
      CompletionToken&& token = {}) const {
    return start_shutdown(std::nullopt, std::forward<CompletionToken>(token));
  }
  /// As above, waiting at most `timeout` for all of the source's supervisors together.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto shutdown(std::chrono::milliseconds timeout, CompletionToken&& token = {}) const {
    return start_shutdown(timeout, std::forward<CompletionToken>(token));
  }

 private:
  friend typename Profile::readers;
  friend builder_type;
  basic_source(std::shared_ptr<detail::SourceCore<snapshot_type>> core,
               detail::SourceState<snapshot_type>* state) noexcept
      : core_(std::move(core)), state_(state) {}

  // The calling thread's view of the current snapshot; throws `source_closed` once closed.
  const std::shared_ptr<const snapshot_type>& snapshot() const;
  // The state alone, for operations that must not keep the supervisors running.
  std::shared_ptr<detail::SourceState<snapshot_type>> state_handle() const noexcept;
  asio::any_io_executor fallback_executor() const noexcept;
  template <class CompletionToken>
  auto start_shutdown(std::optional<std::chrono::milliseconds> timeout, CompletionToken&& token) const {
    return awaken::detail::async_spawn<void>(
        fallback_executor(), [self = *this, timeout]() mutable { return run_shutdown(std::move(self), timeout); },
        std::forward<CompletionToken>(token));
  }
  // The coroutines take the handle by value: it lives in their frames.
  static asio::awaitable<void> run_shutdown(basic_source self, std::optional<std::chrono::milliseconds> timeout);
  static asio::awaitable<basic_source> run_build(detail::SourceSettings settings, typename Profile::options options,
                                                 std::optional<asio::any_io_executor> executor);

  std::shared_ptr<detail::SourceCore<snapshot_type>> core_;
  detail::SourceState<snapshot_type>* state_ = nullptr;  // core_'s, read without going through core_ on the hot path
};

/// Configures and builds a `basic_source<Profile>`. `svid_picker` is there for the profiles that
/// serve SVIDs, `spiffe_id` for those whose streams ask for one identity.
template <class Profile>
class basic_source_builder {
 public:
  using source_type = basic_source<Profile>;

  /// The Workload API endpoint; by default `SPIFFE_ENDPOINT_SOCKET`, read when `build` is
  /// called (on the calling thread).
  basic_source_builder& endpoint(WorkloadEndpoint endpoint) {
    settings_.endpoint = std::move(endpoint);
    settings_.factory = nullptr;
    return *this;
  }
  basic_source_builder& endpoint(std::string_view uri) { return endpoint(WorkloadEndpoint::parse(uri)); }
  /// How the source makes its clients, called for each stream it opens and each one-shot call;
  /// replaces `endpoint` (whose default is one client, so one connection, for the source's
  /// life). A throwing factory counts as `client_creation` and is retried with backoff.
  basic_source_builder& client_factory(std::function<WorkloadApiClient()> factory) {
    settings_.factory = std::move(factory);
    settings_.endpoint.reset();
    return *this;
  }
  /// Reconnect backoff: from `min` doubling to `max`, each wait jittered down by up to 10%.
  /// Defaults 200 ms and 10 s; swapped when `min > max`; `min` at least 1 ms.
  basic_source_builder& reconnect_backoff(std::chrono::milliseconds min, std::chrono::milliseconds max) {
    if (min > max) std::swap(min, max);
    settings_.min_backoff = std::max(min, std::chrono::milliseconds{1});
    settings_.max_backoff = std::max(max, settings_.min_backoff);
    return *this;
  }
  std::chrono::milliseconds min_backoff() const noexcept { return settings_.min_backoff; }
  std::chrono::milliseconds max_backoff() const noexcept { return settings_.max_backoff; }
  /// Bounds on updates (see `ResourceLimits`); an update over them is rejected and the last
  /// good snapshot kept.
  basic_source_builder& resource_limits(ResourceLimits limits) {
    settings_.limits = limits;
    return *this;
  }
  /// How long `build` waits for the first good update of every stream; unbounded by default.
  basic_source_builder& initial_sync_timeout(std::chrono::milliseconds timeout) {
    settings_.initial_sync_timeout = timeout;
    return *this;
  }
  /// The bound of `shutdown()`; 30 s by default.
  basic_source_builder& shutdown_timeout(std::chrono::milliseconds timeout) {
    settings_.shutdown_timeout = timeout;
    return *this;
  }
  basic_source_builder& metrics(std::shared_ptr<MetricsRecorder> recorder) {
    settings_.metrics = std::move(recorder);
    return *this;
  }
  /// The logger for reconnects and rejected updates; `awaken::logger()` by default.
  basic_source_builder& logger(std::shared_ptr<spdlog::logger> logger) {
    settings_.logger = std::move(logger);
    return *this;
  }
  /// The time rules' clock, jitter and waits (see `Timing`), for tests; the real ones by
  /// default. The clock judges SVID expiry (an update whose picked SVID has expired is rejected,
  /// and `is_healthy` is false once the held one has); the jitter and the sleep make the
  /// reconnect waits. The initial sync's bound and its warnings keep real time.
  basic_source_builder& timing(Timing timing) {
    settings_.timing = std::move(timing);
    return *this;
  }
  /// Which SVID the source serves (`svid()`): the index of the chosen one among an update's
  /// SVIDs, or nullopt when none fits (the update is then refused with `no_svid`); the first of
  /// each update by default. `pick_by_hint` and `pick_by_id` make pickers.
  template <class Picker>
  requires requires(typename Profile::options o, Picker p) { o.picker = std::move(p); }
  basic_source_builder& svid_picker(Picker picker) {
    options_.picker = std::move(picker);
    return *this;
  }
  /// Asks the agent for this identity's SVIDs only; every identity of the workload by default.
  basic_source_builder& spiffe_id(SpiffeId id) requires requires(typename Profile::options o) { o.spiffe_id; }
  {
    options_.spiffe_id = std::move(id);
    return *this;
  }

  /// Starts the source on `executor` and completes once every stream's first good update is
  /// published: `void(std::error_code, source_type)`. Fails with `initial_sync_timeout` (the
  /// last failure in the diagnostics); `invalid_argument` or `unimplemented` (`grpc_status`),
  /// or `not_offered` for an optional profile the agent lacks, at once; `endpoint_not_configured`
  /// or `invalid_endpoint` for a missing or bad endpoint. On failure the supervisors are
  /// stopped. The builder is copied.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto build(asio::any_io_executor executor, CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<source_type>(
        executor,
        [s = settings_.resolved(), o = options_, executor]() mutable {
          return source_type::run_build(std::move(s), std::move(o), executor);
        },
        std::forward<CompletionToken>(token));
  }
  /// As above, on the handler's associated executor (the awaiting coroutine's, for
  /// awaitables). A handler without one fails with `std::errc::invalid_argument`: a source
  /// needs an executor of yours, not Asio's system pool.
  template <class CompletionToken = awaken::use_awaitable_t>
  requires(!asio::execution::is_executor<std::decay_t<CompletionToken>>::value) auto build(
      CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<source_type, true>(
        asio::system_executor{},
        [s = settings_.resolved(), o = options_]() mutable {
          return source_type::run_build(std::move(s), std::move(o), std::nullopt);
        },
        std::forward<CompletionToken>(token));
  }

 private:
  detail::SourceSettings settings_;
  typename Profile::options options_;
};

}  // namespace awaken::spiffe
