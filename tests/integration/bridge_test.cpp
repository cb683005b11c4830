// SPIFFE-backed credentials end to end: the Workload API peer issues JWT-SVIDs, the broker caches
// them per audience, and a relying party (tests/peers/token_server.mjs --jwks) verifies them
// against the trust domain's keys as a client assertion and as an RFC 8693 subject token.
#include <asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/credentials/spiffe_minters.hpp>
#include <awaken/error.hpp>

#include "support/minting.hpp"
#include "support/names.hpp"
#include "support/workload_peer.hpp"

namespace {

JwtSource source_on(asio::io_context& io, const WorkloadPeer& peer) {
  auto b = JwtSource::builder();
  b.endpoint(peer.endpoint()).reconnect_backoff(10ms, 100ms).initial_sync_timeout(10s);
  return run(io, b.build(io.get_executor()));
}

// The relying party, trusting the Workload API peer's keys.
struct RelyingParty {
  explicit RelyingParty(const WorkloadPeer& peer)
      : process{"token_server.mjs", {"--jwks", "http://127.0.0.1:" + std::to_string(peer.control_port()) + "/jwks"}} {}
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(process.info()["port"].get<int>()) + path;
  }
  nlohmann::json last() const {
    asio::io_context io;
    awaken::http::HttpClient client{io.get_executor()};
    awaken::http::HttpRequest request;
    request.url = url("/last");
    return nlohmann::json::parse(run(io, client.send(request)).body);
  }
  awaken::test::PeerProcess process;
};

// The peer, a relying party that trusts it, a source and a broker.
struct Bridge {
  WorkloadPeer peer;
  RelyingParty party{peer};
  asio::io_context io;
  JwtSource source = source_on(io, peer);
  AwakenBroker broker{io.get_executor(), quick_retries()};
};

int svid_calls(const WorkloadPeer& peer) { return peer.control("/stats")["calls"].value("FetchJWTSVID", 0); }

}  // namespace

TEST_CASE("JWT-SVIDs through the broker: cached per audience, one fetch for many callers", "[bridge]") {
  WorkloadPeer peer;
  asio::io_context io;
  const JwtSource source = source_on(io, peer);
  AwakenBroker broker{io.get_executor(), quick_retries()};
  broker.register_material("svid", awaken::jwt_svid_material(source));

  const IssuedToken token = run(io, broker.token_for("svid", "svc-a svc-b"));
  const auto svid = JwtSvid::parse_and_validate(token.bearer().reveal(), source, {"svc-b"});
  CHECK(svid.spiffe_id().str() == "spiffe://example.org/workload");
  CHECK(svid.audience() == std::vector<std::string>{"svc-a", "svc-b"});
  CHECK(token.expires_at() == svid.expiry());
  CHECK(svid_calls(peer) == 1);

  // 50 callers at once on another audience: one more fetch, one token for all.
  std::vector<IssuedToken> got(50);
  int failures = 0;
  for (auto& slot : got)
    asio::co_spawn(io, broker.token_for("svid", "svc-c"), [&slot, &failures](std::exception_ptr e, IssuedToken t) {
      if (e) ++failures;
      slot = t;
    });
  io.restart();
  for (int i = 0; i < 400 && std::any_of(got.begin(), got.end(), [](auto& t) { return t.empty(); }); ++i)
    io.run_for(10ms);
  CHECK(failures == 0);
  REQUIRE_FALSE(got.front().empty());
  CHECK(std::all_of(got.begin(), got.end(), [&](auto& t) { return t.same_token(got.front()); }));
  CHECK(svid_calls(peer) == 2);
  CHECK(run(io, broker.token_for("svid", "svc-a svc-b")).same_token(token));  // cached
  CHECK(svid_calls(peer) == 2);

  CHECK(mint_failure(io, broker, "svid", " ").code() == credential_errc::invalid_material);
  run(io, source.shutdown());
}

TEST_CASE("A JWT-SVID is refreshed in the soft window, across a rotation of the signing key", "[bridge]") {
  WorkloadPeer peer;
  asio::io_context io;
  const JwtSource source = source_on(io, peer);
  awaken::test::SteadyOnlyClock clock;
  BrokerOptions options = quick_retries();
  options.timing.clock = &clock;
  AwakenBroker broker{io.get_executor(), options};
  broker.register_material("svid", awaken::jwt_svid_material(source));
  const IssuedToken first = run(io, broker.token_for("svid", "svc-a"));
  CHECK(JwtSvid::parse_insecure(first.bearer().reveal()).key_id() == "k1");

  peer.wait_for_streams(1);
  peer.control("/rotate");
  auto updates = source.updates();
  run(io, updates.changed());
  clock.advance(220s);  // SVIDs live 300 s: 80 s left, inside the soft window, outside the hard one
  CHECK(run(io, broker.token_for("svid", "svc-a")).same_token(first));
  awaken::test::settle(io, broker);
  const IssuedToken second = run(io, broker.token_for("svid", "svc-a"));
  CHECK_FALSE(second.same_token(first));
  CHECK(broker.stats().background_refreshes == 1);
  CHECK(JwtSvid::parse_and_validate(second.bearer().reveal(), source, {"svc-a"}).key_id() == "k2");
  run(io, source.shutdown());
}

TEST_CASE_METHOD(Bridge, "OAuth client credentials with a JWT-SVID as the client assertion", "[bridge]") {
  awaken::SpiffeClientCredentials config;
  config.token_endpoint = party.url("/spiffe/token");
  config.client_id = "spiffe-workload";
  broker.register_material("cc", awaken::spiffe_client_credentials(source, config));

  const IssuedToken token = run(io, broker.token_for("cc", "read write"));
  CHECK(token.bearer().reveal().rfind("at-", 0) == 0);
  const auto seen = party.last();
  const std::string body = seen["body"];
  CHECK(body.find("grant_type=client_credentials&scope=read+write&client_id=spiffe-workload&client_assertion_type="
                  "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=ey") == 0);
  const auto assertion = JwtSvid::parse_insecure(body.substr(body.rfind('=') + 1));
  CHECK(assertion.audience() == std::vector<std::string>{config.token_endpoint});
  CHECK(run(io, broker.token_for("cc", "read write")).same_token(token));  // cached

  // The trust domain rotates its key: the relying party fetches the new one, the next mint works.
  peer.wait_for_streams(1);
  peer.control("/rotate");
  broker.invalidate("cc", "read write", token);
  const IssuedToken after = run(io, broker.token_for("cc", "read write"));
  CHECK_FALSE(after.same_token(token));
  CHECK(JwtSvid::parse_insecure(party.last()["body"].get<std::string>().substr(body.rfind('=') + 1)).key_id() == "k2");

  // An assertion for another audience is refused by the relying party.
  config.assertion_audience = "someone-else";
  broker.register_material("wrong-aud", awaken::spiffe_client_credentials(source, config));
  const auto refused = mint_failure(io, broker, "wrong-aud");
  CHECK(refused.code() == credential_errc::permanent_upstream);
  CHECK_THAT(refused.details().server_message, Catch::Contains("invalid_client"));
  run(io, source.shutdown());
}

TEST_CASE_METHOD(Bridge, "RFC 8693 token exchange with a JWT-SVID as the subject token", "[bridge]") {
  awaken::SpiffeTokenExchange config;
  config.token_endpoint = party.url("/spiffe/exchange");
  config.audience = "https://api.example.com";
  broker.register_material("sts", awaken::spiffe_token_exchange(source, config));

  const IssuedToken token = run(io, broker.token_for("sts", "api"));
  CHECK(token.bearer().reveal().rfind("at-", 0) == 0);
  const std::string body = party.last()["body"];
  CHECK(body.rfind("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
                   "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&subject_token=ey",
                   0) == 0);
  CHECK(body.find("&scope=api&audience=https%3A%2F%2Fapi.example.com") != std::string::npos);
  CHECK(run(io, broker.token_for("sts", "api")).same_token(token));
  run(io, source.shutdown());
}

TEST_CASE("Workload API failures reach the broker as transient or permanent", "[bridge]") {
  WorkloadPeer peer;
  asio::io_context io;
  const JwtSource source = source_on(io, peer);
  AwakenBroker broker{io.get_executor(), quick_retries(2)};
  broker.register_material("svid", awaken::jwt_svid_material(source));

  peer.control("/fail?code=14&count=10&method=FetchJWTSVID");
  const auto unavailable = mint_failure(io, broker, "svid", "a");
  CHECK(unavailable.code() == credential_errc::transient_upstream);
  CHECK((unavailable.code() == awaken::condition::transient));
  CHECK(broker.stats().mint_attempts == 2);
  CHECK(svid_calls(peer) == 4);  // each attempt: a call and its one retry on a fresh connection
  peer.control("/fail?clear=1");

  peer.control("/fail?code=3&count=1&method=FetchJWTSVID");
  const auto refused = mint_failure(io, broker, "svid", "b");
  CHECK(refused.code() == credential_errc::permanent_upstream);
  CHECK_FALSE((refused.code() == awaken::condition::transient));

  CHECK_THROWS_AS(awaken::jwt_svid_material(JwtSource{}), awaken::Error);
  // The SPIFFE-backed kinds of a configuration name their bad field, as the others do.
  using nlohmann::json;
  CHECK_THROWS_WITH(awaken::material_from_config(json{{"kind", "jwt_svid"}, {"spiffe_idd", "x"}}, source),
                    Catch::Contains("'spiffe_idd' is not a field of kind jwt_svid"));
  CHECK_THROWS_WITH(awaken::material_from_config(json{{"kind", "jwt_svid"}, {"spiffe_id", "spiffe://a//b"}}, source),
                    Catch::Contains("'spiffe_id' is not a SPIFFE ID"));
  CHECK_THROWS_WITH(awaken::material_from_config(json{{"kind", "spiffe_client_credentials"}}, source),
                    Catch::Contains("'token_endpoint' is missing"));
  CHECK(awaken::material_from_config(json{{"kind", "bearer"}, {"token", "t"}}, source).kind_label() == "bearer");
  run(io, source.shutdown());
}
