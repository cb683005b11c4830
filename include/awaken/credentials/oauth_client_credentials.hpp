// Material for the OAuth 2.0 client credentials grant (RFC 6749 section 4.4).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <awaken/credentials/material.hpp>
#include <awaken/jose/keys.hpp>
#include <awaken/redacted_string.hpp>

namespace awaken {

/// How the client proves who it is to the token endpoint (RFC 6749 section 2.3.1, RFC 7523
/// section 2.2).
enum class ClientAuthentication {
  client_secret_basic,  ///< HTTP Basic with the form-encoded id and secret (the default)
  client_secret_post,   ///< `client_id` and `client_secret` in the form body
  private_key_jwt,      ///< a JWT client assertion signed with the client's private key
};

/// A confidential client of any OAuth 2.0 token endpoint.
struct OAuthClientCredentials {
  /// The token endpoint. https; plain http is refused unless the host is loopback.
  std::string token_endpoint;
  std::string client_id;
  ClientAuthentication authentication = ClientAuthentication::client_secret_basic;
  /// The shared secret, for `client_secret_basic` and `client_secret_post` only.
  RedactedString client_secret;

  /// `private_key_jwt` only: the client's private key (PEM; RSA of at least 2048 bits or EC).
  RedactedString private_key;
  /// `private_key_jwt` only: the assertion's algorithm, which must fit the key (RS256, PS256 and
  /// ES256 are the usual ones; any `jose::Algorithm` is accepted).
  jose::Algorithm signing_algorithm = jose::Algorithm::rs256;
  /// `private_key_jwt` only: the `kid` header of the assertion; left out when empty.
  std::string key_id;
  /// `private_key_jwt` only: how long an assertion is valid, 1 s to 10 min.
  std::chrono::seconds assertion_lifetime{60};

  /// RFC 8707 `resource` indicators (absolute URIs without a fragment), each sent.
  std::vector<std::string> resources;
  /// `audience`, as many servers take it; left out when empty.
  std::string audience;

  /// Ask for DPoP-bound tokens (RFC 9449): see `FederatedOAuth::dpop`.
  bool dpop = false;
};

/// Material that mints with `grant_type=client_credentials`; the broker's scope is sent as the
/// `scope` parameter (a space-separated list, left out when empty). Errors follow the broker's
/// classification (see `awaken/credentials/awaken_broker.hpp`): RFC 6749 `error` and
/// `error_description` of a refusal land in `Error::details().server_message`.
///
/// With `private_key_jwt`, each request carries `client_id`,
/// `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and a fresh
/// `client_assertion`: header `alg`, `typ` JWT and `kid`; claims `iss` = `sub` = the client id,
/// `aud` = the token endpoint, a random 128-bit `jti`, `iat` and `exp` = `iat` +
/// `assertion_lifetime`, on the broker's clock. A signing failure is `signing_failed`.
///
/// Throws `Error{credential_errc::invalid_material}` naming the bad field: an endpoint that is
/// not an absolute https URL (or http on loopback) or carries user info, an empty client id, a
/// missing secret or key for the chosen authentication (or one given that it does not use), a
/// key that is not a private key PEM or does not fit `signing_algorithm`, an assertion lifetime
/// out of range. Neither the secret nor the key ever appears in a text.
CredentialMaterial oauth_client_credentials(OAuthClientCredentials config);

}  // namespace awaken
