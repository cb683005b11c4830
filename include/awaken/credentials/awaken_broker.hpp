// awaken's credential broker: a per-(provider, scope) token cache with single-flight minting.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>

#include <awaken/backoff.hpp>
#include <awaken/clock.hpp>
#include <awaken/credentials/credential_broker.hpp>
#include <awaken/credentials/material.hpp>
#include <awaken/credentials/token.hpp>
#include <awaken/http/http_client.hpp>

namespace awaken {

/// How an `AwakenBroker` caches, refreshes and retries.
struct BrokerOptions {
  /// A token with this little validity left is never handed out from the cache; callers wait
  /// for a new one. A token minted with no more than this left goes to the callers of its
  /// flight only, so every later call mints again.
  std::chrono::seconds hard_window{60};
  /// A token inside its soft window is still handed out, and one refresh starts in the
  /// background. The window is this fraction of the token's lifetime, at most `max_soft_window`.
  /// A soft window no longer than `hard_window` means no background refresh.
  double soft_window_fraction = 1.0 / 3.0;
  std::chrono::seconds max_soft_window{300};
  /// After a background refresh fails, the next one starts no sooner than this.
  std::chrono::seconds refresh_retry_interval{5};
  /// Retries of one mint; only errors whose code is `awaken::condition::transient` are retried.
  BackoffPolicy retry{};
  /// An HTTP client to share (its connection pool, CA and proxy settings); when empty the
  /// broker makes one with default options on first need.
  std::optional<http::HttpClient> http;
  /// The clock the cache's windows and tokens' expiry are judged by, the retries' jitter, and
  /// how a retry waits (see `Timing`; each the real one when empty). The clock and the jitter
  /// source must outlive the broker's work: mints cancelled by the broker's destruction may
  /// still read them until they have ended on the executor.
  Timing timing;
};

/// Counters of an `AwakenBroker`, for metrics and tests. Cache hits are not counted: counting
/// them would make every hit write to memory shared by all threads.
struct BrokerStats {
  std::size_t providers = 0;               ///< providers with material now
  std::size_t cached_tokens = 0;           ///< tokens in the cache now
  std::size_t flights = 0;                 ///< mints in progress now, one per (provider, scope)
  std::uint64_t mint_attempts = 0;         ///< calls of `Minter::mint`, retries included
  std::uint64_t failed_flights = 0;        ///< flights that ended in an error
  std::uint64_t background_refreshes = 0;  ///< flights started from the soft window
  std::uint64_t stale_discards = 0;        ///< mints discarded because the material changed meanwhile
};

namespace detail {
class BrokerState;
}

/// The broker: tokens cached per (provider, scope), minted once per key however many callers
/// ask at once, refreshed before they expire, retried on transient failures.
///
/// - **Cache.** A cached token is handed out until `hard_window` before its expiry. Inside its
///   soft window it is still handed out and one background refresh starts; if that refresh
///   fails the token keeps being handed out until the hard window. Errors are never cached.
/// - **Single flight.** At most one mint per (provider, scope) runs at a time; every caller
///   that arrives meanwhile waits for it and receives its outcome, token or error. A mint that
///   completes after the provider's material changed is discarded and the flight mints again
///   from the new material.
/// - **Hot path.** Each thread keeps references to the 16 tokens it was handed last. A hit on
///   one of them through `try_cached` takes no lock, writes no memory shared with other threads
///   and allocates nothing; a thread's first hit on a key takes the lock once. `token_for` on a
///   hit completes through one post to the handler's executor, which Asio serves from its
///   recycled memory on threads running an `io_context` (no allocation). Expired tokens leave
///   the cache when the next token is stored. A dropped token's memory is wiped when its last
///   reference goes, which for an idle thread may be when that thread next asks an
///   `AwakenBroker` for a token, or exits.
///
/// `token_for` (inherited from `CredentialBroker`) is the one asynchronous operation:
/// `void(std::error_code, IssuedToken)`, any completion token, diagnostics as in
/// `awaken/diagnostics.hpp`.
///
/// Thread safety: every member may be called from any thread at once.
///
/// Cancellation: a waiting caller whose cancellation slot is emitted stops waiting and gets
/// `asio::error::operation_aborted`; the mint goes on for the others. Every cancellation type
/// is honoured; coroutines pass on only terminal cancellation by default. As with any Asio
/// operation, emit the signal from the caller's own executor. Mints run on a strand of the
/// broker's executor.
///
/// Lifetime: the broker must not outlive its executor's execution context. Destroying it
/// completes every waiting caller with `awaken::errc::shut_down` and cancels its mints.
class AwakenBroker final : public CredentialBroker {
 public:
  using executor_type = asio::any_io_executor;

  explicit AwakenBroker(executor_type executor, BrokerOptions options = {});
  ~AwakenBroker() override;
  AwakenBroker(const AwakenBroker&) = delete;
  AwakenBroker& operator=(const AwakenBroker&) = delete;

  /// Sets the material of `provider_id` and bumps its generation: every token cached for it
  /// (all scopes) is dropped, and mints still running from the old material are discarded when
  /// they complete.
  void register_material(std::string provider_id, CredentialMaterial material) override;

  /// Tombstones `provider_id`: drops its cached tokens, cancels its mints and completes their
  /// waiters with `credential_errc::not_configured`.
  void deregister(std::string_view provider_id) override;

  /// Drops the cached token of (provider, scope) if it is still `rejected` (the same minted
  /// token, see `IssuedToken::same_token`), so that many callers reporting one rejection cause
  /// one new mint. Returns whether it dropped it.
  bool invalidate(std::string_view provider_id, std::string_view scope, const IssuedToken& rejected) override;

  /// True when `provider_id` has material (not unknown, not deregistered).
  bool is_registered(std::string_view provider_id) const;

  /// The cached token if one can be handed out now, else nothing; never mints or waits (but
  /// may start a background refresh). The hot path: no lock, no allocation.
  std::optional<IssuedToken> try_cached(std::string_view provider_id, std::string_view scope) const noexcept;

  BrokerStats stats() const;
  executor_type get_executor() const noexcept override;

 protected:
  void start_token_for(std::string_view provider_id, std::string_view scope,
                       std::unique_ptr<Completion<std::error_code, IssuedToken>> completion) override;
  std::optional<IssuedToken> try_hit(std::string_view provider_id, std::string_view scope) noexcept override;

 private:
  std::shared_ptr<detail::BrokerState> state_;
};

}  // namespace awaken
