// Identity token sources (a rotated file, a URL, a JWT-SVID) and the OAuth minter that proves
// the workload's identity with them or with its X.509-SVID.
#include <awaken/credentials/federation.hpp>
#include <awaken/error.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "core/url_text.hpp"
#include "core/wipe.hpp"
#include "credentials/federation/federation_detail.hpp"
#include "credentials/federation/federation_parsers.hpp"
#include "credentials/minters/provider_context.hpp"
#include "credentials/minters/token_request.hpp"

namespace awaken {

class IdentityTokenSource::Fetcher {
 public:
  virtual ~Fetcher() = default;
  virtual std::string_view kind() const noexcept = 0;
  virtual asio::awaitable<RedactedString> fetch(const MintContext& ctx) const = 0;
};

namespace {

using detail::provider_context;

// A file another system rotates: read again when what `fstat` says about it changes.
class FileToken final : public IdentityTokenSource::Fetcher {
 public:
  FileToken(std::string path, TokenFormat format, std::string field)
      : path_(std::move(path)), format_(format), field_(std::move(field)) {}

  std::string_view kind() const noexcept override { return "file"; }

  asio::awaitable<RedactedString> fetch(const MintContext& ctx) const override { co_return read(ctx); }

 private:
  struct Version {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = -1;
    std::int64_t mtime_ns = 0;
    bool operator==(const Version&) const = default;
  };

  [[noreturn]] void fail(const MintContext& ctx, const std::string& why) const {
    throw_error(credential_errc::invalid_material,
                provider_context(ctx.provider_id) + ": token file '" + bounded_excerpt(path_, 200) + "' " + why);
  }

  RedactedString read(const MintContext& ctx) const {
    // Non-blocking: a FIFO at the path must not block the thread until a writer comes.
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) fail(ctx, std::string{"cannot be opened: "} + std::strerror(errno));
    struct Close {
      int fd;
      ~Close() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail(ctx, std::string{"cannot be read: "} + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) fail(ctx, "is not a regular file");
    const Version version{st.st_dev, st.st_ino, st.st_size,
                          static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
    RedactedString token;
    std::optional<std::int64_t> expiry;
    {
      const std::lock_guard lock{mutex_};
      if (version == version_ && !token_.empty()) {
        token = token_;
        expiry = expiry_;
      }
    }
    if (token.empty()) {
      if (static_cast<std::size_t>(st.st_size) > detail::max_identity_token_bytes)
        fail(ctx, "is larger than " + std::to_string(detail::max_identity_token_bytes / 1024) + " KiB");
      detail::Wiped content;
      content.text.resize(detail::max_identity_token_bytes + 1);
      std::size_t n = 0;
      while (n < content.text.size()) {
        const auto got = ::read(fd, content.text.data() + n, content.text.size() - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) fail(ctx, std::string{"cannot be read: "} + std::strerror(errno));
        if (got == 0) break;
        n += static_cast<std::size_t>(got);
      }
      std::string why;
      token = detail::token_from_content(std::string_view{content.text}.substr(0, n), format_, field_, why);
      if (token.empty()) fail(ctx, why);
      expiry = detail::jwt_expiry(token.reveal());
      const std::lock_guard lock{mutex_};
      version_ = version;
      token_ = token;
      expiry_ = expiry;
    }
    if (expiry && *expiry <= detail::unix_seconds(ctx))
      fail(ctx, "holds a token that expired at " +
                    utc_text(std::chrono::system_clock::time_point{std::chrono::seconds{*expiry}}) +
                    " (it was not rotated in time)");
    return token;
  }

  std::string path_;
  TokenFormat format_;
  std::string field_;
  mutable std::mutex mutex_;
  mutable Version version_;
  mutable RedactedString token_;
  mutable std::optional<std::int64_t> expiry_;
};

class UrlToken final : public IdentityTokenSource::Fetcher {
 public:
  UrlToken(std::string url, std::vector<http::Header> headers, TokenFormat format, std::string field)
      : origin_(detail::check_endpoint(url, "identity token url", true)),
        url_(std::move(url)),
        headers_(std::move(headers)),
        format_(format),
        field_(std::move(field)) {}

  std::string_view kind() const noexcept override { return "url"; }

  asio::awaitable<RedactedString> fetch(const MintContext& ctx) const override {
    http::HttpRequest request;
    request.url = url_;
    request.headers = headers_;
    const std::string where = "identity token url " + origin_;  // named: no temporary in the co_await
    http::HttpResponse response = co_await detail::send_token_request(
        std::move(request), ctx, where, [](int status, std::string_view) -> detail::Refusal {
          return {detail::is_transient_status(status), ErrorDetails{status, {}}};
        });
    const detail::WipeOnExit wipe{response.body};
    std::string why;
    RedactedString token = detail::token_from_content(response.body, format_, field_, why);
    if (token.empty())
      throw_error(credential_errc::transient_upstream,
                  provider_context(ctx.provider_id) + ": identity token url " + origin_ + ": the answer " + why);
    co_return token;
  }

 private:
  std::string origin_;
  std::string url_;
  std::vector<http::Header> headers_;
  TokenFormat format_;
  std::string field_;
};

class SvidToken final : public IdentityTokenSource::Fetcher {
 public:
  SvidToken(spiffe::JwtSource source, std::string audience, std::optional<spiffe::SpiffeId> id)
      : source_(std::move(source)), audience_(std::move(audience)), id_(std::move(id)) {
    detail::need_source(source_, "identity token jwt_svid");
    if (audience_.empty())
      throw_error(credential_errc::invalid_material, "identity token jwt_svid: the audience is empty");
  }

  std::string_view kind() const noexcept override { return "jwt_svid"; }

  asio::awaitable<RedactedString> fetch(const MintContext& ctx) const override {
    const std::vector<std::string> audiences{audience_};
    const spiffe::JwtSvid svid = co_await detail::fetch_svid(source_, audiences, id_, ctx);
    co_return svid.token();
  }

 private:
  spiffe::JwtSource source_;
  std::string audience_;
  std::optional<spiffe::SpiffeId> id_;
};

constexpr std::string_view grant_jwt_bearer = "urn:ietf:params:oauth:grant-type:jwt-bearer";
constexpr std::string_view grant_token_exchange = "urn:ietf:params:oauth:grant-type:token-exchange";

class FederatedOAuthMinter final : public Minter {
 public:
  FederatedOAuthMinter(FederatedOAuth config, const char* label)
      : config_(std::move(config)),
        label_(label),
        dpop_(config_.dpop ? std::make_shared<const detail::DpopBinding>() : nullptr) {
    origin_ = detail::check_endpoint(config_.token_endpoint, std::string{label_} + ": token_endpoint");
    auto refuse = [&](const std::string& why) {
      throw_error(credential_errc::invalid_material, std::string{label_} + ": " + why);
    };
    const auto empty = [](const std::optional<IdentityTokenSource>& s) { return s && !*s; };
    if (empty(config_.client_assertion) || empty(config_.assertion) || empty(config_.subject_token))
      refuse("an identity token source is an empty handle");
    if (config_.client_assertion && config_.tls_client_certificate)
      refuse("give one client authentication: a client assertion or a TLS client certificate");
    if (config_.tls_client_certificate && origin_.rfind("https://", 0) != 0)
      refuse("mutual TLS client authentication needs an https token_endpoint");
    const bool jwt = config_.grant == OAuthGrant::jwt_bearer;
    const bool exchange = config_.grant == OAuthGrant::token_exchange;
    if (jwt != config_.assertion.has_value())
      refuse(jwt ? "the jwt_bearer grant needs an assertion" : "an assertion is given but the grant is not jwt_bearer");
    if (exchange != config_.subject_token.has_value())
      refuse(exchange ? "the token_exchange grant needs a subject_token"
                      : "a subject_token is given but the grant is not token_exchange");
    if (exchange && config_.subject_token_type.empty()) refuse("subject_token_type is empty");
    for (const auto& r : config_.resources)
      if (!detail::is_absolute_uri(r))
        refuse("resource '" + bounded_excerpt(r, 100) + "' is not an absolute URI without a fragment");
  }

  std::string_view kind_label() const noexcept override { return label_; }

  asio::awaitable<Token> mint(std::string_view scope, const MintContext& ctx) const override {
    std::string s{scope};
    if (!dpop_) {
      http::HttpRequest r = co_await make_request(std::move(s), ctx);
      co_return co_await detail::request_token(std::move(r), ctx, origin_);
    }
    // With DPoP a nonce challenge earns a retry, which needs fresh assertions.
    detail::RequestBuilder build = [this, s = std::move(s), &ctx]() { return make_request(s, ctx); };
    co_return co_await detail::request_token(std::move(build), ctx, origin_, *dpop_);
  }

 private:
  asio::awaitable<http::HttpRequest> make_request(std::string scope, const MintContext& ctx) const {
    detail::SecretForm form;  // holds assertions: wiped whatever happens
    switch (config_.grant) {
      case OAuthGrant::client_credentials: form.add("grant_type", "client_credentials"); break;
      case OAuthGrant::jwt_bearer: {
        form.add("grant_type", grant_jwt_bearer);
        const RedactedString assertion = co_await config_.assertion->fetch(ctx);
        form.add("assertion", assertion.reveal());
        break;
      }
      case OAuthGrant::token_exchange: {
        form.add("grant_type", grant_token_exchange);
        const RedactedString subject = co_await config_.subject_token->fetch(ctx);
        form.add("subject_token_type", config_.subject_token_type);
        form.add("subject_token", subject.reveal());
        if (!config_.requested_token_type.empty()) form.add("requested_token_type", config_.requested_token_type);
        break;
      }
    }
    if (!scope.empty()) form.add("scope", scope);
    if (!config_.client_id.empty()) form.add("client_id", config_.client_id);
    for (const auto& r : config_.resources) form.add("resource", r);
    if (!config_.audience.empty()) form.add("audience", config_.audience);

    http::HttpRequest request;
    if (config_.client_assertion) {
      form.add("client_assertion_type", config_.client_assertion_type == ClientAssertionType::jwt_spiffe
                                            ? "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
                                            : "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
      const RedactedString assertion = co_await config_.client_assertion->fetch(ctx);
      form.add("client_assertion", assertion.reveal());
    } else if (config_.tls_client_certificate) {
      const auto svid = config_.tls_client_certificate->x509_svid();
      if (!svid)
        throw_error(credential_errc::transient_upstream,
                    provider_context(ctx.provider_id) + ": no X.509-SVID yet for mutual TLS with " + origin_);
      request.client_certificate_pem = svid->chain_pem();
      request.client_key_pem = svid->private_key_pem();
    }
    request.method = "POST";
    request.url = config_.token_endpoint;
    request.headers.push_back({"content-type", "application/x-www-form-urlencoded"});
    request.headers.push_back({"accept", "application/json"});
    request.body = form.text();
    co_return request;
  }

  FederatedOAuth config_;
  const char* label_;
  std::shared_ptr<const detail::DpopBinding> dpop_;
  std::string origin_;
};

}  // namespace

IdentityTokenSource IdentityTokenSource::file(std::string path, TokenFormat format, std::string json_field) {
  if (path.empty()) throw_error(credential_errc::invalid_material, "identity token file: the path is empty");
  if (format == TokenFormat::json && json_field.empty())
    throw_error(credential_errc::invalid_material, "identity token file: a json format needs the field name");
  return IdentityTokenSource{std::make_shared<const FileToken>(std::move(path), format, std::move(json_field))};
}

IdentityTokenSource IdentityTokenSource::url(std::string url, std::vector<http::Header> headers, TokenFormat format,
                                             std::string json_field) {
  if (format == TokenFormat::json && json_field.empty())
    throw_error(credential_errc::invalid_material, "identity token url: a json format needs the field name");
  return IdentityTokenSource{
      std::make_shared<const UrlToken>(std::move(url), std::move(headers), format, std::move(json_field))};
}

IdentityTokenSource IdentityTokenSource::jwt_svid(spiffe::JwtSource source, std::string audience,
                                                  std::optional<spiffe::SpiffeId> spiffe_id) {
  return IdentityTokenSource{
      std::make_shared<const SvidToken>(std::move(source), std::move(audience), std::move(spiffe_id))};
}

asio::awaitable<RedactedString> IdentityTokenSource::fetch(const MintContext& context) const {
  return fetcher_->fetch(context);
}

std::string_view IdentityTokenSource::kind_label() const noexcept { return fetcher_ ? fetcher_->kind() : "none"; }

CredentialMaterial federated_oauth(FederatedOAuth config) {
  return detail::make_federated_oauth(std::move(config), "federated_oauth");
}

CredentialMaterial detail::make_federated_oauth(FederatedOAuth config, const char* kind_label) {
  return CredentialMaterial::from_minter(std::make_shared<const FederatedOAuthMinter>(std::move(config), kind_label));
}

}  // namespace awaken
