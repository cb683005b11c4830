// `BundleSet<Bundle, Source>`: an immutable set of bundles, at most one per trust domain, for
// every kind of bundle (`JwtBundleSet` for JWT-SVIDs and WIT-SVIDs, `X509BundleSet`). `Source`
// is the lookup interface the set implements for validation (`BundleSource`,
// `X509BundleSource`).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include <awaken/spiffe/spiffe_id.hpp>

namespace awaken::spiffe {

/// Thread safety: immutable after construction; share it freely (for example through an
/// atomic `shared_ptr` swap).
template <class Bundle, class Source>
class BundleSet : public Source {
 public:
  using bundle_type = Bundle;

  BundleSet() = default;
  /// Throws `Error{spiffe_errc::invalid_bundle}` when two bundles share a trust domain or a
  /// bundle is null.
  explicit BundleSet(std::vector<std::shared_ptr<const Bundle>> bundles);
  explicit BundleSet(std::vector<Bundle> bundles);

  /// The bundle of the trust domain named `td` (canonical, lowercase), or null; no allocation.
  const Bundle* find(std::string_view td) const noexcept;
  /// The bundle of `td`, shared, or null.
  std::shared_ptr<const Bundle> shared_bundle(const TrustDomain& td) const;

  /// The bundles, ordered by trust domain.
  std::span<const std::shared_ptr<const Bundle>> bundles() const noexcept { return bundles_; }
  std::size_t size() const noexcept { return bundles_.size(); }
  bool empty() const noexcept { return bundles_.empty(); }
  /// The number of authorities across all bundles.
  std::size_t authority_count() const noexcept;

  /// Same bundles, by content.
  friend bool operator==(const BundleSet& a, const BundleSet& b) noexcept { return a.same_as(b); }

 private:
  bool same_as(const BundleSet& other) const noexcept;
  std::vector<std::shared_ptr<const Bundle>> bundles_;  // sorted by trust domain
};

}  // namespace awaken::spiffe
