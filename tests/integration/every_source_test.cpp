// One suite, run against every source profile (JwtSource, X509Source, WitSource) on the
// Workload API peer: the members every `basic_source` has must mean the same for each.
#include <algorithm>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <awaken/error.hpp>
#include <awaken/spiffe/experimental/wit_source.hpp>
#include <awaken/spiffe/jwt_source.hpp>
#include <awaken/spiffe/x509_source.hpp>

#include "support/errors.hpp"
#include "support/names.hpp"
#include "support/source_support.hpp"
#include "support/workload_peer.hpp"

using awaken::spiffe::MetricsErrorKind;

namespace {

// What differs between the profiles on the peer's side: the calls, and the controls that change
// what each one serves.
struct JwtPeer {
  using Source = awaken::spiffe::JwtSource;
  static constexpr const char* method = "FetchJWTBundles";
  static constexpr const char* rotate = "/rotate";
  static constexpr const char* malformed = "/push?mode=malformed";
  static constexpr int lanes = 1;  // streams the source keeps open
  static int streams(const nlohmann::json& stats) { return stats["streams"].get<int>(); }
};
struct X509Peer {
  using Source = awaken::spiffe::X509Source;
  static constexpr const char* method = "FetchX509SVID";
  static constexpr const char* rotate = "/x509/rotate";
  static constexpr const char* malformed = "/x509/push?mode=malformed";
  static constexpr int lanes = 1;
  static int streams(const nlohmann::json& stats) { return stats["x509_streams"].get<int>(); }
};
struct WitPeer {
  using Source = awaken::spiffe::experimental::WitSource;
  static constexpr const char* method = "FetchWITSVID";
  static constexpr const char* rotate = "/wit/renew";  // new SVIDs only: one of its two streams
  static constexpr const char* malformed = "/wit/push?mode=malformed";
  static constexpr int lanes = 2;
  static int streams(const nlohmann::json& stats) {
    return stats["wit_streams"].get<int>() + stats["wit_bundle_streams"].get<int>();
  }
};

template <class P>
auto quick(const WorkloadPeer& peer, const std::shared_ptr<CountingMetrics>& metrics = nullptr) {
  auto b = P::Source::builder();
  b.endpoint(peer.endpoint()).reconnect_backoff(10ms, 100ms).initial_sync_timeout(10s).shutdown_timeout(5s);
  if (metrics) b.metrics(metrics);
  return b;
}

template <class P>
int open_streams(const WorkloadPeer& peer) {
  return P::streams(peer.control("/stats"));
}

// Starts `updates.changed()` and records how it ends.
template <class Updates>
void watch(asio::io_context& io, Updates& updates, std::optional<std::error_code>& ended) {
  asio::co_spawn(io, updates.changed(), [&ended](std::exception_ptr e, std::uint64_t) {
    try {
      if (e) std::rethrow_exception(e);
      ended = std::error_code{};
    } catch (const awaken::Error& err) {
      ended = err.code();
    }
  });
}

}  // namespace

TEMPLATE_TEST_CASE("Every source syncs, serves, publishes changes once and counts them", "[source][profiles]", JwtPeer,
                   X509Peer, WitPeer) {
  WorkloadPeer peer;
  asio::io_context io;
  const auto metrics = std::make_shared<CountingMetrics>();
  const auto source = run(io, quick<TestType>(peer, metrics).build(io.get_executor()));
  CHECK(source.sequence() == 1);
  CHECK(source.is_healthy());
  CHECK(source.bundle_set()->size() == 2);
  CHECK(metrics->updates == 1);
  auto updates = source.updates();
  CHECK(updates.last() == 1);

  // A rotation: one published change, seen by a waiter and by the sequence.
  std::optional<std::error_code> ended;
  watch(io, updates, ended);
  peer.control(TestType::rotate);
  REQUIRE(run_until(io, [&] { return ended.has_value(); }));
  CHECK(*ended == std::error_code{});
  CHECK(source.sequence() == 2);
  CHECK(updates.last() == 2);
  CHECK(metrics->updates == 2);
  // wait_for sees the current view at once when it holds.
  const auto view = run(io, updates.wait_for([](const auto&) { return true; }));
  CHECK(view != nullptr);

  // The same content again, on a new stream after a reset: a reconnect, nothing published.
  peer.control("/reset");
  REQUIRE(run_until(io, [&] { return metrics->reconnects > 0 && open_streams<TestType>(peer) > 0; }));
  io.restart();
  io.run_for(200ms);
  CHECK(source.sequence() == 2);
  CHECK(source.is_healthy());
  run(io, source.shutdown());
}

TEMPLATE_TEST_CASE("Every source refuses a malformed update and keeps the last good snapshot", "[source][profiles]",
                   JwtPeer, X509Peer, WitPeer) {
  WorkloadPeer peer;
  asio::io_context io;
  const auto metrics = std::make_shared<CountingMetrics>();
  const auto source = run(io, quick<TestType>(peer, metrics).build(io.get_executor()));
  const auto before = source.bundle_set();
  peer.control(TestType::malformed);
  REQUIRE(run_until(io, [&] { return metrics->count(MetricsErrorKind::update_rejected) == 1; }));
  CHECK(source.sequence() == 1);
  CHECK(source.bundle_set() == before);
  CHECK(source.is_healthy());
  run(io, source.shutdown());
}

TEMPLATE_TEST_CASE("Every source's initial sync ends at its timeout, or at once where retrying cannot help",
                   "[source][profiles]", JwtPeer, X509Peer, WitPeer) {
  asio::io_context io;
  {
    awaken::test::TempDir dir;
    auto b = TestType::Source::builder();
    b.endpoint("unix://" + dir.path() + "/nobody.sock").reconnect_backoff(10ms, 50ms).initial_sync_timeout(300ms);
    const auto start = std::chrono::steady_clock::now();
    try {
      (void)run(io, b.build(io.get_executor()));
      FAIL("built");
    } catch (const awaken::Error& e) {
      CHECK(e.code() == spiffe_errc::initial_sync_timeout);
      CHECK_THAT(e.what(), Contains("last failure"));
    }
    CHECK(std::chrono::steady_clock::now() - start < 2s);
  }
  WorkloadPeer peer;
  peer.control(std::string{"/fail?code=3&count=1&message=refused&method="} + TestType::method);
  const auto start = std::chrono::steady_clock::now();
  CHECK(code_of([&] { (void)run(io, quick<TestType>(peer).build(io.get_executor())); }) ==
        grpc_status::invalid_argument);
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  // A handler without an executor of its own: refused (completed on a thread of Asio's pool).
  std::promise<std::error_code> outcome;
  auto code = outcome.get_future();
  quick<TestType>(peer).build([&](std::error_code ec, const typename TestType::Source&) { outcome.set_value(ec); });
  REQUIRE(code.wait_for(5s) == std::future_status::ready);
  CHECK(code.get() == std::errc::invalid_argument);
}

TEMPLATE_TEST_CASE("Every source's shutdown is bounded and idempotent, and closes readers and waiters",
                   "[source][profiles]", JwtPeer, X509Peer, WitPeer) {
  WorkloadPeer peer;
  asio::io_context io;
  {
    const auto source = run(io, quick<TestType>(peer).build(io.get_executor()));
    auto updates = source.updates();
    std::optional<std::error_code> ended;
    watch(io, updates, ended);
    const auto start = std::chrono::steady_clock::now();
    run(io, source.shutdown(2s));
    CHECK(std::chrono::steady_clock::now() - start < 1s);
    REQUIRE(run_until(io, [&] { return ended.has_value(); }));
    CHECK(*ended == spiffe_errc::source_closed);
    run(io, source.shutdown());  // again: the same stop
    CHECK_FALSE(source.is_healthy());
    CHECK(code_of([&] { (void)source.bundle_set(); }) == spiffe_errc::source_closed);
    CHECK(code_of([&] { run(io, updates.changed()); }) == spiffe_errc::source_closed);
    CHECK(run_until(io, [&] { return open_streams<TestType>(peer) == 0; }));
  }
  {  // dropping the last handle stops the supervisors without waiting for them
    std::optional<typename TestType::Source> source{run(io, quick<TestType>(peer).build(io.get_executor()))};
    auto updates = source->updates();
    CHECK(run_until(io, [&] { return open_streams<TestType>(peer) > 0; }));
    source.reset();
    CHECK(code_of([&] { run(io, updates.changed()); }) == spiffe_errc::source_closed);
    CHECK(run_until(io, [&] { return open_streams<TestType>(peer) == 0; }));
  }
  {  // an empty handle is a closed source
    const typename TestType::Source empty;
    CHECK_FALSE(empty.is_healthy());
    CHECK(empty.sequence() == 0);
    CHECK(code_of([&] { (void)empty.bundle_set(); }) == spiffe_errc::source_closed);
    CHECK(code_of([&] { (void)empty.updates(); }) == spiffe_errc::source_closed);
    run(io, empty.shutdown());
  }
  io.restart();
  io.run_for(500ms);
  CHECK(io.stopped());
}

TEMPLATE_TEST_CASE("Every source's reconnect waits follow its backoff, through the injected timing",
                   "[source][profiles]", JwtPeer, X509Peer, WitPeer) {
  WorkloadPeer peer;
  asio::io_context io;
  awaken::FixedJitter no_jitter{0.0};
  std::vector<std::chrono::milliseconds> waits;  // recorded, never waited out
  awaken::Timing timing{nullptr, &no_jitter, [&waits](std::chrono::milliseconds d) -> asio::awaitable<void> {
                          waits.push_back(d);
                          co_return;
                        }};
  const auto metrics = std::make_shared<CountingMetrics>();
  auto b = quick<TestType>(peer, metrics);
  b.reconnect_backoff(10ms, 40ms).timing(timing);
  const auto source = run(io, b.build(io.get_executor()));
  CHECK(waits.empty());
  // Three failed calls after a reset: 10, 20, 40 and 40 ms, doubling to the bound (and 10 ms
  // for each other stream the reset ended).
  peer.control(std::string{"/fail?code=14&count=3&message=busy&method="} + TestType::method);
  peer.control("/reset");
  REQUIRE(run_until(io, [&] {
    return metrics->reconnects >= 3 + TestType::lanes && open_streams<TestType>(peer) == TestType::lanes;
  }));
  const auto count = [&](std::chrono::milliseconds d) { return std::count(waits.begin(), waits.end(), d); };
  CHECK(count(10ms) >= 1);
  CHECK(count(20ms) == 1);
  CHECK(count(40ms) == 2);
  CHECK(*std::max_element(waits.begin(), waits.end()) == 40ms);
  CHECK(source.is_healthy());
  run(io, source.shutdown());
}
