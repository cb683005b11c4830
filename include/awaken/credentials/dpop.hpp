// DPoP (RFC 9449): a key that proves possession of a sender-constrained access token.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include <awaken/clock.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/jose/keys.hpp>

namespace awaken {

/// A DPoP key pair and what it signs: the `DPoP` proof of one HTTP request (RFC 9449 section 4).
///
/// The broker makes one per material that asks for DPoP (EC P-256, generated in memory, never
/// written, printed or logged) and every token it mints with it carries it; callers reach it
/// through `Token::dpop_proof` and `Token::authorization`, or make their own with `generate`.
///
/// Thread safety: immutable; `proof` may run on any number of threads at once and takes no lock
/// (each signature has its own OpenSSL context). Copies share the key.
class DpopKey {
 public:
  /// A fresh key: EC P-256 with ES256 (the default), P-384 with ES384 or P-521 with ES512.
  /// Throws `Error{jose_errc::signing_failed}` when OpenSSL cannot make one.
  static DpopKey generate(jose::Curve curve = jose::Curve::p256);

  /// The proof of one request (RFC 9449 section 4.2): header `typ` `dpop+jwt`, `alg` and the
  /// public `jwk`; claims `jti` (128 random bits), `htm` = `method`, `htu` = `url` without its
  /// query and fragment, `iat` (the clock's present second), `ath` (the SHA-256 of
  /// `access_token`, when not empty: a proof that goes with a token to a resource server) and
  /// `nonce` (when not empty: the last `DPoP-Nonce` the server sent).
  ///
  /// Throws `Error{credential_errc::invalid_material}` for a method that is not an HTTP token,
  /// a URL that is not absolute http(s), or a nonce with bytes outside the visible ASCII range
  /// (RFC 9449 section 8.1: `NQCHAR`), never quoting the URL past its origin.
  std::string proof(std::string_view method, std::string_view url, std::string_view access_token = {},
                    std::string_view nonce = {}, const Clock& clock = system_clock()) const;

  jose::Algorithm algorithm() const noexcept;
  /// The RFC 7638 thumbprint of the public key: what a bound token's `cnf.jkt` holds.
  const std::string& thumbprint() const noexcept;
  jose::PublicKey public_key() const;

 private:
  struct Impl;
  explicit DpopKey(std::shared_ptr<const Impl> impl) noexcept : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

/// The longest nonce a proof carries or the broker keeps.
inline constexpr std::size_t max_dpop_nonce_bytes = 1024;

/// Whether `nonce` may go in a proof: at most `max_dpop_nonce_bytes` of RFC 9449's `NQCHAR`
/// (visible ASCII but `"` and `\`). The empty nonce is "none".
bool is_dpop_nonce(std::string_view nonce) noexcept;

/// "DpopKey{alg=ES256, jkt=...}": the thumbprint is public, the private key never shown.
std::string to_string(const DpopKey& key);

}  // namespace awaken
