// JWS compact serialization: sign, parse, verify (RFC 7515, algorithms of RFC 7518).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <system_error>

#include <nlohmann/json.hpp>

#include <awaken/jose/keys.hpp>

namespace awaken::jose {

/// Default bound on a compact JWS: 64 KiB.
inline constexpr std::size_t default_max_jws_bytes = 64 * 1024;

/// Signs `payload` and returns `base64url(header).base64url(payload).base64url(signature)`.
/// `header` must be a JSON object (or null); its `alg` member is set to `alg`. ECDSA signatures
/// are written in the JOSE form `R || S`. Throws `awaken::Error`: `algorithm_key_mismatch` when
/// `alg` does not fit the key, `malformed_json` when `header` is neither an object nor null (or
/// holds invalid UTF-8), `signing_failed` when the crypto library fails.
std::string sign_compact(Algorithm alg, const nlohmann::json& header, std::string_view payload, const PrivateKey& key);

/// Signs many payloads under one protected header, encoded once: for proofs made per request
/// (DPoP, workload proof tokens), where only the claims change. `sign(p)` returns what
/// `sign_compact(alg, header, p, key)` would.
///
/// Thread safety: immutable after construction; `sign` may run on any number of threads at once.
class JwsSigner {
 public:
  /// Throws as `sign_compact` does for `alg`, `header` and `key`.
  JwsSigner(Algorithm alg, const nlohmann::json& header, PrivateKey key);

  std::string sign(std::string_view payload) const;

  Algorithm algorithm() const noexcept { return alg_; }
  const PrivateKey& key() const noexcept { return key_; }

 private:
  Algorithm alg_;
  PrivateKey key_;
  std::string encoded_header_;  // base64url(header) "."
};

/// Unpadded base64url of the SHA-256 of `bytes`: the form of DPoP's `ath`, of a workload proof
/// token's `wth`, `ath`, `tth` and `oth` values, and of a JWK thumbprint.
std::string sha256_base64url(std::string_view bytes);

/// `bytes` bytes from OpenSSL's random generator, as unpadded base64url (a `jti`). Throws
/// `awaken::Error{jose_errc::signing_failed}` if the generator fails.
std::string random_base64url(std::size_t bytes = 16);

/// A compact JWS, parsed but not yet verified.
///
/// Parsing checks, in this order: the size bound (`input_too_large`), exactly three segments
/// with a non-empty header (`malformed_jws`), strict base64url (`malformed_base64url`), a
/// JSON-object header (`malformed_json`) whose `alg` is one of `Algorithm`
/// (`unsupported_algorithm`, so `none` and HMAC are refused before anything else is looked at),
/// a non-empty signature (`malformed_jws`), and no `crit` header (`malformed_jws`). The payload
/// is left as bytes.
///
/// Thread safety: immutable after parsing.
class CompactJws {
 public:
  /// Throws `awaken::Error` with `jose_errc`.
  static CompactJws parse(std::string_view token, std::size_t max_bytes = default_max_jws_bytes);

  Algorithm algorithm() const noexcept { return alg_; }
  const nlohmann::json& header() const noexcept { return header_; }
  /// The decoded payload bytes.
  const std::string& payload() const noexcept { return payload_; }
  /// `base64url(header) "." base64url(payload)`, the bytes the signature covers.
  std::string_view signing_input() const noexcept { return signing_input_; }
  /// The decoded signature bytes (for ECDSA, `R || S`).
  const std::string& signature() const noexcept { return signature_; }

  /// Verifies the signature with `key`. Fails with `algorithm_key_mismatch` when the header's
  /// `alg` does not fit the key type or curve, and with `invalid_signature` when the signature
  /// does not verify (an ECDSA signature of any length other than exactly twice the field size
  /// is invalid).
  void verify(const PublicKey& key) const;
  /// As above, without throwing; returns true when the signature verifies.
  bool verify(const PublicKey& key, std::error_code& ec) const noexcept;

 private:
  CompactJws() = default;
  Algorithm alg_{};
  nlohmann::json header_;
  std::string payload_;
  std::string signing_input_;
  std::string signature_;
};

}  // namespace awaken::jose
