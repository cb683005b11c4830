// What every HTTP minter shares: endpoint checks, form encoding, and one token request with the
// error classification of the broker (network and transient failures retryable, the rest not).
#pragma once

#include <string>
#include <string_view>

#include <asio/awaitable.hpp>

#include <awaken/credentials/material.hpp>
#include <awaken/credentials/token.hpp>
#include <awaken/http/http_client.hpp>

namespace awaken::detail {

/// The longest lifetime a token endpoint may claim; longer `expires_in` values are cut to it.
inline constexpr std::chrono::seconds max_token_lifetime{24 * 3600};
/// The longest access token accepted.
inline constexpr std::size_t max_access_token_bytes = 16 * 1024;

/// Checks that `url` is an absolute http(s) URL without user info, fragment or control bytes,
/// and https unless its host is loopback or `allow_plain_http`; returns its origin
/// ("https://host:port") for texts. Throws `Error{credential_errc::invalid_material}` naming `what`.
std::string check_endpoint(std::string_view url, std::string_view what, bool allow_plain_http = false);

/// application/x-www-form-urlencoded: unreserved bytes kept, space as '+', the rest %XX.
std::string form_encode(std::string_view text);

/// `Basic base64(form(id):form(secret))` (RFC 6749 section 2.3.1).
std::string basic_authorization(std::string_view client_id, std::string_view client_secret);

/// Parses a 2xx token response body (RFC 6749 section 5.1). Throws
/// `Error{credential_errc::transient_upstream}` when it is not one.
Token parse_token_response(std::string_view body, const MintContext& ctx, std::string_view origin);

/// Sends `request` and returns the token, or throws `awaken::Error`:
/// - unreachable, timed out, connection broken: `network`;
/// - 5xx, 408, 429: `transient_upstream`, with `Retry-After` as the retry hint;
/// - other statuses: `permanent_upstream`, with the RFC 6749 `error` and `error_description`;
/// - a 2xx that is not a token response: `transient_upstream`;
/// - a TLS failure or a refused request keeps its `http_errc` code (a retry would not help).
/// Texts name the provider and the endpoint's origin, never a secret or a full body.
asio::awaitable<Token> request_token(http::HttpRequest request, const MintContext& ctx, std::string origin);

}  // namespace awaken::detail
