// What JWT-SVIDs, WIT-SVIDs and workload proof tokens read alike: NumericDates, saturating time
// arithmetic, and the mapping of JOSE parse failures to SPIFFE codes.
#pragma once

#include <chrono>
#include <climits>
#include <cmath>
#include <optional>
#include <string>
#include <system_error>

#include <nlohmann/json.hpp>

#include <awaken/clock.hpp>
#include <awaken/error.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/spiffe/bundle.hpp>

#include "core/bounded_json.hpp"

namespace awaken::spiffe::detail {

// The latest NumericDate accepted, 2255-03-14: system_clock counts nanoseconds in 64 bits and
// ends in 2262, and a date must survive the leeway arithmetic too.
inline constexpr double max_numeric_date = 9'000'000'000.0;

/// a + b for seconds, saturating instead of overflowing (the leeway is the caller's to choose).
inline long long add_seconds(long long a, long long b) noexcept {
  long long out = 0;
  if (__builtin_add_overflow(a, b, &out)) return b > 0 ? LLONG_MAX : LLONG_MIN;
  return out;
}

inline std::error_code from_jose(std::error_code ec) noexcept {
  if (ec == jose_errc::input_too_large) return spiffe_errc::token_too_large;
  if (ec == jose_errc::malformed_base64url) return spiffe_errc::invalid_base64;
  if (ec == jose_errc::malformed_json || ec == jose_errc::unsupported_critical_header)
    return spiffe_errc::invalid_header;
  if (ec == jose_errc::unsupported_algorithm) return ec;
  return spiffe_errc::malformed_token;
}

/// A NumericDate claim, or nullopt when absent; `invalid_claims` (context `what`) when it is not
/// a number in range.
inline std::optional<double> numeric_date(const nlohmann::json& claims, const char* name, const char* what) {
  auto it = claims.find(name);
  if (it == claims.end()) return std::nullopt;
  if (!it->is_number()) throw_error(spiffe_errc::invalid_claims, std::string{what} + ": " + name + " is not a number");
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < 0 || v > max_numeric_date)
    throw_error(spiffe_errc::invalid_claims, std::string{what} + ": " + name + " is out of range");
  return v;
}

inline long long whole_seconds(double v) noexcept { return static_cast<long long>(std::floor(v)); }

inline std::chrono::system_clock::time_point at(double seconds) {
  return std::chrono::system_clock::time_point{std::chrono::seconds{whole_seconds(seconds)}};
}

/// Now in whole seconds since the epoch, from `clock` or the system clock.
inline long long now_seconds(const Clock* clock) {
  const auto now_tp = clock != nullptr ? clock->system_now() : std::chrono::system_clock::now();
  return std::chrono::floor<std::chrono::seconds>(now_tp.time_since_epoch()).count();
}

/// Verifies `jws` with the authority `kid` of `id`'s trust domain in `bundles`:
/// `bundle_not_found`, `authority_not_found`, `algorithm_mismatch`, `invalid_signature`, each
/// with context `what` (such as "JWT-SVID") and names only.
inline void verify_with_authority(const jose::CompactJws& jws, const SpiffeId& id, const std::string& kid,
                                  const BundleSource& bundles, const char* what) {
  auto fail = [what](std::error_code code, const std::string& context) {
    throw_error(code, std::string{what} + ": " + context);
  };
  const auto bundle = bundles.bundle_for_trust_domain(id.trust_domain());
  if (bundle == nullptr) fail(spiffe_errc::bundle_not_found, "trust domain " + id.trust_domain().name());
  const JwtAuthority* authority = bundle->find_authority(kid);
  if (authority == nullptr)
    fail(spiffe_errc::authority_not_found,
         "kid '" + bounded_excerpt(kid, 64) + "' in the bundle of " + id.trust_domain().name());
  if (!authority->key().supports(jws.algorithm()))
    fail(spiffe_errc::algorithm_mismatch, "alg " + std::string{jose::to_string(jws.algorithm())} +
                                              " with the authority key of kid '" + bounded_excerpt(kid, 64) + "' of " +
                                              id.trust_domain().name());
  std::error_code ec;
  if (!jws.verify(authority->key(), ec))
    fail(jose_errc::invalid_signature, "kid '" + bounded_excerpt(kid, 64) + "' of " + id.trust_domain().name());
}

/// The claims of `jws`: a JSON object with a string `sub`. `malformed_token` when the payload is
/// empty; `invalid_claims` when it begins with a byte-order mark or is not an object (or nests
/// deeper than 32); `invalid_subject` without a string `sub`. Texts begin with `what`.
inline nlohmann::json claims_of(const jose::CompactJws& jws, const char* what) {
  auto fail = [what](std::error_code code, const char* context) {
    throw_error(code, std::string{what} + ": " + context);
  };
  if (jws.payload().empty()) fail(spiffe_errc::malformed_token, "the payload is empty");
  if (awaken::detail::starts_with_bom(jws.payload()))
    fail(spiffe_errc::invalid_claims, "the claims begin with a byte-order mark");
  auto claims = awaken::detail::parse_bounded_json(jws.payload());
  if (!claims.is_object())
    fail(spiffe_errc::invalid_claims, "the claims are not a JSON object (or nest deeper than 32)");
  const auto sub = claims.find("sub");
  if (sub == claims.end() || !sub->is_string()) fail(spiffe_errc::invalid_subject, "sub is missing or not a string");
  return claims;
}

}  // namespace awaken::spiffe::detail
