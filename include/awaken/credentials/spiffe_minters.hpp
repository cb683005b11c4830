// Credentials made from SPIFFE workload identity, with no static secret at all: JWT-SVIDs as
// bearer tokens, as OAuth client assertions, and as RFC 8693 subject tokens.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

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

/// OAuth 2.0 client credentials authenticated by a JWT-SVID (RFC 7523 section 2.2, the way
/// cloud identity providers federate workload identity): each mint fetches a JWT-SVID for
/// `assertion_audience` and posts `client_assertion_type=urn:ietf:params:oauth:client-assertion-
/// type:jwt-bearer` with it; the broker's scope is sent as `scope`.
struct SpiffeClientCredentials {
  std::string token_endpoint;                 ///< https, or http on loopback
  std::string client_id;                      ///< sent as `client_id` when not empty
  std::string assertion_audience;             ///< the SVID's audience; the token endpoint when empty
  std::optional<spiffe::SpiffeId> spiffe_id;  ///< which of the workload's SVIDs; the first when unset
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
};
CredentialMaterial spiffe_token_exchange(spiffe::JwtSource source, SpiffeTokenExchange config);

/// Whether `config` (a `CredentialMaterial::from_config` object) is of a SPIFFE-backed kind:
/// `jwt_svid`, `spiffe_client_credentials` or `spiffe_token_exchange`.
bool is_spiffe_config(const nlohmann::json& config);

/// `CredentialMaterial::from_config` extended with the SPIFFE-backed kinds, whose tokens come
/// from `source`:
///
/// | kind | fields |
/// |------|--------|
/// | `jwt_svid` | `spiffe_id` |
/// | `spiffe_client_credentials` | `token_endpoint`, `client_id`, `assertion_audience`, `spiffe_id` |
/// | `spiffe_token_exchange` | `token_endpoint`, `subject_audience`, `audience`, `resource`, `spiffe_id` |
///
/// Other kinds go to `CredentialMaterial::from_config`. Throws `Error{invalid_material}` naming
/// the bad field.
CredentialMaterial material_from_config(const nlohmann::json& config, const spiffe::JwtSource& source);

}  // namespace awaken
