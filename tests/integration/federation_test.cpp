// Workload identity federation end to end, against the tests' peers: oidc-provider
// (tests/peers/oidc_server.mjs --jwks --tls: SPIFFE client assertions of both types, RFC 8705
// mutual TLS with the X.509-SVID, the RFC 7523 JWT-bearer grant and RFC 8693 token exchange with a
// JWT-SVID, RFC 8707 resources) and the cloud token services (tests/peers/cloud_sts_server.mjs:
// Google STS and IAM credentials, Entra ID, AWS STS), with token files, JWT-SVIDs and URLs as
// the workload's identity.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/credentials/cloud_federation.hpp>
#include <awaken/credentials/federation.hpp>
#include <awaken/credentials/spiffe_minters.hpp>
#include <awaken/error.hpp>
#include <awaken/jose/base64url.hpp>
#include <awaken/log.hpp>
#include <awaken/spiffe/x509_source.hpp>

#include "support/minting.hpp"
#include "support/names.hpp"
#include "support/source_support.hpp"
#include "support/workload_peer.hpp"

using awaken::FederatedOAuth;
using awaken::IdentityTokenSource;

namespace {

std::string http_text(const std::string& method, const std::string& url, std::string body = {}) {
  asio::io_context io;
  awaken::http::HttpClient client{io.get_executor()};
  awaken::http::HttpRequest request;
  request.method = method;
  request.url = url;
  request.body = std::move(body);
  return run(io, client.send(request)).body;
}

json claims_of(std::string_view jwt) {
  const auto first = jwt.find('.');
  const auto second = jwt.find('.', first + 1);
  return json::parse(awaken::jose::base64url_decode(jwt.substr(first + 1, second - first - 1)));
}

void write_file(const std::string& path, const std::string& text) {
  // A new file moved into place, as a rotating system (the kubelet's symlink swap) does.
  const std::string temp = path + ".new";
  std::ofstream{temp, std::ios::trunc} << text;
  std::filesystem::rename(temp, path);
}

// The Workload API peer, the two token services trusting its keys, the sources and a broker
// that trusts the oidc peer's TLS CA.
struct World {
  World() {
    const auto ca = peer.control("/x509/ca");
    std::ofstream{dir.path() + "/spiffe-root.pem"} << ca["example_root_pem"].get<std::string>();
    oidc = std::make_unique<PeerProcess>("oidc_server.mjs",
                                         std::vector<std::string>{"--jwks", jwks(), "--tls", dir.path(), "--client-ca",
                                                                  dir.path() + "/spiffe-root.pem"});
    awaken::http::HttpClientOptions http;
    http.ca_file = oidc->info()["ca_file"];
    BrokerOptions options = quick_retries();
    options.http.emplace(io.get_executor(), http);
    broker = std::make_unique<AwakenBroker>(io.get_executor(), options);
  }

  std::string jwks() const { return "http://127.0.0.1:" + std::to_string(peer.control_port()) + "/jwks"; }
  std::string cloud_url(const std::string& path = "") const {
    return "http://127.0.0.1:" + std::to_string(cloud.info()["port"].get<int>()) + path;
  }
  std::string oidc_endpoint() const { return oidc->info()["token_endpoint"]; }
  std::string oidc_https_endpoint() const { return oidc->info()["https_token_endpoint"]; }
  json oidc_last() const {
    const std::string issuer = oidc->info()["issuer"];
    return json::parse(http_text("GET", issuer + "/last"));
  }
  json cloud_last() const { return json::parse(http_text("GET", cloud_url("/last"))); }
  json cloud_stats() const { return json::parse(http_text("GET", cloud_url("/stats"))); }
  // A token of the cloud peer's external issuer (a Kubernetes service-account token).
  std::string issued(const std::string& audience, int ttl = 600) const {
    return http_text("POST", cloud_url("/issue?aud=" + audience + "&ttl=" + std::to_string(ttl)));
  }
  std::shared_ptr<awaken::spiffe::X509Source> x509() {
    if (!x509_source) {
      auto b = awaken::spiffe::X509Source::builder();
      b.endpoint(peer.endpoint()).reconnect_backoff(10ms, 100ms).initial_sync_timeout(10s);
      x509_source = std::make_shared<awaken::spiffe::X509Source>(run(io, b.build(io.get_executor())));
    }
    return x509_source;
  }
  IssuedToken mint(const std::string& provider, const std::string& scope) {
    return run(io, broker->token_for(provider, scope));
  }

  TempDir dir;
  WorkloadPeer peer;
  PeerProcess cloud{"cloud_sts_server.mjs", {"--jwks", jwks()}};
  std::unique_ptr<PeerProcess> oidc;
  asio::io_context io;
  JwtSource source = [this] {
    auto b = JwtSource::builder();
    b.endpoint(peer.endpoint()).reconnect_backoff(10ms, 100ms).initial_sync_timeout(10s);
    return run(io, b.build(io.get_executor()));
  }();
  std::shared_ptr<awaken::spiffe::X509Source> x509_source;
  std::unique_ptr<AwakenBroker> broker;
};

std::string google_audience(const World& w) { return w.cloud.info()["google_audience"]; }

json external_account(const World& w, const json& credential_source, const std::string& impersonate = {}) {
  json file{{"type", "external_account"},
            {"audience", google_audience(w)},
            {"subject_token_type", "urn:ietf:params:oauth:token-type:jwt"},
            {"token_url", w.cloud_url("/v1/token")},
            {"credential_source", credential_source}};
  if (!impersonate.empty()) {
    file["service_account_impersonation_url"] =
        w.cloud_url("/v1/projects/-/serviceAccounts/" + impersonate + ":generateAccessToken");
    file["service_account_impersonation"] = {{"token_lifetime_seconds", 1200}};
  }
  return file;
}

json google_config(const json& account) {
  json allowed = json::array({account["token_url"]});
  if (account.contains("service_account_impersonation_url"))
    allowed.push_back(account["service_account_impersonation_url"]);
  return {{"kind", "google_external_account"}, {"credentials", account}, {"allowed_urls", allowed}};
}

}  // namespace

TEST_CASE("SPIFFE client authentication at oidc-provider: jwt-bearer and jwt-spiffe assertions, RFC 8707 resources",
          "[federation][oidc]") {
  World w;
  for (const char* type : {"jwt-bearer", "jwt-spiffe"}) {
    INFO(type);
    const json config{
        {"kind", "spiffe_client_credentials"}, {"token_endpoint", w.oidc_endpoint()}, {"client_assertion_type", type}};
    w.broker->register_material(type, awaken::material_from_config(config, w.source));
    const IssuedToken token = w.mint(type, "api:read");
    CHECK(token.bearer().size() >= 32);
    const json last = w.oidc_last();
    CHECK(last["client_assertion_type"] == std::string{"urn:ietf:params:oauth:client-assertion-type:"} + type);
    CHECK(last["has_client_assertion"] == true);
    CHECK(last["grant_type"] == "client_credentials");
  }
  // RFC 8707: the resource makes the provider issue a JWT access token for that audience.
  awaken::SpiffeClientCredentials c;
  c.token_endpoint = w.oidc_endpoint();
  c.client_id = "awaken-spiffe";
  c.assertion_type = awaken::ClientAssertionType::jwt_spiffe;
  c.resources = {"https://api.awaken.test/orders"};
  w.broker->register_material("resource", awaken::spiffe_client_credentials(w.source, c));
  const IssuedToken scoped = w.mint("resource", "api:write");
  const json claims = claims_of(scoped.bearer().reveal());
  CHECK(claims["aud"] == "https://api.awaken.test/orders");
  CHECK(claims["scope"] == "api:write");
  CHECK(w.oidc_last()["client_id"] == "awaken-spiffe");

  // A resource the provider does not serve is a permanent refusal in its words.
  c.resources = {"https://elsewhere.example/"};
  w.broker->register_material("bad-resource", awaken::spiffe_client_credentials(w.source, c));
  const auto e = mint_failure(w.io, *w.broker, "bad-resource", "api:read");
  CHECK(e.code() == credential_errc::permanent_upstream);
  CHECK(e.details().oauth_error == "invalid_target");

  // A resource that is not an absolute URI is refused before any request.
  c.resources = {"/relative#frag"};
  CHECK_THROWS_WITH(awaken::spiffe_client_credentials(w.source, c), Contains("is not an absolute URI"));
}

TEST_CASE("Mutual-TLS client authentication (RFC 8705) with the X.509-SVID at oidc-provider",
          "[federation][oidc][tls]") {
  World w;
  FederatedOAuth f;
  f.token_endpoint = w.oidc_https_endpoint();
  f.client_id = "awaken-mtls";
  f.tls_client_certificate = w.x509();
  w.broker->register_material("mtls", awaken::federated_oauth(f));
  const IssuedToken first = w.mint("mtls", "api:read");
  CHECK(first.bearer().size() >= 32);
  json last = w.oidc_last();
  CHECK(last["scheme"] == "https");
  CHECK(last["tls_client_cert_uri"] == "spiffe://example.org/workload");
  CHECK(last["client_id"] == "awaken-mtls");
  CHECK(last["has_client_assertion"] == false);

  // The SVID rotates under the source: the next mint presents the new certificate.
  const std::string before = w.x509()->x509_svid()->leaf().pem();
  w.peer.control("/x509/rotate");
  REQUIRE(awaken::test::run_until(
      w.io, [&] { return w.x509()->x509_svid()->leaf().pem() != before; }, 10s));
  CHECK_FALSE(w.mint("mtls", "api:write").bearer().empty());
  CHECK(w.oidc_last()["tls_client_cert_uri"] == "spiffe://example.org/workload");

  // The same client from the configuration, as self_signed_tls_client_auth reads it on our side.
  awaken::SpiffeSources sources;
  sources.x509 = w.x509();
  const json config{{"kind", "spiffe_client_credentials"},
                    {"token_endpoint", w.oidc_https_endpoint()},
                    {"client_id", "awaken-mtls"},
                    {"authentication", "tls_client_auth"}};
  w.broker->register_material("mtls-config", awaken::material_from_config(config, sources));
  CHECK_FALSE(w.mint("mtls-config", "api:read").bearer().empty());

  // Another workload's certificate is refused, permanently and at once.
  const auto reply = w.peer.control("/x509/issue?id=spiffe://example.org/intruder&td=example.org");
  auto intruder = std::make_shared<awaken::spiffe::StaticX509Source>(
      awaken::spiffe::X509Svid::from_pem(reply["chain_pem"].get<std::string>(),
                                         RedactedString{reply["key_pem"].get<std::string>()}),
      awaken::spiffe::X509BundleSet{});
  f.tls_client_certificate = intruder;
  w.broker->register_material("intruder", awaken::federated_oauth(f));
  const auto before_attempts = w.broker->stats().mint_attempts;
  const auto e = mint_failure(w.io, *w.broker, "intruder", "api:read");
  CHECK(e.code() == credential_errc::permanent_upstream);
  CHECK(e.details().oauth_error == "invalid_client");
  CHECK(w.broker->stats().mint_attempts == before_attempts + 1);

  // Mutual TLS needs https, and one client authentication only.
  f.token_endpoint = w.oidc_endpoint();
  CHECK_THROWS_WITH(awaken::federated_oauth(f), Contains("needs an https token_endpoint"));
  f.token_endpoint = w.oidc_https_endpoint();
  f.client_assertion = IdentityTokenSource::jwt_svid(w.source, "x");
  CHECK_THROWS_WITH(awaken::federated_oauth(f), Contains("give one client authentication"));
}

TEST_CASE("The JWT-bearer grant (RFC 7523) and token exchange (RFC 8693) with a JWT-SVID at oidc-provider",
          "[federation][oidc]") {
  World w;
  const json grant{{"kind", "jwt_bearer_grant"},
                   {"token_endpoint", w.oidc_endpoint()},
                   {"jwt_svid", json::object()},
                   {"audience", "orders"}};
  REQUIRE(awaken::is_spiffe_config(grant));
  w.broker->register_material("grant", awaken::material_from_config(grant, w.source));
  CHECK(w.mint("grant", "api:read api:write").bearer().size() >= 32);
  json last = w.oidc_last();
  CHECK(last["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer");
  CHECK(last["has_assertion"] == true);
  CHECK(last["audience"] == "orders");
  CHECK(last["scope"] == "api:read api:write");

  // The grant's SVID for another audience is refused by the provider, permanently.
  json wrong = grant;
  wrong["jwt_svid"] = {{"audience", "https://elsewhere.example/token"}};
  w.broker->register_material("wrong", awaken::material_from_config(wrong, w.source));
  CHECK(mint_failure(w.io, *w.broker, "wrong", "api:read").details().oauth_error == "invalid_grant");

  const json exchange{{"kind", "spiffe_token_exchange"},
                      {"token_endpoint", w.oidc_endpoint()},
                      {"requested_token_type", "urn:ietf:params:oauth:token-type:access_token"},
                      {"resource", json::array({"https://api.awaken.test/a", "https://api.awaken.test/b"})},
                      {"audience", "billing"}};
  w.broker->register_material("exchange", awaken::material_from_config(exchange, w.source));
  CHECK(w.mint("exchange", "api:read").bearer().size() >= 32);
  last = w.oidc_last();
  CHECK(last["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange");
  CHECK(last["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt");
  CHECK(last["requested_token_type"] == "urn:ietf:params:oauth:token-type:access_token");
  CHECK(last["resource"] == json::array({"https://api.awaken.test/a", "https://api.awaken.test/b"}));
  CHECK(last["audience"] == "billing");

  // Without a JwtSource, a kind that needs one says so.
  CHECK_THROWS_WITH(CredentialMaterial::from_config(grant), Contains("needs a JwtSource"));
}

TEST_CASE("Google external_account: file, url and SPIFFE sources, STS exchange, impersonation, host pinning",
          "[federation][google]") {
  World w;
  const std::string file = w.dir.path() + "/google-token";
  write_file(file, w.issued(google_audience(w)));

  // A file source, impersonating a service account for 1200 s.
  const json account = external_account(w, {{"file", file}}, "reader@proj.iam.gserviceaccount.com");
  w.broker->register_material("file", CredentialMaterial::from_config(google_config(account)));
  const IssuedToken token = w.mint("file", "https://www.googleapis.com/auth/devstorage.read_only");
  CHECK(token.bearer().reveal().rfind("ya29.", 0) == 0);
  CHECK(token.expires_at() > std::chrono::system_clock::now() + 1190s);
  CHECK(token.expires_at() < std::chrono::system_clock::now() + 1201s);
  json last = w.cloud_last();
  CHECK(last["path"].get<std::string>().find(":generateAccessToken") != std::string::npos);
  const json body = json::parse(last["body"].get<std::string>());
  CHECK(body["scope"] == json::array({"https://www.googleapis.com/auth/devstorage.read_only"}));
  CHECK(body["lifetime"] == "1200s");

  // A url source with headers and a json answer, without impersonation: the STS token itself.
  const json url_source{{"url", w.cloud_url("/subject-token?format=json")},
                        {"headers", {{"x-subject-token-key", "awaken"}}},
                        {"format", {{"type", "json"}, {"subject_token_field_name", "id_token"}}}};
  w.broker->register_material("url", CredentialMaterial::from_config(google_config(external_account(w, url_source))));
  CHECK(w.mint("url", "").bearer().reveal().rfind("sts-", 0) == 0);
  last = w.cloud_last();
  CHECK(last["path"] == "/v1/token");
  CHECK(last["body"].get<std::string>().find("scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform") !=
        std::string::npos);

  // awaken's SPIFFE extension: a JWT-SVID for the pool's audience.
  const json spiffe_config = google_config(external_account(w, {{"jwt_svid", json::object()}}));
  REQUIRE(awaken::is_spiffe_config(spiffe_config));
  w.broker->register_material("spiffe", awaken::material_from_config(spiffe_config, w.source));
  CHECK(w.mint("spiffe", "").bearer().reveal().rfind("sts-", 0) == 0);

  // A 5xx from the impersonation step is transient: retried, then the token.
  const json flaky = external_account(w, {{"file", file}}, "flaky-sa@proj.iam.gserviceaccount.com");
  w.broker->register_material("flaky", CredentialMaterial::from_config(google_config(flaky)));
  CHECK(w.mint("flaky", "").bearer().reveal().rfind("ya29.", 0) == 0);
  CHECK(w.cloud_stats()["impersonations"]["flaky-sa@proj.iam.gserviceaccount.com"] == 2);

  // The STS refuses a subject token for another audience: permanent, not retried.
  const std::string other = w.dir.path() + "/other-token";
  write_file(other, w.issued("//iam.googleapis.com/projects/999/other"));
  w.broker->register_material("refused",
                              CredentialMaterial::from_config(google_config(external_account(w, {{"file", other}}))));
  const auto before = w.broker->stats().mint_attempts;
  const auto refused = mint_failure(w.io, *w.broker, "refused", "");
  CHECK(refused.code() == credential_errc::permanent_upstream);
  CHECK(refused.details().oauth_error == "invalid_grant");
  CHECK(w.broker->stats().mint_attempts == before + 1);

  // Endpoints off Google's hosts are refused unless allowed; Google's own forms are accepted.
  CHECK_THROWS_WITH(CredentialMaterial::from_config({{"kind", "google_external_account"}, {"credentials", account}}),
                    Contains("is not a sts host of googleapis.com"));
  json google_hosts = account;
  google_hosts["token_url"] = "https://sts.googleapis.com/v1/token";
  google_hosts["service_account_impersonation_url"] =
      "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/a@p.iam.gserviceaccount.com:"
      "generateAccessToken";
  CHECK(CredentialMaterial::from_config({{"kind", "google_external_account"}, {"credentials", google_hosts}})
            .kind_label() == "google_external_account");
  google_hosts["token_url"] = "https://sts.googleapis.com.evil.example/v1/token";
  CHECK_THROWS_WITH(
      CredentialMaterial::from_config({{"kind", "google_external_account"}, {"credentials", google_hosts}}),
      Contains("token_url"));
  json executable = account;
  executable["credential_source"] = {{"executable", {{"command", "/bin/true"}}}};
  CHECK_THROWS_WITH(CredentialMaterial::from_config({{"kind", "google_external_account"}, {"credentials", executable}}),
                    Contains("credential_source.executable' is not supported"));
}

TEST_CASE("Token files: re-read when rotated, never used past their exp, clear errors", "[federation][azure]") {
  World w;
  const std::string file = w.dir.path() + "/azure-token";
  const std::string first = w.issued("api://AzureADTokenExchange");
  write_file(file, first + "\n");
  ::setenv("AZURE_CLIENT_ID", w.cloud.info()["azure_client_id"].get<std::string>().c_str(), 1);
  ::setenv("AZURE_TENANT_ID", w.cloud.info()["azure_tenant_id"].get<std::string>().c_str(), 1);
  ::setenv("AZURE_FEDERATED_TOKEN_FILE", file.c_str(), 1);
  ::setenv("AZURE_AUTHORITY_HOST", w.cloud_url("/").c_str(), 1);
  // From the environment variables the Azure SDKs read, in C++ and from the configuration.
  w.broker->register_material("azure",
                              awaken::azure_workload_identity(awaken::AzureWorkloadIdentity::from_environment()));
  w.broker->register_material("azure-config", CredentialMaterial::from_config({{"kind", "azure_workload_identity"}}));
  ::unsetenv("AZURE_CLIENT_ID");
  ::unsetenv("AZURE_TENANT_ID");
  ::unsetenv("AZURE_FEDERATED_TOKEN_FILE");
  ::unsetenv("AZURE_AUTHORITY_HOST");

  const std::string scope = "https://management.azure.com/.default";
  const IssuedToken a = w.mint("azure", scope);
  CHECK(a.bearer().reveal().rfind("az-", 0) == 0);
  CHECK(w.cloud_last()["body"].get<std::string>().find("client_assertion=" + first) != std::string::npos);
  CHECK(w.mint("azure-config", scope).bearer().reveal().rfind("az-", 0) == 0);

  // Rotated between mints: the next mint sends the new token.
  const std::string second = w.issued("api://AzureADTokenExchange", 900);
  REQUIRE(second != first);
  write_file(file, second);
  w.broker->invalidate("azure", scope, a);
  CHECK_FALSE(w.mint("azure", scope).same_token(a));
  CHECK(w.cloud_last()["body"].get<std::string>().find("client_assertion=" + second) != std::string::npos);

  // Expired in the file: refused before any request, the text naming the file, not the token.
  const std::string expired = w.issued("api://AzureADTokenExchange", -30);
  write_file(file, expired);
  const auto calls = w.cloud_stats()["calls"]["azure_token"].get<int>();
  const auto e = mint_failure(w.io, *w.broker, "azure", "https://graph.microsoft.com/.default");
  CHECK(e.code() == credential_errc::invalid_material);
  CHECK_THAT(e.what(), Contains("holds a token that expired at") && Contains(file));
  CHECK(std::string{e.what()}.find(expired.substr(0, 40)) == std::string::npos);
  CHECK(w.cloud_stats()["calls"]["azure_token"] == calls);

  // Empty, then missing.
  write_file(file, "\n");
  CHECK_THAT(mint_failure(w.io, *w.broker, "azure", "x/.default").what(), Contains("is empty"));
  std::filesystem::remove(file);
  CHECK_THAT(mint_failure(w.io, *w.broker, "azure", "x/.default").what(),
             Contains("cannot be opened: No such file or directory"));

  // A JWT-SVID as the federated assertion, for api://AzureADTokenExchange by default.
  const json svid_config{{"kind", "azure_workload_identity"},
                         {"client_id", w.cloud.info()["azure_client_id"]},
                         {"tenant_id", w.cloud.info()["azure_tenant_id"]},
                         {"authority_host", w.cloud_url()},
                         {"jwt_svid", json::object()}};
  w.broker->register_material("azure-svid", awaken::material_from_config(svid_config, w.source));
  CHECK(w.mint("azure-svid", scope).bearer().reveal().rfind("az-", 0) == 0);

  // Missing settings name the variable to set.
  CHECK_THROWS_WITH(awaken::AzureWorkloadIdentity::from_environment(), Contains("AZURE_CLIENT_ID"));
  CHECK_THROWS_WITH(CredentialMaterial::from_config({{"kind", "azure_workload_identity"}}),
                    Contains("AZURE_CLIENT_ID"));
}

TEST_CASE("AWS web identity: temporary credentials cached and single-flighted, STS's error shapes",
          "[federation][aws]") {
  World w;
  const std::string file = w.dir.path() + "/aws-token";
  write_file(file, w.issued("sts.amazonaws.com"));
  awaken::AwsWebIdentity config;
  config.role_arn = "arn:aws:iam::123456789012:role/reader";
  config.role_session_name = "awaken-test";
  config.web_identity_token = IdentityTokenSource::file(file);
  config.sts_endpoint = w.cloud_url("/");
  config.duration = 900s;
  w.broker->register_material("aws", awaken::aws_web_identity(config));

  // 20 callers at once: one AssumeRoleWithWebIdentity, one set of credentials for all.
  std::vector<IssuedToken> got(20);
  int answered = 0;
  for (auto& slot : got)
    asio::co_spawn(w.io, w.broker->token_for("aws", ""), [&slot, &answered](std::exception_ptr e, IssuedToken t) {
      ++answered;
      if (!e) slot = std::move(t);
    });
  REQUIRE(awaken::test::run_until(w.io, [&] { return answered == 20; }));
  REQUIRE(got.front());
  for (const auto& t : got) CHECK(t.same_token(got.front()));
  CHECK(w.cloud_stats()["aws"]["reader"] == 1);
  const auto* aws = got.front().aws_credentials();
  REQUIRE(aws != nullptr);
  CHECK(aws->access_key_id().reveal().rfind("ASIA", 0) == 0);
  CHECK(aws->access_key_id().size() == 20);
  CHECK(aws->secret_access_key().size() == 40);
  CHECK(aws->session_token().reveal() == got.front().bearer().reveal());
  CHECK(got.front().token_type() == "AWS");
  CHECK(aws->expiration() > std::chrono::system_clock::now() + 890s);
  CHECK(aws->expiration() < std::chrono::system_clock::now() + 901s);
  const std::string printed = awaken::to_string(got.front());
  CHECK(printed.find(std::string{aws->secret_access_key().reveal()}) == std::string::npos);
  CHECK(printed.find(std::string{aws->access_key_id().reveal()}) == std::string::npos);
  CHECK_THAT(printed, Contains("aws_credentials=[redacted]"));
  const std::string form = w.cloud_last()["body"];
  CHECK_THAT(form, Contains("Action=AssumeRoleWithWebIdentity") && Contains("DurationSeconds=900") &&
                       Contains("RoleSessionName=awaken-test"));

  // The scope names another role; a scope that is no role ARN is refused.
  CHECK(w.mint("aws", "arn:aws:iam::123456789012:role/writer").aws_credentials() != nullptr);
  CHECK(w.cloud_stats()["aws"]["writer"] == 1);
  CHECK(mint_failure(w.io, *w.broker, "aws", "read write").code() == credential_errc::invalid_material);

  // Throttling (a 400) and ServiceUnavailable (a 503) are transient: retried once each.
  CHECK(w.mint("aws", "arn:aws:iam::123456789012:role/throttled").aws_credentials() != nullptr);
  CHECK(w.cloud_stats()["aws"]["throttled"] == 2);
  CHECK(w.mint("aws", "arn:aws:iam::123456789012:role/unavailable").aws_credentials() != nullptr);
  CHECK(w.cloud_stats()["aws"]["unavailable"] == 2);

  // AccessDenied is permanent, with STS's code and message; a cut answer is transient.
  const auto denied = mint_failure(w.io, *w.broker, "aws", "arn:aws:iam::123456789012:role/denied-all");
  CHECK(denied.code() == credential_errc::permanent_upstream);
  CHECK(denied.details().http_status == 403);
  CHECK(denied.details().oauth_error == "AccessDenied");
  CHECK_THAT(denied.details().server_message, Contains("Not authorized"));
  const auto cut = mint_failure(w.io, *w.broker, "aws", "arn:aws:iam::123456789012:role/malformed");
  CHECK(cut.code() == credential_errc::transient_upstream);
  CHECK_THAT(cut.what(), Contains("not XML"));
  CHECK(w.cloud_stats()["aws"]["malformed"] == 3);

  // A token for another audience: InvalidIdentityToken, permanent.
  write_file(file, w.issued("someone-else"));
  const auto invalid = mint_failure(w.io, *w.broker, "aws", "arn:aws:iam::123456789012:role/other");
  CHECK(invalid.code() == credential_errc::permanent_upstream);
  CHECK(invalid.details().oauth_error == "InvalidIdentityToken");

  // A JWT-SVID as the web identity, from the configuration.
  const json svid_config{{"kind", "aws_web_identity"},
                         {"role_arn", "arn:aws:iam::123456789012:role/spiffe"},
                         {"sts_endpoint", w.cloud_url("/")},
                         {"jwt_svid", json::object()}};
  w.broker->register_material("aws-svid", awaken::material_from_config(svid_config, w.source));
  CHECK(w.mint("aws-svid", "").aws_credentials() != nullptr);

  CHECK_THROWS_WITH(CredentialMaterial::from_config(
                        {{"kind", "aws_web_identity"}, {"role_arn", "arn:aws:iam::12:role/x"}, {"token_file", file}}),
                    Contains("is not arn:PARTITION:iam::ACCOUNT:role/NAME"));
}

TEST_CASE("Federation leaves no secret in the log or in error texts", "[federation][log]") {
  std::ostringstream out;
  auto logger = std::make_shared<spdlog::logger>("awaken-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  logger->set_level(spdlog::level::trace);
  awaken::set_logger(logger);
  struct Restore {
    ~Restore() { awaken::set_logger(nullptr); }
  } restore;

  World w;
  w.peer.control("/reuse_svids?on=1");  // so that the SVID fetched below is the one that was sent
  const std::string file = w.dir.path() + "/token";
  const std::string subject = w.issued("sts.amazonaws.com");
  write_file(file, subject);
  std::vector<std::string> secrets{subject.substr(subject.rfind('.') + 1)};
  std::string texts;

  awaken::AwsWebIdentity aws;
  aws.role_arn = "arn:aws:iam::123456789012:role/reader";
  aws.web_identity_token = IdentityTokenSource::file(file);
  aws.sts_endpoint = w.cloud_url("/");
  w.broker->register_material("aws", awaken::aws_web_identity(aws));
  const IssuedToken creds = w.mint("aws", "");
  secrets.emplace_back(creds.aws_credentials()->secret_access_key().reveal());
  secrets.emplace_back(creds.aws_credentials()->session_token().reveal().substr(0, 60));
  for (const char* role : {"denied-x", "malformed", "throttled"}) {
    try {
      w.mint("aws", std::string{"arn:aws:iam::123456789012:role/"} + role);
    } catch (const awaken::Error& e) {
      texts += std::string{e.what()} + e.details().server_message;
    }
  }
  const json google =
      google_config(external_account(w, {{"jwt_svid", json::object()}}, "sa@p.iam.gserviceaccount.com"));
  w.broker->register_material("google", awaken::material_from_config(google, w.source));
  const IssuedToken g = w.mint("google", "");
  secrets.emplace_back(g.bearer().reveal());
  const std::vector<std::string> audiences{google_audience(w)};
  secrets.emplace_back(run(w.io, w.source.fetch_jwt_svid(audiences)).token().reveal());
  const std::string log = out.str() + texts;
  CHECK_FALSE(log.empty());
  for (const auto& s : secrets) {
    INFO(s.substr(0, 8));
    CHECK(log.find(s) == std::string::npos);
  }
}
