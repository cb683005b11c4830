// The broker's decisions, without I/O: token windows, cached entries, the flight table and what a
// finished mint comes to. `AwakenBroker` runs it under its mutex and does the minting, the
// retries and the delivery; unit tests drive it with plain values and their own clock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include <awaken/completion.hpp>
#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/credentials/material.hpp>
#include <awaken/credentials/token.hpp>
#include <awaken/diagnostics.hpp>

namespace awaken::detail {

using SteadyTime = std::chrono::steady_clock::time_point;

struct KeyView {
  std::string_view provider;
  std::string_view scope;
};

struct CacheKey {
  std::string provider;
  std::string scope;
  operator KeyView() const noexcept { return {provider, scope}; }  // NOLINT: used by lookups
};

struct KeyHash {
  using is_transparent = void;
  std::size_t operator()(KeyView k) const noexcept {
    const std::size_t a = std::hash<std::string_view>{}(k.provider);
    const std::size_t b = std::hash<std::string_view>{}(k.scope);
    return a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  }
};

struct KeyEq {
  using is_transparent = void;
  bool operator()(KeyView a, KeyView b) const noexcept { return a.provider == b.provider && a.scope == b.scope; }
};

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

/// When a cached token is handed out: never from `hard` on; from `soft` on, with one
/// background refresh.
struct Deadlines {
  SteadyTime hard;
  SteadyTime soft;
};

/// The hard and soft windows of `BrokerOptions`.
struct TokenWindows {
  std::chrono::seconds hard{60};
  double soft_fraction = 1.0 / 3.0;  // of the lifetime left at minting, clamped to [0, 1]
  std::chrono::seconds max_soft{300};

  static TokenWindows of(const BrokerOptions& o) noexcept {
    return {o.hard_window, o.soft_window_fraction, o.max_soft_window};
  }
  /// The deadlines of a token minted at `now` that expires at `expiry`.
  Deadlines deadlines(SteadyTime now, SteadyTime expiry) const noexcept;
};

/// What may be done with a cached token at a moment.
enum class HandOut {
  refuse,   ///< inside the hard window: wait for a new token
  give,     ///< hand it out
  refresh,  ///< hand it out, and refresh it in the background
};
inline HandOut hand_out_at(const Deadlines& d, SteadyTime now) noexcept {
  if (now >= d.hard) return HandOut::refuse;
  return now >= d.soft ? HandOut::refresh : HandOut::give;
}

/// A cached token. Immutable but for its two atomics; shared with the threads' hit caches.
struct Entry {
  Entry(CacheKey k, Token t, Deadlines d) : key(std::move(k)), token(std::move(t)), deadlines(d) {}
  const CacheKey key;
  const Token token;
  const Deadlines deadlines;
  std::atomic<bool> dead{false};  // set once, when the entry leaves the cache

  /// Claims the one background refresh allowed now; false while one runs or one failed less
  /// than the retry interval ago. Lock-free, so that hits inside the soft window stay cheap.
  bool claim_refresh(SteadyTime now) noexcept {
    std::int64_t not_before = refresh_not_before.load(std::memory_order_relaxed);
    if (now.time_since_epoch().count() < not_before) return false;
    return refresh_not_before.compare_exchange_strong(not_before, running);
  }
  /// Lets a refresh be claimed again from `when` on.
  void rearm(SteadyTime when) noexcept {
    refresh_not_before.store(when.time_since_epoch().count(), std::memory_order_relaxed);
  }

 private:
  static constexpr std::int64_t running = std::numeric_limits<std::int64_t>::max();
  std::atomic<std::int64_t> refresh_not_before{std::numeric_limits<std::int64_t>::min()};
};

/// The token a caller is handed: a reference into the cached entry, no copy of the secret.
inline IssuedToken issue(const std::shared_ptr<Entry>& e) noexcept {
  return IssuedToken{std::shared_ptr<const Token>(e, &e->token)};
}

using EntryCompletion = Completion<std::error_code, std::shared_ptr<Entry>>;
/// Cancelled waiters leave a null behind, so that the others keep their positions.
using Waiters = std::vector<std::unique_ptr<EntryCompletion>>;

/// How a flight ended: an entry, or an error and what is known of it.
struct Outcome {
  std::error_code error;
  std::shared_ptr<const Diagnostics> diagnostics;
  std::shared_ptr<Entry> entry;
};

/// One mint in progress for one key, and the callers waiting for it. The driver derives from
/// it to hold what running the mint needs.
class Flight : public std::enable_shared_from_this<Flight> {
 public:
  Flight(CacheKey k, bool is_background) : key(std::move(k)), background(is_background) {}
  virtual ~Flight() = default;
  Flight(const Flight&) = delete;
  Flight& operator=(const Flight&) = delete;

  /// Asks the running mint to stop (its waiters have been answered). The driver's.
  virtual void cancel() noexcept {}

  /// Adds a waiter; or, when the flight has ended, completes it at once with the outcome.
  /// Cancellation through the completion's slot answers only this waiter, with
  /// `operation_aborted`.
  void join(std::unique_ptr<EntryCompletion> c);
  /// Marks the flight done with `outcome` and hands back the waiters to complete, which the
  /// caller does after releasing its locks. A flight closes once; later calls return nothing.
  Waiters close(Outcome outcome);
  bool is_done() const;

  const CacheKey key;
  const bool background;

 private:
  mutable std::mutex mutex_;  // after the broker's mutex when both are held
  Waiters waiters_;
  bool done_ = false;
  Outcome outcome_;
};

/// A flight closed by `remove_material` or `shut_down`, with its waiters to answer.
struct ClosedFlight {
  std::shared_ptr<Flight> flight;
  Waiters waiters;
};

/// The broker's state and rules. Not thread-safe: the driver holds a mutex around every call
/// (the `Entry` and `Flight` members have their own synchronisation).
class BrokerCore {
 public:
  using FlightFactory = std::function<std::shared_ptr<Flight>(CacheKey key, bool background)>;

  BrokerCore(TokenWindows windows, std::chrono::seconds refresh_retry_interval, FlightFactory make_flight)
      : windows_(windows), refresh_retry_(refresh_retry_interval), make_flight_(std::move(make_flight)) {}

  // ---- Materials
  /// Sets the material of `provider` and bumps its generation; drops its cached tokens. Returns
  /// the previous material, to be destroyed after the lock.
  std::optional<CredentialMaterial> set_material(std::string provider, CredentialMaterial material);
  struct Removed {
    std::optional<CredentialMaterial> previous;
    std::vector<CredentialMaterial> retired;  // by `shut_down`: every material, to destroy after the lock
    std::vector<ClosedFlight> closed;         // to answer with `outcome`
    Outcome outcome;
  };
  /// Tombstones `provider`: drops its tokens, closes its flights.
  Removed remove_material(std::string_view provider);
  /// Ends everything: every flight closed with `shut_down`, the cache emptied, the materials
  /// handed back. Later lookups fail with `shut_down`.
  Removed shut_down();
  bool is_registered(std::string_view provider) const;

  // ---- Lookups
  struct Lookup {
    enum class Kind {
      fail,   ///< `outcome.error`: no material, or shut down
      hit,    ///< `entry` may be handed out; `flight`, when set, is a background refresh to run
      join,   ///< wait for `flight`, which runs already
      start,  ///< wait for `flight`, new: the driver runs it
    } kind;
    Outcome outcome;
    std::shared_ptr<Entry> entry;
    std::shared_ptr<Flight> flight;
  };
  Lookup lookup(KeyView key, SteadyTime now);
  /// The cached entry of `key` whatever its age, or null.
  std::shared_ptr<Entry> cached(KeyView key) const;
  /// A background refresh of `e`, whose refresh the caller has claimed (`Entry::claim_refresh`);
  /// null when none is needed (one runs, the entry left the cache, shut down). The driver runs it.
  std::shared_ptr<Flight> start_refresh(const std::shared_ptr<Entry>& e, SteadyTime now);
  /// Drops the cached token of `key` if it is still `rejected`.
  bool invalidate(KeyView key, const Token* rejected);

  // ---- Mints
  struct MintStart {
    std::optional<CredentialMaterial> material;  // empty: nothing to mint
    std::uint64_t generation = 0;
    Waiters orphans;  // when the material is gone: answer them with `outcome`
    Outcome outcome;
  };
  /// What flight `f` should mint from now.
  MintStart begin_mint(const std::shared_ptr<Flight>& f);
  struct MintEnd {
    enum class Kind {
      published,  ///< answer `waiters` with `outcome.entry`
      failed,     ///< answer `waiters` with `outcome.error`
      stale,      ///< the material changed meanwhile: mint again (`begin_mint`)
      abandoned,  ///< the flight was closed meanwhile; nothing to do
    } kind;
    Waiters waiters;
    Outcome outcome;
  };
  /// The end of one mint of `f` started under `generation`: `token` on success, else `error`.
  MintEnd finish_mint(const std::shared_ptr<Flight>& f, std::uint64_t generation, std::optional<Token> token,
                      std::error_code error, Diagnostics diagnostics, SteadyTime now);
  /// Ends `f` with `error` outside the normal path (a failure of the machinery itself).
  Waiters abort(const std::shared_ptr<Flight>& f, std::error_code error, Diagnostics diagnostics, SteadyTime now);

  void count_attempt() noexcept { mint_attempts_.fetch_add(1, std::memory_order_relaxed); }
  BrokerStats stats() const;

 private:
  struct Material {
    std::uint64_t generation = 0;
    std::optional<CredentialMaterial> material;  // empty: deregistered (a tombstone)
  };
  const Material* material(std::string_view provider) const;
  std::shared_ptr<Flight> start(KeyView key, bool background);
  void unlist(const std::shared_ptr<Flight>& f);
  void drop(std::string_view provider);
  void sweep(SteadyTime now);
  void rearm(KeyView key, SteadyTime now);
  std::shared_ptr<Entry> publish(const CacheKey& key, Token token, SteadyTime now);

  TokenWindows windows_;
  std::chrono::seconds refresh_retry_;
  FlightFactory make_flight_;
  std::unordered_map<std::string, Material, StringHash, std::equal_to<>> materials_;
  std::unordered_map<CacheKey, std::shared_ptr<Entry>, KeyHash, KeyEq> cache_;
  std::unordered_map<CacheKey, std::shared_ptr<Flight>, KeyHash, KeyEq> flights_;
  bool shut_ = false;
  std::uint64_t failed_flights_ = 0;
  std::uint64_t background_refreshes_ = 0;
  std::uint64_t stale_discards_ = 0;
  std::atomic<std::uint64_t> mint_attempts_{0};
};

/// The error outcome for `provider` with `code` (`not_configured`, `shut_down`).
Outcome failure(std::error_code code, std::string context);

}  // namespace awaken::detail
