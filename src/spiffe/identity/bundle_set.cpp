// BundleSet, for JWT and X.509 bundles alike.
#include <awaken/spiffe/bundle_set.hpp>

#include <algorithm>
#include <string>
#include <type_traits>

#include <awaken/error.hpp>
#include <awaken/spiffe/bundle.hpp>
#include <awaken/spiffe/x509_bundle.hpp>

namespace awaken::spiffe {

template <class Bundle, class Source>
BundleSet<Bundle, Source>::BundleSet(std::vector<std::shared_ptr<const Bundle>> bundles)
    : bundles_(std::move(bundles)) {
  const char* kind = std::is_same_v<Bundle, JwtBundle> ? "JWT bundle set" : "X.509 bundle set";
  for (const auto& b : bundles_)
    if (b == nullptr) throw_error(spiffe_errc::invalid_bundle, std::string{kind} + ": a bundle is null");
  std::sort(bundles_.begin(), bundles_.end(),
            [](const auto& a, const auto& b) { return a->trust_domain() < b->trust_domain(); });
  auto dup = std::adjacent_find(bundles_.begin(), bundles_.end(),
                                [](const auto& a, const auto& b) { return a->trust_domain() == b->trust_domain(); });
  if (dup != bundles_.end())
    throw_error(spiffe_errc::invalid_bundle, std::string{kind} + ": two bundles for " + (*dup)->trust_domain().name());
}

template <class Bundle, class Source>
BundleSet<Bundle, Source>::BundleSet(std::vector<Bundle> bundles)
    : BundleSet([&] {
        std::vector<std::shared_ptr<const Bundle>> shared;
        shared.reserve(bundles.size());
        for (auto& b : bundles) shared.push_back(std::make_shared<const Bundle>(std::move(b)));
        return shared;
      }()) {}

template <class Bundle, class Source>
const Bundle* BundleSet<Bundle, Source>::find(std::string_view td) const noexcept {
  auto it = std::lower_bound(bundles_.begin(), bundles_.end(), td, [](const auto& b, std::string_view name) {
    return std::string_view{b->trust_domain().name()} < name;
  });
  return it != bundles_.end() && (*it)->trust_domain().name() == td ? it->get() : nullptr;
}

template <class Bundle, class Source>
std::shared_ptr<const Bundle> BundleSet<Bundle, Source>::shared_bundle(const TrustDomain& td) const {
  auto it = std::lower_bound(bundles_.begin(), bundles_.end(), td,
                             [](const auto& b, const TrustDomain& t) { return b->trust_domain() < t; });
  return it != bundles_.end() && (*it)->trust_domain() == td ? *it : nullptr;
}

template <class Bundle, class Source>
std::size_t BundleSet<Bundle, Source>::authority_count() const noexcept {
  std::size_t n = 0;
  for (const auto& b : bundles_) n += b->authorities().size();
  return n;
}

template <class Bundle, class Source>
bool BundleSet<Bundle, Source>::same_as(const BundleSet& other) const noexcept {
  return std::equal(bundles_.begin(), bundles_.end(), other.bundles_.begin(), other.bundles_.end(),
                    [](const auto& x, const auto& y) { return x == y || *x == *y; });
}

template class BundleSet<JwtBundle, BundleSource>;
template class BundleSet<X509Bundle, X509BundleSource>;

}  // namespace awaken::spiffe
