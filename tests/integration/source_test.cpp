// JwtSource against the @grpc/grpc-js Workload API peer: initial sync, rotations, reconnects,
// rejected updates, shutdown, retries, restarts without leaks, and readers on many threads.
#include <malloc.h>
#include <stddef.h>
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
extern "C" size_t __sanitizer_get_current_allocated_bytes();  // exported by libasan
#endif

#include <atomic>
#include <future>
#include <thread>

#include <asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <awaken/error.hpp>
#include <awaken/spiffe/jwt_source.hpp>

#include "support/errors.hpp"
#include "support/names.hpp"
#include "support/source_support.hpp"
#include "support/workload_peer.hpp"

using awaken::spiffe::MetricsErrorKind;

namespace {

awaken::spiffe::JwtSourceBuilder quick(const WorkloadPeer& peer,
                                       const std::shared_ptr<CountingMetrics>& metrics = nullptr) {
  auto b = JwtSource::builder();
  b.endpoint(peer.endpoint()).reconnect_backoff(10ms, 100ms).initial_sync_timeout(10s).shutdown_timeout(5s);
  if (metrics) b.metrics(metrics);
  return b;
}

const TrustDomain example = TrustDomain::parse("example.org");

// Bytes of heap in use: live allocations only, so that AddressSanitizer's quarantine of freed
// blocks does not count as growth.
std::size_t live_heap_bytes() {
#if defined(__SANITIZE_ADDRESS__)
  return __sanitizer_get_current_allocated_bytes();
#else
  return mallinfo2().uordblks;
#endif
}

// A source on the peer with counting metrics: the setup most tests share.
struct Metered {
  WorkloadPeer peer;
  asio::io_context io;
  std::shared_ptr<CountingMetrics> metrics = std::make_shared<CountingMetrics>();
  JwtSource source = run(io, quick(peer, metrics).build(io.get_executor()));
};

}  // namespace

TEST_CASE_METHOD(Metered, "A JwtSource syncs, serves its bundles without blocking and validates SVIDs", "[source]") {
  CHECK(source.sequence() == 1);
  CHECK(source.is_healthy());
  CHECK(source.bundle_set()->size() == 2);
  const auto bundle = source.bundle_for_trust_domain(example);
  REQUIRE(bundle != nullptr);
  CHECK(bundle->find_authority("k1") != nullptr);
  CHECK(source.bundle_for_trust_domain(TrustDomain::parse("nowhere.org")) == nullptr);
  CHECK(metrics->updates == 1);

  const JwtSvid svid = run(io, source.fetch_jwt_svid({"svc-a"}));
  CHECK(svid.spiffe_id().str() == "spiffe://example.org/workload");
  CHECK(JwtSvid::parse_and_validate(svid.token().reveal(), source, {"svc-a"}).spiffe_id() == svid.spiffe_id());
  run(io, source.shutdown());
}

TEST_CASE("A rotation reaches changed(), and the new key validates a new token", "[source]") {
  WorkloadPeer peer;
  asio::io_context io;
  const JwtSource source = run(io, quick(peer).build(io.get_executor()));
  const std::string old_token{run(io, source.fetch_jwt_svid({"svc-a"})).token().reveal()};
  auto updates = source.updates();
  CHECK(updates.last() == 1);

  peer.wait_for_streams(1);
  CHECK(peer.control("/rotate")["kid"] == "k2");
  CHECK(run(io, updates.changed()) == 2);
  CHECK(source.bundle_for_trust_domain(example)->find_authority("k2") != nullptr);
  CHECK(source.bundle_for_trust_domain(example)->find_authority("k1") == nullptr);
  const JwtSvid fresh = run(io, source.fetch_jwt_svid({"svc-a"}));
  CHECK(fresh.key_id() == "k2");
  CHECK_NOTHROW(JwtSvid::parse_and_validate(fresh.token().reveal(), source, {"svc-a"}));
  CHECK(code_of([&] { JwtSvid::parse_and_validate(old_token, source, {"svc-a"}); }) ==
        spiffe_errc::authority_not_found);

  // wait_for: the current set when it already matches, else the first later one that does.
  auto waiter = source.updates();
  CHECK(run(io, waiter.wait_for([](const awaken::spiffe::JwtBundleSet& s) {
          return s.find("example.org") != nullptr;
        }))->size() == 2);
  run(io, source.shutdown());
}

TEST_CASE_METHOD(Metered, "Re-delivered bundles are silent; stream ends and resets reconnect", "[source]") {
  const auto before = source.bundle_set();

  peer.wait_for_streams(1);
  peer.control("/push?mode=same");
  peer.control("/end");  // clean end: a reconnect, which re-delivers the same bundles
  CHECK(run_until(io, [&] { return metrics->count(MetricsErrorKind::stream_ended) == 1 && metrics->reconnects >= 1; }));
  CHECK(run_until(io, [&] { return peer.control("/stats")["streams"] == 1; }));
  const int reconnects = metrics->reconnects;
  peer.control("/reset");
  // A reset before the client read the stream's first message counts as stream_connect.
  CHECK(run_until(io, [&] {
    return metrics->count(MetricsErrorKind::stream_error) + metrics->count(MetricsErrorKind::stream_connect) == 1 &&
           metrics->reconnects > reconnects;
  }));
  CHECK(run_until(io, [&] { return peer.control("/stats")["streams"] == 1; }));
  CHECK(peer.control("/stats")["calls"]["FetchJWTBundles"] == 3);
  CHECK(source.sequence() == 1);  // nothing changed, nothing published
  CHECK(metrics->updates == 1);
  CHECK(*source.bundle_set() == *before);

  peer.control("/rotate");
  auto updates = source.updates();
  CHECK(run(io, updates.changed()) == 2);
  run(io, source.shutdown());
}

TEST_CASE_METHOD(Metered, "Malformed and oversized updates are rejected and the last good set is kept", "[source]") {
  const auto good = source.bundle_set();
  peer.wait_for_streams(1);

  peer.control("/push?mode=malformed");
  CHECK(run_until(io, [&] { return metrics->count(MetricsErrorKind::update_rejected) == 1; }));
  peer.control("/push?mode=too_many");
  CHECK(run_until(io, [&] { return metrics->count(MetricsErrorKind::limit_max_bundles) == 1; }));
  CHECK(metrics->count(MetricsErrorKind::update_rejected) == 2);  // once per rejected update
  CHECK(metrics->count(MetricsErrorKind::limit_max_bundle_jwks_bytes) == 0);
  peer.control("/push?mode=huge");
  CHECK(run_until(io, [&] { return metrics->count(MetricsErrorKind::limit_max_bundle_jwks_bytes) == 1; }));
  peer.control("/push?mode=empty");
  CHECK(run_until(io, [&] { return metrics->count(MetricsErrorKind::update_rejected) == 4; }));
  CHECK(source.sequence() == 1);
  CHECK(*source.bundle_set() == *good);
  CHECK(source.is_healthy());
  CHECK(metrics->reconnects == 0);  // the same stream went on
  peer.control("/rotate");
  auto updates = source.updates();
  CHECK(run(io, updates.changed()) == 2);
  run(io, source.shutdown());
}

TEST_CASE_METHOD(Metered,
                 "A killed peer restarted on the same socket: last good set kept, reconnect within the backoff bound",
                 "[source]") {
  const auto before = source.bundle_set();
  peer.wait_for_streams(1);

  peer.stop();  // SIGKILL
  CHECK(run_until(io, [&] { return metrics->count(MetricsErrorKind::stream_error) >= 1; }));
  CHECK(run_until(io, [&] { return metrics->count(MetricsErrorKind::stream_connect) >= 2; }));  // retrying
  CHECK(*source.bundle_set() == *before);                                                       // last known good
  CHECK(source.is_healthy());

  auto updates = source.updates();
  peer.start();  // a new peer, a new key: the content changes
  const auto restarted = std::chrono::steady_clock::now();
  CHECK(run(io, updates.changed()) == 2);
  // The backoff never exceeds 100 ms; the rest is the peer's own start-up, counted from its ready line.
  CHECK(std::chrono::steady_clock::now() - restarted < 2s);
  CHECK(source.bundle_for_trust_domain(example)->find_authority("k1") != nullptr);
  CHECK_FALSE(*source.bundle_set() == *before);
  run(io, source.shutdown());
}

TEST_CASE("The initial sync fails at its timeout, or at once on InvalidArgument and Unimplemented", "[source]") {
  asio::io_context io;
  {
    awaken::test::TempDir dir;
    auto metrics = std::make_shared<CountingMetrics>();
    const auto start = std::chrono::steady_clock::now();
    try {
      run(io, JwtSource::builder()
                  .endpoint("unix://" + dir.path() + "/nobody.sock")
                  .reconnect_backoff(10ms, 50ms)
                  .initial_sync_timeout(300ms)
                  .metrics(metrics)
                  .build(io.get_executor()));
      FAIL("built");
    } catch (const awaken::Error& e) {
      CHECK(e.code() == spiffe_errc::initial_sync_timeout);
      CHECK_THAT(e.what(), Catch::Contains("last failure"));
    }
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= 300ms);
    CHECK(took < 2s);
    CHECK(metrics->count(MetricsErrorKind::initial_sync_failed) >= 2);
  }
  WorkloadPeer peer;
  for (int code : {3, 12}) {
    INFO(code);
    peer.control("/fail?code=" + std::to_string(code) + "&count=1&message=refused");
    const auto start = std::chrono::steady_clock::now();
    CHECK(code_of([&] { run(io, quick(peer).build(io.get_executor())); }) ==
          (code == 3 ? grpc_status::invalid_argument : grpc_status::unimplemented));
    CHECK(std::chrono::steady_clock::now() - start < 1s);
  }
  ::unsetenv("SPIFFE_ENDPOINT_SOCKET");
  try {
    (void)run(io, JwtSource::builder().build(io.get_executor()));
    FAIL("built without an endpoint");
  } catch (const awaken::Error& e) {
    CHECK(e.code() == spiffe_errc::endpoint_not_configured);
    // The reason is said once.
    const std::string what = e.what();
    const std::string reason = e.code().message();
    CHECK(what.find(reason) != std::string::npos);
    CHECK(what.find(reason) == what.rfind(reason));
  }

  // "No identity issued" is retried, after at least a second.
  peer.control("/fail?code=7&count=1&message=no%20identity%20issued&method=FetchJWTBundles");
  auto metrics = std::make_shared<CountingMetrics>();
  const auto start = std::chrono::steady_clock::now();
  const JwtSource source = run(io, quick(peer, metrics).build(io.get_executor()));
  CHECK(std::chrono::steady_clock::now() - start >= 1s);
  CHECK(metrics->count(MetricsErrorKind::no_identity_issued) == 1);
  run(io, source.shutdown());
}

TEST_CASE("Shutdown is bounded, idempotent, and closes readers and waiters", "[source]") {
  asio::io_context io;
  WorkloadPeer peer;
  {  // while streaming
    const JwtSource source = run(io, quick(peer).build(io.get_executor()));
    auto updates = source.updates();
    std::error_code waited;
    asio::co_spawn(io, updates.changed(), [&](std::exception_ptr e, std::uint64_t) {
      try {
        if (e) std::rethrow_exception(e);
      } catch (const awaken::Error& err) {
        waited = err.code();
      }
    });
    const auto start = std::chrono::steady_clock::now();
    run(io, source.shutdown(2s));
    CHECK(std::chrono::steady_clock::now() - start < 1s);
    CHECK(run_until(io, [&] { return bool(waited); }));
    CHECK(waited == spiffe_errc::source_closed);
    run(io, source.shutdown());                                  // again: at once
    run(io, source.shutdown(std::chrono::milliseconds::max()));  // forever is not at once
    CHECK_FALSE(source.is_healthy());
    CHECK(code_of([&] { source.bundle_set(); }) == spiffe_errc::source_closed);
    CHECK(code_of([&] { source.bundle_for_trust_domain(example); }) == spiffe_errc::source_closed);
    CHECK(code_of([&] { run(io, updates.changed()); }) == spiffe_errc::source_closed);
    CHECK(code_of([&] { run(io, source.fetch_jwt_svid({"a"})); }) == spiffe_errc::source_closed);
    CHECK(run_until(io, [&] { return peer.control("/stats")["streams"] == 0; }));
  }
  {  // while connecting: the peer answers nothing for a while
    peer.control("/delay?ms=3000");
    auto builder = quick(peer);
    builder.initial_sync_timeout(200ms);
    CHECK(code_of([&] { run(io, builder.build(io.get_executor())); }) == spiffe_errc::initial_sync_timeout);
    peer.control("/delay?ms=0");
    // A built source whose stream ends while the peer is slow: shut down as it reconnects.
    auto metrics = std::make_shared<CountingMetrics>();
    const JwtSource source = run(io, quick(peer, metrics).build(io.get_executor()));
    CHECK(run_until(io, [&] { return peer.control("/stats")["streams"] == 1; }));
    const int calls = peer.control("/stats")["calls"]["FetchJWTBundles"];
    peer.control("/delay?ms=3000");
    peer.control("/end");
    // Into the new call, which the peer holds.
    CHECK(run_until(io, [&] { return peer.control("/stats")["calls"]["FetchJWTBundles"] == calls + 1; }));
    const auto start = std::chrono::steady_clock::now();
    run(io, source.shutdown(2s));
    CHECK(std::chrono::steady_clock::now() - start < 1s);
    peer.control("/delay?ms=0");
  }
  {  // dropping the last handle stops the supervisor without blocking
    std::optional<JwtSource> source{run(io, quick(peer).build(io.get_executor()))};
    auto updates = source->updates();
    CHECK(run_until(io, [&] { return peer.control("/stats")["streams"] == 1; }));
    const auto start = std::chrono::steady_clock::now();
    source.reset();
    CHECK(std::chrono::steady_clock::now() - start < 50ms);
    CHECK(code_of([&] { run(io, updates.changed()); }) == spiffe_errc::source_closed);
    CHECK(run_until(io, [&] { return peer.control("/stats")["streams"] == 0; }));
  }
  // Nothing left behind on the io_context.
  io.restart();
  io.run_for(1s);
  CHECK(io.stopped());
}

TEST_CASE("fetch_jwt_svid retries once on a fresh connection, and only transient failures", "[source]") {
  WorkloadPeer peer;
  asio::io_context io;
  const JwtSource source = run(io, quick(peer).build(io.get_executor()));
  auto calls = [&] { return peer.control("/stats")["calls"].value("FetchJWTSVID", 0); };
  peer.control("/fail?code=14&count=1&method=FetchJWTSVID");
  CHECK(run(io, source.fetch_jwt_svid({"a"})).spiffe_id().str() == "spiffe://example.org/workload");
  CHECK(calls() == 2);
  peer.control("/fail?code=14&count=2&method=FetchJWTSVID");
  CHECK(code_of([&] { run(io, source.fetch_jwt_svid({"a"})); }) == grpc_status::unavailable);
  CHECK(calls() == 4);
  peer.control("/fail?code=3&count=1&method=FetchJWTSVID");
  CHECK(code_of([&] { run(io, source.fetch_jwt_svid({"a"})); }) == grpc_status::invalid_argument);
  CHECK(calls() == 5);  // not retried
  run(io, source.shutdown());
}

TEST_CASE("100 Workload API restarts leave no file descriptors or memory behind", "[source]") {
  WorkloadPeer peer;
  asio::io_context io;
  const JwtSource source = run(io, quick(peer).build(io.get_executor()));
  auto updates = source.updates();
  auto restart = [&] {
    peer.control("/restart?rotate=1");
    run(io, updates.changed());
  };
  for (int i = 0; i < 10; ++i) restart();  // warm up allocator pools and curl's caches
  const std::size_t fds = open_fds();
  const std::size_t heap = live_heap_bytes();
  for (int i = 0; i < 100; ++i) restart();
  CHECK(source.sequence() == 111);
  CHECK(open_fds() <= fds + 2);
  INFO("live heap before " << heap << " bytes, after " << live_heap_bytes());
  CHECK(live_heap_bytes() < heap + 512 * 1024);
  run(io, source.shutdown());
}

TEST_CASE("Readers on several threads while the supervisor publishes", "[source][stress]") {
  WorkloadPeer peer;
  asio::io_context io;
  const JwtSource source = run(io, quick(peer).build(io.get_executor()));
  std::atomic<bool> stop{false};
  std::atomic<long> lookups{0};
  std::atomic<long> misses{0};
  std::vector<std::jthread> readers;
  struct StopOnExit {  // so that a failing check below cannot leave the readers spinning
    std::atomic<bool>& stop;
    ~StopOnExit() { stop = true; }
  } stop_on_exit{stop};
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        auto bundle = source.bundle_for_trust_domain(example);
        if (bundle == nullptr || bundle->authorities().size() != 1) ++misses;
        auto set = source.bundle_set();
        if (set->size() != 2) ++misses;
        (void)source.is_healthy();
        ++lookups;
      }
    });
  }
  auto updates = source.updates();
  for (int i = 0; i < 30; ++i) {
    peer.control("/rotate");
    run(io, updates.changed());
  }
  stop = true;
  readers.clear();  // joins
  CHECK(misses == 0);
  CHECK(lookups > 1000);
  CHECK(source.sequence() == 31);
  run(io, source.shutdown());
}

// The seed's own tests (rust-spiffe JwtSource), ported to this API: updates and wait_for,
// the reconnect configuration, and the resource limits.
TEST_CASE("Seed tests: wait_for, notifications after the initial sync, reconnect config, limits", "[source][seed]") {
  WorkloadPeer peer;
  asio::io_context io;
  const JwtSource source = run(io, quick(peer).build(io.get_executor()));
  auto updates = source.updates();
  // The initial sync published sequence 1 and notifies nobody: a new waiter waits for the next.
  CHECK(updates.last() == 1);
  bool woke = false;
  asio::co_spawn(io, updates.changed(), [&](std::exception_ptr, std::uint64_t) { woke = true; });
  io.restart();
  io.poll();  // a wrong wake-up would already be queued
  CHECK_FALSE(woke);

  // wait_for: satisfied at once by the current set.
  auto has = [](const char* kid) {
    return
        [kid](const awaken::spiffe::JwtBundleSet& s) { return s.find("example.org")->find_authority(kid) != nullptr; };
  };
  auto immediate = source.updates();
  CHECK(run(io, immediate.wait_for(has("k1")))->find("example.org")->find_authority("k1") != nullptr);
  // ...or waiting until a rotation satisfies it.
  std::shared_ptr<const awaken::spiffe::JwtBundleSet> got;
  auto later = source.updates();
  asio::co_spawn(io, later.wait_for(has("k2")), [&](std::exception_ptr, auto set) { got = set; });
  io.restart();
  io.poll();
  CHECK(got == nullptr);
  peer.wait_for_streams(1);
  peer.control("/rotate");
  CHECK(run_until(io, [&] { return got != nullptr && woke; }));
  CHECK(got->find("example.org")->find_authority("k2") != nullptr);
  CHECK(updates.last() == 2);

  // Reconnect configuration: swapped when inverted, at least 1 ms.
  auto b = JwtSource::builder();
  b.reconnect_backoff(10s, 1s);
  CHECK(b.min_backoff() == 1s);
  CHECK(b.max_backoff() == 10s);
  b.reconnect_backoff(0ms, 0ms);
  CHECK(b.min_backoff() == 1ms);
  CHECK(b.max_backoff() == 1ms);

  // Limits: defaults, unlimited, mixed.
  const awaken::spiffe::ResourceLimits defaults;
  CHECK(defaults.max_bundles == 200);
  CHECK(defaults.max_bundle_jwks_bytes == 4u << 20);
  CHECK(awaken::spiffe::ResourceLimits::unlimited().max_bundles == SIZE_MAX);
  const awaken::spiffe::ResourceLimits mixed{50, SIZE_MAX};
  CHECK(mixed.max_bundles == 50);
  // A limit of one trust domain: the peer's two are refused, one limit metric per update.
  auto metrics = std::make_shared<CountingMetrics>();
  auto strict = quick(peer, metrics);
  strict.resource_limits({1, SIZE_MAX}).initial_sync_timeout(300ms);
  CHECK(code_of([&] { run(io, strict.build(io.get_executor())); }) == spiffe_errc::initial_sync_timeout);
  CHECK(metrics->count(MetricsErrorKind::limit_max_bundles) >= 1);
  CHECK(metrics->count(MetricsErrorKind::limit_max_bundles) == metrics->count(MetricsErrorKind::update_rejected));
  CHECK(metrics->count(MetricsErrorKind::limit_max_bundle_jwks_bytes) == 0);
  run(io, source.shutdown());
}

TEST_CASE("A client factory's clients live as long as their streams; a throwing one is retried", "[source]") {
  WorkloadPeer peer;
  asio::io_context io;
  auto metrics = std::make_shared<CountingMetrics>();
  int calls = 0;
  auto b = quick(peer, metrics);
  // Each client owns its transport: the stream must keep it alive. The first call throws
  // something that is not an exception class at all.
  b.client_factory([&]() -> awaken::spiffe::WorkloadApiClient {
    if (++calls == 1) throw 42;
    return awaken::spiffe::WorkloadApiClient{io.get_executor(), peer.endpoint()};
  });
  const JwtSource source = run(io, b.build(io.get_executor()));
  CHECK(source.bundle_for_trust_domain(example) != nullptr);
  CHECK(metrics->count(MetricsErrorKind::client_creation) == 1);
  peer.control("/rotate");
  auto updates = source.updates();
  CHECK(run(io, updates.changed()) == 2);  // the stream is still up
  run(io, source.shutdown());
}

TEST_CASE("A source's streams and its fetch_jwt_svid calls share one connection", "[source]") {
  WorkloadPeer peer{true};  // over TCP, where the agent tells connections apart
  asio::io_context io;
  const JwtSource source = run(io, JwtSource::builder().endpoint(peer.tcp_endpoint()).build(io.get_executor()));
  for (int i = 0; i < 5; ++i)
    CHECK(run(io, source.fetch_jwt_svid({"a"})).spiffe_id().str() == "spiffe://example.org/workload");
  const auto stats = peer.control("/stats");
  CHECK(stats["calls"]["FetchJWTSVID"] == 5);
  CHECK(stats["connections"] == 1);
  run(io, source.shutdown());
}
