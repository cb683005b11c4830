// JWT bundles: JWKS parsing with the SPIFFE rules, bundle sets, lookups without allocation.
#include <awaken/error.hpp>
#include <awaken/spiffe/bundle.hpp>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/bounded_json.hpp"

namespace awaken::spiffe {
namespace {

constexpr std::chrono::seconds max_refresh_hint{365LL * 24 * 3600};

[[noreturn]] void bad_bundle(const TrustDomain& td, const std::string& why) {
  throw_error(spiffe_errc::invalid_bundle, "JWT bundle of " + td.name() + ": " + why);
}

bool by_kid(const JwtAuthority& a, const JwtAuthority& b) noexcept { return a.key_id() < b.key_id(); }

void sort_and_check(const TrustDomain& td, std::vector<JwtAuthority>& authorities) {
  std::sort(authorities.begin(), authorities.end(), by_kid);
  auto dup = std::adjacent_find(authorities.begin(), authorities.end(),
                                [](const JwtAuthority& a, const JwtAuthority& b) { return a.key_id() == b.key_id(); });
  if (dup != authorities.end())
    throw_error(spiffe_errc::duplicate_key_id,
                "JWT bundle of " + td.name() + ": kid '" + bounded_excerpt(dup->key_id(), 128) + "'");
}

}  // namespace

JwtAuthority JwtAuthority::from_jwk(const nlohmann::json& jwk) { return from_jwk(jwk, "JWT authority"); }

JwtAuthority JwtAuthority::from_jwk(const nlohmann::json& jwk, const std::string& context) {
  if (!jwk.is_object()) throw_error(spiffe_errc::invalid_authority, context + ": not a JSON object");
  auto kid = jwk.find("kid");
  if (kid == jwk.end() || !kid->is_string() || kid->get_ref<const std::string&>().empty())
    throw_error(spiffe_errc::missing_key_id, context);
  const auto& id = kid->get_ref<const std::string&>();
  try {
    auto key = jose::PublicKey::from_jwk(jwk);
    return JwtAuthority{id, std::move(key), jwk.dump()};
  } catch (const Error& e) {
    throw_error(spiffe_errc::invalid_authority, context + " '" + bounded_excerpt(id, 128) + "': " + e.code().message());
  }
}

JwtBundle::JwtBundle(TrustDomain td, std::vector<JwtAuthority> authorities)
    : td_(std::move(td)), authorities_(std::move(authorities)) {
  sort_and_check(td_, authorities_);
}

JwtBundle JwtBundle::parse(TrustDomain td, std::string_view jwks, std::size_t max_bytes, AuthorityUse use_of_keys) {
  if (jwks.size() > max_bytes)
    throw_error(spiffe_errc::bundle_too_large, "JWT bundle of " + td.name() + ": " + std::to_string(jwks.size()) +
                                                   " bytes, over " + std::to_string(max_bytes));
  const auto doc = awaken::detail::parse_bounded_json(jwks);
  if (doc.is_discarded()) bad_bundle(td, "not JSON, or nested deeper than 32");
  if (!doc.is_object()) bad_bundle(td, "not a JSON object");
  auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_array()) bad_bundle(td, "'keys' is missing or not an array");

  JwtBundle bundle{std::move(td)};
  bundle.authorities_.reserve(keys->size());
  std::size_t index = 0;
  for (const auto& key : *keys) {
    const std::string where = "keys[" + std::to_string(index++) + "]";
    if (!key.is_object()) bad_bundle(bundle.td_, where + " is not an object");
    if (auto use = key.find("use"); use != key.end()) {
      if (!use->is_string()) bad_bundle(bundle.td_, where + ": 'use' is not a string");
      const char* wanted = use_of_keys == AuthorityUse::wit_svid ? "wit-svid" : "jwt-svid";
      if (use->get_ref<const std::string&>() != wanted) continue;  // an authority of another kind
    } else if (use_of_keys == AuthorityUse::wit_svid) {
      continue;  // WIT authorities are marked as such
    }
    auto kty = key.find("kty");
    if (kty == key.end() || !kty->is_string()) bad_bundle(bundle.td_, where + ": 'kty' is missing or not a string");
    const auto& type = kty->get_ref<const std::string&>();
    if (type != "RSA" && type != "EC") continue;  // a key type awaken cannot verify with
    bundle.authorities_.push_back(JwtAuthority::from_jwk(key, "JWT bundle of " + bundle.td_.name() + ": " + where));
  }
  sort_and_check(bundle.td_, bundle.authorities_);

  if (auto seq = doc.find("spiffe_sequence"); seq != doc.end()) {
    if (!seq->is_number_unsigned()) bad_bundle(bundle.td_, "'spiffe_sequence' is not an unsigned integer");
    bundle.sequence_ = seq->get<std::uint64_t>();
  }
  if (auto hint = doc.find("spiffe_refresh_hint"); hint != doc.end()) {
    if (!hint->is_number_unsigned()) bad_bundle(bundle.td_, "'spiffe_refresh_hint' is not a whole number of seconds");
    const auto seconds = hint->get<std::uint64_t>();
    bundle.refresh_hint_ = seconds > static_cast<std::uint64_t>(max_refresh_hint.count())
                               ? max_refresh_hint
                               : std::chrono::seconds{static_cast<long long>(seconds)};
  }
  return bundle;
}

const JwtAuthority* JwtBundle::find_authority(std::string_view kid) const noexcept {
  auto it = std::lower_bound(authorities_.begin(), authorities_.end(), kid,
                             [](const JwtAuthority& a, std::string_view k) { return a.key_id() < k; });
  return it != authorities_.end() && it->key_id() == kid ? &*it : nullptr;
}

std::string JwtBundle::to_jwks() const {
  nlohmann::json doc{{"keys", nlohmann::json::array()}};
  for (const auto& a : authorities_) doc["keys"].push_back(nlohmann::json::parse(a.jwk_json()));
  if (sequence_) doc["spiffe_sequence"] = *sequence_;
  if (refresh_hint_) doc["spiffe_refresh_hint"] = refresh_hint_->count();
  return doc.dump();
}

bool operator==(const JwtBundle& a, const JwtBundle& b) noexcept {
  return a.td_ == b.td_ && a.sequence_ == b.sequence_ && a.refresh_hint_ == b.refresh_hint_ &&
         a.authorities_ == b.authorities_;
}

}  // namespace awaken::spiffe
