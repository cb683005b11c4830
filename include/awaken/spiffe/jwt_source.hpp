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
#include <awaken/spiffe/source.hpp>
#include <awaken/spiffe/workload_api.hpp>

namespace spdlog {
class logger;
}

namespace awaken::spiffe {

/// The sequence numbers of a `JwtSource`'s bundle sets, and waiting for the next one.
using JwtSourceUpdates = SourceUpdates<JwtBundleSet, JwtBundleSet>;

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
class JwtSource final : public BundleSource, public SourceShutdown<JwtSource> {
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
  // shutdown() and shutdown(timeout): `SourceShutdown`.

  /// A JWT-SVID for `audiences` (and `spiffe_id`, when given) from the Workload API, on a fresh
  /// connection; a failure equal to `awaken::condition::workload_transient` is retried once on another.
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

 private:
  friend class JwtSourceBuilder;
  friend class SourceShutdown<JwtSource>;
  struct Core;
  JwtSource(std::shared_ptr<Core> core, detail::SourceState<JwtBundleSet>* state) noexcept
      : core_(std::move(core)), state_(state) {}
  asio::any_io_executor fallback_executor() const noexcept;
  // The operations' coroutines take the handle by value: it lives in their frames.
  // A fetch holds the state only: it does not keep the supervisor running.
  std::shared_ptr<detail::SourceState<JwtBundleSet>> state_handle() const noexcept;
  static asio::awaitable<JwtSvid> run_fetch_jwt_svid(std::shared_ptr<detail::SourceState<JwtBundleSet>> state,
                                                     std::vector<std::string> audiences,
                                                     std::optional<SpiffeId> spiffe_id);
  static asio::awaitable<void> run_shutdown(JwtSource self, std::optional<std::chrono::milliseconds> timeout);

  std::shared_ptr<Core> core_;
  detail::SourceState<JwtBundleSet>* state_ = nullptr;  // core_'s, read without going through core_ on the hot path
};

/// Configures and builds a `JwtSource` (the settings are `SourceBuilder`'s).
class JwtSourceBuilder : public SourceBuilder<JwtSourceBuilder> {
 public:
  /// Starts the source on `executor` and completes once the first good bundle set is
  /// published: `void(std::error_code, JwtSource)`. Fails with `initial_sync_timeout` (the
  /// last failure in the diagnostics); `invalid_argument` or `unimplemented` (`grpc_status`)
  /// at once, since retrying cannot help; `endpoint_not_configured` or `invalid_endpoint` for
  /// a missing or bad endpoint. On failure the supervisor is stopped. The builder is copied.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto build(asio::any_io_executor executor, CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<JwtSource>(
        executor, [b = settings_.resolved(), executor]() mutable { return run_build(std::move(b), executor); },
        std::forward<CompletionToken>(token));
  }
  /// As above, on the handler's associated executor (the awaiting coroutine's, for
  /// awaitables). A handler without one fails with `std::errc::invalid_argument`: a source
  /// needs an executor of yours, not Asio's system pool.
  template <class CompletionToken = awaken::use_awaitable_t>
  requires(!asio::execution::is_executor<std::decay_t<CompletionToken>>::value) auto build(
      CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<JwtSource, true>(
        asio::system_executor{}, [b = settings_.resolved()]() mutable { return run_build(std::move(b), std::nullopt); },
        std::forward<CompletionToken>(token));
  }

 private:
  static asio::awaitable<JwtSource> run_build(detail::SourceSettings settings,
                                              std::optional<asio::any_io_executor> executor);
};

}  // namespace awaken::spiffe
