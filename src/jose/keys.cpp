#include <awaken/jose/keys.hpp>

#include <array>
#include <cstring>
#include <string>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <nlohmann/json.hpp>

#include <awaken/error.hpp>
#include <awaken/jose/base64url.hpp>
#include <awaken/jose/jws.hpp>

#include "core/bounded_json.hpp"
#include "core/openssl_ptr.hpp"
#include "core/wipe.hpp"
#include "jose/key_decoding.hpp"
#include "jose/key_holder.hpp"

namespace awaken::jose {
namespace detail {

OpensslErrorScope::OpensslErrorScope() noexcept { ERR_set_mark(); }
OpensslErrorScope::~OpensslErrorScope() { ERR_pop_to_mark(); }

bool key_supports(const KeyHolder* key, Algorithm alg) noexcept {
  if (key == nullptr) return false;
  switch (alg) {
    case Algorithm::rs256:
    case Algorithm::rs384:
    case Algorithm::rs512:
    case Algorithm::ps256:
    case Algorithm::ps384:
    case Algorithm::ps512: return key->type == KeyType::rsa;
    case Algorithm::es256: return key->type == KeyType::ec && key->curve == Curve::p256;
    case Algorithm::es384: return key->type == KeyType::ec && key->curve == Curve::p384;
    case Algorithm::es512: return key->type == KeyType::ec && key->curve == Curve::p521;
  }
  return false;
}

void key_error(jose_errc code, std::string_view context) { throw_error(make_error_code(code), context); }

std::shared_ptr<const KeyHolder> share(EvpPkeyPtr pkey, KeyType type, Curve curve, int bits) {
  auto* holder = new KeyHolder(pkey.get(), type, curve, bits);
  pkey.release();
  // On a failed control-block allocation, shared_ptr deletes the holder, which frees the key.
  return std::shared_ptr<const KeyHolder>(holder);
}

Curve curve_from_group_name(std::string_view name) noexcept {
  if (name == "prime256v1" || name == "P-256" || name == "secp256r1") return Curve::p256;
  if (name == "secp384r1" || name == "P-384") return Curve::p384;
  if (name == "secp521r1" || name == "P-521") return Curve::p521;
  return Curve::none;
}

namespace {
bool has_bn_param(const EVP_PKEY* pkey, const char* name) {
  BIGNUM* bn = nullptr;
  const bool ok = EVP_PKEY_get_bn_param(pkey, name, &bn) == 1 && bn != nullptr;
  BN_clear_free(bn);
  return ok;
}
}  // namespace

// Classifies a decoded key and enforces the policy every key source shares.
std::shared_ptr<const KeyHolder> make_holder(EvpPkeyPtr pkey, const KeyOrigin& origin) {
  const std::string ctx = origin.context;
  if (EVP_PKEY_is_a(pkey.get(), "RSA")) {
    const int bits = EVP_PKEY_get_bits(pkey.get());
    if (bits < min_rsa_bits) {
      key_error(jose_errc::weak_key, ctx + ": RSA modulus of " + std::to_string(bits) + " bits");
    }
    if (bits > max_rsa_bits) {
      key_error(jose_errc::unsupported_key_type, ctx + ": RSA modulus of " + std::to_string(bits) + " bits");
    }
    BIGNUM* raw_e = nullptr;
    if (EVP_PKEY_get_bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_E, &raw_e) != 1) {
      key_error(origin.invalid, ctx + ": RSA key without public exponent");
    }
    const BnPtr e{raw_e};
    if (!BN_is_odd(e.get()) || BN_num_bits(e.get()) < 2) {
      key_error(origin.invalid, ctx + ": RSA public exponent is even or below 3");
    }
    if (origin.is_private && !has_bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_D)) {
      key_error(origin.invalid, ctx + ": not a private key");
    }
    return share(std::move(pkey), KeyType::rsa, Curve::none, bits);
  }
  if (EVP_PKEY_is_a(pkey.get(), "EC")) {
    std::array<char, 64> name{};
    std::size_t len = 0;
    Curve curve = Curve::none;
    if (EVP_PKEY_get_group_name(pkey.get(), name.data(), name.size(), &len) == 1) {
      curve = curve_from_group_name(std::string_view{name.data(), len});
    }
    if (curve == Curve::none) key_error(jose_errc::unsupported_key_type, ctx + ": EC curve");
    if (origin.is_private) {
      if (!has_bn_param(pkey.get(), OSSL_PKEY_PARAM_PRIV_KEY)) {
        key_error(origin.invalid, ctx + ": not a private key");
      }
    } else {
      // The quick check (the point on the curve, not at infinity, coordinates below the prime)
      // is the whole check on these curves: their order is prime (cofactor 1), so the full
      // check's last step, n * Q = O, holds for every such point and would only cost a scalar
      // multiplication, about as much as a signature verification.
      const PkeyCtxPtr check{EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr)};
      if (!check || EVP_PKEY_public_check_quick(check.get()) != 1) {
        key_error(jose_errc::point_not_on_curve, ctx + ": EC public key check");
      }
    }
    const int bits = EVP_PKEY_get_bits(pkey.get());
    return share(std::move(pkey), KeyType::ec, curve, bits);
  }
  key_error(jose_errc::unsupported_key_type, ctx + ": key type");
}

// A key of `type` from the parameters in `bld`: `selection` is EVP_PKEY_PUBLIC_KEY or
// EVP_PKEY_KEYPAIR. Null when OpenSSL refuses them.
EvpPkeyPtr pkey_from_params(const char* type, OSSL_PARAM_BLD* bld, int selection) {
  const awaken::detail::OpensslPtr<OSSL_PARAM, OSSL_PARAM_free> params{OSSL_PARAM_BLD_to_param(bld)};
  if (!params) throw std::bad_alloc{};
  const PkeyCtxPtr ctx{EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr)};
  EVP_PKEY* pkey = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &pkey, selection, params.get()) != 1) {
    return nullptr;
  }
  return EvpPkeyPtr{pkey};
}

}  // namespace detail

namespace {

using detail::EvpPkeyPtr;
using detail::KeyOrigin;
using detail::OpensslErrorScope;
using detail::PkeyCtxPtr;

constexpr std::size_t max_pem_bytes = std::size_t{1} << 20;

[[noreturn]] void fail(jose_errc code, std::string_view context) { detail::key_error(code, context); }

// --- PEM ---------------------------------------------------------------------------------------

// Refuses every passphrase request, so encrypted PEMs fail instead of prompting on a terminal.
int refuse_passphrase(char*, std::size_t, std::size_t*, const OSSL_PARAM[], void*) { return 0; }

EvpPkeyPtr decode(const unsigned char* data, std::size_t len, const char* input_type, const char* structure,
                  int selection) {
  EVP_PKEY* pkey = nullptr;
  const awaken::detail::OpensslPtr<OSSL_DECODER_CTX, OSSL_DECODER_CTX_free> dctx{
      OSSL_DECODER_CTX_new_for_pkey(&pkey, input_type, structure, nullptr, selection, nullptr, nullptr)};
  if (!dctx) return nullptr;
  if (OSSL_DECODER_CTX_set_passphrase_cb(dctx.get(), refuse_passphrase, nullptr) != 1) {
    return nullptr;
  }
  if (OSSL_DECODER_from_data(dctx.get(), &data, &len) != 1) {
    EVP_PKEY_free(pkey);
    return nullptr;
  }
  return EvpPkeyPtr{pkey};
}

// The decoders take PKCS#1 "RSA PUBLIC KEY" even when asked for SubjectPublicKeyInfo, so the
// PEM label is checked here before the DER is decoded.
EvpPkeyPtr decode_public_pem(std::string_view pem) {
  const awaken::detail::OpensslPtr<BIO, BIO_free> bio{BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))};
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* der = nullptr;
  long der_len = 0;
  EvpPkeyPtr pkey;
  if (bio && PEM_read_bio(bio.get(), &name, &header, &der, &der_len) == 1 &&
      std::strcmp(name, PEM_STRING_PUBLIC) == 0 && header[0] == '\0' && der_len > 0) {
    pkey = decode(der, static_cast<std::size_t>(der_len), "DER", "SubjectPublicKeyInfo", EVP_PKEY_PUBLIC_KEY);
  }
  OPENSSL_free(name);
  OPENSSL_free(header);
  OPENSSL_free(der);
  return pkey;
}

}  // namespace

// --- Algorithm ---------------------------------------------------------------------------------

std::string_view to_string(Algorithm alg) noexcept {
  switch (alg) {
    case Algorithm::rs256: return "RS256";
    case Algorithm::rs384: return "RS384";
    case Algorithm::rs512: return "RS512";
    case Algorithm::ps256: return "PS256";
    case Algorithm::ps384: return "PS384";
    case Algorithm::ps512: return "PS512";
    case Algorithm::es256: return "ES256";
    case Algorithm::es384: return "ES384";
    case Algorithm::es512: return "ES512";
  }
  return "unknown";
}

std::optional<Algorithm> parse_algorithm(std::string_view name) noexcept {
  static constexpr Algorithm all[] = {Algorithm::rs256, Algorithm::rs384, Algorithm::rs512,
                                      Algorithm::ps256, Algorithm::ps384, Algorithm::ps512,
                                      Algorithm::es256, Algorithm::es384, Algorithm::es512};
  for (const Algorithm alg : all) {
    if (to_string(alg) == name) return alg;
  }
  return std::nullopt;
}

// --- PublicKey ---------------------------------------------------------------------------------

PublicKey PublicKey::from_pem(std::string_view pem) {
  const OpensslErrorScope errors;
  const std::string ctx = "PublicKey::from_pem (" + std::to_string(pem.size()) + " bytes)";
  if (pem.size() > max_pem_bytes) fail(jose_errc::input_too_large, ctx);
  EvpPkeyPtr pkey = decode_public_pem(pem);
  if (!pkey) fail(jose_errc::invalid_jwk, ctx + ": not a PEM public key");
  return PublicKey{
      detail::make_holder(std::move(pkey), KeyOrigin{"PublicKey::from_pem", jose_errc::invalid_jwk, false})};
}

KeyType PublicKey::type() const noexcept { return key_ ? key_->type : KeyType::rsa; }
Curve PublicKey::curve() const noexcept { return key_ ? key_->curve : Curve::none; }
int PublicKey::bits() const noexcept { return key_ ? key_->bits : 0; }
bool PublicKey::supports(Algorithm alg) const noexcept { return detail::key_supports(key_.get(), alg); }

// --- PrivateKey --------------------------------------------------------------------------------

PrivateKey PrivateKey::generate(Curve curve) {
  const OpensslErrorScope errors;
  const char* group = nullptr;
  switch (curve) {
    case Curve::p256: group = "P-256"; break;
    case Curve::p384: group = "P-384"; break;
    case Curve::p521: group = "P-521"; break;
    case Curve::none: fail(jose_errc::unsupported_key_type, "PrivateKey::generate: no curve");
  }
  EvpPkeyPtr pkey{EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", group)};
  if (!pkey) fail(jose_errc::signing_failed, "PrivateKey::generate");
  return PrivateKey{
      detail::make_holder(std::move(pkey), KeyOrigin{"PrivateKey::generate", jose_errc::invalid_private_key, true})};
}

PrivateKey PrivateKey::from_pem(const RedactedString& pem) {
  const OpensslErrorScope errors;
  const std::string ctx = "PrivateKey::from_pem (" + std::to_string(pem.size()) + " bytes)";
  if (pem.size() > max_pem_bytes) fail(jose_errc::input_too_large, ctx);
  EvpPkeyPtr pkey =
      decode(reinterpret_cast<const unsigned char*>(pem.reveal().data()), pem.size(), "PEM", nullptr, EVP_PKEY_KEYPAIR);
  if (!pkey) fail(jose_errc::invalid_private_key, ctx + ": not an unencrypted PEM private key");
  return PrivateKey{
      detail::make_holder(std::move(pkey), KeyOrigin{"PrivateKey::from_pem", jose_errc::invalid_private_key, true})};
}

KeyType PrivateKey::type() const noexcept { return key_ ? key_->type : KeyType::rsa; }
Curve PrivateKey::curve() const noexcept { return key_ ? key_->curve : Curve::none; }
int PrivateKey::bits() const noexcept { return key_ ? key_->bits : 0; }
bool PrivateKey::supports(Algorithm alg) const noexcept { return detail::key_supports(key_.get(), alg); }

PublicKey PrivateKey::public_key() const {
  const OpensslErrorScope errors;
  if (!key_) fail(jose_errc::invalid_private_key, "PrivateKey::public_key: empty key");
  // Export only the public half, so the PublicKey never carries the private numbers.
  OSSL_PARAM* raw = nullptr;
  if (EVP_PKEY_todata(key_->pkey, EVP_PKEY_PUBLIC_KEY, &raw) != 1) {
    fail(jose_errc::invalid_private_key, "PrivateKey::public_key: export");
  }
  const awaken::detail::OpensslPtr<OSSL_PARAM, OSSL_PARAM_free> params{raw};
  const PkeyCtxPtr ctx{EVP_PKEY_CTX_new_from_name(nullptr, key_->type == KeyType::rsa ? "RSA" : "EC", nullptr)};
  EVP_PKEY* pkey = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    fail(jose_errc::invalid_private_key, "PrivateKey::public_key: import");
  }
  return PublicKey{detail::share(EvpPkeyPtr{pkey}, key_->type, key_->curve, key_->bits)};
}

}  // namespace awaken::jose
