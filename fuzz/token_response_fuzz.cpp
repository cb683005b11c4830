// Fuzzes what a token endpoint sends back and what a configuration file holds: a 2xx token
// response (RFC 6749 5.1), also as the answer to a DPoP request (RFC 9449), an error body (5.2),
// a Retry-After value, a DPoP-Nonce, and the input as a material configuration. No crash; a
// parsed token is never empty, never longer than the bound, and never lives past the longest
// lifetime; a DPoP answer is a DPoP token bound to the key or refused; a nonce kept makes a proof
// that carries it; error texts stay bounded.
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <system_error>

#include <asio/io_context.hpp>

#include <awaken/clock.hpp>
#include <awaken/credentials/dpop.hpp>
#include <awaken/credentials/material.hpp>
#include <awaken/http/http_client.hpp>

#include "core/bounded_json.hpp"
#include "credentials/minters/token_request.hpp"

using namespace awaken;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static asio::io_context io;
  static http::HttpClient client{io.get_executor()};
  static const ManualClock clock;
  const std::string_view body{reinterpret_cast<const char*>(data), size};
  const MintContext ctx{"fuzz", client, clock};
  try {
    const Token token = detail::parse_token_response(body, ctx, "https://token.example");
    if (token.bearer().empty() || token.bearer().size() > detail::max_access_token_bytes) std::abort();
    if (token.steady_expires_at() > clock.steady_now() + detail::max_token_lifetime) std::abort();
  } catch (const std::system_error&) {
  }
  static const detail::DpopBinding dpop;
  try {
    const Token token = detail::parse_token_response(body, ctx, "https://token.example", dpop.key());
    if (token.dpop_key() != dpop.key().get() || token.token_type() != "DPoP") std::abort();
  } catch (const std::system_error&) {
  }
  const std::string_view nonce = body.substr(0, 2048);
  if (is_dpop_nonce(nonce) && !nonce.empty()) {
    dpop.keep_nonce(nonce);
    const std::string proof = dpop.key()->proof("POST", "https://token.example/t", {}, dpop.nonce(), clock);
    if (dpop.nonce() != nonce || proof.empty()) std::abort();
  }
  const ErrorDetails details = detail::oauth_error_details(400, body);
  if (details.server_message.size() > 1024 || details.oauth_error.size() > 512) std::abort();
  http::HttpResponse response;
  response.headers.push_back({"retry-after", std::string{body.substr(0, 64)}});
  if (const auto wait = detail::retry_after(response, clock); wait && wait->count() < 0) std::abort();
  try {
    const auto config = detail::parse_bounded_json(body);
    if (config.is_object()) (void)CredentialMaterial::from_config(config);
  } catch (const std::system_error&) {
  } catch (const nlohmann::json::exception&) {
  }
  return 0;
}
