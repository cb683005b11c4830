// The SPIFFE-backed minters: a JWT-SVID as the token, as a client assertion, as a subject token.
#include <awaken/credentials/spiffe_minters.hpp>
#include <awaken/error.hpp>

#include "credentials/federation/federation_detail.hpp"
#include "credentials/minters/provider_context.hpp"
#include "credentials/minters/token_request.hpp"

namespace awaken {
namespace {

class JwtSvidMinter final : public Minter {
 public:
  JwtSvidMinter(spiffe::JwtSource source, std::optional<spiffe::SpiffeId> id)
      : source_(std::move(source)), id_(std::move(id)) {
    detail::need_source(source_, "jwt_svid");
  }

  std::string_view kind_label() const noexcept override { return "jwt_svid"; }

  asio::awaitable<Token> mint(std::string_view scope, const MintContext& ctx) const override {
    auto audiences = detail::split_words(scope);
    if (audiences.empty())
      throw_error(credential_errc::invalid_material,
                  detail::provider_context(ctx.provider_id) + ": the scope must name at least one audience");
    const spiffe::JwtSvid svid = co_await detail::fetch_svid(source_, std::move(audiences), id_, ctx);
    // The SVID's own exp, and the same moment on the steady clock.
    const auto left = svid.expiry() - ctx.clock.system_now();
    co_return Token(svid.token(), svid.expiry(),
                    ctx.clock.steady_now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(left));
  }

 private:
  spiffe::JwtSource source_;
  std::optional<spiffe::SpiffeId> id_;
};

}  // namespace

CredentialMaterial jwt_svid_material(spiffe::JwtSource source, std::optional<spiffe::SpiffeId> spiffe_id) {
  return CredentialMaterial::from_minter(
      std::make_shared<const JwtSvidMinter>(std::move(source), std::move(spiffe_id)));
}

CredentialMaterial spiffe_client_credentials(spiffe::JwtSource source, SpiffeClientCredentials config) {
  FederatedOAuth f;
  f.token_endpoint = std::move(config.token_endpoint);
  f.client_id = std::move(config.client_id);
  f.client_assertion_type = config.assertion_type;
  f.resources = std::move(config.resources);
  f.audience = std::move(config.audience);
  f.dpop = config.dpop;
  detail::need_source(source, "spiffe_client_credentials");
  const std::string audience = config.assertion_audience.empty() ? f.token_endpoint : config.assertion_audience;
  f.client_assertion = IdentityTokenSource::jwt_svid(std::move(source), audience, std::move(config.spiffe_id));
  return detail::make_federated_oauth(std::move(f), "spiffe_client_credentials");
}

CredentialMaterial spiffe_token_exchange(spiffe::JwtSource source, SpiffeTokenExchange config) {
  FederatedOAuth f;
  f.token_endpoint = std::move(config.token_endpoint);
  f.grant = OAuthGrant::token_exchange;
  f.audience = std::move(config.audience);
  if (!config.resource.empty()) f.resources.push_back(std::move(config.resource));
  f.requested_token_type = std::move(config.requested_token_type);
  f.dpop = config.dpop;
  detail::need_source(source, "spiffe_token_exchange");
  const std::string audience = config.subject_audience.empty() ? f.token_endpoint : config.subject_audience;
  f.subject_token = IdentityTokenSource::jwt_svid(std::move(source), audience, std::move(config.spiffe_id));
  return detail::make_federated_oauth(std::move(f), "spiffe_token_exchange");
}

namespace detail {

asio::awaitable<spiffe::JwtSvid> fetch_svid(const spiffe::JwtSource& source, std::vector<std::string> audiences,
                                            const std::optional<spiffe::SpiffeId>& id, const MintContext& ctx) {
  std::error_code code;
  std::string text;
  try {
    co_return co_await source.fetch_jwt_svid(std::move(audiences), id);
  } catch (const Error& e) {
    code = e.code();
    text = e.what();
  }
  const auto kind =
      code == condition::workload_transient ? credential_errc::transient_upstream : credential_errc::permanent_upstream;
  throw_error(kind, provider_context(ctx.provider_id) + ": JWT-SVID from the Workload API: " + text);
}

void need_source(const spiffe::JwtSource& source, std::string_view what) {
  if (source.sequence() == 0)
    throw_error(credential_errc::invalid_material, std::string{what} + ": the JwtSource handle is empty");
}

}  // namespace detail
}  // namespace awaken
