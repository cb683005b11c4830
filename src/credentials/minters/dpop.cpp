// DPoP keys and proofs (RFC 9449), and the DPoP side of tokens.
#include <awaken/credentials/dpop.hpp>
#include <awaken/credentials/token.hpp>
#include <awaken/error.hpp>

#include <algorithm>
#include <chrono>

#include <nlohmann/json.hpp>

#include "core/url_text.hpp"

namespace awaken {

struct DpopKey::Impl {
  jose::JwsSigner signer;
  std::string thumbprint;
};

namespace {

[[noreturn]] void refuse(const std::string& why) {
  throw_error(credential_errc::invalid_material, "DPoP proof: " + why);
}

jose::Algorithm algorithm_for(jose::Curve curve) {
  switch (curve) {
    case jose::Curve::p384: return jose::Algorithm::es384;
    case jose::Curve::p521: return jose::Algorithm::es512;
    case jose::Curve::p256:
    case jose::Curve::none: break;
  }
  return jose::Algorithm::es256;
}

}  // namespace

DpopKey DpopKey::generate(jose::Curve curve) {
  if (curve == jose::Curve::none) throw_error(credential_errc::invalid_material, "DpopKey::generate: no curve");
  jose::PrivateKey key = jose::PrivateKey::generate(curve);
  const jose::PublicKey pub = key.public_key();
  const nlohmann::json header{{"typ", "dpop+jwt"}, {"jwk", pub.to_jwk()}};
  const jose::Algorithm alg = algorithm_for(curve);
  return DpopKey{std::make_shared<const Impl>(Impl{jose::JwsSigner{alg, header, std::move(key)}, pub.thumbprint()})};
}

std::string DpopKey::proof(std::string_view method, std::string_view url, std::string_view access_token,
                           std::string_view nonce, const Clock& clock) const {
  if (method.empty() || method.size() > 32 || !std::all_of(method.begin(), method.end(), detail::is_tchar))
    refuse("the method is not an HTTP method");
  if (!detail::is_absolute_http(url))
    refuse("'" + bounded_excerpt(detail::url_origin(url), 200) + "' is not an absolute http(s) URL");
  if (!is_dpop_nonce(nonce)) refuse("the nonce is longer than 1024 bytes or holds a byte outside NQCHAR");
  const auto iat = std::chrono::duration_cast<std::chrono::seconds>(clock.system_now().time_since_epoch()).count();

  const std::string_view htu = detail::without_query(url);
  std::string claims;
  claims.reserve(120 + htu.size() + nonce.size());
  claims += "{\"jti\":\"";
  claims += jose::random_base64url(16);
  claims += "\",\"htm\":";
  detail::append_json_string(claims, method);
  claims += ",\"htu\":";
  detail::append_json_string(claims, htu);
  claims += ",\"iat\":";
  claims += std::to_string(iat);
  if (!access_token.empty()) {
    claims += ",\"ath\":\"";
    claims += jose::sha256_base64url(access_token);
    claims += '"';
  }
  if (!nonce.empty()) {
    claims += ",\"nonce\":";
    detail::append_json_string(claims, nonce);
  }
  claims += '}';
  return impl_->signer.sign(claims);
}

jose::Algorithm DpopKey::algorithm() const noexcept { return impl_->signer.algorithm(); }
const std::string& DpopKey::thumbprint() const noexcept { return impl_->thumbprint; }
jose::PublicKey DpopKey::public_key() const { return impl_->signer.key().public_key(); }

bool is_dpop_nonce(std::string_view nonce) noexcept {
  // RFC 9449 section 8.1: NQCHAR, %x21 / %x23-5B / %x5D-7E (no space, quote or backslash).
  return nonce.size() <= max_dpop_nonce_bytes && std::all_of(nonce.begin(), nonce.end(), [](char c) {
           return c >= 0x21 && c <= 0x7e && c != '"' && c != '\\';
         });
}

std::string to_string(const DpopKey& key) {
  return "DpopKey{alg=" + std::string{jose::to_string(key.algorithm())} + ", jkt=" + key.thumbprint() + "}";
}

std::string Token::dpop_proof(std::string_view method, std::string_view url, std::string_view nonce,
                              const Clock& clock) const {
  if (!dpop_)
    throw_error(credential_errc::invalid_material, "DPoP proof: the token is a bearer token, bound to no key");
  return dpop_->proof(method, url, bearer_.reveal(), nonce, clock);
}

AuthorizationHeaders Token::authorization(std::string_view method, std::string_view url, std::string_view nonce,
                                          const Clock& clock) const {
  std::string proof = dpop_ ? dpop_proof(method, url, nonce, clock) : std::string{};
  // One buffer, moved into the RedactedString: no unwiped copy of the token is left behind.
  // The scheme is ours to name: a token_type such as N_A (RFC 8693) or "bearer" is no scheme.
  const std::string_view scheme = dpop_ ? std::string_view{"DPoP"} : std::string_view{"Bearer"};
  std::string value;
  value.reserve(scheme.size() + 1 + bearer_.size());
  value += scheme;
  value += ' ';
  value += bearer_.reveal();
  return {RedactedString{std::move(value)}, std::move(proof)};
}

}  // namespace awaken
