// Credentials made from SPIFFE workload identity, with no static secret at all: JWT-SVIDs as
// bearer tokens, as OAuth client assertions, and as RFC 8693 subject tokens.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include <awaken/credentials/cloud_federation.hpp>
#include <awaken/credentials/federation.hpp>
#include <awaken/credentials/material.hpp>
#include <awaken/spiffe/jwt_source.hpp>

namespace awaken {

/// Material whose tokens are JWT-SVIDs fetched from `source`. The broker's scope is the audience
/// list (space-separated; at least one); a token expires at the SVID's `exp`. Through an
/// `AwakenBroker` this caches JWT-SVIDs per audience, with one fetch however many callers ask
/// and a refresh in the soft window, where a bare source calls the agent on every request.
///
/// Failures: a transient Workload API failure is `credential_errc::transient_upstream`
/// (retried by the broker), any other `permanent_upstream`; an empty scope is
/// `invalid_material`. Throws `Error{credential_errc::invalid_material}` when `source` is an
/// empty handle.
CredentialMaterial jwt_svid_material(spiffe::JwtSource source,
                                     std::optional<spiffe::SpiffeId> spiffe_id = std::nullopt);

/// OAuth 2.0 client credentials authenticated by a JWT-SVID: each mint fetches a JWT-SVID for
/// `assertion_audience` and posts it as `client_assertion`, of type `jwt-bearer` (RFC 7523
/// section 2.2, the way cloud identity providers federate workload identity) or `jwt-spiffe`
/// (draft-ietf-oauth-spiffe-client-auth, as Keycloak accepts it); the broker's scope is sent
/// as `scope`. (Mutual TLS with the X.509-SVID, RFC 8705, is `federated_oauth` with
/// `tls_client_certificate`.)
struct SpiffeClientCredentials {
  std::string token_endpoint;                 ///< https, or http on loopback
  std::string client_id;                      ///< sent as `client_id` when not empty
  std::string assertion_audience;             ///< the SVID's audience; the token endpoint when empty
  std::optional<spiffe::SpiffeId> spiffe_id;  ///< which of the workload's SVIDs; the first when unset
  ClientAssertionType assertion_type = ClientAssertionType::jwt_bearer;
  std::vector<std::string> resources;  ///< RFC 8707 `resource`, each sent
  std::string audience;                ///< `audience`, left out when empty
  bool dpop = false;                   ///< DPoP-bound tokens (see `FederatedOAuth::dpop`)
};
CredentialMaterial spiffe_client_credentials(spiffe::JwtSource source, SpiffeClientCredentials config);

/// RFC 8693 token exchange with a JWT-SVID as `subject_token`
/// (`subject_token_type=urn:ietf:params:oauth:token-type:jwt`), as security token services do:
/// the broker's scope is sent as `scope`, and `audience` / `resource` when set.
struct SpiffeTokenExchange {
  std::string token_endpoint;    ///< https, or http on loopback
  std::string subject_audience;  ///< the SVID's audience; the token endpoint when empty
  std::string audience;          ///< RFC 8693 `audience`, left out when empty
  std::string resource;          ///< RFC 8693 `resource`, left out when empty
  std::optional<spiffe::SpiffeId> spiffe_id;
  std::string requested_token_type;  ///< RFC 8693 `requested_token_type`, left out when empty
  bool dpop = false;                 ///< DPoP-bound tokens (see `FederatedOAuth::dpop`)
};
CredentialMaterial spiffe_token_exchange(spiffe::JwtSource source, SpiffeTokenExchange config);

/// Whether `config` (a `material_from_config` object) draws on a `JwtSource`: the kinds
/// `jwt_svid`, `spiffe_client_credentials` and `spiffe_token_exchange`, and the federated kinds
/// when they name a `jwt_svid` (a Google `credentials_file` is not opened to look).
bool is_spiffe_config(const nlohmann::json& config);

/// Whether `config` authenticates with the X.509-SVID (`authentication` `tls_client_auth` or
/// `self_signed_tls_client_auth`), so that `SpiffeSources::x509` is needed.
bool needs_x509_source(const nlohmann::json& config);

/// `CredentialMaterial::from_config` extended with the kinds that draw on SPIFFE sources.
/// Fields marked + fall back on the environment variable named, as the clouds' SDKs read them.
///
/// | kind | fields |
/// |------|--------|
/// | `jwt_svid` | `spiffe_id` |
/// | `spiffe_client_credentials` | `token_endpoint`, `client_id`, `authentication` (`client_assertion`,
/// `tls_client_auth`, `self_signed_tls_client_auth`), `client_assertion_type` (`jwt-bearer`, `jwt-spiffe`),
/// `assertion_audience`, `spiffe_id`, `resource`, `audience` | | `spiffe_token_exchange` | `token_endpoint`,
/// `subject_audience`, `audience`, `resource`, `requested_token_type`, `spiffe_id` | | `jwt_bearer_grant` |
/// `token_endpoint`, `client_id`, `token_file` or `jwt_svid`, `resource`, `audience` | | `google_external_account` |
/// `credentials` (the file's object) or `credentials_file`, `allowed_urls` | | `azure_workload_identity` | `client_id`+
/// (`AZURE_CLIENT_ID`), `tenant_id`+ (`AZURE_TENANT_ID`), `authority_host`+ (`AZURE_AUTHORITY_HOST`), `token_file`+
/// (`AZURE_FEDERATED_TOKEN_FILE`) or `jwt_svid` | | `aws_web_identity` | `role_arn`+ (`AWS_ROLE_ARN`),
/// `role_session_name`+ (`AWS_ROLE_SESSION_NAME`), `token_file`+ (`AWS_WEB_IDENTITY_TOKEN_FILE`) or `jwt_svid`,
/// `region`+ (`AWS_REGION`, `AWS_DEFAULT_REGION`), `sts_endpoint`+ (`AWS_ENDPOINT_URL_STS`), `duration_seconds` |
///
/// `resource` is a URI or an array of them (RFC 8707). `dpop` (true or false; false by default) on
/// `spiffe_client_credentials`, `spiffe_token_exchange` and `jwt_bearer_grant` asks for
/// DPoP-bound tokens (see `FederatedOAuth::dpop`). `jwt_svid` is an object {`audience`,
/// `spiffe_id`}; its audience defaults to the token endpoint (`jwt_bearer_grant`),
/// `api://AzureADTokenExchange` (Azure), `sts.amazonaws.com` (AWS) or the file's `audience`
/// (Google's `credential_source`). The federated kinds without a `jwt_svid` need no source and
/// are built by `CredentialMaterial::from_config` too. Other kinds go to
/// `CredentialMaterial::from_config`. Throws `Error{invalid_material}` naming the bad field, and
/// for a kind that needs a source `sources` lacks.
CredentialMaterial material_from_config(const nlohmann::json& config, const SpiffeSources& sources);

/// As above, with `source` as the JWT source and no X.509 source.
CredentialMaterial material_from_config(const nlohmann::json& config, const spiffe::JwtSource& source);

}  // namespace awaken
