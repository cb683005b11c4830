// Test support: X.509 certificates made with OpenSSL for the X509-SVID rules, each with the
// extensions a test asks for (including the ones the standard forbids).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <awaken/spiffe/x509_bundle.hpp>
#include <awaken/spiffe/x509_svid.hpp>

namespace awaken::test {

enum class KeyKind { p256, p384, p521, rsa2048, rsa1024, ed25519 };

inline std::shared_ptr<EVP_PKEY> make_key(KeyKind kind) {
  EVP_PKEY* k = nullptr;
  switch (kind) {
    case KeyKind::p256: k = EVP_EC_gen("P-256"); break;
    case KeyKind::p384: k = EVP_EC_gen("P-384"); break;
    case KeyKind::p521: k = EVP_EC_gen("P-521"); break;
    case KeyKind::rsa2048: k = EVP_RSA_gen(2048); break;
    case KeyKind::rsa1024: k = EVP_RSA_gen(1024); break;
    case KeyKind::ed25519: k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"); break;
  }
  if (k == nullptr) throw std::runtime_error("key generation failed");
  return {k, EVP_PKEY_free};
}

/// What to put in a certificate.
struct CertSpec {
  std::string cn = "awaken test";
  std::vector<std::string> uris;                              // URI SANs
  std::optional<bool> ca = false;                             // basicConstraints (nullopt: none)
  std::optional<std::string> key_usage = "digitalSignature";  // nullopt: no extension
  bool key_usage_critical = true;
  std::chrono::seconds not_before{-60};  // from now
  std::chrono::seconds not_after{3600};  // from now
  KeyKind key = KeyKind::p256;
};

/// A certificate and its key.
struct Issued {
  std::shared_ptr<X509> cert;
  std::shared_ptr<EVP_PKEY> key;

  spiffe::Certificate certificate() const { return spiffe::Certificate::from_native(cert.get()); }
  std::string der() const {
    unsigned char* p = nullptr;
    const int n = i2d_X509(cert.get(), &p);
    std::string out{reinterpret_cast<const char*>(p), static_cast<std::size_t>(n)};
    OPENSSL_free(p);
    return out;
  }
  std::string key_der() const {  // PKCS#8
    PKCS8_PRIV_KEY_INFO* info = EVP_PKEY2PKCS8(key.get());
    unsigned char* p = nullptr;
    const int n = i2d_PKCS8_PRIV_KEY_INFO(info, &p);
    PKCS8_PRIV_KEY_INFO_free(info);
    std::string out{reinterpret_cast<const char*>(p), static_cast<std::size_t>(n)};
    OPENSSL_free(p);
    return out;
  }
  std::string pem() const { return certificate().pem(); }
};

inline void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) throw std::runtime_error("bad extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

/// Issues a certificate for `spec`, signed by `issuer` (self-signed when null).
inline Issued issue(const CertSpec& spec, const Issued* issuer = nullptr) {
  static std::uint64_t serial = 1000;
  Issued out{{X509_new(), X509_free}, make_key(spec.key)};
  X509* x = out.cert.get();
  X509_set_version(x, 2);
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), ++serial);
  X509_gmtime_adj(X509_getm_notBefore(x), static_cast<long>(spec.not_before.count()));
  X509_gmtime_adj(X509_getm_notAfter(x), static_cast<long>(spec.not_after.count()));
  X509_set_pubkey(x, out.key.get());
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1, -1,
                             0);
  X509* issuer_cert = issuer != nullptr ? issuer->cert.get() : x;
  X509_set_issuer_name(x, X509_get_subject_name(issuer_cert));
  if (spec.ca) add_ext(x, issuer_cert, NID_basic_constraints, *spec.ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  if (spec.key_usage)
    add_ext(x, issuer_cert, NID_key_usage, (spec.key_usage_critical ? "critical," : "") + *spec.key_usage);
  if (!spec.uris.empty()) {
    std::string san;
    for (const auto& u : spec.uris) san += (san.empty() ? "URI:" : ",URI:") + u;
    add_ext(x, issuer_cert, NID_subject_alt_name, san);
  }
  add_ext(x, issuer_cert, NID_subject_key_identifier, "hash");
  if (issuer != nullptr) add_ext(x, issuer_cert, NID_authority_key_identifier, "keyid:always");
  EVP_PKEY* signer = issuer != nullptr ? issuer->key.get() : out.key.get();
  const bool no_digest = EVP_PKEY_get_base_id(signer) == EVP_PKEY_ED25519;
  if (X509_sign(x, signer, no_digest ? nullptr : EVP_sha256()) == 0) throw std::runtime_error("signing failed");
  return out;
}

/// A CA spec: CA:TRUE, keyCertSign and cRLSign, critical.
inline CertSpec ca_spec(std::string cn, std::vector<std::string> uris = {}) {
  CertSpec s;
  s.cn = std::move(cn);
  s.uris = std::move(uris);
  s.ca = true;
  s.key_usage = "keyCertSign,cRLSign";
  s.not_after = std::chrono::hours{48};
  return s;
}

/// A leaf SVID spec for `id`.
inline CertSpec leaf_spec(std::string id, KeyKind key = KeyKind::p256) {
  CertSpec s;
  s.cn = "leaf";
  s.uris = {std::move(id)};
  s.key = key;
  return s;
}

/// A trust domain's CA hierarchy: a root and an intermediate.
struct TestAuthority {
  explicit TestAuthority(const std::string& td)
      : root(issue(ca_spec(td + " root", {"spiffe://" + td}))),
        intermediate(issue(ca_spec(td + " intermediate"), &root)),
        name(td) {}
  Issued root;
  Issued intermediate;
  std::string name;

  Issued leaf(const CertSpec& spec) const { return issue(spec, &intermediate); }
  std::vector<spiffe::Certificate> chain(const Issued& leaf) const {
    return {leaf.certificate(), intermediate.certificate()};
  }
  spiffe::X509Svid svid(const Issued& leaf, std::string hint = {}) const {
    const std::string chain_der = leaf.der() + intermediate.der();
    const std::string key = leaf.key_der();
    return spiffe::X509Svid::from_der({reinterpret_cast<const std::uint8_t*>(chain_der.data()), chain_der.size()},
                                      {reinterpret_cast<const std::uint8_t*>(key.data()), key.size()}, std::move(hint));
  }
  spiffe::X509Bundle bundle() const {
    return spiffe::X509Bundle{spiffe::TrustDomain::parse(name), {root.certificate()}};
  }
};

}  // namespace awaken::test
