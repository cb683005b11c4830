// CredentialMaterial::from_config: every built-in material from one JSON object.
#include <awaken/credentials/gce_metadata.hpp>
#include <awaken/credentials/google_service_account.hpp>
#include <awaken/credentials/material.hpp>
#include <awaken/credentials/oauth_client_credentials.hpp>
#include <awaken/error.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>

namespace awaken {
namespace {

constexpr std::size_t max_secret_file_bytes = 1 << 20;

[[noreturn]] void bad(std::string_view field, const std::string& why) {
  throw_error(credential_errc::invalid_material, "credential config: '" + std::string{field} + "' " + why);
}

// Wipes a string that held a secret before it is freed.
struct Wiped {
  std::string text;
  ~Wiped() { OPENSSL_cleanse(text.data(), text.size()); }
};

// The members of one config object, checked against the names its kind accepts.
class Fields {
 public:
  Fields(const nlohmann::json& config, std::string_view kind, std::initializer_list<std::string_view> allowed)
      : config_(config) {
    for (const auto& [name, value] : config.items()) {
      (void)value;
      if (name != "kind" && std::find(allowed.begin(), allowed.end(), name) == allowed.end())
        bad(name, "is not a field of kind " + std::string{kind});
    }
  }

  const nlohmann::json* find(std::string_view name) const {
    auto it = config_.find(name);
    return it == config_.end() ? nullptr : &*it;
  }

  std::string text(std::string_view name, std::string fallback = {}, bool required = false) const {
    const auto* v = find(name);
    if (v == nullptr) {
      if (required) bad(name, "is missing");
      return fallback;
    }
    if (!v->is_string()) bad(name, "is not a string");
    if (v->get_ref<const std::string&>().empty()) bad(name, "is empty");
    return v->get<std::string>();
  }

  std::optional<long long> seconds(std::string_view name) const {
    const auto* v = find(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number_integer() || v->get<long long>() <= 0) bad(name, "is not a positive whole number of seconds");
    return v->get<long long>();
  }

  // A secret given inline, as `<name>_file` or as `<name>_env`; empty when none is given and it
  // is not required. `object_ok`: an inline JSON object stands for its own text.
  RedactedString secret(std::string_view name, bool required, bool object_ok = false) const {
    const std::string file_name = std::string{name} + "_file";
    const std::string env_name = std::string{name} + "_env";
    const auto* inline_value = find(name);
    const auto* file = find(file_name);
    const auto* env = find(env_name);
    const int given = (inline_value != nullptr) + (file != nullptr) + (env != nullptr);
    if (given > 1) bad(name, "is given more than once: use one of '" + std::string{name} + "', '" + file_name + "', '" + env_name + "'");
    if (given == 0) {
      if (required) bad(name, "is missing (or give '" + file_name + "' or '" + env_name + "')");
      return {};
    }
    if (inline_value != nullptr) {
      if (object_ok && inline_value->is_object()) return RedactedString{Wiped{inline_value->dump()}.text};
      if (!inline_value->is_string()) bad(name, object_ok ? "is neither a string nor an object" : "is not a string");
      if (inline_value->get_ref<const std::string&>().empty()) bad(name, "is empty");
      return RedactedString{std::string_view{inline_value->get_ref<const std::string&>()}};
    }
    if (file != nullptr) return read_file(file_name, text(file_name));
    const std::string variable = text(env_name);
    const char* value = std::getenv(variable.c_str());
    if (value == nullptr || *value == '\0') bad(env_name, "names the environment variable " + variable + ", which is not set or empty");
    return RedactedString{std::string_view{value}};
  }

 private:
  static RedactedString read_file(std::string_view field, const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    if (!in) bad(field, "cannot open '" + bounded_excerpt(path, 200) + "': " + std::strerror(errno));
    Wiped contents;
    contents.text.resize(max_secret_file_bytes + 1);
    in.read(contents.text.data(), static_cast<std::streamsize>(contents.text.size()));
    if (in.bad()) bad(field, "cannot read '" + bounded_excerpt(path, 200) + "'");
    const auto n = static_cast<std::size_t>(in.gcount());
    if (n > max_secret_file_bytes) bad(field, "names a file larger than 1 MiB");
    contents.text.resize(n);
    if (!contents.text.empty() && contents.text.back() == '\n') contents.text.pop_back();
    if (!contents.text.empty() && contents.text.back() == '\r') contents.text.pop_back();
    if (contents.text.empty()) bad(field, "names an empty file");
    return RedactedString{std::string_view{contents.text}};
  }

  const nlohmann::json& config_;
};

CredentialMaterial bearer(const nlohmann::json& config) {
  const Fields f{config, "bearer", {"token", "token_file", "token_env", "lifetime_seconds"}};
  auto token = f.secret("token", true);
  if (auto lifetime = f.seconds("lifetime_seconds"))
    return CredentialMaterial::static_bearer(std::move(token), std::chrono::seconds{*lifetime});
  return CredentialMaterial::static_bearer(std::move(token));
}

CredentialMaterial google(const nlohmann::json& config) {
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

CredentialMaterial client_credentials(const nlohmann::json& config) {
  const Fields f{config,
                 "oauth_client_credentials",
                 {"token_endpoint", "client_id", "authentication", "client_secret", "client_secret_file",
                  "client_secret_env", "private_key", "private_key_file", "private_key_env", "signing_algorithm",
                  "key_id", "assertion_lifetime_seconds"}};
  OAuthClientCredentials c;
  c.token_endpoint = f.text("token_endpoint", {}, true);
  c.client_id = f.text("client_id", {}, true);
  const std::string auth = f.text("authentication", "client_secret_basic");
  if (auth == "client_secret_basic") c.authentication = ClientAuthentication::client_secret_basic;
  else if (auth == "client_secret_post") c.authentication = ClientAuthentication::client_secret_post;
  else if (auth == "private_key_jwt") c.authentication = ClientAuthentication::private_key_jwt;
  else bad("authentication", "'" + bounded_excerpt(auth, 64) + "' is not client_secret_basic, client_secret_post or private_key_jwt");
  const bool with_key = c.authentication == ClientAuthentication::private_key_jwt;
  c.client_secret = f.secret("client_secret", !with_key);
  c.private_key = f.secret("private_key", with_key);
  const std::string alg = f.text("signing_algorithm", "RS256");
  if (auto parsed = jose::parse_algorithm(alg)) c.signing_algorithm = *parsed;
  else bad("signing_algorithm", "'" + bounded_excerpt(alg, 32) + "' is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512");
  c.key_id = f.text("key_id");
  if (auto lifetime = f.seconds("assertion_lifetime_seconds")) c.assertion_lifetime = std::chrono::seconds{*lifetime};
  return oauth_client_credentials(std::move(c));
}

CredentialMaterial metadata(const nlohmann::json& config) {
  const Fields f{config, "gce_metadata", {"base_url", "account"}};
  GceMetadataOptions options;
  options.base_url = f.text("base_url", options.base_url);
  options.account = f.text("account", options.account);
  return gce_metadata(std::move(options));
}

}  // namespace

CredentialMaterial CredentialMaterial::from_config(const nlohmann::json& config) {
  if (!config.is_object()) throw_error(credential_errc::invalid_material, "credential config: not a JSON object");
  auto kind = config.find("kind");
  if (kind == config.end()) bad("kind", "is missing");
  if (!kind->is_string()) bad("kind", "is not a string");
  const auto& name = kind->get_ref<const std::string&>();
  if (name == "bearer") return bearer(config);
  if (name == "google_service_account") return google(config);
  if (name == "oauth_client_credentials") return client_credentials(config);
  if (name == "gce_metadata") return metadata(config);
  bad("kind", "'" + bounded_excerpt(name, 64) +
                  "' is not one of bearer, google_service_account, oauth_client_credentials, gce_metadata");
}

}  // namespace awaken
