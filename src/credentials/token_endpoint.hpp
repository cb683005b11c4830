// What every HTTP minter shares: endpoint checks, form encoding, and one token request with the
// error classification of the broker (network and transient failures retryable, the rest not).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/awaitable.hpp>
#include <nlohmann/json_fwd.hpp>

#include <awaken/credentials/dpop.hpp>
#include <awaken/credentials/material.hpp>
#include <awaken/credentials/token.hpp>
#include <awaken/http/http_client.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/jose/keys.hpp>

namespace awaken::detail {

/// The longest lifetime a token endpoint may claim; longer `expires_in` values are cut to it.
inline constexpr std::chrono::seconds max_token_lifetime{24 * 3600};
/// The longest access token accepted.
inline constexpr std::size_t max_access_token_bytes = 16 * 1024;

/// Checks that `url` is an absolute http(s) URL without user info, fragment or control bytes,
/// and https unless its host is loopback or `allow_plain_http`; returns its origin
/// ("https://host:port") for texts. Throws `Error{credential_errc::invalid_material}` naming `what`.
std::string check_endpoint(std::string_view url, std::string_view what, bool allow_plain_http = false);

/// Whether `uri` is an absolute URI (a scheme, then `:`) without a fragment, spaces or control
/// bytes: an RFC 8707 resource indicator.
bool is_absolute_uri(std::string_view uri) noexcept;

/// application/x-www-form-urlencoded: unreserved bytes kept, space as '+', the rest %XX.
std::string form_encode(std::string_view text);

/// Appends `form_encode(text)` to `out` without a temporary copy.
void form_encode_into(std::string& out, std::string_view text);

/// A form body that may hold secrets (assertions, subject tokens): parameters are encoded into
/// it in place, it grows into a fresh buffer with the old one wiped, and it is wiped when
/// destroyed, so no copy of a secret is freed unwiped.
class SecretForm {
 public:
  SecretForm() = default;
  SecretForm(const SecretForm&) = delete;
  SecretForm& operator=(const SecretForm&) = delete;
  ~SecretForm();
  /// Appends "&name=value" ("name=value" first), form-encoded.
  void add(std::string_view name, std::string_view value);
  const std::string& text() const noexcept { return text_; }

 private:
  std::string text_;
};

/// `Basic base64(form(id):form(secret))` (RFC 6749 section 2.3.1).
std::string basic_authorization(std::string_view client_id, std::string_view client_secret);

/// Retry-After of `r`: delay-seconds (at most a day) or an HTTP-date, as a wait from now on
/// `clock`; nullopt when absent or malformed.
std::optional<std::chrono::milliseconds> retry_after(const http::HttpResponse& r, const Clock& clock);

/// What a refusing server said: its RFC 6749 section 5.2 `error` and `error_description`
/// (bounded) when the body has them, and as the message "error: description"; else a bounded
/// excerpt of the body.
ErrorDetails oauth_error_details(int status, std::string_view body);

/// The DPoP side of one material (RFC 9449): its key, made when the material is, and the last
/// `DPoP-Nonce` its token endpoint sent. Thread safety: the nonce is guarded by a mutex held only
/// to read or replace it; the key is immutable.
class DpopBinding {
 public:
  DpopBinding() : key_(std::make_shared<const DpopKey>(DpopKey::generate())) {}
  const std::shared_ptr<const DpopKey>& key() const noexcept { return key_; }
  std::string nonce() const;
  /// Keeps `nonce` for the next request; one that is not a valid DPoP nonce is ignored.
  void keep_nonce(std::string_view nonce) const;

 private:
  std::shared_ptr<const DpopKey> key_;
  mutable std::mutex mutex_;
  mutable std::string nonce_;
};

/// What a token request does after a `use_dpop_nonce` challenge (RFC 9449 section 8), given
/// the attempt it was (0 for the first), the nonce its proof carried and the one the server
/// offers:
/// - `invalid_nonce` when the offered one is empty or not a DPoP nonce (`is_dpop_nonce`): it
///   cannot be sent back, so every request would meet the same challenge;
/// - `retry` on the first attempt, with a nonce other than the one just refused;
/// - `not_met` otherwise (the nonce rotated again, or the server refused its own): a later
///   request may pass, with the offered nonce kept.
enum class NonceChallengeAnswer { retry, invalid_nonce, not_met };
NonceChallengeAnswer answer_nonce_challenge(int attempt, std::string_view sent_nonce,
                                            std::string_view offered_nonce) noexcept;

/// Parses a 2xx token response body (RFC 6749 section 5.1). Throws
/// `Error{credential_errc::transient_upstream}` when it is not one. With `dpop`, the token must
/// be a DPoP one (`token_type` DPoP, else `permanent_upstream`: a bearer token is never taken
/// for a bound one) and carries that key.
Token parse_token_response(std::string_view body, const MintContext& ctx, std::string_view origin,
                           std::shared_ptr<const DpopKey> dpop = nullptr);

/// Whether an HTTP status may pass on a retry: 5xx, 408 and 429. Every minter's refusal reader
/// starts from this one rule.
constexpr bool is_transient_status(int status) noexcept { return status >= 500 || status == 408 || status == 429; }

/// The space-separated words of a scope (audiences, OAuth scopes).
std::vector<std::string> split_words(std::string_view scope);

/// How a refusal (a non-2xx answer) reads: whether a retry may help, and what the server said.
struct Refusal {
  bool transient = false;
  ErrorDetails details;
};
using RefusalReader = Refusal (*)(int status, std::string_view body);

/// RFC 6749 section 5.2: 5xx, 408 and 429 are transient; `oauth_error_details`.
Refusal oauth_refusal(int status, std::string_view body);

/// Wipes a response body that may hold a token when it goes out of scope.
struct WipedBody {
  std::string& body;
  ~WipedBody();
};

/// Sends `request` and returns its 2xx response (whose body the caller wipes, with `WipedBody`);
/// otherwise throws as `request_token` does, reading refusals with `read_refusal` (whose
/// transient ones carry `Retry-After`).
asio::awaitable<http::HttpResponse> send_token_request(http::HttpRequest request, const MintContext& ctx,
                                                       const std::string& origin, RefusalReader read_refusal);

/// Sends `request` and returns the token, or throws `awaken::Error`:
/// - unreachable, timed out, connection broken: `network`;
/// - 5xx, 408, 429: `transient_upstream`, with `Retry-After` as the retry hint;
/// - other statuses: `permanent_upstream`, with the RFC 6749 `error` and `error_description`;
/// - a 2xx that is not a token response: `transient_upstream`;
/// - a TLS failure or a refused request keeps its `http_errc` code (a retry would not help).
/// Texts name the provider and the endpoint's origin, never a secret or a full body.
asio::awaitable<Token> request_token(http::HttpRequest request, const MintContext& ctx, std::string origin);

/// Makes the request of one attempt; called again for a retry, so that each carries a fresh
/// client assertion (servers refuse one they have seen).
using RequestBuilder = std::function<asio::awaitable<http::HttpRequest>()>;

/// As above, with DPoP: each request carries a `DPoP` proof (with the endpoint's last nonce);
/// every nonce the endpoint sends is kept for the next request; a `use_dpop_nonce` challenge is
/// answered as `answer_nonce_challenge` says (a retry is a request built anew, `invalid_nonce`
/// is `permanent_upstream`, `not_met` `transient_upstream`); the token must be a DPoP one,
/// bound to the key.
asio::awaitable<Token> request_token(RequestBuilder build, const MintContext& ctx, std::string origin,
                                     const DpopBinding& dpop);

/// A POST of `form` (application/x-www-form-urlencoded, already encoded) to `url`, with
/// `authorization` as that header when not empty.
http::HttpRequest form_request(std::string url, std::string form, std::string authorization);

/// Sends `form_request(url, form, authorization)` and reads the token response as
/// `request_token` does.
asio::awaitable<Token> post_form(std::string url, std::string form, std::string authorization, const MintContext& ctx,
                                 std::string origin);

/// Seconds since the epoch on the context's clock, for JWT claims.
std::int64_t unix_seconds(const MintContext& ctx);

/// A compact JWS of `claims` with header `typ: JWT` (and `kid` when not empty). A failure is
/// `Error{jose_errc::signing_failed}` naming the provider and `what`.
std::string sign_assertion(jose::Algorithm algorithm, std::string_view key_id, const nlohmann::json& claims,
                           const jose::PrivateKey& key, const MintContext& ctx, std::string_view what);

}  // namespace awaken::detail
