// What a token endpoint answers: a token response (RFC 6749 section 5.1), or a refusal read for
// whether a retry may help.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <awaken/credentials/dpop.hpp>
#include <awaken/credentials/material.hpp>
#include <awaken/credentials/token.hpp>
#include <awaken/http/http_client.hpp>

namespace awaken::detail {

/// The longest lifetime a token endpoint may claim; longer `expires_in` values are cut to it.
inline constexpr std::chrono::seconds max_token_lifetime{24 * 3600};
/// The longest access token accepted.
inline constexpr std::size_t max_access_token_bytes = 16 * 1024;

/// "provider 'p': token endpoint https://host" for a bare origin; "provider 'p': " and `origin`
/// when it is already named ("identity token url https://host").
std::string endpoint_context(const MintContext& ctx, std::string_view origin);

/// Retry-After of `r`: delay-seconds (at most a day) or an HTTP-date, as a wait from now on
/// `clock`; nullopt when absent or malformed.
std::optional<std::chrono::milliseconds> retry_after(const http::HttpResponse& r, const Clock& clock);

/// What a refusing server said: its RFC 6749 section 5.2 `error` and `error_description`
/// (bounded) when the body has them, and as the message "error: description"; else a bounded
/// excerpt of the body.
ErrorDetails oauth_error_details(int status, std::string_view body);

/// Parses a 2xx token response body (RFC 6749 section 5.1). Throws
/// `Error{credential_errc::transient_upstream}` when it is not one. With `dpop`, the token must
/// be a DPoP one (`token_type` DPoP, else `permanent_upstream`: a bearer token is never taken
/// for a bound one) and carries that key.
Token parse_token_response(std::string_view body, const MintContext& ctx, std::string_view origin,
                           std::shared_ptr<const DpopKey> dpop = nullptr);

/// Whether an HTTP status may pass on a retry: 5xx, 408 and 429. Every minter's refusal reader
/// starts from this one rule.
constexpr bool is_transient_status(int status) noexcept { return status >= 500 || status == 408 || status == 429; }

/// How a refusal (a non-2xx answer) reads: whether a retry may help, and what the server said.
struct Refusal {
  bool transient = false;
  ErrorDetails details;
};
using RefusalReader = Refusal (*)(int status, std::string_view body);

/// RFC 6749 section 5.2: 5xx, 408 and 429 are transient; `oauth_error_details`.
Refusal oauth_refusal(int status, std::string_view body);

}  // namespace awaken::detail
