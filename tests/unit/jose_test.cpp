#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <nlohmann/json.hpp>

#include <awaken/error.hpp>
#include <awaken/jose/base64url.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/jose/keys.hpp>

#include "core/openssl_ptr.hpp"
#include "support/errors.hpp"
#include "support/jws_surgery.hpp"
#include "support/names.hpp"
// White-box: a few checks look at the EVP_PKEY behind a key.
#include "jose/key_holder.hpp"

namespace Catch {
template <>
struct StringMaker<std::error_code> {
  static std::string convert(const std::error_code& ec) {
    return std::string{ec.category().name()} + ":" + std::to_string(ec.value()) + " (" + ec.message() + ")";
  }
};
}  // namespace Catch

namespace {

using namespace awaken::jose;
using awaken::jose_errc;
using nlohmann::json;

std::error_code code(jose_errc e) { return awaken::make_error_code(e); }

template <class F>
std::string what_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const awaken::Error& e) {
    return e.what();
  }
  return {};
}

constexpr Algorithm all_algorithms[] = {Algorithm::rs256, Algorithm::rs384, Algorithm::rs512,
                                        Algorithm::ps256, Algorithm::ps384, Algorithm::ps512,
                                        Algorithm::es256, Algorithm::es384, Algorithm::es512};

// --- OpenSSL-side key material, made independently of the code under test ----------------------

using Pkey = awaken::detail::OpensslPtr<EVP_PKEY, EVP_PKEY_free>;

// `name` is "rsa<bits>", "ed25519" or an EC group; a "#<n>" suffix asks for another such key.
Pkey generate(const std::string& name) {
  const std::string base = name.substr(0, name.find('#'));
  EVP_PKEY* k = nullptr;
  if (base.rfind("rsa", 0) == 0) {
    const auto bits = static_cast<std::size_t>(std::stoi(base.substr(3)));
    k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits);
  } else if (base == "ed25519") {
    k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  } else {
    k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", base.c_str());
  }
  REQUIRE(k != nullptr);
  return Pkey{k};
}

std::string encode_pem(EVP_PKEY* k, int selection, const char* structure, const char* cipher = nullptr,
                       std::string_view passphrase = "correct horse") {
  OSSL_ENCODER_CTX* ctx = OSSL_ENCODER_CTX_new_for_pkey(k, selection, "PEM", structure, nullptr);
  REQUIRE(ctx != nullptr);
  if (cipher != nullptr) {
    REQUIRE(OSSL_ENCODER_CTX_set_cipher(ctx, cipher, nullptr) == 1);
    const auto* pass = reinterpret_cast<const unsigned char*>(passphrase.data());
    REQUIRE(OSSL_ENCODER_CTX_set_passphrase(ctx, pass, passphrase.size()) == 1);
  }
  unsigned char* data = nullptr;
  std::size_t len = 0;
  const int ok = OSSL_ENCODER_to_data(ctx, &data, &len);
  OSSL_ENCODER_CTX_free(ctx);
  REQUIRE(ok == 1);
  std::string out(reinterpret_cast<const char*>(data), len);
  OPENSSL_free(data);
  return out;
}

std::string pkcs8_pem(EVP_PKEY* k) { return encode_pem(k, EVP_PKEY_KEYPAIR, "PrivateKeyInfo"); }
std::string traditional_pem(EVP_PKEY* k) { return encode_pem(k, EVP_PKEY_KEYPAIR, "type-specific"); }
std::string public_pem(EVP_PKEY* k) { return encode_pem(k, EVP_PKEY_PUBLIC_KEY, "SubjectPublicKeyInfo"); }

std::string bn_param(EVP_PKEY* k, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  REQUIRE(EVP_PKEY_get_bn_param(k, name, &bn) == 1);
  std::string out(static_cast<std::size_t>(pad != 0 ? pad : BN_num_bytes(bn)), '\0');
  REQUIRE(BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size())) ==
          static_cast<int>(out.size()));
  BN_free(bn);
  return out;
}

json jwk_of(EVP_PKEY* k) {
  if (EVP_PKEY_is_a(k, "RSA")) {
    return {{"kty", "RSA"},
            {"n", base64url_encode(bn_param(k, OSSL_PKEY_PARAM_RSA_N))},
            {"e", base64url_encode(bn_param(k, OSSL_PKEY_PARAM_RSA_E))}};
  }
  char group[64] = {};
  std::size_t len = 0;
  REQUIRE(EVP_PKEY_get_group_name(k, group, sizeof group, &len) == 1);
  const std::string g{group, len};
  const int size = g == "prime256v1" ? 32 : g == "secp384r1" ? 48 : 66;
  const char* crv = size == 32 ? "P-256" : size == 48 ? "P-384" : "P-521";
  return {{"kty", "EC"},
          {"crv", crv},
          {"x", base64url_encode(bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, size))},
          {"y", base64url_encode(bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, size))}};
}

struct Material {
  Pkey pkey;
  std::string pkcs8;
  std::string traditional;
  std::string spki;
};

// Keys are generated once per run; RSA generation is slow under the sanitizers.
const Material& material(const std::string& name) {
  static std::map<std::string, Material> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    Material m;
    m.pkey = generate(name);
    m.pkcs8 = pkcs8_pem(m.pkey.get());
    if (EVP_PKEY_is_a(m.pkey.get(), "RSA") || EVP_PKEY_is_a(m.pkey.get(), "EC")) {
      m.traditional = traditional_pem(m.pkey.get());
    }
    m.spki = public_pem(m.pkey.get());
    it = cache.emplace(name, std::move(m)).first;
  }
  return it->second;
}

const char* key_name_for(Algorithm alg) {
  switch (alg) {
    case Algorithm::es256: return "P-256";
    case Algorithm::es384: return "P-384";
    case Algorithm::es512: return "P-521";
    default: return "rsa2048";
  }
}

PrivateKey private_key(const std::string& name) { return PrivateKey::from_pem(RedactedString{material(name).pkcs8}); }
PublicKey public_key(const std::string& name) { return PublicKey::from_jwk(jwk_of(material(name).pkey.get())); }

// A signature made straight with OpenSSL, for the cases sign_compact must never produce.
std::string openssl_sign(EVP_PKEY* k, const char* digest, std::string_view input, int padding = 0, int salt_len = 0) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  REQUIRE(EVP_DigestSignInit_ex(ctx, &pctx, digest, nullptr, nullptr, k, nullptr) == 1);
  if (padding != 0) {
    REQUIRE(EVP_PKEY_CTX_set_rsa_padding(pctx, padding) == 1);
    if (padding == RSA_PKCS1_PSS_PADDING) {
      REQUIRE(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, salt_len) == 1);
    }
  }
  std::size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  REQUIRE(EVP_DigestSign(ctx, nullptr, &len, in, input.size()) == 1);
  std::string sig(len, '\0');
  REQUIRE(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size()) == 1);
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  return sig;
}

std::string der_to_raw(const std::string& der, int half) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  REQUIRE(sig != nullptr);
  std::string raw(static_cast<std::size_t>(2 * half), '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  REQUIRE(BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, half) == half);
  REQUIRE(BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + half, half) == half);
  ECDSA_SIG_free(sig);
  return raw;
}

std::string raw_to_der(const std::string& raw) {
  const int half = static_cast<int>(raw.size() / 2);
  const auto* in = reinterpret_cast<const unsigned char*>(raw.data());
  ECDSA_SIG* sig = ECDSA_SIG_new();
  REQUIRE(ECDSA_SIG_set0(sig, BN_bin2bn(in, half, nullptr), BN_bin2bn(in + half, half, nullptr)) == 1);
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(sig, &der);
  REQUIRE(len > 0);
  std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  ECDSA_SIG_free(sig);
  return out;
}

}  // namespace

// =============================================================================================
// base64url
// =============================================================================================

TEST_CASE("base64url encodes and decodes the RFC 4648 test vectors", "[jose]") {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
      {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    CHECK(base64url_encode(plain) == encoded);
    CHECK(base64url_decode(encoded) == plain);
  }
  // The two characters where base64url differs from base64 ('+' and '/').
  CHECK(base64url_encode("\xfb\xff") == "-_8");
  CHECK(base64url_decode("-_8") == "\xfb\xff");
  CHECK(base64url_encode(std::string_view{"\x00\x00\x00", 3}) == "AAAA");
}

TEST_CASE("base64url round-trips random bytes of every length up to 100", "[jose]") {
  std::mt19937 rng{20240611};
  std::uniform_int_distribution<int> byte{0, 255};
  for (std::size_t len = 0; len <= 100; ++len) {
    for (int round = 0; round < 5; ++round) {
      std::string bytes(len, '\0');
      for (auto& c : bytes) c = static_cast<char>(byte(rng));
      const std::string text = base64url_encode(bytes);
      INFO("length " << len);
      CHECK(text.size() == (len * 4 + 2) / 3);
      CHECK(text.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789-_") == std::string::npos);
      CHECK(base64url_decode(text) == bytes);
      std::error_code ec = code(jose_errc::weak_key);
      CHECK(base64url_decode(text, ec) == bytes);
      CHECK(!ec);
    }
  }
}

TEST_CASE("base64url refuses padding, foreign characters and impossible lengths", "[jose]") {
  const char* const bad[] = {"Zg==",  "Zg=",    "Zm8=",  "Zm9v+A", "Zm9/",  " Zm9v",     "Zm9v\n",
                             "Zm 9v", "Zm9v\t", "Zm.9v", "Z",      "Zm9vY", "Zm9vYmFyZ", "===="};
  for (const char* text : bad) {
    INFO(text);
    CHECK(code_of([&] { base64url_decode(text); }) == code(jose_errc::malformed_base64url));
    std::error_code ec;
    CHECK(base64url_decode(text, ec).empty());
    CHECK(ec == code(jose_errc::malformed_base64url));
  }
  CHECK(code_of([] { base64url_decode(std::string_view{"Zm\0v", 4}); }) == code(jose_errc::malformed_base64url));
  CHECK(code_of([] { base64url_decode("Zm9\xc3\xa9"); }) == code(jose_errc::malformed_base64url));
}

TEST_CASE("base64url refuses non-canonical trailing bits", "[jose]") {
  // "QQ" is the only encoding of "A"; "QR".."QV" differ only in the four unused bits.
  CHECK(base64url_decode("QQ") == "A");
  for (const char* text : {"QR", "QS", "QT", "QW", "Qf"}) {
    INFO(text);
    CHECK(code_of([&] { base64url_decode(text); }) == code(jose_errc::malformed_base64url));
  }
  // Two bytes leave two unused bits: "QUI" is "AB", "QUJ" is not canonical.
  CHECK(base64url_decode("QUI") == "AB");
  CHECK(code_of([] { base64url_decode("QUJ"); }) == code(jose_errc::malformed_base64url));
  CHECK(code_of([] { base64url_decode("QUL"); }) == code(jose_errc::malformed_base64url));
}

TEST_CASE("base64url refuses inputs over the bound", "[jose]") {
  CHECK(base64url_decode("Zm9vYmFy", 8) == "foobar");
  CHECK(code_of([] { base64url_decode("Zm9vYmFy", 7); }) == code(jose_errc::input_too_large));
  std::error_code ec;
  CHECK(base64url_decode("Zm9vYmFy", ec, 7).empty());
  CHECK(ec == code(jose_errc::input_too_large));

  const std::string big(default_max_base64url_bytes + 4, 'A');
  CHECK(code_of([&] { base64url_decode(big); }) == code(jose_errc::input_too_large));
  const std::string at_bound(default_max_base64url_bytes, 'A');
  CHECK(base64url_decode(at_bound).size() == default_max_base64url_bytes / 4 * 3);
}

TEST_CASE("base64url errors do not echo the input", "[jose]") {
  const std::string what = what_of([] { base64url_decode("c2VjcmV0LXRva2Vu=="); });
  CHECK_FALSE(what.empty());
  CHECK(what.find("c2VjcmV0") == std::string::npos);
}

// =============================================================================================
// Algorithms
// =============================================================================================

TEST_CASE("algorithm names parse exactly and case-sensitively", "[jose]") {
  const char* const names[] = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"};
  for (std::size_t i = 0; i < std::size(all_algorithms); ++i) {
    CHECK(to_string(all_algorithms[i]) == names[i]);
    REQUIRE(parse_algorithm(names[i]).has_value());
    CHECK(*parse_algorithm(names[i]) == all_algorithms[i]);
  }
  for (const char* name :
       {"none", "None", "HS256", "HS384", "HS512", "rs256", "Rs256", "RS256 ", " RS256", "RS", "ES256K", "EdDSA", ""}) {
    INFO(name);
    CHECK_FALSE(parse_algorithm(name).has_value());
  }
  CHECK_FALSE(parse_algorithm(std::string_view{"RS256\0", 6}).has_value());
}

// =============================================================================================
// JWK
// =============================================================================================

TEST_CASE("JWK: RSA public keys from OpenSSL-generated keys", "[jose]") {
  const json jwk = jwk_of(material("rsa2048").pkey.get());
  const PublicKey key = PublicKey::from_jwk(jwk);
  CHECK(key.type() == KeyType::rsa);
  CHECK(key.curve() == Curve::none);
  CHECK(key.bits() == 2048);
  for (const Algorithm alg : all_algorithms) {
    const bool rsa_alg = alg != Algorithm::es256 && alg != Algorithm::es384 && alg != Algorithm::es512;
    CHECK(key.supports(alg) == rsa_alg);
  }
  CHECK(PublicKey::from_jwk_json(jwk.dump()).bits() == 2048);
  // Extra public members are fine.
  json with_extras = jwk;
  with_extras["kid"] = "k1";
  with_extras["use"] = "sig";
  with_extras["alg"] = "RS256";
  CHECK(PublicKey::from_jwk(with_extras).bits() == 2048);
  CHECK(PublicKey::from_jwk(jwk_of(material("rsa3072").pkey.get())).bits() == 3072);
}

TEST_CASE("JWK: EC public keys on P-256, P-384 and P-521", "[jose]") {
  const std::tuple<const char*, Curve, int, Algorithm> cases[] = {{"P-256", Curve::p256, 256, Algorithm::es256},
                                                                  {"P-384", Curve::p384, 384, Algorithm::es384},
                                                                  {"P-521", Curve::p521, 521, Algorithm::es512}};
  for (const auto& [name, curve, bits, alg] : cases) {
    INFO(name);
    const PublicKey key = PublicKey::from_jwk(jwk_of(material(name).pkey.get()));
    CHECK(key.type() == KeyType::ec);
    CHECK(key.curve() == curve);
    CHECK(key.bits() == bits);
    for (const Algorithm other : all_algorithms) CHECK(key.supports(other) == (other == alg));
  }
}

TEST_CASE("JWK: RSA moduli under 2048 bits are weak", "[jose]") {
  CHECK(code_of([] { PublicKey::from_jwk(jwk_of(material("rsa1024").pkey.get())); }) == code(jose_errc::weak_key));
  // 256 bytes whose top bit is clear: a 2047-bit modulus.
  json jwk = jwk_of(material("rsa2048").pkey.get());
  std::string n = base64url_decode(jwk["n"].get<std::string>());
  n[0] = static_cast<char>(n[0] & 0x7f);
  jwk["n"] = base64url_encode(n);
  CHECK(code_of([&] { PublicKey::from_jwk(jwk); }) == code(jose_errc::weak_key));
}

TEST_CASE("JWK: RSA integers must be canonical and the exponent odd and at least 3", "[jose]") {
  const json good = jwk_of(material("rsa2048").pkey.get());
  const std::string n = base64url_decode(good["n"].get<std::string>());
  auto with = [&](const char* member, std::string_view bytes) {
    json jwk = good;
    jwk[member] = base64url_encode(bytes);
    return jwk;
  };
  CHECK(PublicKey::from_jwk(with("e", "\x03")).bits() == 2048);
  CHECK(PublicKey::from_jwk(with("e", std::string{"\x01\x00\x01", 3})).bits() == 2048);

  const std::pair<const char*, std::string> bad[] = {
      {"e", std::string{"\x01", 1}},
      {"e", std::string{"\x02", 1}},
      {"e", std::string{"\x01\x00\x00", 3}},      // 65536, even
      {"e", std::string{"\x00\x01\x00\x01", 4}},  // zero-padded 65537
      {"e", std::string{}},
      {"n", std::string{"\x00", 1} + n},          // zero-padded modulus
      {"n", n.substr(0, n.size() - 1) + "\x02"},  // even modulus
  };
  for (const auto& [member, bytes] : bad) {
    INFO(member << " of " << bytes.size() << " bytes");
    CHECK(code_of([&, &member = member, &bytes = bytes] { PublicKey::from_jwk(with(member, bytes)); }) ==
          code(jose_errc::invalid_jwk));
  }
  json not_base64 = good;
  not_base64["e"] = "AQAB=";
  CHECK(code_of([&] { PublicKey::from_jwk(not_base64); }) == code(jose_errc::invalid_jwk));
}

TEST_CASE("JWK: EC points off the curve are refused", "[jose]") {
  for (const char* name : {"P-256", "P-384", "P-521"}) {
    INFO(name);
    const json good = jwk_of(material(name).pkey.get());
    for (const char* member : {"x", "y"}) {
      json jwk = good;
      std::string coordinate = base64url_decode(jwk[member].get<std::string>());
      coordinate.back() = static_cast<char>(coordinate.back() ^ 0x01);
      jwk[member] = base64url_encode(coordinate);
      CHECK(code_of([&] { PublicKey::from_jwk(jwk); }) == code(jose_errc::point_not_on_curve));
    }
    // A coordinate at or above the field prime is not a point either.
    json jwk = good;
    const std::string y = base64url_decode(jwk["y"].get<std::string>());
    std::string ones(y.size(), '\xff');
    if (std::string{name} == "P-521") ones[0] = '\x01';
    jwk["x"] = base64url_encode(ones);
    CHECK(code_of([&] { PublicKey::from_jwk(jwk); }) == code(jose_errc::point_not_on_curve));
  }
}

TEST_CASE("JWK: EC coordinates must be exactly the field size", "[jose]") {
  for (const char* name : {"P-256", "P-384", "P-521"}) {
    INFO(name);
    const json good = jwk_of(material(name).pkey.get());
    const std::string x = base64url_decode(good["x"].get<std::string>());
    const std::string variants[] = {x.substr(1), std::string{"\x00", 1} + x, std::string{}};
    for (const auto& variant : variants) {
      json jwk = good;
      jwk["x"] = base64url_encode(variant);
      CHECK(code_of([&] { PublicKey::from_jwk(jwk); }) == code(jose_errc::invalid_jwk));
    }
  }
  // A P-256 point labelled P-384.
  json jwk = jwk_of(material("P-256").pkey.get());
  jwk["crv"] = "P-384";
  CHECK(code_of([&] { PublicKey::from_jwk(jwk); }) == code(jose_errc::invalid_jwk));
}

TEST_CASE("JWK: missing or ill-typed members", "[jose]") {
  const json rsa = jwk_of(material("rsa2048").pkey.get());
  const json ec = jwk_of(material("P-256").pkey.get());
  for (const char* member : {"kty", "n", "e"}) {
    INFO("RSA without " << member);
    json jwk = rsa;
    jwk.erase(member);
    CHECK(code_of([&] { PublicKey::from_jwk(jwk); }) == code(jose_errc::invalid_jwk));
    jwk[member] = 65537;
    CHECK(code_of([&] { PublicKey::from_jwk(jwk); }) == code(jose_errc::invalid_jwk));
  }
  for (const char* member : {"kty", "crv", "x", "y"}) {
    INFO("EC without " << member);
    json jwk = ec;
    jwk.erase(member);
    CHECK(code_of([&] { PublicKey::from_jwk(jwk); }) == code(jose_errc::invalid_jwk));
    jwk[member] = json::array({"P-256"});
    CHECK(code_of([&] { PublicKey::from_jwk(jwk); }) == code(jose_errc::invalid_jwk));
  }
  for (const json& not_object : {json(nullptr), json("RSA"), json::array({rsa}), json(42)}) {
    CHECK(code_of([&] { PublicKey::from_jwk(not_object); }) == code(jose_errc::invalid_jwk));
  }
}

TEST_CASE("JWK: private members are refused", "[jose]") {
  const json rsa = jwk_of(material("rsa2048").pkey.get());
  for (const char* member : {"d", "p", "q", "dp", "dq", "qi", "oth"}) {
    INFO(member);
    json jwk = rsa;
    jwk[member] = member == std::string{"oth"} ? json::array() : json("AQAB");
    CHECK(code_of([&] { PublicKey::from_jwk(jwk); }) == code(jose_errc::invalid_jwk));
  }
  json ec = jwk_of(material("P-256").pkey.get());
  ec["d"] = base64url_encode(bn_param(material("P-256").pkey.get(), OSSL_PKEY_PARAM_PRIV_KEY, 32));
  const std::string what = what_of([&] { PublicKey::from_jwk(ec); });
  CHECK(code_of([&] { PublicKey::from_jwk(ec); }) == code(jose_errc::invalid_jwk));
  CHECK(what.find(ec["d"].get<std::string>()) == std::string::npos);
}

TEST_CASE("JWK: unknown kty and crv are unsupported", "[jose]") {
  for (const char* kty : {"oct", "OKP", "rsa", "ec", "DSA", ""}) {
    INFO(kty);
    json jwk = jwk_of(material("rsa2048").pkey.get());
    jwk["kty"] = kty;
    CHECK(code_of([&] { PublicKey::from_jwk(jwk); }) == code(jose_errc::unsupported_key_type));
  }
  for (const char* crv : {"P-192", "P-224", "secp256k1", "Ed25519", "p-256", "prime256v1"}) {
    INFO(crv);
    json jwk = jwk_of(material("P-256").pkey.get());
    jwk["crv"] = crv;
    CHECK(code_of([&] { PublicKey::from_jwk(jwk); }) == code(jose_errc::unsupported_key_type));
  }
}

TEST_CASE("JWK: malformed JSON text", "[jose]") {
  const std::string good = jwk_of(material("P-256").pkey.get()).dump();
  for (const std::string& text :
       {std::string{}, std::string{"{"}, good.substr(0, good.size() - 1), good + "}", std::string{"{'kty':'EC'}"},
        std::string{"{\"kty\":\"EC\",}"}, std::string{"{\"kty\":\"\xff\"}"}}) {
    INFO(text);
    CHECK(code_of([&] { PublicKey::from_jwk_json(text); }) == code(jose_errc::malformed_json));
  }
  CHECK(code_of([] { PublicKey::from_jwk_json("[1,2]"); }) == code(jose_errc::invalid_jwk));
  CHECK(PublicKey::from_jwk_json(good).curve() == Curve::p256);
}

TEST_CASE("JWK errors name members, never key material", "[jose]") {
  json jwk = jwk_of(material("rsa1024").pkey.get());
  const std::string n = jwk["n"].get<std::string>();
  const std::string what = what_of([&] { PublicKey::from_jwk(jwk); });
  CHECK(what.find("1024") != std::string::npos);
  CHECK(what.find(n.substr(0, 16)) == std::string::npos);
}

// =============================================================================================
// PEM
// =============================================================================================

TEST_CASE("PEM: PKCS#8, PKCS#1 and SEC 1 private keys are accepted", "[jose]") {
  const Material& rsa = material("rsa2048");
  REQUIRE(rsa.pkcs8.rfind("-----BEGIN PRIVATE KEY-----", 0) == 0);
  REQUIRE(rsa.traditional.rfind("-----BEGIN RSA PRIVATE KEY-----", 0) == 0);
  for (const std::string* pem : {&rsa.pkcs8, &rsa.traditional}) {
    const PrivateKey key = PrivateKey::from_pem(RedactedString{*pem});
    CHECK(key.type() == KeyType::rsa);
    CHECK(key.bits() == 2048);
    CHECK(key.supports(Algorithm::ps512));
    CHECK_FALSE(key.supports(Algorithm::es256));
  }
  const std::tuple<const char*, Curve, int> curves[] = {
      {"P-256", Curve::p256, 256}, {"P-384", Curve::p384, 384}, {"P-521", Curve::p521, 521}};
  for (const auto& [name, curve, bits] : curves) {
    INFO(name);
    const Material& ec = material(name);
    REQUIRE(ec.traditional.rfind("-----BEGIN EC PRIVATE KEY-----", 0) == 0);
    for (const std::string* pem : {&ec.pkcs8, &ec.traditional}) {
      const PrivateKey key = PrivateKey::from_pem(RedactedString{*pem});
      CHECK(key.type() == KeyType::ec);
      CHECK(key.curve() == curve);
      CHECK(key.bits() == bits);
    }
  }
}

TEST_CASE("PEM: public keys from SubjectPublicKeyInfo", "[jose]") {
  for (const char* name : {"rsa2048", "P-256", "P-384", "P-521"}) {
    INFO(name);
    const PublicKey from_pem = PublicKey::from_pem(material(name).spki);
    const PublicKey from_jwk = public_key(name);
    CHECK(from_pem.type() == from_jwk.type());
    CHECK(from_pem.curve() == from_jwk.curve());
    CHECK(from_pem.bits() == from_jwk.bits());
  }
  CHECK(code_of([] { PublicKey::from_pem(material("rsa1024").spki); }) == code(jose_errc::weak_key));
  CHECK(code_of([] { PublicKey::from_pem(material("secp256k1").spki); }) == code(jose_errc::unsupported_key_type));
  CHECK(code_of([] { PublicKey::from_pem(material("ed25519").spki); }) == code(jose_errc::unsupported_key_type));
  // A private key is not a public key PEM, nor is PKCS#1 "RSA PUBLIC KEY"; garbage is neither.
  CHECK(code_of([] { PublicKey::from_pem(material("P-256").pkcs8); }) == code(jose_errc::invalid_jwk));
  CHECK(code_of([] { PublicKey::from_pem(material("rsa2048").traditional); }) == code(jose_errc::invalid_jwk));
  const std::string pkcs1_public = encode_pem(material("rsa2048").pkey.get(), EVP_PKEY_PUBLIC_KEY, "type-specific");
  REQUIRE(pkcs1_public.rfind("-----BEGIN RSA PUBLIC KEY-----", 0) == 0);
  CHECK(code_of([&] { PublicKey::from_pem(pkcs1_public); }) == code(jose_errc::invalid_jwk));
  CHECK(code_of([] {
          PublicKey::from_pem(
              "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC "
              "KEY-----\n");
        }) == code(jose_errc::invalid_jwk));
}

TEST_CASE("PEM: encrypted private keys are refused without prompting", "[jose]") {
  const Material& rsa = material("rsa2048");
  const std::string encrypted_pkcs8 = encode_pem(rsa.pkey.get(), EVP_PKEY_KEYPAIR, "PrivateKeyInfo", "AES-256-CBC");
  const std::string encrypted_pkcs1 = encode_pem(rsa.pkey.get(), EVP_PKEY_KEYPAIR, "type-specific", "AES-128-CBC");
  const std::string encrypted_sec1 =
      encode_pem(material("P-256").pkey.get(), EVP_PKEY_KEYPAIR, "type-specific", "AES-128-CBC");
  // An empty passphrase must not be tried either.
  const std::string empty_passphrase =
      encode_pem(rsa.pkey.get(), EVP_PKEY_KEYPAIR, "PrivateKeyInfo", "AES-256-CBC", "");
  REQUIRE(encrypted_pkcs8.rfind("-----BEGIN ENCRYPTED PRIVATE KEY-----", 0) == 0);
  REQUIRE(empty_passphrase.rfind("-----BEGIN ENCRYPTED PRIVATE KEY-----", 0) == 0);
  REQUIRE(encrypted_pkcs1.find("Proc-Type: 4,ENCRYPTED") != std::string::npos);
  REQUIRE(encrypted_sec1.find("Proc-Type: 4,ENCRYPTED") != std::string::npos);
  for (const std::string* pem : {&encrypted_pkcs8, &encrypted_pkcs1, &encrypted_sec1, &empty_passphrase}) {
    const RedactedString secret{*pem};
    CHECK(code_of([&] { PrivateKey::from_pem(secret); }) == code(jose_errc::invalid_private_key));
    const std::string what = what_of([&] { PrivateKey::from_pem(secret); });
    CHECK(what.find("BEGIN") == std::string::npos);
    CHECK(what.find(pem->substr(pem->find('\n') + 1, 24)) == std::string::npos);
  }
}

TEST_CASE("PEM: weak, foreign and garbage private keys are refused", "[jose]") {
  CHECK(code_of([] { PrivateKey::from_pem(RedactedString{material("rsa1024").pkcs8}); }) == code(jose_errc::weak_key));
  CHECK(code_of([] { PrivateKey::from_pem(RedactedString{material("rsa1024").traditional}); }) ==
        code(jose_errc::weak_key));
  CHECK(code_of([] { PrivateKey::from_pem(RedactedString{material("secp256k1").pkcs8}); }) ==
        code(jose_errc::unsupported_key_type));
  CHECK(code_of([] { PrivateKey::from_pem(RedactedString{material("ed25519").pkcs8}); }) ==
        code(jose_errc::unsupported_key_type));

  const std::string good = material("P-256").pkcs8;
  std::string corrupted = good;
  corrupted[40] = corrupted[40] == 'A' ? 'B' : 'A';
  const std::string garbage[] = {
      "",
      "hello",
      "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
      good.substr(0, good.size() / 2),
      corrupted,
      material("P-256").spki,
      material("rsa2048").spki,
      encode_pem(material("rsa2048").pkey.get(), EVP_PKEY_PUBLIC_KEY, "type-specific"),
  };
  for (const std::string& text : garbage) {
    INFO(text.size() << " bytes");
    const RedactedString secret{text};
    CHECK(code_of([&] { PrivateKey::from_pem(secret); }) == code(jose_errc::invalid_private_key));
  }
  const std::string what = what_of([&] { PrivateKey::from_pem(RedactedString{corrupted}); });
  CHECK_FALSE(what.empty());
  CHECK(what.find("BEGIN") == std::string::npos);
  CHECK(what.find(corrupted.substr(28, 20)) == std::string::npos);
}

TEST_CASE("PEM failures leave OpenSSL's error queue as they found it", "[jose]") {
  ERR_clear_error();
  CHECK(code_of([] { PrivateKey::from_pem(RedactedString{"garbage"}); }) == code(jose_errc::invalid_private_key));
  CHECK(ERR_peek_error() == 0);
  CHECK(code_of([] { PublicKey::from_pem("garbage"); }) == code(jose_errc::invalid_jwk));
  CHECK(ERR_peek_error() == 0);
  json off_curve = jwk_of(material("P-256").pkey.get());
  off_curve["y"] = off_curve["x"];
  CHECK(code_of([&] { PublicKey::from_jwk(off_curve); }) == code(jose_errc::point_not_on_curve));
  CHECK(ERR_peek_error() == 0);

  // An error the caller queued before survives.
  ERR_raise(ERR_LIB_USER, 42);
  const unsigned long queued = ERR_peek_last_error();
  CHECK(code_of([] { PrivateKey::from_pem(RedactedString{"garbage"}); }) == code(jose_errc::invalid_private_key));
  CHECK(ERR_peek_last_error() == queued);
  CHECK(ERR_get_error() == queued);
  CHECK(ERR_get_error() == 0);
}

TEST_CASE("PrivateKey::public_key matches and carries no private half", "[jose]") {
  ERR_clear_error();
  for (const char* name : {"rsa2048", "P-256", "P-384", "P-521"}) {
    INFO(name);
    const PrivateKey priv = private_key(name);
    const PublicKey pub = priv.public_key();
    CHECK(pub.type() == priv.type());
    CHECK(pub.curve() == priv.curve());
    CHECK(pub.bits() == priv.bits());
    CHECK(pub.holder() != priv.holder());
    const Algorithm alg = priv.type() == KeyType::rsa   ? Algorithm::rs256
                          : priv.curve() == Curve::p256 ? Algorithm::es256
                          : priv.curve() == Curve::p384 ? Algorithm::es384
                                                        : Algorithm::es512;
    CHECK_NOTHROW(CompactJws::parse(sign_compact(alg, nullptr, "x", priv)).verify(pub));
    const char* private_param = priv.type() == KeyType::rsa ? OSSL_PKEY_PARAM_RSA_D : OSSL_PKEY_PARAM_PRIV_KEY;
    BIGNUM* secret = nullptr;
    CHECK(EVP_PKEY_get_bn_param(priv.holder()->pkey, private_param, &secret) == 1);
    BN_clear_free(secret);
    secret = nullptr;
    CHECK(EVP_PKEY_get_bn_param(pub.holder()->pkey, private_param, &secret) == 0);
    CHECK(secret == nullptr);
    ERR_clear_error();
    const PublicKey copy = pub;  // copies share the key
    CHECK(copy.holder() == pub.holder());
  }
}

// =============================================================================================
// JWS
// =============================================================================================

TEST_CASE("JWS: sign and verify round trip for all nine algorithms", "[jose]") {
  const std::string payload = "{\"sub\":\"awaken\",\"n\":1,\"bin\":\"\xc3\xa9\"}";
  for (const Algorithm alg : all_algorithms) {
    INFO(to_string(alg));
    const std::string name = key_name_for(alg);
    const PrivateKey priv = private_key(name);
    const PublicKey pub = public_key(name);
    const std::string token = sign_compact(alg, {{"typ", "JWT"}, {"kid", "k1"}}, payload, priv);
    const auto parts = split(token);
    REQUIRE(parts.size() == 3);

    const CompactJws jws = CompactJws::parse(token);
    CHECK(jws.algorithm() == alg);
    CHECK(jws.header().at("alg") == to_string(alg));
    CHECK(jws.header().at("kid") == "k1");
    CHECK(jws.header().at("typ") == "JWT");
    CHECK(jws.payload() == payload);
    CHECK(jws.signing_input() == parts[0] + "." + parts[1]);
    CHECK(jws.signature() == base64url_decode(parts[2]));
    if (priv.type() == KeyType::ec) {
      CHECK(jws.signature().size() == static_cast<std::size_t>(2 * ((priv.bits() + 7) / 8)));
    } else {
      CHECK(jws.signature().size() == 256);
    }
    CHECK_NOTHROW(jws.verify(pub));
    CHECK_NOTHROW(jws.verify(priv.public_key()));
    CHECK_NOTHROW(jws.verify(PublicKey::from_pem(material(name).spki)));
    std::error_code ec = code(jose_errc::weak_key);
    CHECK(jws.verify(pub, ec));
    CHECK(!ec);

    // Another key of the same kind does not verify.
    const std::string other = priv.type() == KeyType::rsa ? "rsa3072" : name + "#2";
    CHECK_FALSE(jws.verify(public_key(other), ec));
    CHECK(ec == code(jose_errc::invalid_signature));
  }
}

TEST_CASE("JWS: header null or object, alg always overwritten, empty payload allowed", "[jose]") {
  const PrivateKey priv = private_key("P-256");
  const PublicKey pub = public_key("P-256");
  const CompactJws a = CompactJws::parse(sign_compact(Algorithm::es256, nullptr, "", priv));
  CHECK(a.header() == json{{"alg", "ES256"}});
  CHECK(a.payload().empty());
  CHECK(a.signing_input().back() == '.');
  CHECK_NOTHROW(a.verify(pub));
  const CompactJws b = CompactJws::parse(sign_compact(Algorithm::es256, {{"alg", "none"}}, "p", priv));
  CHECK(b.header().at("alg") == "ES256");
  CHECK_NOTHROW(b.verify(pub));
  CHECK(code_of([&] { sign_compact(Algorithm::es256, json::array(), "p", priv); }) == code(jose_errc::malformed_json));
  CHECK(code_of([&] { sign_compact(Algorithm::es256, "hdr", "p", priv); }) == code(jose_errc::malformed_json));
}

TEST_CASE("JWS: ECDSA signatures with R or S of every shape verify", "[jose]") {
  // R and S with a leading zero byte (about 1 signature in 128 on P-256/384, most on P-521) and
  // with the top bit set (DER then needs a zero byte) are signed until both have been seen.
  const std::tuple<const char*, Algorithm, const char*> cases[] = {{"P-256", Algorithm::es256, "SHA256"},
                                                                   {"P-384", Algorithm::es384, "SHA384"},
                                                                   {"P-521", Algorithm::es512, "SHA512"}};
  for (const auto& [name, alg, digest] : cases) {
    const PrivateKey priv = private_key(name);
    const PublicKey pub = priv.public_key();
    const bool p521 = alg == Algorithm::es512;
    bool seen_zero = false;
    bool seen_high = p521;  // P-521's top byte is 0 or 1
    int i = 0;
    for (; i < 5000 && !(seen_zero && seen_high && i >= 20); ++i) {
      INFO(name << " signature " << i);
      const std::string token = sign_compact(alg, nullptr, "payload " + std::to_string(i), priv);
      const CompactJws jws = CompactJws::parse(token);
      const std::string& sig = jws.signature();
      const std::size_t half = sig.size() / 2;
      const bool zero = sig[0] == '\0' || sig[half] == '\0';
      const bool high = (sig[0] & 0x80) != 0 || (sig[half] & 0x80) != 0;
      std::error_code ec;
      REQUIRE(jws.verify(pub, ec));
      if (!zero && !high && i >= 3) continue;
      seen_zero = seen_zero || zero;
      seen_high = seen_high || high;
      // OpenSSL, given the DER form of the same R and S, agrees.
      EVP_MD_CTX* ctx = EVP_MD_CTX_new();
      REQUIRE(EVP_DigestVerifyInit_ex(ctx, nullptr, digest, nullptr, nullptr, material(name).pkey.get(), nullptr) == 1);
      const std::string der = raw_to_der(sig);
      const std::string_view input = jws.signing_input();
      CHECK(EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(der.data()), der.size(),
                             reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1);
      EVP_MD_CTX_free(ctx);
    }
    INFO(name << " after " << i << " signatures");
    CHECK(seen_zero);
    CHECK(seen_high);
  }
}

TEST_CASE("JWS: algorithm and key must match, both ways", "[jose]") {
  const PrivateKey p256 = private_key("P-256");
  const PrivateKey rsa = private_key("rsa2048");
  const std::string es256 = sign_compact(Algorithm::es256, nullptr, "x", p256);
  const std::string rs256 = sign_compact(Algorithm::rs256, nullptr, "x", rsa);
  const std::string ps256 = sign_compact(Algorithm::ps256, nullptr, "x", rsa);

  std::error_code ec;
  CHECK_FALSE(CompactJws::parse(es256).verify(public_key("P-384"), ec));
  CHECK(ec == code(jose_errc::algorithm_key_mismatch));
  CHECK(code_of([&] { CompactJws::parse(es256).verify(public_key("P-521")); }) ==
        code(jose_errc::algorithm_key_mismatch));
  CHECK(code_of([&] { CompactJws::parse(es256).verify(public_key("rsa2048")); }) ==
        code(jose_errc::algorithm_key_mismatch));
  CHECK(code_of([&] { CompactJws::parse(rs256).verify(public_key("P-256")); }) ==
        code(jose_errc::algorithm_key_mismatch));
  CHECK(code_of([&] { CompactJws::parse(ps256).verify(public_key("P-256")); }) ==
        code(jose_errc::algorithm_key_mismatch));

  // A header that claims ES384 over a P-256 signature.
  auto parts = split(es256);
  parts[0] = base64url_encode(json{{"alg", "ES384"}}.dump());
  CHECK(code_of([&] { CompactJws::parse(join(parts)).verify(public_key("P-256")); }) ==
        code(jose_errc::algorithm_key_mismatch));

  CHECK(code_of([&] { sign_compact(Algorithm::es384, nullptr, "x", p256); }) ==
        code(jose_errc::algorithm_key_mismatch));
  CHECK(code_of([&] { sign_compact(Algorithm::rs256, nullptr, "x", p256); }) ==
        code(jose_errc::algorithm_key_mismatch));
  CHECK(code_of([&] { sign_compact(Algorithm::es256, nullptr, "x", rsa); }) == code(jose_errc::algorithm_key_mismatch));

  // A moved-from key fits nothing.
  PublicKey moved = public_key("P-256");
  const PublicKey taker = std::move(moved);
  // NOLINTNEXTLINE(bugprone-use-after-move): a moved-from key is the point of the check
  CHECK(code_of([&] { CompactJws::parse(es256).verify(moved); }) == code(jose_errc::algorithm_key_mismatch));
  CHECK_NOTHROW(CompactJws::parse(es256).verify(taker));
}

TEST_CASE("JWS: ECDSA signatures of the wrong length or in DER form are invalid", "[jose]") {
  const PrivateKey priv = private_key("P-256");
  const PublicKey pub = public_key("P-256");
  const std::string token = sign_compact(Algorithm::es256, nullptr, "claims", priv);
  const std::string raw = decoded_segment(token, 2);
  REQUIRE(raw.size() == 64);
  CHECK_NOTHROW(CompactJws::parse(token).verify(pub));

  const std::string der = raw_to_der(raw);
  const std::string variants[] = {raw.substr(0, 63),          raw + std::string{"\0", 1},
                                  std::string{"\0", 1} + raw, der,
                                  std::string(64, '\0'),      raw.substr(32) + raw.substr(0, 32)};
  for (const auto& sig : variants) {
    INFO(sig.size() << " bytes");
    CHECK(code_of([&] { CompactJws::parse(with_segment(token, 2, sig)).verify(pub); }) ==
          code(jose_errc::invalid_signature));
  }

  // A DER signature straight from OpenSSL is valid only once converted to R || S.
  for (const auto& [name, alg, digest, half] :
       {std::tuple{"P-256", Algorithm::es256, "SHA256", 32}, std::tuple{"P-384", Algorithm::es384, "SHA384", 48},
        std::tuple{"P-521", Algorithm::es512, "SHA512", 66}}) {
    INFO(name);
    const std::string header = base64url_encode(json{{"alg", to_string(alg)}}.dump());
    const std::string signing_input = header + "." + base64url_encode("claims");
    const std::string openssl_der = openssl_sign(material(name).pkey.get(), digest, signing_input);
    const PublicKey key = public_key(name);
    CHECK(code_of([&] { CompactJws::parse(signing_input + "." + base64url_encode(openssl_der)).verify(key); }) ==
          code(jose_errc::invalid_signature));
    const std::string converted = der_to_raw(openssl_der, half);
    CHECK_NOTHROW(CompactJws::parse(signing_input + "." + base64url_encode(converted)).verify(key));
    CHECK(code_of([&] {
            const std::string cut = converted.substr(0, converted.size() - 1);
            CompactJws::parse(signing_input + "." + base64url_encode(cut)).verify(key);
          }) == code(jose_errc::invalid_signature));
  }
}

TEST_CASE("JWS: RSA-PSS verifies only with MGF1 of the same hash and salt = hash length", "[jose]") {
  EVP_PKEY* k = material("rsa2048").pkey.get();
  const PublicKey pub = public_key("rsa2048");
  const std::string input = base64url_encode(json{{"alg", "PS256"}}.dump()) + "." + base64url_encode("claims");
  auto verify_sig = [&](const std::string& sig) {
    return code_of([&] { CompactJws::parse(input + "." + base64url_encode(sig)).verify(pub); });
  };
  CHECK(verify_sig(openssl_sign(k, "SHA256", input, RSA_PKCS1_PSS_PADDING, 32)) == std::error_code{});
  CHECK(verify_sig(openssl_sign(k, "SHA256", input, RSA_PKCS1_PSS_PADDING, 20)) == code(jose_errc::invalid_signature));
  CHECK(verify_sig(openssl_sign(k, "SHA256", input, RSA_PKCS1_PSS_PADDING, 0)) == code(jose_errc::invalid_signature));
  CHECK(verify_sig(openssl_sign(k, "SHA256", input, RSA_PKCS1_PSS_PADDING, RSA_PSS_SALTLEN_MAX)) ==
        code(jose_errc::invalid_signature));
  // PKCS#1 v1.5 under a PS256 header, and PSS under an RS256 header.
  CHECK(verify_sig(openssl_sign(k, "SHA256", input, RSA_PKCS1_PADDING)) == code(jose_errc::invalid_signature));
  const std::string rs_input = base64url_encode(json{{"alg", "RS256"}}.dump()) + "." + base64url_encode("claims");
  const std::string pss = openssl_sign(k, "SHA256", rs_input, RSA_PKCS1_PSS_PADDING, 32);
  CHECK(code_of([&] { CompactJws::parse(rs_input + "." + base64url_encode(pss)).verify(pub); }) ==
        code(jose_errc::invalid_signature));
  CHECK(code_of([&] {
          const std::string v15 = openssl_sign(k, "SHA256", rs_input, RSA_PKCS1_PADDING);
          CompactJws::parse(rs_input + "." + base64url_encode(v15)).verify(pub);
        }) == std::error_code{});
  // Our PS384 signatures use a 48-byte salt: OpenSSL with salt 48 verifies them, 32 does not.
  const std::string ps384 = sign_compact(Algorithm::ps384, nullptr, "x", private_key("rsa2048"));
  const CompactJws jws = CompactJws::parse(ps384);
  for (const auto& [salt, expect] : {std::pair{48, 1}, std::pair{32, 0}}) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX* pctx = nullptr;
    REQUIRE(EVP_DigestVerifyInit_ex(ctx, &pctx, "SHA384", nullptr, nullptr, k, nullptr) == 1);
    REQUIRE(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1);
    REQUIRE(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, salt) == 1);
    const auto in = jws.signing_input();
    CHECK((EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(jws.signature().data()), jws.signature().size(),
                            reinterpret_cast<const unsigned char*>(in.data()), in.size()) == 1) == (expect == 1));
    EVP_MD_CTX_free(ctx);
  }
  ERR_clear_error();
}

TEST_CASE("JWS: parse refuses none, HMAC and unknown algorithms first", "[jose]") {
  const std::string payload = base64url_encode("{}");
  const std::string sig = base64url_encode("sig");
  for (const json& header :
       {json{{"alg", "none"}}, json{{"alg", "HS256"}}, json{{"alg", "rs256"}}, json{{"alg", "ES256K"}},
        json{{"alg", 256}}, json{{"alg", nullptr}}, json{{"typ", "JWT"}}, json{{"alg", json::array({"RS256"})}},
        json{{"alg", "none"}, {"crit", json::array({"x"})}}}) {
    INFO(header.dump());
    const std::string token = base64url_encode(header.dump()) + "." + payload + "." + sig;
    CHECK(code_of([&] { CompactJws::parse(token); }) == code(jose_errc::unsupported_algorithm));
  }
  // An unsecured JWS (empty signature) is named by its algorithm; a signed alg with an empty
  // signature is malformed.
  CHECK(code_of([&] {
          CompactJws::parse(base64url_encode(json{{"alg", "none"}}.dump()) + "." + payload + ".");
        }) == code(jose_errc::unsupported_algorithm));
  CHECK(code_of([&] {
          CompactJws::parse(base64url_encode(json{{"alg", "ES256"}}.dump()) + "." + payload + ".");
        }) == code(jose_errc::malformed_jws));
}

TEST_CASE("JWS: crit headers are refused", "[jose]") {
  const PrivateKey priv = private_key("P-256");
  for (const json& crit : {json::array({"exp"}), json::array(), json("b64"), json(nullptr)}) {
    INFO(crit.dump());
    const std::string token = sign_compact(Algorithm::es256, {{"crit", crit}, {"exp", 1}}, "x", priv);
    CHECK(code_of([&] { CompactJws::parse(token); }) == code(jose_errc::unsupported_critical_header));
  }
  try {
    CompactJws::parse(sign_compact(Algorithm::es256, {{"crit", json::array({"exp"})}}, "x", priv));
    FAIL("crit accepted");
  } catch (const awaken::Error& e) {
    CHECK(std::string{e.what()}.find("unsupported critical header parameter") != std::string::npos);
  }
}

TEST_CASE("JWS: a header that begins with a byte-order mark is refused", "[jose]") {
  const std::string rest = "." + base64url_encode("{}") + "." + base64url_encode("sig");
  CHECK(code_of([&] { CompactJws::parse(base64url_encode("\xEF\xBB\xBF{\"alg\":\"ES256\"}") + rest); }) ==
        code(jose_errc::malformed_json));
  CHECK_FALSE(code_of([&] { CompactJws::parse(base64url_encode("{\"alg\":\"ES256\"}") + rest); }));
}

TEST_CASE("JWS: segment structure, base64url and header JSON", "[jose]") {
  const std::string token = sign_compact(Algorithm::es256, nullptr, "x", private_key("P-256"));
  const auto p = split(token);
  const std::string malformed[] = {"",
                                   "abc",
                                   p[0] + "." + p[1],
                                   token + ".",
                                   token + "." + p[2],
                                   "." + p[1] + "." + p[2],
                                   p[0] + "." + p[1] + ".",
                                   "..",
                                   "...",
                                   p[0] + ".." + p[2] + "." + p[2]};
  for (const auto& t : malformed) {
    INFO(t);
    CHECK(code_of([&] { CompactJws::parse(t); }) == code(jose_errc::malformed_jws));
  }
  const std::string bad_base64[] = {p[0] + "=." + p[1] + "." + p[2],
                                    p[0] + "." + p[1] + "=." + p[2],
                                    p[0] + "." + p[1] + "." + p[2] + "==",
                                    p[0] + "." + p[1] + " ." + p[2],
                                    p[0] + "." + p[1] + "." + p[2].substr(0, p[2].size() - 1) + "+",
                                    " " + token,
                                    token + "\n",
                                    p[0] + "." + p[1] + "." + p[2] + "AAA"};
  for (const auto& t : bad_base64) {
    INFO(t);
    CHECK(code_of([&] { CompactJws::parse(t); }) == code(jose_errc::malformed_base64url));
  }
  // A non-canonical last character of the signature (the classic malleability) is refused.
  {
    std::string t = token;
    const std::string& sig = p[2];
    REQUIRE(sig.size() % 4 == 2);  // 64 bytes: 86 characters, 4 unused bits
    t.back() = t.back() == 'A' ? 'B' : static_cast<char>(t.back() + 1);
    CHECK(code_of([&] { CompactJws::parse(t); }) == code(jose_errc::malformed_base64url));
  }
  const std::string rest = "." + p[1] + "." + p[2];
  for (const std::string header : {"not json", "[\"ES256\"]", "\"ES256\"", "42", "null", "{\"alg\":\"ES256\"",
                                   "{\"alg\":\"ES256\"}x", "{\"alg\":\"ES256\",\"k\":\"\xff\"}"}) {
    INFO(header);
    CHECK(code_of([&] { CompactJws::parse(base64url_encode(header) + rest); }) == code(jose_errc::malformed_json));
  }
}

TEST_CASE("JWS: size bound is checked first", "[jose]") {
  const std::string token = sign_compact(Algorithm::es256, nullptr, "x", private_key("P-256"));
  CHECK_NOTHROW(CompactJws::parse(token, token.size()));
  CHECK(code_of([&] { CompactJws::parse(token, token.size() - 1); }) == code(jose_errc::input_too_large));
  const std::string huge(default_max_jws_bytes + 1, '.');
  CHECK(code_of([&] { CompactJws::parse(huge); }) == code(jose_errc::input_too_large));
  const std::string huge_payload(default_max_jws_bytes, 'x');
  const std::string big = sign_compact(Algorithm::es256, nullptr, huge_payload, private_key("P-256"));
  CHECK(code_of([&] { CompactJws::parse(big); }) == code(jose_errc::input_too_large));
  CHECK(CompactJws::parse(big, big.size()).payload() == huge_payload);
}

TEST_CASE("JWS: tampered tokens fail for every algorithm", "[jose]") {
  for (const Algorithm alg : all_algorithms) {
    const std::string name = key_name_for(alg);
    const PublicKey pub = public_key(name);
    const std::string token =
        sign_compact(alg, {{"kid", "key-1"}, {"typ", "JWT"}}, "{\"sub\":\"someone\"}", private_key(name));
    REQUIRE_NOTHROW(CompactJws::parse(token).verify(pub));
    for (const auto& t : tampered_variants(token)) {
      INFO(to_string(alg) << ": " << t.what);
      const std::error_code ec = code_of([&] { CompactJws::parse(t.token).verify(pub); });
      CHECK(ec.category() == awaken::jose_category());
      if (t.what.rfind("header", 0) != 0) CHECK(ec == code(jose_errc::invalid_signature));
    }
  }
}

TEST_CASE("JWS errors never quote the token", "[jose]") {
  const std::string token = sign_compact(Algorithm::rs256, nullptr, "secret-claims", private_key("rsa2048"));
  const auto p = split(token);
  const std::string tampered = flip_bit(token, 1, 0, 0);
  const PublicKey pub = public_key("rsa2048");
  const std::string w1 = what_of([&] { CompactJws::parse(tampered).verify(pub); });
  const std::string w2 = what_of([&] { CompactJws::parse(token + "="); });
  const std::string w3 = what_of([&] { CompactJws::parse(token, 10); });
  for (const std::string* w : {&w1, &w2, &w3}) {
    INFO(*w);
    CHECK_FALSE(w->empty());
    CHECK(w->find(p[1].substr(0, 8)) == std::string::npos);
    CHECK(w->find(p[2].substr(0, 8)) == std::string::npos);
    CHECK(w->find("secret") == std::string::npos);
  }
}

TEST_CASE("JWS: keys verify concurrently from many threads", "[jose]") {
  const PublicKey rsa = public_key("rsa2048");
  const PublicKey ec = public_key("P-256");
  const std::string rs = sign_compact(Algorithm::ps256, nullptr, "x", private_key("rsa2048"));
  const std::string es = sign_compact(Algorithm::es256, nullptr, "x", private_key("P-256"));
  const std::string bad = flip_bit(es, 2, 10, 1);
  const CompactJws shared = CompactJws::parse(es);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        std::error_code e1, e2, e3, e4;
        const PublicKey copy = ec;  // copies share the key
        if (!CompactJws::parse(rs).verify(rsa, e1)) ++failures;
        if (!shared.verify(copy, e2)) ++failures;
        if (CompactJws::parse(bad).verify(ec, e3)) ++failures;
        if (e3 != code(jose_errc::invalid_signature)) ++failures;
        if (shared.verify(rsa, e4) || e4 != code(jose_errc::algorithm_key_mismatch)) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
}
