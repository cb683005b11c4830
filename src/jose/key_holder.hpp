// The compiled side of PublicKey/PrivateKey: an owned EVP_PKEY and what was learned about it.
#pragma once

#include <memory>
#include <string_view>

#include <openssl/evp.h>

#include <awaken/jose/keys.hpp>

#include "core/openssl_ptr.hpp"

namespace awaken::jose::detail {

struct KeyHolder {
  KeyHolder(EVP_PKEY* key, KeyType key_type, Curve key_curve, int key_bits) noexcept
      : pkey(key), type(key_type), curve(key_curve), bits(key_bits) {}
  ~KeyHolder() { EVP_PKEY_free(pkey); }
  KeyHolder(const KeyHolder&) = delete;
  KeyHolder& operator=(const KeyHolder&) = delete;

  // Not const-qualified because OpenSSL's init functions take EVP_PKEY*; never modified.
  EVP_PKEY* const pkey;
  const KeyType type;
  const Curve curve;
  const int bits;
};

using EvpPkeyPtr = awaken::detail::OpensslPtr<EVP_PKEY, EVP_PKEY_free>;

/// Bytes of one coordinate (and of R or S in a JOSE ECDSA signature); 0 for Curve::none.
constexpr int field_bytes(Curve c) noexcept {
  switch (c) {
    case Curve::p256: return 32;
    case Curve::p384: return 48;
    case Curve::p521: return 66;
    case Curve::none: break;
  }
  return 0;
}

/// The size of a curve's order in bits, as EVP_PKEY_get_bits gives it; 0 for Curve::none.
constexpr int curve_bits(Curve c) noexcept {
  switch (c) {
    case Curve::p256: return 256;
    case Curve::p384: return 384;
    case Curve::p521: return 521;
    case Curve::none: break;
  }
  return 0;
}

/// The digest an algorithm signs with, fetched once per process; nullptr if unavailable.
const EVP_MD* digest_for(Algorithm alg) noexcept;

/// Whether `alg` fits the key (false for a null holder).
bool key_supports(const KeyHolder* key, Algorithm alg) noexcept;

/// Pops OpenSSL errors raised in its scope so that failures we report leave nothing behind,
/// without discarding errors a caller had queued before.
class OpensslErrorScope {
 public:
  OpensslErrorScope() noexcept;
  ~OpensslErrorScope();
  OpensslErrorScope(const OpensslErrorScope&) = delete;
  OpensslErrorScope& operator=(const OpensslErrorScope&) = delete;
};

}  // namespace awaken::jose::detail
