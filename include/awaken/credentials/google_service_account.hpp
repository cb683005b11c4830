// Material for a Google service account key (RFC 7523 JWT-bearer grant).
#pragma once

#include <string>
#include <vector>

#include <awaken/credentials/material.hpp>
#include <awaken/redacted_string.hpp>

namespace awaken {

/// The fields of a Google service-account key file that minting needs.
///
/// Thread safety: a plain value; `private_key` is a secret and never printed.
struct GoogleServiceAccount {
  std::string client_email;
  std::string private_key_id;
  RedactedString private_key;  ///< PEM
  std::string token_uri;
  std::string project_id;  ///< informational, may be empty

  /// The canonical token endpoint, the only one accepted unless the caller allows others.
  static constexpr const char* google_token_uri = "https://oauth2.googleapis.com/token";

  /// Parses a key file. Checks that `type` is `service_account`, that `client_email`,
  /// `private_key_id`, `private_key` and `token_uri` are non-empty strings and that
  /// `private_key` looks like a PEM block. Throws `Error{credential_errc::invalid_material}`
  /// naming the field; no text ever contains the key.
  static GoogleServiceAccount from_json(const RedactedString& json);
};

/// Options of `google_service_account`.
struct GoogleServiceAccountOptions {
  /// Token URIs accepted besides `GoogleServiceAccount::google_token_uri`, compared byte for
  /// byte. Empty: only Google's. A key file naming any other URI is refused, so that a tampered
  /// file cannot send a signed assertion to another host.
  std::vector<std::string> allowed_token_uris;
};

/// Material that mints with the JWT-bearer grant: an RS256 assertion (`kid` = `private_key_id`;
/// claims `iss` = `client_email`, `scope` = the broker's scope, `aud` = `token_uri`, `iat`, and
/// `exp` = `iat` + 3600) posted as `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`.
/// Errors follow the broker's classification.
///
/// Throws `Error{credential_errc::invalid_material}` for a token URI that is not allowed or a
/// key that is not an RSA private key of at least 2048 bits.
CredentialMaterial google_service_account(GoogleServiceAccount key, GoogleServiceAccountOptions options = {});

}  // namespace awaken
