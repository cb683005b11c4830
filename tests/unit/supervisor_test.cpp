// The stream supervisor's rules, driven with events and no io_context: what gives up and when,
// the reconnect waits, their reset, and the metrics each event counts.
#include <catch2/catch.hpp>

#include <chrono>
#include <vector>

#include <awaken/clock.hpp>
#include <awaken/error.hpp>

#include "spiffe/source/stream_supervisor.hpp"
#include "support/names.hpp"

namespace {

using awaken::spiffe::MetricsErrorKind;
using awaken::spiffe::detail::StreamAction;
using awaken::spiffe::detail::StreamEvent;
using awaken::spiffe::detail::SupervisorCore;
using Act = StreamAction::Kind;
using Ev = StreamEvent::Kind;

struct Supervisor {
  awaken::FixedJitter jitter{0.0};  // no jitter: waits are exact
  SupervisorCore core{SupervisorCore::reconnect_policy(200ms, 10s), jitter};

  Supervisor() {
    REQUIRE(core.start().kind == Act::connect);
    REQUIRE(core.connected().kind == Act::read_next);
  }
  StreamAction update(bool changed = true) { return core.on({Ev::update_applied, {}, changed}); }
  StreamAction failed(std::error_code ec, bool no_identity = false) {
    return core.on({Ev::stream_failed, ec, false, no_identity});
  }
};

std::vector<MetricsErrorKind> metrics(const StreamAction& a) {
  return {a.metrics.begin(), a.metrics.begin() + static_cast<std::ptrdiff_t>(a.count)};
}

}  // namespace

TEST_CASE("Before the first sync, InvalidArgument, Unimplemented and a bad endpoint give up", "[unit][supervisor]") {
  const auto code = GENERATE(awaken::make_error_code(grpc_status::invalid_argument),
                             awaken::make_error_code(grpc_status::unimplemented));
  Supervisor s;
  const auto a = s.failed(code);
  CHECK(a.kind == Act::give_up);
  CHECK(a.error == code);
  CHECK(metrics(a) == std::vector{MetricsErrorKind::stream_connect, MetricsErrorKind::initial_sync_failed});
  CHECK_FALSE(a.reconnect);

  const auto endpoint = GENERATE(awaken::make_error_code(spiffe_errc::invalid_endpoint),
                                 awaken::make_error_code(spiffe_errc::endpoint_not_configured));
  Supervisor t;
  const auto c = t.core.on({Ev::connect_failed, endpoint});
  CHECK(c.kind == Act::give_up);
  CHECK(metrics(c) == std::vector{MetricsErrorKind::client_creation, MetricsErrorKind::initial_sync_failed});
}

TEST_CASE("After the first sync nothing gives up: the same codes reconnect", "[unit][supervisor]") {
  const auto code =
      GENERATE(awaken::make_error_code(grpc_status::invalid_argument),
               awaken::make_error_code(grpc_status::unimplemented), awaken::make_error_code(grpc_status::unavailable));
  Supervisor s;
  REQUIRE(s.update().kind == Act::publish);
  REQUIRE(s.core.synced());
  const auto a = s.failed(code);
  CHECK(a.kind == Act::wait);
  CHECK(a.delay == 200ms);
  CHECK(a.reconnect);
  CHECK(metrics(a) == std::vector{MetricsErrorKind::stream_error});
}

TEST_CASE("An optional profile the agent does not offer gives up, before the first sync and after it",
          "[unit][supervisor]") {
  const auto not_offered = awaken::make_error_code(spiffe_errc::not_offered);
  Supervisor before;
  const auto a = before.failed(not_offered);
  CHECK(a.kind == Act::give_up);
  CHECK(a.error == not_offered);
  CHECK(metrics(a) == std::vector{MetricsErrorKind::stream_connect, MetricsErrorKind::initial_sync_failed});

  Supervisor after;
  REQUIRE(after.update().kind == Act::publish);
  const auto b = after.failed(not_offered);
  CHECK(b.kind == Act::give_up);
  CHECK_FALSE(b.reconnect);
  CHECK(metrics(b) == std::vector{MetricsErrorKind::stream_error});
}

TEST_CASE("Transient failures before the sync are retried, with their metrics", "[unit][supervisor]") {
  Supervisor s;
  const auto a = s.failed(awaken::make_error_code(grpc_status::unavailable));
  CHECK(a.kind == Act::wait);
  CHECK(metrics(a) == std::vector{MetricsErrorKind::stream_connect, MetricsErrorKind::initial_sync_failed});
  const auto b = s.core.on({Ev::connect_failed, awaken::make_error_code(grpc_status::unavailable)});
  CHECK(b.kind == Act::wait);
  CHECK(metrics(b) == std::vector{MetricsErrorKind::client_creation, MetricsErrorKind::initial_sync_failed});
}

TEST_CASE("Reconnect waits double up to the cap and reset after a valid update", "[unit][supervisor]") {
  Supervisor s;
  std::vector<std::chrono::milliseconds> waits;
  for (int i = 0; i < 8; ++i) {
    const auto a = s.failed(awaken::make_error_code(grpc_status::unavailable));
    REQUIRE(a.kind == Act::wait);
    waits.push_back(a.delay);
    s.core.connected();
  }
  CHECK(waits == std::vector<std::chrono::milliseconds>{200ms, 400ms, 800ms, 1600ms, 3200ms, 6400ms, 10s, 10s});
  CHECK(s.core.failures() == 8);
  s.update();
  CHECK(s.core.failures() == 0);
  CHECK(s.failed(awaken::make_error_code(grpc_status::unavailable)).delay == 200ms);
}

TEST_CASE("Jitter only shortens a wait, by at most a tenth", "[unit][supervisor]") {
  awaken::FixedJitter most{1.0};
  SupervisorCore core{SupervisorCore::reconnect_policy(1000ms, 10s), most};
  core.connected();
  CHECK(core.on({Ev::stream_ended}).delay == 900ms);
}

TEST_CASE("No identity issued: at least 1 s, growing to 10 s at most", "[unit][supervisor]") {
  awaken::FixedJitter none{0.0};
  SupervisorCore core{SupervisorCore::reconnect_policy(200ms, 60s), none};
  core.connected();
  std::vector<std::chrono::milliseconds> waits;
  for (int i = 0; i < 7; ++i) {
    const auto a = core.on({Ev::stream_failed, awaken::make_error_code(grpc_status::permission_denied), false, true});
    REQUIRE(a.kind == Act::wait);
    waits.push_back(a.delay);
  }
  CHECK(waits == std::vector<std::chrono::milliseconds>{1s, 1s, 1s, 1600ms, 3200ms, 6400ms, 10s});
  const auto a = core.on({Ev::stream_failed, awaken::make_error_code(grpc_status::permission_denied), false, true});
  CHECK(metrics(a) == std::vector{MetricsErrorKind::no_identity_issued, MetricsErrorKind::initial_sync_failed});
}

TEST_CASE("No identity after other failures keeps the wait reached, floored at 1 s", "[unit][supervisor]") {
  Supervisor s;
  for (int i = 0; i < 3; ++i) s.failed(awaken::make_error_code(grpc_status::unavailable));  // 200, 400, 800 ms
  CHECK(s.failed(awaken::make_error_code(grpc_status::permission_denied), true).delay == 1600ms);
}

TEST_CASE("A clean end of stream is a reconnect, not success", "[unit][supervisor]") {
  Supervisor s;
  s.update();
  const auto a = s.core.on({Ev::stream_ended});
  CHECK(a.kind == Act::wait);
  CHECK(a.reconnect);
  CHECK(metrics(a) == std::vector{MetricsErrorKind::stream_ended});
}

TEST_CASE("A rejected message keeps the stream; its limit is counted", "[unit][supervisor]") {
  struct Row {
    spiffe_errc code;
    std::vector<MetricsErrorKind> counted;
  };
  const auto row = GENERATE(Row{spiffe_errc::resource_limit_exceeded,
                                {MetricsErrorKind::limit_max_bundles, MetricsErrorKind::update_rejected}},
                            Row{spiffe_errc::bundle_too_large,
                                {MetricsErrorKind::limit_max_bundle_jwks_bytes, MetricsErrorKind::update_rejected}},
                            Row{spiffe_errc::malformed_message, {MetricsErrorKind::update_rejected}});
  Supervisor s;
  s.update();
  const auto a = s.core.on({Ev::message_rejected, awaken::make_error_code(row.code)});
  CHECK(a.kind == Act::read_next);
  CHECK(metrics(a) == row.counted);
  // A rejected first message still means the stream had spoken: a failure is a stream error.
  Supervisor t;
  auto first = t.core.on({Ev::message_rejected, awaken::make_error_code(row.code)});
  CHECK(metrics(first).back() == MetricsErrorKind::initial_sync_failed);
  CHECK(metrics(t.failed(awaken::make_error_code(grpc_status::unavailable))).front() == MetricsErrorKind::stream_error);
}

TEST_CASE("The first update is published; later ones only when they changed", "[unit][supervisor]") {
  Supervisor s;
  CHECK(s.update(false).kind == Act::publish);  // the initial sync, whatever it holds
  CHECK(s.update(false).kind == Act::read_next);
  CHECK(s.update(true).kind == Act::publish);
  // After a reconnect, the same content publishes nothing.
  s.core.on({Ev::stream_ended});
  s.core.connected();
  CHECK(s.update(false).kind == Act::read_next);
}

TEST_CASE("A source still waiting for its first update warns at 3 s, then at doubling intervals up to a minute",
          "[supervisor]") {
  using awaken::spiffe::detail::first_sync_warning;
  using awaken::spiffe::detail::next_sync_warning;
  std::vector<long> at;  // seconds since the start at which each warning comes
  auto wait = first_sync_warning;
  long elapsed_ms = 0;
  for (int i = 0; i < 8; ++i) {
    elapsed_ms += wait.count();
    at.push_back(elapsed_ms / 1000);
    wait = next_sync_warning(wait);
  }
  CHECK(at == std::vector<long>{3, 9, 21, 45, 93, 153, 213, 273});
}
