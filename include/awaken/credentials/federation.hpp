// Workload identity federation: OAuth flows that prove the workload's identity with a token it
// already has (a JWT-SVID, a token file another system rotates, a URL) or with its X.509-SVID,
// instead of a stored secret.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/awaitable.hpp>

#include <awaken/credentials/material.hpp>
#include <awaken/http/http_client.hpp>
#include <awaken/redacted_string.hpp>
#include <awaken/spiffe/jwt_source.hpp>
#include <awaken/spiffe/x509_svid.hpp>

namespace awaken {

/// How a token is laid out in a file or an HTTP response.
enum class TokenFormat {
  text,  ///< the whole content (one trailing newline dropped)
  json,  ///< a JSON object; the token is the string member `json_field`
};

/// Where a token that proves the workload's identity comes from: a subject token (RFC 8693), an
/// assertion (RFC 7523) or a client assertion. A cheap, immutable handle; copies share state.
///
/// - `file`: a file another system rotates (a Kubernetes projected service-account token,
///   `AZURE_FEDERATED_TOKEN_FILE`, `AWS_WEB_IDENTITY_TOKEN_FILE`). It is read again whenever its
///   inode, size or modification time changes (a symlink swap included), at most 256 KiB. A
///   JWT in it is never used at or past its own `exp`. Missing, unreadable, empty or expired is
///   `credential_errc::invalid_material` with a text naming the path, never the content.
/// - `url`: an HTTP(S) GET with the given headers (Google's url credential source). 5xx and
///   network failures are transient, other statuses permanent.
/// - `jwt_svid`: a JWT-SVID for `audience` from a `JwtSource`; Workload API failures are
///   transient or permanent as for `jwt_svid_material`.
///
/// Thread safety: `fetch` may be called from any number of threads at once.
class IdentityTokenSource {
 public:
  /// An empty handle; `fetch` on it is a precondition violation. Test with `operator bool`.
  IdentityTokenSource() = default;

  static IdentityTokenSource file(std::string path, TokenFormat format = TokenFormat::text,
                                  std::string json_field = {});
  static IdentityTokenSource url(std::string url, std::vector<http::Header> headers = {},
                                 TokenFormat format = TokenFormat::text, std::string json_field = {});
  static IdentityTokenSource jwt_svid(spiffe::JwtSource source, std::string audience,
                                      std::optional<spiffe::SpiffeId> spiffe_id = std::nullopt);

  /// The current token. Throws `awaken::Error` with a `credential_errc` code; texts name the
  /// provider and where the token comes from, never the token.
  asio::awaitable<RedactedString> fetch(const MintContext& context) const;

  /// "file", "url" or "jwt_svid".
  std::string_view kind_label() const noexcept;
  explicit operator bool() const noexcept { return fetcher_ != nullptr; }

  class Fetcher;

 private:
  explicit IdentityTokenSource(std::shared_ptr<const Fetcher> fetcher) noexcept : fetcher_(std::move(fetcher)) {}
  std::shared_ptr<const Fetcher> fetcher_;
};

/// The OAuth 2.0 grant a `FederatedOAuth` material asks for.
enum class OAuthGrant {
  client_credentials,  ///< RFC 6749 section 4.4
  jwt_bearer,          ///< RFC 7523 section 2.1: `assertion` is the grant
  token_exchange,      ///< RFC 8693: `subject_token` is exchanged
};

/// The `client_assertion_type` of a client assertion.
enum class ClientAssertionType {
  /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` (RFC 7523 section 2.2), as cloud
  /// identity providers (Entra ID, Google, Okta) accept a federated token.
  jwt_bearer,
  /// `urn:ietf:params:oauth:client-assertion-type:jwt-spiffe` (draft-ietf-oauth-spiffe-client-
  /// auth), as Keycloak accepts a JWT-SVID.
  jwt_spiffe,
};

/// An OAuth 2.0 token request with no stored secret. Client authentication is one of:
/// - a client assertion (`client_assertion`, of type `client_assertion_type`);
/// - mutual TLS with the workload's X.509-SVID (RFC 8705 `tls_client_auth` or
///   `self_signed_tls_client_auth`, which differ only in how the server checks the
///   certificate): the token endpoint is reached over TLS presenting the SVID current at each
///   mint, so rotations need no action;
/// - none (a public client; `client_id` alone, when set).
struct FederatedOAuth {
  std::string token_endpoint;  ///< https, or http on loopback (mutual TLS needs https)
  OAuthGrant grant = OAuthGrant::client_credentials;
  std::string client_id;  ///< sent as `client_id` when not empty

  std::optional<IdentityTokenSource> client_assertion;
  ClientAssertionType client_assertion_type = ClientAssertionType::jwt_bearer;
  std::shared_ptr<const spiffe::X509SvidSource> tls_client_certificate;

  /// `jwt_bearer` only, and required: the assertion that is the grant.
  std::optional<IdentityTokenSource> assertion;
  /// `token_exchange` only, and required: the subject token and its type.
  std::optional<IdentityTokenSource> subject_token;
  std::string subject_token_type = "urn:ietf:params:oauth:token-type:jwt";
  std::string requested_token_type;  ///< `token_exchange`: left out when empty

  /// RFC 8707 `resource` indicators (absolute URIs, each sent), and `audience` (RFC 8693, and
  /// the parameter many servers take on every grant), left out when empty.
  std::vector<std::string> resources;
  std::string audience;

  /// Ask for DPoP-bound tokens (RFC 9449). The material makes its own key (EC P-256, in memory
  /// only, never printed) and sends a `DPoP` proof of it with each token request; a
  /// `use_dpop_nonce` challenge is answered by one retry with the server's nonce, which is kept
  /// for later requests. A token whose `token_type` is not DPoP is refused
  /// (`permanent_upstream`); each token carries the key (`Token::dpop_key`), and callers present
  /// it with `Token::authorization(method, url)`, which adds the proof of each request.
  bool dpop = false;
};

/// Material for `config`: the broker's scope is sent as `scope` (left out when empty); the
/// response is read as for `oauth_client_credentials`, errors classified the same way.
///
/// Throws `Error{credential_errc::invalid_material}` naming the bad field: an endpoint that is
/// not https (or http on loopback), mutual TLS on plain http, two client authentications, a
/// grant without its token, a token given that the grant does not use, a resource that is not
/// an absolute URI or carries a fragment.
CredentialMaterial federated_oauth(FederatedOAuth config);

}  // namespace awaken
