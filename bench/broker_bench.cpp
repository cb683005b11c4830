// The credential broker's hot path and flights, against a baseline measured in the same run: a
// `std::shared_mutex` + `std::unordered_map` cache returning a `shared_ptr` copy of the token.
// Heap allocations are counted in a replaced `malloc` family.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include <benchmark/benchmark.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <fstream>
#include <functional>
#include <map>

#include <nlohmann/json.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/credentials/cloud_federation.hpp>
#include <awaken/credentials/federation.hpp>
#include <awaken/credentials/oauth_client_credentials.hpp>
#include <awaken/credentials/spiffe_minters.hpp>
#include <awaken/error.hpp>
#include <awaken/spiffe/x509_source.hpp>

#include "bench_report.hpp"
#include "support/workload_peer.hpp"

// Every heap allocation goes through malloc, so counting there also catches the memory Asio
// takes with aligned_alloc for coroutine frames. glibc allows replacing the malloc family.
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}
namespace {
std::atomic<std::uint64_t> g_allocations{0};
void note_allocation() noexcept { g_allocations.fetch_add(1, std::memory_order_relaxed); }
}  // namespace
extern "C" {
void* malloc(std::size_t n) {
  note_allocation();
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t m) {
  note_allocation();
  return __libc_calloc(n, m);
}
void* realloc(void* p, std::size_t n) {
  note_allocation();
  return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) {
  note_allocation();
  return __libc_memalign(a, n);
}
void* memalign(std::size_t a, std::size_t n) {
  note_allocation();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  note_allocation();
  *out = __libc_memalign(a, n);
  return *out != nullptr ? 0 : 12;  // ENOMEM
}
void free(void* p) { __libc_free(p); }
}

namespace {

using namespace std::chrono_literals;
using awaken::AwakenBroker;
using awaken::CredentialMaterial;
using awaken::IssuedToken;
using awaken::RedactedString;
using awaken::Token;

constexpr std::string_view provider = "vertex";
constexpr std::string_view scope = "https://www.googleapis.com/auth/cloud-platform";

// The baseline: what a careful first version of a token cache looks like.
class MutexMapCache {
 public:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  void put(std::string key, std::shared_ptr<const Token> token) {
    std::unique_lock lk(mutex_);
    map_[std::move(key)] = std::move(token);
  }
  std::shared_ptr<const Token> get(std::string_view key) const {
    std::shared_lock lk(mutex_);
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : it->second;
  }

 private:
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<const Token>, Hash, std::equal_to<>> map_;
};

// Keys are "provider\nscope", built once outside the loop, so the baseline pays no concatenation.
const std::string& baseline_key() {
  static const std::string k = std::string{provider} + "\n" + std::string{scope};
  return k;
}

MutexMapCache& baseline() {
  static MutexMapCache* c = [] {
    auto* cache = new MutexMapCache;
    cache->put(baseline_key(), std::make_shared<const Token>(Token::expiring_in(RedactedString{"ya29.bench"}, 3600s)));
    return cache;
  }();
  return *c;
}

// One warm broker shared by the hot-path benchmarks (its io_context is never run again).
struct Warm {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  Warm() {
    broker.register_material(std::string{provider}, CredentialMaterial::static_bearer(RedactedString{"ya29.bench"}));
    asio::co_spawn(io, broker.token_for(provider, scope), asio::detached);
    io.run();
  }
};

Warm& warm() {
  static Warm* w = new Warm;
  return *w;
}

void report_allocations(benchmark::State& state, std::uint64_t before) {
  if (state.thread_index() != 0) return;
  const auto n = g_allocations.load() - before;
  state.counters["allocs_per_call"] = static_cast<double>(n) / static_cast<double>(state.iterations());
}

void baseline_lookup(benchmark::State& state) {
  const MutexMapCache& cache = baseline();
  const std::string& key = baseline_key();
  const auto before = g_allocations.load();
  for (auto _ : state) {
    auto t = cache.get(key);
    benchmark::DoNotOptimize(t);
  }
  report_allocations(state, before);
  state.SetItemsProcessed(state.iterations());
}

void try_cached(benchmark::State& state) {
  const AwakenBroker& broker = warm().broker;
  (void)broker.try_cached(provider, scope);  // this thread's first hit fills its slot
  const auto before = g_allocations.load();
  for (auto _ : state) {
    auto t = broker.try_cached(provider, scope);
    benchmark::DoNotOptimize(t);
  }
  report_allocations(state, before);
  state.SetItemsProcessed(state.iterations());
}

void token_for(benchmark::State& state) {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  broker.register_material(std::string{provider}, CredentialMaterial::static_bearer(RedactedString{"ya29.bench"}));
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        (void)co_await broker.token_for(provider, scope);  // mint and warm the frame recycler
        (void)co_await broker.token_for(provider, scope);
        const auto before = g_allocations.load();
        for (auto _ : state) {
          auto t = co_await broker.token_for(provider, scope);
          benchmark::DoNotOptimize(t);
        }
        report_allocations(state, before);
      },
      asio::detached);
  io.run();
  state.SetItemsProcessed(state.iterations());
}

// Waits `delay` and then returns a token or, when `fail`, a permanent error.
class SlowMinter final : public awaken::Minter {
 public:
  SlowMinter(std::chrono::milliseconds delay, bool fail) : delay_(delay), fail_(fail) {}
  std::string_view kind_label() const noexcept override { return "bench_slow"; }
  asio::awaitable<Token> mint(std::string_view, const awaken::MintContext& ctx) const override {
    ++calls;
    asio::steady_timer t{co_await asio::this_coro::executor, delay_};
    co_await t.async_wait(asio::use_awaitable);
    if (fail_) awaken::throw_error(awaken::credential_errc::permanent_upstream, "bench", {403, "invalid_grant", {}});
    co_return Token::expiring_in(RedactedString{"ya29.cold"}, 3600s, ctx.clock);
  }
  mutable std::atomic<int> calls{0};

 private:
  std::chrono::milliseconds delay_;
  bool fail_;
};

// N callers ask for one cold key at once; one iteration is the wall time until all have an
// answer. The minter takes 20 ms, so 20 ms is the floor.
void cold_callers(benchmark::State& state, bool fail) {
  const int callers = static_cast<int>(state.range(0));
  double mints = 0, answered = 0;
  const auto before = g_allocations.load();
  for (auto _ : state) {
    asio::io_context io;
    AwakenBroker broker{io.get_executor()};
    auto minter = std::make_shared<SlowMinter>(20ms, fail);
    broker.register_material(std::string{provider}, CredentialMaterial::from_minter(minter));
    int done = 0;
    for (int i = 0; i < callers; ++i)
      asio::co_spawn(io, broker.token_for(provider, scope), [&](std::exception_ptr, IssuedToken) { ++done; });
    io.run();
    mints += minter->calls;
    answered += done;
  }
  state.counters["mints"] = mints / static_cast<double>(state.iterations());
  state.counters["answered"] = answered / static_cast<double>(state.iterations());
  state.counters["allocs_per_caller"] =
      static_cast<double>(g_allocations.load() - before) / static_cast<double>(state.iterations()) / callers;
}

// The floor for the cold benchmarks: the same callers, spawned the same way, each waiting on one
// shared 20 ms timer instead of a broker (no cache, no flight, no token).
void cold_baseline(benchmark::State& state) {
  const int callers = static_cast<int>(state.range(0));
  const auto before = g_allocations.load();
  for (auto _ : state) {
    asio::io_context io;
    asio::steady_timer timer{io, 20ms};
    int done = 0;
    for (int i = 0; i < callers; ++i)
      asio::co_spawn(
          io, [&]() -> asio::awaitable<void> { co_await timer.async_wait(asio::use_awaitable); },
          [&](std::exception_ptr) { ++done; });
    io.run();
    benchmark::DoNotOptimize(done);
  }
  state.counters["allocs_per_caller"] =
      static_cast<double>(g_allocations.load() - before) / static_cast<double>(state.iterations()) / callers;
}

BENCHMARK(baseline_lookup)
    ->Name("hit/baseline_shared_mutex_map")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK(try_cached)
    ->Name("hit/try_cached")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK(token_for)->Name("hit/co_await_token_for")->UseRealTime()->Repetitions(5)->DisplayAggregatesOnly(true);
// The cold benchmarks run few, long iterations.
void cold(benchmark::internal::Benchmark* b) {
  b->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5)->Repetitions(3)->DisplayAggregatesOnly(true);
}
BENCHMARK(cold_baseline)->Name("cold/baseline_timer_wait")->Arg(1000)->Arg(10000)->Apply(cold);
BENCHMARK_CAPTURE(cold_callers, ok, false)->Name("cold/20ms_mint")->Arg(1000)->Arg(10000)->Apply(cold);
BENCHMARK_CAPTURE(cold_callers, fail, true)->Name("cold/20ms_permanent_failure")->Arg(100)->Apply(cold);

// ---------------------------------------------------------------------------------------------
// A mint per kind of material, through the broker, against the tests' peers: oidc-provider and
// the cloud token services, with the Workload API peer for SVIDs (reused, so that its signing
// is not timed). Each iteration registers the material again (dropping the cached token) and
// asks once. The baselines are one bare HttpClient POST of an equivalent request to the same
// peer: the broker, the minter and the identity token's cost show in the ratio.

struct Federation {
  awaken::test::TempDir dir;
  awaken::test::WorkloadPeer peer;
  std::string jwks = "http://127.0.0.1:" + std::to_string(peer.control_port()) + "/jwks";
  awaken::test::PeerProcess cloud{"cloud_sts_server.mjs", {"--jwks", jwks}};
  std::unique_ptr<awaken::test::PeerProcess> oidc;
  asio::io_context io;
  std::optional<awaken::spiffe::JwtSource> source;
  std::shared_ptr<awaken::spiffe::X509Source> x509;
  std::optional<awaken::http::HttpClient> http;
  std::unique_ptr<AwakenBroker> broker;
  std::string token_file = dir.path() + "/token";
  std::map<std::string, std::pair<CredentialMaterial, std::string>> kinds;  // name -> material, scope

  std::string cloud_url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(cloud.info()["port"].get<int>()) + path;
  }
  std::string post(const std::string& url, std::string body) {
    awaken::http::HttpRequest r;
    r.method = "POST";
    r.url = url;
    r.body = std::move(body);
    r.headers.push_back({"content-type", "application/x-www-form-urlencoded"});
    return awaken::test::run(io, http->send(std::move(r))).body;
  }

  Federation() {
    peer.control("/reuse_svids?on=1");
    std::ofstream{dir.path() + "/root.pem"} << peer.control("/x509/ca")["example_root_pem"].get<std::string>();
    oidc = std::make_unique<awaken::test::PeerProcess>(
        "oidc_server.mjs",
        std::vector<std::string>{"--jwks", jwks, "--tls", dir.path(), "--client-ca", dir.path() + "/root.pem"});
    awaken::http::HttpClientOptions options;
    options.ca_file = oidc->info()["ca_file"];
    http.emplace(io.get_executor(), options);
    awaken::BrokerOptions broker_options;
    broker_options.http = *http;
    broker = std::make_unique<AwakenBroker>(io.get_executor(), broker_options);
    auto jb = awaken::spiffe::JwtSource::builder();
    jb.endpoint(peer.endpoint());
    source.emplace(awaken::test::run(io, jb.build(io.get_executor())));
    auto xb = awaken::spiffe::X509Source::builder();
    xb.endpoint(peer.endpoint());
    x509 = std::make_shared<awaken::spiffe::X509Source>(awaken::test::run(io, xb.build(io.get_executor())));
    const std::string endpoint = oidc->info()["token_endpoint"];
    const std::string https_endpoint = oidc->info()["https_token_endpoint"];
    const auto google_audience = cloud.info()["google_audience"].get<std::string>();

    awaken::OAuthClientCredentials secret;
    secret.token_endpoint = endpoint;
    secret.client_id = "awaken-basic";
    secret.client_secret = RedactedString{"s3cret-value"};
    kinds.insert({"oauth_client_secret", {awaken::oauth_client_credentials(secret), "api:read"}});
    for (const char* type : {"jwt-bearer", "jwt-spiffe"})
      kinds.insert(
          {std::string{"spiffe_assertion_"} + type,
           {awaken::material_from_config(
                {{"kind", "spiffe_client_credentials"}, {"token_endpoint", endpoint}, {"client_assertion_type", type}},
                *source),
            "api:read"}});
    awaken::FederatedOAuth mtls;
    mtls.token_endpoint = https_endpoint;
    mtls.client_id = "awaken-mtls";
    mtls.tls_client_certificate = x509;
    kinds.insert({"spiffe_mtls", {awaken::federated_oauth(mtls), "api:read"}});
    kinds.insert(
        {"jwt_bearer_grant",
         {awaken::material_from_config(
              {{"kind", "jwt_bearer_grant"}, {"token_endpoint", endpoint}, {"jwt_svid", nlohmann::json::object()}},
              *source),
          "api:read"}});
    kinds.insert(
        {"token_exchange",
         {awaken::material_from_config({{"kind", "spiffe_token_exchange"}, {"token_endpoint", endpoint}}, *source),
          "api:read"}});
    std::ofstream{token_file} << post(cloud_url("/issue?aud=" + google_audience + "&ttl=3600"), {});
    const std::string iam =
        cloud_url("/v1/projects/-/serviceAccounts/bench@p.iam.gserviceaccount.com:generateAccessToken");
    const nlohmann::json account{{"type", "external_account"},
                                 {"audience", google_audience},
                                 {"subject_token_type", "urn:ietf:params:oauth:token-type:jwt"},
                                 {"token_url", cloud_url("/v1/token")},
                                 {"service_account_impersonation_url", iam},
                                 {"credential_source", {{"file", token_file}}}};
    kinds.insert({"google_external_account",
                  {CredentialMaterial::from_config({{"kind", "google_external_account"},
                                                    {"credentials", account},
                                                    {"allowed_urls", {cloud_url("/v1/token"), iam}}}),
                   ""}});
    const std::string azure_file = dir.path() + "/azure";
    std::ofstream{azure_file} << post(cloud_url("/issue?aud=api://AzureADTokenExchange&ttl=3600"), {});
    kinds.insert({"azure_workload_identity",
                  {CredentialMaterial::from_config({{"kind", "azure_workload_identity"},
                                                    {"client_id", cloud.info()["azure_client_id"]},
                                                    {"tenant_id", cloud.info()["azure_tenant_id"]},
                                                    {"authority_host", cloud_url("/")},
                                                    {"token_file", azure_file}}),
                   "https://management.azure.com/.default"}});
    const std::string aws_file = dir.path() + "/aws";
    std::ofstream{aws_file} << post(cloud_url("/issue?aud=sts.amazonaws.com&ttl=3600"), {});
    kinds.insert({"aws_web_identity",
                  {CredentialMaterial::from_config({{"kind", "aws_web_identity"},
                                                    {"role_arn", "arn:aws:iam::123456789012:role/bench"},
                                                    {"sts_endpoint", cloud_url("/")},
                                                    {"token_file", aws_file}}),
                   ""}});
  }
};

std::unique_ptr<Federation>& federation() {
  static std::unique_ptr<Federation> f;
  if (!f) f = std::make_unique<Federation>();
  return f;
}

void mint_kind(benchmark::State& state, const std::string& kind) {
  Federation& f = *federation();
  const auto& [material, scope] = f.kinds.at(kind);
  for (auto _ : state) {
    f.broker->register_material(kind, material);
    const IssuedToken t = awaken::test::run(f.io, f.broker->token_for(kind, scope));
    benchmark::DoNotOptimize(t);
  }
}

// One bare POST to oidc-provider: client_secret_post client credentials.
void baseline_oidc(benchmark::State& state) {
  Federation& f = *federation();
  const std::string endpoint = f.oidc->info()["token_endpoint"];
  for (auto _ : state)
    benchmark::DoNotOptimize(f.post(
        endpoint, "grant_type=client_credentials&scope=api%3Aread&client_id=awaken-post&client_secret=s3cret-value"));
}

// One bare POST to the cloud peer: an Entra ID client credentials request with a ready assertion.
void baseline_cloud(benchmark::State& state) {
  Federation& f = *federation();
  const std::string assertion = f.post(f.cloud_url("/issue?aud=api://AzureADTokenExchange&ttl=3600"), {});
  const std::string url =
      f.cloud_url("/" + f.cloud.info()["azure_tenant_id"].get<std::string>() + "/oauth2/v2.0/token");
  const std::string form =
      "grant_type=client_credentials&client_id=" + f.cloud.info()["azure_client_id"].get<std::string>() +
      "&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
      "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
      "&client_assertion=" +
      assertion;
  for (auto _ : state) benchmark::DoNotOptimize(f.post(url, form));
}

const char* const oidc_kinds[] = {"oauth_client_secret",
                                  "spiffe_assertion_jwt-bearer",
                                  "spiffe_assertion_jwt-spiffe",
                                  "spiffe_mtls",
                                  "jwt_bearer_grant",
                                  "token_exchange"};
const char* const cloud_kinds[] = {"google_external_account", "azure_workload_identity", "aws_web_identity"};

void register_federation() {
  auto mint = [](benchmark::internal::Benchmark* b) {
    b->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(40)->Repetitions(3)->DisplayAggregatesOnly(true);
  };
  benchmark::RegisterBenchmark("mint/baseline_oidc_post", baseline_oidc)->Apply(mint);
  for (const char* k : oidc_kinds)
    benchmark::RegisterBenchmark((std::string{"mint/"} + k).c_str(), mint_kind, std::string{k})->Apply(mint);
  benchmark::RegisterBenchmark("mint/baseline_cloud_post", baseline_cloud)->Apply(mint);
  for (const char* k : cloud_kinds)
    benchmark::RegisterBenchmark((std::string{"mint/"} + k).c_str(), mint_kind, std::string{k})->Apply(mint);
}

}  // namespace

int main(int argc, char** argv) {
  baseline();
  warm();
  register_federation();
  benchmark::Initialize(&argc, argv);
  awaken::bench::MedianCapture reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  const auto ns = [&](const std::string& name) { return reporter.time(name, true); };
  const std::string base1 = "hit/baseline_shared_mutex_map/repeats:5/real_time/threads:1";
  const std::string base2 = "hit/baseline_shared_mutex_map/repeats:5/real_time/threads:2";
  const std::string try1 = "hit/try_cached/repeats:5/real_time/threads:1";
  const std::string try2 = "hit/try_cached/repeats:5/real_time/threads:2";
  const std::string aw = "hit/co_await_token_for/repeats:5/real_time";
  std::printf("\n");
  if (ns(base1) > 0 && ns(try1) > 0 && ns(aw) > 0) {
    std::printf(
        "hit, 1 thread:   try_cached %.1f ns (%.2f allocs), co_await token_for %.1f ns (%.2f allocs), "
        "baseline %.1f ns (%.2f allocs)\n",
        ns(try1), reporter.counter(try1, "allocs_per_call"), ns(aw), reporter.counter(aw, "allocs_per_call"), ns(base1),
        reporter.counter(base1, "allocs_per_call"));
    std::printf("                 try_cached/baseline = %.2fx, token_for/baseline = %.2fx\n", ns(try1) / ns(base1),
                ns(aw) / ns(base1));
  }
  // With threads, Google Benchmark's time per iteration is wall time over all threads' iterations:
  // its inverse is the throughput.
  if (ns(try2) > 0 && ns(base2) > 0) {
    std::printf("hit throughput:  try_cached 2 threads / 1 thread = %.2fx (%.1f M/s vs %.1f M/s)\n",
                ns(try1) / ns(try2), 1e3 / ns(try2), 1e3 / ns(try1));
    std::printf("                 baseline   2 threads / 1 thread = %.2fx (%.1f M/s vs %.1f M/s)\n",
                ns(base1) / ns(base2), 1e3 / ns(base2), 1e3 / ns(base1));
    std::printf("                 try_cached/baseline at 2 threads = %.2fx the throughput\n", ns(base2) / ns(try2));
  }
  for (const char* n : {"1000", "10000"}) {
    const std::string name = std::string{"cold/20ms_mint/"} + n + "/iterations:5/repeats:3/real_time";
    const std::string base = std::string{"cold/baseline_timer_wait/"} + n + "/iterations:5/repeats:3/real_time";
    if (reporter.time(name, true) > 0 && reporter.time(base, true) > 0)
      std::printf(
          "cold key, %5s callers: %.1f ms wall, %.0f mint(s), %.0f answered; "
          "awaken/timer_wait = %.2fx (%.1f ms), %.1f vs %.1f allocs per caller\n",
          n, reporter.time(name, true), reporter.counter(name, "mints"), reporter.counter(name, "answered"),
          reporter.time(name, true) / reporter.time(base, true), reporter.time(base, true),
          reporter.counter(name, "allocs_per_caller"), reporter.counter(base, "allocs_per_caller"));
  }
  const std::string failing = "cold/20ms_permanent_failure/100/iterations:5/repeats:3/real_time";
  if (reporter.time(failing, true) > 0)
    std::printf("permanent failure, 100 callers: %.1f ms wall (%.2fx the 20 ms mint), %.0f mint(s), %.0f answered\n",
                reporter.time(failing, true), reporter.time(failing, true) / 20.0, reporter.counter(failing, "mints"),
                reporter.counter(failing, "answered"));
  const auto mint_ms = [&](const std::string& n) {
    return reporter.time("mint/" + n + "/iterations:40/repeats:3/real_time", true);
  };
  if (mint_ms("baseline_oidc_post") > 0) {
    std::printf("\nmint per kind (broker, one token each), against one bare POST to the same peer:\n");
    std::printf("  %-30s %7.2f ms\n", "baseline: POST to oidc-provider", mint_ms("baseline_oidc_post"));
    for (const char* k : oidc_kinds)
      std::printf("  %-30s %7.2f ms  %.2fx\n", k, mint_ms(k), mint_ms(k) / mint_ms("baseline_oidc_post"));
    std::printf("  %-30s %7.2f ms\n", "baseline: POST to the cloud peer", mint_ms("baseline_cloud_post"));
    for (const char* k : cloud_kinds)
      std::printf("  %-30s %7.2f ms  %.2fx\n", k, mint_ms(k), mint_ms(k) / mint_ms("baseline_cloud_post"));
  }
  federation().reset();
  return 0;
}
