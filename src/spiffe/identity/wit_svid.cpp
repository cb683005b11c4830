// WIT-SVID parsing and validation, checks in the order the header documents; no error text
// carries the token or the key.
#include <awaken/error.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/spiffe/experimental/wit_svid.hpp>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/bounded_json.hpp"
#include "spiffe/identity/jwt_claims.hpp"

namespace awaken::spiffe::experimental {

struct WitSvid::State {
  SpiffeId id;
  std::chrono::system_clock::time_point expiry;
  std::string kid;
  jose::Algorithm alg;
  jose::PublicKey cnf_key;
  jose::Algorithm cnf_alg;
  nlohmann::json claims;
  RedactedString token;
  std::string token_hash;
  std::shared_ptr<const jose::JwsSigner> signer;  // set by with_private_key
};

namespace {

constexpr const char* what = "WIT-SVID";

[[noreturn]] void fail(std::error_code code, const std::string& context = {}) {
  throw_error(code, context.empty() ? std::string{what} : std::string{what} + ": " + context);
}

// cnf.jwk (RFC 7800): a public key, with an allowed `alg` that fits it. go-spiffe checks the
// allowlist but not the fit; a key of one type with another type's algorithm is refused here.
std::pair<jose::PublicKey, jose::Algorithm> confirmation(const nlohmann::json& claims) {
  const auto cnf = claims.find("cnf");
  if (cnf == claims.end() || !cnf->is_object()) fail(spiffe_errc::invalid_confirmation, "cnf missing or not an object");
  const auto jwk = cnf->find("jwk");
  if (jwk == cnf->end() || !jwk->is_object())
    fail(spiffe_errc::invalid_confirmation, "cnf.jwk missing or not an object");
  const auto alg = jwk->find("alg");
  if (alg == jwk->end() || !alg->is_string()) fail(spiffe_errc::invalid_confirmation, "cnf.jwk.alg missing");
  const auto parsed = jose::parse_algorithm(alg->get_ref<const std::string&>());
  if (!parsed)
    fail(spiffe_errc::invalid_confirmation,
         "cnf.jwk.alg '" + bounded_excerpt(alg->get_ref<const std::string&>(), 16) + "' is not allowed");
  std::optional<jose::PublicKey> key;
  try {
    key.emplace(jose::PublicKey::from_jwk(*jwk));
  } catch (const Error& e) {
    fail(spiffe_errc::invalid_confirmation, std::string{"cnf.jwk: "} + e.code().message());
  }
  if (!key->supports(*parsed))
    fail(spiffe_errc::invalid_confirmation,
         std::string{"cnf.jwk.alg "} + std::string{jose::to_string(*parsed)} + " does not fit the key");
  return {std::move(*key), *parsed};
}

}  // namespace

JwtBundle parse_wit_bundle(TrustDomain td, std::string_view jwks, std::size_t max_bytes) {
  return JwtBundle::parse(std::move(td), jwks, max_bytes, AuthorityUse::wit_svid);
}

struct WitSvidParser {
  static WitSvid run(std::string_view token, const BundleSource* bundles, const WitSvidOptions& o) {
    std::optional<jose::CompactJws> parsed;
    try {
      parsed.emplace(jose::CompactJws::parse(token, o.max_token_bytes));
    } catch (const Error& e) {
      fail(detail::from_jose(e.code()), e.what());
    }
    const jose::CompactJws& jws = *parsed;
    const nlohmann::json& header = jws.header();
    const auto typ = header.find("typ");
    if (typ == header.end() || !typ->is_string() || typ->get_ref<const std::string&>() != "wit+jwt")
      fail(spiffe_errc::invalid_typ,
           typ == header.end() ? std::string{"typ missing, wit+jwt expected"}
           : typ->is_string()
               ? "typ '" + bounded_excerpt(typ->get_ref<const std::string&>(), 32) + "', wit+jwt expected"
               : std::string{"typ is not a string"});
    const auto k = header.find("kid");
    if (k == header.end()) fail(spiffe_errc::missing_key_id);
    if (!k->is_string()) fail(spiffe_errc::invalid_header, "kid is not a string");
    if (k->get_ref<const std::string&>().empty()) fail(spiffe_errc::missing_key_id);
    std::string kid = k->get<std::string>();

    auto claims = detail::claims_of(jws, what);
    const auto sub = claims.find("sub");
    std::error_code ec;
    auto id = SpiffeId::parse(sub->get_ref<const std::string&>(), ec);
    if (!id)
      fail(spiffe_errc::invalid_subject,
           "sub '" + bounded_excerpt(sub->get_ref<const std::string&>(), 128) + "': " + ec.message());
    const auto exp = detail::numeric_date(claims, "exp", what);
    if (!exp) fail(spiffe_errc::missing_expiration);
    if (claims.contains("aud")) fail(spiffe_errc::audience_present);
    auto [cnf_key, cnf_alg] = confirmation(claims);

    if (bundles != nullptr) {
      detail::verify_with_authority(jws, *id, kid, *bundles, what);

      const long long now = detail::now_seconds(o.clock);
      const long long leeway = std::max<long long>(o.leeway.count(), 0);
      const long long exp_s = detail::whole_seconds(*exp);
      if (now > detail::add_seconds(exp_s, leeway)) fail(spiffe_errc::expired, "exp " + utc_text(detail::at(*exp)));
      const auto nbf = detail::numeric_date(claims, "nbf", what);
      if (nbf && detail::add_seconds(now, leeway) < detail::whole_seconds(*nbf))
        fail(spiffe_errc::not_yet_valid, "nbf " + utc_text(detail::at(*nbf)));
      if (o.max_lifetime) {
        const auto iat = detail::numeric_date(claims, "iat", what);
        const long long start = nbf ? detail::whole_seconds(*nbf) : iat ? detail::whole_seconds(*iat) : now;
        if (exp_s - start > o.max_lifetime->count())
          fail(spiffe_errc::lifetime_too_long,
               std::to_string(exp_s - start) + " s, over " + std::to_string(o.max_lifetime->count()) + " s");
      }
    }

    std::string hash = jose::sha256_base64url(token);
    auto state = std::make_shared<WitSvid::State>(
        WitSvid::State{std::move(*id), detail::at(*exp), std::move(kid), jws.algorithm(), std::move(cnf_key), cnf_alg,
                       std::move(claims), RedactedString{token}, std::move(hash), nullptr});
    return WitSvid{std::move(state)};
  }

  static WitSvid with_key(const WitSvid& svid, jose::PrivateKey key) {
    const auto& s = *svid.state_;
    if (!key.supports(s.cnf_alg) || key.public_key().thumbprint() != s.cnf_key.thumbprint())
      fail(spiffe_errc::key_mismatch, "the private key is not the one cnf.jwk names");
    auto copy = std::make_shared<WitSvid::State>(s);
    copy->signer =
        std::make_shared<const jose::JwsSigner>(s.cnf_alg, nlohmann::json{{"typ", "wpt+jwt"}}, std::move(key));
    WitSvid out{std::move(copy)};
    out.hint_ = svid.hint_;
    return out;
  }
};

WitSvid WitSvid::parse_insecure(std::string_view token, const WitSvidOptions& options) {
  return WitSvidParser::run(token, nullptr, options);
}

WitSvid WitSvid::parse_and_validate(std::string_view token, const BundleSource& bundles,
                                    const WitSvidOptions& options) {
  return WitSvidParser::run(token, &bundles, options);
}

WitSvid WitSvid::with_private_key(jose::PrivateKey key) const { return WitSvidParser::with_key(*this, std::move(key)); }

WitSvid WitSvid::with_hint(std::string hint) const {
  WitSvid copy = *this;
  copy.hint_ = std::move(hint);
  return copy;
}

WitSvid::WitSvid() {
  static const auto empty = [] {
    const auto key = jose::PrivateKey::generate().public_key();
    return std::make_shared<const State>(State{SpiffeId{},
                                               std::chrono::system_clock::time_point{},
                                               {},
                                               jose::Algorithm::es256,
                                               key,
                                               jose::Algorithm::es256,
                                               nlohmann::json::object(),
                                               {},
                                               {},
                                               nullptr});
  }();
  state_ = empty;
}

const SpiffeId& WitSvid::spiffe_id() const noexcept { return state_->id; }
std::chrono::system_clock::time_point WitSvid::expiry() const noexcept { return state_->expiry; }
const std::string& WitSvid::key_id() const noexcept { return state_->kid; }
jose::Algorithm WitSvid::algorithm() const noexcept { return state_->alg; }
const jose::PublicKey& WitSvid::confirmation_key() const noexcept { return state_->cnf_key; }
jose::Algorithm WitSvid::confirmation_algorithm() const noexcept { return state_->cnf_alg; }
bool WitSvid::has_private_key() const noexcept { return state_->signer != nullptr; }
const nlohmann::json& WitSvid::claims() const noexcept { return state_->claims; }
const RedactedString& WitSvid::token() const noexcept { return state_->token; }
const std::string& WitSvid::token_hash() const noexcept { return state_->token_hash; }
const jose::JwsSigner* WitSvid::proof_signer() const noexcept { return state_->signer.get(); }

std::string to_string(const WitSvid& svid) {
  return "WitSvid{spiffe_id=" + svid.spiffe_id().str() + ", expiry=" + utc_text(svid.expiry()) +
         ", kid=" + bounded_excerpt(svid.key_id(), 64) +
         ", cnf_alg=" + std::string{jose::to_string(svid.confirmation_algorithm())} +
         ", token=[redacted], key=" + (svid.has_private_key() ? "[redacted]" : "none") + "}";
}

}  // namespace awaken::spiffe::experimental
