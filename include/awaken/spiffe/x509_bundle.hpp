// X.509 certificates as awaken holds them, a trust domain's X.509 authorities (bundles), sets
// of bundles, and the X509BundleSource interface that X.509-SVID verification reads from.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <awaken/spiffe/bundle_set.hpp>
#include <awaken/spiffe/spiffe_id.hpp>

struct x509_st;        // OpenSSL's X509
struct x509_store_st;  // OpenSSL's X509_STORE

namespace awaken::spiffe {

/// One X.509 certificate, parsed once and kept with its DER bytes.
///
/// Thread safety: an immutable value; copies share the parsed certificate.
class Certificate {
 public:
  /// The largest certificate accepted, in DER bytes.
  static constexpr std::size_t max_der_bytes = 64 * 1024;

  /// Parses exactly one DER certificate. Throws `Error{spiffe_errc::invalid_certificate}`.
  static Certificate from_der(std::span<const std::uint8_t> der);
  /// Shares (up-refs) an OpenSSL certificate, such as one a TLS peer sent.
  static Certificate from_native(x509_st* x509);
  /// Parses concatenated DER certificates (the Workload API's form), at most `max_count`
  /// (`invalid_chain` past it). Throws `invalid_certificate` for bytes that are not
  /// certificates, trailing garbage included.
  static std::vector<Certificate> parse_der_sequence(std::span<const std::uint8_t> der, std::size_t max_count);
  /// Every `CERTIFICATE` block of a PEM text, in order (other blocks are skipped), at most
  /// `max_count`. Throws `invalid_certificate` when a block does not parse or there is none.
  static std::vector<Certificate> parse_pem(std::string_view pem, std::size_t max_count);

  std::span<const std::uint8_t> der() const noexcept;
  /// The certificate as PEM.
  std::string pem() const;
  /// The subject, one line (RFC 2253).
  std::string subject() const;
  std::chrono::system_clock::time_point not_before() const noexcept;
  std::chrono::system_clock::time_point not_after() const noexcept;
  /// The OpenSSL certificate, owned by this object (and its copies); do not free or modify it.
  x509_st* native_handle() const noexcept;

  /// Same DER bytes.
  friend bool operator==(const Certificate& a, const Certificate& b) noexcept;

 private:
  struct Impl;
  explicit Certificate(std::shared_ptr<const Impl> impl) noexcept : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

/// A trust domain's X.509 authorities: the certificates that X.509-SVIDs of that trust domain
/// must chain to. An authority is a trust anchor whether or not it is self-signed.
///
/// Thread safety: immutable after construction.
class X509Bundle {
 public:
  /// Default bound on a bundle's encoded size: 4 MiB.
  static constexpr std::size_t default_max_bytes = 4 << 20;
  /// The most authorities a bundle may hold.
  static constexpr std::size_t max_authorities = 4096;

  /// A bundle with no authorities: every X.509-SVID of `td` is refused.
  explicit X509Bundle(TrustDomain td);
  /// From authorities; a certificate given twice is kept once.
  X509Bundle(TrustDomain td, std::vector<Certificate> authorities);

  /// Concatenated DER certificates (the Workload API's form). Throws `awaken::Error`:
  /// `bundle_too_large` over `max_bytes`, `invalid_certificate`, `invalid_chain` (over
  /// `max_authorities`).
  static X509Bundle parse_der(TrustDomain td, std::span<const std::uint8_t> der,
                              std::size_t max_bytes = default_max_bytes);
  /// PEM `CERTIFICATE` blocks; throws as `parse_der` (no block at all: `invalid_certificate`).
  static X509Bundle parse_pem(TrustDomain td, std::string_view pem, std::size_t max_bytes = default_max_bytes);
  /// A SPIFFE bundle (a JWK set): every key with `use` `x509-svid` gives its first `x5c` value
  /// (standard base64 DER) as an authority; a key with a missing or empty `x5c` or a missing or
  /// unknown `kty` is skipped, as are keys of other uses. Throws `bundle_too_large`, `invalid_bundle` (not a JWK
  /// set, `x5c` not an array of strings), `invalid_certificate`.
  static X509Bundle parse_jwks(TrustDomain td, std::string_view jwks, std::size_t max_bytes = default_max_bytes);
  /// A file of PEM or DER certificates (told apart by content).
  static X509Bundle load(TrustDomain td, const std::filesystem::path& file, std::size_t max_bytes = default_max_bytes);

  const TrustDomain& trust_domain() const noexcept { return td_; }
  /// The authorities, in the order given (duplicates dropped).
  std::span<const Certificate> authorities() const noexcept { return authorities_; }
  bool empty() const noexcept { return authorities_.empty(); }
  /// Whether `cert` is one of the authorities (same DER).
  bool contains(const Certificate& cert) const noexcept;
  /// The authorities as concatenated PEM.
  std::string to_pem() const;
  /// An OpenSSL store of the authorities, built once; shared by every verification against
  /// this bundle, so never modify it. Null for an empty bundle.
  x509_store_st* native_store() const noexcept;

  /// Same trust domain and the same authorities, in any order.
  friend bool operator==(const X509Bundle& a, const X509Bundle& b) noexcept;

 private:
  TrustDomain td_;
  std::vector<Certificate> authorities_;
  std::shared_ptr<x509_store_st> store_;
};

/// Where X.509-SVID verification finds the authorities of a trust domain. `X509BundleSet` is
/// one; `X509Source` is another.
///
/// Thread safety: implementations must be safe to call from any thread.
class X509BundleSource {
 public:
  virtual ~X509BundleSource() = default;
  /// The bundle of `td`, or null when there is none. The bundle stays valid as long as the
  /// returned pointer is held.
  virtual std::shared_ptr<const X509Bundle> x509_bundle_for_trust_domain(const TrustDomain& td) const = 0;
};

/// The X.509 bundles of several trust domains: a `BundleSet`.
class X509BundleSet final : public BundleSet<X509Bundle, X509BundleSource> {
 public:
  using BundleSet::BundleSet;
  std::shared_ptr<const X509Bundle> x509_bundle_for_trust_domain(const TrustDomain& td) const override {
    return shared_bundle(td);
  }
};

extern template class BundleSet<X509Bundle, X509BundleSource>;

}  // namespace awaken::spiffe
