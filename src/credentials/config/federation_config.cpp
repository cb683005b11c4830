// The JSON configuration of the SPIFFE-backed and federated kinds, and Google's external_account
// file.
#include <awaken/credentials/cloud_federation.hpp>
#include <awaken/credentials/spiffe_minters.hpp>
#include <awaken/error.hpp>

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "core/bounded_json.hpp"
#include "credentials/config/config_fields.hpp"
#include "credentials/config/kinds.hpp"
#include "credentials/federation/federation_detail.hpp"

namespace awaken {
namespace {

using detail::bad;
using detail::Fields;
using json = nlohmann::json;

std::optional<spiffe::SpiffeId> spiffe_id_text(std::string_view field, const std::string& text) {
  if (text.empty()) return std::nullopt;
  std::error_code ec;
  auto id = spiffe::SpiffeId::parse(text, ec);
  if (!id) bad(field, "is not a SPIFFE ID: " + ec.message());
  return id;
}

const spiffe::JwtSource& need_jwt(const SpiffeSources& sources, std::string_view field) {
  if (!sources.jwt) bad(field, "needs a JwtSource: build the material with material_from_config(config, sources)");
  return *sources.jwt;
}

// A `jwt_svid` object: {"audience" (default `audience`), "spiffe_id"}.
IdentityTokenSource svid_object(const json& object, std::string_view field, const std::string& audience,
                                const SpiffeSources& sources) {
  if (!object.is_object()) bad(field, "is not an object");
  const Fields f{object, field, {"audience", "spiffe_id"}};
  const std::string aud = f.text("audience", audience);
  if (aud.empty()) bad(field, "has no audience");
  return IdentityTokenSource::jwt_svid(need_jwt(sources, field), aud, spiffe_id_text("spiffe_id", f.text("spiffe_id")));
}

// `token_file` (a path, or the environment variable `env_file` when absent) or `jwt_svid`.
IdentityTokenSource identity_field(const Fields& f, const std::string& default_audience, const SpiffeSources& sources,
                                   const char* env_file = nullptr) {
  const auto* file = f.find("token_file");
  const auto* svid = f.find("jwt_svid");
  if (file != nullptr && svid != nullptr) bad("token_file", "and 'jwt_svid' are both given: use one");
  if (svid != nullptr) return svid_object(*svid, "jwt_svid", default_audience, sources);
  std::string path = f.text("token_file");
  if (path.empty() && env_file != nullptr)
    if (const char* v = std::getenv(env_file); v != nullptr && *v != '\0') path = v;
  if (path.empty())
    bad("token_file",
        std::string{"is missing (give it or 'jwt_svid'"} + (env_file ? std::string{", or set "} + env_file : "") + ")");
  return IdentityTokenSource::file(path);
}

// A field, else an environment variable, else `fallback`.
std::string text_or_env(const Fields& f, std::string_view field, const char* variable, std::string fallback = {}) {
  std::string v = f.text(field);
  if (!v.empty()) return v;
  if (const char* e = std::getenv(variable); e != nullptr && *e != '\0') return e;
  return fallback;
}

// What every OAuth kind reads alike: the endpoint, the client id, RFC 8707 resources, audience,
// DPoP.
FederatedOAuth oauth_fields(const Fields& f, OAuthGrant grant) {
  FederatedOAuth o;
  o.grant = grant;
  o.token_endpoint = f.text("token_endpoint", {}, true);
  o.client_id = f.text("client_id");
  o.resources = f.uris("resource");
  o.audience = f.text("audience");
  o.dpop = f.flag("dpop");
  return o;
}

std::vector<std::string> string_list(const Fields& f, std::string_view field) {
  std::vector<std::string> out;
  if (const auto* v = f.find(field)) {
    if (!v->is_array()) bad(field, "is not an array of strings");
    for (const auto& s : *v) {
      if (!s.is_string() || s.get_ref<const std::string&>().empty())
        bad(field, "holds something other than a non-empty string");
      out.push_back(s.get<std::string>());
    }
  }
  return out;
}

}  // namespace

namespace detail {

CredentialMaterial jwt_svid_config(const json& config, const SpiffeSources& sources) {
  const Fields f{config, "jwt_svid", {"spiffe_id"}};
  return jwt_svid_material(need_jwt(sources, "jwt_svid"), spiffe_id_text("spiffe_id", f.text("spiffe_id")));
}

CredentialMaterial spiffe_client_credentials_config(const json& config, const SpiffeSources& sources) {
  const Fields f{config,
                 "spiffe_client_credentials",
                 {"token_endpoint", "client_id", "assertion_audience", "spiffe_id", "client_assertion_type",
                  "authentication", "resource", "audience", "dpop"}};
  FederatedOAuth o = oauth_fields(f, OAuthGrant::client_credentials);
  const std::string auth = f.text("authentication", "client_assertion");
  if (auth == "tls_client_auth" || auth == "self_signed_tls_client_auth") {
    if (!sources.x509) bad("authentication", "'" + auth + "' needs an X.509-SVID source (SpiffeSources::x509)");
    for (const char* field : {"assertion_audience", "spiffe_id", "client_assertion_type"})
      if (f.find(field) != nullptr) bad(field, "is not used with authentication " + auth);
    if (o.client_id.empty()) bad("client_id", "is missing (mutual TLS client authentication names the client)");
    o.tls_client_certificate = sources.x509;
  } else if (auth == "client_assertion") {
    const std::string type = f.text("client_assertion_type", "jwt-bearer");
    if (type == "jwt-spiffe" || type == "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe")
      o.client_assertion_type = ClientAssertionType::jwt_spiffe;
    else if (type != "jwt-bearer" && type != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
      bad("client_assertion_type", "'" + bounded_excerpt(type, 80) + "' is not jwt-bearer or jwt-spiffe");
    const std::string audience = f.text("assertion_audience", o.token_endpoint);
    o.client_assertion = IdentityTokenSource::jwt_svid(need_jwt(sources, "spiffe_client_credentials"), audience,
                                                       spiffe_id_text("spiffe_id", f.text("spiffe_id")));
  } else {
    bad("authentication",
        "'" + bounded_excerpt(auth, 64) + "' is not client_assertion, tls_client_auth or self_signed_tls_client_auth");
  }
  return detail::make_federated_oauth(std::move(o), "spiffe_client_credentials");
}

CredentialMaterial spiffe_token_exchange_config(const json& config, const SpiffeSources& sources) {
  const Fields f{
      config,
      "spiffe_token_exchange",
      {"token_endpoint", "subject_audience", "audience", "resource", "spiffe_id", "requested_token_type", "dpop"}};
  FederatedOAuth o = oauth_fields(f, OAuthGrant::token_exchange);
  o.requested_token_type = f.text("requested_token_type");
  o.subject_token = IdentityTokenSource::jwt_svid(need_jwt(sources, "spiffe_token_exchange"),
                                                  f.text("subject_audience", o.token_endpoint),
                                                  spiffe_id_text("spiffe_id", f.text("spiffe_id")));
  return detail::make_federated_oauth(std::move(o), "spiffe_token_exchange");
}

CredentialMaterial jwt_bearer_grant_config(const json& config, const SpiffeSources& sources) {
  const Fields f{config,
                 "jwt_bearer_grant",
                 {"token_endpoint", "client_id", "token_file", "jwt_svid", "resource", "audience", "dpop"}};
  FederatedOAuth o = oauth_fields(f, OAuthGrant::jwt_bearer);
  o.assertion = identity_field(f, o.token_endpoint, sources);
  return detail::make_federated_oauth(std::move(o), "jwt_bearer_grant");
}

CredentialMaterial google_external_account_config(const json& config, const SpiffeSources& sources) {
  const Fields f{config,
                 "google_external_account",
                 {"credentials", "credentials_file", "allowed_urls", "allowed_universe_domains"}};
  GoogleExternalAccountOptions options;
  options.allowed_urls = string_list(f, "allowed_urls");
  options.allowed_universe_domains = string_list(f, "allowed_universe_domains");
  const auto* inline_value = f.find("credentials");
  const auto* file = f.find("credentials_file");
  if ((inline_value != nullptr) == (file != nullptr))
    bad("credentials", "give exactly one of it and 'credentials_file'");
  if (inline_value != nullptr) {
    if (!inline_value->is_object()) bad("credentials", "is not an object");
    return google_external_account(GoogleExternalAccount::from_json(inline_value->dump(), sources), options);
  }
  const RedactedString text = f.secret("credentials", true);
  return google_external_account(GoogleExternalAccount::from_json(text.reveal(), sources), options);
}

CredentialMaterial azure_workload_identity_config(const json& config, const SpiffeSources& sources) {
  const Fields f{
      config, "azure_workload_identity", {"client_id", "tenant_id", "authority_host", "token_file", "jwt_svid"}};
  AzureWorkloadIdentity c;
  c.client_id = text_or_env(f, "client_id", "AZURE_CLIENT_ID");
  if (c.client_id.empty()) bad("client_id", "is missing (give it or set AZURE_CLIENT_ID)");
  c.tenant_id = text_or_env(f, "tenant_id", "AZURE_TENANT_ID");
  if (c.tenant_id.empty()) bad("tenant_id", "is missing (give it or set AZURE_TENANT_ID)");
  c.authority_host = text_or_env(f, "authority_host", "AZURE_AUTHORITY_HOST", c.authority_host);
  c.assertion = identity_field(f, "api://AzureADTokenExchange", sources, "AZURE_FEDERATED_TOKEN_FILE");
  return azure_workload_identity(std::move(c));
}

CredentialMaterial aws_web_identity_config(const json& config, const SpiffeSources& sources) {
  const Fields f{
      config,
      "aws_web_identity",
      {"role_arn", "role_session_name", "token_file", "jwt_svid", "sts_endpoint", "region", "duration_seconds"}};
  AwsWebIdentity c;
  c.role_arn = text_or_env(f, "role_arn", "AWS_ROLE_ARN");
  if (c.role_arn.empty()) bad("role_arn", "is missing (give it or set AWS_ROLE_ARN)");
  c.role_session_name = text_or_env(f, "role_session_name", "AWS_ROLE_SESSION_NAME", c.role_session_name);
  c.region = text_or_env(f, "region", "AWS_REGION", text_or_env(f, "region", "AWS_DEFAULT_REGION"));
  c.sts_endpoint = text_or_env(f, "sts_endpoint", "AWS_ENDPOINT_URL_STS");
  if (auto d = f.seconds("duration_seconds")) c.duration = std::chrono::seconds{*d};
  c.web_identity_token = identity_field(f, "sts.amazonaws.com", sources, "AWS_WEB_IDENTITY_TOKEN_FILE");
  return aws_web_identity(std::move(c));
}

}  // namespace detail

namespace {

// Whether `value` holds a `jwt_svid` member anywhere at the first two levels.
bool mentions_jwt_svid(const json& value) {
  if (!value.is_object()) return false;
  if (value.contains("jwt_svid")) return true;
  for (const auto& [name, member] : value.items()) {
    (void)name;
    if (member.is_object() && member.contains("jwt_svid")) return true;
    if (member.is_object())
      for (const auto& [inner_name, inner] : member.items()) {
        (void)inner_name;
        if (inner.is_object() && inner.contains("jwt_svid")) return true;
      }
  }
  return false;
}

}  // namespace

GoogleExternalAccount GoogleExternalAccount::from_json(std::string_view text, const SpiffeSources& sources) {
  const auto j = detail::parse_bounded_json(text);
  if (!j.is_object()) bad("credentials", "is not a JSON object");
  const Fields f{j,
                 "external_account",
                 {"type", "audience", "subject_token_type", "token_url", "service_account_impersonation_url",
                  "service_account_impersonation", "credential_source", "quota_project_id",
                  "workforce_pool_user_project", "universe_domain", "token_info_url", "client_id", "client_secret"}};
  if (f.text("type") != "external_account") bad("type", "is not external_account");
  if (f.find("client_id") != nullptr || f.find("client_secret") != nullptr)
    bad("client_id", "and client_secret (workforce pool client authentication) are not supported");
  GoogleExternalAccount a;
  a.audience = f.text("audience", {}, true);
  a.subject_token_type = f.text("subject_token_type", {}, true);
  a.token_url = f.text("token_url", a.token_url);
  a.service_account_impersonation_url = f.text("service_account_impersonation_url");
  a.workforce_pool_user_project = f.text("workforce_pool_user_project");
  a.universe_domain = f.text("universe_domain", a.universe_domain);
  if (const auto* sa = f.find("service_account_impersonation")) {
    if (!sa->is_object()) bad("service_account_impersonation", "is not an object");
    const Fields inner{*sa, "service_account_impersonation", {"token_lifetime_seconds"}};
    if (auto s = inner.seconds("token_lifetime_seconds")) a.token_lifetime = std::chrono::seconds{*s};
  }
  const auto* source = f.find("credential_source");
  if (source == nullptr || !source->is_object()) bad("credential_source", "is missing or not an object");
  const Fields cs{*source,
                  "credential_source",
                  {"file", "url", "headers", "format", "jwt_svid", "environment_id", "executable",
                   "regional_cred_verification_url", "region_url", "imdsv2_session_token_url", "certificate"}};
  for (const char* unsupported : {"environment_id", "executable", "certificate"})
    if (cs.find(unsupported) != nullptr)
      bad(std::string{"credential_source."} + unsupported, "is not supported (use file, url or jwt_svid)");
  TokenFormat format = TokenFormat::text;
  std::string field;
  if (const auto* fmt = cs.find("format")) {
    if (!fmt->is_object()) bad("credential_source.format", "is not an object");
    const Fields ff{*fmt, "format", {"type", "subject_token_field_name"}};
    const std::string type = ff.text("type", "text");
    if (type == "json") {
      format = TokenFormat::json;
      field = ff.text("subject_token_field_name", {}, true);
    } else if (type != "text") {
      bad("credential_source.format.type", "is not text or json");
    }
  }
  const int given = (cs.find("file") != nullptr) + (cs.find("url") != nullptr) + (cs.find("jwt_svid") != nullptr);
  if (given != 1) bad("credential_source", "needs exactly one of file, url and jwt_svid");
  if (cs.find("headers") != nullptr && cs.find("url") == nullptr) bad("credential_source.headers", "is for url only");
  if (cs.find("file") != nullptr) {
    a.credential_source = IdentityTokenSource::file(cs.text("file"), format, field);
  } else if (cs.find("url") != nullptr) {
    std::vector<http::Header> headers;
    if (const auto* h = cs.find("headers")) {
      if (!h->is_object()) bad("credential_source.headers", "is not an object of strings");
      for (const auto& [name, value] : h->items()) {
        if (!value.is_string()) bad("credential_source.headers", "holds a value that is not a string");
        headers.push_back({name, value.get<std::string>()});
      }
    }
    a.credential_source = IdentityTokenSource::url(cs.text("url"), std::move(headers), format, field);
  } else {
    if (cs.find("format") != nullptr) bad("credential_source.format", "is not used with jwt_svid");
    a.credential_source = svid_object(*cs.find("jwt_svid"), "credential_source.jwt_svid", a.audience, sources);
  }
  return a;
}

bool is_spiffe_config(const nlohmann::json& config) {
  if (!config.is_object()) return false;
  auto kind = config.find("kind");
  if (kind == config.end() || !kind->is_string()) return false;
  const detail::MaterialKind* k = detail::find_material_kind(kind->get_ref<const std::string&>());
  if (k == nullptr) return false;
  return k->spiffe == detail::SpiffeUse::always ||
         (k->spiffe == detail::SpiffeUse::when_configured && mentions_jwt_svid(config));
}

bool needs_x509_source(const nlohmann::json& config) {
  if (!config.is_object()) return false;
  auto auth = config.find("authentication");
  return auth != config.end() && auth->is_string() &&
         (*auth == "tls_client_auth" || *auth == "self_signed_tls_client_auth");
}

}  // namespace awaken
