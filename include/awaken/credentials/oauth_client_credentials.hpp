// Material for the OAuth 2.0 client credentials grant (RFC 6749 section 4.4).
#pragma once

#include <string>

#include <awaken/credentials/material.hpp>
#include <awaken/redacted_string.hpp>

namespace awaken {

/// How the client proves who it is to the token endpoint (RFC 6749 section 2.3.1).
enum class ClientAuthentication {
  client_secret_basic,  ///< HTTP Basic with the form-encoded id and secret (the default)
  client_secret_post,   ///< `client_id` and `client_secret` in the form body
};

/// A confidential client of any OAuth 2.0 token endpoint.
struct OAuthClientCredentials {
  /// The token endpoint. https; plain http is refused unless the host is loopback.
  std::string token_endpoint;
  std::string client_id;
  RedactedString client_secret;
  ClientAuthentication authentication = ClientAuthentication::client_secret_basic;
};

/// Material that mints with `grant_type=client_credentials`; the broker's scope is sent as the
/// `scope` parameter (a space-separated list, left out when empty). Errors follow the broker's
/// classification (see `awaken/credentials/awaken_broker.hpp`): RFC 6749 `error` and
/// `error_description` of a refusal land in `Error::details().server_message`.
///
/// Throws `Error{credential_errc::invalid_material}` naming the bad field: an endpoint that is
/// not an absolute https URL (or http on loopback) or carries user info, an empty client id or
/// secret. The secret never appears in a text.
CredentialMaterial oauth_client_credentials(OAuthClientCredentials config);

}  // namespace awaken
