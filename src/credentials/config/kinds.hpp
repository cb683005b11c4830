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
using MaterialBuilderFn = CredentialMaterial(const nlohmann::json& config, const SpiffeSources& sources);
using MaterialBuilder = MaterialBuilderFn*;

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

// The builders (`MaterialBuilderFn`), each beside the options it reads.
// config.cpp:
MaterialBuilderFn bearer_config, google_service_account_config, oauth_client_credentials_config, gce_metadata_config;
// federation_config.cpp:
MaterialBuilderFn jwt_svid_config, spiffe_client_credentials_config, spiffe_token_exchange_config,
    jwt_bearer_grant_config, google_external_account_config, azure_workload_identity_config, aws_web_identity_config;

}  // namespace awaken::detail
