// The Workload API client: endpoint rules, the protobuf codec, and calls against a real
// @grpc/grpc-js Workload API server (tests/peers/workload_server.mjs).
#include <cstring>

#include <asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/error.hpp>
#include <awaken/spiffe/workload_api.hpp>

#include "spiffe/workload/workload_proto.hpp"
#include "support/errors.hpp"
#include "support/names.hpp"
#include "support/workload_peer.hpp"

using awaken::spiffe::WorkloadApiClient;
using awaken::spiffe::WorkloadEndpoint;

namespace {

// A protobuf field: tag then payload, for hand-made messages.
std::string field(int number, int wire, std::string payload) {
  std::string out;
  unsigned v = static_cast<unsigned>(number << 3 | wire);
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
  if (wire == 2) {
    std::size_t n = payload.size();
    while (n >= 0x80) {
      out += static_cast<char>((n & 0x7F) | 0x80);
      n >>= 7;
    }
    out += static_cast<char>(n);
  }
  return out + payload;
}

}  // namespace

TEST_CASE("Workload API endpoints are unix:///path or tcp://IP:port and nothing else", "[workload][endpoint]") {
  const auto unix_ep = WorkloadEndpoint::parse("unix:///run/spire/agent/public/api.sock");
  CHECK(unix_ep.is_unix());
  CHECK(unix_ep.unix_path() == "/run/spire/agent/public/api.sock");
  const auto tcp_ep = WorkloadEndpoint::parse("tcp://127.0.0.1:8081");
  CHECK_FALSE(tcp_ep.is_unix());
  CHECK(tcp_ep.host() == "127.0.0.1");
  CHECK(tcp_ep.port() == 8081);
  CHECK(WorkloadEndpoint::parse("tcp://[::1]:8080").host() == "[::1]");
  CHECK(WorkloadEndpoint::parse("UNIX:///foo").unix_path() == "/foo");

  const std::vector<std::pair<std::string, std::string>> rejected = {
      {"", "scheme"},
      {" ", "space"},
      {"foo", "scheme"},
      {"other:///path", "scheme"},
      {"unix://", "authority"},
      {"unix:///", "path of a socket"},
      {"unix:/run/api.sock", "unix:///absolute/path"},
      {"unix:tmp/sock", "unix:///absolute/path"},
      {"unix://tmp/x.sock", "authority"},
      {"unix://user@/x.sock", "authority"},
      {"unix:///dir/", "path of a socket"},
      {"unix:///x.sock?x=1", "query"},
      {"unix:///x.sock#f", "fragment"},
      {"unix:///a%20b.sock", "percent"},
      {"unix:///" + std::string(120, 'p'), "too long"},
      {"tcp://foo:80", "IP address"},
      {"tcp://localhost:80", "IP address"},
      {"tcp://1.2.3.4", "port"},
      {"tcp://1.2.3.4:", "port"},
      {"tcp://1.2.3.4:0", "port"},
      {"tcp://1.2.3.4:65536", "port"},
      {"tcp://1.2.3.4:80/path", "path"},
      {"tcp://127.0.0.1:8080/", "path"},
      {"tcp:127.0.0.1:8081", "tcp://IP:port"},
      {"tcp://u@1.2.3.4:80", "user info"},
      {"tcp://::1:80", "IP address"},
      {"tcp://1.2.3:80", "IP address"},
  };
  for (const auto& [uri, why] : rejected) {
    INFO(uri);
    try {
      WorkloadEndpoint::parse(uri);
      FAIL("accepted");
    } catch (const awaken::Error& e) {
      CHECK(e.code() == spiffe_errc::invalid_endpoint);
      CHECK_THAT(e.what(), Contains(why));
    }
  }

  ::unsetenv("SPIFFE_ENDPOINT_SOCKET");
  CHECK(code_of([] { WorkloadEndpoint::from_environment(); }) == spiffe_errc::endpoint_not_configured);
  ::setenv("SPIFFE_ENDPOINT_SOCKET", "unix:///tmp/agent.sock", 1);
  CHECK(WorkloadEndpoint::from_environment().unix_path() == "/tmp/agent.sock");
  ::unsetenv("SPIFFE_ENDPOINT_SOCKET");
}

TEST_CASE("The Workload API codec encodes requests and decodes responses by the field table", "[workload][proto]") {
  namespace d = awaken::spiffe::detail;
  const std::vector<std::string> audiences{"a", "bc"};
  CHECK(d::encode_jwt_svid_request(audiences, "") == field(1, 2, "a") + field(1, 2, "bc"));
  CHECK(d::encode_jwt_svid_request(audiences, "spiffe://x/y") ==
        field(1, 2, "a") + field(1, 2, "bc") + field(2, 2, "spiffe://x/y"));
  CHECK(d::encode_validate_jwt_svid_request("aud", "t.o.k") == field(1, 2, "aud") + field(2, 2, "t.o.k"));

  // Unknown fields of every wire type are skipped.
  const std::string unknown =
      field(9, 0, "\x96\x01") + field(10, 1, std::string(8, 'x')) + field(11, 5, "abcd") + field(12, 2, "skip me");
  const auto svids = d::decode_jwt_svid_response(
      unknown + field(1, 2, field(1, 2, "spiffe://td/w") + unknown + field(2, 2, "tok") + field(3, 2, "h")));
  REQUIRE(svids.size() == 1);
  CHECK(svids[0].spiffe_id == "spiffe://td/w");
  CHECK(svids[0].svid == "tok");
  CHECK(svids[0].hint == "h");

  const auto bundles = d::decode_jwt_bundles_response(field(1, 2, field(1, 2, "spiffe://a") + field(2, 2, "{}")) +
                                                      field(1, 2, field(1, 2, "b") + field(2, 2, "[]")));
  REQUIRE(bundles.size() == 2);
  CHECK(bundles[1] == std::pair<std::string, std::string>{"b", "[]"});

  // Claims: a Struct of every Value kind.
  double pi = 3.5, whole = 1700000000;
  std::string pi_bytes(8, '\0'), whole_bytes(8, '\0');
  std::memcpy(pi_bytes.data(), &pi, 8);
  std::memcpy(whole_bytes.data(), &whole, 8);
  auto entry = [](const std::string& k, const std::string& value) {
    return field(1, 2, field(1, 2, k) + field(2, 2, value));
  };
  const std::string list = field(6, 2, field(1, 2, field(3, 2, "x")) + field(1, 2, field(4, 0, "\x01")));
  const std::string nested = field(5, 2, entry("inner", field(1, 0, std::string(1, '\0'))));
  const std::string claims = entry("sub", field(3, 2, "spiffe://td/w")) + entry("exp", field(2, 1, whole_bytes)) +
                             entry("f", field(2, 1, pi_bytes)) + entry("aud", list) + entry("o", nested);
  const auto validated = d::decode_validate_jwt_svid_response(field(1, 2, "spiffe://td/w") + field(2, 2, claims));
  CHECK(validated.spiffe_id == "spiffe://td/w");
  CHECK(validated.claims == nlohmann::json{{"sub", "spiffe://td/w"},
                                           {"exp", 1700000000},
                                           {"f", 3.5},
                                           {"aud", {"x", true}},
                                           {"o", {{"inner", nullptr}}}});
  CHECK(validated.claims["exp"].is_number_integer());

  auto malformed = [](const std::string& message) {
    return code_of([&] { awaken::spiffe::detail::decode_jwt_svid_response(message); });
  };
  CHECK(malformed(field(1, 2, "x").substr(0, 2)) == spiffe_errc::malformed_message);  // truncated
  CHECK(malformed("\x0b") == spiffe_errc::malformed_message);                         // a group
  CHECK(malformed(std::string("\x08") + std::string(10, '\xff') + "\x01") == spiffe_errc::malformed_message);
  CHECK(malformed(std::string(1, '\0')) == spiffe_errc::malformed_message);                      // field 0
  CHECK(malformed(field(1, 0, "\x01")) == spiffe_errc::malformed_message);                       // svids as a varint
  CHECK(malformed(field(1, 2, field(2, 2, "\xc3\x28"))) == spiffe_errc::malformed_message);      // not UTF-8
  CHECK(malformed(field(1, 2, field(2, 2, "\xed\xa0\x80"))) == spiffe_errc::malformed_message);  // a surrogate
  CHECK(code_of([&] {
          d::decode_jwt_bundles_response(field(1, 2, field(1, 2, "a") + field(2, 2, "{}")) +
                                         field(1, 2, field(1, 2, "a") + field(2, 2, "{}")));
        }) == spiffe_errc::malformed_message);
  // A bundle limit stops the decoder at the first entry over it, before anything more is copied.
  std::string many;
  for (int i = 0; i < 1000; ++i) many += field(1, 2, field(1, 2, "td" + std::to_string(i)) + field(2, 2, "{}"));
  CHECK(d::decode_jwt_bundles_response(many).size() == 1000);
  CHECK(code_of([&] { d::decode_jwt_bundles_response(many, 200); }) == spiffe_errc::resource_limit_exceeded);
  CHECK(d::decode_jwt_svid_response(field(1, 2, field(2, 2, "a")) + field(1, 2, field(2, 2, "b")), 1).size() == 1);
  std::string deep = field(3, 2, "leaf");
  for (int i = 0; i < 40; ++i) deep = field(5, 2, entry("k", deep));
  CHECK(code_of([&] { d::decode_validate_jwt_svid_response(field(2, 2, entry("k", deep))); }) ==
        spiffe_errc::malformed_message);
}

TEST_CASE("JWT-SVIDs and bundles come from the Workload API, and the bundles validate the SVIDs", "[workload]") {
  WorkloadPeer peer;
  asio::io_context io;
  const WorkloadApiClient client{io.get_executor(), peer.endpoint()};

  const auto svid = run(io, client.fetch_jwt_svid({"svc-a", "svc-b"}));
  CHECK(svid.spiffe_id().str() == "spiffe://example.org/workload");
  CHECK(svid.hint() == "primary");
  CHECK(svid.audience() == std::vector<std::string>{"svc-a", "svc-b"});
  CHECK(svid.key_id() == "k1");

  const auto all = run(io, client.fetch_jwt_svids({"svc-a"}));
  REQUIRE(all.size() == 2);  // the third repeats the hint "primary": the first wins
  CHECK(all[1].spiffe_id().str() == "spiffe://example.org/other");
  CHECK(all[1].hint() == "secondary");
  const auto other = run(io, client.fetch_jwt_svid({"svc-a"}, SpiffeId::parse("spiffe://example.org/other")));
  CHECK(other.spiffe_id().str() == "spiffe://example.org/other");

  const auto bundles = run(io, client.fetch_jwt_bundles());
  CHECK(bundles.size() == 2);
  REQUIRE(bundles.find("example.org") != nullptr);
  CHECK(bundles.find("example.org")->find_authority("k1") != nullptr);
  CHECK(bundles.find("example.org")->sequence() == 1u);
  CHECK(bundles.find("federated.org") != nullptr);
  const auto validated = awaken::spiffe::JwtSvid::parse_and_validate(svid.token().reveal(), bundles, {"svc-b"});
  CHECK(validated.spiffe_id() == svid.spiffe_id());

  const auto agent = run(io, client.validate_jwt_svid("svc-a", std::string{svid.token().reveal()}));
  CHECK(agent.spiffe_id == svid.spiffe_id());
  CHECK(agent.claims["aud"] == nlohmann::json{"svc-a", "svc-b"});
  CHECK(agent.claims["exp"].get<long long>() ==
        std::chrono::duration_cast<std::chrono::seconds>(svid.expiry().time_since_epoch()).count());
  try {
    run(io, client.validate_jwt_svid("svc-z", std::string{svid.token().reveal()}));
    FAIL("accepted");
  } catch (const awaken::Error& e) {
    CHECK(e.code() == grpc_status::invalid_argument);
    CHECK_FALSE((e.code() == awaken::condition::workload_transient));
  }
  CHECK(code_of([&] { run(io, client.fetch_jwt_svid({})); }) == spiffe_errc::missing_audience);
}

TEST_CASE("The Workload API answers over loopback TCP too", "[workload]") {
  WorkloadPeer peer{true};
  asio::io_context io;
  const WorkloadApiClient client{io.get_executor(), peer.tcp_endpoint()};
  CHECK(run(io, client.fetch_jwt_bundles()).size() == 2);
  CHECK(run(io, client.fetch_jwt_svid({"svc-a"})).spiffe_id().str() == "spiffe://example.org/workload");
}

TEST_CASE("Workload API statuses are classified, and the security header is always sent", "[workload]") {
  WorkloadPeer peer;
  asio::io_context io;
  const WorkloadApiClient client{io.get_executor(), peer.endpoint()};

  // The header: a plain gRPC channel without it is refused the way an agent refuses it.
  const awaken::http::GrpcChannel bare{io.get_executor(), peer.endpoint().grpc_target()};
  try {
    run(io, bare.unary("/SpiffeWorkloadAPI/FetchJWTSVID",
                       awaken::spiffe::detail::encode_jwt_svid_request(std::vector<std::string>{"a"}, "")));
    FAIL("accepted");
  } catch (const awaken::Error& e) {
    CHECK(e.code() == grpc_status::invalid_argument);
    CHECK(e.details().server_message == "security header missing from request");
  }
  CHECK(peer.control("/stats")["calls"]["FetchJWTSVID"] == 1);
  CHECK_NOTHROW(run(io, client.fetch_jwt_svid({"a"})));  // the client sends it

  peer.control("/fail?code=7&message=no%20identity%20issued&count=1");
  try {
    run(io, client.fetch_jwt_svid({"a"}));
    FAIL("accepted");
  } catch (const awaken::Error& e) {
    CHECK(e.code() == grpc_status::permission_denied);
    CHECK(awaken::spiffe::is_no_identity_issued(e));
    CHECK((e.code() == awaken::condition::workload_transient));
  }
  peer.control("/fail?code=14&count=1");
  CHECK(code_of([&] { run(io, client.fetch_jwt_bundles()); }) == grpc_status::unavailable);
  CHECK((make_error_code(grpc_status::unavailable) == awaken::condition::workload_transient));
  CHECK_FALSE((make_error_code(grpc_status::unimplemented) == awaken::condition::workload_transient));
  CHECK_FALSE((make_error_code(spiffe_errc::malformed_message) == awaken::condition::workload_transient));

  // Nothing listening: unavailable, transient.
  peer.stop();
  const auto down = code_of([&] { run(io, client.fetch_jwt_svid({"a"})); });
  CHECK(down == grpc_status::unavailable);
  CHECK((down == awaken::condition::workload_transient));
}

TEST_CASE("A bundle stream delivers rotations, survives a bad message and ends cleanly", "[workload]") {
  WorkloadPeer peer;
  asio::io_context io;
  const WorkloadApiClient client{io.get_executor(), peer.endpoint()};
  auto stream = client.watch_jwt_bundles();
  auto first = run(io, stream.next());
  REQUIRE(first);
  CHECK(first->find("example.org")->find_authority("k1") != nullptr);

  peer.wait_for_streams(1);
  CHECK(peer.control("/rotate")["kid"] == "k2");
  auto second = run(io, stream.next());
  REQUIRE(second);
  CHECK(second->find("example.org")->find_authority("k1") == nullptr);
  CHECK(second->find("example.org")->find_authority("k2") != nullptr);

  peer.control("/push?mode=malformed");
  CHECK(code_of([&] { run(io, stream.next()); }) == spiffe_errc::invalid_bundle);
  peer.control("/push?mode=empty");
  CHECK(code_of([&] { run(io, stream.next()); }) == spiffe_errc::empty_response);
  peer.control("/push?mode=same");
  CHECK(run(io, stream.next()) == second);  // the stream went on

  peer.control("/end");
  CHECK_FALSE(run(io, stream.next()).has_value());
}
