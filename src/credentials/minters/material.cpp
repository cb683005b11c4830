// Token printing and the built-in static bearer material.
#include <awaken/credentials/dpop.hpp>
#include <awaken/credentials/material.hpp>
#include <awaken/credentials/token.hpp>
#include <awaken/error.hpp>

namespace awaken {
namespace {

class StaticBearerMinter final : public Minter {
 public:
  StaticBearerMinter(RedactedString bearer, std::chrono::seconds lifetime)
      : bearer_(std::move(bearer)), lifetime_(lifetime) {}

  std::string_view kind_label() const noexcept override { return "bearer"; }

  asio::awaitable<Token> mint(std::string_view, const MintContext& context) const override {
    co_return Token::expiring_in(bearer_, lifetime_, context.clock);
  }

 private:
  RedactedString bearer_;
  std::chrono::seconds lifetime_;
};

}  // namespace

std::string to_string(const Token& token) {
  return "Token{type=" + bounded_excerpt(token.token_type(), 32) + ", expires_at=" + utc_text(token.expires_at()) +
         ", bearer=[redacted]" + (token.aws_credentials() != nullptr ? ", aws_credentials=[redacted]" : "") +
         (token.dpop_key() != nullptr ? ", dpop_jkt=" + token.dpop_key()->thumbprint() + "}" : "}");
}

std::string to_string(const IssuedToken& token) {
  if (token.empty()) return "IssuedToken{empty}";
  return "Issued" + to_string(*token.token());
}

CredentialMaterial CredentialMaterial::static_bearer(RedactedString bearer, std::chrono::seconds lifetime) {
  if (bearer.empty()) throw_error(credential_errc::invalid_material, "static bearer: the bearer is empty");
  if (lifetime <= std::chrono::seconds::zero())
    throw_error(credential_errc::invalid_material, "static bearer: the lifetime must be positive");
  return CredentialMaterial{std::make_shared<const StaticBearerMinter>(std::move(bearer), lifetime)};
}

CredentialMaterial CredentialMaterial::from_minter(std::shared_ptr<const Minter> minter) {
  if (minter == nullptr) throw_error(credential_errc::invalid_material, "from_minter: the minter is null");
  return CredentialMaterial{std::move(minter)};
}

}  // namespace awaken
