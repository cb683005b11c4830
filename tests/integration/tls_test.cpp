// X509Source against the Workload API peer, and SPIFFE (m)TLS over loopback: handshakes with
// the peer's SVIDs, refusals with their reasons, rotation under open connections, no session
// resumption, and interop with node's TLS stack.
#include <openssl/ssl.h>

#include <sys/stat.h>
#include <atomic>
#include <fstream>
#include <optional>
#include <span>
#include <stdexcept>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/ssl.hpp>
#include <asio/streambuf.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>

#include <awaken/spiffe/tls.hpp>
#include <awaken/spiffe/x509_source.hpp>

#include "support/certs.hpp"
#include "support/errors.hpp"
#include "support/names.hpp"
#include "support/peer.hpp"
#include "support/source_support.hpp"
#include "support/workload_peer.hpp"

using asio::ip::tcp;
using namespace awaken::spiffe;
using SslStream = asio::ssl::stream<tcp::socket>;

namespace {

constexpr auto tuple = asio::experimental::as_tuple(asio::use_awaitable);

awaken::spiffe::X509SourceBuilder quick(const WorkloadPeer& peer, std::shared_ptr<CountingMetrics> metrics = nullptr) {
  auto b = X509Source::builder();
  b.endpoint(peer.endpoint()).reconnect_backoff(10ms, 100ms).initial_sync_timeout(10s).shutdown_timeout(5s);
  if (metrics) b.metrics(std::move(metrics));
  return b;
}

// An SVID the peer issues for `id` (signed by `td`'s CA), with the peer's bundles.
std::shared_ptr<StaticX509Source> issued(const WorkloadPeer& peer, asio::io_context& io, const std::string& id,
                                         const std::string& td = "example.org") {
  const auto reply = peer.control("/x509/issue?id=" + id + "&td=" + td);
  auto svid =
      X509Svid::from_pem(reply["chain_pem"].get<std::string>(), RedactedString{reply["key_pem"].get<std::string>()});
  awaken::spiffe::WorkloadApiClient client{io.get_executor(), peer.endpoint()};
  auto bundles = run(io, client.fetch_x509_bundles());
  return std::make_shared<StaticX509Source>(std::move(svid), std::move(bundles));
}

struct Accepted {
  std::error_code ec;
  std::optional<SpiffeId> peer;
  std::optional<awaken::Error> refusal;
};

// An echo server on loopback: every connection's handshake is recorded, then lines echoed.
class EchoServer {
 public:
  EchoServer(asio::io_context& io, asio::ssl::context& ctx)
      : ctx_(ctx), acceptor_(io, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}) {
    asio::co_spawn(io, accept_loop(), asio::detached);
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  std::vector<Accepted> accepted;

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(tuple);
      if (ec) co_return;
      asio::co_spawn(acceptor_.get_executor(), session(std::move(socket)), asio::detached);
    }
  }
  asio::awaitable<void> session(tcp::socket socket) {
    SslStream stream{std::move(socket), ctx_};
    auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, tuple);
    accepted.push_back({ec, awaken::spiffe::peer_spiffe_id(stream), awaken::spiffe::peer_refusal(stream)});
    if (ec) co_return;
    asio::streambuf buffer;
    for (;;) {
      auto [rec, n] = co_await asio::async_read_until(stream, buffer, '\n', tuple);
      if (rec) co_return;
      auto [wec, m] = co_await asio::async_write(stream, buffer.data(), tuple);
      buffer.consume(n);
      if (wec) co_return;
    }
  }
  asio::ssl::context& ctx_;
  tcp::acceptor acceptor_;
};

struct Connected {
  std::error_code ec;
  std::unique_ptr<SslStream> stream;
  std::optional<SpiffeId> peer;
  std::optional<awaken::Error> refusal;
  std::string peer_leaf_der;
};

asio::awaitable<Connected> connect(asio::ssl::context& ctx, unsigned short port, SSL_SESSION* resume = nullptr) {
  auto executor = co_await asio::this_coro::executor;
  Connected out;
  out.stream = std::make_unique<SslStream>(executor, ctx);
  co_await out.stream->next_layer().async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
  if (resume != nullptr) SSL_set_session(out.stream->native_handle(), resume);
  auto [ec] = co_await out.stream->async_handshake(asio::ssl::stream_base::client, tuple);
  out.ec = ec;
  out.peer = awaken::spiffe::peer_spiffe_id(*out.stream);
  out.refusal = awaken::spiffe::peer_refusal(*out.stream);
  if (X509* leaf = SSL_get0_peer_certificate(out.stream->native_handle()))
    out.peer_leaf_der = awaken::spiffe::Certificate::from_native(leaf).pem();
  co_return out;
}

asio::awaitable<std::string> echo(SslStream& stream, std::string line) {
  co_await asio::async_write(stream, asio::buffer(line + "\n"), asio::use_awaitable);
  asio::streambuf buffer;
  const std::size_t n = co_await asio::async_read_until(stream, buffer, '\n', asio::use_awaitable);
  std::string out{asio::buffers_begin(buffer.data()), asio::buffers_begin(buffer.data()) + static_cast<long>(n) - 1};
  co_return out;
}

// spiffe://example.org/server and spiffe://example.org/client, made here, trusting `bundles`.
struct TwoWorkloads {
  std::shared_ptr<StaticX509Source> server, client;
};
TwoWorkloads two_workloads(const awaken::test::TestAuthority& authority, const X509BundleSet& bundles) {
  auto make = [&](const char* id) {
    return std::make_shared<StaticX509Source>(authority.svid(authority.leaf(awaken::test::leaf_spec(id))), bundles);
  };
  return {make("spiffe://example.org/server"), make("spiffe://example.org/client")};
}

}  // namespace

TEST_CASE("X509Source syncs the peer's SVIDs and bundles and follows rotations", "[x509source]") {
  WorkloadPeer peer;
  asio::io_context io;
  auto source = run(io, quick(peer).build(io.get_executor()));
  CHECK(source.is_healthy());
  CHECK(source.sequence() == 1);
  const auto svid = source.svid();
  CHECK(svid->spiffe_id().str() == "spiffe://example.org/workload");
  CHECK(svid->hint() == "primary");
  CHECK(svid->chain().size() == 2);
  const auto context = source.x509_context();
  CHECK(context->svids.size() == 2);
  CHECK(context->bundles.size() == 2);
  CHECK(source.x509_bundle_for_trust_domain(TrustDomain::parse("federated.org")) != nullptr);
  CHECK(source.x509_bundle_for_trust_domain(TrustDomain::parse("other.org")) == nullptr);

  // The source's own SVID verifies against its own bundles.
  CHECK(awaken::spiffe::verify_x509_svid(svid->chain(), source).spiffe_id == svid->spiffe_id());

  // A rotation is published; a repeat of the same message is not.
  auto updates = source.updates();
  peer.control("/x509/rotate");
  CHECK(run(io, updates.changed()) == 2);
  CHECK(!(source.svid()->leaf() == svid->leaf()));
  peer.control("/x509/push?mode=same");
  peer.control("/x509/rotate?key=ed25519");
  CHECK(run(io, updates.changed()) == 3);

  // After the stream ends, or is reset, the source reconnects and rotations keep arriving.
  peer.control("/end");
  peer.control("/x509/rotate?key=ec384");
  CHECK(run_until(io, [&] { return source.sequence() >= 4; }));
  CHECK(run_until(io, [&] { return peer.control("/stats")["x509_streams"] == 1; }));
  peer.control("/reset");
  peer.control("/x509/rotate?key=rsa2048");
  CHECK(run_until(io, [&] { return source.sequence() >= 5; }));
  CHECK(source.svid()->chain().size() == 2);

  // A picker by hint serves the other SVID.
  auto other = run(io, quick(peer).svid_picker(awaken::spiffe::pick_by_hint("secondary")).build(io.get_executor()));
  CHECK(other.svid()->spiffe_id().str() == "spiffe://example.org/other");
  run(io, other.shutdown());
  run(io, source.shutdown());
  CHECK(code_of([&] { (void)source.svid(); }) == spiffe_errc::source_closed);
}

TEST_CASE("X509Source keeps the last good context through bad and oversized updates", "[x509source]") {
  WorkloadPeer peer;
  asio::io_context io;
  auto metrics = std::make_shared<CountingMetrics>();
  auto source = run(io, quick(peer, metrics).build(io.get_executor()));
  const auto good = source.x509_context();
  for (const char* mode : {"malformed", "empty", "too_many", "huge"}) {
    INFO(mode);
    const int before = metrics->count(MetricsErrorKind::update_rejected);
    peer.control(std::string{"/x509/push?mode="} + mode);
    CHECK(run_until(io, [&] { return metrics->count(MetricsErrorKind::update_rejected) == before + 1; }));
    CHECK(*source.x509_context() == *good);
    CHECK(source.sequence() == 1);
  }
  CHECK(metrics->count(MetricsErrorKind::limit_max_bundles) == 1);
  CHECK(metrics->count(MetricsErrorKind::limit_max_bundle_der_bytes) == 1);
  // A picker that fits nothing rejects the update; nothing is published.
  auto picky = quick(peer, metrics).svid_picker(awaken::spiffe::pick_by_hint("absent")).initial_sync_timeout(300ms);
  CHECK(code_of([&] { (void)run(io, picky.build(io.get_executor())); }) == spiffe_errc::initial_sync_timeout);
  CHECK(metrics->count(MetricsErrorKind::no_suitable_svid) >= 1);
  run(io, source.shutdown());
}

TEST_CASE("A picker that throws costs its update, not the source", "[x509source]") {
  WorkloadPeer peer;
  asio::io_context io;
  auto metrics = std::make_shared<CountingMetrics>();
  std::atomic<bool> throwing{false};
  std::atomic<int> thrown{0};
  auto builder = quick(peer, metrics).svid_picker([&](std::span<const awaken::spiffe::X509Svid>) {
    if (throwing.load()) {
      ++thrown;
      throw std::runtime_error("the user's picker failed");
    }
    return std::optional<std::size_t>{0};
  });
  auto source = run(io, builder.build(io.get_executor()));
  CHECK(source.sequence() == 1);
  throwing = true;
  peer.control("/x509/rotate");
  CHECK(run_until(io, [&] { return thrown.load() >= 1 && metrics->reconnects >= 1; }));
  CHECK(source.sequence() == 1);  // the update was lost, the last good set kept
  CHECK_NOTHROW(source.svid());   // and the source is still open
  throwing = false;
  peer.control("/x509/rotate");
  CHECK(run_until(
      io, [&] { return source.sequence() >= 2; }, 15s));
  CHECK(source.is_healthy());
  run(io, source.shutdown());
}

TEST_CASE("X509Source fails fast where retrying cannot help, and waits out no identity", "[x509source]") {
  WorkloadPeer peer;
  asio::io_context io;
  peer.control("/fail?code=12&count=100&method=FetchX509SVID&message=not%20here");
  CHECK(code_of([&] { (void)run(io, quick(peer).build(io.get_executor())); }) == grpc_status::unimplemented);
  peer.control("/fail?clear=1");
  peer.control("/fail?code=7&count=1&method=FetchX509SVID&message=no%20identity%20issued");
  auto metrics = std::make_shared<CountingMetrics>();
  auto source = run(io, quick(peer, metrics).build(io.get_executor()));
  CHECK(metrics->count(MetricsErrorKind::no_identity_issued) == 1);
  // The agent is killed and restarted: the source reconnects and picks up the new SVIDs.
  peer.restart();
  peer.control("/x509/rotate");
  CHECK(run_until(
      io, [&] { return source.sequence() >= 2; }, 15s));
  CHECK(source.is_healthy());
  run(io, source.shutdown());
}

TEST_CASE("mTLS between two workloads on the peer's SVIDs; refusals name their reason", "[tls]") {
  WorkloadPeer peer;
  asio::io_context io;  // first: the contexts hold sources whose timers belong to it
  asio::ssl::context server_ctx{asio::ssl::context::tls_server};
  asio::ssl::context client_ctx{asio::ssl::context::tls_client};
  auto source = run(io, quick(peer).build(io.get_executor()));
  const auto workload = SpiffeId::parse("spiffe://example.org/workload");
  const auto other = SpiffeId::parse("spiffe://example.org/other");
  awaken::spiffe::configure_mtls_server(server_ctx, source, authorize_id(other));
  EchoServer server{io, server_ctx};

  // The client is spiffe://example.org/other.
  auto other_source = run(io, quick(peer).svid_picker(awaken::spiffe::pick_by_id(other)).build(io.get_executor()));
  awaken::spiffe::configure_mtls_client(client_ctx, other_source, authorize_id(workload));
  auto c = run(io, connect(client_ctx, server.port()));
  REQUIRE(!c.ec);
  CHECK(c.peer == workload);
  CHECK(run(io, echo(*c.stream, "hello")) == "hello");
  REQUIRE(run_until(io, [&] { return server.accepted.size() == 1; }));
  CHECK(server.accepted[0].peer == other);

  // A client of an ID the server does not authorize: a TLS alert, and a clear reason.
  auto intruder = issued(peer, io, "spiffe://example.org/intruder");
  asio::ssl::context intruder_ctx{asio::ssl::context::tls_client};
  awaken::spiffe::configure_mtls_client(intruder_ctx, TlsSources{intruder, intruder}, authorize_any());
  auto refused = run(io, connect(intruder_ctx, server.port()));
  if (!refused.ec) {  // TLS 1.3: the client learns of the alert at its first read
    auto [ec, n] = run(io, [&]() -> asio::awaitable<std::tuple<std::error_code, std::size_t>> {
      co_await asio::async_write(*refused.stream, asio::buffer("x\n", 2), tuple);
      char b[8];
      co_return co_await refused.stream->async_read_some(asio::buffer(b), tuple);
    }());
    CHECK(ec);
  }
  CHECK(run_until(io, [&] { return server.accepted.size() == 2; }));
  CHECK(server.accepted[1].ec);
  REQUIRE(server.accepted[1].refusal);
  CHECK(server.accepted[1].refusal->code() == spiffe_errc::peer_not_authorized);
  CHECK_THAT(server.accepted[1].refusal->what(), Contains("spiffe://example.org/intruder"));
  CHECK(!server.accepted[1].peer);

  // A federated.org client signed by its own CA verifies (the federated bundle), then is refused
  // by an authorizer for example.org members; one claiming federated.org under example.org's CA
  // is refused as untrusted.
  asio::ssl::context members_ctx{asio::ssl::context::tls_server};
  awaken::spiffe::configure_mtls_server(members_ctx, source, authorize_member_of(TrustDomain::parse("example.org")));
  EchoServer members{io, members_ctx};
  for (auto [td, expected] : {std::pair{std::string{"federated.org"}, spiffe_errc::peer_not_authorized},
                              std::pair{std::string{"example.org"}, spiffe_errc::untrusted_chain}}) {
    auto fed = issued(peer, io, "spiffe://federated.org/client", td);
    asio::ssl::context fed_ctx{asio::ssl::context::tls_client};
    awaken::spiffe::configure_mtls_client(fed_ctx, TlsSources{fed, fed}, authorize_any());
    const std::size_t before = members.accepted.size();
    (void)run(io, connect(fed_ctx, members.port()));
    CHECK(run_until(io, [&] { return members.accepted.size() == before + 1; }));
    REQUIRE(members.accepted.back().refusal);
    CHECK(members.accepted.back().refusal->code() == expected);
  }

  // A client that trusts only federated.org refuses the server: no bundle for example.org.
  auto lone = std::make_shared<StaticX509Source>(
      std::nullopt,
      X509BundleSet{std::vector{*source.x509_bundle_for_trust_domain(TrustDomain::parse("federated.org"))}});
  asio::ssl::context lone_ctx{asio::ssl::context::tls_client};
  awaken::spiffe::configure_tls_client(lone_ctx, lone, authorize_any());
  auto no_bundle = run(io, connect(lone_ctx, server.port()));
  CHECK(no_bundle.ec);
  REQUIRE(no_bundle.refusal);
  CHECK(no_bundle.refusal->code() == spiffe_errc::bundle_not_found);
  run(io, other_source.shutdown());
  run(io, source.shutdown());
}

TEST_CASE("a rotation is served at the next handshake while open connections go on", "[tls]") {
  WorkloadPeer peer;
  asio::io_context io;  // first: the contexts hold sources whose timers belong to it
  asio::ssl::context server_ctx{asio::ssl::context::tls_server};
  asio::ssl::context client_ctx{asio::ssl::context::tls_client};
  auto source = run(io, quick(peer).build(io.get_executor()));
  awaken::spiffe::configure_mtls_server(server_ctx, source, authorize_any());
  awaken::spiffe::configure_mtls_client(client_ctx, source, authorize_any());
  EchoServer server{io, server_ctx};

  auto first = run(io, connect(client_ctx, server.port()));
  REQUIRE(!first.ec);
  CHECK(first.peer_leaf_der == source.svid()->leaf().pem());
  auto updates = source.updates();
  peer.control("/x509/rotate");
  run(io, updates.changed());
  auto second = run(io, connect(client_ctx, server.port()));
  REQUIRE(!second.ec);
  CHECK(second.peer_leaf_der == source.svid()->leaf().pem());
  CHECK(second.peer_leaf_der != first.peer_leaf_der);
  CHECK(run(io, echo(*first.stream, "still here")) == "still here");

  // The authority is replaced: the open connection goes on; a client still holding the old
  // SVID and bundle is refused at its next handshake.
  auto old_client = std::make_shared<StaticX509Source>(*source.svid(), *source.bundle_set());
  asio::ssl::context old_ctx{asio::ssl::context::tls_client};
  awaken::spiffe::configure_mtls_client(old_ctx, TlsSources{old_client, old_client}, authorize_any());
  peer.control("/x509/rotate?authority=1");
  run(io, updates.changed());
  CHECK(run(io, echo(*second.stream, "after the new authority")) == "after the new authority");
  auto stale = run(io, connect(old_ctx, server.port()));
  CHECK(stale.ec);  // the client refuses the server's new chain
  REQUIRE(stale.refusal);
  CHECK(stale.refusal->code() == spiffe_errc::untrusted_chain);
  run(io, source.shutdown());
}

TEST_CASE("no earlier session resumes, TLS 1.2 and 1.3", "[tls]") {
  WorkloadPeer peer;
  asio::io_context io;
  auto source = run(io, quick(peer).build(io.get_executor()));
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    INFO(version);
    asio::ssl::context server_ctx{asio::ssl::context::tls_server};
    asio::ssl::context client_ctx{asio::ssl::context::tls_client};
    awaken::spiffe::configure_mtls_server(server_ctx, source, authorize_any());
    awaken::spiffe::configure_mtls_client(client_ctx, source, authorize_any());
    SSL_CTX_set_max_proto_version(client_ctx.native_handle(), version);
    // Even a client that asks for resumption (its own cache on) gets a full handshake.
    SSL_CTX_set_session_cache_mode(client_ctx.native_handle(), SSL_SESS_CACHE_CLIENT);
    EchoServer server{io, server_ctx};
    auto first = run(io, connect(client_ctx, server.port()));
    REQUIRE(!first.ec);
    CHECK(run(io, echo(*first.stream, "a")) == "a");  // TLS 1.3 tickets arrive after the handshake
    SSL_SESSION* session = SSL_get1_session(first.stream->native_handle());
    REQUIRE(session != nullptr);
    auto second = run(io, connect(client_ctx, server.port(), session));
    SSL_SESSION_free(session);
    REQUIRE(!second.ec);
    CHECK(SSL_session_reused(second.stream->native_handle()) == 0);
    CHECK(SSL_version(second.stream->native_handle()) == version);
    REQUIRE(run_until(io, [&] { return server.accepted.size() == 2; }));
    CHECK(server.accepted[1].peer);  // verified again
  }
  run(io, source.shutdown());
}

TEST_CASE("interop with node's TLS stack from the files fetch-x509 --write makes, both directions", "[tls]") {
  WorkloadPeer peer;
  awaken::test::TempDir dir;
  asio::io_context io;  // first: the contexts hold sources whose timers belong to it
  asio::ssl::context server_ctx{asio::ssl::context::tls_server};
  asio::ssl::context client_ctx{asio::ssl::context::tls_client};
  auto source = run(io, quick(peer).build(io.get_executor()));
  const auto svid = source.svid();
#ifdef AWAKEN_TOOLS_DIR
  // The files `awaken-spiffe fetch-x509 --write` makes, as another tool would read them.
  const int status = awaken::test::run_command({std::string{AWAKEN_TOOLS_DIR} + "/awaken-spiffe", "--endpoint",
                                                peer.endpoint().uri(), "fetch-x509", "--write", dir.path()});
  REQUIRE(status == 0);
  const std::string cert = dir.path() + "/svid.0.pem";
  const std::string key = dir.path() + "/svid.0.key";
  const std::string ca = dir.path() + "/bundle.0.pem";
#else
  auto write = [&](const std::string& name, std::string_view text) {
    std::ofstream{dir.path() + "/" + name} << text;
    return dir.path() + "/" + name;
  };
  const std::string cert = write("svid.pem", svid->chain_pem());
  const std::string key = write("svid.key", svid->private_key_pem().reveal());
  const std::string ca =
      write("bundle.pem", source.x509_bundle_for_trust_domain(TrustDomain::parse("example.org"))->to_pem());
#endif

  // node as the server, awaken as the client.
  awaken::test::PeerProcess node_server{"tls_peer.mjs", {"server", cert, key, ca}};
  awaken::spiffe::configure_mtls_client(client_ctx, source, authorize_id(svid->spiffe_id()));
  auto c = run(io, connect(client_ctx, static_cast<unsigned short>(node_server.info()["port"].get<int>())));
  REQUIRE(!c.ec);
  CHECK(c.peer == svid->spiffe_id());
  CHECK(run(io, echo(*c.stream, "to node")) == "to node");
  const auto seen = node_server.read_line(5s);
  REQUIRE(seen);
  const auto line = nlohmann::json::parse(*seen);
  CHECK(line["authorized"] == true);
  CHECK(line["peer"] == svid->spiffe_id().str());

  // awaken as the server, node as the client (on its own thread of the io_context).
  awaken::spiffe::configure_mtls_server(server_ctx, source, authorize_any());
  EchoServer server{io, server_ctx};
  std::atomic<bool> stop{false};
  std::thread runner{[&] {
    while (!stop) {
      io.restart();
      io.run_for(5ms);
    }
  }};
  awaken::test::PeerProcess node_client{"tls_peer.mjs", {"client", std::to_string(server.port()), cert, key, ca}};
  stop = true;
  runner.join();
  CHECK(node_client.info()["authorized"] == true);
  CHECK(node_client.info()["echo"] == "ping");
  CHECK(node_client.info()["peer"] == svid->spiffe_id().str());
  REQUIRE(server.accepted.size() == 1);
  CHECK(server.accepted[0].peer == svid->spiffe_id());
  run(io, source.shutdown());
}

TEST_CASE("handshakes succeed with 200 authorities sharing one subject and 10 federated trust domains", "[tls]") {
  // Certificates made here: example.org's real root among 199 others of the same subject, and
  // ten more trust domains. No client CA list is sent, so the handshake stays small.
  const awaken::test::TestAuthority example{"example.org"};
  std::vector<awaken::spiffe::Certificate> roots;
  for (int i = 0; i < 199; ++i)
    roots.push_back(
        awaken::test::issue(awaken::test::ca_spec("example.org root", {"spiffe://example.org"})).certificate());
  roots.push_back(example.root.certificate());
  std::vector<awaken::spiffe::X509Bundle> bundles{awaken::spiffe::X509Bundle{TrustDomain::parse("example.org"), roots}};
  for (int i = 0; i < 10; ++i) {
    const awaken::test::TestAuthority other{"fed" + std::to_string(i) + ".example"};
    bundles.push_back(other.bundle());
  }
  const auto [server_svid, client_svid] = two_workloads(example, X509BundleSet{std::move(bundles)});

  asio::io_context io;
  asio::ssl::context server_ctx{asio::ssl::context::tls_server};
  asio::ssl::context client_ctx{asio::ssl::context::tls_client};
  awaken::spiffe::configure_mtls_server(server_ctx, TlsSources{server_svid, server_svid}, authorize_any());
  awaken::spiffe::configure_mtls_client(client_ctx, TlsSources{client_svid, client_svid}, authorize_any());
  EchoServer server{io, server_ctx};
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    auto c = run(io, connect(client_ctx, server.port()));
    REQUIRE(!c.ec);
    CHECK(c.peer == SpiffeId::parse("spiffe://example.org/server"));
  }
  CHECK(std::chrono::steady_clock::now() - start < 10s);  // a bound, not a benchmark
  CHECK(run_until(io, [&] { return server.accepted.size() == 10; }));
  CHECK(server.accepted.back().peer == SpiffeId::parse("spiffe://example.org/client"));
}

TEST_CASE("a reconfiguration applies to the next handshake of every stream; a throwing authorizer refuses", "[tls]") {
  const awaken::test::TestAuthority example{"example.org"};
  const auto [server_svid, client_svid] =
      two_workloads(example, X509BundleSet{std::vector<awaken::spiffe::X509Bundle>{example.bundle()}});
  asio::io_context io;
  asio::ssl::context server_ctx{asio::ssl::context::tls_server};
  asio::ssl::context client_ctx{asio::ssl::context::tls_client};
  awaken::spiffe::configure_mtls_server(server_ctx, TlsSources{server_svid, server_svid}, authorize_any());
  awaken::spiffe::configure_mtls_client(client_ctx, TlsSources{client_svid, client_svid}, authorize_any());
  EchoServer server{io, server_ctx};

  auto first = run(io, connect(client_ctx, server.port()));
  REQUIRE(!first.ec);
  CHECK(first.peer == SpiffeId::parse("spiffe://example.org/server"));
  // A stream made before the client context is configured again, and one made after: both
  // handshake under the new configuration, which refuses this server.
  auto early = std::make_unique<SslStream>(io, client_ctx);
  awaken::spiffe::configure_mtls_client(client_ctx, TlsSources{client_svid, client_svid},
                                        authorize_id(SpiffeId::parse("spiffe://example.org/nobody")));
  auto [ec] = run(io, [&]() -> asio::awaitable<std::tuple<std::error_code>> {
    co_await early->next_layer().async_connect({asio::ip::make_address("127.0.0.1"), server.port()},
                                               asio::use_awaitable);
    co_return co_await early->async_handshake(asio::ssl::stream_base::client, tuple);
  }());
  CHECK(ec);
  REQUIRE(awaken::spiffe::peer_refusal(*early));
  CHECK(awaken::spiffe::peer_refusal(*early)->code() == spiffe_errc::peer_not_authorized);
  auto late = run(io, connect(client_ctx, server.port()));
  CHECK(late.ec);
  REQUIRE(late.refusal);
  CHECK(late.refusal->code() == spiffe_errc::peer_not_authorized);
  CHECK(run(io, echo(*first.stream, "still open")) == "still open");

  // An authorizer that throws something that is not an exception: refused, nothing unwinds
  // through OpenSSL.
  asio::ssl::context odd_ctx{asio::ssl::context::tls_client};
  awaken::spiffe::configure_mtls_client(
      odd_ctx, TlsSources{client_svid, client_svid},
      Authorizer{[](const SpiffeId&, std::span<const awaken::spiffe::Certificate>) -> bool { throw 42; }, "throws"});
  auto odd = run(io, connect(odd_ctx, server.port()));
  CHECK(odd.ec);
  CHECK(!odd.peer);
}
