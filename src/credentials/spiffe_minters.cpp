// The SPIFFE-backed minters: a JWT-SVID as the token, as a client assertion, as a subject token.
#include <awaken/credentials/spiffe_minters.hpp>
#include <awaken/error.hpp>

#include <sstream>

#include <nlohmann/json.hpp>

#include "credentials/config_fields.hpp"

#include "credentials/provider_context.hpp"
#include "credentials/token_endpoint.hpp"

namespace awaken {
namespace {

std::vector<std::string> split_audiences(std::string_view scope) {
  std::vector<std::string> out;
  std::istringstream words{std::string{scope}};
  for (std::string word; words >> word;) out.push_back(std::move(word));
  return out;
}

// A JWT-SVID from `source`, with Workload API failures in the broker's terms.
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
  const auto kind = spiffe::is_transient_workload_error(code) ? credential_errc::transient_upstream
                                                              : credential_errc::permanent_upstream;
  throw_error(kind, detail::provider_context(ctx.provider_id) + ": JWT-SVID from the Workload API: " + text);
}

void need_source(const spiffe::JwtSource& source, std::string_view what) {
  if (source.sequence() == 0)
    throw_error(credential_errc::invalid_material, std::string{what} + ": the JwtSource handle is empty");
}

class JwtSvidMinter final : public Minter {
 public:
  JwtSvidMinter(spiffe::JwtSource source, std::optional<spiffe::SpiffeId> id)
      : source_(std::move(source)), id_(std::move(id)) {
    need_source(source_, "jwt_svid");
  }

  std::string_view kind_label() const noexcept override { return "jwt_svid"; }

  asio::awaitable<Token> mint(std::string_view scope, const MintContext& ctx) const override {
    auto audiences = split_audiences(scope);
    if (audiences.empty())
      throw_error(credential_errc::invalid_material,
                  detail::provider_context(ctx.provider_id) + ": the scope must name at least one audience");
    const spiffe::JwtSvid svid = co_await fetch_svid(source_, std::move(audiences), id_, ctx);
    // The SVID's own exp, and the same moment on the steady clock.
    const auto left = svid.expiry() - ctx.clock.system_now();
    co_return Token(svid.token(), svid.expiry(),
                    ctx.clock.steady_now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(left));
  }

 private:
  spiffe::JwtSource source_;
  std::optional<spiffe::SpiffeId> id_;
};

// What the two OAuth flavours share: an endpoint, a JWT-SVID for an audience, a form POST.
class SvidGrantMinter : public Minter {
 public:
  SvidGrantMinter(spiffe::JwtSource source, std::string endpoint, std::string svid_audience,
                  std::optional<spiffe::SpiffeId> id, std::string_view what)
      : source_(std::move(source)),
        origin_(detail::check_endpoint(endpoint, std::string{what} + ": token_endpoint")),
        endpoint_(std::move(endpoint)),
        svid_audience_(svid_audience.empty() ? endpoint_ : std::move(svid_audience)),
        id_(std::move(id)) {
    need_source(source_, what);
  }

  asio::awaitable<Token> mint(std::string_view scope, const MintContext& ctx) const override {
    const std::vector<std::string> audiences{svid_audience_};
    const spiffe::JwtSvid svid = co_await fetch_svid(source_, audiences, id_, ctx);
    co_return co_await detail::post_form(endpoint_, form(scope, svid.token().reveal()), {}, ctx, origin_);
  }

 protected:
  virtual std::string form(std::string_view scope, std::string_view svid) const = 0;

 private:
  spiffe::JwtSource source_;
  std::string origin_;
  std::string endpoint_;
  std::string svid_audience_;
  std::optional<spiffe::SpiffeId> id_;
};

class SvidClientCredentialsMinter final : public SvidGrantMinter {
 public:
  SvidClientCredentialsMinter(spiffe::JwtSource source, SpiffeClientCredentials c)
      : SvidGrantMinter(std::move(source), c.token_endpoint, c.assertion_audience, c.spiffe_id,
                        "spiffe_client_credentials"),
        client_id_(std::move(c.client_id)) {}

  std::string_view kind_label() const noexcept override { return "spiffe_client_credentials"; }

 protected:
  std::string form(std::string_view scope, std::string_view svid) const override {
    std::string body = "grant_type=client_credentials";
    if (!scope.empty()) body += "&scope=" + detail::form_encode(scope);
    if (!client_id_.empty()) body += "&client_id=" + detail::form_encode(client_id_);
    return body +
           "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
           "&client_assertion=" +
           std::string{svid};
  }

 private:
  std::string client_id_;
};

class SvidTokenExchangeMinter final : public SvidGrantMinter {
 public:
  SvidTokenExchangeMinter(spiffe::JwtSource source, SpiffeTokenExchange c)
      : SvidGrantMinter(std::move(source), c.token_endpoint, c.subject_audience, c.spiffe_id, "spiffe_token_exchange"),
        audience_(std::move(c.audience)),
        resource_(std::move(c.resource)) {}

  std::string_view kind_label() const noexcept override { return "spiffe_token_exchange"; }

 protected:
  std::string form(std::string_view scope, std::string_view svid) const override {
    std::string body =
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
        "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&subject_token=" +
        std::string{svid};
    if (!scope.empty()) body += "&scope=" + detail::form_encode(scope);
    if (!audience_.empty()) body += "&audience=" + detail::form_encode(audience_);
    if (!resource_.empty()) body += "&resource=" + detail::form_encode(resource_);
    return body;
  }

 private:
  std::string audience_;
  std::string resource_;
};

std::optional<spiffe::SpiffeId> spiffe_id_field(const detail::Fields& f) {
  const std::string text = f.text("spiffe_id");
  if (text.empty()) return std::nullopt;
  std::error_code ec;
  auto id = spiffe::SpiffeId::parse(text, ec);
  if (!id) detail::bad("spiffe_id", "is not a SPIFFE ID: " + ec.message());
  return id;
}

}  // namespace

bool is_spiffe_config(const nlohmann::json& config) {
  if (!config.is_object()) return false;
  auto kind = config.find("kind");
  if (kind == config.end() || !kind->is_string()) return false;
  const auto& k = kind->get_ref<const std::string&>();
  return k == "jwt_svid" || k == "spiffe_client_credentials" || k == "spiffe_token_exchange";
}

CredentialMaterial material_from_config(const nlohmann::json& config, const spiffe::JwtSource& source) {
  if (!is_spiffe_config(config)) return CredentialMaterial::from_config(config);
  const std::string kind = config["kind"];
  if (kind == "jwt_svid") {
    const detail::Fields f{config, kind, {"spiffe_id"}};
    return jwt_svid_material(source, spiffe_id_field(f));
  }
  if (kind == "spiffe_client_credentials") {
    const detail::Fields f{config, kind, {"token_endpoint", "client_id", "assertion_audience", "spiffe_id"}};
    SpiffeClientCredentials c;
    c.token_endpoint = f.text("token_endpoint", {}, true);
    c.client_id = f.text("client_id");
    c.assertion_audience = f.text("assertion_audience");
    c.spiffe_id = spiffe_id_field(f);
    return spiffe_client_credentials(source, std::move(c));
  }
  const detail::Fields f{config, kind, {"token_endpoint", "subject_audience", "audience", "resource", "spiffe_id"}};
  SpiffeTokenExchange c;
  c.token_endpoint = f.text("token_endpoint", {}, true);
  c.subject_audience = f.text("subject_audience");
  c.audience = f.text("audience");
  c.resource = f.text("resource");
  c.spiffe_id = spiffe_id_field(f);
  return spiffe_token_exchange(source, std::move(c));
}

CredentialMaterial jwt_svid_material(spiffe::JwtSource source, std::optional<spiffe::SpiffeId> spiffe_id) {
  return CredentialMaterial::from_minter(
      std::make_shared<const JwtSvidMinter>(std::move(source), std::move(spiffe_id)));
}

CredentialMaterial spiffe_client_credentials(spiffe::JwtSource source, SpiffeClientCredentials config) {
  return CredentialMaterial::from_minter(
      std::make_shared<const SvidClientCredentialsMinter>(std::move(source), std::move(config)));
}

CredentialMaterial spiffe_token_exchange(spiffe::JwtSource source, SpiffeTokenExchange config) {
  return CredentialMaterial::from_minter(
      std::make_shared<const SvidTokenExchangeMinter>(std::move(source), std::move(config)));
}

}  // namespace awaken
