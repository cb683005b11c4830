// The broker's state machine: material generations, the token cache, flights (one mint per key
// at a time, shared by every caller who asks meanwhile) and the per-thread hit cache.
#include <awaken/credentials/awaken_broker.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <limits>
#include <mutex>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <vector>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>

#include <spdlog/logger.h>

#include <awaken/error.hpp>
#include <awaken/log.hpp>

#include "credentials/provider_context.hpp"

namespace awaken::detail {
namespace {

using SteadyTime = std::chrono::steady_clock::time_point;
using namespace std::chrono_literals;

// Entry::refresh_not_before while a background refresh runs.
constexpr std::int64_t refresh_running = std::numeric_limits<std::int64_t>::max();

std::int64_t ticks(SteadyTime t) noexcept { return t.time_since_epoch().count(); }

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

// A cached token. Immutable but for the two atomics; shared with the thread caches.
struct Entry {
  Entry(CacheKey k, Token t, SteadyTime hard, SteadyTime soft)
      : key(std::move(k)), token(std::move(t)), hard_deadline(hard), soft_deadline(soft) {}
  const CacheKey key;
  const Token token;
  const SteadyTime hard_deadline;  // handed out strictly before this
  const SteadyTime soft_deadline;  // from this on, a hand-out starts a background refresh
  std::atomic<bool> dead{false};   // set once, when the entry leaves the cache
  std::atomic<std::int64_t> refresh_not_before{std::numeric_limits<std::int64_t>::min()};
};

struct Material {
  std::uint64_t generation = 0;
  std::optional<CredentialMaterial> material;  // empty: deregistered (a tombstone)
};

using WaiterCompletion = Completion<std::exception_ptr, std::shared_ptr<Entry>>;
// Cancelled waiters leave a null behind, so that the others keep their positions.
using Waiters = std::vector<std::unique_ptr<WaiterCompletion>>;

// One mint in progress for one key, and the callers waiting for it.
struct Flight {
  Flight(CacheKey k, const asio::any_io_executor& ex, bool is_background)
      : key(std::move(k)), strand(asio::make_strand(ex)), background(is_background) {}

  // Marks the flight done with its outcome and hands back the waiters to complete, which the
  // caller does after releasing its locks. A flight closes once; later calls return nothing.
  Waiters close(std::exception_ptr err, std::shared_ptr<Entry> result) {
    std::lock_guard lk(mutex);
    if (done) return {};
    done = true;
    error = std::move(err);
    entry = std::move(result);
    return std::move(waiters);
  }

  bool is_done() {
    std::lock_guard lk(mutex);
    return done;
  }

  const CacheKey key;
  const asio::strand<asio::any_io_executor> strand;
  const bool background;
  asio::cancellation_signal cancel;  // on the strand only
  bool running = true;               // on the strand only: the coroutine has not ended

  std::mutex mutex;  // after BrokerState::mutex when both are held
  Waiters waiters;
  bool done = false;
  std::exception_ptr error;
  std::shared_ptr<Entry> entry;
};

// Runs a batch of completions that share an executor, from a function posted to it. Should a
// handler throw, the rest are posted again before the exception leaves, so none is lost.
struct Batch {
  Waiters waiters;
  std::exception_ptr err;
  std::shared_ptr<Entry> entry;

  void operator()() {
    for (std::size_t i = 0; i < waiters.size(); ++i) {
      try {
        waiters[i]->invoke(err, entry);
      } catch (...) {
        auto rest = std::make_shared<Batch>(
            Batch{Waiters(std::make_move_iterator(waiters.begin() + static_cast<std::ptrdiff_t>(i) + 1),
                          std::make_move_iterator(waiters.end())),
                  err, entry});
        if (!rest->waiters.empty()) rest->waiters.front()->post([rest] { (*rest)(); });
        throw;
      }
    }
  }
};

// Completes `waiters` with one posted function per run of waiters sharing an executor (usually
// one for all): ten thousand waiters cost one queue entry, not ten thousand.
void deliver(Waiters& waiters, const std::exception_ptr& err, const std::shared_ptr<Entry>& entry) {
  auto batch = std::make_shared<Batch>(Batch{{}, err, entry});
  auto flush = [&] {
    if (batch->waiters.empty()) return;
    auto& first = *batch->waiters.front();
    first.post([b = std::move(batch)] { (*b)(); });
    batch = std::make_shared<Batch>(Batch{{}, err, entry});
  };
  batch->waiters.reserve(waiters.size());
  for (auto& w : waiters) {
    if (!w) continue;
    if (!batch->waiters.empty() && !batch->waiters.front()->same_executor(*w)) flush();
    batch->waiters.push_back(std::move(w));
  }
  flush();
  waiters.clear();
}

void cancel_flight(const std::shared_ptr<Flight>& f) {
  asio::post(f->strand, [f] {
    if (f->running) f->cancel.emit(asio::cancellation_type::terminal);
  });
}

std::atomic<std::uint64_t> next_broker_id{1};

// Per-thread references to recently handed-out entries: the lock-free hit path. Each slot holds
// its entry through a holder of its own, so that the reference counts a hit touches belong to
// this thread alone and two threads reading one key never share a written cache line.
struct ThreadSlot {
  std::uint64_t owner = 0;  // broker id; 0 when empty
  std::string provider;
  std::string scope;
  std::shared_ptr<Entry> entry;

  void clear() noexcept {
    owner = 0;
    entry.reset();
  }
};

struct ThreadCache {
  std::array<ThreadSlot, 16> slots;
  unsigned next = 0;

  ThreadSlot* find(std::uint64_t owner, KeyView k) noexcept {
    for (ThreadSlot& s : slots)
      if (s.owner == owner && s.provider == k.provider && s.scope == k.scope) return &s;
    return nullptr;
  }

  void fill(std::uint64_t owner, KeyView k, const std::shared_ptr<Entry>& global) {
    ThreadSlot* victim = nullptr;
    for (ThreadSlot& s : slots) {
      if (s.entry != nullptr && !s.entry->dead.load(std::memory_order_relaxed)) continue;
      s.clear();  // also lets go of dropped tokens early
      if (victim == nullptr) victim = &s;
    }
    if (victim == nullptr) {
      victim = &slots[next++ % slots.size()];
      victim->clear();
    }
    auto holder = std::make_shared<std::shared_ptr<Entry>>(global);
    victim->provider.assign(k.provider);
    victim->scope.assign(k.scope);
    victim->entry = std::shared_ptr<Entry>(holder, holder->get());
    victim->owner = owner;
  }

  void forget(std::uint64_t owner) noexcept {
    for (ThreadSlot& s : slots)
      if (s.owner == owner) s.clear();
  }
};

ThreadCache& thread_cache() noexcept {
  thread_local ThreadCache cache;
  return cache;
}

IssuedToken issue(const std::shared_ptr<Entry>& e) noexcept {
  return IssuedToken{std::shared_ptr<const Token>(e, &e->token)};
}

// What a failure may say in a log: awaken's own texts (bounded, secret-free by contract), else
// only the code or the type, since a foreign exception may quote a response body.
std::string loggable(const std::exception& e) {
  if (dynamic_cast<const Error*>(&e) != nullptr) return e.what();
  if (const auto* se = dynamic_cast<const std::system_error*>(&e))
    return std::string{se->code().category().name()} + ":" + std::to_string(se->code().value());
  return std::string{"an exception of type "} + typeid(e).name();
}

std::exception_ptr not_configured(std::string_view provider) {
  return std::make_exception_ptr(Error(credential_errc::not_configured, provider_context(provider)));
}

}  // namespace

class BrokerState : public std::enable_shared_from_this<BrokerState> {
 public:
  BrokerState(asio::any_io_executor ex, BrokerOptions opts)
      : id(next_broker_id.fetch_add(1, std::memory_order_relaxed)),
        executor(std::move(ex)),
        clock(opts.clock != nullptr ? *opts.clock : system_clock()),
        http_(std::move(opts.http)),
        options(std::move(opts)) {
    options.http.reset();
  }

  const std::uint64_t id;
  const asio::any_io_executor executor;
  const Clock& clock;

 private:
  std::optional<http::HttpClient> http_;  // under mutex

 public:
  BrokerOptions options;  // `http` moved out above

  std::mutex mutex;
  std::unordered_map<std::string, Material, StringHash, std::equal_to<>> materials;
  std::unordered_map<CacheKey, std::shared_ptr<Entry>, KeyHash, KeyEq> cache;
  std::unordered_map<CacheKey, std::shared_ptr<Flight>, KeyHash, KeyEq> flights;
  bool shut = false;
  std::uint64_t failed_flights = 0;
  std::uint64_t background_refreshes = 0;
  std::uint64_t stale_discards = 0;
  std::atomic<std::uint64_t> mint_attempts{0};

  // Locked. The shared HTTP client, made on first need.
  http::HttpClient http_locked() {
    if (!http_) http_.emplace(executor);
    return *http_;
  }

  // Locked.
  const Material* material_locked(std::string_view provider) const {
    auto it = materials.find(provider);
    return it == materials.end() ? nullptr : &it->second;
  }

  // Locked. Removes every cached token of `provider` (`scope` too, when given).
  void drop_cache_locked(std::string_view provider) {
    for (auto it = cache.begin(); it != cache.end();) {
      if (it->first.provider == provider) {
        it->second->dead.store(true, std::memory_order_release);
        it = cache.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Locked. Lets the cached token of `key`, if any, start a background refresh again later.
  void rearm_locked(KeyView key) {
    if (auto it = cache.find(key); it != cache.end())
      it->second->refresh_not_before.store(ticks(clock.steady_now() + options.refresh_retry_interval),
                                           std::memory_order_relaxed);
  }

  // Locked. Drops tokens past their expiry, so that keys no longer asked for do not pile up.
  void sweep_expired_locked() {
    const SteadyTime now = clock.steady_now();
    for (auto it = cache.begin(); it != cache.end();) {
      if (it->second->token.steady_expires_at() <= now) {
        it->second->dead.store(true, std::memory_order_release);
        it = cache.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Locked. Starts a flight for `key`; the caller has checked that none runs.
  std::shared_ptr<Flight> start_flight_locked(KeyView key, bool background);

  // Locked. Removes `f` from the flight table if it is still there.
  void unlist_locked(const std::shared_ptr<Flight>& f) {
    auto it = flights.find(KeyView(f->key));
    if (it != flights.end() && it->second == f) flights.erase(it);
  }

  // The hand-out rule shared by every path. `now` may be coarse.
  std::optional<IssuedToken> hand_out(const std::shared_ptr<Entry>& e, SteadyTime now) noexcept {
    if (now >= e->hard_deadline) return std::nullopt;
    if (now >= e->soft_deadline) maybe_refresh(e, now);
    return issue(e);
  }

  // Starts one background refresh of `e` unless one runs or failed too recently.
  void maybe_refresh(const std::shared_ptr<Entry>& e, SteadyTime now) noexcept {
    std::int64_t not_before = e->refresh_not_before.load(std::memory_order_relaxed);
    if (ticks(now) < not_before) return;
    if (!e->refresh_not_before.compare_exchange_strong(not_before, refresh_running)) return;
    try {
      std::lock_guard lk(mutex);
      if (shut || e->dead.load(std::memory_order_relaxed)) return;
      if (flights.find(KeyView(e->key)) != flights.end()) return;  // its end rearms the entry
      start_flight_locked(e->key, true);
      ++background_refreshes;
    } catch (...) {
      e->refresh_not_before.store(ticks(now + options.refresh_retry_interval), std::memory_order_relaxed);
    }
  }

  // Builds the cache entry for a freshly minted token.
  std::shared_ptr<Entry> make_entry(const CacheKey& key, Token token) const {
    const SteadyTime now = clock.steady_now();
    const SteadyTime expiry = token.steady_expires_at();
    const auto lifetime = expiry - now;
    auto soft = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        lifetime * std::clamp(options.soft_window_fraction, 0.0, 1.0));
    soft = std::min<std::chrono::steady_clock::duration>(soft, options.max_soft_window);
    return std::make_shared<Entry>(key, std::move(token), expiry - options.hard_window, expiry - soft);
  }
};

namespace {

// Ends `f` with `err` outside the normal path (a failure of the flight machinery itself).
void abort_flight(BrokerState& st, const std::shared_ptr<Flight>& f, const std::exception_ptr& err) {
  Waiters waiters;
  {
    std::lock_guard lk(st.mutex);
    st.unlist_locked(f);
    st.rearm_locked(f->key);
    waiters = f->close(err, nullptr);
  }
  deliver(waiters, err, nullptr);
}

asio::awaitable<Token> checked_mint(const Minter& minter, std::string_view scope, const MintContext& ctx) {
  Token t = co_await minter.mint(scope, ctx);
  if (t.bearer().empty() || t.steady_expires_at() <= ctx.clock.steady_now())
    throw_error(credential_errc::transient_upstream,
                provider_context(ctx.provider_id) + ": the minter returned an empty or expired token");
  co_return t;
}

// One flight: mint (with retries) from the current material until a mint completes under the
// generation it started from, then publish the outcome.
asio::awaitable<void> fly(std::shared_ptr<BrokerState> st, std::shared_ptr<Flight> f) {
  const CacheKey& key = f->key;
  for (;;) {
    std::optional<CredentialMaterial> material;
    std::uint64_t generation = 0;
    std::optional<http::HttpClient> http;
    {
      Waiters orphans;
      std::exception_ptr gone;
      {
        std::lock_guard lk(st->mutex);
        if (f->is_done()) co_return;
        const Material* m = st->material_locked(key.provider);
        if (m == nullptr || !m->material) {
          st->unlist_locked(f);
          gone = not_configured(key.provider);
          orphans = f->close(gone, nullptr);
        } else {
          material = m->material;
          generation = m->generation;
          http = st->http_locked();
        }
      }
      if (!material) {
        deliver(orphans, gone, nullptr);
        co_return;
      }
    }

    std::exception_ptr err;
    std::optional<Token> token;
    try {
      const MintContext ctx{key.provider, *http, st->clock};
      const Minter& minter = material->minter();
      token.emplace(co_await with_backoff(
          st->options.retry, [](std::error_code ec) { return is_retryable(ec); },
          [&](unsigned attempt, const std::system_error& e, std::chrono::milliseconds delay) {
            logger()->debug("awaken: mint for {} failed (attempt {}), retrying in {} ms: {}",
                            provider_context(key.provider), attempt, delay.count(), loggable(e));
          },
          [&] {
            st->mint_attempts.fetch_add(1, std::memory_order_relaxed);
            return checked_mint(minter, key.scope, ctx);
          },
          BackoffEnvironment{st->options.jitter, st->options.retry_sleep}));
    } catch (...) {
      err = std::current_exception();
    }

    Waiters waiters;
    std::shared_ptr<Entry> entry;
    bool stale = false;
    {
      std::lock_guard lk(st->mutex);
      if (f->is_done()) co_return;  // deregistered or shut down meanwhile; waiters were told
      const Material* m = st->material_locked(key.provider);
      if (m == nullptr || !m->material || m->generation != generation) {
        ++st->stale_discards;
        stale = true;
      } else {
        st->unlist_locked(f);
        if (err) {
          ++st->failed_flights;
          st->rearm_locked(key);  // a cached token stays until its hard window; refresh later
        } else {
          entry = st->make_entry(key, std::move(*token));
          st->sweep_expired_locked();
          auto [it, fresh] = st->cache.try_emplace(key, entry);
          if (!fresh) {
            it->second->dead.store(true, std::memory_order_release);
            it->second = entry;
          }
        }
        waiters = f->close(err, entry);
      }
    }
    if (stale) {
      logger()->debug("awaken: discarded a mint for {} made from replaced material", provider_context(key.provider));
      continue;
    }
    if (err && f->background) {
      try {
        std::rethrow_exception(err);
      } catch (const std::exception& e) {
        logger()->warn("awaken: background refresh for {} failed: {}", provider_context(key.provider), loggable(e));
      } catch (...) {
        logger()->warn("awaken: background refresh for {} failed", provider_context(key.provider));
      }
    }
    deliver(waiters, err, entry);
    co_return;
  }
}

asio::awaitable<void> run_flight(std::shared_ptr<BrokerState> st, std::shared_ptr<Flight> f) {
  std::exception_ptr unexpected;
  try {
    co_await fly(st, f);
  } catch (...) {
    unexpected = std::current_exception();
  }
  if (unexpected) abort_flight(*st, f, unexpected);  // never leave waiters hanging, whatever went wrong
  f->running = false;
}

// Adds a waiter to `f`, or completes it at once with the outcome when `f` is already done.
// Cancellation through the completion's slot removes only this waiter.
void join(const std::shared_ptr<Flight>& f, std::unique_ptr<WaiterCompletion> c) {
  std::unique_lock lk(f->mutex);
  if (f->done) {
    auto err = f->error;
    auto entry = f->entry;
    lk.unlock();
    c->complete(std::move(err), std::move(entry));
    return;
  }
  if (f->waiters.size() == f->waiters.capacity())  // so that nothing throws once the slot is set
    f->waiters.reserve(std::max<std::size_t>(8, 2 * f->waiters.capacity()));
  if (auto slot = c->cancellation_slot(); slot.is_connected()) {
    slot.assign([weak = std::weak_ptr<Flight>(f), index = f->waiters.size()](asio::cancellation_type type) {
      if (type == asio::cancellation_type::none) return;
      auto flight = weak.lock();
      if (!flight) return;
      std::unique_lock lock(flight->mutex);
      if (flight->done || index >= flight->waiters.size() || !flight->waiters[index]) return;  // already answered
      auto mine = std::move(flight->waiters[index]);
      lock.unlock();
      mine->complete(std::make_exception_ptr(std::system_error(asio::error::operation_aborted)), nullptr);
    });
  }
  f->waiters.push_back(std::move(c));
}

template <class CompletionToken>
auto async_join(std::shared_ptr<Flight> f, asio::any_io_executor fallback, CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(std::exception_ptr, std::shared_ptr<Entry>)>(
      [f = std::move(f), fallback](auto handler) {
        join(f, make_completion<std::exception_ptr, std::shared_ptr<Entry>>(std::move(handler), fallback));
      },
      token);
}

// What a miss comes to, decided under the lock: an error, a usable cached entry, or the key's
// flight (started here if none runs).
struct Decision {
  std::exception_ptr error;
  std::shared_ptr<Entry> cached;
  std::shared_ptr<Flight> flight;
};

Decision decide(BrokerState& st, KeyView key) {
  const SteadyTime now = st.clock.coarse_steady_now();
  Decision d;
  {
    std::lock_guard lk(st.mutex);
    if (st.shut) {
      d.error = std::make_exception_ptr(Error(credential_errc::shut_down, provider_context(key.provider)));
      return d;
    }
    const Material* m = st.material_locked(key.provider);
    if (m == nullptr || !m->material) {
      d.error = not_configured(key.provider);
      return d;
    }
    if (auto it = st.cache.find(key); it != st.cache.end() && now < it->second->hard_deadline) {
      d.cached = it->second;
    } else if (auto f = st.flights.find(key); f != st.flights.end()) {
      d.flight = f->second;
    } else {
      d.flight = st.start_flight_locked(key, false);
    }
  }
  if (d.cached) {
    try {
      thread_cache().fill(st.id, key, d.cached);
    } catch (...) {  // the next hit takes the locked path again
    }
    if (now >= d.cached->soft_deadline) st.maybe_refresh(d.cached, now);
  }
  return d;
}

asio::awaitable<IssuedToken> ready(IssuedToken token) { co_return token; }

asio::awaitable<IssuedToken> failed(std::exception_ptr e) {
  std::rethrow_exception(e);
  co_return IssuedToken{};  // never reached; makes this a coroutine
}

// Waits for a flight. A token dropped between the flight's end and this caller's resumption
// (its material replaced, its token rejected) is not handed out: the caller asks again.
asio::awaitable<IssuedToken> wait_for(std::shared_ptr<BrokerState> st, std::shared_ptr<Flight> flight) {
  for (;;) {
    auto entry = co_await async_join(std::move(flight), st->executor, asio::use_awaitable);
    if (!entry->dead.load(std::memory_order_acquire)) co_return issue(entry);
    Decision d = decide(*st, entry->key);
    if (d.error) std::rethrow_exception(d.error);
    if (d.cached) co_return issue(d.cached);
    flight = std::move(d.flight);
  }
}

// `async_token_for`'s waiter: turns a flight's entry into an `IssuedToken` for the caller's
// completion, asking again (as `wait_for` does) when the entry was dropped meanwhile.
class IssueCompletion final : public WaiterCompletion {
 public:
  IssueCompletion(std::shared_ptr<BrokerState> st, std::unique_ptr<Completion<std::exception_ptr, IssuedToken>> c)
      : st_(std::move(st)), c_(std::move(c)) {}

  void complete(std::exception_ptr err, std::shared_ptr<Entry> entry) override {
    if (retry(err, entry)) return;
    c_->complete(std::move(err), entry ? issue(entry) : IssuedToken{});
  }
  void invoke(std::exception_ptr err, std::shared_ptr<Entry> entry) override {
    if (retry(err, entry)) return;
    c_->invoke(std::move(err), entry ? issue(entry) : IssuedToken{});
  }
  void post(std::function<void()> fn) override { c_->post(std::move(fn)); }
  asio::cancellation_slot cancellation_slot() const noexcept override { return c_->cancellation_slot(); }
  const std::type_info& executor_type() const noexcept override { return c_->executor_type(); }
  const void* executor_address() const noexcept override { return c_->executor_address(); }
  bool executor_equals(const void* other) const noexcept override { return c_->executor_equals(other); }

  // Starts (or finishes) a request for `key` on behalf of `c`.
  static void start(const std::shared_ptr<BrokerState>& st, KeyView key,
                    std::unique_ptr<Completion<std::exception_ptr, IssuedToken>> c) {
    Decision d = decide(*st, key);
    if (d.error) return c->complete(d.error, IssuedToken{});
    if (d.cached) return c->complete(nullptr, issue(d.cached));
    join(d.flight, std::make_unique<IssueCompletion>(st, std::move(c)));
  }

 private:
  bool retry(const std::exception_ptr& err, const std::shared_ptr<Entry>& entry) {
    if (err || !entry || !entry->dead.load(std::memory_order_acquire)) return false;
    start(st_, entry->key, std::move(c_));
    return true;
  }

  std::shared_ptr<BrokerState> st_;
  std::unique_ptr<Completion<std::exception_ptr, IssuedToken>> c_;
};

// The hit path: this thread's slots, no lock.
[[gnu::always_inline]] inline std::optional<IssuedToken> thread_hit(BrokerState& st, KeyView key,
                                                                    SteadyTime now) noexcept {
  if (ThreadSlot* slot = thread_cache().find(st.id, key)) {
    if (!slot->entry->dead.load(std::memory_order_acquire)) return st.hand_out(slot->entry, now);
    slot->clear();
  }
  return std::nullopt;
}

// This thread's slots first, then the shared cache under the lock.
std::optional<IssuedToken> cached_token(BrokerState& st, KeyView key) noexcept {
  const SteadyTime now = st.clock.coarse_steady_now();
  if (auto hit = thread_hit(st, key, now)) return hit;
  ThreadCache& tc = thread_cache();
  std::shared_ptr<Entry> entry;
  try {
    std::lock_guard lk(st.mutex);
    if (auto it = st.cache.find(key); it != st.cache.end()) entry = it->second;
  } catch (...) {
    return std::nullopt;
  }
  if (!entry || now >= entry->hard_deadline) return std::nullopt;
  try {
    tc.fill(st.id, key, entry);
  } catch (...) {  // the next hit takes this path again
  }
  return st.hand_out(entry, now);
}

}  // namespace

std::shared_ptr<Flight> BrokerState::start_flight_locked(KeyView key, bool background) {
  auto f = std::make_shared<Flight>(CacheKey{std::string{key.provider}, std::string{key.scope}}, executor, background);
  flights.emplace(f->key, f);
  try {
    // Posted, never dispatched: a dispatch could run the flight inline, under the caller's lock.
    asio::post(f->strand, [st = shared_from_this(), f] {
      try {
        asio::co_spawn(f->strand, run_flight(st, f),
                       asio::bind_cancellation_slot(f->cancel.slot(), [](const std::exception_ptr&) {}));
      } catch (...) {
        f->running = false;
        abort_flight(*st, f, std::current_exception());
      }
    });
  } catch (...) {
    unlist_locked(f);
    throw;
  }
  return f;
}

}  // namespace awaken::detail

namespace awaken {

using detail::BrokerState;
using detail::KeyView;

AwakenBroker::AwakenBroker(executor_type executor, BrokerOptions options)
    : state_(std::make_shared<BrokerState>(std::move(executor), std::move(options))) {}

AwakenBroker::~AwakenBroker() {
  std::vector<std::pair<std::shared_ptr<detail::Flight>, detail::Waiters>> closed;
  std::exception_ptr err;
  decltype(state_->materials) materials;  // minters die after the lock, not under it
  try {
    err = std::make_exception_ptr(Error(credential_errc::shut_down, "credential broker destroyed"));
    std::lock_guard lk(state_->mutex);
    closed.reserve(state_->flights.size());
    state_->shut = true;
    for (auto& [key, entry] : state_->cache) entry->dead.store(true, std::memory_order_release);
    state_->cache.clear();
    materials.swap(state_->materials);
    for (auto& [key, f] : state_->flights) closed.emplace_back(f, f->close(err, nullptr));
    state_->flights.clear();
  } catch (...) {  // only allocation can fail, before anything changed; flights then end on their own
  }
  detail::thread_cache().forget(state_->id);
  for (auto& [f, waiters] : closed) {
    try {
      detail::deliver(waiters, err, nullptr);
      detail::cancel_flight(f);
    } catch (...) {
    }
  }
}

void AwakenBroker::register_material(std::string provider_id, CredentialMaterial material) {
  std::optional<CredentialMaterial> previous;  // its minter may die here: after the lock, not under it
  std::lock_guard lk(state_->mutex);
  auto it = state_->materials.find(std::string_view{provider_id});
  if (it == state_->materials.end()) it = state_->materials.emplace(std::move(provider_id), detail::Material{}).first;
  auto& m = it->second;
  if (m.generation != std::numeric_limits<std::uint64_t>::max()) ++m.generation;
  previous = std::exchange(m.material, std::move(material));
  state_->drop_cache_locked(it->first);
}

void AwakenBroker::deregister(std::string_view provider_id) {
  std::vector<std::pair<std::shared_ptr<detail::Flight>, detail::Waiters>> closed;
  const std::exception_ptr err = detail::not_configured(provider_id);
  std::optional<CredentialMaterial> previous;  // its minter may die here: after the lock, not under it
  {
    std::lock_guard lk(state_->mutex);
    closed.reserve(state_->flights.size());
    if (auto it = state_->materials.find(provider_id); it != state_->materials.end()) {
      auto& m = it->second;
      if (m.generation != std::numeric_limits<std::uint64_t>::max()) ++m.generation;
      previous = std::exchange(m.material, std::nullopt);
    }
    state_->drop_cache_locked(provider_id);
    for (auto it = state_->flights.begin(); it != state_->flights.end();) {
      if (it->first.provider == provider_id) {
        closed.emplace_back(it->second, it->second->close(err, nullptr));
        it = state_->flights.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& [f, waiters] : closed) {
    detail::deliver(waiters, err, nullptr);
    detail::cancel_flight(f);
  }
}

asio::awaitable<IssuedToken> AwakenBroker::token_for(std::string_view provider_id, std::string_view scope) {
  const KeyView key{provider_id, scope};
  if (auto hit = detail::thread_hit(*state_, key, state_->clock.coarse_steady_now()))
    return detail::ready(std::move(*hit));
  detail::Decision d = detail::decide(*state_, key);
  if (d.error) return detail::failed(std::move(d.error));
  if (d.cached) return detail::ready(detail::issue(d.cached));
  return detail::wait_for(state_, std::move(d.flight));
}

bool AwakenBroker::invalidate(std::string_view provider_id, std::string_view scope, const IssuedToken& rejected) {
  if (rejected.empty()) return false;
  std::lock_guard lk(state_->mutex);
  auto it = state_->cache.find(KeyView{provider_id, scope});
  if (it == state_->cache.end() || &it->second->token != rejected.token().get()) return false;
  it->second->dead.store(true, std::memory_order_release);
  state_->cache.erase(it);
  return true;
}

bool AwakenBroker::is_registered(std::string_view provider_id) const {
  std::lock_guard lk(state_->mutex);
  const auto* m = state_->material_locked(provider_id);
  return m != nullptr && m->material.has_value();
}

std::optional<IssuedToken> AwakenBroker::try_cached(std::string_view provider_id,
                                                    std::string_view scope) const noexcept {
  return detail::cached_token(*state_, KeyView{provider_id, scope});
}

void AwakenBroker::start_async(
    const std::shared_ptr<BrokerState>& state, std::string provider, std::string scope,
    std::unique_ptr<awaken::detail::Completion<std::exception_ptr, IssuedToken>> completion) {
  if (auto hit = detail::thread_hit(*state, KeyView{provider, scope}, state->clock.coarse_steady_now())) {
    completion->complete(nullptr, std::move(*hit));
    return;
  }
  detail::IssueCompletion::start(state, KeyView{provider, scope}, std::move(completion));
}

AwakenBroker::executor_type AwakenBroker::executor_of(const std::shared_ptr<BrokerState>& state) noexcept {
  return state->executor;
}

BrokerStats AwakenBroker::stats() const {
  std::lock_guard lk(state_->mutex);
  BrokerStats s;
  for (const auto& [id, m] : state_->materials)
    if (m.material) ++s.providers;
  s.cached_tokens = state_->cache.size();
  s.flights = state_->flights.size();
  s.mint_attempts = state_->mint_attempts.load(std::memory_order_relaxed);
  s.failed_flights = state_->failed_flights;
  s.background_refreshes = state_->background_refreshes;
  s.stale_discards = state_->stale_discards;
  return s;
}

AwakenBroker::executor_type AwakenBroker::get_executor() const noexcept { return state_->executor; }

}  // namespace awaken
