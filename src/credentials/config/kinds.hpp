// Every kind of material a JSON configuration may name, held once: its name, whether it draws on
// a SPIFFE source, and what builds it (CredentialMaterial::from_config, material_from_config,
// is_spiffe_config and the texts that list the kinds all read this one table).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include <awaken/credentials/material.hpp>
#include <awaken/credentials/spiffe_minters.hpp>

namespace awaken::detail {

/// Builds one kind's material from its configuration object (whose `kind` names it); `sources`
/// serves the kinds that draw on a SPIFFE source, and one that lacks its source says so.
using MaterialBuilder = CredentialMaterial (*)(const nlohmann::json& config, const SpiffeSources& sources);

/// Whether a kind draws on a JwtSource: never, only when its identity token is a `jwt_svid`
/// object, or always.
enum class SpiffeUse { never, when_configured, always };

struct MaterialKind {
  std::string_view name;
  SpiffeUse spiffe;
  MaterialBuilder build;
};

/// The kind named `name`; nullptr when there is none.
const MaterialKind* find_material_kind(std::string_view name) noexcept;

/// The material `config` describes. Throws `Error{credential_errc::invalid_material}` naming
/// the bad field.
CredentialMaterial material_of_config(const nlohmann::json& config, const SpiffeSources& sources);

// The builders, each beside the options it reads.
// config.cpp:
CredentialMaterial bearer_config(const nlohmann::json& config, const SpiffeSources& sources);
CredentialMaterial google_service_account_config(const nlohmann::json& config, const SpiffeSources& sources);
CredentialMaterial oauth_client_credentials_config(const nlohmann::json& config, const SpiffeSources& sources);
CredentialMaterial gce_metadata_config(const nlohmann::json& config, const SpiffeSources& sources);
// federation_config.cpp:
CredentialMaterial jwt_svid_config(const nlohmann::json& config, const SpiffeSources& sources);
CredentialMaterial spiffe_client_credentials_config(const nlohmann::json& config, const SpiffeSources& sources);
CredentialMaterial spiffe_token_exchange_config(const nlohmann::json& config, const SpiffeSources& sources);
CredentialMaterial jwt_bearer_grant_config(const nlohmann::json& config, const SpiffeSources& sources);
CredentialMaterial google_external_account_config(const nlohmann::json& config, const SpiffeSources& sources);
CredentialMaterial azure_workload_identity_config(const nlohmann::json& config, const SpiffeSources& sources);
CredentialMaterial aws_web_identity_config(const nlohmann::json& config, const SpiffeSources& sources);

}  // namespace awaken::detail
