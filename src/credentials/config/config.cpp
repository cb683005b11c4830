// The configuration of the built-in kinds that need no SPIFFE source: bearer,
// google_service_account, oauth_client_credentials and gce_metadata.
#include <awaken/credentials/gce_metadata.hpp>
#include <awaken/credentials/google_service_account.hpp>
#include <awaken/credentials/material.hpp>
#include <awaken/credentials/oauth_client_credentials.hpp>
#include <awaken/credentials/spiffe_minters.hpp>
#include <awaken/error.hpp>

#include <nlohmann/json.hpp>

#include "credentials/config/config_fields.hpp"
#include "credentials/config/kinds.hpp"

namespace awaken::detail {

CredentialMaterial bearer_config(const nlohmann::json& config, const SpiffeSources&) {
  const Fields f{config, "bearer", {"token", "token_file", "token_env", "lifetime_seconds"}};
  auto token = f.secret("token", true);
  if (auto lifetime = f.seconds("lifetime_seconds"))
    return CredentialMaterial::static_bearer(std::move(token), std::chrono::seconds{*lifetime});
  return CredentialMaterial::static_bearer(std::move(token));
}

CredentialMaterial google_service_account_config(const nlohmann::json& config, const SpiffeSources&) {
  const Fields f{config, "google_service_account", {"key", "key_file", "key_env", "allowed_token_uris"}};
  GoogleServiceAccountOptions options;
  if (const auto* uris = f.find("allowed_token_uris")) {
    if (!uris->is_array()) bad("allowed_token_uris", "is not an array of strings");
    for (const auto& uri : *uris) {
      if (!uri.is_string() || uri.get_ref<const std::string&>().empty())
        bad("allowed_token_uris", "holds something other than a non-empty string");
      options.allowed_token_uris.push_back(uri.get<std::string>());
    }
  }
  return google_service_account(GoogleServiceAccount::from_json(f.secret("key", true, true)), std::move(options));
}

CredentialMaterial oauth_client_credentials_config(const nlohmann::json& config, const SpiffeSources&) {
  const Fields f{config,
                 "oauth_client_credentials",
                 {"token_endpoint", "client_id", "authentication", "client_secret", "client_secret_file",
                  "client_secret_env", "private_key", "private_key_file", "private_key_env", "signing_algorithm",
                  "key_id", "assertion_lifetime_seconds", "resource", "audience", "dpop"}};
  OAuthClientCredentials c;
  c.token_endpoint = f.text("token_endpoint", {}, true);
  c.client_id = f.text("client_id", {}, true);
  const std::string auth = f.text("authentication", "client_secret_basic");
  if (auth == "client_secret_basic")
    c.authentication = ClientAuthentication::client_secret_basic;
  else if (auth == "client_secret_post")
    c.authentication = ClientAuthentication::client_secret_post;
  else if (auth == "private_key_jwt")
    c.authentication = ClientAuthentication::private_key_jwt;
  else
    bad("authentication",
        "'" + bounded_excerpt(auth, 64) + "' is not client_secret_basic, client_secret_post or private_key_jwt");
  const bool with_key = c.authentication == ClientAuthentication::private_key_jwt;
  c.client_secret = f.secret("client_secret", !with_key);
  c.private_key = f.secret("private_key", with_key);
  const std::string alg = f.text("signing_algorithm", "RS256");
  if (auto parsed = jose::parse_algorithm(alg))
    c.signing_algorithm = *parsed;
  else
    bad("signing_algorithm", "'" + bounded_excerpt(alg, 32) +
                                 "' is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512");
  c.key_id = f.text("key_id");
  if (auto lifetime = f.seconds("assertion_lifetime_seconds")) c.assertion_lifetime = std::chrono::seconds{*lifetime};
  c.resources = f.uris("resource");
  c.audience = f.text("audience");
  c.dpop = f.flag("dpop");
  return oauth_client_credentials(std::move(c));
}

CredentialMaterial gce_metadata_config(const nlohmann::json& config, const SpiffeSources&) {
  const Fields f{config, "gce_metadata", {"base_url", "account"}};
  GceMetadataOptions options;
  options.base_url = f.text("base_url", options.base_url);
  options.account = f.text("account", options.account);
  return gce_metadata(std::move(options));
}

}  // namespace awaken::detail
