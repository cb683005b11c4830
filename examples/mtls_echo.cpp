// mtls_echo: SPIFFE mutual TLS with awaken and asio::ssl, in a few lines: an echo server and its
// client, each presenting its own X.509-SVID and authorizing the other by SPIFFE ID.
//
// The whole recipe, on either side:
//
//   X509Source source = co_await X509Source::builder().build();           // SVID + bundles
//   asio::ssl::context ctx{asio::ssl::context::tls_server};                 // or tls_client
//   configure_mtls_server(ctx, source, authorize_id(SpiffeId::parse(...))); // or _client
//   asio::ssl::stream<tcp::socket> stream{std::move(socket), ctx};
//   co_await stream.async_handshake(...);
//   peer_spiffe_id(stream)    // who the peer is; peer_refusal(stream): why we refused it
//
// The context reads the source at every handshake, so a rotated SVID is presented by the next
// connection with no reload, while the connections already open go on with the old one.
#include <csignal>
#include <iostream>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <asio/buffer.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/signal_set.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <awaken/error.hpp>
#include <awaken/spiffe/tls.hpp>
#include <awaken/spiffe/workload_api.hpp>
#include <awaken/spiffe/x509_bundle.hpp>
#include <awaken/spiffe/x509_source.hpp>
#include <awaken/spiffe/x509_svid.hpp>

#include "tool_main.hpp"

namespace {

namespace spiffe = awaken::spiffe;
using asio::ip::tcp;
using SslStream = asio::ssl::stream<tcp::socket>;
using awaken::tools::UsageError;
using namespace std::chrono_literals;

constexpr auto tuple = asio::experimental::as_tuple(asio::use_awaitable);
constexpr std::size_t max_line = 64 * 1024;          // the longest line either side reads
constexpr std::chrono::seconds update_timeout{120};  // --hold-rotations waits this long for each

constexpr const char* usage = R"(Usage: mtls_echo server --listen IP:PORT [--allow SPIFFE_ID ... | --allow-td TD]
                        [--svid-id ID] [--endpoint URI]
       mtls_echo client --connect IP:PORT [--expect SPIFFE_ID | --expect-td TD]
                        [--message TEXT ...] [--hold-rotations N]
                        [--svid-id ID] [--endpoint URI | --cert CHAIN.pem --key KEY.pem --bundle TD=FILE ...]

An echo over SPIFFE mutual TLS. Both sides present an X.509-SVID and verify the peer's against
the bundle of the peer's trust domain, then authorize its SPIFFE ID.

server  Listens on IP:PORT (port 0: any; the first line printed is "listening on IP:PORT").
        Logs "accepted ID" or "refused: REASON" for each connection, then answers each line
        with "SERVER_ID: line". Allows the --allow IDs, or the members of --allow-td, or by
        default the members of its own trust domain. Stops on SIGINT or SIGTERM.
client  Connects, checks the server is --expect (or a member of --expect-td, by default of the
        client's own trust domain), sends each --message (default "hello") and prints the
        replies. With --hold-rotations N it keeps the connection open through N updates of its
        X.509 source: after each, one more message on that connection, then a new connection,
        showing which certificate the server presented on each.

Identity: the SVID and bundles come from the SPIFFE Workload API at --endpoint, or at
SPIFFE_ENDPOINT_SOCKET (unix:///path or tcp://IP:port); --svid-id picks one of several SVIDs.
The client may instead use fixed files: --cert (chain, leaf first), --key (PKCS#8) and one
--bundle per trust domain it trusts (PEM or DER authorities).

Options: --verbose logs awaken's work on stderr.
Exit codes: 0 success; 1 the TLS handshake was refused (by us or by the peer: the reason is
printed); 2 bad usage; 3 any other failure.
)";

// A refused handshake (exit 1); the text is the whole message.
struct Refused : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string command;
  std::optional<std::string> endpoint_uri;
  std::optional<spiffe::SpiffeId> svid_id;
  std::optional<spiffe::WorkloadEndpoint> endpoint;  // resolved, unless --cert is given
  std::optional<tcp::endpoint> address;              // --listen or --connect
  std::vector<spiffe::SpiffeId> peer_ids;            // --allow or --expect
  std::optional<spiffe::TrustDomain> peer_td;        // --allow-td or --expect-td
  std::vector<std::string> messages;
  int hold_rotations = 0;
  std::optional<std::string> cert, key;
  std::vector<std::string> bundles;  // TD=FILE
};

tcp::endpoint parse_address(const std::string& option, const std::string& text) {
  const auto colon = text.rfind(':');
  try {
    if (colon == std::string::npos) throw std::invalid_argument{"no port"};
    std::string host = text.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    const int port = std::stoi(text.substr(colon + 1));
    if (port < 0 || port > 65535) throw std::out_of_range{"port"};
    return {asio::ip::make_address(host), static_cast<unsigned short>(port)};
  } catch (const std::exception&) {
    throw UsageError{option + " needs IP:PORT, not '" + text + "'"};
  }
}

template <class T>
T parse_spiffe(const std::string& option, const std::string& text) {
  try {
    return T::parse(text);
  } catch (const awaken::Error& e) {
    throw UsageError{option + " " + text + ": " + e.what()};
  }
}

Args parse(int argc, char** argv) {
  Args a;
  awaken::tools::ArgReader r{argc, argv};
  bool ids = false, td = false;  // whether --allow/--expect or --allow-td/--expect-td was given
  while (r.next()) {
    const std::string arg = r.arg();
    if (arg == "--endpoint")
      a.endpoint_uri = r.value();
    else if (arg == "--svid-id")
      a.svid_id = parse_spiffe<spiffe::SpiffeId>(arg, r.value());
    else if (arg == "--listen" || arg == "--connect")
      a.address = parse_address(arg, r.value());
    else if (arg == "--allow" || arg == "--expect") {
      a.peer_ids.push_back(parse_spiffe<spiffe::SpiffeId>(arg, r.value()));
      ids = true;
    } else if (arg == "--allow-td" || arg == "--expect-td") {
      a.peer_td = parse_spiffe<spiffe::TrustDomain>(arg, r.value());
      td = true;
    } else if (arg == "--message")
      a.messages.push_back(r.value());
    else if (arg == "--hold-rotations")
      a.hold_rotations = r.number();
    else if (arg == "--cert")
      a.cert = r.value();
    else if (arg == "--key")
      a.key = r.value();
    else if (arg == "--bundle")
      a.bundles.push_back(r.value());
    else if (arg.rfind("--", 0) == 0 || !a.command.empty())
      throw UsageError{"unknown argument " + arg + " (try --help)"};
    else
      a.command = arg;
  }
  const bool server = a.command == "server";
  if (!server && a.command != "client") throw UsageError{"say server or client (try --help)"};
  if (!a.address) throw UsageError{server ? "server needs --listen IP:PORT" : "client needs --connect IP:PORT"};
  if (ids && td) throw UsageError{"give IDs or a trust domain to authorize, not both"};
  if (server && (!a.messages.empty() || a.hold_rotations != 0 || a.cert || a.key || !a.bundles.empty()))
    throw UsageError{"--message, --hold-rotations, --cert, --key and --bundle are client options"};
  if (a.messages.empty()) a.messages.push_back("hello");
  for (const auto& m : a.messages)
    if (m.find('\n') != std::string::npos) throw UsageError{"a --message is one line"};
  if (a.hold_rotations < 0) throw UsageError{"--hold-rotations needs a count of 0 or more"};
  const bool files = a.cert || a.key || !a.bundles.empty();
  if (files && (!a.cert || !a.key || a.bundles.empty())) throw UsageError{"--cert, --key and --bundle go together"};
  if (files && (a.endpoint_uri || a.svid_id || a.hold_rotations != 0))
    throw UsageError{"--cert/--key/--bundle replace the Workload API: no --endpoint, --svid-id or --hold-rotations"};
  if (!files) {
    try {
      a.endpoint = a.endpoint_uri ? spiffe::WorkloadEndpoint::parse(*a.endpoint_uri)
                                  : spiffe::WorkloadEndpoint::from_environment();
    } catch (const awaken::Error& e) {
      if (a.endpoint_uri) throw UsageError{std::string{"--endpoint: "} + e.what()};
      throw UsageError{"no Workload API endpoint: give --endpoint or set SPIFFE_ENDPOINT_SOCKET"};
    }
  }
  return a;
}

// ---- Identity -------------------------------------------------------------------------------

// The Workload API's SVIDs and bundles, kept current in the background.
asio::awaitable<spiffe::X509Source> workload_source(const Args& a) {
  auto builder = spiffe::X509Source::builder();
  builder.endpoint(*a.endpoint);                                       // --endpoint, or SPIFFE_ENDPOINT_SOCKET
  if (a.svid_id) builder.svid_picker(spiffe::pick_by_id(*a.svid_id));  // else the first SVID
  builder.initial_sync_timeout(30s);
  co_return co_await builder.build();
}

// A fixed identity from files: one the peer's CA issued, say, outside the Workload API.
std::shared_ptr<spiffe::StaticX509Source> file_source(const Args& a) {
  std::vector<spiffe::X509Bundle> bundles;
  try {
    for (const auto& spec : a.bundles) {
      const auto eq = spec.find('=');
      if (eq == std::string::npos || eq == 0) throw UsageError{"--bundle needs TRUST_DOMAIN=FILE, not '" + spec + "'"};
      bundles.push_back(spiffe::X509Bundle::load(spiffe::TrustDomain::parse(spec.substr(0, eq)), spec.substr(eq + 1)));
    }
    return std::make_shared<spiffe::StaticX509Source>(spiffe::X509Svid::load(*a.cert, *a.key),
                                                      spiffe::X509BundleSet{std::move(bundles)});
  } catch (const awaken::Error& e) {
    throw UsageError{e.what()};  // a file that cannot be read or is not what it should be
  }
}

// Whom we accept as the peer: the IDs named, else a trust domain, else our own trust domain.
spiffe::Authorizer authorizer_for(const Args& a, const spiffe::SpiffeId& self) {
  if (a.peer_ids.size() == 1) return spiffe::authorize_id(a.peer_ids[0]);
  if (!a.peer_ids.empty()) return spiffe::authorize_one_of(a.peer_ids);
  return spiffe::authorize_member_of(a.peer_td.value_or(self.trust_domain()));
}

// "serial 4F1A..., sha256 0123456789abcdef" (the first 8 bytes of the DER's SHA-256): tells one
// certificate from the next.
std::string describe(X509* cert) {
  std::string serial = "?";
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
    if (char* hex = BN_bn2hex(bn)) {
      serial = hex;
      OPENSSL_free(hex);
    }
    BN_free(bn);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  std::string digest = "?";
  if (X509_digest(cert, EVP_sha256(), md, &n) == 1 && n >= 8) {
    static constexpr char hex[] = "0123456789abcdef";
    digest.clear();
    for (unsigned int i = 0; i < 8; ++i) (digest += hex[md[i] >> 4]) += hex[md[i] & 0xf];
  }
  return "serial " + serial + ", sha256 " + digest;
}

void say(const std::string& line) { std::cout << line << std::endl; }  // flushed: scripts read it

// ---- Server ---------------------------------------------------------------------------------

struct Server {
  asio::ssl::context& ctx;
  spiffe::X509Source source;
  std::set<SslStream*> open;  // sessions, closed at shutdown
};

// One connection: the handshake (where the client's SVID is verified and authorized), then
// an echo of each line, prefixed with the SPIFFE ID the server presents now.
asio::awaitable<void> session(Server& server, tcp::socket socket) {
  SslStream stream{std::move(socket), server.ctx};
  server.open.insert(&stream);
  struct Leave {
    Server& s;
    SslStream* p;
    ~Leave() { s.open.erase(p); }
  } leave{server, &stream};

  auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, tuple);
  if (ec) {
    // peer_refusal says why our context refused the client's SVID; otherwise the client gave up
    // (it refused us, or it is not speaking TLS).
    const auto refusal = spiffe::peer_refusal(stream);
    say(refusal ? std::string{"refused: "} + refusal->what() : "handshake failed: " + ec.message());
    co_return;
  }
  say("accepted " + spiffe::peer_spiffe_id(stream).value_or(spiffe::SpiffeId{}).str());

  std::string input;
  for (;;) {
    auto [rec, n] = co_await asio::async_read_until(stream, asio::dynamic_buffer(input, max_line), '\n', tuple);
    if (rec) {
      if (rec == asio::error::eof) (void)co_await stream.async_shutdown(tuple);  // the client's close_notify
      co_return;
    }
    const std::string reply = server.source.svid()->spiffe_id().str() + ": " + input.substr(0, n);
    input.erase(0, n);
    auto [wec, written] = co_await asio::async_write(stream, asio::buffer(reply), tuple);
    if (wec) co_return;
  }
}

asio::awaitable<void> accept_loop(Server& server, tcp::acceptor& acceptor) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(tuple);
    if (ec == asio::error::operation_aborted) co_return;  // shutting down
    if (!ec) asio::co_spawn(acceptor.get_executor(), session(server, std::move(socket)), asio::detached);
  }
}

// One line per X.509 update, so the log shows when a new certificate starts being presented.
asio::awaitable<void> log_updates(spiffe::X509Source source) {
  auto updates = source.updates();
  for (;;) {
    auto [ec, sequence] = co_await updates.changed(tuple);
    if (ec) co_return;  // source_closed: shut down
    const auto svid = source.svid();
    say("X.509 update (sequence " + std::to_string(sequence) + "): now presenting " +
        describe(svid->leaf().native_handle()));
  }
}

asio::awaitable<int> run_server(Args a) {
  const auto executor = co_await asio::this_coro::executor;
  const spiffe::X509Source source = co_await workload_source(a);
  const auto self = source.svid()->spiffe_id();
  const auto authorizer = authorizer_for(a, self);

  // The whole of SPIFFE mTLS on the server side: present our SVID, verify the client's against
  // its trust domain's bundle, then ask the authorizer. The context holds a copy of the source,
  // whose timers belong to the io_context: it is freed first, with this coroutine's frame.
  asio::ssl::context ctx{asio::ssl::context::tls_server};
  spiffe::configure_mtls_server(ctx, source, authorizer);

  tcp::acceptor acceptor{executor, *a.address};
  const auto bound = acceptor.local_endpoint();
  say("listening on " + bound.address().to_string() + ":" + std::to_string(bound.port()));
  say("serving as " + self.str() + "; allowing " + authorizer.description());
  say("presenting " + describe(source.svid()->leaf().native_handle()));

  Server server{ctx, source, {}};
  asio::co_spawn(executor, log_updates(source), asio::detached);
  // Accept until SIGINT or SIGTERM: `||` cancels the accept loop once the signal arrives.
  asio::signal_set signals{executor, SIGINT, SIGTERM};
  {
    using namespace asio::experimental::awaitable_operators;
    auto accepting = accept_loop(server, acceptor);
    auto signal = signals.async_wait(asio::use_awaitable);
    co_await (std::move(accepting) || std::move(signal));
  }
  // Close the open connections, wait for their sessions to end, then stop the source.
  for (SslStream* s : server.open) s->lowest_layer().close();
  asio::steady_timer tick{executor};
  while (!server.open.empty()) {
    tick.expires_after(10ms);
    co_await tick.async_wait(asio::use_awaitable);
  }
  co_await source.shutdown();
  say("stopped");
  co_return 0;
}

// ---- Client ---------------------------------------------------------------------------------

struct Connection {
  std::unique_ptr<SslStream> stream;
  std::string server_cert;  // what `describe` says of the leaf the server presented
};

// Why a handshake, or the first exchange after it, failed: our refusal of the server's SVID,
// the server's refusal of ours (a TLS alert; with TLS 1.3 it arrives at the first read, as the
// client's handshake ends before the server has checked the client), or anything else.
[[noreturn]] void fail(SslStream& stream, std::error_code ec, const std::string& what) {
  if (const auto refusal = spiffe::peer_refusal(stream))
    throw Refused{std::string{"we refused the server: "} + refusal->what()};
  if (ec.category() == asio::error::get_ssl_category())
    throw Refused{"the server refused us (TLS alert): " + ec.message()};
  throw std::runtime_error(what + ": " + ec.message());
}

asio::awaitable<Connection> connect(asio::ssl::context& ctx, tcp::endpoint server) {
  const auto executor = co_await asio::this_coro::executor;
  Connection c{std::make_unique<SslStream>(executor, ctx), {}};
  auto [cec] = co_await c.stream->next_layer().async_connect(server, tuple);
  if (cec) throw std::runtime_error("cannot connect: " + cec.message());
  auto [hec] = co_await c.stream->async_handshake(asio::ssl::stream_base::client, tuple);
  if (hec) fail(*c.stream, hec, "TLS handshake failed");
  if (X509* leaf = SSL_get0_peer_certificate(c.stream->native_handle())) c.server_cert = describe(leaf);
  co_return c;
}

// Sends one line and prints it and the reply.
asio::awaitable<void> exchange(Connection& c, std::string line) {
  say("> " + line);
  line += '\n';
  auto [wec, written] = co_await asio::async_write(*c.stream, asio::buffer(line), tuple);
  if (wec) fail(*c.stream, wec, "cannot send");
  std::string reply;
  auto [rec, n] = co_await asio::async_read_until(*c.stream, asio::dynamic_buffer(reply, max_line), '\n', tuple);
  if (rec) fail(*c.stream, rec, "no reply");
  say("< " + reply.substr(0, n - 1));
}

asio::awaitable<void> close(Connection& c) {
  (void)co_await c.stream->async_shutdown(tuple);  // close_notify; the server answers in kind
  c.stream->lowest_layer().close();
}

asio::awaitable<int> run_client(Args a) {
  const auto executor = co_await asio::this_coro::executor;
  // Where our SVID and the bundles come from: the Workload API, or files.
  std::optional<spiffe::X509Source> source;
  spiffe::TlsSources sources;
  if (a.cert) {
    auto fixed = file_source(a);
    sources = {fixed, fixed};
  } else {
    source = co_await workload_source(a);
    sources = spiffe::TlsSources::from(*source);
  }
  const auto self = sources.svids->x509_svid()->spiffe_id();

  // The whole of SPIFFE mTLS on the client side: present our SVID if asked, verify the server's
  // against its trust domain's bundle, then ask the authorizer (the server we expect).
  asio::ssl::context ctx{asio::ssl::context::tls_client};
  spiffe::configure_mtls_client(ctx, sources, authorizer_for(a, self));

  say("connecting as " + self.str());
  auto first = co_await connect(ctx, *a.address);
  say("connected to " + spiffe::peer_spiffe_id(*first.stream).value_or(spiffe::SpiffeId{}).str());
  say("  it presented " + first.server_cert);
  for (const auto& m : a.messages) co_await exchange(first, m);

  // Rotations: the open connection keeps the certificates of its handshake; a new connection
  // gets the ones current at its own.
  std::string before = first.server_cert;
  std::optional<spiffe::X509SourceUpdates> updates;
  if (source) updates = source->updates();
  for (int i = 1; i <= a.hold_rotations; ++i) {
    say("holding the connection open until the next X.509 update (" + std::to_string(i) + " of " +
        std::to_string(a.hold_rotations) + ")");
    asio::steady_timer deadline{executor, update_timeout};
    std::variant<std::tuple<std::error_code, std::uint64_t>, std::monostate> woke;
    {
      using namespace asio::experimental::awaitable_operators;
      auto update = updates->changed(tuple);
      auto timeout = deadline.async_wait(asio::use_awaitable);
      woke = co_await (std::move(update) || std::move(timeout));
    }
    if (woke.index() == 1)
      throw std::runtime_error("no X.509 update within " + std::to_string(update_timeout.count()) + " s");
    const auto [uec, sequence] = std::get<0>(woke);
    if (uec) throw awaken::Error{uec, "waiting for an X.509 update"};
    say("X.509 update (sequence " + std::to_string(sequence) + "): our SVID is now " +
        describe(source->svid()->leaf().native_handle()));
    co_await exchange(first, "still here after update " + std::to_string(i) + ", on the first connection");

    // Both workloads hear of a rotation from the agent at about the same time; the server may
    // hear a moment after us, so a handshake that still shows the old certificate is retried
    // for up to 2 s.
    auto next = co_await connect(ctx, *a.address);
    for (int tries = 0; next.server_cert == before && tries < 20; ++tries) {
      co_await close(next);
      asio::steady_timer pause{executor, 100ms};
      co_await pause.async_wait(asio::use_awaitable);
      next = co_await connect(ctx, *a.address);
    }
    say("new connection to " + spiffe::peer_spiffe_id(*next.stream).value_or(spiffe::SpiffeId{}).str());
    say("  it presented " + next.server_cert + (next.server_cert == before ? " (unchanged)" : " (new)"));
    co_await exchange(next, a.messages.front());
    co_await close(next);
    before = next.server_cert;
  }

  co_await close(first);
  if (source) co_await source->shutdown();
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return awaken::tools::tool_main<Refused>(argc, argv, "mtls_echo", usage, [&]() -> asio::awaitable<int> {
    Args a = parse(argc, argv);
    return a.command == "server" ? run_server(std::move(a)) : run_client(std::move(a));
  });
}
