// DPoP (RFC 9449) end to end: the broker asks oidc-provider (tests/peers/oidc_server.mjs --dpop)
// for DPoP-bound tokens with every OAuth flow it has, answers its nonce challenges, and the
// tokens are used at a resource server (tests/peers/resource_server.mjs) that checks each proof
// and the token's cnf.jkt.
#include <asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/credentials/dpop.hpp>
#include <awaken/credentials/federation.hpp>
#include <awaken/credentials/oauth_client_credentials.hpp>
#include <awaken/credentials/spiffe_minters.hpp>
#include <awaken/error.hpp>
#include <awaken/http/http_client.hpp>
#include <awaken/jose/base64url.hpp>
#include <awaken/jose/jws.hpp>

#include "support/errors.hpp"
#include "support/minting.hpp"
#include "support/names.hpp"
#include "support/source_support.hpp"
#include "support/workload_peer.hpp"

namespace {

awaken::http::HttpResponse http_call(const std::string& method, const std::string& url,
                                     std::vector<awaken::http::Header> headers = {}) {
  asio::io_context io;
  awaken::http::HttpClient client{io.get_executor()};
  awaken::http::HttpRequest request;
  request.method = method;
  request.url = url;
  request.headers = std::move(headers);
  return run(io, client.send(request));
}

json http_json(const std::string& method, const std::string& url) { return json::parse(http_call(method, url).body); }

json jwt_part(std::string_view jwt, int part) {
  std::size_t at = 0;
  for (int i = 0; i < part; ++i) at = jwt.find('.', at) + 1;
  return json::parse(awaken::jose::base64url_decode(jwt.substr(at, jwt.find('.', at) - at)));
}

constexpr const char* api_resource = "https://api.awaken.test/orders";

// The Workload API peer, oidc-provider with DPoP trusting its JWT-SVIDs, a resource server
// trusting oidc-provider's access tokens, a JwtSource and a broker.
struct World {
  WorkloadPeer peer;
  PeerProcess oidc{"oidc_server.mjs",
                   {"--dpop", "--jwks", "http://127.0.0.1:" + std::to_string(peer.control_port()) + "/jwks"}};
  PeerProcess api{"resource_server.mjs", {"--jwks", oidc.info()["jwks_uri"].get<std::string>()}};
  asio::io_context io;
  JwtSource source = [this] {
    auto b = JwtSource::builder();
    b.endpoint(peer.endpoint()).reconnect_backoff(10ms, 100ms).initial_sync_timeout(10s);
    return run(io, b.build(io.get_executor()));
  }();
  AwakenBroker broker{io.get_executor(), quick_retries()};

  std::string issuer() const { return oidc.info()["issuer"]; }
  std::string token_endpoint() const { return oidc.info()["token_endpoint"]; }
  std::string api_url(const std::string& path) const { return api.info()["url"].get<std::string>() + path; }
  json last() const { return http_json("GET", issuer() + "/last"); }
  json stats() const { return http_json("GET", issuer() + "/dpop/stats"); }
  json api_stats() const { return http_json("GET", api_url("/stats")); }
  IssuedToken mint(const std::string& provider, const std::string& scope) {
    return run(io, broker.token_for(provider, scope));
  }
  // A call to the resource server with `headers`.
  awaken::http::HttpResponse call(const std::string& method, const std::string& path,
                                  std::vector<awaken::http::Header> headers) const {
    return http_call(method, api_url(path), std::move(headers));
  }
  // A call that presents `token` as the broker says to, with the server's `nonce` if any.
  awaken::http::HttpResponse present(const IssuedToken& token, const std::string& method, const std::string& path,
                                     const std::string& nonce = {}) const {
    const awaken::AuthorizationHeaders h = token.authorization(method, api_url(path), nonce);
    std::vector<awaken::http::Header> headers{{"authorization", std::string{h.authorization.reveal()}}};
    if (!h.dpop.empty()) headers.push_back({"dpop", h.dpop});
    return call(method, path, std::move(headers));
  }
};

awaken::OAuthClientCredentials dpop_client(const World& w) {
  awaken::OAuthClientCredentials c;
  c.token_endpoint = w.token_endpoint();
  c.client_id = "awaken-dpop";
  c.client_secret = RedactedString{"s3cret-value"};
  c.resources = {api_resource};
  c.dpop = true;
  return c;
}

}  // namespace

TEST_CASE("DPoP client credentials: a bound token with its key, a proof per token request and per call",
          "[dpop][oidc]") {
  World w;
  w.broker.register_material("orders", awaken::oauth_client_credentials(dpop_client(w)));
  const IssuedToken token = w.mint("orders", "api:read");
  REQUIRE(token.dpop_key() != nullptr);
  CHECK(token.token_type() == "DPoP");
  const std::string jkt = token.dpop_key()->thumbprint();
  CHECK(token.dpop_key()->algorithm() == awaken::jose::Algorithm::es256);
  // The token is an RFC 8707 JWT access token bound to the key.
  CHECK(jwt_part(token.bearer().reveal(), 1)["cnf"]["jkt"] == jkt);
  // Printing shows the key's thumbprint, never the token.
  const std::string printed = to_string(token);
  CHECK_THAT(printed, Contains("dpop_jkt=" + jkt));
  CHECK(printed.find(token.bearer().reveal()) == std::string::npos);

  // The token request carried a proof of that key for the token endpoint, without ath.
  const json proof = w.last()["dpop"];
  CHECK(proof["header"]["typ"] == "dpop+jwt");
  CHECK(proof["header"]["alg"] == "ES256");
  CHECK(proof["header"]["jwk"].count("d") == 0);
  CHECK(proof["jkt"] == jkt);
  CHECK(proof["claims"]["htm"] == "POST");
  CHECK(proof["claims"]["htu"] == w.token_endpoint());
  CHECK(proof["claims"].count("ath") == 0);
  CHECK(w.stats()["dpop_requests"] == 1);

  // The cached token comes back with the same key; another material has its own key.
  CHECK(w.mint("orders", "api:read").same_token(token));
  w.broker.register_material("other", awaken::oauth_client_credentials(dpop_client(w)));
  CHECK(w.mint("other", "api:read").dpop_key()->thumbprint() != jkt);

  // At the resource server: presented with its proof, accepted; the query is not part of htu.
  const auto ok = w.present(token, "GET", "/api/orders?page=2");
  REQUIRE(ok.status == 200);
  const json body = json::parse(ok.body);
  CHECK(body["jkt"] == jkt);
  CHECK(body["client_id"] == "awaken-dpop");
  CHECK(body["method"] == "GET");
  CHECK(w.present(token, "DELETE", "/api/orders/7").status == 200);

  // The same proof again is a replay; a proof for another method or path does not fit.
  const awaken::AuthorizationHeaders h = token.authorization("POST", w.api_url("/api/orders"));
  const std::vector<awaken::http::Header> headers{{"authorization", std::string{h.authorization.reveal()}},
                                                  {"dpop", h.dpop}};
  CHECK(w.call("POST", "/api/orders", headers).status == 200);
  CHECK(w.call("POST", "/api/orders", headers).status == 401);
  CHECK(w.api_stats()["last_reason"] == "replayed jti");
  CHECK(w.call("PUT", "/api/orders",
               {{"authorization", std::string{h.authorization.reveal()}},
                {"dpop", token.dpop_proof("POST", w.api_url("/api/orders"))}})
            .status == 401);
  CHECK(w.api_stats()["last_reason"] == "htm mismatch");

  // Without a proof, or as a bearer token, the token is worth nothing.
  const std::string bearer{token.bearer().reveal()};
  CHECK(w.call("GET", "/api/orders", {{"authorization", "DPoP " + bearer}}).status == 401);
  CHECK(w.api_stats()["last_reason"] == "missing proof");
  const auto as_bearer = w.call("GET", "/api/orders", {{"authorization", "Bearer " + bearer}});
  CHECK(as_bearer.status == 401);
  CHECK(w.api_stats()["last_reason"] == "bearer use of a bound token");
  // A proof made with another key does not match cnf.jkt.
  const awaken::DpopKey stranger = awaken::DpopKey::generate();
  CHECK(w.call("GET", "/api/orders",
               {{"authorization", "DPoP " + bearer}, {"dpop", stranger.proof("GET", w.api_url("/api/orders"), bearer)}})
            .status == 401);
  CHECK(w.api_stats()["last_reason"] == "jkt mismatch");
  CHECK(w.api_stats()["accepted"] == 3);
}

TEST_CASE(
    "DPoP nonces: the token endpoint's challenge answered once and its nonce kept; the resource "
    "server's nonce in the call's proof",
    "[dpop][oidc]") {
  World w;
  REQUIRE(http_json("POST", w.issuer() + "/dpop/require_nonce?on=1")["require_nonce"] == true);
  w.broker.register_material("orders", awaken::oauth_client_credentials(dpop_client(w)));
  const IssuedToken first = w.mint("orders", "api:read");
  CHECK(first.token_type() == "DPoP");
  json stats = w.stats();
  CHECK(stats["nonce_challenges"] == 1);
  CHECK(stats["dpop_requests"] == 2);  // the challenged request and its one retry
  const std::string nonce = w.last()["dpop"]["claims"]["nonce"];
  CHECK_FALSE(nonce.empty());

  // The nonce is kept: the next token request carries it and meets no challenge.
  w.mint("orders", "api:write");
  stats = w.stats();
  CHECK(stats["nonce_challenges"] == 1);
  CHECK(stats["dpop_requests"] == 3);
  CHECK(w.last()["dpop"]["claims"]["nonce"] == nonce);

  // A rotated nonce: one challenge, one retry with the new one.
  http_json("POST", w.issuer() + "/dpop/rotate_nonce");
  w.mint("orders", "api:read api:write");
  stats = w.stats();
  CHECK(stats["nonce_challenges"] == 2);
  CHECK(stats["dpop_requests"] == 5);
  CHECK(w.last()["dpop"]["claims"]["nonce"] != nonce);

  // private_key_jwt: the retry after a challenge carries a fresh client assertion (the provider
  // refuses one it has seen), and the proof with the nonce.
  OAuthClientCredentials signed_client;
  signed_client.token_endpoint = w.token_endpoint();
  signed_client.client_id = "awaken-es256";
  signed_client.authentication = ClientAuthentication::private_key_jwt;
  signed_client.private_key = RedactedString{w.oidc.info()["keys"]["es256"].get<std::string>()};
  signed_client.signing_algorithm = awaken::jose::Algorithm::es256;
  signed_client.key_id = "es256-1";
  signed_client.dpop = true;
  w.broker.register_material("signed", awaken::oauth_client_credentials(signed_client));
  CHECK(w.mint("signed", "api:read").token_type() == "DPoP");
  CHECK(w.stats()["nonce_challenges"] == 3);
  CHECK(w.last()["client_id"] == "awaken-es256");

  // A new material has its own key and no nonce yet: one challenge.
  w.broker.register_material("fresh", awaken::oauth_client_credentials(dpop_client(w)));
  CHECK(w.mint("fresh", "api:read").token_type() == "DPoP");
  CHECK(w.stats()["nonce_challenges"] == 4);

  // A challenge whose DPoP-Nonce is no nonce (a space; longer than 1024 bytes): it is not kept
  // and not retried, and the refusal is permanent, since every request would meet the same.
  int challenges = 5;
  for (const std::string& bad : {std::string{"bad%20nonce"}, std::string(1100, 'n')}) {
    http_json("POST", w.issuer() + "/dpop/rotate_nonce?value=" + bad);
    const std::string name = "bad-" + std::to_string(challenges);
    w.broker.register_material(name, awaken::oauth_client_credentials(dpop_client(w)));
    const auto requests = w.stats()["dpop_requests"].get<int>();
    const awaken::Error e = awaken::test::mint_failure(w.io, w.broker, name, "api:read");
    CHECK(e.code() == credential_errc::permanent_upstream);
    CHECK_THAT(e.what(), Catch::Contains("not a nonce"));
    CHECK_THAT(e.what(), !Catch::Contains("bad nonce"));
    CHECK(w.stats()["nonce_challenges"] == challenges);
    CHECK(w.stats()["dpop_requests"] == requests + 1);
    ++challenges;
  }
  http_json("POST", w.issuer() + "/dpop/rotate_nonce");

  // The resource server demands its own nonce: the first call learns it, the second uses it.
  REQUIRE(http_json("POST", w.api_url("/control/require_nonce?on=1"))["require_nonce"] == true);
  const auto challenged = w.present(first, "GET", "/api/orders");
  CHECK(challenged.status == 401);
  const auto server_nonce = challenged.header("dpop-nonce");
  REQUIRE(server_nonce);
  CHECK(awaken::is_dpop_nonce(*server_nonce));
  CHECK(w.api_stats()["last_reason"] == "missing nonce");
  CHECK(w.present(first, "GET", "/api/orders", std::string{*server_nonce}).status == 200);
  // A nonce that is not one is refused before anything is signed.
  CHECK(awaken::test::code_of([&] { first.authorization("GET", w.api_url("/api/orders"), "bad nonce"); }) ==
        credential_errc::invalid_material);
}

TEST_CASE(
    "DPoP with the JWT-bearer grant, token exchange and SPIFFE client authentication (JSON "
    "configuration)",
    "[dpop][oidc][federation]") {
  World w;
  const json grant{{"kind", "jwt_bearer_grant"},
                   {"token_endpoint", w.token_endpoint()},
                   {"jwt_svid", json::object()},
                   {"dpop", true}};
  w.broker.register_material("grant", awaken::material_from_config(grant, w.source));
  const IssuedToken granted = w.mint("grant", "api:read");
  CHECK(granted.token_type() == "DPoP");
  json last = w.last();
  CHECK(last["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer");
  CHECK(last["dpop"]["jkt"] == granted.dpop_key()->thumbprint());

  const json exchange{{"kind", "spiffe_token_exchange"}, {"token_endpoint", w.token_endpoint()}, {"dpop", true}};
  w.broker.register_material("exchange", awaken::material_from_config(exchange, w.source));
  const IssuedToken exchanged = w.mint("exchange", "api:read");
  CHECK(exchanged.token_type() == "DPoP");
  last = w.last();
  CHECK(last["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange");
  CHECK(last["dpop"]["jkt"] == exchanged.dpop_key()->thumbprint());
  CHECK(exchanged.dpop_key()->thumbprint() != granted.dpop_key()->thumbprint());

  // SPIFFE client authentication with an RFC 8707 resource: a JWT bound to the key, accepted by
  // the resource server.
  const json spiffe{{"kind", "spiffe_client_credentials"},
                    {"token_endpoint", w.token_endpoint()},
                    {"client_assertion_type", "jwt-spiffe"},
                    {"resource", api_resource},
                    {"dpop", true}};
  w.broker.register_material("spiffe", awaken::material_from_config(spiffe, w.source));
  const IssuedToken bound = w.mint("spiffe", "api:read");
  CHECK(jwt_part(bound.bearer().reveal(), 1)["cnf"]["jkt"] == bound.dpop_key()->thumbprint());
  const auto ok = w.present(bound, "GET", "/api/orders");
  REQUIRE(ok.status == 200);
  CHECK(json::parse(ok.body)["client_id"] == "awaken-spiffe");

  // oauth_client_credentials from JSON too; "dpop" must be a boolean.
  const json client{{"kind", "oauth_client_credentials"},
                    {"token_endpoint", w.token_endpoint()},
                    {"client_id", "awaken-dpop"},
                    {"client_secret", "s3cret-value"},
                    {"dpop", true}};
  w.broker.register_material("client", CredentialMaterial::from_config(client));
  CHECK(w.mint("client", "api:read").token_type() == "DPoP");
  json wrong = client;
  wrong["dpop"] = "yes";
  CHECK_THROWS_WITH(CredentialMaterial::from_config(wrong), Contains("'dpop' is not true or false"));

  // Without DPoP, the DPoP-only client is refused by the provider: the proof is what it wants.
  json plain = client;
  plain.erase("dpop");
  w.broker.register_material("plain", CredentialMaterial::from_config(plain));
  CHECK(mint_failure(w.io, w.broker, "plain", "api:read").code() == awaken::credential_errc::permanent_upstream);
}

TEST_CASE("DPoP asked for, a bearer token issued: refused, never handed out as a plain bearer", "[dpop]") {
  PeerProcess tokens{"token_server.mjs", {}};
  asio::io_context io;
  AwakenBroker broker{io.get_executor(), quick_retries()};
  awaken::OAuthClientCredentials c;
  c.token_endpoint = "http://127.0.0.1:" + std::to_string(tokens.info()["port"].get<int>()) + "/token";
  c.client_id = "awaken-client";
  c.client_secret = RedactedString{"s3cret-value"};
  c.dpop = true;
  broker.register_material("bearer-only", awaken::oauth_client_credentials(c));
  const awaken::Error e = mint_failure(io, broker, "bearer-only");
  CHECK(e.code() == awaken::credential_errc::permanent_upstream);
  CHECK_THAT(e.what(), Contains("a DPoP-bound token was asked for, 'Bearer' was issued"));
  // The request did carry a proof.
  const json last = json::parse(
      http_call("GET", "http://127.0.0.1:" + std::to_string(tokens.info()["port"].get<int>()) + "/last").body);
  CHECK(last["headers"].contains("dpop"));
}
