// HTTP minters against a real token endpoint and metadata server (tests/peers/token_server.mjs):
// client credentials (basic and post), the GCE metadata flavour, and the error classification
// every HTTP minter shares.
#include <future>
#include <thread>

#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/credentials/gce_metadata.hpp>
#include <awaken/credentials/google_service_account.hpp>
#include <awaken/credentials/oauth_client_credentials.hpp>
#include <awaken/diagnostics.hpp>
#include <awaken/error.hpp>

#include "credentials/minters/token_request.hpp"
#include "support/json_edit.hpp"
#include "support/minting.hpp"
#include "support/names.hpp"

namespace {

struct TokenPeer {
  awaken::test::PeerProcess process{"token_server.mjs", {}};
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(process.info()["port"].get<int>()) + path;
  }
  // The last request the peer saw.
  nlohmann::json last(asio::io_context& io) const {
    awaken::http::HttpClient client{io.get_executor()};
    awaken::http::HttpRequest request;
    request.url = url("/last");
    auto response = run(io, client.send(request));
    return nlohmann::json::parse(response.body);
  }
};

OAuthClientCredentials client(const TokenPeer& peer, const std::string& path = "/token",
                              ClientAuthentication auth = ClientAuthentication::client_secret_basic) {
  OAuthClientCredentials c;
  c.token_endpoint = peer.url(path);
  c.client_id = "awaken-client";
  c.client_secret = RedactedString{"s3cret-value"};
  c.authentication = auth;
  return c;
}

// A client the token endpoint refuses: its secret is wrong.
awaken::CredentialMaterial refused_client(const TokenPeer& peer) {
  auto wrong = client(peer);
  wrong.client_secret = RedactedString{"not-the-secret"};
  return awaken::oauth_client_credentials(wrong);
}

}  // namespace

TEST_CASE("Client credentials mint through the broker with basic and post authentication", "[minters][oauth]") {
  TokenPeer peer;
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  broker.register_material("basic", awaken::oauth_client_credentials(client(peer)));
  broker.register_material(
      "post", awaken::oauth_client_credentials(client(peer, "/token", ClientAuthentication::client_secret_post)));

  const IssuedToken a = run(io, broker.token_for("basic", "read write"));
  CHECK(a.bearer().reveal().rfind("at-", 0) == 0);
  CHECK(a.bearer().reveal().find("read+write") != std::string_view::npos);
  CHECK(a.token_type() == "Bearer");
  CHECK(a.expires_at() > std::chrono::system_clock::now() + 3500s);
  auto seen = peer.last(io);
  CHECK(seen["headers"]["authorization"].get<std::string>().rfind("Basic ", 0) == 0);
  CHECK(seen["headers"]["content-type"] == "application/x-www-form-urlencoded");
  CHECK(seen["body"] == "grant_type=client_credentials&scope=read+write");

  const IssuedToken b = run(io, broker.token_for("post", ""));
  CHECK_FALSE(b.same_token(a));
  seen = peer.last(io);
  CHECK_FALSE(seen["headers"].contains("authorization"));
  CHECK(seen["body"] == "grant_type=client_credentials&client_id=awaken-client&client_secret=s3cret-value");

  CHECK(run(io, broker.token_for("basic", "read write")).same_token(a));  // cached
}

TEST_CASE("A refused client gets a permanent error with the RFC 6749 error and no secret", "[minters][oauth]") {
  TokenPeer peer;
  asio::io_context io;
  AwakenBroker broker{io.get_executor(), quick_retries()};
  broker.register_material("p", refused_client(peer));
  const auto e = mint_failure(io, broker, "p");
  CHECK(e.code() == credential_errc::permanent_upstream);
  CHECK(e.details().http_status == 401);
  CHECK(e.details().server_message == "invalid_client: client authentication failed");
  const std::string what = e.what();
  CHECK(what.find("provider 'p'") != std::string::npos);
  CHECK(what.find(peer.url("")) != std::string::npos);  // the origin, not the path
  CHECK(what.find("not-the-secret") == std::string::npos);
  CHECK(broker.stats().mint_attempts == 1);  // not retried
}

TEST_CASE("Transient token endpoint failures are retried and honour Retry-After", "[minters][faults]") {
  TokenPeer peer;
  asio::io_context io;
  AwakenBroker broker{io.get_executor(), quick_retries()};
  broker.register_material("flaky", awaken::oauth_client_credentials(client(peer, "/fault/503-then-ok/token?key=a")));
  CHECK(run(io, broker.token_for("flaky", "s")).bearer().reveal().rfind("at-", 0) == 0);
  CHECK(broker.stats().mint_attempts == 2);  // a 503, then the token

  // The server asks for 1 s; the policy alone would wait 5 ms, then 10 ms.
  std::vector<std::chrono::milliseconds> waits;
  BrokerOptions recorded = quick_retries();
  recorded.timing.sleep = [&](std::chrono::milliseconds d) -> asio::awaitable<void> {
    waits.push_back(d);
    co_return;
  };
  AwakenBroker busy{io.get_executor(), recorded};
  busy.register_material("busy", awaken::oauth_client_credentials(client(peer, "/fault/429/token")));
  const auto e = mint_failure(io, busy, "busy");
  CHECK(e.code() == credential_errc::transient_upstream);
  CHECK(e.details().http_status == 429);
  REQUIRE(e.details().retry_after);
  CHECK(*e.details().retry_after == 1s);
  CHECK(waits == std::vector<std::chrono::milliseconds>{1s, 1s});
  CHECK(busy.stats().mint_attempts == 3);
  CHECK((e.code() == awaken::condition::transient));
}

TEST_CASE("Token endpoint faults are classified", "[minters][faults]") {
  TokenPeer peer;
  asio::io_context io;
  BrokerOptions options = quick_retries(1);
  options.http.emplace(io.get_executor(), [] {
    awaken::http::HttpClientOptions h;
    h.timeout = 1s;
    h.max_response_bytes = 1 << 20;
    return h;
  }());
  AwakenBroker broker{io.get_executor(), options};
  auto code_of = [&](const std::string& fault) {
    broker.register_material(fault, awaken::oauth_client_credentials(client(peer, "/fault/" + fault + "/token")));
    return mint_failure(io, broker, fault);
  };
  const auto grant = code_of("invalid-grant");
  CHECK(grant.code() == credential_errc::permanent_upstream);
  CHECK(grant.details().server_message == "invalid_grant: Invalid JWT Signature.");
  CHECK(code_of("slow").code() == credential_errc::network);  // past the 1 s timeout
  CHECK(code_of("malformed").code() == credential_errc::transient_upstream);
  CHECK(code_of("html-200").code() == credential_errc::transient_upstream);
  CHECK(code_of("no-expires").code() == credential_errc::transient_upstream);
  CHECK(code_of("zero-expires").code() == credential_errc::transient_upstream);
  CHECK(code_of("empty-token").code() == credential_errc::transient_upstream);
  const auto huge = code_of("huge");
  CHECK(huge.code() == credential_errc::transient_upstream);
  CHECK(std::string{huge.what()}.find("larger than allowed") != std::string::npos);

  // A lifetime over a day is cut to a day.
  broker.register_material("long", awaken::oauth_client_credentials(client(peer, "/fault/long-expires/token")));
  const auto t = run(io, broker.token_for("long", "s"));
  CHECK(t.expires_at() < std::chrono::system_clock::now() + 24h + 1min);
  CHECK(t.expires_at() > std::chrono::system_clock::now() + 23h);

  // Nothing listening: network, retryable.
  broker.register_material("refused", awaken::oauth_client_credentials([&] {
                             auto c = client(peer);
                             c.token_endpoint = "http://127.0.0.1:1/token";
                             return c;
                           }()));
  const auto refused = mint_failure(io, broker, "refused");
  CHECK(refused.code() == credential_errc::network);
  CHECK((refused.code() == awaken::condition::transient));
}

TEST_CASE("The metadata server flavour sends its header and scopes", "[minters][gce]") {
  TokenPeer peer;
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  awaken::GceMetadataOptions options;
  options.base_url = peer.url("/");
  broker.register_material("gce", awaken::gce_metadata(options));
  const auto t = run(io, broker.token_for("gce", "https://www.googleapis.com/auth/cloud-platform email"));
  CHECK(t.bearer().reveal().rfind("at-", 0) == 0);
  const auto seen = peer.last(io);
  CHECK(seen["method"] == "GET");
  CHECK(seen["headers"]["metadata-flavor"] == "Google");
  CHECK(seen["path"].get<std::string>().find(
            "?scopes=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform%2Cemail") != std::string::npos);

  options.account = "../other";
  CHECK_THROWS_AS(awaken::gce_metadata(options), awaken::Error);
}

TEST_CASE("Endpoints and client fields are validated before any request", "[minters][oauth]") {
  auto make = [](std::string endpoint, std::string id = "id", std::string secret = "secret") {
    OAuthClientCredentials c;
    c.token_endpoint = std::move(endpoint);
    c.client_id = std::move(id);
    c.client_secret = RedactedString{secret};
    return awaken::oauth_client_credentials(std::move(c));
  };
  CHECK_NOTHROW(make("https://auth.example.com/oauth2/token"));
  CHECK_NOTHROW(make("http://127.0.0.1:8080/token"));
  CHECK_NOTHROW(make("http://[::1]:8080/token"));
  CHECK_THROWS_WITH(make("http://auth.example.com/token"), Contains("must use https"));
  CHECK_THROWS_WITH(make("https://user:pw@auth.example.com/token?key=k1"),
                    Contains("'https://auth.example.com' must not carry user info"));
  CHECK_THROWS_WITH(make("http://127.evil.example/token"), Contains("must use https"));  // not an IP literal
  CHECK_THROWS_WITH(make("ftp://auth.example.com/token"), Contains("not an http(s) URL"));
  CHECK_THROWS_WITH(make("https:///token"), Contains("no host"));
  CHECK_THROWS_WITH(make("https://auth.example.com/token#x"), Contains("fragment"));
  CHECK_THROWS_WITH(make("https://auth.example.com/to ken"), Contains("control byte"));
  CHECK_THROWS_WITH(make("https://auth.example.com/token", ""), Contains("client_id is empty"));
  try {
    make("https://auth.example.com/token", "id", "");
    FAIL("no error");
  } catch (const awaken::Error& e) {
    CHECK(e.code() == credential_errc::invalid_material);
    CHECK(std::string{e.what()}.find("client_secret is empty") != std::string::npos);
  }
  CHECK(awaken::detail::form_encode("a b&c=d/é~") == "a+b%26c%3Dd%2F%C3%A9~");
  CHECK(awaken::detail::basic_authorization("awaken-client", "s3cret-value") ==
        "Basic YXdha2VuLWNsaWVudDpzM2NyZXQtdmFsdWU=");
}

namespace {

std::string key_file(const TokenPeer& peer, const std::string& key_field, const std::string& token_uri) {
  return nlohmann::json{{"type", "service_account"},
                        {"project_id", "awaken-test"},
                        {"private_key_id", "test-key-1"},
                        {"private_key", peer.process.info()[key_field].get<std::string>()},
                        {"client_email", peer.process.info()["sa_email"]},
                        {"client_id", "1234"},
                        {"token_uri", token_uri}}
      .dump();
}

awaken::CredentialMaterial google(const TokenPeer& peer, const std::string& key_field = "sa_key",
                                  const std::string& path = "/google/token") {
  awaken::GoogleServiceAccountOptions options;
  options.allowed_token_uris = {peer.url(path)};
  return awaken::google_service_account(
      awaken::GoogleServiceAccount::from_json(RedactedString{key_file(peer, key_field, peer.url(path))}), options);
}

}  // namespace

TEST_CASE("A Google service account mints with an assertion the token endpoint verifies", "[minters][google]") {
  TokenPeer peer;
  asio::io_context io;
  awaken::test::SteadyOnlyClock clock;  // the peer checks the assertion against real time
  BrokerOptions options = quick_retries();
  options.timing.clock = &clock;
  AwakenBroker broker{io.get_executor(), options};
  broker.register_material("vertex", google(peer));
  const std::string scope = "https://www.googleapis.com/auth/cloud-platform";
  const auto first = run(io, broker.token_for("vertex", scope));
  CHECK(first.bearer().reveal().find("cloud-platform") != std::string_view::npos);
  const auto seen = peer.last(io);
  CHECK(seen["body"].get<std::string>().rfind(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=", 0) == 0);
  CHECK(run(io, broker.token_for("vertex", scope)).same_token(first));  // cached

  // Into the soft window: the cached token at once, and one refresh through the peer.
  clock.advance(3600s - 200s);
  CHECK(run(io, broker.token_for("vertex", scope)).same_token(first));
  awaken::test::settle(io, broker);
  const auto refreshed = run(io, broker.token_for("vertex", scope));
  CHECK_FALSE(refreshed.same_token(first));
  CHECK(broker.stats().background_refreshes == 1);
}

TEST_CASE("A wrong key or a wrong audience is refused by the token endpoint", "[minters][google]") {
  TokenPeer peer;
  asio::io_context io;
  AwakenBroker broker{io.get_executor(), quick_retries()};
  broker.register_material("wrong-key", google(peer, "other_key"));
  const auto bad_key = mint_failure(io, broker, "wrong-key");
  CHECK(bad_key.code() == credential_errc::permanent_upstream);
  CHECK(bad_key.details().server_message.find("invalid_grant: assertion refused") == 0);
  broker.register_material("wrong-aud", google(peer, "sa_key", "/google/token?tenant=other"));
  const auto bad_aud = mint_failure(io, broker, "wrong-aud");
  CHECK(bad_aud.code() == credential_errc::permanent_upstream);
  INFO(bad_aud.details().server_message);
  CHECK(bad_aud.details().server_message.find("ERR_JWT_CLAIM_VALIDATION_FAILED") != std::string::npos);
  const std::string texts = std::string{bad_key.what()} + bad_aud.what();
  CHECK(texts.find("PRIVATE KEY") == std::string::npos);
}

TEST_CASE("Service account key files are validated and never echoed", "[minters][google]") {
  TokenPeer peer;
  const auto valid = nlohmann::json::parse(key_file(peer, "sa_key", awaken::GoogleServiceAccount::google_token_uri));
  auto error_of = [](const nlohmann::json& j) -> std::string {
    try {
      awaken::google_service_account(awaken::GoogleServiceAccount::from_json(RedactedString{j.dump()}));
    } catch (const awaken::Error& e) {
      CHECK(e.code() == credential_errc::invalid_material);
      CHECK(std::string{e.what()}.find("BEGIN") == std::string::npos);
      CHECK(std::string{e.what()}.find("MII") == std::string::npos);
      return e.what();
    }
    return "accepted";
  };
  CHECK(error_of(valid) == "accepted");
  auto with = [&](const char* name, nlohmann::json value) {
    return error_of(awaken::test::with_member(valid, name, std::move(value)));
  };
  CHECK_THAT(with("type", "authorized_user"), Catch::Contains("'type' is not service_account"));
  CHECK_THAT(with("client_email", nullptr), Catch::Contains("'client_email' is missing"));
  CHECK_THAT(with("private_key_id", 7), Catch::Contains("'private_key_id' is not a string"));
  CHECK_THAT(with("token_uri", ""), Catch::Contains("'token_uri' is empty"));
  CHECK_THAT(with("private_key", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
             Catch::Contains("does not look like a PEM block"));
  CHECK_THAT(with("private_key", "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n"),
             Catch::Contains("private_key: invalid private key"));
  CHECK_THAT(error_of(nlohmann::json::array()), Catch::Contains("not a JSON object"));

  // The seed's corpus of token URIs that must never receive a signed assertion.
  for (const char* uri :
       {"http://127.0.0.1/token", "http://localhost:8080/token", "http://10.0.0.5/token", "http://192.168.1.1/token",
        "http://169.254.169.254/computeMetadata/v1/token", "https://oauth2.googleapis.com.evil.example/token",
        "https://oauth2.googleapis.com@evil.example/token", "https://oauth2.googleapis.com./token",
        "https://oauth2.googleapis.com/token?redirect=https://evil.example", "HTTPS://oauth2.googleapis.com/token",
        "https://oauth2.googleapis.com/token/", "https://evil.example/token"}) {
    INFO(uri);
    CHECK_THAT(with("token_uri", uri), Catch::Contains("is not https://oauth2.googleapis.com/token nor an allowed"));
  }
}

// The one signature, void(std::error_code, IssuedToken), through every completion style, with
// the server's words in the diagnostics (bound, or carried by the exception of the default).
TEST_CASE("token_for works with every completion token and carries the diagnostics", "[minters][completion]") {
  TokenPeer peer;
  asio::io_context io;
  AwakenBroker broker{io.get_executor(), quick_retries()};
  broker.register_material("bad", refused_client(peer));
  broker.register_material("good", awaken::oauth_client_credentials(client(peer)));
  const auto refused = [](const awaken::Diagnostics& d) {
    CHECK(d.details.http_status == 401);
    CHECK(d.details.oauth_error == "invalid_client");
    CHECK(d.details.oauth_error_description == "client authentication failed");
    CHECK(d.context.find("provider 'bad'") != std::string::npos);
    CHECK(d.context.find("not-the-secret") == std::string::npos);
  };

  SECTION("callback, with bound diagnostics") {
    awaken::Diagnostics diag;
    diag.context = "left from before";
    std::error_code code;
    bool called = false;
    broker.token_for("bad", "s", awaken::bind_diagnostics(diag, [&](std::error_code ec, IssuedToken t) {
                       called = true;
                       code = ec;
                       CHECK_FALSE(t);
                     }));
    io.run_for(10s);
    REQUIRE(called);
    CHECK(code == credential_errc::permanent_upstream);
    refused(diag);
    awaken::Diagnostics ok_diag;
    ok_diag.context = "stale";
    IssuedToken good;
    broker.token_for("good", "s", awaken::bind_diagnostics(ok_diag, [&](std::error_code ec, IssuedToken t) {
                       CHECK_FALSE(ec);
                       good = t;
                     }));
    io.restart();
    io.run_for(10s);
    CHECK(good);
    CHECK(ok_diag.context.empty());  // cleared when the operation started
  }
  SECTION("the default token throws awaken::Error with the diagnostics") {
    try {
      run(io, broker.token_for("bad", "s"));
      FAIL("no error");
    } catch (const awaken::Error& e) {
      CHECK(e.code() == credential_errc::permanent_upstream);
      refused(awaken::Diagnostics{e.context(), e.details()});
    }
    CHECK(run(io, broker.token_for("good", "s")));
  }
  SECTION("as_tuple and with_diagnostics around asio::use_awaitable") {
    auto [ec, t] = run(io, broker.token_for("bad", "s", asio::experimental::as_tuple(asio::use_awaitable)));
    CHECK(ec == credential_errc::permanent_upstream);
    CHECK_FALSE(t);
    CHECK_THROWS_AS(run(io, broker.token_for("bad", "s", awaken::with_diagnostics(asio::use_awaitable))),
                    awaken::Error);
    CHECK_THROWS_AS(run(io, broker.token_for("bad", "s", asio::use_awaitable)), std::system_error);
  }
  SECTION("use_future, with the io_context on another thread") {
    auto guard = asio::make_work_guard(io);
    std::jthread runner{[&] { io.run_for(20s); }};
    auto good = broker.token_for("good", "s", asio::use_future);
    auto bad = broker.token_for("bad", "s", asio::use_future);
    REQUIRE(good.wait_for(20s) == std::future_status::ready);  // no test waits without a deadline
    REQUIRE(bad.wait_for(20s) == std::future_status::ready);
    CHECK(good.get());
    CHECK_THROWS_AS(bad.get(), std::system_error);
    guard.reset();
  }
  SECTION("deferred: nothing starts until launched") {
    auto op = broker.token_for("good", "deferred-scope", asio::experimental::deferred);
    io.run_for(200ms);
    CHECK(broker.stats().mint_attempts == 0);
    std::error_code code;
    IssuedToken got;
    std::move(op)([&](std::error_code ec, IssuedToken t) {
      code = ec;
      got = t;
    });
    io.restart();
    io.run_for(10s);
    CHECK_FALSE(code);
    CHECK(got);
    CHECK(broker.stats().mint_attempts == 1);
  }
}
