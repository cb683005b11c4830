// JWT-SVID parsing and validation, checks in the order the header documents; no error text
// ever carries the token.
#include <awaken/error.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/spiffe/jwt_svid.hpp>

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>

#include <nlohmann/json.hpp>

#include "core/bounded_json.hpp"
#include "spiffe/identity/jwt_claims.hpp"

namespace awaken::spiffe {

struct JwtSvid::State {
  SpiffeId id;
  std::vector<std::string> audience;
  std::chrono::system_clock::time_point expiry;
  std::string kid;
  jose::Algorithm alg;
  nlohmann::json claims;
  RedactedString token;
};

namespace {

[[noreturn]] void fail(std::error_code code, const std::string& context = {}) {
  throw_error(code, context.empty() ? std::string{"JWT-SVID"} : "JWT-SVID: " + context);
}

std::optional<double> numeric_date(const nlohmann::json& claims, const char* name) {
  return detail::numeric_date(claims, name, "JWT-SVID");
}

using detail::add_seconds;
using detail::at;
using detail::from_jose;

std::string utc(double seconds) { return utc_text(at(seconds)); }

std::vector<std::string> audiences(const nlohmann::json& claims, std::size_t max) {
  auto it = claims.find("aud");
  if (it == claims.end()) fail(spiffe_errc::missing_audience);
  std::vector<std::string> out;
  if (it->is_string()) {
    if (it->get_ref<const std::string&>().empty()) fail(spiffe_errc::missing_audience);
    out.push_back(it->get<std::string>());
    return out;
  }
  if (!it->is_array()) fail(spiffe_errc::invalid_claims, "aud is neither a string nor an array");
  if (it->empty()) fail(spiffe_errc::missing_audience);
  if (it->size() > max)
    fail(spiffe_errc::too_many_audiences, std::to_string(it->size()) + " values, over " + std::to_string(max));
  out.reserve(it->size());
  for (const auto& a : *it) {
    if (!a.is_string()) fail(spiffe_errc::invalid_claims, "aud holds a value that is not a string");
    out.push_back(a.get<std::string>());
  }
  return out;
}

std::string list(const std::vector<std::string>& values) {
  std::string out = "[";
  for (std::size_t i = 0; i < values.size() && out.size() < 200; ++i) {
    if (i > 0) out += ", ";
    out += bounded_excerpt(values[i], 64);
  }
  return out + (values.size() > 0 && out.size() >= 200 ? ", ...]" : "]");
}

}  // namespace

struct JwtSvidParser {
  template <class Expected>
  static JwtSvid run(std::string_view token, const BundleSource* bundles, const Expected& expected,
                     const JwtSvidOptions& o) {
    const bool validate = bundles != nullptr;
    if (validate && std::empty(expected)) fail(spiffe_errc::no_expected_audience);

    std::optional<jose::CompactJws> parsed;
    try {
      parsed.emplace(jose::CompactJws::parse(token, o.max_token_bytes));
    } catch (const Error& e) {
      fail(from_jose(e.code()), e.what());
    }
    const jose::CompactJws& jws = *parsed;
    const nlohmann::json& header = jws.header();

    if (auto typ = header.find("typ"); typ != header.end()) {
      if (!typ->is_string() ||
          (typ->get_ref<const std::string&>() != "JWT" && typ->get_ref<const std::string&>() != "JOSE"))
        fail(spiffe_errc::invalid_typ, typ->is_string()
                                           ? "typ '" + bounded_excerpt(typ->get_ref<const std::string&>(), 32) + "'"
                                           : std::string{"typ is a "} + typ->type_name());
    }
    std::string kid;
    if (auto k = header.find("kid"); k != header.end()) {
      if (!k->is_string()) fail(spiffe_errc::invalid_header, "kid is not a string");
      kid = k->get<std::string>();
    }
    if (validate && kid.empty()) fail(spiffe_errc::missing_key_id);

    auto claims = detail::claims_of(jws, "JWT-SVID");
    auto sub = claims.find("sub");
    std::error_code ec;
    auto id = SpiffeId::parse(sub->get_ref<const std::string&>(), ec);
    if (!id)
      fail(spiffe_errc::invalid_subject,
           "sub '" + bounded_excerpt(sub->get_ref<const std::string&>(), 128) + "': " + ec.message());

    if (validate) {
      detail::verify_with_authority(jws, *id, kid, *bundles, "JWT-SVID");
    }

    const auto exp = numeric_date(claims, "exp");
    if (!exp) fail(spiffe_errc::missing_expiration);
    if (validate) {
      const long long now = detail::now_seconds(o.clock);
      const long long leeway = std::max<long long>(o.leeway.count(), 0);
      auto whole = [](double v) { return static_cast<long long>(std::floor(v)); };
      if (now > add_seconds(whole(*exp), leeway)) fail(spiffe_errc::expired, "exp " + utc(*exp));
      if (auto nbf = numeric_date(claims, "nbf"); nbf && add_seconds(now, leeway) < whole(*nbf))
        fail(spiffe_errc::not_yet_valid, "nbf " + utc(*nbf));
      if (auto iat = numeric_date(claims, "iat"); iat && add_seconds(now, leeway) < whole(*iat))
        fail(spiffe_errc::issued_in_future, "iat " + utc(*iat));
    }
    auto aud = audiences(claims, o.max_audiences);
    if (validate) {
      const bool match = std::any_of(aud.begin(), aud.end(), [&](const std::string& a) {
        return std::find(std::begin(expected), std::end(expected), a) != std::end(expected);
      });
      if (!match) fail(spiffe_errc::audience_mismatch, "aud " + list(aud));
    }

    auto state =
        std::make_shared<JwtSvid::State>(JwtSvid::State{std::move(*id), std::move(aud), at(*exp), std::move(kid),
                                                        jws.algorithm(), std::move(claims), RedactedString{token}});
    return JwtSvid{std::move(state)};
  }
};

JwtSvid JwtSvid::parse_insecure(std::string_view token, const JwtSvidOptions& options) {
  return JwtSvidParser::run(token, nullptr, std::array<std::string_view, 0>{}, options);
}

JwtSvid JwtSvid::parse_and_validate(std::string_view token, const BundleSource& bundles,
                                    std::span<const std::string> expected_audiences, const JwtSvidOptions& options) {
  return JwtSvidParser::run(token, &bundles, expected_audiences, options);
}

JwtSvid JwtSvid::parse_and_validate(std::string_view token, const BundleSource& bundles,
                                    std::initializer_list<std::string_view> expected_audiences,
                                    const JwtSvidOptions& options) {
  return JwtSvidParser::run(token, &bundles, expected_audiences, options);
}

JwtSvid::JwtSvid() {
  static const auto empty = std::make_shared<const State>(State{SpiffeId{},
                                                                {},
                                                                std::chrono::system_clock::time_point{},
                                                                {},
                                                                jose::Algorithm::es256,
                                                                nlohmann::json::object(),
                                                                {}});
  state_ = empty;
}

const SpiffeId& JwtSvid::spiffe_id() const noexcept { return state_->id; }
const std::vector<std::string>& JwtSvid::audience() const noexcept { return state_->audience; }
std::chrono::system_clock::time_point JwtSvid::expiry() const noexcept { return state_->expiry; }
const std::string& JwtSvid::key_id() const noexcept { return state_->kid; }
jose::Algorithm JwtSvid::algorithm() const noexcept { return state_->alg; }
const nlohmann::json& JwtSvid::claims() const noexcept { return state_->claims; }
const RedactedString& JwtSvid::token() const noexcept { return state_->token; }

std::string to_string(const JwtSvid& svid) {
  return "JwtSvid{spiffe_id=" + svid.spiffe_id().str() + ", audience=" + list(svid.audience()) +
         ", expiry=" + utc_text(svid.expiry()) + ", token=[redacted]}";
}

}  // namespace awaken::spiffe
