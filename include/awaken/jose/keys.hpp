// Public and private keys for JWS, built once from JWK or PEM and shared.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include <awaken/redacted_string.hpp>

namespace awaken::jose {

/// JWS algorithms awaken signs and verifies (RFC 7518 section 3.1).
enum class Algorithm { rs256, rs384, rs512, ps256, ps384, ps512, es256, es384, es512 };

/// "RS256" and so on.
std::string_view to_string(Algorithm alg) noexcept;
/// The algorithm named `name` (case-sensitive), or nullopt; "none" and HMAC are never accepted.
std::optional<Algorithm> parse_algorithm(std::string_view name) noexcept;

enum class KeyType { rsa, ec };
enum class Curve { none, p256, p384, p521 };

namespace detail {
struct KeyHolder;  // owns the EVP_PKEY; defined in the compiled part
}

/// An immutable public key. Copies share one underlying key, so copying is cheap and
/// verification never re-parses the key.
///
/// Thread safety: immutable after construction; safe to use from any number of threads.
class PublicKey {
 public:
  /// From a JWK object: `kty` "RSA" (`n`, `e`; modulus of at least 2048 bits) or "EC" (`crv`
  /// P-256/P-384/P-521, `x`, `y` of exactly the field size, the point checked to be on the
  /// curve). A JWK that carries private members (`d`, `p`, ...) is refused. Throws
  /// `awaken::Error` with `jose_errc`: `invalid_jwk` (not an object; a member missing, of the
  /// wrong type, not base64url, zero-padded; an even or < 3 exponent; private members),
  /// `unsupported_key_type` (`kty`, `crv`, a modulus over 16384 bits), `weak_key`,
  /// `point_not_on_curve`.
  static PublicKey from_jwk(const nlohmann::json& jwk);
  /// From the JSON text of a JWK; `malformed_json` when the text is not JSON.
  static PublicKey from_jwk_json(std::string_view json);
  /// From a PEM "PUBLIC KEY" (SubjectPublicKeyInfo), with the same checks as `from_jwk`. Text
  /// that is not such a PEM (including a private key or PKCS#1 "RSA PUBLIC KEY") fails with
  /// `invalid_jwk`; other key types and curves with `unsupported_key_type`.
  static PublicKey from_pem(std::string_view pem);

  KeyType type() const noexcept;
  Curve curve() const noexcept;  ///< Curve::none for RSA
  int bits() const noexcept;     ///< modulus or field size in bits
  /// Whether `alg` fits this key: RS and PS for RSA, ES256/384/512 for P-256/384/521.
  bool supports(Algorithm alg) const noexcept;

  /// The key as a JWK holding only its required public members (`crv`, `kty`, `x`, `y` for EC;
  /// `e`, `kty`, `n` for RSA), which RFC 7638 orders lexicographically as `dump()` writes them.
  nlohmann::json to_jwk() const;
  /// The RFC 7638 JWK SHA-256 thumbprint, unpadded base64url (DPoP's `jkt`).
  std::string thumbprint() const;

  const std::shared_ptr<const detail::KeyHolder>& holder() const noexcept { return key_; }

 private:
  explicit PublicKey(std::shared_ptr<const detail::KeyHolder> key) noexcept : key_(std::move(key)) {}
  friend class PrivateKey;
  std::shared_ptr<const detail::KeyHolder> key_;
};

/// An immutable private key for signing: RSA (at least 2048 bits) or EC P-256/384/521, read from
/// a PEM "PRIVATE KEY" (PKCS#8), "RSA PRIVATE KEY" (PKCS#1) or "EC PRIVATE KEY" (SEC 1).
/// Encrypted PEMs are refused. The key material stays inside the crypto library; nothing here
/// prints it.
///
/// Thread safety: immutable after construction; safe to use from any number of threads.
class PrivateKey {
 public:
  /// Throws `awaken::Error` with `jose_errc::invalid_private_key` (not an unencrypted private
  /// key PEM), `weak_key`, `unsupported_key_type` (another key type or curve) or
  /// `input_too_large` (over 1 MiB); the message never contains the PEM.
  static PrivateKey from_pem(const RedactedString& pem);
  /// From the JSON text of a private JWK (RFC 7518 section 6): EC (`crv`, `x`, `y`, `d` of
  /// exactly the field size) or RSA (`n`, `e`, `d`, and either all of `p`, `q`, `dp`, `dq`,
  /// `qi` or none; `oth` refused). The private part must match the public one. Throws
  /// `awaken::Error` with `jose_errc`: `malformed_json`, `invalid_private_key` (a member
  /// missing, of the wrong type or not base64url, or halves that do not match),
  /// `unsupported_key_type`, `weak_key`, `input_too_large` (over 64 KiB). Decoded secret
  /// bytes are wiped; no text names them.
  static PrivateKey from_jwk(const RedactedString& jwk_json);
  /// A new EC key on `curve` (P-256 unless told), made in memory and never written anywhere.
  /// `unsupported_key_type` for Curve::none.
  static PrivateKey generate(Curve curve = Curve::p256);

  KeyType type() const noexcept;
  Curve curve() const noexcept;
  int bits() const noexcept;
  bool supports(Algorithm alg) const noexcept;
  /// The matching public key, holding only the public half.
  PublicKey public_key() const;

  const std::shared_ptr<const detail::KeyHolder>& holder() const noexcept { return key_; }

 private:
  explicit PrivateKey(std::shared_ptr<const detail::KeyHolder> key) noexcept : key_(std::move(key)) {}
  std::shared_ptr<const detail::KeyHolder> key_;
};

}  // namespace awaken::jose
