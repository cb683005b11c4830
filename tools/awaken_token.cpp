// awaken-token: mint a token through the credential broker from a JSON configuration file.
#include <csignal>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/credentials/dpop.hpp>
#include <awaken/credentials/spiffe_minters.hpp>
#include <awaken/error.hpp>
#include <awaken/redacted_string.hpp>
#include <awaken/spiffe/x509_source.hpp>

#include "tool_main.hpp"

namespace {

constexpr const char* usage =
    R"(Usage: awaken-token --config FILE [--scope SCOPE] [--reveal] [--dpop METHOD URL] [--watch [--count N]]
                    [--json]

Mints a token through awaken's credential broker and prints it, redacted unless --reveal.

FILE holds one material object, as awaken::material_from_config reads it ("kind": bearer,
google_service_account, oauth_client_credentials, gce_metadata, jwt_bearer_grant,
google_external_account, azure_workload_identity, aws_web_identity, or a SPIFFE-backed one:
jwt_svid, spiffe_client_credentials, spiffe_token_exchange). Kinds that use a JWT-SVID or the
X.509-SVID reach the Workload API at "endpoint" or SPIFFE_ENDPOINT_SOCKET. The file may instead be
{"scope": S, "endpoint": E, "material": {...}}. Secrets may come from files or the environment
(<field>_file, <field>_env); the cloud kinds read their SDKs' environment variables.

AWS credentials print as AWS_ACCESS_KEY_ID=[redacted] ...; with --reveal they print as the
JSON that the AWS CLI's credential_process reads, so the tool can be one.

A material with "dpop": true mints DPoP-bound tokens (RFC 9449): they print with the thumbprint
of their key (dpop_jkt), and with --dpop METHOD URL also with the DPoP proof of one request
(METHOD to URL) that presents the token: the value of its DPoP header. The key never leaves the
process; a proof is good for that one request, once.

Options:
  --config FILE   the configuration (required)
  --scope SCOPE   the scope to ask for (for jwt_svid: the audiences, space-separated)
  --reveal        print the token itself; without it the token is printed redacted
  --dpop METHOD URL
                  also print the DPoP proof of a METHOD request to URL (a DPoP-bound token only)
  --watch         keep asking, and print a line each time the broker hands out a new token
                  (a refresh); stop after --count N refreshes, or on SIGINT / SIGTERM
  --json          print JSON, one object per line
  --verbose       log awaken's work at debug level on stderr (SPDLOG_LEVEL=awaken=trace for more)
  --help          print this help

Exit codes: 0 success; 2 bad usage or configuration; 3 the token could not be minted.
Errors are one line on stderr.
)";

using awaken::tools::UsageError;

struct Args {
  std::string config;
  std::optional<std::string> scope;
  bool reveal = false;
  bool watch = false;
  bool json = false;
  std::optional<int> count;
  std::optional<std::pair<std::string, std::string>> dpop;  // method, URL
};

Args parse(int argc, char** argv) {
  Args a;
  awaken::tools::ArgReader r{argc, argv};
  while (r.next()) {
    const std::string arg = r.arg();
    if (arg == "--config")
      a.config = r.value();
    else if (arg == "--scope")
      a.scope = r.value();
    else if (arg == "--reveal")
      a.reveal = true;
    else if (arg == "--watch")
      a.watch = true;
    else if (arg == "--json")
      a.json = true;
    else if (arg == "--count")
      a.count = r.number();
    else if (arg == "--dpop") {
      std::string method = r.value();
      a.dpop.emplace(std::move(method), r.value());
    } else
      throw UsageError{"unknown argument " + arg + " (try --help)"};
  }
  if (a.config.empty()) throw UsageError{"--config FILE is required (try --help)"};
  return a;
}

void print(const awaken::IssuedToken& token, const Args& a, const char* event) {
  if (const auto* aws = token.aws_credentials()) {
    if (a.reveal) {  // the AWS CLI's credential_process format
      const nlohmann::json j{{"Version", 1},
                             {"AccessKeyId", aws->access_key_id().reveal()},
                             {"SecretAccessKey", aws->secret_access_key().reveal()},
                             {"SessionToken", aws->session_token().reveal()},
                             {"Expiration", awaken::utc_text(aws->expiration())}};
      std::cout << j.dump() << std::endl;
      return;
    }
    if (!a.json) {
      std::cout << event << ": AWS_ACCESS_KEY_ID=[redacted] AWS_SECRET_ACCESS_KEY=[redacted] "
                << "AWS_SESSION_TOKEN=[redacted] expires_at=" << awaken::utc_text(aws->expiration()) << std::endl;
      return;
    }
  }
  // The proof of the one request --dpop names; refused for a bearer token.
  std::string proof;
  if (a.dpop) {
    if (token.dpop_key() == nullptr)
      throw UsageError{"--dpop: the token is a bearer token (give the material \"dpop\": true)"};
    try {
      proof = token.dpop_proof(a.dpop->first, a.dpop->second);
    } catch (const awaken::Error& e) {
      throw UsageError{std::string{"--dpop: "} + e.what()};
    }
  }
  if (a.json) {
    nlohmann::json j{
        {"event", event}, {"type", token.token_type()}, {"expires_at", awaken::utc_text(token.expires_at())}};
    j["token"] = a.reveal ? std::string{token.bearer().reveal()} : std::string{"[redacted]"};
    if (token.dpop_key() != nullptr) j["dpop_jkt"] = token.dpop_key()->thumbprint();
    if (!proof.empty()) j["dpop_proof"] = proof;
    std::cout << j.dump() << std::endl;
    return;
  }
  if (a.reveal)
    std::cout << token.bearer().reveal() << std::endl;
  else
    std::cout << event << ": " << awaken::to_string(token) << std::endl;
  if (!proof.empty()) std::cout << "DPoP: " << proof << std::endl;
}

// The configuration: the file's text stays in a RedactedString (it may hold secrets).
struct Config {
  nlohmann::json material;
  std::string scope;
  std::optional<std::string> endpoint;
};

Config read_config(const Args& a) {
  std::ifstream in{a.config, std::ios::binary};
  if (!in) throw UsageError{"cannot read " + a.config};
  std::ostringstream text;
  text << in.rdbuf();
  const awaken::RedactedString secret{std::move(text).str()};
  auto doc = nlohmann::json::parse(secret.reveal(), nullptr, false);
  if (!doc.is_object()) throw UsageError{a.config + " is not a JSON object"};
  Config c;
  if (doc.contains("material")) {
    c.material = doc["material"];
    if (doc.contains("scope") && doc["scope"].is_string()) c.scope = doc["scope"];
    if (doc.contains("endpoint") && doc["endpoint"].is_string()) c.endpoint = doc["endpoint"];
  } else {
    c.material = std::move(doc);
    if (c.material.contains("endpoint") && c.material["endpoint"].is_string()) {  // for the SPIFFE kinds
      c.endpoint = c.material["endpoint"];
      c.material.erase("endpoint");
    }
  }
  if (a.scope) c.scope = *a.scope;
  return c;
}

// By value: the coroutine outlives its caller's arguments.
asio::awaitable<int> run(Args a, Config config) {
  const auto executor = co_await asio::this_coro::executor;
  std::optional<awaken::spiffe::JwtSource> source;
  std::shared_ptr<awaken::spiffe::X509Source> x509;
  std::optional<awaken::CredentialMaterial> material;
  try {
    awaken::SpiffeSources sources;
    if (awaken::is_spiffe_config(config.material)) {
      auto builder = awaken::spiffe::JwtSource::builder();
      if (config.endpoint) builder.endpoint(*config.endpoint);
      builder.initial_sync_timeout(std::chrono::seconds{30});
      source.emplace(co_await builder.build());
      sources.jwt = *source;
    }
    if (awaken::needs_x509_source(config.material)) {
      auto builder = awaken::spiffe::X509Source::builder();
      if (config.endpoint) builder.endpoint(*config.endpoint);
      builder.initial_sync_timeout(std::chrono::seconds{30});
      x509 = std::make_shared<awaken::spiffe::X509Source>(co_await builder.build());
      sources.x509 = x509;
    }
    material.emplace(awaken::material_from_config(config.material, sources));
  } catch (const awaken::Error& e) {
    if (e.code() == awaken::credential_errc::invalid_material) throw UsageError{e.what()};
    throw;
  }

  awaken::AwakenBroker broker{executor};
  broker.register_material("config", *material);
  awaken::IssuedToken token = co_await broker.token_for("config", config.scope);
  print(token, a, "minted");
  if (a.watch) {
    bool stop = false;
    asio::signal_set signals{executor, SIGINT, SIGTERM};
    // Only a delivered signal touches `stop`: the cancelled wait completes after this frame is gone.
    signals.async_wait([&stop](std::error_code ec, int) {
      if (!ec) stop = true;
    });
    asio::steady_timer tick{executor};
    for (int refreshes = 0; !stop && (!a.count || refreshes < *a.count);) {
      tick.expires_after(std::chrono::milliseconds{250});
      co_await tick.async_wait(asio::use_awaitable);
      awaken::IssuedToken next = co_await broker.token_for("config", config.scope);
      if (!next.same_token(token)) {
        print(next, a, "refreshed");
        token = std::move(next);
        ++refreshes;
      }
    }
    signals.cancel();
  }
  if (source) co_await source->shutdown();
  if (x509) co_await x509->shutdown();
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // No refusal exit code here: a failed mint is 3 like any other failure.
  struct NoRefusal : std::exception {};
  return awaken::tools::tool_main<NoRefusal>(argc, argv, "awaken-token", usage, [&] {
    const Args args = parse(argc, argv);
    return run(args, read_config(args));
  });
}
