// The policy every decoded key passes (keys.cpp), shared by the JWK decoders (jwk_keys.cpp) and
// the PEM ones.
#pragma once

#include <memory>
#include <string_view>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <awaken/error.hpp>
#include <awaken/jose/keys.hpp>

#include "core/openssl_ptr.hpp"
#include "jose/key_holder.hpp"

namespace awaken::jose::detail {

inline constexpr int min_rsa_bits = 2048;
// OpenSSL refuses larger moduli for public-key operations (OPENSSL_RSA_MAX_MODULUS_BITS).
inline constexpr int max_rsa_bits = 16384;

using BnPtr = awaken::detail::OpensslPtr<BIGNUM, BN_free>;
using PkeyCtxPtr = awaken::detail::OpensslPtr<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;

/// Throws `Error{code, context}`.
[[noreturn]] void key_error(jose_errc code, std::string_view context);

/// What to blame when a decoded key turns out unusable.
struct KeyOrigin {
  const char* context;  // e.g. "PublicKey::from_pem"
  jose_errc invalid;    // invalid_jwk or invalid_private_key
  bool is_private;
};

/// A holder of `pkey`, already classified.
std::shared_ptr<const KeyHolder> share(EvpPkeyPtr pkey, KeyType type, Curve curve, int bits);
/// Classifies a decoded key and enforces the policy every key source shares: RSA of 2048 to
/// 16384 bits with an odd exponent of at least 3, EC on P-256/384/521 with its point checked,
/// the private numbers present when `origin.is_private`.
std::shared_ptr<const KeyHolder> make_holder(EvpPkeyPtr pkey, const KeyOrigin& origin);
/// The curve of an OpenSSL group or JOSE curve name; `Curve::none` for any other.
Curve curve_from_group_name(std::string_view name) noexcept;
/// A key of `type` from the parameters in `bld`: `selection` is EVP_PKEY_PUBLIC_KEY,
/// EVP_PKEY_KEYPAIR or EVP_PKEY_KEY_PARAMETERS. Null when OpenSSL refuses them.
EvpPkeyPtr pkey_from_params(const char* type, OSSL_PARAM_BLD* bld, int selection = EVP_PKEY_PUBLIC_KEY);

}  // namespace awaken::jose::detail
