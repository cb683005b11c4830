// Secrets never reach the log: the broker and a JwtSource run at trace level through every kind
// of material, with retries and refusals, against the real peers; the captured log must hold
// none of the tokens, client secrets, keys or assertions that went through.
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>
#include <asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/credentials/spiffe_minters.hpp>
#include <awaken/log.hpp>
#include <awaken/spiffe/x509_source.hpp>

#include "support/errors.hpp"
#include "support/minting.hpp"
#include "support/names.hpp"
#include "support/workload_peer.hpp"

namespace {

// awaken's logger, at trace level, into a string for the test's lifetime.
struct CapturedLog {
  CapturedLog() {
    logger->set_level(spdlog::level::trace);
    awaken::set_logger(logger);
  }
  ~CapturedLog() { awaken::set_logger(nullptr); }
  std::string text() {
    logger->flush();
    return out.str();
  }
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> logger =
      std::make_shared<spdlog::logger>("awaken-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
};

std::string port_of(const PeerProcess& p, const char* name = "port") {
  return std::to_string(p.info()[name].get<int>());
}

// A distinctive run of a PEM key's body (past the first line, which every key shares).
std::string pem_fragment(const std::string& pem) { return pem.substr(pem.find('\n') + 1, 48); }

}  // namespace

TEST_CASE("At trace level no secret reaches the log, whatever the material", "[log][minters][bridge]") {
  CapturedLog log;
  PeerProcess oidc{"oidc_server.mjs", {}};
  PeerProcess tokens{"token_server.mjs", {}};
  awaken::test::WorkloadPeer workload;
  PeerProcess party{"token_server.mjs",
                    {"--jwks", "http://127.0.0.1:" + std::to_string(workload.control_port()) + "/jwks"}};
  const std::string endpoint = oidc.info()["token_endpoint"];
  const std::string sa_key = oidc.info()["keys"]["sa"];
  const std::string ps256_key = oidc.info()["keys"]["ps256"];
  const std::string secret = "s3cret-value";
  const std::string tokens_url = "http://127.0.0.1:" + port_of(tokens);
  const std::string party_url = "http://127.0.0.1:" + port_of(party);

  const nlohmann::json configs{
      {"bearer", {{"kind", "bearer"}, {"token", "static-api-key-7f3a"}, {"lifetime_seconds", 3600}}},
      {"google",
       {{"kind", "google_service_account"},
        {"key",
         {{"type", "service_account"},
          {"private_key_id", "sa-1"},
          {"private_key", sa_key},
          {"client_email", oidc.info()["sa_email"]},
          {"token_uri", endpoint}}},
        {"allowed_token_uris", {endpoint}}}},
      {"basic",
       {{"kind", "oauth_client_credentials"},
        {"token_endpoint", endpoint},
        {"client_id", "awaken-basic"},
        {"client_secret", secret}}},
      {"post",
       {{"kind", "oauth_client_credentials"},
        {"token_endpoint", endpoint},
        {"client_id", "awaken-post"},
        {"authentication", "client_secret_post"},
        {"client_secret", secret}}},
      {"private_key_jwt",
       {{"kind", "oauth_client_credentials"},
        {"token_endpoint", endpoint},
        {"client_id", "awaken-ps256"},
        {"authentication", "private_key_jwt"},
        {"private_key", ps256_key},
        {"signing_algorithm", "PS256"},
        {"key_id", "ps256-1"}}},
      {"gce", {{"kind", "gce_metadata"}, {"base_url", tokens_url}}},
      // Retried twice (503), then served: the retries are logged.
      {"flaky",
       {{"kind", "oauth_client_credentials"},
        {"token_endpoint", tokens_url + "/fault/503-then-ok/token?key=log-test"},
        {"client_id", "awaken-client"},
        {"client_secret", secret}}},
      // Refused: the refusal travels back with the server's words.
      {"refused",
       {{"kind", "oauth_client_credentials"},
        {"token_endpoint", endpoint},
        {"client_id", "awaken-basic"},
        {"client_secret", "wrong-" + secret}}},
  };

  asio::io_context io;
  auto sb = awaken::spiffe::JwtSource::builder();
  sb.endpoint(workload.endpoint()).reconnect_backoff(10ms, 100ms).initial_sync_timeout(10s);
  const auto source = run(io, sb.build(io.get_executor()));
  AwakenBroker broker{io.get_executor(), quick_retries()};
  for (const auto& [name, config] : configs.items())
    broker.register_material(name, CredentialMaterial::from_config(config));
  broker.register_material("svid", awaken::jwt_svid_material(source));
  awaken::SpiffeClientCredentials cc;
  cc.token_endpoint = party_url + "/spiffe/token";
  cc.client_id = "spiffe-workload";
  broker.register_material("svid-assertion", awaken::spiffe_client_credentials(source, cc));
  awaken::SpiffeTokenExchange exchange;
  exchange.token_endpoint = party_url + "/spiffe/exchange";
  broker.register_material("svid-exchange", awaken::spiffe_token_exchange(source, exchange));

  std::vector<std::string> secrets{secret, pem_fragment(sa_key), pem_fragment(ps256_key), "static-api-key-7f3a"};
  for (const char* name : {"bearer", "google", "basic", "post", "private_key_jwt", "gce", "flaky", "svid",
                           "svid-assertion", "svid-exchange"}) {
    INFO(name);
    const auto scope = std::string{name} == "gce" || std::string{name} == "google"
                           ? "https://www.googleapis.com/auth/cloud-platform"
                       : std::string{name} == "svid" ? "my-audience"
                                                     : "api:read";
    const auto token = run(io, broker.token_for(name, scope));
    secrets.emplace_back(token.bearer().reveal());
  }
  const auto refusal = awaken::test::mint_failure(io, broker, "refused");
  CHECK(refusal.code() == awaken::credential_errc::permanent_upstream);
  // A fetched SVID itself, and the source's own work, at trace level too.
  secrets.emplace_back(run(io, source.fetch_jwt_svid({"another"})).token().reveal());
  workload.control("/rotate");
  run(io, source.updates().changed());
  run(io, source.shutdown());

  const std::string text = log.text();
  CHECK(text.find("retrying") != std::string::npos);  // the log did see the failures
  for (const auto& s : secrets) {
    REQUIRE(s.size() >= 8);
    CHECK(text.find(s) == std::string::npos);
  }
  CHECK(text.find("eyJ") == std::string::npos);  // no JWT of any kind: assertions, SVIDs
  CHECK(text.find("PRIVATE KEY") == std::string::npos);
}

TEST_CASE("A source still waiting for its first update says so, with the endpoint and the last failure", "[log]") {
  CapturedLog log;
  awaken::test::TempDir dir;
  const std::string socket = dir.path() + "/missing.sock";
  asio::io_context io;
  auto builder = awaken::spiffe::X509Source::builder();
  builder.endpoint("unix://" + socket).reconnect_backoff(50ms, 200ms).initial_sync_timeout(3500ms);
  CHECK(awaken::test::code_of([&] { (void)run(io, builder.build(io.get_executor())); }) ==
        spiffe_errc::initial_sync_timeout);
  const std::string text = log.text();
  CHECK_THAT(text, Contains("X509Source: no update yet from the Workload API at unix://" + socket + " after 3 s"));
  CHECK_THAT(text, Contains("last failure: "));
}
