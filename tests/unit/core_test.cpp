// Core: secrets, errors, clocks, backoff, the logger.
#include <map>
#include <sstream>

#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <catch2/catch.hpp>

#include <awaken/backoff.hpp>
#include <awaken/clock.hpp>
#include <awaken/error.hpp>
#include <awaken/log.hpp>
#include <awaken/redacted_string.hpp>

#include "support/names.hpp"
#include "support/run.hpp"

using awaken::BackoffPolicy;

static bool transient(std::error_code ec) { return ec == awaken::condition::transient; }

TEST_CASE("RedactedString never prints its secret", "[core][secret]") {
  const RedactedString secret{"sk-live-1234567890"};
  std::ostringstream os;
  os << secret;
  CHECK(os.str() == "[redacted]");
  CHECK(fmt::format("token={}", secret) == "token=[redacted]");
  CHECK(fmt::format("{:>12}", secret) == "  [redacted]");

  std::ostringstream log_out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log_out);
  spdlog::logger logger{"secret-test", sink};
  logger.warn("minted {}", secret);
  CHECK(log_out.str().find("minted [redacted]") != std::string::npos);
  CHECK(log_out.str().find("sk-live") == std::string::npos);

  CHECK(secret.reveal() == "sk-live-1234567890");
  CHECK(secret.size() == 18);
}

TEST_CASE("RedactedString copies, moves and compares", "[core][secret]") {
  RedactedString a{"alpha-secret"};
  RedactedString b = a;
  CHECK(a == b);
  CHECK(b.reveal() == "alpha-secret");
  CHECK_FALSE(a == RedactedString{"alpha-secreT"});
  CHECK_FALSE(a == RedactedString{"alpha"});
  CHECK(RedactedString{} == RedactedString{""});

  RedactedString c = std::move(a);
  CHECK(c.reveal() == "alpha-secret");
  CHECK(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is specified as empty
  CHECK(a.reveal().empty());

  c = RedactedString{"beta"};
  CHECK(c.reveal() == "beta");
  c = b;
  CHECK(c.reveal() == "alpha-secret");

  std::string source = "from-a-string-long-enough-to-be-on-the-heap";
  RedactedString taken{std::move(source)};
  CHECK(taken.reveal() == "from-a-string-long-enough-to-be-on-the-heap");
  CHECK(source.empty());  // NOLINT(bugprone-use-after-move): the constructor wipes it
}

TEST_CASE("errors carry a code, a context and bounded server text", "[core][error]") {
  awaken::ErrorDetails details;
  details.http_status = 503;
  details.server_message = "busy";
  const awaken::Error e{awaken::http_errc::timeout, "POST https://idp.example", details};
  CHECK(e.code() == awaken::http_errc::timeout);
  CHECK(std::string{e.what()} == "POST https://idp.example: request timed out (HTTP 503: busy)");
  CHECK(e.details().http_status == 503);
  CHECK_THROWS_AS(awaken::throw_error(awaken::jose_errc::weak_key, "key"), std::system_error);

  CHECK(awaken::bounded_excerpt("line1\nline2\x01") == "line1?line2?");
  const std::string long_text(1000, 'a');
  CHECK(awaken::bounded_excerpt(long_text, 10) == "aaaaaaaaaa... (1000 bytes)");
  // A cut never splits a UTF-8 sequence: "✓" is three bytes.
  CHECK(awaken::bounded_excerpt("ab\xe2\x9c\x93", 3) == "ab... (5 bytes)");
  CHECK(awaken::bounded_excerpt("ab\xe2\x9c\x93", 5) == "ab\xe2\x9c\x93");
}

TEST_CASE("Conditions classify the codes of every domain", "[core][error]") {
  using awaken::condition;
  using awaken::credential_errc;
  using awaken::http_errc;
  using awaken::spiffe_errc;
  // What each code is: t(ransient), w(orkload API transient), n(ot configured), s(hut down),
  // p(ermanent), or none of these.
  struct Row {
    std::error_code code;
    const char* is;
  };
  const auto row = GENERATE(
      Row{http_errc::connect_failed, "tw"}, Row{http_errc::resolve_failed, "tw"}, Row{http_errc::timeout, "tw"},
      Row{http_errc::transfer_failed, "tw"}, Row{http_errc::protocol_error, "tw"}, Row{http_errc::tls_failed, "p"},
      Row{http_errc::invalid_request, "p"}, Row{http_errc::response_too_large, "p"},
      Row{http_errc::message_too_large, "p"}, Row{grpc_status::unavailable, "tw"},
      Row{grpc_status::deadline_exceeded, "tw"}, Row{grpc_status::aborted, "tw"},
      Row{grpc_status::resource_exhausted, "p"}, Row{grpc_status::invalid_argument, "p"},
      Row{grpc_status::permission_denied, "wp"}, Row{grpc_status::cancelled, "w"}, Row{grpc_status::unimplemented, "p"},
      Row{credential_errc::not_configured, "n"}, Row{credential_errc::invalid_material, "p"},
      Row{awaken::jose_errc::signing_failed, "p"}, Row{credential_errc::permanent_upstream, "p"},
      Row{credential_errc::transient_upstream, "t"}, Row{credential_errc::network, "t"},
      Row{awaken::errc::shut_down, "s"}, Row{spiffe_errc::source_closed, "s"},
      Row{spiffe_errc::endpoint_not_configured, "n"}, Row{spiffe_errc::not_offered, "n"},
      Row{spiffe_errc::malformed_message, "p"}, Row{awaken::jose_errc::invalid_signature, "p"},
      Row{asio::error::operation_aborted, ""}, Row{std::make_error_code(std::errc::connection_refused), ""},
      Row{std::error_code{}, ""});
  INFO(row.code.category().name() << ":" << row.code.value());
  const std::string is = row.is;
  CHECK((row.code == condition::transient) == (is.find('t') != std::string::npos));
  CHECK((row.code == condition::workload_transient) == (is.find('w') != std::string::npos));
  CHECK((row.code == condition::not_configured) == (is.find('n') != std::string::npos));
  CHECK((row.code == condition::shut_down) == (is.find('s') != std::string::npos));
  CHECK((row.code == condition::permanent) == (is.find('p') != std::string::npos));
}

TEST_CASE("No code is defined twice: each category names its own", "[core][error]") {
  // One code per meaning: the messages of the categories' codes never repeat across categories.
  std::map<std::string, std::string> seen;
  const std::pair<const std::error_category*, int> categories[] = {{&awaken::core_category(), 1},
                                                                   {&awaken::jose_category(), 14},
                                                                   {&awaken::http_category(), 9},
                                                                   {&awaken::credential_category(), 5},
                                                                   {&awaken::spiffe_category(), 90}};
  for (const auto& [category, count] : categories) {
    for (int v = 1; v <= count; ++v) {
      const std::string text = category->message(v);
      if (text.rfind("unknown", 0) == 0) continue;
      INFO(category->name() << ":" << v << " '" << text << "'");
      const auto [at, fresh] = seen.emplace(text, category->name());
      CHECK((fresh || at->second == category->name()));
    }
  }
  CHECK(std::string{awaken::make_error_condition(awaken::condition::transient).category().name()} ==
        "awaken.condition");
}

TEST_CASE("Codes name their domain and describe themselves", "[core][error]") {
  CHECK(awaken::make_error_code(grpc_status::not_found).message() == "gRPC not found");
  CHECK(std::error_code{awaken::credential_errc::network}.category().name() == std::string{"awaken.credentials"});
  const awaken::Error e{awaken::credential_errc::permanent_upstream, "provider 'p'", {403, "invalid_grant"}};
  CHECK(std::string{e.what()} == "provider 'p': token endpoint rejected the request (HTTP 403: invalid_grant)");
}

TEST_CASE("ManualClock moves both times together and only when told", "[core][clock]") {
  awaken::ManualClock clock;
  const auto steady = clock.steady_now();
  const auto system = clock.system_now();
  CHECK(clock.steady_now() == steady);
  clock.advance(90s);
  CHECK(clock.steady_now() - steady == 90s);
  CHECK(clock.system_now() - system == 90s);
  const auto& real = awaken::system_clock();
  CHECK(real.system_now() > std::chrono::system_clock::time_point{std::chrono::seconds{1'700'000'000}});
}

TEST_CASE("backoff delays grow, cap and take jitter off", "[core][backoff]") {
  BackoffPolicy p;  // 3 attempts, 100 ms, x2, 1 s, jitter 0.2
  CHECK(p.max_attempts == 3);
  CHECK(p.base_delay(1) == 100ms);
  CHECK(p.base_delay(2) == 200ms);
  CHECK(p.base_delay(3) == 400ms);
  CHECK(p.base_delay(4) == 800ms);
  CHECK(p.base_delay(5) == 1000ms);
  CHECK(p.base_delay(60) == 1000ms);
  awaken::FixedJitter none{0.0};
  awaken::FixedJitter full{1.0};
  awaken::FixedJitter half{0.5};
  CHECK(p.delay(2, none) == 200ms);
  CHECK(p.delay(2, full) == 160ms);
  CHECK(p.delay(2, half) == 180ms);

  BackoffPolicy odd;
  odd.initial_delay = 5s;  // above the cap: clamped from the first delay on
  odd.multiplier = 0.5;    // below 1: treated as 1
  odd.jitter = 7;          // clamped to 1
  CHECK(odd.base_delay(1) == 1000ms);
  CHECK(odd.base_delay(3) == 1000ms);
  CHECK(odd.delay(1, full) == 0ms);
  CHECK(BackoffPolicy::disabled().max_attempts == 1);
}

TEST_CASE("The retry rule, without I/O: retryable failures within the attempts, hints up to a limit",
          "[core][backoff]") {
  BackoffPolicy p;
  p.max_attempts = 3;
  p.initial_delay = 100ms;
  p.max_delay = 1s;
  p.max_retry_after = 5s;
  awaken::FixedJitter none{0.0};
  CHECK(p.retry_wait(1, true, std::nullopt, none) == 100ms);
  CHECK(p.retry_wait(2, true, std::nullopt, none) == 200ms);
  CHECK(p.retry_wait(3, true, std::nullopt, none) == std::nullopt);   // the attempts are spent
  CHECK(p.retry_wait(1, false, std::nullopt, none) == std::nullopt);  // not retryable
  CHECK(p.retry_wait(1, true, 2s, none) == 2s);                       // a hint lengthens the wait
  CHECK(p.retry_wait(2, true, 10ms, none) == 200ms);                  // but never shortens it
  CHECK(p.retry_wait(1, true, 6s, none) == std::nullopt);             // a hint over the limit ends it
  BackoffPolicy once;
  once.max_attempts = 0;  // means 1
  CHECK(once.retry_wait(1, true, std::nullopt, none) == std::nullopt);
}

namespace {

// Runs with_backoff with a sleep that records instead of waiting.
struct Harness {
  asio::io_context io;
  std::vector<std::chrono::milliseconds> sleeps;
  std::vector<unsigned> retry_hooks;
  awaken::FixedJitter jitter{0.0};
  int calls = 0;

  awaken::Timing env() {
    return {nullptr, &jitter, [this](std::chrono::milliseconds d) -> asio::awaitable<void> {
              sleeps.push_back(d);
              co_return;
            }};
  }

  // An operation that fails with the given codes, in order, then returns "ok".
  int attempt(BackoffPolicy policy, std::vector<std::error_code> failures, awaken::ErrorDetails details = {}) {
    calls = 0;
    auto op = [this, failures, details]() -> asio::awaitable<int> {
      const int n = calls++;
      if (static_cast<std::size_t>(n) < failures.size()) throw awaken::Error(failures[n], "op", details);
      co_return n + 1;
    };
    auto hook = [this](unsigned a, const std::system_error&, std::chrono::milliseconds) { retry_hooks.push_back(a); };
    return run(io, awaken::with_backoff(policy, transient, hook, op, env()));
  }
};

}  // namespace

TEST_CASE("with_backoff: success, permanent failure, transient then success, exhaustion", "[core][backoff]") {
  const std::error_code transient = awaken::http_errc::connect_failed;
  const std::error_code permanent = awaken::http_errc::tls_failed;
  Harness h;
  SECTION("first try") {
    CHECK(h.attempt(BackoffPolicy{}, {}) == 1);
    CHECK(h.calls == 1);
    CHECK(h.sleeps.empty());
  }
  SECTION("not retryable: one call, no hook") {
    CHECK_THROWS_WITH(h.attempt(BackoffPolicy{}, {permanent}), Catch::Contains("TLS"));
    CHECK(h.calls == 1);
    CHECK(h.retry_hooks.empty());
  }
  SECTION("transient twice, then ok") {
    CHECK(h.attempt(BackoffPolicy{}, {transient, transient}) == 3);
    CHECK(h.sleeps == std::vector<std::chrono::milliseconds>{100ms, 200ms});
    CHECK(h.retry_hooks == std::vector<unsigned>{1, 2});
  }
  SECTION("always failing: the last error after max_attempts") {
    BackoffPolicy p;
    p.max_attempts = 4;
    try {
      h.attempt(p, {transient, transient, transient, awaken::http_errc::timeout, transient});
      FAIL("no error");
    } catch (const awaken::Error& e) {
      CHECK(e.code() == awaken::http_errc::timeout);
    }
    CHECK(h.calls == 4);
    CHECK(h.sleeps == std::vector<std::chrono::milliseconds>{100ms, 200ms, 400ms});
  }
  SECTION("disabled: one attempt") {
    CHECK_THROWS(h.attempt(BackoffPolicy::disabled(), {transient}));
    CHECK(h.calls == 1);
  }
}

TEST_CASE("with_backoff honours a retry-after hint, up to a limit", "[core][backoff]") {
  Harness h;
  awaken::ErrorDetails hint;
  hint.retry_after = 700ms;
  CHECK(h.attempt(BackoffPolicy{}, {awaken::http_errc::connect_failed}, hint) == 2);
  CHECK(h.sleeps == std::vector<std::chrono::milliseconds>{700ms});

  Harness too_long;
  hint.retry_after = 10min;
  CHECK_THROWS(too_long.attempt(BackoffPolicy{}, {awaken::http_errc::connect_failed}, hint));
  CHECK(too_long.calls == 1);
  CHECK(too_long.sleeps.empty());
}

TEST_CASE("with_backoff stops at once when cancelled during the wait", "[core][backoff]") {
  asio::io_context io;
  BackoffPolicy p;
  p.initial_delay = 30s;
  p.max_delay = 30s;
  int calls = 0;
  auto op = [&]() -> asio::awaitable<int> {
    ++calls;
    throw awaken::Error(awaken::http_errc::connect_failed, "op");
    co_return 0;
  };
  asio::cancellation_signal signal;
  std::exception_ptr result;
  bool done = false;
  asio::co_spawn(io,
                 awaken::with_backoff(
                     p, transient, [](auto&&...) {}, op),
                 asio::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr e, int) {
                   result = e;
                   done = true;
                 }));
  asio::steady_timer timer{io, 50ms};
  timer.async_wait([&](std::error_code) { signal.emit(asio::cancellation_type::terminal); });
  io.run_for(5s);
  REQUIRE(done);
  CHECK(calls == 1);
  try {
    std::rethrow_exception(result);
  } catch (const std::system_error& e) {
    CHECK(e.code() == asio::error::operation_aborted);
  }
}

TEST_CASE("with_backoff passes other exceptions straight through", "[core][backoff]") {
  asio::io_context io;
  int calls = 0;
  auto op = [&]() -> asio::awaitable<void> {
    ++calls;
    throw std::runtime_error("not an error code");
    co_return;
  };
  CHECK_THROWS_WITH(run(io, awaken::with_backoff(
                                BackoffPolicy{}, transient, [](auto&&...) {}, op)),
                    "not an error code");
  CHECK(calls == 1);
}

TEST_CASE("the logger is awaken's own, replaceable, and not in spdlog's registry", "[core][log]") {
  auto original = awaken::logger();
  REQUIRE(original);
  CHECK(original->name() == "awaken");
  CHECK(spdlog::get("awaken") == nullptr);

  std::ostringstream out;
  auto mine = std::make_shared<spdlog::logger>("mine", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  awaken::set_logger(mine);
  CHECK(awaken::logger() == mine);
  awaken::logger()->warn("hello");
  CHECK(out.str().find("hello") != std::string::npos);
  awaken::set_logger(nullptr);
  CHECK(awaken::logger() != mine);
  CHECK(awaken::logger()->name() == "awaken");
}
