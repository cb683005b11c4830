// X.509-SVIDs (SPIFFE X509-SVID standard): this workload's own, with its private key, and the
// verification of a peer's certificate chain against the authorities of its trust domain.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <awaken/clock.hpp>
#include <awaken/redacted_string.hpp>
#include <awaken/spiffe/spiffe_id.hpp>
#include <awaken/spiffe/x509_bundle.hpp>

struct evp_pkey_st;  // OpenSSL's EVP_PKEY

namespace awaken::spiffe {

/// The longest certificate chain accepted, leaf included.
inline constexpr std::size_t max_x509_chain_length = 16;

/// Checks that `chain` (leaf first) has the shape the X509-SVID standard requires, without
/// path validation: exactly one URI SAN, a SPIFFE ID with a path; the leaf not a CA; key usage
/// present and critical on every certificate of the chain, the leaf's with `digitalSignature` and neither
/// `keyCertSign` nor `cRLSign`; every other certificate a CA with `keyCertSign`; keys EC
/// P-256/P-384, RSA of 2048 bits or more, or Ed25519. Returns the leaf's SPIFFE ID. Throws
/// `awaken::Error` with the code of the first rule broken (`missing_uri_san`,
/// `multiple_uri_sans`, `invalid_uri_san`, `root_path_id`, `leaf_is_ca`, `missing_key_usage`,
/// `key_usage_not_critical`, `missing_digital_signature`, `leaf_has_key_cert_sign`,
/// `leaf_has_crl_sign`, `signer_not_ca`, `signer_missing_key_cert_sign`, `unsupported_key`,
/// `invalid_chain`).
SpiffeId check_x509_svid_chain(std::span<const Certificate> chain);

/// An X.509-SVID of this workload: SPIFFE ID, chain (leaf first), private key and hint.
///
/// The private key is held by OpenSSL; the encoded key bytes awaken parsed it from are wiped,
/// and nothing prints the key (`operator<<` shows ID, hint and expiry).
///
/// Thread safety: an immutable value; copies share the key.
class X509Svid {
 public:
  /// An empty SVID (no ID, no chain, no key): what an asynchronous operation hands out beside
  /// an error code, as Asio requires of results. Nothing is served from it: TLS refuses it.
  X509Svid() noexcept;
  /// Whether this is the empty SVID.
  bool empty() const noexcept;

  /// From the Workload API's fields: concatenated DER certificates (leaf first) and an
  /// unencrypted PKCS#8 DER key. Checks the chain (`check_x509_svid_chain`) and that the key
  /// is the leaf's (`key_mismatch`); `invalid_private_key` for a key that does not parse.
  /// The key bytes are not modified: the caller wipes them.
  static X509Svid from_der(std::span<const std::uint8_t> chain_der, std::span<const std::uint8_t> key_der,
                           std::string hint = {});
  /// From PEM: the chain's `CERTIFICATE` blocks and a `PRIVATE KEY` (PKCS#8) block.
  static X509Svid from_pem(std::string_view chain_pem, const RedactedString& key_pem, std::string hint = {});
  /// From a chain file and a PKCS#8 key file, both PEM.
  static X509Svid load(const std::filesystem::path& chain_file, const std::filesystem::path& key_file);

  const SpiffeId& spiffe_id() const noexcept;
  const std::string& hint() const noexcept;
  /// Leaf first.
  std::span<const Certificate> chain() const noexcept;
  /// The leaf; not for the empty SVID.
  const Certificate& leaf() const noexcept { return chain().front(); }
  /// The leaf's notAfter; the clock's epoch for the empty SVID. (`expiry`, as every SVID names it.)
  std::chrono::system_clock::time_point expiry() const noexcept {
    return empty() ? std::chrono::system_clock::time_point{} : leaf().not_after();
  }
  /// The same as `expiry()`.
  std::chrono::system_clock::time_point expires_at() const noexcept { return expiry(); }
  /// The OpenSSL private key, owned by this object (and its copies); do not free it. Null for
  /// the empty SVID.
  evp_pkey_st* private_key() const noexcept;

  /// The chain as concatenated PEM.
  std::string chain_pem() const;
  /// The private key as PKCS#8 PEM, to write to a file of mode 0600. Throws
  /// `Error{spiffe_errc::no_svid}` for the empty SVID.
  RedactedString private_key_pem() const;

  /// A copy with another hint.
  X509Svid with_hint(std::string hint) const;

  /// Same SPIFFE ID, hint and chain (the key follows from the chain).
  friend bool operator==(const X509Svid& a, const X509Svid& b) noexcept;

  struct Impl;  // opaque

 private:
  explicit X509Svid(std::shared_ptr<const Impl> impl) noexcept : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

/// `X509Svid{spiffe://example.org/workload, hint "primary", expires 2026-12-01T10:00:00Z}`.
std::ostream& operator<<(std::ostream& os, const X509Svid& svid);

/// Where a TLS context takes the SVID it presents; `X509Source` is one.
///
/// Thread safety: implementations must be safe to call from any thread.
class X509SvidSource {
 public:
  virtual ~X509SvidSource() = default;
  /// The SVID to present now. Throws `awaken::Error` when there is none.
  virtual std::shared_ptr<const X509Svid> x509_svid() const = 0;
};

/// A fixed SVID and fixed bundles (from files, say), for TLS contexts.
///
/// Thread safety: immutable.
class StaticX509Source final : public X509SvidSource, public X509BundleSource {
 public:
  StaticX509Source(std::optional<X509Svid> svid, X509BundleSet bundles)
      : svid_(svid ? std::make_shared<const X509Svid>(std::move(*svid)) : nullptr), bundles_(std::move(bundles)) {}
  std::shared_ptr<const X509Svid> x509_svid() const override;
  std::shared_ptr<const X509Bundle> x509_bundle_for_trust_domain(const TrustDomain& td) const override {
    return bundles_.x509_bundle_for_trust_domain(td);
  }

 private:
  std::shared_ptr<const X509Svid> svid_;
  X509BundleSet bundles_;
};

/// How `verify_x509_svid` judges time.
struct X509VerifyOptions {
  /// Where "now" comes from (its system time); the real clock when null.
  const Clock* clock = nullptr;
  /// How far ahead a certificate's notBefore may be (clock skew between hosts).
  std::chrono::seconds not_before_leeway{0};
};

/// A peer's X.509-SVID after verification.
struct VerifiedX509Svid {
  SpiffeId spiffe_id;
  /// The verified chain: the leaf, then up to the authority that anchors it.
  std::vector<Certificate> chain;
};

/// Verifies `chain` (leaf first, as a peer presented it) as an X.509-SVID: the rules of
/// `check_x509_svid_chain`, then path validation with OpenSSL against the authorities of the
/// leaf's own trust domain only (each authority is a trust anchor; no system store, no host
/// name). Throws `awaken::Error`: a rule's code, `bundle_not_found` (no bundle for the trust
/// domain), `no_authorities` (an empty bundle), `leaf_is_authority`, `certificate_expired`,
/// `certificate_not_yet_valid` (beyond the leeway), `untrusted_chain` (any other path
/// failure, such as a chain to another trust domain's authority).
VerifiedX509Svid verify_x509_svid(std::span<const Certificate> chain, const X509BundleSource& bundles,
                                  const X509VerifyOptions& options = {});

}  // namespace awaken::spiffe
