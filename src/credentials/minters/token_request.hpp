// One request to a token endpoint, with the broker's classification of its failures (network and
// transient ones retryable, the rest not), DPoP proofs and nonces, and signed client assertions.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <asio/awaitable.hpp>
#include <nlohmann/json_fwd.hpp>

#include <awaken/credentials/dpop.hpp>
#include <awaken/credentials/material.hpp>
#include <awaken/credentials/token.hpp>
#include <awaken/http/http_client.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/jose/keys.hpp>

#include "credentials/minters/endpoint_rules.hpp"
#include "credentials/minters/form.hpp"
#include "credentials/minters/token_response.hpp"

namespace awaken::detail {

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

/// Sends `request` and returns its 2xx response (whose body the caller wipes, with `WipeOnExit`);
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
