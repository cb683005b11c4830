// Workload identity federation to the clouds: Google external_account (STS exchange, then
// service account impersonation), Azure workload identity, AWS AssumeRoleWithWebIdentity.
#include <awaken/credentials/cloud_federation.hpp>
#include <awaken/error.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "core/wipe.hpp"
#include "credentials/federation/federation_detail.hpp"
#include "credentials/federation/federation_parsers.hpp"
#include "credentials/minters/provider_context.hpp"
#include "credentials/minters/token_request.hpp"

namespace awaken {
namespace {

using detail::provider_context;

constexpr std::string_view cloud_platform = "https://www.googleapis.com/auth/cloud-platform";

[[noreturn]] void refuse(std::string_view what, const std::string& why) {
  throw_error(credential_errc::invalid_material, std::string{what} + ": " + why);
}

std::string lower(std::string_view s) {
  std::string out{s};
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Whether `host` is `<service>.<domain>`, `<service>.<label>.<domain>`, `<label>-<service>.<domain>`
// or `<service>-<label>.p.<domain>`: Google's global, regional and private service names.
bool google_service_host(std::string_view host, std::string_view service, std::string_view domain) {
  const std::string suffix = "." + std::string{domain};
  if (host.size() <= suffix.size() || host.substr(host.size() - suffix.size()) != suffix) return false;
  const std::string_view name = host.substr(0, host.size() - suffix.size());
  auto label = [](std::string_view l) {
    if (l.empty() || l.size() > 63) return false;
    for (char c : l)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-')) return false;
    return true;
  };
  if (name == service) return true;
  if (name.rfind(std::string{service} + ".", 0) == 0) return label(name.substr(service.size() + 1));
  if (name.size() > service.size() + 1 && name.substr(name.size() - service.size() - 1) == "-" + std::string{service})
    return label(name.substr(0, name.size() - service.size() - 1));
  if (name.size() > 2 && name.substr(name.size() - 2) == ".p" && name.rfind(std::string{service} + "-", 0) == 0)
    return label(name.substr(service.size() + 1, name.size() - 2 - service.size() - 1));
  return false;
}

// A Google endpoint: an https URL on one of Google's hosts for `service`, or one allowed exactly.
void check_google_url(const std::string& url, std::string_view field, std::string_view service,
                      const std::string& domain, const std::vector<std::string>& allowed) {
  const std::string what = "google_external_account: " + std::string{field};
  for (const auto& a : allowed)
    if (a == url) {
      detail::check_endpoint(url, what);
      return;
    }
  const std::string origin = detail::check_endpoint(url, what);
  const std::string host = lower(origin.rfind("https://", 0) == 0 ? origin.substr(8) : "");
  const std::string bare = host.substr(0, host.find(':'));
  if (host.empty() || (host != bare && host != bare + ":443") || !google_service_host(bare, service, domain))
    refuse(what, "'" + bounded_excerpt(origin, 200) + "' is not a " + std::string{service} + " host of " + domain +
                     " (add it to allowed_urls to use it)");
}

Token expiring_at(RedactedString bearer, std::chrono::system_clock::time_point at, const MintContext& ctx,
                  std::string type, std::shared_ptr<const AwsCredentials> aws = nullptr) {
  const auto left = std::min(std::chrono::duration_cast<std::chrono::seconds>(at - ctx.clock.system_now()),
                             detail::max_token_lifetime);
  return Token{std::move(bearer), ctx.clock.system_now() + left,
               ctx.clock.steady_now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(left),
               std::move(type), std::move(aws)};
}

class GoogleExternalAccountMinter final : public Minter {
 public:
  GoogleExternalAccountMinter(GoogleExternalAccount account, GoogleExternalAccountOptions options)
      : account_(std::move(account)) {
    constexpr std::string_view what = "google_external_account";
    if (!account_.credential_source) refuse(what, "credential_source is missing");
    if (account_.audience.empty()) refuse(what, "audience is empty");
    if (account_.subject_token_type.empty()) refuse(what, "subject_token_type is empty");
    // The file names its universe, but the file is what the host check guards against: only
    // googleapis.com, or a domain the caller allows.
    if (account_.universe_domain != "googleapis.com" &&
        std::find(options.allowed_universe_domains.begin(), options.allowed_universe_domains.end(),
                  account_.universe_domain) == options.allowed_universe_domains.end())
      refuse(what, "universe_domain '" + bounded_excerpt(account_.universe_domain, 100) +
                       "' is not googleapis.com (add it to allowed_universe_domains to use it)");
    check_google_url(account_.token_url, "token_url", "sts", account_.universe_domain, options.allowed_urls);
    sts_origin_ = detail::check_endpoint(account_.token_url, what);
    if (!account_.service_account_impersonation_url.empty()) {
      check_google_url(account_.service_account_impersonation_url, "service_account_impersonation_url",
                       "iamcredentials", account_.universe_domain, options.allowed_urls);
      iam_origin_ = detail::check_endpoint(account_.service_account_impersonation_url, what);
    }
    if (account_.token_lifetime &&
        (*account_.token_lifetime < std::chrono::seconds{600} || *account_.token_lifetime > std::chrono::hours{12}))
      refuse(what, "token_lifetime_seconds is not between 600 and 43200");
  }

  std::string_view kind_label() const noexcept override { return "google_external_account"; }

  asio::awaitable<Token> mint(std::string_view scope, const MintContext& ctx) const override {
    // Named, not conditional temporaries in the co_await: GCC 12 destroys those twice.
    std::string scopes{scope};
    if (scopes.empty()) scopes = cloud_platform;
    const bool impersonate = !account_.service_account_impersonation_url.empty();
    std::string sts_scope = scopes;
    if (impersonate) sts_scope = cloud_platform;
    Token sts = co_await exchange(sts_scope, ctx);
    if (!impersonate) co_return sts;
    co_return co_await impersonation(sts, scopes, ctx);
  }

 private:
  asio::awaitable<Token> exchange(const std::string& scope, const MintContext& ctx) const {
    const RedactedString subject = co_await account_.credential_source.fetch(ctx);
    detail::SecretForm form;
    form.add("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange");
    form.add("audience", account_.audience);
    form.add("scope", scope);
    form.add("requested_token_type", "urn:ietf:params:oauth:token-type:access_token");
    form.add("subject_token_type", account_.subject_token_type);
    if (!account_.workforce_pool_user_project.empty())
      form.add("options", nlohmann::json{{"userProject", account_.workforce_pool_user_project}}.dump());
    form.add("subject_token", subject.reveal());
    co_return co_await detail::post_form(account_.token_url, form.text(), {}, ctx, sts_origin_);
  }

  asio::awaitable<Token> impersonation(const Token& sts, const std::string& scopes, const MintContext& ctx) const {
    nlohmann::json body{{"scope", detail::split_words(scopes)}};
    if (account_.token_lifetime) body["lifetime"] = std::to_string(account_.token_lifetime->count()) + "s";
    http::HttpRequest request;
    request.method = "POST";
    request.url = account_.service_account_impersonation_url;
    request.headers.push_back({"content-type", "application/json"});
    std::string authorization;  // built in place: the STS token is not left in a freed buffer
    authorization.reserve(7 + sts.bearer().size());
    authorization += "Bearer ";
    authorization += sts.bearer().reveal();
    request.headers.push_back({"authorization", std::move(authorization)});
    request.body = body.dump();
    const std::string where = "service account impersonation " + iam_origin_;  // named for GCC 12
    http::HttpResponse response = co_await detail::send_token_request(
        std::move(request), ctx, where, [](int status, std::string_view text) -> detail::Refusal {
          return {detail::is_transient_status(status), ErrorDetails{status, detail::google_error_message(text)}};
        });
    const detail::WipeOnExit wipe{response.body};
    std::string why;
    auto token = detail::parse_impersonation_response(response.body, why);
    if (!token)
      throw_error(credential_errc::transient_upstream,
                  provider_context(ctx.provider_id) + ": service account impersonation " + iam_origin_ + ": " + why);
    if (token->expire_time <= ctx.clock.system_now())
      throw_error(credential_errc::transient_upstream, provider_context(ctx.provider_id) +
                                                           ": service account impersonation " + iam_origin_ +
                                                           ": the token has already expired");
    co_return expiring_at(std::move(token->access_token), token->expire_time, ctx, "Bearer");
  }

  GoogleExternalAccount account_;
  std::string sts_origin_;
  std::string iam_origin_;
};

// AWS names: a role ARN (arn:PARTITION:iam::ACCOUNT:role/PATH/NAME) and a session name.
bool aws_name_chars(std::string_view s, std::string_view extra) {
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || extra.find(c) != std::string_view::npos)) return false;
  return true;
}

bool valid_role_arn(std::string_view arn) {
  if (arn.size() > 2048 || arn.rfind("arn:", 0) != 0) return false;
  const auto iam = arn.find(":iam::");
  if (iam == std::string_view::npos || iam == 4 || !aws_name_chars(arn.substr(4, iam - 4), "-")) return false;
  const std::string_view rest = arn.substr(iam + 6);
  if (rest.size() < 19 || rest.substr(12, 6) != ":role/") return false;
  for (char c : rest.substr(0, 12))
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  // role/[PATH/]NAME: a name of 1 to 64 characters after an optional path.
  const std::string_view path_and_name = rest.substr(18);
  const std::string_view name = path_and_name.substr(path_and_name.rfind('/') + 1);
  return !name.empty() && name.size() <= 64 && aws_name_chars(path_and_name, "_+=,.@/-") &&
         path_and_name.find("//") == std::string_view::npos && path_and_name.front() != '/';
}

detail::Refusal aws_refusal(int status, std::string_view body) {
  const detail::AwsStsAnswer answer = detail::parse_aws_sts_response(body);
  ErrorDetails details{status, {}};
  if (!answer.error_code.empty()) {
    details.oauth_error = answer.error_code;
    details.oauth_error_description = answer.error_message;
    details.server_message = bounded_excerpt(answer.error_code + ": " + answer.error_message, 256);
    return {detail::is_transient_status(status) || detail::is_transient_aws_error(answer.error_code),
            std::move(details)};
  }
  details.server_message = bounded_excerpt(body, 256);
  return {detail::is_transient_status(status), std::move(details)};
}

class AwsWebIdentityMinter final : public Minter {
 public:
  explicit AwsWebIdentityMinter(AwsWebIdentity config) : config_(std::move(config)) {
    constexpr std::string_view what = "aws_web_identity";
    if (!config_.web_identity_token) refuse(what, "web_identity_token is missing");
    if (!valid_role_arn(config_.role_arn))
      refuse(what,
             "role_arn '" + bounded_excerpt(config_.role_arn, 200) + "' is not arn:PARTITION:iam::ACCOUNT:role/NAME");
    if (config_.role_session_name.size() < 2 || config_.role_session_name.size() > 64 ||
        !aws_name_chars(config_.role_session_name, "_+=,.@-"))
      refuse(what, "role_session_name is not 2 to 64 of [A-Za-z0-9_+=,.@-]");
    if (config_.duration < std::chrono::seconds{900} || config_.duration > std::chrono::hours{12})
      refuse(what, "duration is not between 900 s and 12 h");
    if (config_.sts_endpoint.empty()) {
      if (!config_.region.empty() && !aws_name_chars(config_.region, "-"))
        refuse(what, "region '" + bounded_excerpt(config_.region, 64) + "' is not a region name");
      // China's regions have a domain of their own.
      const bool china = config_.region.rfind("cn-", 0) == 0;
      config_.sts_endpoint = config_.region.empty()
                                 ? "https://sts.amazonaws.com/"
                                 : "https://sts." + config_.region + ".amazonaws.com" + (china ? ".cn/" : "/");
    }
    origin_ = detail::check_endpoint(config_.sts_endpoint, "aws_web_identity: sts_endpoint");
  }

  std::string_view kind_label() const noexcept override { return "aws_web_identity"; }

  asio::awaitable<Token> mint(std::string_view scope, const MintContext& ctx) const override {
    const std::string role{scope.empty() ? std::string_view{config_.role_arn} : scope};
    if (!valid_role_arn(role))
      throw_error(credential_errc::invalid_material, provider_context(ctx.provider_id) + ": the scope '" +
                                                         bounded_excerpt(role, 200) +
                                                         "' is not a role ARN (arn:PARTITION:iam::ACCOUNT:role/NAME)");
    const RedactedString token = co_await config_.web_identity_token.fetch(ctx);
    detail::SecretForm form;
    form.add("Action", "AssumeRoleWithWebIdentity");
    form.add("Version", "2011-06-15");
    form.add("RoleArn", role);
    form.add("RoleSessionName", config_.role_session_name);
    form.add("DurationSeconds", std::to_string(config_.duration.count()));
    form.add("WebIdentityToken", token.reveal());
    http::HttpRequest request;
    request.method = "POST";
    request.url = config_.sts_endpoint;
    request.headers.push_back({"content-type", "application/x-www-form-urlencoded"});
    request.body = form.text();
    http::HttpResponse response = co_await detail::send_token_request(std::move(request), ctx, origin_, aws_refusal);
    const detail::WipeOnExit wipe{response.body};
    detail::AwsStsAnswer answer = detail::parse_aws_sts_response(response.body);
    if (!answer.ok())
      throw_error(credential_errc::transient_upstream,
                  provider_context(ctx.provider_id) + ": token endpoint " + origin_ + ": " +
                      (answer.malformed.empty() ? "an error in a 2xx answer" : answer.malformed));
    if (answer.expiration <= ctx.clock.system_now())
      throw_error(credential_errc::transient_upstream,
                  provider_context(ctx.provider_id) + ": token endpoint " + origin_ + ": the credentials have expired");
    RedactedString bearer = answer.session_token;
    auto aws =
        std::make_shared<const AwsCredentials>(std::move(answer.access_key_id), std::move(answer.secret_access_key),
                                               std::move(answer.session_token), answer.expiration);
    co_return expiring_at(std::move(bearer), answer.expiration, ctx, "AWS", std::move(aws));
  }

 private:
  AwsWebIdentity config_;
  std::string origin_;
};

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

std::string required_env(const char* name, std::string_view what) {
  const char* v = env(name);
  if (v == nullptr) refuse(what, std::string{"the environment variable "} + name + " is not set or empty");
  return v;
}

}  // namespace

CredentialMaterial google_external_account(GoogleExternalAccount account, GoogleExternalAccountOptions options) {
  return CredentialMaterial::from_minter(
      std::make_shared<const GoogleExternalAccountMinter>(std::move(account), std::move(options)));
}

AzureWorkloadIdentity AzureWorkloadIdentity::from_environment() {
  constexpr std::string_view what = "azure_workload_identity";
  AzureWorkloadIdentity c;
  c.client_id = required_env("AZURE_CLIENT_ID", what);
  c.tenant_id = required_env("AZURE_TENANT_ID", what);
  c.assertion = IdentityTokenSource::file(required_env("AZURE_FEDERATED_TOKEN_FILE", what));
  if (const char* host = env("AZURE_AUTHORITY_HOST")) c.authority_host = host;
  return c;
}

CredentialMaterial azure_workload_identity(AzureWorkloadIdentity config) {
  constexpr std::string_view what = "azure_workload_identity";
  if (config.client_id.empty()) refuse(what, "client_id is empty");
  if (config.tenant_id.empty() || config.tenant_id.size() > 128 || !aws_name_chars(config.tenant_id, ".-"))
    refuse(what, "tenant_id is not a tenant id or domain");
  if (!config.assertion) refuse(what, "assertion is missing");
  std::string host = std::move(config.authority_host);
  while (!host.empty() && host.back() == '/') host.pop_back();
  FederatedOAuth f;
  f.token_endpoint = host + "/" + config.tenant_id + "/oauth2/v2.0/token";
  detail::check_endpoint(f.token_endpoint, "azure_workload_identity: authority_host");
  f.client_id = std::move(config.client_id);
  f.client_assertion = std::move(config.assertion);
  return detail::make_federated_oauth(std::move(f), "azure_workload_identity");
}

AwsWebIdentity AwsWebIdentity::from_environment() {
  constexpr std::string_view what = "aws_web_identity";
  AwsWebIdentity c;
  c.role_arn = required_env("AWS_ROLE_ARN", what);
  c.web_identity_token = IdentityTokenSource::file(required_env("AWS_WEB_IDENTITY_TOKEN_FILE", what));
  if (const char* name = env("AWS_ROLE_SESSION_NAME")) c.role_session_name = name;
  if (const char* region = env("AWS_REGION"))
    c.region = region;
  else if (const char* fallback = env("AWS_DEFAULT_REGION"))
    c.region = fallback;
  if (const char* endpoint = env("AWS_ENDPOINT_URL_STS")) c.sts_endpoint = endpoint;
  return c;
}

CredentialMaterial aws_web_identity(AwsWebIdentity config) {
  return CredentialMaterial::from_minter(std::make_shared<const AwsWebIdentityMinter>(std::move(config)));
}

}  // namespace awaken
