// Proof of possession, the last part of the demo:
//   proof_demo [--workload-endpoint URI] [--token-endpoint URL --resource URL]
// 1. With --workload-endpoint: two services, each on a WIT-SVID of its own from one WitSource,
//    call each other with a Workload-Identity-Token and a Workload-Proof-Token; each verifies
//    the other's proof against the WIT bundles; a replayed proof is refused. An agent without the
//    WIT profile is said so, and the part skipped.
// 2. With --token-endpoint (an authorization server with DPoP: the demo's oidc-provider, client
//    awaken-dpop) and --resource (a resource server URL that checks DPoP proofs): a DPoP-bound
//    token from AwakenBroker, used with its proof, then refused when its proof is replayed, when
//    it goes without one, and when it is sent as a bearer token.
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/this_coro.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/credentials/dpop.hpp>
#include <awaken/credentials/oauth_client_credentials.hpp>
#include <awaken/error.hpp>
#include <awaken/http/http_client.hpp>
#include <awaken/spiffe/experimental/wit_source.hpp>
#include <awaken/spiffe/experimental/wpt.hpp>

#include "tool_main.hpp"

namespace {

namespace wit = awaken::spiffe::experimental;

// A service that answers calls: its origin, and a verifier of workload proofs for it.
struct Service {
  std::string name;
  std::string origin;
  std::shared_ptr<const wit::WitSvid> svid;
  std::unique_ptr<wit::WptVerifier> verifier;
};

// `from` calls `to` at PATH: the headers made, then checked by `to`. Returns the headers so that
// they can be replayed.
wit::WptHeaders call(const Service& from, const Service& to, const std::string& path) {
  const std::string target = to.origin + path;  // the request views it
  wit::WptRequest request;
  request.target_uri = target;
  wit::WptHeaders headers = wit::make_workload_proof(*from.svid, request);
  std::cout << from.name << " -> " << to.name << "  POST " << target << "\n    Workload-Identity-Token: ["
            << headers.workload_identity_token.size() << " bytes]  Workload-Proof-Token: ["
            << headers.workload_proof_token.size() << " bytes]\n";
  return headers;
}

// `at` checks a call to PATH; the demo fails when the outcome is not `expected`.
void receive(const Service& at, const wit::WptHeaders& headers, const std::string& path, bool expected) {
  const std::string_view wits[] = {headers.workload_identity_token.reveal()};
  const std::string_view wpts[] = {headers.workload_proof_token.reveal()};
  bool accepted = false;
  try {
    const wit::WptVerified v = at.verifier->verify({wits, wpts, path});
    std::cout << "    " << at.name << " accepts: the caller is " << v.caller() << "\n";
    accepted = true;
  } catch (const awaken::Error& e) {
    std::cout << "    " << at.name << " refuses: " << e.what() << "\n";
  }
  if (accepted != expected) throw std::runtime_error(at.name + (accepted ? " accepted" : " refused") + " a call");
}

asio::awaitable<void> wit_part(std::string endpoint) {
  std::cout << "== Workload identity tokens and workload proof tokens (WIT-SVIDs from " << endpoint << ")\n";
  const auto executor = co_await asio::this_coro::executor;
  auto builder = wit::WitSource::builder();
  builder.endpoint(endpoint).initial_sync_timeout(std::chrono::seconds{15});
  std::optional<wit::WitSource> source;
  try {
    source.emplace(co_await builder.build(executor));
  } catch (const awaken::Error& e) {
    if (e.code() != awaken::spiffe_errc::not_offered) throw;
    std::cout << "the agent does not offer WIT-SVIDs (" << e.what() << "): skipped\n";
    co_return;
  }
  const auto svids = source->svids();
  const auto bundles = std::make_shared<const wit::WitSource>(*source);
  std::vector<Service> services;
  for (std::size_t i = 0; i < svids->size() && i < 2; ++i) {
    Service s;
    s.name = i == 0 ? "orders" : "billing";
    s.origin = "https://" + s.name + ".example.org";
    s.svid = std::shared_ptr<const wit::WitSvid>(svids, &(*svids)[i]);
    wit::WptVerifierOptions options;
    options.origins = {s.origin};
    s.verifier = std::make_unique<wit::WptVerifier>(bundles, options);
    std::cout << s.name << " runs as " << s.svid->spiffe_id() << " (WIT-SVID kid " << s.svid->key_id() << ", its key "
              << awaken::jose::to_string(s.svid->confirmation_algorithm()) << ", expires "
              << awaken::utc_text(s.svid->expiry()) << ")\n";
    services.push_back(std::move(s));
  }
  if (services.size() < 2) {
    // One identity (an agent gives this workload one): it calls itself.
    services.push_back(Service{"billing", "https://billing.example.org", services[0].svid, nullptr});
    wit::WptVerifierOptions options;
    options.origins = {services[1].origin};
    services[1].verifier = std::make_unique<wit::WptVerifier>(bundles, options);
  }
  const Service& orders = services[0];
  const Service& billing = services[1];
  const wit::WptHeaders first = call(orders, billing, "/invoices");
  receive(billing, first, "/invoices", true);
  receive(orders, call(billing, orders, "/orders/17/paid"), "/orders/17/paid", true);
  std::cout << "orders' first proof again (a replay):\n";
  receive(billing, first, "/invoices", false);
  std::cout << "orders' proof presented at another path:\n";
  receive(billing, call(orders, billing, "/invoices"), "/refunds", false);
  co_await source->shutdown();
}

asio::awaitable<awaken::http::HttpResponse> send(awaken::http::HttpClient& http, std::string url,
                                                 std::vector<awaken::http::Header> headers) {
  awaken::http::HttpRequest request;
  request.url = std::move(url);
  request.headers = std::move(headers);
  co_return co_await http.send(std::move(request));
}

// "200 accepted" or "401 refused: <WWW-Authenticate>"; the demo fails when the status is not
// `expected`.
std::string verdict(const awaken::http::HttpResponse& r, int expected) {
  if (r.status != expected)
    throw std::runtime_error("the resource server answered " + std::to_string(r.status) + ", not " +
                             std::to_string(expected));
  if (r.status == 200) return "200 accepted";
  const auto www = r.header("www-authenticate");
  return std::to_string(r.status) + " refused: " + std::string{www ? *www : r.body};
}

asio::awaitable<void> dpop_part(std::string token_endpoint, std::string resource) {
  std::cout << "\n== DPoP (RFC 9449): a sender-constrained token from AwakenBroker\n";
  const auto executor = co_await asio::this_coro::executor;
  awaken::AwakenBroker broker{executor};
  awaken::OAuthClientCredentials c;
  c.token_endpoint = token_endpoint;
  c.client_id = "awaken-dpop";
  c.client_secret = awaken::RedactedString{"s3cret-value"};
  c.resources = {"https://api.awaken.test/orders"};
  c.dpop = true;
  broker.register_material("orders-api", awaken::oauth_client_credentials(std::move(c)));
  const awaken::IssuedToken token = co_await broker.token_for("orders-api", "api:read");
  std::cout << "minted: " << token << "\n";

  awaken::http::HttpClient http{executor};
  const auto h = token.authorization("GET", resource);
  const std::vector<awaken::http::Header> with_proof{{"authorization", std::string{h.authorization.reveal()}},
                                                     {"dpop", h.dpop}};
  const auto accepted = co_await send(http, resource, with_proof);
  std::cout << "GET " << resource << " with the token and its proof -> " << verdict(accepted, 200) << "\n";
  const auto replayed = co_await send(http, resource, with_proof);
  std::cout << "the same proof again (a replay) -> " << verdict(replayed, 401) << "\n";
  const std::vector<awaken::http::Header> no_proof{{"authorization", std::string{h.authorization.reveal()}}};
  const auto unproven = co_await send(http, resource, no_proof);
  std::cout << "the token without a proof -> " << verdict(unproven, 401) << "\n";
  const std::vector<awaken::http::Header> bearer{{"authorization", "Bearer " + std::string{token.bearer().reveal()}}};
  const auto as_bearer = co_await send(http, resource, bearer);
  std::cout << "the token as a bearer token -> " << verdict(as_bearer, 401) << "\n";
  const auto fresh = token.authorization("GET", resource);
  const std::vector<awaken::http::Header> again{{"authorization", std::string{fresh.authorization.reveal()}},
                                                {"dpop", fresh.dpop}};
  const auto reproven = co_await send(http, resource, again);
  std::cout << "the token with a fresh proof -> " << verdict(reproven, 200) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  constexpr const char* usage =
      "usage: proof_demo [--workload-endpoint URI] [--token-endpoint URL --resource URL] [--verbose]\n";
  std::string workload_endpoint, token_endpoint, resource;
  awaken::tools::configure_logging(awaken::tools::take_flag(argc, argv, "--verbose"));
  try {
    awaken::tools::ArgReader r{argc, argv};
    while (r.next()) {
      const std::string flag = r.arg();
      if (flag == "--workload-endpoint")
        workload_endpoint = r.value();
      else if (flag == "--token-endpoint")
        token_endpoint = r.value();
      else if (flag == "--resource")
        resource = r.value();
      else
        throw awaken::tools::UsageError{"unknown argument " + flag};
    }
    if (token_endpoint.empty() != resource.empty())
      throw awaken::tools::UsageError{"--token-endpoint and --resource go together"};
  } catch (const awaken::tools::UsageError& e) {
    std::cerr << "proof_demo: " << e.what() << "\n" << usage;
    return 2;
  }
  try {
    asio::io_context io;
    if (!workload_endpoint.empty()) awaken::tools::run_to_end(io, wit_part(workload_endpoint));
    if (!token_endpoint.empty()) awaken::tools::run_to_end(io, dpop_part(token_endpoint, resource));
  } catch (const std::exception& e) {
    std::cerr << "proof demo failed: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
