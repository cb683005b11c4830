// The Workload API transport against the tests' grpc-js Workload API peer
// (tests/peers/workload_server.mjs, handing out one pre-signed JWT-SVID per call), beside a plain grpc-js client on the
// same peer in the same run (tests/peers/grpc_bench_client.mjs, one reused channel):
// - fetch_jwt_svid latency, one caller: p50 and p99 of 2000 sequential calls;
// - 16 concurrent callers for 3 s: calls per second;
// - idle: a JwtSource and an X509Source with their streams open and no updates for 10 s: the
//   CPU time and context switches of this whole process meanwhile.
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_future.hpp>
#include <nlohmann/json.hpp>

#include <awaken/spiffe/jwt_source.hpp>
#include <awaken/spiffe/workload_api.hpp>
#include <awaken/spiffe/x509_source.hpp>

#include "spiffe/workload/workload_proto.hpp"
#include "support/workload_peer.hpp"

namespace {

namespace spiffe = awaken::spiffe;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int sequential_calls = 2000;
constexpr int concurrency = 16;
constexpr auto concurrent_time = 3s;

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

std::string hex(const std::string& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// Runs the grpc-js client and returns its JSON line.
nlohmann::json grpc_js(const std::string& socket, const std::string& request) {
  const std::string command = "node " AWAKEN_PEERS_DIR "/grpc_bench_client.mjs " + socket +
                              " /SpiffeWorkloadAPI/FetchJWTSVID " + hex(request) + " " +
                              std::to_string(sequential_calls) + " " + std::to_string(concurrency) + " " +
                              std::to_string(std::chrono::milliseconds{concurrent_time}.count());
  std::unique_ptr<FILE, int (*)(FILE*)> pipe{::popen(command.c_str(), "r"), ::pclose};
  if (!pipe) throw std::runtime_error("cannot run node");
  std::string out;
  std::array<char, 512> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe.get()) != nullptr) out += buf.data();
  return nlohmann::json::parse(out);
}

// CPU time (all, and in user space) in ms and context switches of this whole process.
struct Usage {
  double cpu_ms, user_ms;
  long switches;
};
Usage usage() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  const auto ms = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_usec) / 1e3;
  };
  return {ms(u.ru_utime) + ms(u.ru_stime), ms(u.ru_utime), u.ru_nvcsw + u.ru_nivcsw};
}

}  // namespace

int main() {
  awaken::test::WorkloadPeer peer;
  peer.control("/reuse_svids?on=1");  // the clients' costs, not the peer's signing
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::thread thread{[&] { io.run(); }};
  const spiffe::WorkloadApiClient client{io.get_executor(), peer.endpoint()};
  const std::vector<std::string> audiences{"svc-a"};
  // One SVID per call (the peer signs one token), so that the clients' own costs show.
  const auto id = spiffe::SpiffeId::parse("spiffe://example.org/workload");

  // One caller, sequential calls, timed on the io thread.
  double cpu_per_call_us = 0, user_per_call_us = 0;
  auto latencies = asio::co_spawn(
                       io,
                       [&]() -> asio::awaitable<std::vector<double>> {
                         for (int i = 0; i < 200; ++i) co_await client.fetch_jwt_svid(audiences, id);  // warm-up
                         std::vector<double> out;
                         const Usage before = usage();
                         for (int i = 0; i < sequential_calls; ++i) {
                           const auto t0 = Clock::now();
                           co_await client.fetch_jwt_svid(audiences, id);
                           out.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
                         }
                         const Usage after = usage();
                         cpu_per_call_us = (after.cpu_ms - before.cpu_ms) * 1e3 / sequential_calls;
                         user_per_call_us = (after.user_ms - before.user_ms) * 1e3 / sequential_calls;
                         co_return out;
                       },
                       asio::use_future)
                       .get();

  // Concurrent callers on the same client (one connection).
  auto done = std::make_shared<std::atomic<long>>(0);
  const auto until = Clock::now() + concurrent_time;
  const auto start = Clock::now();
  std::vector<std::future<void>> callers;
  for (int c = 0; c < concurrency; ++c)
    callers.push_back(asio::co_spawn(
        io,
        [&client, &audiences, &id, done, until]() -> asio::awaitable<void> {
          while (Clock::now() < until) {
            co_await client.fetch_jwt_svid(audiences, id);
            ++*done;
          }
        },
        asio::use_future));
  for (auto& f : callers) f.get();
  const double ours_per_s =
      static_cast<double>(done->load()) / std::chrono::duration<double>(Clock::now() - start).count();

  const nlohmann::json js = grpc_js(peer.socket(), spiffe::detail::encode_jwt_svid_request(audiences, id.str()));

  // Idle sources: streams open, nothing to say.
  auto jwt = asio::co_spawn(io, spiffe::JwtSource::builder().endpoint(peer.endpoint()).build(io.get_executor()),
                            asio::use_future)
                 .get();
  auto x509 = asio::co_spawn(io, spiffe::X509Source::builder().endpoint(peer.endpoint()).build(io.get_executor()),
                             asio::use_future)
                  .get();
  std::this_thread::sleep_for(500ms);
  const Usage idle_start = usage();
  std::this_thread::sleep_for(10s);
  const double idle_cpu = usage().cpu_ms - idle_start.cpu_ms;
  const long idle_switches = usage().switches - idle_start.switches;
  const bool healthy = jwt.is_healthy() && x509.is_healthy();
  asio::co_spawn(io, jwt.shutdown(), asio::use_future).get();
  asio::co_spawn(io, x509.shutdown(), asio::use_future).get();
  guard.reset();
  thread.join();

  const double p50 = percentile(latencies, 0.5), p99 = percentile(latencies, 0.99);
  const double js_p50 = js["p50_ms"].get<double>(), js_p99 = js["p99_ms"].get<double>();
  const double js_per_s = js["calls_per_s"].get<double>();
  std::printf("fetch_jwt_svid, one caller, %d calls over the unix socket:\n", sequential_calls);
  std::printf("  awaken  p50 %.3f ms, p99 %.3f ms\n", p50, p99);
  std::printf("  grpc-js p50 %.3f ms, p99 %.3f ms\n", js_p50, js_p99);
  std::printf(
      "  awaken/grpc-js: p50 %.2fx, p99 %.2fx the time; awaken's CPU time per call %.1f us (%.1f us in user space)\n",
      p50 / js_p50, p99 / js_p99, cpu_per_call_us, user_per_call_us);
  std::printf("fetch_jwt_svid, %d concurrent callers for %lld s:\n", concurrency,
              static_cast<long long>(std::chrono::seconds{concurrent_time}.count()));
  std::printf("  awaken %.0f calls/s, grpc-js %.0f calls/s: awaken/grpc-js = %.2fx the throughput\n", ours_per_s,
              js_per_s, ours_per_s / js_per_s);
  std::printf("idle, a JwtSource and an X509Source with streams open, 10 s without updates (%s):\n",
              healthy ? "both healthy" : "NOT HEALTHY");
  std::printf("  process CPU time %.3f ms, %ld context switches\n", idle_cpu, idle_switches);
  return 0;
}
