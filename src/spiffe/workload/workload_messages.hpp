// Workload API messages into what they carry (workload_messages.cpp). Each throws
// `awaken::Error`: `empty_response`, `resource_limit_exceeded`, `malformed_message` or a
// rule's own `spiffe_errc`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <awaken/spiffe/experimental/wit_svid.hpp>
#include <awaken/spiffe/workload_api.hpp>

namespace awaken::spiffe::detail {

/// A JWTBundlesResponse: every key a trust domain, every value its JWKS.
JwtBundleSet to_bundle_set(const std::string& message, const ResourceLimits& limits);
/// An X509SVIDResponse: the SVIDs (with their keys) and the bundles.
X509Context to_x509_context(std::string_view message, const ResourceLimits& limits);
/// An X509BundlesResponse.
X509BundleSet to_x509_bundle_set(std::string_view message, const ResourceLimits& limits);
/// A WITSVIDResponse: each SVID parsed (not validated: it comes from this workload's own
/// agent) with its private key; the first of each hint.
std::vector<experimental::WitSvid> to_wit_svids(std::string_view message, const ResourceLimits& limits);
/// A WITBundlesResponse.
JwtBundleSet to_wit_bundle_set(const std::string& message, const ResourceLimits& limits);

}  // namespace awaken::spiffe::detail
