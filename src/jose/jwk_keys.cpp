// JWKs: public and private keys decoded from their JSON Web Key form (RFC 7517, RFC 7518
// section 6), and a public key exported to one.
#include <awaken/jose/keys.hpp>

#include <array>
#include <string>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
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
namespace {

using detail::BnPtr;
using detail::curve_from_group_name;
using detail::EvpPkeyPtr;
using detail::KeyHolder;
using detail::make_holder;
using detail::max_rsa_bits;
using detail::min_rsa_bits;
using detail::OpensslErrorScope;
using detail::pkey_from_params;
using detail::PkeyCtxPtr;
using detail::share;

[[noreturn]] void fail(jose_errc code, std::string_view context) { detail::key_error(code, context); }

// --- JWK ---------------------------------------------------------------------------------------

constexpr const char* private_members[] = {"d", "p", "q", "dp", "dq", "qi", "oth"};

const std::string& string_member(const nlohmann::json& jwk, const char* name) {
  const auto it = jwk.find(name);
  if (it == jwk.end() || !it->is_string()) {
    fail(jose_errc::invalid_jwk, std::string{"PublicKey::from_jwk: member '"} + name + "' missing or not a string");
  }
  return it->get_ref<const std::string&>();
}

std::string bytes_member(const nlohmann::json& jwk, const char* name) {
  std::error_code ec;
  std::string bytes = base64url_decode(string_member(jwk, name), ec);
  if (ec) {
    fail(jose_errc::invalid_jwk, std::string{"PublicKey::from_jwk: member '"} + name + "' is not base64url");
  }
  return bytes;
}

// A JWK integer: big-endian, non-empty, without leading zero bytes (RFC 7518 section 6.3.1).
std::string unsigned_member(const nlohmann::json& jwk, const char* name) {
  std::string bytes = bytes_member(jwk, name);
  if (bytes.empty() || bytes.front() == '\0') {
    fail(jose_errc::invalid_jwk, std::string{"PublicKey::from_jwk: member '"} + name + "' empty or zero-padded");
  }
  return bytes;
}

int bit_length(std::string_view big_endian) noexcept {
  auto top = static_cast<unsigned char>(big_endian.front());
  int top_bits = 0;
  for (; top != 0; top >>= 1) ++top_bits;
  return static_cast<int>((big_endian.size() - 1) * 8) + top_bits;
}

BnPtr to_bn(std::string_view big_endian) {
  BnPtr bn{BN_bin2bn(reinterpret_cast<const unsigned char*>(big_endian.data()), static_cast<int>(big_endian.size()),
                     nullptr)};
  if (!bn) throw std::bad_alloc{};
  return bn;
}

std::shared_ptr<const KeyHolder> rsa_from_jwk(const nlohmann::json& jwk) {
  const std::string n = unsigned_member(jwk, "n");
  const std::string e = unsigned_member(jwk, "e");
  const int bits = bit_length(n);
  if (bits < min_rsa_bits) {
    fail(jose_errc::weak_key, "PublicKey::from_jwk: RSA modulus of " + std::to_string(bits) + " bits");
  }
  if (bits > max_rsa_bits) {
    fail(jose_errc::unsupported_key_type, "PublicKey::from_jwk: RSA modulus of " + std::to_string(bits) + " bits");
  }
  if ((static_cast<unsigned char>(n.back()) & 1) == 0) {
    fail(jose_errc::invalid_jwk, "PublicKey::from_jwk: RSA modulus is even");
  }
  if ((static_cast<unsigned char>(e.back()) & 1) == 0 || (e.size() == 1 && e[0] < 3)) {
    fail(jose_errc::invalid_jwk, "PublicKey::from_jwk: RSA exponent is even or below 3");
  }
  if (e.size() > n.size()) fail(jose_errc::invalid_jwk, "PublicKey::from_jwk: RSA exponent");

  const BnPtr bn_n = to_bn(n);
  const BnPtr bn_e = to_bn(e);
  const awaken::detail::OpensslPtr<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free> bld{OSSL_PARAM_BLD_new()};
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    throw std::bad_alloc{};
  }
  EvpPkeyPtr pkey = pkey_from_params("RSA", bld.get());
  if (!pkey) fail(jose_errc::invalid_jwk, "PublicKey::from_jwk: RSA key refused");
  return make_holder(std::move(pkey), detail::KeyOrigin{"PublicKey::from_jwk", jose_errc::invalid_jwk, false});
}

// The domain parameters of the three curves, imported once. A key that copies them and then
// takes its point costs about a quarter of an import by group name, which builds the group
// (its Montgomery constants among others) anew each time; WIT-SVIDs bring a key per token.
const EVP_PKEY* curve_parameters(Curve curve) {
  struct Parameters {
    static EvpPkeyPtr import(const char* group) {
      const awaken::detail::OpensslPtr<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free> bld{OSSL_PARAM_BLD_new()};
      if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1) return nullptr;
      return pkey_from_params("EC", bld.get(), EVP_PKEY_KEY_PARAMETERS);
    }
    EvpPkeyPtr p256 = import("prime256v1");
    EvpPkeyPtr p384 = import("secp384r1");
    EvpPkeyPtr p521 = import("secp521r1");
  };
  static const Parameters parameters;
  switch (curve) {
    case Curve::p256: return parameters.p256.get();
    case Curve::p384: return parameters.p384.get();
    case Curve::p521: return parameters.p521.get();
    case Curve::none: break;
  }
  return nullptr;
}

// The public key at `point` (SEC 1 uncompressed) on `curve` (`group` by name); null when OpenSSL
// refuses the point. Either path decodes it with EC_POINT_oct2point, which refuses a coordinate
// not below the prime and a point off the curve: the public-key quick check in full.
EvpPkeyPtr ec_public_key(Curve curve, const char* group, std::string_view point) {
  if (const EVP_PKEY* parameters = curve_parameters(curve)) {
    EvpPkeyPtr pkey{EVP_PKEY_new()};
    if (!pkey) throw std::bad_alloc{};
    if (EVP_PKEY_copy_parameters(pkey.get(), parameters) == 1) {
      if (EVP_PKEY_set1_encoded_public_key(pkey.get(), reinterpret_cast<const unsigned char*>(point.data()),
                                           point.size()) != 1)
        return nullptr;
      return pkey;
    }
  }
  const awaken::detail::OpensslPtr<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free> bld{OSSL_PARAM_BLD_new()};
  if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1) {
    throw std::bad_alloc{};
  }
  return pkey_from_params("EC", bld.get());
}

std::shared_ptr<const KeyHolder> ec_from_jwk(const nlohmann::json& jwk) {
  const std::string& crv = string_member(jwk, "crv");
  const char* group = nullptr;
  Curve curve = Curve::none;
  if (crv == "P-256") {
    group = "prime256v1";
    curve = Curve::p256;
  } else if (crv == "P-384") {
    group = "secp384r1";
    curve = Curve::p384;
  } else if (crv == "P-521") {
    group = "secp521r1";
    curve = Curve::p521;
  } else {
    fail(jose_errc::unsupported_key_type, "PublicKey::from_jwk: crv");
  }
  const std::string x = bytes_member(jwk, "x");
  const std::string y = bytes_member(jwk, "y");
  const auto size = static_cast<std::size_t>(detail::field_bytes(curve));
  if (x.size() != size || y.size() != size) {
    fail(jose_errc::invalid_jwk, "PublicKey::from_jwk: EC coordinate of " + std::to_string(x.size()) + "/" +
                                     std::to_string(y.size()) + " bytes for " + crv);
  }
  std::string point;
  point.reserve(1 + 2 * size);
  point += '\x04';  // SEC 1 uncompressed point
  point += x;
  point += y;

  // With well-sized coordinates, the import only fails on a point outside the curve (or a
  // coordinate not below the field prime).
  EvpPkeyPtr pkey = ec_public_key(curve, group, point);
  if (!pkey) fail(jose_errc::point_not_on_curve, "PublicKey::from_jwk: EC point");
  // Checked as it was decoded, on the curve the JWK names: `make_holder` would only repeat that
  // (a WIT-SVID brings a key per token, so it counts).
  return share(std::move(pkey), KeyType::ec, curve, detail::curve_bits(curve));
}

// --- private JWK -------------------------------------------------------------------------------

constexpr std::size_t max_private_jwk_bytes = 64 * 1024;

[[noreturn]] void bad_private(const std::string& why) {
  fail(jose_errc::invalid_private_key, "PrivateKey::from_jwk: " + why);
}

// A secret JWK member decoded into a buffer wiped on destruction.
awaken::detail::Wiped secret_member(const nlohmann::json& jwk, const char* name) {
  const auto it = jwk.find(name);
  if (it == jwk.end() || !it->is_string()) bad_private(std::string{"member '"} + name + "' missing or not a string");
  awaken::detail::Wiped out;
  std::error_code ec;
  out.text = base64url_decode(it->get_ref<const std::string&>(), ec);
  if (ec || out.text.empty()) bad_private(std::string{"member '"} + name + "' empty or not base64url");
  return out;
}

// A BIGNUM cleared on free, for secret numbers.
using SecretBnPtr = awaken::detail::OpensslPtr<BIGNUM, BN_clear_free>;

SecretBnPtr secret_bn(const nlohmann::json& jwk, const char* name) {
  const auto bytes = secret_member(jwk, name);
  SecretBnPtr bn{BN_secure_new()};
  if (!bn || BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.text.data()), static_cast<int>(bytes.text.size()),
                       bn.get()) == nullptr) {
    throw std::bad_alloc{};
  }
  return bn;
}

EvpPkeyPtr keypair_from_params(const char* type, OSSL_PARAM_BLD* bld) {
  EvpPkeyPtr out = pkey_from_params(type, bld, EVP_PKEY_KEYPAIR);
  if (!out) return nullptr;
  // The private numbers must belong to the public ones.
  const PkeyCtxPtr check{EVP_PKEY_CTX_new_from_pkey(nullptr, out.get(), nullptr)};
  if (!check || EVP_PKEY_pairwise_check(check.get()) != 1) return nullptr;
  return out;
}

EvpPkeyPtr ec_private_from_jwk(const nlohmann::json& jwk) {
  const auto crv = jwk.find("crv");
  if (crv == jwk.end() || !crv->is_string()) bad_private("member 'crv' missing or not a string");
  Curve curve = curve_from_group_name(crv->get_ref<const std::string&>());
  if (curve == Curve::none || crv->get_ref<const std::string&>().rfind("P-", 0) != 0)
    fail(jose_errc::unsupported_key_type, "PrivateKey::from_jwk: crv");
  const char* group = curve == Curve::p256 ? "prime256v1" : curve == Curve::p384 ? "secp384r1" : "secp521r1";
  const auto size = static_cast<std::size_t>(detail::field_bytes(curve));
  const auto x = secret_member(jwk, "x");
  const auto y = secret_member(jwk, "y");
  const auto d = secret_member(jwk, "d");
  if (x.text.size() != size || y.text.size() != size || d.text.size() != size)
    bad_private("EC member of the wrong size for " + crv->get_ref<const std::string&>());
  std::string point;
  point.reserve(1 + 2 * size);
  point += '\x04';
  point += x.text;
  point += y.text;
  SecretBnPtr priv{BN_secure_new()};
  if (!priv ||
      BN_bin2bn(reinterpret_cast<const unsigned char*>(d.text.data()), static_cast<int>(size), priv.get()) == nullptr)
    throw std::bad_alloc{};
  const awaken::detail::OpensslPtr<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free> bld{OSSL_PARAM_BLD_new()};
  if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, priv.get()) != 1) {
    throw std::bad_alloc{};
  }
  return keypair_from_params("EC", bld.get());
}

EvpPkeyPtr rsa_private_from_jwk(const nlohmann::json& jwk) {
  if (jwk.contains("oth")) fail(jose_errc::unsupported_key_type, "PrivateKey::from_jwk: multi-prime RSA ('oth')");
  const BnPtr n = to_bn(unsigned_member(jwk, "n"));
  const BnPtr e = to_bn(unsigned_member(jwk, "e"));
  const SecretBnPtr d = secret_bn(jwk, "d");
  static constexpr const char* crt_members[] = {"p", "q", "dp", "dq", "qi"};
  static constexpr const char* crt_params[] = {OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2,
                                               OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2,
                                               OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
  std::size_t present = 0;
  for (const char* m : crt_members) present += jwk.contains(m) ? 1 : 0;
  if (present != 0 && present != 5) bad_private("RSA CRT members p, q, dp, dq, qi must come all together");
  const awaken::detail::OpensslPtr<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free> bld{OSSL_PARAM_BLD_new()};
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_D, d.get()) != 1) {
    throw std::bad_alloc{};
  }
  std::array<SecretBnPtr, 5> crt;
  if (present == 5) {
    for (std::size_t i = 0; i < crt.size(); ++i) {
      crt[i] = secret_bn(jwk, crt_members[i]);
      if (OSSL_PARAM_BLD_push_BN(bld.get(), crt_params[i], crt[i].get()) != 1) throw std::bad_alloc{};
    }
  }
  return keypair_from_params("RSA", bld.get());
}

std::string bn_param(const EVP_PKEY* pkey, const char* name, int pad) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &raw) != 1) fail(jose_errc::invalid_jwk, "PublicKey::to_jwk: export");
  const BnPtr bn{raw};
  const int size = pad > 0 ? pad : BN_num_bytes(bn.get());
  std::string out(static_cast<std::size_t>(size), '\0');
  if (BN_bn2binpad(bn.get(), reinterpret_cast<unsigned char*>(out.data()), size) != size)
    fail(jose_errc::invalid_jwk, "PublicKey::to_jwk: export");
  return out;
}

}  // namespace

PublicKey PublicKey::from_jwk(const nlohmann::json& jwk) {
  const OpensslErrorScope errors;
  if (!jwk.is_object()) fail(jose_errc::invalid_jwk, "PublicKey::from_jwk: not a JSON object");
  for (const char* name : private_members) {
    if (jwk.contains(name)) {
      fail(jose_errc::invalid_jwk, std::string{"PublicKey::from_jwk: private member '"} + name + "' present");
    }
  }
  const std::string& kty = string_member(jwk, "kty");
  if (kty == "RSA") return PublicKey{rsa_from_jwk(jwk)};
  if (kty == "EC") return PublicKey{ec_from_jwk(jwk)};
  fail(jose_errc::unsupported_key_type, "PublicKey::from_jwk: kty");
}

PublicKey PublicKey::from_jwk_json(std::string_view json) {
  nlohmann::json jwk = awaken::detail::parse_bounded_json(json);
  if (jwk.is_discarded()) {
    fail(jose_errc::malformed_json, "PublicKey::from_jwk_json (" + std::to_string(json.size()) + " bytes)");
  }
  return from_jwk(jwk);
}

nlohmann::json PublicKey::to_jwk() const {
  const OpensslErrorScope errors;
  if (!key_) fail(jose_errc::invalid_jwk, "PublicKey::to_jwk: empty key");
  nlohmann::json jwk = nlohmann::json::object();
  if (key_->type == KeyType::rsa) {
    jwk["kty"] = "RSA";
    jwk["n"] = base64url_encode(bn_param(key_->pkey, OSSL_PKEY_PARAM_RSA_N, 0));
    jwk["e"] = base64url_encode(bn_param(key_->pkey, OSSL_PKEY_PARAM_RSA_E, 0));
    return jwk;
  }
  const int size = detail::field_bytes(key_->curve);
  jwk["kty"] = "EC";
  jwk["crv"] = key_->curve == Curve::p256 ? "P-256" : key_->curve == Curve::p384 ? "P-384" : "P-521";
  jwk["x"] = base64url_encode(bn_param(key_->pkey, OSSL_PKEY_PARAM_EC_PUB_X, size));
  jwk["y"] = base64url_encode(bn_param(key_->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, size));
  return jwk;
}

std::string PublicKey::thumbprint() const { return sha256_base64url(to_jwk().dump()); }

PrivateKey PrivateKey::from_jwk(const RedactedString& jwk_json) {
  const OpensslErrorScope errors;
  const std::string ctx = "PrivateKey::from_jwk (" + std::to_string(jwk_json.size()) + " bytes)";
  if (jwk_json.size() > max_private_jwk_bytes) fail(jose_errc::input_too_large, ctx);
  nlohmann::json jwk = awaken::detail::parse_bounded_json(jwk_json.reveal());
  // The parsed members hold the secret as text: wipe them before the document is freed.
  const awaken::detail::WipeOnExit wipe{jwk};
  if (jwk.is_discarded() || !jwk.is_object()) fail(jose_errc::malformed_json, ctx + ": not a JSON object");
  const auto kty = jwk.find("kty");
  if (kty == jwk.end() || !kty->is_string()) bad_private("member 'kty' missing or not a string");
  EvpPkeyPtr pkey;
  if (kty->get_ref<const std::string&>() == "EC") {
    pkey = ec_private_from_jwk(jwk);
  } else if (kty->get_ref<const std::string&>() == "RSA") {
    pkey = rsa_private_from_jwk(jwk);
  } else {
    fail(jose_errc::unsupported_key_type, ctx + ": kty");
  }
  if (!pkey) bad_private("the key was refused, or its private part does not match its public part");
  return PrivateKey{
      make_holder(std::move(pkey), detail::KeyOrigin{"PrivateKey::from_jwk", jose_errc::invalid_private_key, true})};
}

}  // namespace awaken::jose
