// JWT bundles: a trust domain's JWT authorities (keys by `kid`), sets of bundles, and the
// BundleSource interface that validation reads from.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include <awaken/jose/keys.hpp>
#include <awaken/spiffe/bundle_set.hpp>
#include <awaken/spiffe/spiffe_id.hpp>

namespace awaken::spiffe {

/// One JWT signing key of a trust domain: its `kid` and its public key, parsed once.
///
/// Thread safety: an immutable value; copies share the key.
class JwtAuthority {
 public:
  /// From a JWK object: `kid` must be a non-empty string (`missing_key_id`); the key must be
  /// an RSA (at least 2048 bits) or EC P-256/384/521 public key without private members
  /// (`invalid_authority`, naming the kid and the reason). Throws `awaken::Error`.
  static JwtAuthority from_jwk(const nlohmann::json& jwk);

  const std::string& key_id() const noexcept { return kid_; }
  const jose::PublicKey& key() const noexcept { return key_; }
  /// The JWK as it was given (public members only), as JSON text.
  const std::string& jwk_json() const noexcept { return jwk_; }

  friend bool operator==(const JwtAuthority& a, const JwtAuthority& b) noexcept {
    return a.kid_ == b.kid_ && a.jwk_ == b.jwk_;
  }

 private:
  JwtAuthority(std::string kid, jose::PublicKey key, std::string jwk) noexcept
      : kid_(std::move(kid)), key_(std::move(key)), jwk_(std::move(jwk)) {}
  friend class JwtBundle;
  static JwtAuthority from_jwk(const nlohmann::json& jwk, const std::string& context);
  std::string kid_;
  jose::PublicKey key_;
  std::string jwk_;
};

/// Which keys of a JWK set a bundle takes: JWT-SVID authorities (`use` absent or `jwt-svid`),
/// or WIT-SVID authorities (`use` exactly `wit-svid`; experimental, as WIT-SVIDs are).
enum class AuthorityUse { jwt_svid, wit_svid };

/// A trust domain's JWT authorities, with the bundle's `spiffe_sequence` and
/// `spiffe_refresh_hint` when it carries them.
///
/// Thread safety: immutable after construction.
class JwtBundle {
 public:
  /// Default bound on a JWKS document: 4 MiB.
  static constexpr std::size_t default_max_bytes = 4 << 20;

  /// A bundle with no authorities (every JWT-SVID of `td` is untrusted).
  explicit JwtBundle(TrustDomain td) noexcept : td_(std::move(td)) {}
  /// From authorities; throws `Error{spiffe_errc::duplicate_key_id}` when two share a kid.
  JwtBundle(TrustDomain td, std::vector<JwtAuthority> authorities);

  /// Parses a JWK set (RFC 7517; the SPIFFE bundle format). `keys` must be an array (it may
  /// be empty); a key whose `use` is present and not `jwt-svid` is ignored (with
  /// `AuthorityUse::wit_svid`: a key whose `use` is not exactly `wit-svid`), as is a key of an
  /// unknown `kty` (such as `OKP` or `oct`); every other key must be a valid JWT authority and
  /// a duplicate `kid` rejects the bundle. `spiffe_sequence` (an unsigned integer) and
  /// `spiffe_refresh_hint` (whole seconds) are read when present. Throws `awaken::Error`:
  /// `bundle_too_large` over `max_bytes`, `invalid_bundle` (not JSON, not an object, `keys`
  /// missing or not an array, a key that is not an object or lacks `kty`, a parameter of the
  /// wrong type), `missing_key_id`, `duplicate_key_id`, `invalid_authority`.
  static JwtBundle parse(TrustDomain td, std::string_view jwks, std::size_t max_bytes = default_max_bytes,
                         AuthorityUse use = AuthorityUse::jwt_svid);

  const TrustDomain& trust_domain() const noexcept { return td_; }
  /// The authority for `kid`, or null; no allocation.
  const JwtAuthority* find_authority(std::string_view kid) const noexcept;
  /// All authorities, ordered by kid.
  std::span<const JwtAuthority> authorities() const noexcept { return authorities_; }
  bool empty() const noexcept { return authorities_.empty(); }
  std::optional<std::uint64_t> sequence() const noexcept { return sequence_; }
  std::optional<std::chrono::seconds> refresh_hint() const noexcept { return refresh_hint_; }

  /// The bundle as a JWK set, with `spiffe_sequence` and `spiffe_refresh_hint` when known.
  std::string to_jwks() const;

  /// Same trust domain, authorities (kid and JWK), sequence and refresh hint.
  friend bool operator==(const JwtBundle&, const JwtBundle&) noexcept;

 private:
  TrustDomain td_;
  std::vector<JwtAuthority> authorities_;  // sorted by kid
  std::optional<std::uint64_t> sequence_;
  std::optional<std::chrono::seconds> refresh_hint_;
};

/// Where JWT-SVID validation finds the bundle of a trust domain. `JwtBundleSet` is one; a
/// Workload API source is another.
///
/// Thread safety: implementations must be safe to call from any thread.
class BundleSource {
 public:
  virtual ~BundleSource() = default;
  /// The bundle of `td`, or null when there is none. The bundle stays valid as long as the
  /// returned pointer is held, whatever the source does meanwhile.
  virtual std::shared_ptr<const JwtBundle> bundle_for_trust_domain(const TrustDomain& td) const = 0;
};

/// The JWT bundles of several trust domains (for JWT-SVIDs and WIT-SVIDs): a `BundleSet`.
class JwtBundleSet final : public BundleSet<JwtBundle, BundleSource> {
 public:
  using BundleSet::BundleSet;
  std::shared_ptr<const JwtBundle> bundle_for_trust_domain(const TrustDomain& td) const override {
    return shared_bundle(td);
  }
};

extern template class BundleSet<JwtBundle, BundleSource>;

}  // namespace awaken::spiffe
