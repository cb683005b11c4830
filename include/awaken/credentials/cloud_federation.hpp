// Workload identity federation to the clouds, in the formats their tools write and the
// environment variables their SDKs read: Google `external_account`, Azure workload identity,
// AWS web identity.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <awaken/credentials/federation.hpp>
#include <awaken/credentials/material.hpp>
#include <awaken/redacted_string.hpp>

namespace awaken {

/// The SPIFFE sources a configuration may draw on; either may be absent.
struct SpiffeSources {
  std::optional<spiffe::JwtSource> jwt;
  std::shared_ptr<const spiffe::X509SvidSource> x509;
};

/// A Google `external_account` credential configuration, the JSON file that `gcloud iam
/// workload-identity-pools create-cred-config` writes.
struct GoogleExternalAccount {
  std::string audience;            ///< the workload identity pool provider
  std::string subject_token_type;  ///< e.g. `urn:ietf:params:oauth:token-type:jwt`
  std::string token_url = "https://sts.googleapis.com/v1/token";
  std::string service_account_impersonation_url;       ///< empty: the STS token is the token
  std::optional<std::chrono::seconds> token_lifetime;  ///< `service_account_impersonation.token_lifetime_seconds`
  std::string workforce_pool_user_project;             ///< sent in STS `options` when set
  std::string universe_domain = "googleapis.com";
  IdentityTokenSource credential_source;

  /// Parses the file's text. `credential_source` may be `file` or `url` (with `headers` and
  /// `format` {`type` text or json, `subject_token_field_name`}), or, as an awaken extension,
  /// `jwt_svid` {`audience` (default: the file's `audience`), `spiffe_id`}, which needs
  /// `sources.jwt`. The `executable` and AWS `environment_id` sources are refused, as are
  /// `type` other than `external_account` and malformed fields. Throws
  /// `Error{credential_errc::invalid_material}` naming the field.
  static GoogleExternalAccount from_json(std::string_view text, const SpiffeSources& sources = {});
};

struct GoogleExternalAccountOptions {
  /// URLs (exact) allowed as `token_url` and `service_account_impersonation_url` besides
  /// Google's own hosts in the universe domain (`sts.googleapis.com`,
  /// `iamcredentials.googleapis.com` and their regional and private forms), as for tests or a
  /// private endpoint.
  std::vector<std::string> allowed_urls;
  /// Universe domains besides `googleapis.com` that a file's `universe_domain` may name
  /// (a sovereign cloud). The file alone cannot move the endpoints off Google's hosts.
  std::vector<std::string> allowed_universe_domains;
};

/// Material that exchanges the subject token at `token_url` (RFC 8693, `requested_token_type`
/// access token) and, when impersonation is configured, trades the result for a service
/// account's token (`generateAccessToken`, with `lifetime` when `token_lifetime` is set). The
/// broker's scope is the OAuth scope list (space-separated; `cloud-platform` when empty).
/// Failures of either step are classified as for any token endpoint (5xx transient, 4xx
/// permanent). Throws `Error{credential_errc::invalid_material}` for a URL that is not allowed.
CredentialMaterial google_external_account(GoogleExternalAccount account, GoogleExternalAccountOptions options = {});

/// Azure workload identity (Microsoft Entra ID): the client credentials grant with a federated
/// client assertion, as the Azure SDKs' `WorkloadIdentityCredential` does.
struct AzureWorkloadIdentity {
  std::string client_id;
  std::string tenant_id;
  std::string authority_host = "https://login.microsoftonline.com/";
  /// The federated token: `AZURE_FEDERATED_TOKEN_FILE`, or a JWT-SVID for
  /// `api://AzureADTokenExchange`.
  IdentityTokenSource assertion;

  /// From `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE` and
  /// `AZURE_AUTHORITY_HOST` (optional), as the Azure SDKs read them. Throws
  /// `Error{credential_errc::invalid_material}` naming the variable that is missing.
  static AzureWorkloadIdentity from_environment();
};

/// Posts to `<authority_host>/<tenant_id>/oauth2/v2.0/token`. The broker's scope is sent as
/// `scope` (Entra ID wants one resource's `.../.default`).
CredentialMaterial azure_workload_identity(AzureWorkloadIdentity config);

/// AWS STS `AssumeRoleWithWebIdentity` with a web identity token (a token file or a JWT-SVID
/// for `sts.amazonaws.com`), giving temporary AWS credentials.
struct AwsWebIdentity {
  std::string role_arn;  ///< `arn:aws:iam::ACCOUNT:role/NAME`
  std::string role_session_name = "awaken";
  IdentityTokenSource web_identity_token;
  /// The STS endpoint; empty: `https://sts.<region>.amazonaws.com/` with `region`, else the
  /// global `https://sts.amazonaws.com/`.
  std::string sts_endpoint;
  std::string region;
  std::chrono::seconds duration{3600};  ///< 900 s to 12 h

  /// From `AWS_ROLE_ARN`, `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_SESSION_NAME` (optional),
  /// `AWS_REGION` or `AWS_DEFAULT_REGION` (optional) and `AWS_ENDPOINT_URL_STS` (optional), as the
  /// AWS SDKs read them. Throws `Error{credential_errc::invalid_material}` naming the variable
  /// that is missing.
  static AwsWebIdentity from_environment();
};

/// Material whose tokens carry `AwsCredentials` (`IssuedToken::aws_credentials()`); `bearer()`
/// is the session token and `token_type()` is `AWS`. The broker's scope is the role to assume:
/// empty for `role_arn`, or another role's ARN. STS's XML answers are read with pugixml;
/// `Throttling`, `IDPCommunicationError`, 5xx and malformed answers are transient, other errors
/// (`InvalidIdentityToken`, `ExpiredTokenException`, `AccessDenied`, ...) permanent, with STS's
/// code and message in `Error::details()`. Throws `Error{credential_errc::invalid_material}` for
/// a malformed role ARN, session name, endpoint or duration.
CredentialMaterial aws_web_identity(AwsWebIdentity config);

}  // namespace awaken
