// Workload API messages into what they carry: JWT and X.509 bundle sets, X.509 contexts,
// WIT-SVIDs and WIT bundles, each checked against the resource limits; and X509Context's lookups.
#include "spiffe/workload/workload_messages.hpp"

#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_set>

#include <awaken/error.hpp>
#include <awaken/jose/keys.hpp>

#include "spiffe/workload/workload_proto.hpp"

namespace awaken::spiffe {
namespace detail {

// One bundles message as a bundle set: every key a trust domain, every value its JWKS.
JwtBundleSet to_bundle_set(const std::string& message, const ResourceLimits& limits) {
  auto entries = detail::decode_jwt_bundles_response(message, limits.max_bundles);
  if (entries.empty()) throw_error(spiffe_errc::empty_response, "Workload API JWTBundlesResponse: no bundles");
  std::vector<JwtBundle> bundles;
  bundles.reserve(entries.size());
  for (auto& [key, jwks] : entries) {
    std::error_code ec;
    auto td = TrustDomain::parse(key, ec);
    if (!td)
      throw_error(spiffe_errc::malformed_message, "Workload API JWTBundlesResponse: key '" + bounded_excerpt(key, 128) +
                                                      "' is not a trust domain (" + ec.message() + ")");
    bundles.push_back(JwtBundle::parse(std::move(*td), jwks, limits.max_bundle_jwks_bytes));
  }
  return JwtBundleSet{std::move(bundles)};
}

namespace {

std::span<const std::uint8_t> bytes_of(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

TrustDomain bundle_key(const std::string& key, std::string_view message) {
  std::error_code ec;
  auto td = TrustDomain::parse(key, ec);
  if (!td)
    throw_error(spiffe_errc::malformed_message, "Workload API " + std::string{message} + ": key '" +
                                                    bounded_excerpt(key, 128) + "' is not a trust domain (" +
                                                    ec.message() + ")");
  return std::move(*td);
}

}  // namespace

// One X509SVIDResponse as a context: each SVID's bundle under its trust domain, then the
// federated bundles (a federated entry for the SVIDs' own trust domain replaces theirs).
X509Context to_x509_context(std::string_view message, const ResourceLimits& limits) {
  constexpr std::string_view name = "X509SVIDResponse";
  auto decoded = detail::decode_x509_svid_response(message, limits.max_svids, limits.max_bundles);
  if (decoded.svids.empty()) throw_error(spiffe_errc::empty_response, "Workload API X509SVIDResponse: no SVID");
  X509Context out;
  std::unordered_set<std::string> hints;
  std::map<TrustDomain, std::shared_ptr<const X509Bundle>> bundles;
  for (auto& entry : decoded.svids) {
    if (!entry.hint.empty() && !hints.insert(entry.hint).second) continue;  // the first wins
    X509Svid svid = [&] {
      try {
        return X509Svid::from_der(bytes_of(entry.chain), bytes_of(entry.key), std::move(entry.hint));
      } catch (const Error& e) {  // the rule's own code, with the SVID named
        throw_error(e.code(), "Workload API X509SVIDResponse: SVID '" + bounded_excerpt(entry.spiffe_id, 128) +
                                  "': " + e.context());
      }
    }();
    if (svid.spiffe_id().str() != entry.spiffe_id)
      throw_error(spiffe_errc::malformed_message, "Workload API X509SVIDResponse: spiffe_id '" +
                                                      bounded_excerpt(entry.spiffe_id, 128) +
                                                      "' is not the certificate's " + svid.spiffe_id().str());
    const TrustDomain& td = svid.spiffe_id().trust_domain();
    if (!bundles.contains(td))
      bundles.emplace(td, std::make_shared<const X509Bundle>(
                              X509Bundle::parse_der(td, bytes_of(entry.bundle), limits.max_bundle_der_bytes)));
    out.svids.push_back(std::move(svid));
  }
  for (auto& [key, der] : decoded.federated) {
    TrustDomain td = bundle_key(key, name);
    auto bundle =
        std::make_shared<const X509Bundle>(X509Bundle::parse_der(td, bytes_of(der), limits.max_bundle_der_bytes));
    bundles.insert_or_assign(std::move(td), std::move(bundle));
  }
  if (bundles.size() > limits.max_bundles)
    throw_error(spiffe_errc::resource_limit_exceeded,
                "Workload API X509SVIDResponse: more than " + std::to_string(limits.max_bundles) + " trust domains");
  std::vector<std::shared_ptr<const X509Bundle>> list;
  list.reserve(bundles.size());
  for (auto& [td, b] : bundles) list.push_back(std::move(b));
  out.bundles = X509BundleSet{std::move(list)};
  return out;
}

X509BundleSet to_x509_bundle_set(std::string_view message, const ResourceLimits& limits) {
  auto entries = detail::decode_x509_bundles_response(message, limits.max_bundles);
  if (entries.empty()) throw_error(spiffe_errc::empty_response, "Workload API X509BundlesResponse: no bundles");
  std::vector<X509Bundle> bundles;
  bundles.reserve(entries.size());
  for (auto& [key, der] : entries)
    bundles.push_back(
        X509Bundle::parse_der(bundle_key(key, "X509BundlesResponse"), bytes_of(der), limits.max_bundle_der_bytes));
  return X509BundleSet{std::move(bundles)};
}

// One WITSVIDResponse: each SVID parsed (not validated: it comes from this workload's own
// agent) with its private key; the first of each hint.
std::vector<experimental::WitSvid> to_wit_svids(std::string_view message, const ResourceLimits& limits) {
  constexpr std::string_view name = "Workload API WITSVIDResponse";
  auto entries = detail::decode_wit_svid_response(message, limits.max_svids);
  if (entries.empty()) throw_error(spiffe_errc::empty_response, std::string{name} + ": no SVID");
  std::vector<experimental::WitSvid> out;
  std::unordered_set<std::string> hints;
  for (auto& entry : entries) {
    if (!entry.hint.empty() && !hints.insert(entry.hint).second) continue;  // the first wins
    const std::string svid_name = std::string{name} + ": SVID '" + bounded_excerpt(entry.spiffe_id, 128) + "'";
    std::optional<experimental::WitSvid> svid;
    try {
      svid.emplace(experimental::WitSvid::parse_insecure(entry.svid));
    } catch (const Error& e) {  // the rule's own code, with the SVID named
      throw_error(e.code().category() == spiffe_category() ? e.code() : make_error_code(spiffe_errc::malformed_message),
                  svid_name + ": " + e.context());
    }
    if (svid->spiffe_id().str() != entry.spiffe_id)
      throw_error(spiffe_errc::malformed_message, svid_name + " does not match the token's " + svid->spiffe_id().str());
    try {
      svid.emplace(svid->with_private_key(jose::PrivateKey::from_jwk(RedactedString{entry.key})));
    } catch (const Error& e) {
      throw_error(e.code().category() == spiffe_category() ? e.code() : make_error_code(spiffe_errc::malformed_message),
                  svid_name + ": wit_svid_key: " + e.code().message());
    }
    out.push_back(svid->with_hint(std::move(entry.hint)));
  }
  return out;
}

JwtBundleSet to_wit_bundle_set(const std::string& message, const ResourceLimits& limits) {
  auto entries = detail::decode_wit_bundles_response(message, limits.max_bundles);
  if (entries.empty()) throw_error(spiffe_errc::empty_response, "Workload API WITBundlesResponse: no bundles");
  std::vector<JwtBundle> bundles;
  bundles.reserve(entries.size());
  for (auto& [key, jwks] : entries)
    bundles.push_back(
        experimental::parse_wit_bundle(bundle_key(key, "WITBundlesResponse"), jwks, limits.max_bundle_jwks_bytes));
  return JwtBundleSet{std::move(bundles)};
}

}  // namespace detail

const X509Svid* X509Context::svid_by_hint(std::string_view hint) const noexcept {
  for (const auto& s : svids)
    if (s.hint() == hint) return &s;
  return nullptr;
}

const X509Svid* X509Context::svid_by_id(const SpiffeId& id) const noexcept {
  for (const auto& s : svids)
    if (s.spiffe_id() == id) return &s;
  return nullptr;
}

}  // namespace awaken::spiffe
