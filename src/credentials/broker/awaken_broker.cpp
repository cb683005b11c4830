// The broker's driver: runs `BrokerCore` under one mutex, mints on a strand per flight with
// retries, and delivers outcomes to the waiting callers' executors.
#include <awaken/credentials/awaken_broker.hpp>

#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

#include <spdlog/logger.h>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>

#include <awaken/error.hpp>
#include <awaken/log.hpp>

#include "credentials/broker/broker_core.hpp"
#include "credentials/broker/delivery.hpp"
#include "credentials/broker/thread_cache.hpp"
#include "credentials/minters/provider_context.hpp"

namespace awaken::detail {
namespace {

std::atomic<std::uint64_t> next_broker_id{1};

// A flight as the driver runs it: a strand of its own and the signal that stops its mint.
struct RunFlight final : Flight {
  RunFlight(CacheKey k, bool is_background, const asio::any_io_executor& ex)
      : Flight(std::move(k), is_background), strand(asio::make_strand(ex)) {}

  void cancel() noexcept override {
    try {
      asio::post(strand, [self = std::static_pointer_cast<RunFlight>(shared_from_this())] {
        if (self->running) self->signal.emit(asio::cancellation_type::terminal);
      });
    } catch (...) {  // the mint then ends on its own; its outcome is discarded
    }
  }

  const asio::strand<asio::any_io_executor> strand;
  asio::cancellation_signal signal;  // on the strand only
  bool running = true;               // on the strand only: the coroutine has not ended
};

// One attempt of a mint: a token, or why not.
struct MintAttempt {
  std::optional<Token> token;
  std::error_code error;
  Diagnostics diagnostics;
};

// Calls the user's minter. Its failures arrive as exceptions (a `Minter` is a coroutine of the
// user's), caught here, at that boundary, once; a token that is empty or already expired is a
// transient failure of the upstream.
asio::awaitable<MintAttempt> attempt_mint(const Minter& minter, std::string_view scope, const MintContext& ctx) {
  MintAttempt a;
  try {
    a.token.emplace(co_await minter.mint(scope, ctx));
  } catch (...) {
    std::tie(a.error, a.diagnostics) = classify_exception(std::current_exception());
    co_return a;
  }
  if (a.token->bearer().empty() || a.token->steady_expires_at() <= ctx.clock.steady_now()) {
    a.token.reset();
    a.error = make_error_code(credential_errc::transient_upstream);
    a.diagnostics.context = provider_context(ctx.provider_id) + ": the minter returned an empty or expired token";
  }
  co_return a;
}

}  // namespace

class BrokerState : public std::enable_shared_from_this<BrokerState> {
 public:
  BrokerState(asio::any_io_executor ex, BrokerOptions opts)
      : id(next_broker_id.fetch_add(1, std::memory_order_relaxed)),
        executor(std::move(ex)),
        clock(opts.timing.clock_or_real()),
        core(TokenWindows::of(opts), opts.refresh_retry_interval,
             [ex = executor](CacheKey key, bool background) {
               return std::make_shared<RunFlight>(std::move(key), background, ex);
             }),
        http_(std::move(opts.http)),
        options(std::move(opts)) {
    options.http.reset();
  }

  const std::uint64_t id;
  const asio::any_io_executor executor;
  const Clock& clock;
  std::mutex mutex;
  BrokerCore core;  // under mutex

 private:
  std::optional<http::HttpClient> http_;  // under mutex, made on first need

 public:
  BrokerOptions options;  // `http` moved out above

  http::HttpClient http_locked() {
    if (!http_) http_.emplace(executor);
    return *http_;
  }

  // Runs a flight the core started.
  void spawn(const std::shared_ptr<Flight>& flight);

  // Hands `e` out if its windows allow, starting a background refresh when they ask for one.
  std::optional<IssuedToken> hand_out(const std::shared_ptr<Entry>& e, SteadyTime now) noexcept {
    const HandOut h = hand_out_at(e->deadlines, now);
    if (h == HandOut::refuse) return std::nullopt;
    if (h == HandOut::refresh && e->claim_refresh(now)) {
      try {
        std::shared_ptr<Flight> f;
        {
          std::lock_guard lk(mutex);
          f = core.start_refresh(e, now);
        }
        if (f) spawn(f);
      } catch (...) {  // the core re-armed the entry; a later hit tries again
      }
    }
    return issue(e);
  }

  // The lock-free hit: this thread's slots.
  [[gnu::always_inline]] std::optional<IssuedToken> thread_hit(KeyView key) noexcept {
    if (ThreadSlot* slot = thread_cache().find(id, key)) return hand_out(slot->entry, clock.coarse_steady_now());
    return std::nullopt;
  }

  void remember(KeyView key, const std::shared_ptr<Entry>& e) noexcept {
    try {
      thread_cache().fill(id, key, e);
    } catch (...) {  // the next hit takes the locked path again
    }
  }

  void start(KeyView key, std::unique_ptr<Completion<std::error_code, IssuedToken>> c);
};

namespace {

// A caller waiting for a flight: turns its entry into an `IssuedToken`, or asks again when the
// entry was dropped between the flight's end and this delivery (material replaced, token
// rejected).
class IssueCompletion final
    : public ForwardingCompletion<Completion<std::error_code, IssuedToken>, std::error_code, std::shared_ptr<Entry>> {
 public:
  // The broker is held weakly: a caller's handler may run (and this die) on an executor of its
  // own after the broker and its execution context are gone.
  IssueCompletion(std::weak_ptr<BrokerState> st, std::unique_ptr<Completion<std::error_code, IssuedToken>> c)
      : ForwardingCompletion(std::move(c)), st_(std::move(st)) {}

  void complete(std::error_code ec, std::shared_ptr<Entry> entry) override {
    if (retry(ec, entry)) return;
    inner_->complete(ec, ec || !entry ? IssuedToken{} : issue(entry));
  }
  void invoke(std::error_code ec, std::shared_ptr<Entry> entry) override {
    if (retry(ec, entry)) return;
    inner_->invoke(ec, ec || !entry ? IssuedToken{} : issue(entry));
  }

 private:
  // A token dropped between the flight's end and this delivery (material replaced, token
  // rejected) is not handed out: the caller asks again, or learns the broker is gone.
  bool retry(std::error_code& ec, std::shared_ptr<Entry>& entry) {
    if (ec || !entry || !entry->dead.load(std::memory_order_acquire)) return false;
    if (auto st = st_.lock()) {
      st->start(entry->key, std::move(inner_));
      return true;
    }
    inner_->set_diagnostics(Diagnostics{"credential broker destroyed", {}});
    ec = make_error_code(awaken::errc::shut_down);
    entry.reset();
    return false;
  }

  std::weak_ptr<BrokerState> st_;
};

// One flight: mint (with retries) from the current material until a mint completes under the
// generation it started from, then publish the outcome.
asio::awaitable<void> mint_flight(std::shared_ptr<BrokerState> st, std::shared_ptr<Flight> f) {
  const CacheKey& key = f->key;
  for (;;) {
    BrokerCore::MintStart plan;
    std::optional<http::HttpClient> http;
    {
      std::lock_guard lk(st->mutex);
      plan = st->core.begin_mint(f);
      if (plan.material) http = st->http_locked();
    }
    if (!plan.material) {
      deliver(plan.orphans, plan.outcome);
      co_return;
    }

    // The attempts, under the retry policy's rule (`BackoffPolicy::retry_wait`): only a
    // transient failure is tried again.
    const MintContext ctx{key.provider, *http, st->clock};
    const Minter& minter = plan.material->minter();
    MintAttempt a;
    try {
      for (unsigned attempt = 1;; ++attempt) {
        st->core.count_attempt();
        a = co_await attempt_mint(minter, key.scope, ctx);
        if (!a.error) break;
        const bool transient = a.error == condition::transient && a.error != asio::error::operation_aborted;
        const auto wait = st->options.retry.retry_wait(attempt, transient, a.diagnostics.details.retry_after,
                                                       st->options.timing.jitter_or_real());
        if (!wait) break;
        logger()->debug("awaken: mint for {} failed (attempt {}), retrying in {} ms: {}",
                        provider_context(key.provider), attempt, wait->count(),
                        to_error(a.error, a.diagnostics).what());
        co_await st->options.timing.wait(*wait);
      }
    } catch (...) {  // the flight was cancelled, or a sleep of the user's failed
      a.token.reset();
      std::tie(a.error, a.diagnostics) = classify_exception(std::current_exception());
    }

    BrokerCore::MintEnd end;
    {
      std::lock_guard lk(st->mutex);
      end = st->core.finish_mint(f, plan.generation, std::move(a.token), a.error, std::move(a.diagnostics),
                                 st->clock.steady_now());
    }
    using Kind = BrokerCore::MintEnd::Kind;
    if (end.kind == Kind::abandoned) co_return;
    if (end.kind == Kind::stale) {
      logger()->debug("awaken: discarded a mint for {} made from replaced material", provider_context(key.provider));
      continue;
    }
    if (end.kind == Kind::failed && f->background)
      logger()->warn("awaken: background refresh for {} failed: {}", provider_context(key.provider),
                     to_error(end.outcome.error, *end.outcome.diagnostics).what());
    deliver(end.waiters, end.outcome);
    co_return;
  }
}

// Ends `f` when the flight machinery itself failed, so that no waiter is left hanging.
void abort_flight(BrokerState& st, const std::shared_ptr<Flight>& f, const std::exception_ptr& e) {
  auto [error, diagnostics] = classify_exception(e);
  Waiters waiters;
  const Outcome outcome{error, std::make_shared<const Diagnostics>(diagnostics), nullptr};
  {
    std::lock_guard lk(st.mutex);
    waiters = st.core.abort(f, error, std::move(diagnostics), st.clock.steady_now());
  }
  deliver(waiters, outcome);
}

asio::awaitable<void> run_flight(std::shared_ptr<BrokerState> st, std::shared_ptr<RunFlight> f) {
  std::exception_ptr unexpected;
  try {
    co_await mint_flight(st, f);
  } catch (...) {
    unexpected = std::current_exception();
  }
  if (unexpected) abort_flight(*st, f, unexpected);
  f->running = false;
}

}  // namespace

void BrokerState::spawn(const std::shared_ptr<Flight>& flight) {
  auto f = std::static_pointer_cast<RunFlight>(flight);
  try {
    // Posted, never dispatched: a dispatch could run the flight inline, inside a caller.
    asio::post(f->strand, [st = shared_from_this(), f] {
      try {
        asio::co_spawn(f->strand, run_flight(st, f),
                       asio::bind_cancellation_slot(f->signal.slot(), [](const std::exception_ptr&) {}));
      } catch (...) {
        f->running = false;
        abort_flight(*st, f, std::current_exception());
      }
    });
  } catch (...) {
    abort_flight(*this, f, std::current_exception());
  }
}

void BrokerState::start(KeyView key, std::unique_ptr<Completion<std::error_code, IssuedToken>> c) {
  const SteadyTime now = clock.coarse_steady_now();
  BrokerCore::Lookup found;
  try {
    std::lock_guard lk(mutex);
    found = core.lookup(key, now);
  } catch (...) {
    auto [error, diagnostics] = classify_exception(std::current_exception());
    c->set_diagnostics(diagnostics);
    return c->complete(error, IssuedToken{});
  }
  using Kind = BrokerCore::Lookup::Kind;
  switch (found.kind) {
    case Kind::fail:
      c->set_diagnostics(*found.outcome.diagnostics);
      return c->complete(found.outcome.error, IssuedToken{});
    case Kind::hit:
      remember(key, found.entry);
      if (found.flight) spawn(found.flight);
      return c->complete({}, issue(found.entry));
    case Kind::start: spawn(found.flight); [[fallthrough]];
    case Kind::join: found.flight->join(std::make_unique<IssueCompletion>(weak_from_this(), std::move(c)));
  }
}

}  // namespace awaken::detail

namespace awaken {

using detail::BrokerState;
using detail::KeyView;

AwakenBroker::AwakenBroker(executor_type executor, BrokerOptions options)
    : state_(std::make_shared<BrokerState>(std::move(executor), std::move(options))) {}

AwakenBroker::~AwakenBroker() {
  detail::BrokerCore::Removed removed;
  try {
    std::lock_guard lk(state_->mutex);
    removed = state_->core.shut_down();
  } catch (...) {  // only allocation can fail, before anything changed; flights then end on their own
  }
  detail::thread_cache().forget(state_->id);
  detail::deliver_closed(removed.closed, removed.outcome);
}

void AwakenBroker::register_material(std::string provider_id, CredentialMaterial material) {
  std::optional<CredentialMaterial> previous;  // its minter may die here: after the lock, not under it
  std::lock_guard lk(state_->mutex);
  previous = state_->core.set_material(std::move(provider_id), std::move(material));
}

void AwakenBroker::deregister(std::string_view provider_id) {
  detail::BrokerCore::Removed removed;  // the old minter dies after the lock, not under it
  {
    std::lock_guard lk(state_->mutex);
    removed = state_->core.remove_material(provider_id);
  }
  detail::deliver_closed(removed.closed, removed.outcome);
}

bool AwakenBroker::invalidate(std::string_view provider_id, std::string_view scope, const IssuedToken& rejected) {
  if (rejected.empty()) return false;
  std::lock_guard lk(state_->mutex);
  return state_->core.invalidate(KeyView{provider_id, scope}, rejected.token().get());
}

bool AwakenBroker::is_registered(std::string_view provider_id) const {
  std::lock_guard lk(state_->mutex);
  return state_->core.is_registered(provider_id);
}

std::optional<IssuedToken> AwakenBroker::try_cached(std::string_view provider_id,
                                                    std::string_view scope) const noexcept {
  const KeyView key{provider_id, scope};
  if (auto hit = state_->thread_hit(key)) return hit;
  std::shared_ptr<detail::Entry> entry;
  try {
    std::lock_guard lk(state_->mutex);
    entry = state_->core.cached(key);
  } catch (...) {
    return std::nullopt;
  }
  if (!entry) return std::nullopt;
  auto token = state_->hand_out(entry, state_->clock.coarse_steady_now());
  if (token) state_->remember(key, entry);
  return token;
}

std::optional<IssuedToken> AwakenBroker::try_hit(std::string_view provider_id, std::string_view scope) noexcept {
  return state_->thread_hit(KeyView{provider_id, scope});
}

void AwakenBroker::start_token_for(std::string_view provider_id, std::string_view scope,
                                   std::unique_ptr<Completion<std::error_code, IssuedToken>> completion) {
  state_->start(KeyView{provider_id, scope}, std::move(completion));
}

BrokerStats AwakenBroker::stats() const {
  std::lock_guard lk(state_->mutex);
  return state_->core.stats();
}

AwakenBroker::executor_type AwakenBroker::get_executor() const noexcept { return state_->executor; }

}  // namespace awaken
