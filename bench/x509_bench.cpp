// X.509 benchmarks, each against a baseline measured in the same run:
// - full mTLS handshakes over loopback with SPIFFE contexts (the SVID chosen per handshake,
//   verification by verify_x509_svid and an authorizer), against the same handshake on contexts
//   configured by hand with OpenSSL (fixed certificate, a CA store, OpenSSL's verification);
// - verify_x509_svid against a raw X509_verify_cert of the same chain and authority;
// - the current SVID from an X509Source against JwtSource's bundle lookup, on 1 and 2 threads,
//   both on the Workload API peer.
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <cstdio>
#include <future>
#include <thread>

#include <benchmark/benchmark.h>
#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>

#include <awaken/spiffe/jwt_source.hpp>
#include <awaken/spiffe/tls.hpp>
#include <awaken/spiffe/x509_source.hpp>

#include "bench_report.hpp"
#include "support/certs.hpp"
#include "support/workload_peer.hpp"

namespace {

namespace spiffe = awaken::spiffe;
using asio::ip::tcp;
using namespace std::chrono_literals;

// Two workloads of example.org, certificates made here.
struct Identities {
  awaken::test::TestAuthority authority{"example.org"};
  awaken::test::Issued server_leaf = authority.leaf(awaken::test::leaf_spec("spiffe://example.org/server"));
  awaken::test::Issued client_leaf = authority.leaf(awaken::test::leaf_spec("spiffe://example.org/client"));
  spiffe::X509BundleSet bundles{std::vector<spiffe::X509Bundle>{authority.bundle()}};
  std::shared_ptr<spiffe::StaticX509Source> server =
      std::make_shared<spiffe::StaticX509Source>(authority.svid(server_leaf), bundles);
  std::shared_ptr<spiffe::StaticX509Source> client =
      std::make_shared<spiffe::StaticX509Source>(authority.svid(client_leaf), bundles);
};
Identities* ids = nullptr;

// A context configured by hand: fixed certificate and chain, a store with the root, OpenSSL's
// own verification; resumption off as on awaken's contexts, so both do full handshakes.
void configure_by_hand(asio::ssl::context& ctx, const awaken::test::Issued& leaf, bool server) {
  SSL_CTX* c = ctx.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(c, 0);
  SSL_CTX_use_certificate(c, leaf.cert.get());
  SSL_CTX_use_PrivateKey(c, leaf.key.get());
  SSL_CTX_add1_chain_cert(c, ids->authority.intermediate.cert.get());
  X509_STORE_add_cert(SSL_CTX_get_cert_store(c), ids->authority.root.cert.get());
  SSL_CTX_set_verify(c, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER, nullptr);
}

// Handshakes over one loopback connection pair per iteration, both ends on one thread.
void handshakes(benchmark::State& state, asio::ssl::context& server_ctx, asio::ssl::context& client_ctx) {
  asio::io_context io;
  tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
  const auto endpoint = acceptor.local_endpoint();
  constexpr auto tuple = asio::experimental::as_tuple(asio::use_awaitable);
  for (auto _ : state) {
    asio::ssl::stream<tcp::socket> server{io, server_ctx};
    asio::ssl::stream<tcp::socket> client{io, client_ctx};
    int done = 0;
    bool failed = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await acceptor.async_accept(server.next_layer(), asio::use_awaitable);
          auto [ec] = co_await server.async_handshake(asio::ssl::stream_base::server, tuple);
          failed |= static_cast<bool>(ec);
          ++done;
        },
        [](std::exception_ptr) {});
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await client.next_layer().async_connect(endpoint, asio::use_awaitable);
          auto [ec] = co_await client.async_handshake(asio::ssl::stream_base::client, tuple);
          failed |= static_cast<bool>(ec);
          ++done;
        },
        [](std::exception_ptr) {});
    io.restart();
    while (done < 2 && io.run_one() > 0) {
    }
    if (failed) {
      state.SkipWithError("handshake failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void handshake_spiffe(benchmark::State& state) {
  asio::ssl::context server_ctx{asio::ssl::context::tls_server};
  asio::ssl::context client_ctx{asio::ssl::context::tls_client};
  spiffe::configure_mtls_server(server_ctx, {ids->server, ids->server},
                                spiffe::authorize_id(spiffe::SpiffeId::parse("spiffe://example.org/client")));
  spiffe::configure_mtls_client(client_ctx, {ids->client, ids->client},
                                spiffe::authorize_id(spiffe::SpiffeId::parse("spiffe://example.org/server")));
  handshakes(state, server_ctx, client_ctx);
}

void handshake_by_hand(benchmark::State& state) {
  asio::ssl::context server_ctx{asio::ssl::context::tls_server};
  asio::ssl::context client_ctx{asio::ssl::context::tls_client};
  configure_by_hand(server_ctx, ids->server_leaf, true);
  configure_by_hand(client_ctx, ids->client_leaf, false);
  handshakes(state, server_ctx, client_ctx);
}

void verify_spiffe(benchmark::State& state) {
  const auto chain = ids->authority.chain(ids->client_leaf);
  for (auto _ : state) {
    auto verified = spiffe::verify_x509_svid(chain, ids->bundles);
    benchmark::DoNotOptimize(verified);
  }
}

// The same chain and authority, X509_verify_cert with a store made once.
void verify_raw(benchmark::State& state) {
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ids->authority.root.cert.get());
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  sk_X509_push(untrusted, ids->authority.intermediate.cert.get());
  for (auto _ : state) {
    X509_STORE_CTX* ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, ids->client_leaf.cert.get(), untrusted);
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN);
    const int ok = X509_verify_cert(ctx);
    benchmark::DoNotOptimize(ok);
    X509_STORE_CTX_free(ctx);
  }
  sk_X509_free(untrusted);
  X509_STORE_free(store);
}

BENCHMARK(handshake_spiffe)
    ->Name("handshake/spiffe_mtls")
    ->Unit(benchmark::kMicrosecond)
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK(handshake_by_hand)
    ->Name("handshake/openssl_by_hand")
    ->Unit(benchmark::kMicrosecond)
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK(verify_spiffe)
    ->Name("verify/verify_x509_svid")
    ->Unit(benchmark::kMicrosecond)
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK(verify_raw)
    ->Name("verify/X509_verify_cert")
    ->Unit(benchmark::kMicrosecond)
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);

// Both sources on the Workload API peer, on an io_context of their own thread.
struct World {
  awaken::test::WorkloadPeer peer;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  std::thread thread{[this] { io.run(); }};
  spiffe::JwtSource jwt =
      asio::co_spawn(io, spiffe::JwtSource::builder().endpoint(peer.endpoint()).build(io.get_executor()),
                     asio::use_future)
          .get();
  spiffe::X509Source x509 =
      asio::co_spawn(io, spiffe::X509Source::builder().endpoint(peer.endpoint()).build(io.get_executor()),
                     asio::use_future)
          .get();
  ~World() {
    asio::co_spawn(io, jwt.shutdown(), asio::use_future).get();
    asio::co_spawn(io, x509.shutdown(), asio::use_future).get();
    guard.reset();
    thread.join();
  }
};
World* world = nullptr;
const spiffe::TrustDomain example = spiffe::TrustDomain::parse("example.org");

void x509_svid_lookup(benchmark::State& state) {
  for (auto _ : state) {
    auto svid = world->x509.svid();
    benchmark::DoNotOptimize(svid);
  }
}
void jwt_bundle_lookup(benchmark::State& state) {
  for (auto _ : state) {
    auto bundle = world->jwt.bundle_for_trust_domain(example);
    benchmark::DoNotOptimize(bundle);
  }
}
BENCHMARK(x509_svid_lookup)
    ->Name("lookup/x509_source_svid")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK(jwt_bundle_lookup)
    ->Name("lookup/jwt_source_bundle")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);

}  // namespace

int main(int argc, char** argv) {
  Identities identities;
  ids = &identities;
  World w;
  world = &w;
  benchmark::Initialize(&argc, argv);
  awaken::bench::MedianCapture reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  const auto real = [&](const std::string& name) { return reporter.time(name, true); };
  const double hs = real("handshake/spiffe_mtls"), hh = real("handshake/openssl_by_hand");
  if (hs > 0 && hh > 0)
    std::printf("\nfull mTLS handshakes over loopback: SPIFFE contexts %.0f/s, by hand %.0f/s: %.2fx the rate\n",
                1e6 / hs, 1e6 / hh, hh / hs);
  const double vs = real("verify/verify_x509_svid"), vr = real("verify/X509_verify_cert");
  if (vs > 0 && vr > 0)
    std::printf("verify_x509_svid %.1f us, raw X509_verify_cert %.1f us: %.2fx the rate\n", vs, vr, vr / vs);
  const std::string x1 = "lookup/x509_source_svid/repeats:5/real_time/threads:1";
  const std::string x2 = "lookup/x509_source_svid/repeats:5/real_time/threads:2";
  const std::string j1 = "lookup/jwt_source_bundle/repeats:5/real_time/threads:1";
  const std::string j2 = "lookup/jwt_source_bundle/repeats:5/real_time/threads:2";
  const double a1 = real(x1), a2 = real(x2), b1 = real(j1), b2 = real(j2);  // ns
  if (a1 > 0 && b1 > 0 && a2 > 0 && b2 > 0)
    std::printf(
        "current SVID %.1f ns vs JwtSource bundle lookup %.1f ns: %.2fx the time; 2 threads / 1: %.2fx vs %.2fx\n", a1,
        b1, a1 / b1, a1 / a2, b1 / b2);
  return 0;
}
