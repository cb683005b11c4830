// The broker's rules, driven without an io_context, sockets or threads: windows, lookups,
// flights, mint outcomes, generations and shutdown, on a manual clock.
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <asio/cancellation_signal.hpp>
#include <asio/error.hpp>

#include <awaken/clock.hpp>
#include <awaken/error.hpp>

#include "credentials/broker/broker_core.hpp"
#include "support/names.hpp"
#include "unit/recording_completion.hpp"

namespace {

using awaken::Token;
using namespace awaken::detail;
using Kind = BrokerCore::Lookup::Kind;
using End = BrokerCore::MintEnd::Kind;

CredentialMaterial bearer(const char* text) { return CredentialMaterial::static_bearer(RedactedString{text}); }

// A broker core on a manual clock, with flights that do nothing until the test says.
struct Core {
  awaken::ManualClock clock;
  BrokerCore core{TokenWindows{}, 5s, [](awaken::detail::CacheKey key, bool background) {
                    return std::make_shared<Flight>(std::move(key), background);
                  }};

  awaken::detail::SteadyTime now() const { return clock.steady_now(); }
  Token token(const char* text, std::chrono::seconds lifetime) const {
    return Token::expiring_in(RedactedString{text}, lifetime, clock);
  }
  // Starts a flight for (p, s) and ends it with `text`, valid for `lifetime`.
  std::shared_ptr<awaken::detail::Entry> mint(KeyView key, const char* text, std::chrono::seconds lifetime) {
    auto found = core.lookup(key, now());
    REQUIRE(found.kind == Kind::start);
    auto plan = core.begin_mint(found.flight);
    REQUIRE(plan.material);
    auto end = core.finish_mint(found.flight, plan.generation, token(text, lifetime), {}, {}, now());
    REQUIRE(end.kind == End::published);
    return end.outcome.entry;
  }
};

std::string text(const std::shared_ptr<awaken::detail::Entry>& e) { return std::string{e->token.bearer().reveal()}; }

}  // namespace

TEST_CASE("Token windows: hard before soft, the soft one scaled by lifetime and capped", "[unit][broker]") {
  const TokenWindows w{60s, 1.0 / 3.0, 300s};
  const awaken::detail::SteadyTime t0{};
  struct Row {
    std::chrono::seconds lifetime, hard_before_expiry, soft_before_expiry;
  };
  const auto row = GENERATE(Row{3600s, 60s, 300s},  // a third is 1200 s: capped at 300 s
                            Row{600s, 60s, 200s},   // a third of the lifetime
                            Row{90s, 60s, 30s},     // the soft window is inside the hard one: no refresh
                            Row{30s, 60s, 10s});    // already inside the hard window at minting
  const Deadlines d = w.deadlines(t0, t0 + row.lifetime);
  CHECK(d.hard == t0 + row.lifetime - row.hard_before_expiry);
  CHECK(d.soft == t0 + row.lifetime - row.soft_before_expiry);
}

TEST_CASE("Token windows: a fraction out of range is clamped", "[unit][broker]") {
  const awaken::detail::SteadyTime t0{};
  CHECK(TokenWindows{60s, -1.0, 300s}.deadlines(t0, t0 + 600s).soft == t0 + 600s);  // no soft window
  CHECK(TokenWindows{60s, 7.0, 10'000s}.deadlines(t0, t0 + 600s).soft == t0);       // the whole life
}

TEST_CASE("Hand-out verdicts at each side of the deadlines", "[unit][broker]") {
  const awaken::detail::SteadyTime t0{};
  const Deadlines d{t0 + 100s, t0 + 50s};
  CHECK(hand_out_at(d, t0) == HandOut::give);
  CHECK(hand_out_at(d, t0 + 49s) == HandOut::give);
  CHECK(hand_out_at(d, t0 + 50s) == HandOut::refresh);
  CHECK(hand_out_at(d, t0 + 99s) == HandOut::refresh);
  CHECK(hand_out_at(d, t0 + 100s) == HandOut::refuse);
}

TEST_CASE("Lookups: fail without material, start, join, then hit", "[unit][broker]") {
  Core c;
  const KeyView key{"p", "s"};
  auto none = c.core.lookup(key, c.now());
  CHECK(none.kind == Kind::fail);
  CHECK(none.outcome.error == credential_errc::not_configured);
  CHECK(none.outcome.diagnostics->context.find("'p'") != std::string::npos);

  c.core.set_material("p", bearer("x"));
  auto first = c.core.lookup(key, c.now());
  REQUIRE(first.kind == Kind::start);
  CHECK_FALSE(first.flight->background);
  auto second = c.core.lookup(key, c.now());
  CHECK(second.kind == Kind::join);
  CHECK(second.flight == first.flight);
  CHECK(c.core.stats().flights == 1);

  Recorder r1, r2;
  first.flight->join(recording(r1));
  second.flight->join(recording(r2));
  auto plan = c.core.begin_mint(first.flight);
  auto end = c.core.finish_mint(first.flight, plan.generation, c.token("t1", 3600s), {}, {}, c.now());
  REQUIRE(end.kind == End::published);
  CHECK(end.waiters.size() == 2);
  CHECK(c.core.stats().flights == 0);
  CHECK(c.core.stats().cached_tokens == 1);

  auto hit = c.core.lookup(key, c.now());
  REQUIRE(hit.kind == Kind::hit);
  CHECK(text(hit.entry) == "t1");
  CHECK_FALSE(hit.flight);  // not in the soft window yet
  CHECK(c.core.lookup(KeyView{"p", "other scope"}, c.now()).kind == Kind::start);
}

TEST_CASE("The soft window starts one background refresh; the hard window stops hand-outs", "[unit][broker]") {
  Core c;
  const KeyView key{"p", "s"};
  c.core.set_material("p", bearer("x"));
  c.mint(key, "t1", 3600s);  // soft window: the last 300 s; hard: the last 60 s

  c.clock.advance(3600s - 299s);
  auto soft = c.core.lookup(key, c.now());
  REQUIRE(soft.kind == Kind::hit);
  REQUIRE(soft.flight);
  CHECK(soft.flight->background);
  auto again = c.core.lookup(key, c.now());
  CHECK(again.kind == Kind::hit);
  CHECK_FALSE(again.flight);  // one refresh at a time
  CHECK(c.core.stats().background_refreshes == 1);

  // The refresh fails: the token is still handed out, and another refresh waits 5 s.
  auto plan = c.core.begin_mint(soft.flight);
  auto failed = c.core.finish_mint(soft.flight, plan.generation, std::nullopt, credential_errc::transient_upstream,
                                   awaken::Diagnostics{"refresh", {503, "busy"}}, c.now());
  CHECK(failed.kind == End::failed);
  CHECK(failed.outcome.diagnostics->details.http_status == 503);
  CHECK(c.core.stats().failed_flights == 1);
  auto soon = c.core.lookup(key, c.now() + 4s);
  CHECK(soon.kind == Kind::hit);
  CHECK_FALSE(soon.flight);
  c.clock.advance(5s);
  auto later = c.core.lookup(key, c.now());
  CHECK(later.kind == Kind::hit);
  CHECK(later.flight);

  c.clock.advance(300s);  // into the hard window: no hand-out, callers join the refresh
  auto hard = c.core.lookup(key, c.now());
  CHECK(hard.kind == Kind::join);
  CHECK(hard.flight == later.flight);
}

TEST_CASE("A token minted inside the hard window goes to its flight only", "[unit][broker]") {
  Core c;
  const KeyView key{"p", "s"};
  c.core.set_material("p", bearer("x"));
  c.mint(key, "short", 30s);
  CHECK(c.core.lookup(key, c.now()).kind == Kind::start);
}

TEST_CASE("A mint that ends under a replaced material is stale and minted again", "[unit][broker]") {
  Core c;
  const KeyView key{"p", "s"};
  c.core.set_material("p", bearer("old"));
  auto found = c.core.lookup(key, c.now());
  auto plan = c.core.begin_mint(found.flight);
  auto previous = c.core.set_material("p", bearer("new"));
  CHECK(previous);
  auto end = c.core.finish_mint(found.flight, plan.generation, c.token("from-old", 3600s), {}, {}, c.now());
  CHECK(end.kind == End::stale);
  CHECK(end.waiters.empty());
  CHECK(c.core.stats().stale_discards == 1);
  CHECK(c.core.stats().cached_tokens == 0);

  auto again = c.core.begin_mint(found.flight);
  REQUIRE(again.material);
  CHECK(again.generation == plan.generation + 1);
  auto done = c.core.finish_mint(found.flight, again.generation, c.token("from-new", 3600s), {}, {}, c.now());
  CHECK(done.kind == End::published);
  CHECK(text(c.core.lookup(key, c.now()).entry) == "from-new");
}

TEST_CASE("Registering material drops the provider's tokens, every scope, and no other's", "[unit][broker]") {
  Core c;
  c.core.set_material("p", bearer("x"));
  c.core.set_material("q", bearer("y"));
  auto a = c.mint({"p", "a"}, "pa", 3600s);
  auto b = c.mint({"p", "b"}, "pb", 3600s);
  c.mint({"q", "a"}, "qa", 3600s);
  c.core.set_material("p", bearer("x2"));
  CHECK(a->dead);
  CHECK(b->dead);
  CHECK(c.core.stats().cached_tokens == 1);
  CHECK(c.core.lookup({"q", "a"}, c.now()).kind == Kind::hit);
}

TEST_CASE("Errors are never cached: the next lookup starts a new flight", "[unit][broker]") {
  Core c;
  const KeyView key{"p", "s"};
  c.core.set_material("p", bearer("x"));
  auto found = c.core.lookup(key, c.now());
  Recorder r;
  found.flight->join(recording(r));
  auto plan = c.core.begin_mint(found.flight);
  auto end = c.core.finish_mint(found.flight, plan.generation, std::nullopt, credential_errc::permanent_upstream,
                                awaken::Diagnostics{"mint", {403, "denied"}}, c.now());
  REQUIRE(end.kind == End::failed);
  REQUIRE(end.waiters.size() == 1);
  CHECK(end.outcome.error == credential_errc::permanent_upstream);
  auto next = c.core.lookup(key, c.now());
  CHECK(next.kind == Kind::start);
  CHECK(next.flight != found.flight);

  // A late joiner of the ended flight gets its outcome at once, diagnostics included.
  Recorder late;
  found.flight->join(recording(late));
  REQUIRE(late.calls == 1);
  CHECK(late.error == credential_errc::permanent_upstream);
  CHECK(late.diagnostics.details.server_message == "denied");
}

TEST_CASE("Deregistering closes the provider's flights and refuses its lookups", "[unit][broker]") {
  Core c;
  c.core.set_material("p", bearer("x"));
  c.core.set_material("q", bearer("y"));
  auto pf = c.core.lookup({"p", "s"}, c.now());
  auto qf = c.core.lookup({"q", "s"}, c.now());
  Recorder r;
  pf.flight->join(recording(r));
  auto removed = c.core.remove_material("p");
  CHECK(removed.previous);
  REQUIRE(removed.closed.size() == 1);
  CHECK(removed.closed[0].flight == pf.flight);
  CHECK(removed.closed[0].waiters.size() == 1);
  CHECK(removed.outcome.error == credential_errc::not_configured);
  CHECK(pf.flight->is_done());
  CHECK_FALSE(qf.flight->is_done());
  CHECK(c.core.lookup({"p", "s"}, c.now()).kind == Kind::fail);
  CHECK_FALSE(c.core.is_registered("p"));

  // The closed flight's mint is abandoned, whatever it brings back.
  auto end = c.core.finish_mint(pf.flight, 1, c.token("late", 3600s), {}, {}, c.now());
  CHECK(end.kind == End::abandoned);
  CHECK(c.core.stats().cached_tokens == 0);
}

TEST_CASE("A flight whose material went before it began answers its waiters", "[unit][broker]") {
  Core c;
  c.core.set_material("p", bearer("x"));
  auto found = c.core.lookup({"p", "s"}, c.now());
  Recorder r;
  found.flight->join(recording(r));
  // A tombstone without closing (the flight's own start raced the removal).
  c.core.set_material("p", bearer("y"));
  auto removed = c.core.remove_material("p");
  auto plan = c.core.begin_mint(found.flight);
  CHECK_FALSE(plan.material);
  CHECK(plan.orphans.empty());  // closed by remove_material already
}

TEST_CASE("invalidate drops only the token that was rejected", "[unit][broker]") {
  Core c;
  const KeyView key{"p", "s"};
  c.core.set_material("p", bearer("x"));
  auto first = c.mint(key, "t1", 3600s);
  const Token other = c.token("t1", 3600s);  // same text, another token
  CHECK_FALSE(c.core.invalidate(key, &other));
  CHECK(c.core.invalidate(key, &first->token));
  CHECK(first->dead);
  CHECK_FALSE(c.core.invalidate(key, &first->token));  // once
  CHECK(c.core.lookup(key, c.now()).kind == Kind::start);
}

TEST_CASE("Publishing sweeps expired tokens of keys no longer asked for", "[unit][broker]") {
  Core c;
  c.core.set_material("p", bearer("x"));
  for (const char* scope : {"a", "b", "c"}) c.mint({"p", scope}, "t", 600s);
  CHECK(c.core.stats().cached_tokens == 3);
  c.clock.advance(601s);
  c.mint({"p", "d"}, "t", 600s);
  CHECK(c.core.stats().cached_tokens == 1);
}

TEST_CASE("Shutting down closes every flight and refuses every lookup", "[unit][broker]") {
  Core c;
  c.core.set_material("p", bearer("x"));
  c.core.set_material("q", bearer("y"));
  auto entry = c.mint({"p", "cached"}, "t", 3600s);
  auto f1 = c.core.lookup({"p", "s"}, c.now());
  auto f2 = c.core.lookup({"q", "s"}, c.now());
  auto removed = c.core.shut_down();
  CHECK(removed.closed.size() == 2);
  CHECK(removed.retired.size() == 2);
  CHECK(removed.outcome.error == awaken::errc::shut_down);
  CHECK(entry->dead);
  auto after = c.core.lookup({"p", "cached"}, c.now());
  CHECK(after.kind == Kind::fail);
  CHECK(after.outcome.error == awaken::errc::shut_down);
  CHECK(c.core.stats().providers == 0);
}

TEST_CASE("A cancelled waiter leaves; the others keep their places", "[unit][broker]") {
  Core c;
  c.core.set_material("p", bearer("x"));
  auto found = c.core.lookup({"p", "s"}, c.now());
  Recorder first, second, third;
  asio::cancellation_signal cancel;
  found.flight->join(recording(first));
  found.flight->join(recording(second, cancel.slot()));
  found.flight->join(recording(third));
  cancel.emit(asio::cancellation_type::partial);
  CHECK(second.calls == 1);
  CHECK(second.error == asio::error::operation_aborted);
  auto plan = c.core.begin_mint(found.flight);
  auto end = c.core.finish_mint(found.flight, plan.generation, c.token("t", 3600s), {}, {}, c.now());
  REQUIRE(end.waiters.size() == 3);
  CHECK(end.waiters[0]);
  CHECK_FALSE(end.waiters[1]);  // the cancelled one
  CHECK(end.waiters[2]);
  cancel.emit(asio::cancellation_type::terminal);  // after the end: nothing more happens
  CHECK(second.calls == 1);
}
