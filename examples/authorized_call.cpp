// Header injection in an agent runtime: every outgoing call asks the broker for the provider's
// token (a cache hit, nearly always), sends it as `Authorization: Bearer`, and on a 401
// invalidates that very token and retries once with a fresh one.
//   authorized_call --token-endpoint URL --resource URL --revoke URL
// (the revoke URL lets the demo make the server forget its tokens, as a key rotation would).
#include <iostream>
#include <string>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/this_coro.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/credentials/oauth_client_credentials.hpp>
#include <awaken/error.hpp>

#include "tool_main.hpp"

namespace {

// The pattern: ask per request, retry once after `invalidate` on 401. `invalidate` drops the
// token only if it is still the cached one, so a hundred requests failing together cause one
// new mint.
asio::awaitable<awaken::http::HttpResponse> authorized_send(awaken::AwakenBroker& broker,
                                                            awaken::http::HttpClient& http, std::string provider,
                                                            std::string scope, awaken::http::HttpRequest request) {
  for (int attempt = 0;; ++attempt) {
    const awaken::IssuedToken token = co_await broker.token_for(provider, scope);
    awaken::http::HttpRequest signed_request = request;
    signed_request.headers.push_back({"authorization", "Bearer " + std::string{token.bearer().reveal()}});
    awaken::http::HttpResponse response = co_await http.send(std::move(signed_request));
    if (response.status != 401 || attempt == 1) co_return response;
    std::cout << "  401 from the resource: invalidating the token and retrying once\n";
    broker.invalidate(provider, scope, token);
  }
}

asio::awaitable<void> story(std::string token_endpoint, std::string resource, std::string revoke) {
  const auto executor = co_await asio::this_coro::executor;
  awaken::AwakenBroker broker{executor};
  awaken::OAuthClientCredentials client;
  client.token_endpoint = std::move(token_endpoint);
  client.client_id = "awaken-client";
  client.client_secret = awaken::RedactedString{"s3cret-value"};
  broker.register_material("api", awaken::oauth_client_credentials(std::move(client)));
  awaken::http::HttpClient http{executor};
  awaken::http::HttpRequest get;
  get.url = resource;

  for (const char* step : {"first call", "second call"}) {
    const auto response = co_await authorized_send(broker, http, "api", "read", get);
    std::cout << step << ": HTTP " << response.status << ", mints so far " << broker.stats().mint_attempts << "\n";
  }
  awaken::http::HttpRequest revoke_request;
  revoke_request.method = "POST";
  revoke_request.url = revoke;
  co_await http.send(std::move(revoke_request));
  std::cout << "the server revoked its tokens\n";
  const auto response = co_await authorized_send(broker, http, "api", "read", get);
  std::cout << "third call: HTTP " << response.status << ", mints so far " << broker.stats().mint_attempts << "\n";
  if (response.status != 200) throw std::runtime_error("the retry after invalidate did not succeed");
}

}  // namespace

int main(int argc, char** argv) {
  std::string token_endpoint, resource, revoke;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--token-endpoint")
      token_endpoint = argv[i + 1];
    else if (flag == "--resource")
      resource = argv[i + 1];
    else if (flag == "--revoke")
      revoke = argv[i + 1];
  }
  if (token_endpoint.empty() || resource.empty() || revoke.empty()) {
    std::cerr << "usage: authorized_call --token-endpoint URL --resource URL --revoke URL\n";
    return 2;
  }
  try {
    asio::io_context io;
    awaken::tools::run_to_end(io, story(token_endpoint, resource, revoke));
  } catch (const std::exception& e) {
    std::cerr << "authorized_call: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
