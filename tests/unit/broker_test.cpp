// Credential broker: cache, generations, single flight, windows, invalidation, cancellation.
#include <atomic>
#include <future>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <catch2/catch.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/error.hpp>

#include "support/names.hpp"
#include "support/run.hpp"

using awaken::MintContext;
using awaken::Token;

namespace {

// Opens once; every coroutine waiting on it resumes. For one-threaded io_contexts.
class Gate {
 public:
  explicit Gate(const asio::any_io_executor& ex) : timer_(ex, asio::steady_timer::time_point::max()) {}
  void open() {
    open_ = true;
    timer_.cancel();
  }
  bool is_open() const { return open_; }
  asio::awaitable<void> wait() {
    while (!open_) {
      std::error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      auto cs = co_await asio::this_coro::cancellation_state;
      if (!open_ && cs.cancelled() != asio::cancellation_type::none)
        throw std::system_error(asio::error::operation_aborted);
    }
  }

 private:
  asio::steady_timer timer_;
  bool open_ = false;
};

// A minter scripted per call: counts calls, optionally waits on a gate or a delay, fails with
// the code given for call n, and otherwise returns "<bearer>-<n>" valid for `lifetime`.
class ScriptedMinter final : public awaken::Minter {
 public:
  explicit ScriptedMinter(std::string bearer, std::chrono::seconds lifetime = 3600s)
      : bearer_(std::move(bearer)), lifetime_(lifetime) {}

  std::string_view kind_label() const noexcept override { return "test_scripted"; }

  asio::awaitable<Token> mint(std::string_view scope, const MintContext& ctx) const override {
    const int n = ++calls;
    last_scope = std::string{scope};
    last_provider = std::string{ctx.provider_id};
    if (started) started->open();
    if (release) co_await release->wait();
    if (delay > 0ms) {
      asio::steady_timer t{co_await asio::this_coro::executor, delay};
      co_await t.async_wait(asio::use_awaitable);
    }
    if (auto it = failures.find(n); it != failures.end())
      awaken::throw_error(it->second, "provider '" + std::string{ctx.provider_id} + "'",
                          awaken::ErrorDetails{it->second == credential_errc::permanent_upstream ? 403 : 503,
                                               "invalid_grant", std::nullopt});
    if (fail_always) awaken::throw_error(*fail_always, "always failing", awaken::ErrorDetails{403, "denied", {}});
    co_return Token::expiring_in(RedactedString{bearer_ + "-" + std::to_string(n)}, lifetime_, ctx.clock);
  }

  // Makes each mint open `started` and wait for `release`.
  void gate(const asio::any_io_executor& ex) {
    started = std::make_shared<Gate>(ex);
    release = std::make_shared<Gate>(ex);
  }

  mutable std::atomic<int> calls{0};
  mutable std::string last_scope;
  mutable std::string last_provider;
  std::map<int, credential_errc> failures;
  std::optional<std::error_code> fail_always;
  std::shared_ptr<Gate> started;
  std::shared_ptr<Gate> release;
  std::chrono::milliseconds delay{0};

 private:
  std::string bearer_;
  std::chrono::seconds lifetime_;
};

// Broker options on `clock`.
BrokerOptions clocked(awaken::ManualClock& clock, BrokerOptions options = {}) {
  options.timing.clock = &clock;
  return options;
}

// A scripted minter registered as provider "p" of `broker`.
std::shared_ptr<ScriptedMinter> scripted(AwakenBroker& broker, std::string bearer,
                                         std::chrono::seconds lifetime = 3600s) {
  auto minter = std::make_shared<ScriptedMinter>(std::move(bearer), lifetime);
  broker.register_material("p", CredentialMaterial::from_minter(minter));
  return minter;
}

// A broker whose provider "p" mints through a gated scripted minter.
struct Gated {
  explicit Gated(std::string bearer) : minter(scripted(broker, std::move(bearer))) { minter->gate(io.get_executor()); }
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  std::shared_ptr<ScriptedMinter> minter;
};

CredentialMaterial bearer(const char* text) { return CredentialMaterial::static_bearer(RedactedString{text}); }

std::string text(const IssuedToken& t) { return std::string{t.bearer().reveal()}; }

// Runs `aw` on `io` and returns the code of the awaken::Error it throws.
std::error_code error_of(asio::io_context& io, asio::awaitable<IssuedToken> aw) {
  try {
    run(io, std::move(aw));
  } catch (const std::system_error& e) {
    return e.code();
  }
  return {};
}

// The code of the std::system_error `e` holds; empty when `e` is null.
std::error_code code_of(const std::exception_ptr& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& se) {
    return se.code();
  } catch (...) {
    return std::make_error_code(std::errc::state_not_recoverable);  // anything else is a bug
  }
}

BrokerOptions fast_retries() {
  BrokerOptions o;
  o.retry.initial_delay = 1ms;
  o.retry.max_delay = 4ms;
  return o;
}

}  // namespace

TEST_CASE("Token is near expiry inside the window and when expired", "[broker][token]") {
  awaken::ManualClock clock;
  const auto near = Token::expiring_in(RedactedString{"x"}, 30s, clock);
  CHECK(near.is_near_expiry(60s, clock));
  const auto fresh = Token::expiring_in(RedactedString{"x"}, 3600s, clock);
  CHECK_FALSE(fresh.is_near_expiry(60s, clock));
  const auto edge = Token::expiring_in(RedactedString{"x"}, 60s, clock);
  CHECK(edge.is_near_expiry(60s, clock));  // exactly the window counts as near
  const auto stale = Token::expiring_in(RedactedString{"x"}, 10s, clock);
  clock.advance(20s);
  CHECK(stale.is_near_expiry(60s, clock));
  CHECK(stale.is_near_expiry(0s, clock));
  CHECK(fresh.expires_at() - clock.system_now() == 3580s);
}

TEST_CASE("Tokens and issued tokens and materials never print the secret", "[broker][token][secret]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  broker.register_material("p", bearer("sk-very-secret-value"));
  const IssuedToken t = run(io, broker.token_for("p", "s"));
  std::ostringstream os;
  os << t << ' ' << *t.token() << ' ' << bearer("sk-very-secret-value") << ' ' << IssuedToken{};
  const std::string printed = os.str() + fmt::format(" {} {}", t, *t.token());
  CHECK(printed.find("sk-very") == std::string::npos);
  CHECK(printed.find("[redacted]") != std::string::npos);
  CHECK(printed.find("kind=bearer") != std::string::npos);
  CHECK(printed.find("IssuedToken{empty}") != std::string::npos);
  CHECK(printed.find("type=Bearer") != std::string::npos);
}

TEST_CASE("Materials refuse empty or null input", "[broker][material]") {
  CHECK_THROWS_WITH(CredentialMaterial::static_bearer(RedactedString{}), Contains("empty"));
  CHECK_THROWS_WITH(CredentialMaterial::static_bearer(RedactedString{"k"}, 0s), Contains("positive"));
  CHECK_THROWS_WITH(CredentialMaterial::from_minter(nullptr), Contains("null"));
  try {
    CredentialMaterial::from_minter(nullptr);
  } catch (const std::system_error& e) {
    CHECK(e.code() == credential_errc::invalid_material);
  }
  CHECK(bearer("k").kind_label() == "bearer");
  CHECK(CredentialMaterial::from_minter(std::make_shared<ScriptedMinter>("t")).kind_label() == "test_scripted");
}

TEST_CASE("A cache hit does not mint", "[broker][cache]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  auto minter = scripted(broker, "tok");
  const auto a = run(io, broker.token_for("p", "any"));
  const auto b = run(io, broker.token_for("p", "any"));
  CHECK(text(a) == "tok-1");
  CHECK(b.same_token(a));
  CHECK(minter->calls == 1);
  CHECK(minter->last_scope == "any");
  CHECK(minter->last_provider == "p");
  auto c = broker.try_cached("p", "any");
  REQUIRE(c);
  CHECK(c->same_token(a));
  CHECK(broker.stats().cached_tokens == 1);
}

TEST_CASE("An unregistered provider is not configured and not retryable", "[broker]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  try {
    run(io, broker.token_for("missing", "any"));
    FAIL("no error");
  } catch (const awaken::Error& e) {
    CHECK(e.code() == credential_errc::not_configured);
    CHECK_FALSE((e.code() == awaken::condition::transient));
    CHECK(std::string{e.what()}.find("provider 'missing'") != std::string::npos);
  }
  CHECK_FALSE(broker.is_registered("missing"));
  CHECK_FALSE(broker.try_cached("missing", "any"));
}

TEST_CASE("Deregister drops the cache and the provider", "[broker]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  broker.register_material("p", bearer("k1"));
  CHECK(broker.is_registered("p"));
  const auto t = run(io, broker.token_for("p", "any"));
  broker.deregister("p");
  CHECK_FALSE(broker.is_registered("p"));
  CHECK(error_of(io, broker.token_for("p", "any")) == credential_errc::not_configured);
  CHECK_FALSE(broker.try_cached("p", "any"));
  CHECK(broker.stats().cached_tokens == 0);
  CHECK(broker.stats().providers == 0);
  broker.deregister("never-seen");  // ignored
  broker.register_material("p", bearer("k2"));
  CHECK(text(run(io, broker.token_for("p", "any"))) == "k2");
}

TEST_CASE("Flights end with their mint and deregister ends them at once", "[broker][flight]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  broker.register_material("p", bearer("k"));
  run(io, broker.token_for("p", "scope"));
  CHECK(broker.stats().flights == 0);  // freed when the flight ended

  auto minter = std::make_shared<ScriptedMinter>("slow");
  minter->gate(io.get_executor());
  broker.register_material("q", CredentialMaterial::from_minter(minter));
  std::error_code waiter_error;
  bool waiter_done = false;
  asio::co_spawn(io, broker.token_for("q", "scope"), [&](std::exception_ptr e, IssuedToken) {
    waiter_done = true;
    waiter_error = code_of(e);
  });
  run(io, minter->started->wait());
  CHECK(broker.stats().flights == 1);
  broker.deregister("q");
  CHECK(broker.stats().flights == 0);
  io.restart();
  io.run_for(2s);  // the waiter completes without the gate ever opening
  CHECK(waiter_done);
  CHECK(waiter_error == credential_errc::not_configured);
  CHECK_FALSE(minter->release->is_open());
}

TEST_CASE("Registering new material invalidates the cache", "[broker]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  broker.register_material("p", bearer("k1"));
  CHECK(text(run(io, broker.token_for("p", "s"))) == "k1");
  broker.register_material("p", bearer("k2"));
  CHECK_FALSE(broker.try_cached("p", "s"));
  CHECK(text(run(io, broker.token_for("p", "s"))) == "k2");
}

TEST_CASE("Register during an in-flight mint discards the stale token", "[broker][generation]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  auto old_minter = std::make_shared<ScriptedMinter>("old");
  old_minter->gate(io.get_executor());
  broker.register_material("p", CredentialMaterial::from_minter(old_minter));
  std::future<IssuedToken> waiting = asio::co_spawn(io, broker.token_for("p", "s"), asio::use_future);
  run(io, old_minter->started->wait());
  broker.register_material("p", bearer("new"));
  old_minter->release->open();
  io.restart();
  io.run_for(2s);
  REQUIRE(waiting.wait_for(0s) == std::future_status::ready);
  CHECK(text(waiting.get()) == "new");
  CHECK(text(run(io, broker.token_for("p", "s"))) == "new");
  CHECK(broker.stats().stale_discards == 1);
  CHECK(old_minter->calls == 1);
}

TEST_CASE("Deregister during an in-flight mint discards the stale token", "[broker][generation]") {
  Gated g{"old"};
  auto& [io, broker, minter] = g;
  std::future<IssuedToken> waiting = asio::co_spawn(io, broker.token_for("p", "s"), asio::use_future);
  run(io, minter->started->wait());
  broker.deregister("p");
  minter->release->open();
  io.restart();
  io.run_for(1s);
  REQUIRE(waiting.wait_for(0s) == std::future_status::ready);
  try {
    waiting.get();
    FAIL("no error");
  } catch (const awaken::Error& e) {
    CHECK(e.code() == credential_errc::not_configured);
    CHECK(std::string{e.what()}.find("'p'") != std::string::npos);
  }
  CHECK(error_of(io, broker.token_for("p", "s")) == credential_errc::not_configured);
  CHECK(broker.stats().cached_tokens == 0);
}

TEST_CASE("Scopes have independent cache entries and register drops them all", "[broker][cache]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  auto minter = scripted(broker, "m");
  const auto a = run(io, broker.token_for("p", "scope-a"));
  const auto b = run(io, broker.token_for("p", "scope-b"));
  CHECK(minter->calls == 2);
  CHECK_FALSE(a.same_token(b));
  CHECK(run(io, broker.token_for("p", "scope-a")).same_token(a));
  CHECK(run(io, broker.token_for("p", "scope-b")).same_token(b));
  CHECK(minter->calls == 2);
  broker.register_material("p", bearer("rotated"));
  CHECK(text(run(io, broker.token_for("p", "scope-a"))) == "rotated");
  CHECK(text(run(io, broker.token_for("p", "scope-b"))) == "rotated");
}

TEST_CASE("Mint failures are not cached or replayed to later callers", "[broker][failure]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  auto minter = scripted(broker, "after-failure");
  minter->failures[1] = credential_errc::permanent_upstream;
  try {
    run(io, broker.token_for("p", "scope"));
    FAIL("no error");
  } catch (const awaken::Error& e) {
    CHECK(e.code() == credential_errc::permanent_upstream);
    CHECK(e.details().http_status == 403);
    CHECK(e.details().server_message == "invalid_grant");
  }
  CHECK(minter->calls == 1);  // permanent: not retried
  CHECK(text(run(io, broker.token_for("p", "scope"))) == "after-failure-2");
  CHECK(minter->calls == 2);
  CHECK(text(run(io, broker.token_for("p", "scope"))) == "after-failure-2");
  CHECK(minter->calls == 2);
  CHECK(broker.stats().failed_flights == 1);
}

TEST_CASE("Concurrent rotation is isolated by provider and scope", "[broker][generation]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  auto rotating = std::make_shared<ScriptedMinter>("old-rotating");
  rotating->gate(io.get_executor());
  broker.register_material("rotating", CredentialMaterial::from_minter(rotating));
  broker.register_material("stable", bearer("stable-token"));
  std::future<IssuedToken> waiting = asio::co_spawn(io, broker.token_for("rotating", "scope-a"), asio::use_future);
  run(io, rotating->started->wait());
  // Unrelated providers stay readable while another provider is mid-mint.
  CHECK(text(run(io, broker.token_for("stable", "scope-a"))) == "stable-token");
  broker.register_material("rotating", bearer("new-rotating"));
  rotating->release->open();
  io.restart();
  io.run_for(1s);
  REQUIRE(waiting.wait_for(0s) == std::future_status::ready);
  CHECK(text(waiting.get()) == "new-rotating");
  CHECK(text(run(io, broker.token_for("rotating", "scope-b"))) == "new-rotating");
  CHECK(text(run(io, broker.token_for("stable", "scope-b"))) == "stable-token");
}

TEST_CASE("Single flight collapses concurrent callers into one mint", "[broker][flight]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  auto minter = scripted(broker, "one");
  minter->delay = 20ms;
  std::vector<IssuedToken> got;
  for (int i = 0; i < 50; ++i)
    asio::co_spawn(io, broker.token_for("p", "s"), [&](std::exception_ptr e, IssuedToken t) {
      REQUIRE_FALSE(e);
      got.push_back(std::move(t));
    });
  io.run_for(5s);
  REQUIRE(got.size() == 50);
  CHECK(minter->calls == 1);
  for (const auto& t : got) CHECK(t.same_token(got.front()));
}

TEST_CASE("Ten thousand callers on a cold key make exactly one mint", "[broker][flight]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  auto minter = scripted(broker, "cold");
  minter->delay = 20ms;
  std::size_t ok = 0, same = 0;
  IssuedToken first;
  for (int i = 0; i < 10'000; ++i)
    asio::co_spawn(io, broker.token_for("p", "s"), [&](std::exception_ptr e, IssuedToken t) {
      if (e) return;
      ++ok;
      if (!first) first = t;
      same += t.same_token(first) ? 1 : 0;
    });
  io.run_for(20s);
  CHECK(ok == 10'000);
  CHECK(same == 10'000);
  CHECK(minter->calls == 1);
  CHECK(broker.stats().flights == 0);
}

TEST_CASE("A permanent failure reaches every waiter of its flight from one mint", "[broker][flight][failure]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  auto minter = scripted(broker, "never");
  minter->delay = 20ms;
  minter->fail_always = credential_errc::permanent_upstream;
  int permanent = 0;
  for (int i = 0; i < 100; ++i)
    asio::co_spawn(io, broker.token_for("p", "s"), [&](std::exception_ptr e, IssuedToken) {
      if (code_of(e) == credential_errc::permanent_upstream) ++permanent;
    });
  io.run_for(10s);
  CHECK(permanent == 100);
  CHECK(minter->calls == 1);
  // The error is not cached: the next call mints again.
  CHECK(error_of(io, broker.token_for("p", "s")) == credential_errc::permanent_upstream);
  CHECK(minter->calls == 2);
}

TEST_CASE("Transient failures are retried within the policy, permanent ones are not", "[broker][retry]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor(), fast_retries()};
  auto flaky = std::make_shared<ScriptedMinter>("flaky");
  flaky->failures[1] = credential_errc::transient_upstream;
  flaky->failures[2] = credential_errc::network;
  broker.register_material("flaky", CredentialMaterial::from_minter(flaky));
  CHECK(text(run(io, broker.token_for("flaky", "s"))) == "flaky-3");
  CHECK(flaky->calls == 3);

  auto down = std::make_shared<ScriptedMinter>("down");
  down->fail_always = credential_errc::network;
  broker.register_material("down", CredentialMaterial::from_minter(down));
  CHECK(error_of(io, broker.token_for("down", "s")) == credential_errc::network);
  CHECK(down->calls == 3);  // max_attempts

  for (std::error_code code :
       {std::error_code{credential_errc::invalid_material}, std::error_code{awaken::jose_errc::signing_failed},
        std::error_code{credential_errc::permanent_upstream}}) {
    auto m = std::make_shared<ScriptedMinter>("x");
    m->fail_always = code;
    broker.register_material("perm", CredentialMaterial::from_minter(m));
    CHECK(error_of(io, broker.token_for("perm", "s")) == code);
    CHECK(m->calls == 1);
  }
  CHECK(broker.stats().mint_attempts == 3 + 3 + 3);
}

TEST_CASE("A minter that returns an empty or expired token fails transiently", "[broker][retry]") {
  struct Bad final : awaken::Minter {
    std::string_view kind_label() const noexcept override { return "bad"; }
    asio::awaitable<Token> mint(std::string_view, const MintContext& ctx) const override {
      ++calls;
      co_return Token::expiring_in(RedactedString{calls % 2 ? "" : "x"}, calls % 2 ? 60s : -1s, ctx.clock);
    }
    mutable int calls = 0;
  };
  asio::io_context io;
  AwakenBroker broker{io.get_executor(), fast_retries()};
  auto bad = std::make_shared<Bad>();
  broker.register_material("p", CredentialMaterial::from_minter(bad));
  CHECK(error_of(io, broker.token_for("p", "s")) == credential_errc::transient_upstream);
  CHECK(bad->calls == 3);
}

TEST_CASE("A cancelled waiter leaves and the mint goes on for the others", "[broker][cancel]") {
  Gated g{"kept"};
  auto& [io, broker, minter] = g;

  asio::cancellation_signal cancel_first;
  std::error_code first_error;
  bool first_done = false;
  asio::co_spawn(io, broker.token_for("p", "s"),
                 asio::bind_cancellation_slot(cancel_first.slot(), [&](std::exception_ptr e, IssuedToken) {
                   first_done = true;
                   first_error = code_of(e);
                 }));
  std::vector<IssuedToken> others;
  for (int i = 0; i < 3; ++i)
    asio::co_spawn(io, broker.token_for("p", "s"), [&](std::exception_ptr e, IssuedToken t) {
      if (!e) others.push_back(std::move(t));
    });
  run(io, minter->started->wait());
  cancel_first.emit(asio::cancellation_type::terminal);
  io.restart();
  io.poll();
  CHECK(first_done);  // left while the mint was still blocked
  CHECK(first_error == asio::error::operation_aborted);
  CHECK_FALSE(minter->release->is_open());
  CHECK(broker.stats().flights == 1);
  minter->release->open();
  io.restart();
  io.run_for(1s);
  CHECK(others.size() == 3);
  CHECK(minter->calls == 1);
  CHECK(run(io, broker.token_for("p", "s")).same_token(others.at(0)));
}

TEST_CASE("Inside the soft window the cached token is handed out and one refresh runs", "[broker][window]") {
  asio::io_context io;
  awaken::ManualClock clock;
  AwakenBroker broker{io.get_executor(), clocked(clock)};
  auto minter = scripted(broker, "t", 3600s);  // soft window: min(1200 s, 300 s)
  minter->release = std::make_shared<Gate>(io.get_executor());
  minter->release->open();
  const auto first = run(io, broker.token_for("p", "s"));

  clock.advance(3600s - 301s);  // just before the soft window
  CHECK(run(io, broker.token_for("p", "s")).same_token(first));
  io.restart();
  io.poll();
  CHECK(minter->calls == 1);

  clock.advance(2s);                                            // 299 s left: soft, far from hard
  minter->release = std::make_shared<Gate>(io.get_executor());  // hold the refresh
  for (int i = 0; i < 20; ++i) {
    CHECK(run(io, broker.token_for("p", "s")).same_token(first));  // at once, no waiting
    auto again = broker.try_cached("p", "s");
    REQUIRE(again);
    CHECK(again->same_token(first));
  }
  CHECK(broker.stats().background_refreshes == 1);
  CHECK(broker.stats().flights == 1);
  minter->release->open();
  io.restart();
  io.run_for(1s);
  CHECK(minter->calls == 2);
  const auto refreshed = run(io, broker.token_for("p", "s"));
  CHECK(text(refreshed) == "t-2");
  CHECK_FALSE(refreshed.same_token(first));
  CHECK(broker.stats().flights == 0);
}

TEST_CASE("A failed background refresh keeps the token until the hard window", "[broker][window]") {
  asio::io_context io;
  awaken::ManualClock clock;
  BrokerOptions options = fast_retries();
  options.timing.clock = &clock;
  options.retry.max_attempts = 1;
  AwakenBroker broker{io.get_executor(), options};
  auto minter = scripted(broker, "t", 3600s);
  minter->failures[2] = credential_errc::transient_upstream;
  minter->failures[3] = credential_errc::transient_upstream;
  const auto first = run(io, broker.token_for("p", "s"));

  clock.advance(3600s - 200s);  // soft
  CHECK(run(io, broker.token_for("p", "s")).same_token(first));
  io.restart();
  io.poll();
  CHECK(minter->calls == 2);  // the refresh ran and failed
  CHECK(broker.stats().failed_flights == 1);
  CHECK(run(io, broker.token_for("p", "s")).same_token(first));  // still handed out
  io.restart();
  io.poll();
  CHECK(minter->calls == 2);  // no new refresh before refresh_retry_interval

  clock.advance(options.refresh_retry_interval);
  CHECK(run(io, broker.token_for("p", "s")).same_token(first));
  io.restart();
  io.poll();
  CHECK(minter->calls == 3);  // the second refresh, failing too

  clock.advance(200s - 60s - options.refresh_retry_interval);  // exactly the hard window
  CHECK_FALSE(broker.try_cached("p", "s"));
  const auto next = run(io, broker.token_for("p", "s"));  // waits for a mint
  CHECK(text(next) == "t-4");
  CHECK(minter->calls == 4);
}

TEST_CASE("Inside the hard window a token is never handed out", "[broker][window]") {
  asio::io_context io;
  awaken::ManualClock clock;
  AwakenBroker broker{io.get_executor(), clocked(clock)};
  auto minter = scripted(broker, "t", 3600s);
  run(io, broker.token_for("p", "s"));
  clock.advance(3600s - 59s);
  CHECK_FALSE(broker.try_cached("p", "s"));
  CHECK(text(run(io, broker.token_for("p", "s"))) == "t-2");

  // A token shorter-lived than the hard window goes to the flight's callers, never to later ones.
  auto brief = std::make_shared<ScriptedMinter>("brief", 30s);
  broker.register_material("b", CredentialMaterial::from_minter(brief));
  CHECK(text(run(io, broker.token_for("b", "s"))) == "brief-1");
  CHECK_FALSE(broker.try_cached("b", "s"));
  CHECK(text(run(io, broker.token_for("b", "s"))) == "brief-2");
}

TEST_CASE("Invalidate drops only the token that was rejected", "[broker][invalidate]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  auto minter = scripted(broker, "t");
  const auto t1 = run(io, broker.token_for("p", "s"));
  CHECK_FALSE(broker.invalidate("p", "other-scope", t1));
  CHECK_FALSE(broker.invalidate("p", "s", IssuedToken{}));
  CHECK(broker.invalidate("p", "s", t1));
  CHECK_FALSE(broker.try_cached("p", "s"));
  const auto t2 = run(io, broker.token_for("p", "s"));
  CHECK(minter->calls == 2);
  CHECK_FALSE(broker.invalidate("p", "s", t1));  // stale: the fresh token stays
  CHECK(run(io, broker.token_for("p", "s")).same_token(t2));

  int dropped = 0;
  for (int i = 0; i < 100; ++i) dropped += broker.invalidate("p", "s", t2) ? 1 : 0;  // a hundred 401s
  CHECK(dropped == 1);
  run(io, broker.token_for("p", "s"));
  CHECK(minter->calls == 3);
}

TEST_CASE("try_cached never mints and token_for serves every completion token", "[broker][async]") {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  auto minter = scripted(broker, "a");
  CHECK_FALSE(broker.try_cached("p", "s"));
  io.poll();
  CHECK(minter->calls == 0);

  // Callback: runs on the io_context, never inside the call.
  bool called = false;
  std::string got;
  broker.token_for("p", std::string{"s"}, [&](std::error_code e, IssuedToken t) {
    called = true;
    if (!e) got = text(t);
  });
  CHECK_FALSE(called);
  io.restart();
  io.run_for(2s);
  CHECK(called);
  CHECK(got == "a-1");

  // use_future, with the io_context on another thread.
  io.restart();
  auto guard = asio::make_work_guard(io);
  std::thread runner{[&] { io.run_for(20s); }};
  auto fut = broker.token_for("p", "s", asio::use_future);
  auto missing = broker.token_for("nobody", "s", asio::use_future);
  const auto via_future = fut.get();
  CHECK(text(via_future) == "a-1");
  CHECK_THROWS_AS(missing.get(), std::system_error);
  guard.reset();
  runner.join();

  // use_awaitable.
  auto via_awaitable = run(io, [&]() -> asio::awaitable<IssuedToken> {
    co_return co_await broker.token_for("p", "s", awaken::use_awaitable);
  }());
  CHECK(via_awaitable.same_token(via_future));
  CHECK(minter->calls == 1);
}

TEST_CASE("Destroying the broker completes its waiters and cancels its mints", "[broker][lifetime]") {
  asio::io_context io;
  auto minter = std::make_shared<ScriptedMinter>("never");
  minter->gate(io.get_executor());
  std::error_code code;
  int completed = 0;
  {
    AwakenBroker broker{io.get_executor()};
    broker.register_material("p", CredentialMaterial::from_minter(minter));
    for (int i = 0; i < 3; ++i)
      asio::co_spawn(io, broker.token_for("p", "s"), [&](std::exception_ptr e, IssuedToken) {
        ++completed;
        code = code_of(e);
      });
    run(io, minter->started->wait());
  }
  io.restart();
  io.run_for(2s);
  CHECK(completed == 3);
  CHECK(code == awaken::errc::shut_down);
  CHECK_FALSE(minter->release->is_open());
  CHECK(io.stopped());  // nothing left running: the mint was cancelled
}

TEST_CASE("Concurrent register and deregister and token_for on many threads stay consistent", "[broker][stress]") {
  // Run under ThreadSanitizer by scripts/tsan.
  class Hopping final : public awaken::Minter {
   public:
    explicit Hopping(std::string prefix) : prefix_(std::move(prefix)) {}
    std::string_view kind_label() const noexcept override { return "test_hopping"; }
    asio::awaitable<Token> mint(std::string_view scope, const MintContext& ctx) const override {
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);  // maybe another thread
      co_return Token::expiring_in(RedactedString{prefix_ + "|" + std::string{scope}}, 3600s, ctx.clock);
    }

   private:
    std::string prefix_;
  };

  constexpr int providers = 3, scopes = 3, workers = 8, rounds = 1500;
  asio::io_context io{4};
  AwakenBroker broker{io.get_executor()};
  for (int p = 0; p < providers; ++p)
    broker.register_material("p" + std::to_string(p), CredentialMaterial::from_minter(
                                                          std::make_shared<Hopping>("p" + std::to_string(p) + "-v0")));
  std::atomic<int> wrong{0}, unexpected_errors{0}, tokens{0}, not_configured{0}, finished{0};
  std::atomic<int> version{1};
  auto check = [&](const IssuedToken& t, int p, int s) {
    const std::string got = text(t);
    const std::string want_prefix = "p" + std::to_string(p) + "-v";
    const std::string want_suffix = "|s" + std::to_string(s);
    if (got.rfind(want_prefix, 0) != 0 || got.size() < want_suffix.size() ||
        got.compare(got.size() - want_suffix.size(), want_suffix.size(), want_suffix) != 0)
      ++wrong;
  };
  for (int w = 0; w < workers; ++w) {
    asio::co_spawn(
        io,
        [&, w]() -> asio::awaitable<void> {
          std::mt19937 rng(static_cast<unsigned>(w));
          for (int i = 0; i < rounds; ++i) {
            const int p = static_cast<int>(rng() % providers), s = static_cast<int>(rng() % scopes);
            const std::string provider = "p" + std::to_string(p), scope = "s" + std::to_string(s);
            const unsigned op = rng() % 100;
            try {
              if (op < 60) {
                const auto t = co_await broker.token_for(provider, scope);
                check(t, p, s);
                ++tokens;
                if (op < 5) broker.invalidate(provider, scope, t);
              } else if (op < 75) {
                if (auto t = broker.try_cached(provider, scope)) check(*t, p, s);
              } else if (op < 90) {
                broker.register_material(provider, CredentialMaterial::from_minter(std::make_shared<Hopping>(
                                                       provider + "-v" + std::to_string(version++))));
              } else if (op < 95) {
                broker.deregister(provider);
              } else {
                const auto t = co_await broker.token_for(provider, scope, awaken::use_awaitable);
                check(t, p, s);
              }
            } catch (const awaken::Error& e) {
              if (e.code() == credential_errc::not_configured)
                ++not_configured;
              else
                ++unexpected_errors;
            } catch (...) {
              ++unexpected_errors;
            }
          }
          ++finished;
        },
        asio::detached);
  }
  std::atomic<bool> stop{false};
  std::thread reader{[&] {  // a thread outside the io_context, on the hot path
    while (!stop.load())
      for (int p = 0; p < providers; ++p)
        if (auto t = broker.try_cached("p" + std::to_string(p), "s0")) check(*t, p, 0);
  }};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([&] { io.run_for(60s); });
  for (auto& t : threads) t.join();
  stop = true;
  reader.join();
  REQUIRE(finished == workers);
  CHECK(wrong == 0);
  CHECK(unexpected_errors == 0);
  CHECK(tokens > 0);
  CHECK(broker.stats().flights == 0);
  // After the storm, the last registration wins everywhere.
  for (int p = 0; p < providers; ++p) {
    const std::string provider = "p" + std::to_string(p);
    broker.register_material(provider, bearer("final"));
    for (int s = 0; s < scopes; ++s)
      CHECK(text(run(io, broker.token_for(provider, "s" + std::to_string(s)))) == "final");
  }
}

TEST_CASE("A token dropped before its waiter resumes is not handed out", "[broker][generation]") {
  // The broker runs on io1, the callers on io2: between the flight's end and the callers'
  // resumption the test rejects the token; the callers must get the next one.
  asio::io_context io1, io2;
  AwakenBroker broker{io1.get_executor()};
  auto minter = scripted(broker, "t");

  std::future<IssuedToken> coroutine_caller = asio::co_spawn(io2, broker.token_for("p", "s"), asio::use_future);
  std::string callback_result;
  broker.token_for("p", "s", asio::bind_executor(io2, [&](std::error_code e, IssuedToken t) {
                     callback_result = e ? "error" : text(t);
                   }));
  io2.poll();       // the coroutine joins the flight
  io1.run_for(5s);  // the flight mints t-1 and hands it to io2's callers, who have not run yet
  const auto first = broker.try_cached("p", "s");
  REQUIRE(first);
  CHECK(text(*first) == "t-1");
  CHECK(broker.invalidate("p", "s", *first));
  io2.restart();
  io2.poll();  // both see the token was dropped and ask again: one new flight
  CHECK(coroutine_caller.wait_for(0s) == std::future_status::timeout);
  CHECK(callback_result.empty());
  io1.restart();
  io1.run_for(5s);
  io2.restart();
  io2.poll();
  REQUIRE(coroutine_caller.wait_for(0s) == std::future_status::ready);
  CHECK(text(coroutine_caller.get()) == "t-2");
  CHECK(callback_result == "t-2");
  CHECK(minter->calls == 2);
}

TEST_CASE("Waiters on different executors each resume on their own", "[broker][flight]") {
  asio::io_context io1, io2;
  AwakenBroker broker{io1.get_executor()};
  auto minter = scripted(broker, "t");
  minter->delay = 5ms;
  std::vector<std::string> on_io1, on_io2;
  for (int i = 0; i < 3; ++i) {
    broker.token_for("p", "s", [&](std::error_code, IssuedToken t) { on_io1.push_back(text(t)); });
    broker.token_for("p", "s",
                     asio::bind_executor(io2, [&](std::error_code, IssuedToken t) { on_io2.push_back(text(t)); }));
  }
  io1.run_for(5s);
  CHECK(on_io1.size() == 3);
  CHECK(on_io2.empty());  // their handlers wait for io2
  io2.poll();
  CHECK(on_io2 == std::vector<std::string>(3, "t-1"));
  CHECK(minter->calls == 1);
}

TEST_CASE("Expired tokens leave the cache when a new one is stored", "[broker][cache]") {
  asio::io_context io;
  awaken::ManualClock clock;
  AwakenBroker broker{io.get_executor(), clocked(clock)};
  auto minter = scripted(broker, "t", 600s);
  for (int i = 0; i < 5; ++i) run(io, broker.token_for("p", "audience-" + std::to_string(i)));
  CHECK(broker.stats().cached_tokens == 5);
  clock.advance(601s);
  run(io, broker.token_for("p", "audience-new"));
  CHECK(broker.stats().cached_tokens == 1);
}

TEST_CASE("token_for honours a bound cancellation slot", "[broker][cancel][async]") {
  Gated g{"kept"};
  auto& [io, broker, minter] = g;
  asio::cancellation_signal cancel;
  std::error_code cancelled;
  broker.token_for("p", "s", asio::bind_cancellation_slot(cancel.slot(), [&](std::error_code e, IssuedToken t) {
                     CHECK_FALSE(t);
                     cancelled = e;
                   }));
  std::string kept;
  broker.token_for("p", "s", [&](std::error_code e, IssuedToken t) { kept = e ? "error" : text(t); });
  run(io, minter->started->wait());
  cancel.emit(asio::cancellation_type::partial);  // any type reaches a bound slot
  io.restart();
  io.poll();
  CHECK(cancelled == asio::error::operation_aborted);
  CHECK(kept.empty());
  minter->release->open();
  io.restart();
  io.run_for(1s);
  CHECK(kept == "kept-1");
  CHECK(minter->calls == 1);
}

TEST_CASE("A token shorter than the hard window plus a little is minted anew each time it enters it", "[broker]") {
  asio::io_context io;
  awaken::ManualClock clock;
  BrokerOptions options;
  options.timing.clock = &clock;
  auto minter = std::make_shared<ScriptedMinter>("short", 70s);  // usable for 10 s only
  AwakenBroker broker{io.get_executor(), options};
  broker.register_material("p", CredentialMaterial::from_minter(minter));
  IssuedToken token = run(io, broker.token_for("p", "s"));
  for (int i = 0; i < 3; ++i) {
    clock.advance(5s);
    CHECK(run(io, broker.token_for("p", "s")).same_token(token));
    clock.advance(6s);  // 59 s left: inside the hard window
    IssuedToken next = run(io, broker.token_for("p", "s"), 5s);
    CHECK_FALSE(next.same_token(token));
    token = next;
  }
  CHECK(minter->calls == 4);
}
