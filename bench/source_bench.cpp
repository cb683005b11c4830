// JwtSource benchmarks against the Workload API peer (tests/peers/workload_server.mjs):
// - bundle lookups on 1 and 2 threads while the peer publishes a changed set every millisecond,
//   next to a plain map and to a shared_mutex-guarded map swapped every millisecond;
// - update propagation: the peer rotates, time until changed() returns (p50, p99, 200 times);
// - fetch_jwt_svid round trips over the unix socket, next to a bare gRPC call of the same bytes.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <future>
#include <map>
#include <shared_mutex>
#include <thread>

#include <benchmark/benchmark.h>
#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>
#include <nlohmann/json.hpp>

#include <awaken/spiffe/jwt_source.hpp>

#include "bench_report.hpp"
#include "spiffe/workload/workload_proto.hpp"
#include "support/workload_peer.hpp"

namespace {

namespace spiffe = awaken::spiffe;
using namespace std::chrono_literals;

// The peer, an io_context on a thread of its own, and a source built on it.
struct World {
  awaken::test::WorkloadPeer peer;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  std::thread thread{[this] { io.run(); }};
  spiffe::WorkloadEndpoint endpoint = peer.endpoint();
  spiffe::JwtSource source =
      asio::co_spawn(io, spiffe::JwtSource::builder().endpoint(endpoint).build(io.get_executor()), asio::use_future)
          .get();

  ~World() {
    asio::co_spawn(io, source.shutdown(), asio::use_future).get();
    guard.reset();
    thread.join();
  }

  nlohmann::json control(const std::string& path) const { return peer.control(path); }
};

World* world = nullptr;
const spiffe::TrustDomain example = spiffe::TrustDomain::parse("example.org");

void source_lookup(benchmark::State& state) {
  for (auto _ : state) {
    auto bundle = world->source.bundle_for_trust_domain(example);
    benchmark::DoNotOptimize(bundle);
  }
  state.SetItemsProcessed(state.iterations());
}

// The ideal: a map nobody writes to.
void plain_map_lookup(benchmark::State& state) {
  static const auto set = world->source.bundle_set();
  static const std::map<std::string, std::shared_ptr<const spiffe::JwtBundle>, std::less<>> map = [] {
    std::map<std::string, std::shared_ptr<const spiffe::JwtBundle>, std::less<>> m;
    for (const auto& b : set->bundles()) m.emplace(b->trust_domain().name(), b);
    return m;
  }();
  for (auto _ : state) {
    auto it = map.find(example.name());
    auto bundle = it == map.end() ? nullptr : it->second;
    benchmark::DoNotOptimize(bundle);
  }
  state.SetItemsProcessed(state.iterations());
}

// What a straightforward source does: the set behind a shared_mutex, swapped every millisecond
// by a publisher thread.
struct GuardedSet {
  std::shared_mutex mutex;
  std::shared_ptr<const spiffe::JwtBundleSet> set;
  std::atomic<bool> stop{false};
  std::thread publisher;
};
GuardedSet guarded;

void shared_mutex_lookup(benchmark::State& state) {
  for (auto _ : state) {
    std::shared_ptr<const spiffe::JwtBundle> bundle;
    {
      std::shared_lock lk(guarded.mutex);
      bundle = guarded.set->bundle_for_trust_domain(example);
    }
    benchmark::DoNotOptimize(bundle);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(source_lookup)
    ->Name("lookup/jwt_source")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK(plain_map_lookup)
    ->Name("lookup/plain_map_no_writer")
    ->UseRealTime()
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK(shared_mutex_lookup)
    ->Name("lookup/shared_mutex_map")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  World w;
  world = &w;
  benchmark::Initialize(&argc, argv);

  // Publishers: the peer pushes a changed set every ms; the baseline map is swapped every ms.
  const std::uint64_t before = w.source.sequence();
  w.control("/churn?ms=1");
  guarded.set = w.source.bundle_set();
  guarded.publisher = std::thread{[] {
    while (!guarded.stop.load()) {
      auto next = std::make_shared<const spiffe::JwtBundleSet>(*guarded.set);
      {
        std::unique_lock lk(guarded.mutex);
        guarded.set = std::move(next);
      }
      std::this_thread::sleep_for(1ms);
    }
  }};
  const auto churn_start = std::chrono::steady_clock::now();
  awaken::bench::MedianCapture reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  guarded.stop = true;
  guarded.publisher.join();
  w.control("/churn?ms=0");
  const double churn_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - churn_start).count();
  const std::uint64_t published = w.source.sequence() - before;
  std::this_thread::sleep_for(50ms);

  // Update propagation: from the peer's push (its CLOCK_MONOTONIC) to changed() returning.
  std::vector<double> latencies_ms;
  auto updates = w.source.updates();
  for (int i = 0; i < 200; ++i) {
    auto woke = asio::co_spawn(
        w.io,
        [&]() -> asio::awaitable<std::int64_t> {
          co_await updates.changed();
          co_return std::chrono::duration_cast<std::chrono::nanoseconds>(
              std::chrono::steady_clock::now().time_since_epoch())
              .count();
        },
        asio::use_future);
    const auto reply = w.control("/rotate");
    const std::int64_t pushed = std::stoll(reply["pushed_ns"].get<std::string>());
    latencies_ms.push_back(static_cast<double>(woke.get() - pushed) / 1e6);
  }

  // fetch_jwt_svid round trips, next to a bare unary call carrying the same request.
  constexpr int calls = 300;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) asio::co_spawn(w.io, w.source.fetch_jwt_svid({"svc-a"}), asio::use_future).get();
  const double fetch_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  awaken::http::GrpcChannelOptions options;
  options.metadata.push_back({"workload.spiffe.io", "true"});
  const awaken::http::GrpcChannel bare{w.io.get_executor(), w.endpoint.grpc_target(), options};
  const std::string request = spiffe::detail::encode_jwt_svid_request(std::vector<std::string>{"svc-a"}, "");
  const auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i)
    asio::co_spawn(w.io, bare.unary("/SpiffeWorkloadAPI/FetchJWTSVID", request), asio::use_future).get();
  const double bare_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  benchmark::Shutdown();

  const auto ns = [&](const std::string& name) { return reporter.time(name, true); };
  const std::string s1 = "lookup/jwt_source/repeats:5/real_time/threads:1";
  const std::string s2 = "lookup/jwt_source/repeats:5/real_time/threads:2";
  const std::string m1 = "lookup/shared_mutex_map/repeats:5/real_time/threads:1";
  const std::string m2 = "lookup/shared_mutex_map/repeats:5/real_time/threads:2";
  const std::string plain = "lookup/plain_map_no_writer/repeats:5/real_time";
  std::printf("\nwhile the peer published %llu changed sets in %.1f s (%.0f per second):\n",
              static_cast<unsigned long long>(published), churn_seconds,
              static_cast<double>(published) / churn_seconds);
  if (ns(s1) > 0 && ns(s2) > 0 && ns(m1) > 0 && ns(m2) > 0 && ns(plain) > 0) {
    std::printf("lookup, 1 thread:  jwt_source %.1f ns, plain map (no writer) %.1f ns, shared_mutex map %.1f ns\n",
                ns(s1), ns(plain), ns(m1));
    std::printf("                   jwt_source/plain_map = %.2fx, jwt_source/shared_mutex_map = %.2fx\n",
                ns(s1) / ns(plain), ns(s1) / ns(m1));
    // With threads, the time per iteration is wall time over all threads' iterations: its
    // inverse is the throughput.
    std::printf(
        "lookup throughput, 2 threads / 1 thread: jwt_source %.2fx (%.1f M/s vs %.1f M/s), "
        "shared_mutex map %.2fx\n",
        ns(s1) / ns(s2), 1e3 / ns(s2), 1e3 / ns(s1), ns(m1) / ns(m2));
  }
  std::printf("update propagation, peer push to changed(), 200 rotations: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
              percentile(latencies_ms, 0.5), percentile(latencies_ms, 0.99), percentile(latencies_ms, 1.0));
  std::printf(
      "fetch_jwt_svid over the unix socket: %.0f round trips/s (%.2f ms each); bare gRPC call %.0f/s; "
      "awaken/bare = %.2fx the time\n",
      calls / fetch_s, fetch_s * 1e3 / calls, calls / bare_s, fetch_s / bare_s);
  return 0;
}
