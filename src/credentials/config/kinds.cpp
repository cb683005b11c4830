#include "credentials/config/kinds.hpp"

#include <algorithm>
#include <array>

#include <nlohmann/json.hpp>

#include <awaken/error.hpp>

#include "core/bounded_json.hpp"
#include "credentials/config/config_fields.hpp"

namespace awaken {
namespace detail {
namespace {

constexpr std::array<MaterialKind, 11> kinds{{
    {"bearer", SpiffeUse::never, bearer_config},
    {"google_service_account", SpiffeUse::never, google_service_account_config},
    {"oauth_client_credentials", SpiffeUse::never, oauth_client_credentials_config},
    {"gce_metadata", SpiffeUse::never, gce_metadata_config},
    {"jwt_bearer_grant", SpiffeUse::when_configured, jwt_bearer_grant_config},
    {"google_external_account", SpiffeUse::when_configured, google_external_account_config},
    {"azure_workload_identity", SpiffeUse::when_configured, azure_workload_identity_config},
    {"aws_web_identity", SpiffeUse::when_configured, aws_web_identity_config},
    {"jwt_svid", SpiffeUse::always, jwt_svid_config},
    {"spiffe_client_credentials", SpiffeUse::always, spiffe_client_credentials_config},
    {"spiffe_token_exchange", SpiffeUse::always, spiffe_token_exchange_config},
}};

std::string kind_names() {
  std::string out;
  for (const MaterialKind& k : kinds) {
    if (!out.empty()) out += ", ";
    out += k.name;
  }
  return out;
}

}  // namespace

const MaterialKind* find_material_kind(std::string_view name) noexcept {
  const auto* it = std::find_if(kinds.begin(), kinds.end(), [&](const MaterialKind& k) { return k.name == name; });
  return it == kinds.end() ? nullptr : &*it;
}

CredentialMaterial material_of_config(const nlohmann::json& config, const SpiffeSources& sources) {
  if (!config.is_object()) throw_error(credential_errc::invalid_material, "credential config: not a JSON object");
  const auto kind = config.find("kind");
  if (kind == config.end()) bad("kind", "is missing");
  if (!kind->is_string()) bad("kind", "is not a string");
  const auto& name = kind->get_ref<const std::string&>();
  if (const MaterialKind* k = find_material_kind(name)) return k->build(config, sources);
  bad("kind", "'" + bounded_excerpt(name, 64) + "' is not one of " + kind_names());
}

}  // namespace detail

CredentialMaterial CredentialMaterial::from_config(const nlohmann::json& config) {
  // The SPIFFE-backed kinds say which source they lack.
  return detail::material_of_config(config, SpiffeSources{});
}

CredentialMaterial material_from_config(const nlohmann::json& config, const SpiffeSources& sources) {
  return detail::material_of_config(config, sources);
}

CredentialMaterial material_from_config(const nlohmann::json& config, const spiffe::JwtSource& source) {
  SpiffeSources sources;
  sources.jwt = source;
  return detail::material_of_config(config, sources);
}

}  // namespace awaken
