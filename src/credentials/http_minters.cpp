// The HTTP minters: OAuth 2.0 client credentials and the GCE metadata server.
#include <awaken/credentials/gce_metadata.hpp>
#include <awaken/credentials/oauth_client_credentials.hpp>
#include <awaken/error.hpp>

#include "credentials/token_endpoint.hpp"

namespace awaken {
namespace {

class ClientCredentialsMinter final : public Minter {
 public:
  explicit ClientCredentialsMinter(OAuthClientCredentials config)
      : origin_(detail::check_endpoint(config.token_endpoint, "oauth_client_credentials: token_endpoint")),
        config_(std::move(config)) {
    if (config_.client_id.empty()) throw_error(credential_errc::invalid_material, "oauth_client_credentials: client_id is empty");
    if (config_.client_secret.empty())
      throw_error(credential_errc::invalid_material, "oauth_client_credentials: client_secret is empty");
  }

  std::string_view kind_label() const noexcept override { return "oauth_client_credentials"; }

  asio::awaitable<Token> mint(std::string_view scope, const MintContext& ctx) const override {
    http::HttpRequest request;
    request.method = "POST";
    request.url = config_.token_endpoint;
    request.headers.push_back({"content-type", "application/x-www-form-urlencoded"});
    request.headers.push_back({"accept", "application/json"});
    request.body = "grant_type=client_credentials";
    if (!scope.empty()) request.body += "&scope=" + detail::form_encode(scope);
    if (config_.authentication == ClientAuthentication::client_secret_basic) {
      request.headers.push_back(
          {"authorization", detail::basic_authorization(config_.client_id, config_.client_secret.reveal())});
    } else {
      request.body += "&client_id=" + detail::form_encode(config_.client_id) +
                      "&client_secret=" + detail::form_encode(config_.client_secret.reveal());
    }
    co_return co_await detail::request_token(std::move(request), ctx, origin_);
  }

 private:
  std::string origin_;
  OAuthClientCredentials config_;
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
