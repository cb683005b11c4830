// The HTTP minters: OAuth 2.0 client credentials (shared secret or private_key_jwt) and the GCE
// metadata server.
#include <awaken/credentials/gce_metadata.hpp>
#include <awaken/credentials/oauth_client_credentials.hpp>
#include <awaken/error.hpp>
#include <awaken/jose/jws.hpp>

#include <optional>

#include <nlohmann/json.hpp>

#include "credentials/minters/provider_context.hpp"
#include "credentials/minters/token_request.hpp"

namespace awaken {
namespace {

constexpr std::string_view assertion_type = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

[[noreturn]] void refuse(const std::string& why) {
  throw_error(credential_errc::invalid_material, "oauth_client_credentials: " + why);
}

class ClientCredentialsMinter final : public Minter {
 public:
  explicit ClientCredentialsMinter(OAuthClientCredentials config)
      : origin_(detail::check_endpoint(config.token_endpoint, "oauth_client_credentials: token_endpoint")),
        config_(std::move(config)),
        dpop_(config_.dpop ? std::make_shared<const detail::DpopBinding>() : nullptr) {
    if (config_.client_id.empty()) refuse("client_id is empty");
    for (const auto& r : config_.resources)
      if (!detail::is_absolute_uri(r))
        refuse("resource '" + bounded_excerpt(r, 100) + "' is not an absolute URI without a fragment");
    if (config_.authentication != ClientAuthentication::private_key_jwt) {
      if (config_.client_secret.empty()) refuse("client_secret is empty");
      if (!config_.private_key.empty()) refuse("private_key is set but the authentication is not private_key_jwt");
      return;
    }
    if (!config_.client_secret.empty()) refuse("client_secret is set but the authentication is private_key_jwt");
    if (config_.private_key.empty()) refuse("private_key is empty (private_key_jwt needs one)");
    if (config_.assertion_lifetime < std::chrono::seconds{1} || config_.assertion_lifetime > std::chrono::minutes{10})
      refuse("assertion_lifetime is not between 1 s and 10 min");
    try {
      key_.emplace(jose::PrivateKey::from_pem(config_.private_key));
    } catch (const Error& e) {
      refuse("private_key: " + e.code().message());
    }
    if (!key_->supports(config_.signing_algorithm))
      refuse("private_key does not fit signing_algorithm " + std::string{jose::to_string(config_.signing_algorithm)});
    config_.private_key = RedactedString{};  // parsed once; the PEM is not kept
  }

  std::string_view kind_label() const noexcept override { return "oauth_client_credentials"; }

  asio::awaitable<Token> mint(std::string_view scope, const MintContext& ctx) const override {
    if (!dpop_) {
      http::HttpRequest request = make_request(scope, ctx);  // named: GCC 12 and temporaries in co_await
      co_return co_await detail::request_token(std::move(request), ctx, origin_);
    }
    // With DPoP a nonce challenge earns a retry, which needs a fresh client assertion.
    detail::RequestBuilder build = [this, s = std::string{scope}, &ctx]() -> asio::awaitable<http::HttpRequest> {
      co_return make_request(s, ctx);
    };
    co_return co_await detail::request_token(std::move(build), ctx, origin_, *dpop_);
  }

 private:
  http::HttpRequest make_request(std::string_view scope, const MintContext& ctx) const {
    std::string form = "grant_type=client_credentials";
    std::string authorization;
    if (!scope.empty()) form += "&scope=" + detail::form_encode(scope);
    for (const auto& r : config_.resources) form += "&resource=" + detail::form_encode(r);
    if (!config_.audience.empty()) form += "&audience=" + detail::form_encode(config_.audience);
    switch (config_.authentication) {
      case ClientAuthentication::client_secret_basic:
        authorization = detail::basic_authorization(config_.client_id, config_.client_secret.reveal());
        break;
      case ClientAuthentication::client_secret_post:
        form += "&client_id=" + detail::form_encode(config_.client_id) +
                "&client_secret=" + detail::form_encode(config_.client_secret.reveal());
        break;
      case ClientAuthentication::private_key_jwt:
        form += "&client_id=" + detail::form_encode(config_.client_id) +
                "&client_assertion_type=" + std::string{assertion_type} + "&client_assertion=" + client_assertion(ctx);
        break;
    }
    return detail::form_request(config_.token_endpoint, std::move(form), std::move(authorization));
  }

  // RFC 7523 section 3 client assertion; base64url needs no form encoding.
  std::string client_assertion(const MintContext& ctx) const {
    std::string jti;
    try {
      jti = jose::random_base64url(16);
    } catch (const Error&) {
      throw_error(jose_errc::signing_failed,
                  detail::provider_context(ctx.provider_id) + ": client assertion: no random bytes for jti");
    }
    const auto now = detail::unix_seconds(ctx);
    const nlohmann::json claims{{"iss", config_.client_id},
                                {"sub", config_.client_id},
                                {"aud", config_.token_endpoint},
                                {"jti", jti},
                                {"iat", now},
                                {"exp", now + config_.assertion_lifetime.count()}};
    return detail::sign_assertion(config_.signing_algorithm, config_.key_id, claims, *key_, ctx, "client assertion");
  }

  std::string origin_;
  OAuthClientCredentials config_;
  std::shared_ptr<const detail::DpopBinding> dpop_;
  std::optional<jose::PrivateKey> key_;
};

class GceMetadataMinter final : public Minter {
 public:
  explicit GceMetadataMinter(GceMetadataOptions options) : options_(std::move(options)) {
    while (!options_.base_url.empty() && options_.base_url.back() == '/') options_.base_url.pop_back();
    origin_ = detail::check_endpoint(options_.base_url + "/", "gce_metadata: base_url", true);
    if (options_.account.empty() || options_.account.find_first_of("/?#%\\ ") != std::string::npos ||
        options_.account == "." || options_.account == "..")
      throw_error(credential_errc::invalid_material, "gce_metadata: account is empty or not a plain name");
  }

  std::string_view kind_label() const noexcept override { return "gce_metadata"; }

  asio::awaitable<Token> mint(std::string_view scope, const MintContext& ctx) const override {
    http::HttpRequest request;
    request.url = options_.base_url + "/computeMetadata/v1/instance/service-accounts/" + options_.account + "/token";
    if (!scope.empty()) {
      std::string scopes{scope};
      for (char& c : scopes)
        if (c == ' ') c = ',';
      request.url += "?scopes=" + detail::form_encode(scopes);
    }
    request.headers.push_back({"metadata-flavor", "Google"});
    co_return co_await detail::request_token(std::move(request), ctx, origin_);
  }

 private:
  GceMetadataOptions options_;
  std::string origin_;
};

}  // namespace

CredentialMaterial oauth_client_credentials(OAuthClientCredentials config) {
  return CredentialMaterial::from_minter(std::make_shared<const ClientCredentialsMinter>(std::move(config)));
}

CredentialMaterial gce_metadata(GceMetadataOptions options) {
  return CredentialMaterial::from_minter(std::make_shared<const GceMetadataMinter>(std::move(options)));
}

}  // namespace awaken
