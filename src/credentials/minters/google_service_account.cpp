// Google service accounts: key file parsing, the token URI pin, the JWT-bearer assertion.
#include <awaken/credentials/google_service_account.hpp>
#include <awaken/error.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/jose/keys.hpp>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/bounded_json.hpp"
#include "core/url_text.hpp"
#include "core/wipe.hpp"
#include "credentials/minters/provider_context.hpp"
#include "credentials/minters/token_request.hpp"

namespace awaken {
namespace {

constexpr std::chrono::seconds assertion_lifetime{3600};

[[noreturn]] void refuse(const std::string& why) {
  throw_error(credential_errc::invalid_material, "google service account: " + why);
}

std::string field(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end()) refuse(std::string{"'"} + name + "' is missing");
  if (!it->is_string()) refuse(std::string{"'"} + name + "' is not a string");
  if (it->get_ref<const std::string&>().empty()) refuse(std::string{"'"} + name + "' is empty");
  return it->get<std::string>();
}

class GoogleServiceAccountMinter final : public Minter {
 public:
  GoogleServiceAccountMinter(GoogleServiceAccount account, GoogleServiceAccountOptions options)
      : account_(std::move(account)), key_(load_key(account_.private_key)) {
    const auto& uri = account_.token_uri;
    const bool allowed = uri == GoogleServiceAccount::google_token_uri ||
                         std::find(options.allowed_token_uris.begin(), options.allowed_token_uris.end(), uri) !=
                             options.allowed_token_uris.end();
    if (!allowed)
      refuse("token_uri '" + bounded_excerpt(detail::url_origin(uri), 200) + "...' is not " +
             GoogleServiceAccount::google_token_uri + " nor an allowed token URI");
    origin_ = detail::check_endpoint(uri, "google service account: token_uri");
    if (account_.client_email.empty()) refuse("client_email is empty");
  }

  std::string_view kind_label() const noexcept override { return "google_service_account"; }

  asio::awaitable<Token> mint(std::string_view scope, const MintContext& ctx) const override {
    const auto now = detail::unix_seconds(ctx);
    const nlohmann::json claims{{"iss", account_.client_email},
                                {"scope", std::string{scope}},
                                {"aud", account_.token_uri},
                                {"iat", now},
                                {"exp", now + assertion_lifetime.count()}};
    std::string form =
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" +
        detail::sign_assertion(jose::Algorithm::rs256, account_.private_key_id, claims, key_, ctx, "RS256 assertion");
    co_return co_await detail::post_form(account_.token_uri, std::move(form), {}, ctx, origin_);
  }

 private:
  static jose::PrivateKey load_key(const RedactedString& pem) {
    try {
      auto key = jose::PrivateKey::from_pem(pem);
      if (!key.supports(jose::Algorithm::rs256)) refuse("private_key is not an RSA key");
      return key;
    } catch (const Error& e) {
      if (e.code() == credential_errc::invalid_material) throw;
      refuse("private_key: " + e.code().message());
    }
  }

  GoogleServiceAccount account_;
  jose::PrivateKey key_;
  std::string origin_;
};

}  // namespace

GoogleServiceAccount GoogleServiceAccount::from_json(const RedactedString& json) {
  auto j = detail::parse_bounded_json(json.reveal());
  const detail::WipeOnExit wipe{j};
  if (j.is_discarded()) refuse("the key file is not JSON (or nests deeper than 32)");
  if (!j.is_object()) refuse("the key file is not a JSON object");
  if (field(j, "type") != "service_account") refuse("'type' is not service_account");
  GoogleServiceAccount out;
  out.client_email = field(j, "client_email");
  out.private_key_id = field(j, "private_key_id");
  {
    auto it = j.find("private_key");
    if (it == j.end() || !it->is_string() || it->get_ref<const std::string&>().empty())
      refuse("'private_key' is missing, empty or not a string");
    const auto& pem = it->get_ref<const std::string&>();
    if (pem.find("-----BEGIN") == std::string::npos) refuse("'private_key' does not look like a PEM block");
    out.private_key = RedactedString{std::string_view{pem}};
  }
  out.token_uri = field(j, "token_uri");
  if (auto p = j.find("project_id"); p != j.end() && p->is_string()) out.project_id = p->get<std::string>();
  return out;
}

CredentialMaterial google_service_account(GoogleServiceAccount key, GoogleServiceAccountOptions options) {
  return CredentialMaterial::from_minter(
      std::make_shared<const GoogleServiceAccountMinter>(std::move(key), std::move(options)));
}

}  // namespace awaken
