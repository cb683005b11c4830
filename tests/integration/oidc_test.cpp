// Minters against a real OpenID provider (tests/peers/oidc_server.mjs, npm oidc-provider):
// client secrets, private_key_jwt with RS256, PS256 and ES256, the Google JWT-bearer grant;
// the client assertion itself; token endpoints over HTTPS with a CA made at test time; and
// CredentialMaterial::from_config.
#include <stdlib.h>

#include <fstream>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/credentials/google_service_account.hpp>
#include <awaken/credentials/oauth_client_credentials.hpp>
#include <awaken/error.hpp>
#include <awaken/jose/jws.hpp>

#include "support/json_edit.hpp"
#include "support/minting.hpp"
#include "support/names.hpp"

using awaken::jose::Algorithm;

namespace {

struct OidcPeer {
  awaken::test::PeerProcess process{"oidc_server.mjs", {}};
  std::string endpoint() const { return process.info()["token_endpoint"]; }
  RedactedString key(const std::string& name) const {
    return RedactedString{process.info()["keys"][name].get<std::string>()};
  }
};

OAuthClientCredentials key_client(const OidcPeer& peer, Algorithm alg, const std::string& key_name = {}) {
  std::string name{awaken::jose::to_string(alg)};
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  OAuthClientCredentials c;
  c.token_endpoint = peer.endpoint();
  c.client_id = "awaken-" + name;
  c.authentication = ClientAuthentication::private_key_jwt;
  c.private_key = peer.key(key_name.empty() ? name : key_name);
  c.signing_algorithm = alg;
  c.key_id = name + "-1";
  return c;
}

OAuthClientCredentials secret_client(const OidcPeer& peer, ClientAuthentication auth) {
  OAuthClientCredentials c;
  c.token_endpoint = peer.endpoint();
  c.client_id = auth == ClientAuthentication::client_secret_basic ? "awaken-basic" : "awaken-post";
  c.client_secret = RedactedString{"s3cret-value"};
  c.authentication = auth;
  return c;
}

CredentialMaterial service_account(const OidcPeer& peer, const std::string& key_name, const std::string& token_uri) {
  const nlohmann::json file{{"type", "service_account"},
                            {"private_key_id", "sa-1"},
                            {"private_key", peer.key(key_name).reveal()},
                            {"client_email", peer.process.info()["sa_email"]},
                            {"token_uri", token_uri}};
  awaken::GoogleServiceAccountOptions options;
  options.allowed_token_uris = {token_uri};
  return awaken::google_service_account(awaken::GoogleServiceAccount::from_json(RedactedString{file.dump()}), options);
}

// A fresh P-256 private key as PKCS#8 PEM.
std::string ec_key_pem() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  REQUIRE(key != nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  REQUIRE(PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string pem{data, static_cast<std::size_t>(n)};
  BIO_free(bio);
  EVP_PKEY_free(key);
  return pem;
}

}  // namespace

TEST_CASE("oidc-provider accepts private_key_jwt assertions signed with RS256, PS256 and ES256", "[minters][oidc]") {
  OidcPeer peer;
  asio::io_context io;
  AwakenBroker broker{io.get_executor(), quick_retries()};
  for (Algorithm alg : {Algorithm::rs256, Algorithm::ps256, Algorithm::es256}) {
    const std::string provider{awaken::jose::to_string(alg)};
    INFO(provider);
    broker.register_material(provider, awaken::oauth_client_credentials(key_client(peer, alg)));
    const IssuedToken read = run(io, broker.token_for(provider, "api:read"));
    CHECK(read.bearer().size() >= 32);
    CHECK(read.token_type() == "Bearer");
    CHECK(read.expires_at() > std::chrono::system_clock::now() + 590s);
    CHECK(read.expires_at() < std::chrono::system_clock::now() + 601s);
    // A second assertion straight after: the provider refuses a replayed jti, so this proves it is fresh.
    const IssuedToken both = run(io, broker.token_for(provider, "api:read api:write"));
    CHECK_FALSE(both.same_token(read));
    CHECK(run(io, broker.token_for(provider, "api:read")).same_token(read));  // cached
  }
  CHECK(broker.stats().mint_attempts == 6);
}

TEST_CASE("oidc-provider accepts client secrets by basic and post authentication", "[minters][oidc]") {
  OidcPeer peer;
  asio::io_context io;
  AwakenBroker broker{io.get_executor(), quick_retries()};
  broker.register_material(
      "basic", awaken::oauth_client_credentials(secret_client(peer, ClientAuthentication::client_secret_basic)));
  broker.register_material(
      "post", awaken::oauth_client_credentials(secret_client(peer, ClientAuthentication::client_secret_post)));
  CHECK_FALSE(run(io, broker.token_for("basic", "api:write")).bearer().empty());
  CHECK_FALSE(run(io, broker.token_for("post", "")).bearer().empty());
  // A scope the client may not have is a permanent refusal with the provider's words.
  const auto e = mint_failure(io, broker, "basic", "openid");
  CHECK(e.code() == credential_errc::permanent_upstream);
  CHECK(e.details().http_status == 400);
  CHECK_THAT(e.details().server_message, Contains("invalid_scope"));
}

TEST_CASE("oidc-provider refuses an assertion signed with another key or for another audience", "[minters][oidc]") {
  OidcPeer peer;
  asio::io_context io;
  AwakenBroker broker{io.get_executor(), quick_retries()};
  broker.register_material("wrong-key", awaken::oauth_client_credentials(key_client(peer, Algorithm::rs256, "wrong")));
  const auto bad_key = mint_failure(io, broker, "wrong-key");
  CHECK(bad_key.code() == credential_errc::permanent_upstream);
  CHECK(bad_key.details().http_status == 401);
  CHECK_THAT(bad_key.details().server_message, Contains("invalid_client"));

  auto other_audience = key_client(peer, Algorithm::es256);
  other_audience.token_endpoint += "?tenant=other";  // still the token endpoint, but not its URL
  broker.register_material("wrong-aud", awaken::oauth_client_credentials(other_audience));
  const auto bad_aud = mint_failure(io, broker, "wrong-aud");
  CHECK(bad_aud.code() == credential_errc::permanent_upstream);
  CHECK_THAT(bad_aud.details().server_message, Contains("invalid_client"));
  CHECK(broker.stats().mint_attempts == 2);  // neither retried

  const std::string texts = std::string{bad_key.what()} + bad_aud.what() + bad_key.details().server_message;
  CHECK(texts.find("PRIVATE KEY") == std::string::npos);
}

TEST_CASE("oidc-provider's JWT-bearer grant verifies a Google service-account assertion", "[minters][oidc][google]") {
  OidcPeer peer;
  asio::io_context io;
  AwakenBroker broker{io.get_executor(), quick_retries()};
  broker.register_material("sa", service_account(peer, "sa", peer.endpoint()));
  const auto token = run(io, broker.token_for("sa", "https://www.googleapis.com/auth/cloud-platform"));
  CHECK(token.bearer().size() >= 32);
  CHECK(token.expires_at() > std::chrono::system_clock::now() + 590s);

  broker.register_material("sa-wrong-key", service_account(peer, "wrong", peer.endpoint()));
  const auto bad_key = mint_failure(io, broker, "sa-wrong-key");
  CHECK(bad_key.code() == credential_errc::permanent_upstream);
  CHECK_THAT(bad_key.details().server_message, Contains("invalid_grant"));

  broker.register_material("sa-wrong-aud", service_account(peer, "sa", peer.endpoint() + "?tenant=other"));
  const auto bad_aud = mint_failure(io, broker, "sa-wrong-aud");
  CHECK(bad_aud.code() == credential_errc::permanent_upstream);
  CHECK_THAT(bad_aud.details().server_message, Contains("invalid_grant"));
}

TEST_CASE("A token from oidc-provider is cached, then refreshed once the clock enters the soft window",
          "[minters][oidc]") {
  OidcPeer peer;
  asio::io_context io;
  awaken::test::SteadyOnlyClock clock;  // the provider checks assertions against real time
  BrokerOptions options = quick_retries();
  options.timing.clock = &clock;
  AwakenBroker broker{io.get_executor(), options};
  broker.register_material("es", awaken::oauth_client_credentials(key_client(peer, Algorithm::es256)));
  const auto first = run(io, broker.token_for("es", "api:read"));
  clock.advance(300s);  // 600 s tokens: still fresh
  CHECK(run(io, broker.token_for("es", "api:read")).same_token(first));
  CHECK(broker.stats().mint_attempts == 1);

  clock.advance(150s);  // 150 s left: inside the soft window of 200 s, outside the hard one of 60 s
  CHECK(run(io, broker.token_for("es", "api:read")).same_token(first));
  awaken::test::settle(io, broker);
  const auto refreshed = run(io, broker.token_for("es", "api:read"));
  CHECK_FALSE(refreshed.same_token(first));
  CHECK(broker.stats().background_refreshes == 1);
  CHECK(broker.stats().mint_attempts == 2);
}

TEST_CASE("A private_key_jwt assertion carries the claims of RFC 7523 and a fresh jti", "[minters][oauth]") {
  awaken::test::PeerProcess peer{"token_server.mjs", {}};
  const std::string base = "http://127.0.0.1:" + std::to_string(peer.info()["port"].get<int>());
  asio::io_context io;
  awaken::ManualClock clock{std::chrono::system_clock::time_point{std::chrono::seconds{1'800'000'000}}};
  BrokerOptions options = quick_retries(1);
  options.timing.clock = &clock;
  AwakenBroker broker{io.get_executor(), options};
  OAuthClientCredentials c;
  c.token_endpoint = base + "/token";
  c.client_id = "awaken-client";
  c.authentication = ClientAuthentication::private_key_jwt;
  c.private_key = RedactedString{ec_key_pem()};
  c.signing_algorithm = Algorithm::es256;
  c.key_id = "k-7";
  c.assertion_lifetime = 90s;
  broker.register_material("p", awaken::oauth_client_credentials(c));

  std::vector<std::string> jtis;
  for (int i = 0; i < 2; ++i) {
    // The peer does not know this client: a refusal, but it records the request.
    CHECK(mint_failure(io, broker, "p", "a b").code() == credential_errc::permanent_upstream);
    awaken::http::HttpClient client{io.get_executor()};
    awaken::http::HttpRequest request;
    request.url = base + "/last";
    const auto seen = nlohmann::json::parse(run(io, client.send(request)).body);
    const std::string body = seen["body"];
    CHECK(body.rfind("grant_type=client_credentials&scope=a+b&client_id=awaken-client&client_assertion_type="
                     "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=",
                     0) == 0);
    CHECK_FALSE(seen["headers"].contains("authorization"));
    const auto jws = awaken::jose::CompactJws::parse(body.substr(body.rfind('=') + 1));
    jws.verify(awaken::jose::PrivateKey::from_pem(c.private_key).public_key());
    CHECK(jws.algorithm() == Algorithm::es256);
    CHECK(jws.header()["kid"] == "k-7");
    CHECK(jws.header()["typ"] == "JWT");
    const auto claims = nlohmann::json::parse(jws.payload());
    CHECK(claims["iss"] == "awaken-client");
    CHECK(claims["sub"] == "awaken-client");
    CHECK(claims["aud"] == c.token_endpoint);
    CHECK(claims["iat"] == 1'800'000'000 + 1);  // the ManualClock starts 1 s in
    CHECK(claims["exp"].get<long long>() - claims["iat"].get<long long>() == 90);
    CHECK(claims["jti"].get<std::string>().size() == 22);  // 128 bits, base64url
    jtis.push_back(claims["jti"]);
  }
  CHECK(jtis[0] != jtis[1]);
}

TEST_CASE("private_key_jwt material is validated before any request", "[minters][oauth]") {
  auto make = [](auto change) {
    OAuthClientCredentials c;
    c.token_endpoint = "https://auth.example.com/token";
    c.client_id = "id";
    c.authentication = ClientAuthentication::private_key_jwt;
    c.private_key = RedactedString{ec_key_pem()};
    c.signing_algorithm = Algorithm::es256;
    change(c);
    return awaken::oauth_client_credentials(std::move(c));
  };
  CHECK_NOTHROW(make([](OAuthClientCredentials&) {}));
  CHECK_THROWS_WITH(make([](OAuthClientCredentials& c) { c.signing_algorithm = Algorithm::rs256; }),
                    Contains("private_key does not fit signing_algorithm RS256"));
  CHECK_THROWS_WITH(make([](OAuthClientCredentials& c) { c.signing_algorithm = Algorithm::es384; }),
                    Contains("does not fit signing_algorithm ES384"));
  CHECK_THROWS_WITH(make([](OAuthClientCredentials& c) { c.private_key = RedactedString{}; }),
                    Contains("private_key is empty"));
  CHECK_THROWS_WITH(make([](OAuthClientCredentials& c) { c.client_secret = RedactedString{"x"}; }),
                    Contains("client_secret is set but the authentication is private_key_jwt"));
  CHECK_THROWS_WITH(make([](OAuthClientCredentials& c) { c.assertion_lifetime = 0s; }), Contains("assertion_lifetime"));
  CHECK_THROWS_WITH(make([](OAuthClientCredentials& c) { c.assertion_lifetime = 11min; }),
                    Contains("assertion_lifetime"));
  CHECK_THROWS_WITH(make([](OAuthClientCredentials& c) {
                      c.private_key = RedactedString{"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"};
                    }),
                    Contains("private_key: invalid private key"));
  CHECK_THROWS_WITH(make([](OAuthClientCredentials& c) {
                      c.authentication = ClientAuthentication::client_secret_post;
                      c.client_secret = RedactedString{"x"};
                    }),
                    Contains("private_key is set but the authentication is not private_key_jwt"));
}

TEST_CASE("A token endpoint over HTTPS is trusted through a CA made at test time, and refused without it",
          "[minters][faults][tls]") {
  awaken::test::TempDir dir;
  awaken::test::PeerProcess peer{"token_server.mjs", {dir.path()}};
  OAuthClientCredentials c;
  c.token_endpoint = "https://127.0.0.1:" + std::to_string(peer.info()["https_port"].get<int>()) + "/token";
  c.client_id = "awaken-client";
  c.client_secret = RedactedString{"s3cret-value"};
  asio::io_context io;

  BrokerOptions trusting = quick_retries();
  trusting.http.emplace(io.get_executor(), [&] {
    awaken::http::HttpClientOptions h;
    h.ca_file = peer.info()["ca_file"];
    return h;
  }());
  AwakenBroker broker{io.get_executor(), trusting};
  broker.register_material("tls", awaken::oauth_client_credentials(c));
  CHECK(run(io, broker.token_for("tls", "s")).bearer().reveal().rfind("at-", 0) == 0);

  AwakenBroker default_trust{io.get_executor(), quick_retries()};  // the system store only
  default_trust.register_material("tls", awaken::oauth_client_credentials(c));
  const auto e = mint_failure(io, default_trust, "tls");
  CHECK(e.code() == awaken::http_errc::tls_failed);
  CHECK_FALSE((e.code() == awaken::condition::transient));
  CHECK(default_trust.stats().mint_attempts == 1);
  CHECK_THAT(std::string{e.what()}, Contains("provider 'tls'"));
}

namespace {

awaken::Error config_error(const nlohmann::json& config) {
  try {
    CredentialMaterial::from_config(config);
  } catch (const awaken::Error& e) {
    CHECK(e.code() == credential_errc::invalid_material);
    return e;
  }
  FAIL("accepted: " << config.dump());
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("from_config builds every kind of material, and each mints", "[minters][config]") {
  OidcPeer oidc;
  awaken::test::PeerProcess metadata{"token_server.mjs", {}};
  awaken::test::TempDir dir;
  const std::string key_path = dir.path() + "/client-key.pem";
  std::ofstream{key_path} << oidc.key("ps256").reveal();
  ::setenv("AWAKEN_TEST_CLIENT_SECRET", "s3cret-value", 1);
  const nlohmann::json configs{
      {"bearer", {{"kind", "bearer"}, {"token", "api-key-1"}, {"lifetime_seconds", 3600}}},
      {"google_service_account",
       {{"kind", "google_service_account"},
        {"key",
         {{"type", "service_account"},
          {"private_key_id", "sa-1"},
          {"private_key", oidc.key("sa").reveal()},
          {"client_email", oidc.process.info()["sa_email"]},
          {"token_uri", oidc.endpoint()}}},
        {"allowed_token_uris", {oidc.endpoint()}}}},
      {"client_secret_basic",
       {{"kind", "oauth_client_credentials"},
        {"token_endpoint", oidc.endpoint()},
        {"client_id", "awaken-basic"},
        {"client_secret_env", "AWAKEN_TEST_CLIENT_SECRET"}}},
      {"client_secret_post",
       {{"kind", "oauth_client_credentials"},
        {"token_endpoint", oidc.endpoint()},
        {"client_id", "awaken-post"},
        {"authentication", "client_secret_post"},
        {"client_secret", "s3cret-value"}}},
      {"private_key_jwt",
       {{"kind", "oauth_client_credentials"},
        {"token_endpoint", oidc.endpoint()},
        {"client_id", "awaken-ps256"},
        {"authentication", "private_key_jwt"},
        {"private_key_file", key_path},
        {"signing_algorithm", "PS256"},
        {"key_id", "ps256-1"},
        {"assertion_lifetime_seconds", 30}}},
      {"gce_metadata",
       {{"kind", "gce_metadata"},
        {"base_url", "http://127.0.0.1:" + std::to_string(metadata.info()["port"].get<int>())}}},
  };
  asio::io_context io;
  AwakenBroker broker{io.get_executor(), quick_retries()};
  for (const auto& [name, config] : configs.items()) {
    INFO(name);
    const auto material = CredentialMaterial::from_config(config);
    CHECK(material.kind_label() == config["kind"].get<std::string>());
    broker.register_material(name, material);
    const auto token = run(io, broker.token_for(name, name == "gce_metadata" || name == "google_service_account"
                                                          ? "https://www.googleapis.com/auth/cloud-platform"
                                                          : "api:read"));
    CHECK_FALSE(token.bearer().empty());
  }
  CHECK(run(io, broker.token_for("bearer", "x")).bearer().reveal() == "api-key-1");
  ::unsetenv("AWAKEN_TEST_CLIENT_SECRET");
}

TEST_CASE("from_config names the bad field and never echoes a secret", "[minters][config]") {
  awaken::test::TempDir dir;
  const nlohmann::json client{{"kind", "oauth_client_credentials"},
                              {"token_endpoint", "https://auth.example.com/token"},
                              {"client_id", "id"},
                              {"client_secret", "hunter2-secret"}};
  CHECK_NOTHROW(CredentialMaterial::from_config(client));
  auto with = [&](const char* name, nlohmann::json value) {
    const auto e = config_error(awaken::test::with_member(client, name, std::move(value)));
    CHECK(std::string{e.what()}.find("hunter2") == std::string::npos);
    return std::string{e.what()};
  };
  CHECK_THAT(config_error(nlohmann::json::array()).what(), Contains("not a JSON object"));
  CHECK_THAT(with("kind", nullptr), Contains("'kind' is missing"));
  CHECK_THAT(with("kind", 3), Contains("'kind' is not a string"));
  CHECK_THAT(with("kind", "kerberos"), Contains("'kind' 'kerberos' is not one of"));
  CHECK_THAT(with("client_secret", nullptr), Contains("'client_secret' is missing (or give 'client_secret_file'"));
  CHECK_THAT(with("client_secret", 42), Contains("'client_secret' is not a string"));
  CHECK_THAT(with("client_secret_env", "X"), Contains("'client_secret' is given more than once"));
  CHECK_THAT(with("client_id", nullptr), Contains("'client_id' is missing"));
  CHECK_THAT(with("client_id", ""), Contains("'client_id' is empty"));
  CHECK_THAT(with("token_endpoint", "http://auth.example.com/token"), Contains("token_endpoint"));
  CHECK_THAT(with("authentication", "mtls"), Contains("'authentication' 'mtls' is not"));
  CHECK_THAT(with("signing_algorithm", "HS256"), Contains("'signing_algorithm' 'HS256' is not one of"));
  CHECK_THAT(with("client_secert", "typo"),
             Contains("'client_secert' is not a field of kind oauth_client_credentials"));
  CHECK_THAT(with("assertion_lifetime_seconds", -5), Contains("'assertion_lifetime_seconds' is not a positive"));
  CHECK_THAT(with("private_key", "pem"), Contains("private_key is set but the authentication is not private_key_jwt"));

  auto secret_from = [&](nlohmann::json source) {
    auto j = client;
    j.erase("client_secret");
    j.update(source);
    return std::string{config_error(j).what()};
  };
  ::unsetenv("AWAKEN_TEST_UNSET");
  CHECK_THAT(secret_from({{"client_secret_env", "AWAKEN_TEST_UNSET"}}),
             Contains("'client_secret_env' names the environment variable AWAKEN_TEST_UNSET, which is not set"));
  CHECK_THAT(secret_from({{"client_secret_file", dir.path() + "/absent"}}),
             Contains("'client_secret_file' cannot open"));
  std::ofstream{dir.path() + "/empty"} << "\n";
  CHECK_THAT(secret_from({{"client_secret_file", dir.path() + "/empty"}}), Contains("names an empty file"));
  std::ofstream{dir.path() + "/huge"} << std::string((1 << 20) + 2, 'x');
  CHECK_THAT(secret_from({{"client_secret_file", dir.path() + "/huge"}}), Contains("larger than 1 MiB"));

  CHECK_THAT(config_error({{"kind", "bearer"}}).what(), Contains("'token' is missing"));
  CHECK_THAT(config_error({{"kind", "bearer"}, {"token", "t"}, {"lifetime_seconds", 1.5}}).what(),
             Contains("'lifetime_seconds' is not a positive whole number"));
  CHECK_THAT(config_error({{"kind", "gce_metadata"}, {"account", "a/b"}}).what(), Contains("account"));
  CHECK_THAT(config_error({{"kind", "google_service_account"}, {"key", {{"type", "authorized_user"}}}}).what(),
             Contains("'type' is not service_account"));
  CHECK_THAT(config_error({{"kind", "google_service_account"}, {"key", 5}}).what(),
             Contains("'key' is neither a string nor an object"));
  CHECK_THAT(config_error({{"kind", "google_service_account"}, {"key", "{}"}, {"allowed_token_uris", "x"}}).what(),
             Contains("'allowed_token_uris' is not an array"));

  // A secret read from a file keeps its bytes but for one trailing newline.
  std::ofstream{dir.path() + "/token"} << "file-token\n";
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  broker.register_material(
      "f", CredentialMaterial::from_config({{"kind", "bearer"}, {"token_file", dir.path() + "/token"}}));
  CHECK(run(io, broker.token_for("f", "")).bearer().reveal() == "file-token");
}
