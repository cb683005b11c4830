#include "credentials/minters/token_response.hpp"
#include "core/bounded_json.hpp"
#include "core/url_text.hpp"
#include "credentials/minters/provider_context.hpp"

#include <time.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>

#include <nlohmann/json.hpp>

#include <awaken/error.hpp>

namespace awaken::detail {

// `origin` is a bare origin ("https://host", a token endpoint) or one already named ("identity
// token url https://host").
std::string endpoint_context(const MintContext& ctx, std::string_view origin) {
  return provider_context(ctx.provider_id) + (origin.rfind("http", 0) == 0 ? ": token endpoint " : ": ") +
         std::string{origin};
}

// Retry-After: delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).
std::optional<std::chrono::milliseconds> retry_after(const http::HttpResponse& r, const Clock& clock) {
  auto value = r.header("retry-after");
  if (!value) return std::nullopt;
  std::string_view v = *value;
  unsigned long long seconds = 0;
  if (auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
      ec == std::errc{} && end == v.data() + v.size())
    return std::chrono::milliseconds{std::min<unsigned long long>(seconds, 86'400) * 1000};
  std::tm tm{};
  const std::string text{v};
  if (const char* end = ::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm); end != nullptr && *end == '\0') {
    // In whole seconds, capped as delay-seconds are: a date far from now (the year 1007, say)
    // overflows a nanosecond time_point.
    const std::time_t at = ::timegm(&tm);
    const std::time_t now = std::chrono::system_clock::to_time_t(clock.system_now());
    if (at <= now) return std::chrono::milliseconds{0};
    return std::chrono::milliseconds{std::min<std::time_t>(at - now, 86'400) * 1000};
  }
  return std::nullopt;
}

// What a refusing server said: its RFC 6749 section 5.2 `error` and `error_description`
// (bounded) when the body has them, and as the message "error: description"; else a body excerpt.
ErrorDetails oauth_error_details(int status, std::string_view body) {
  ErrorDetails d{status, {}};
  auto j = parse_bounded_json(body);
  if (j.is_object() && j.contains("error") && j["error"].is_string()) {
    d.oauth_error = bounded_excerpt(j["error"].get<std::string>(), 128);
    std::string out = j["error"].get<std::string>();
    if (j.contains("error_description") && j["error_description"].is_string()) {
      d.oauth_error_description = bounded_excerpt(j["error_description"].get<std::string>(), 256);
      out += ": " + j["error_description"].get<std::string>();
    }
    d.server_message = bounded_excerpt(out, 256);
    return d;
  }
  d.server_message = bounded_excerpt(body, 256);
  return d;
}

Token parse_token_response(std::string_view body, const MintContext& ctx, std::string_view origin,
                           std::shared_ptr<const DpopKey> dpop) {
  auto fail = [&](const std::string& why) -> Token {
    throw_error(credential_errc::transient_upstream, endpoint_context(ctx, origin) + ": " + why);
  };
  auto j = parse_bounded_json(body);
  if (!j.is_object()) return fail("the token response is not a JSON object");
  auto at = j.find("access_token");
  if (at == j.end() || !at->is_string() || at->get_ref<const std::string&>().empty())
    return fail("the token response has no access_token");
  if (at->get_ref<const std::string&>().size() > max_access_token_bytes)
    return fail("the access_token is longer than " + std::to_string(max_access_token_bytes) + " bytes");
  std::string type = "Bearer";
  if (auto t = j.find("token_type"); t != j.end()) {
    if (!t->is_string()) return fail("token_type is not a string");
    type = bounded_excerpt(t->get<std::string>(), 32);
  }
  auto exp = j.find("expires_in");
  if (exp == j.end()) return fail("the token response has no expires_in");
  double seconds = 0;
  if (exp->is_number()) {
    seconds = exp->get<double>();
  } else if (exp->is_string()) {  // some servers quote it
    const auto& s = exp->get_ref<const std::string&>();
    long long v = 0;
    if (auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        ec != std::errc{} || end != s.data() + s.size())
      return fail("expires_in is not a number");
    seconds = static_cast<double>(v);
  } else {
    return fail("expires_in is not a number");
  }
  if (!std::isfinite(seconds) || seconds < 1) return fail("expires_in is zero or negative");
  const auto lifetime =
      std::min(std::chrono::seconds{static_cast<long long>(std::min(seconds, 1e12))}, max_token_lifetime);
  RedactedString bearer{std::move(at->get_ref<std::string&>())};
  if (!dpop) return Token::expiring_in(std::move(bearer), lifetime, ctx.clock, std::move(type));
  // RFC 9449 section 5: a server without DPoP may answer with a bearer token; the material asked
  // for a bound one, and a retry would get the same answer.
  if (type.size() != 4 || !starts_with_nocase(type, "dpop"))
    throw_error(credential_errc::permanent_upstream,
                endpoint_context(ctx, origin) + ": a DPoP-bound token was asked for, '" + type + "' was issued");
  return Token{std::move(bearer), ctx.clock.system_now() + lifetime, ctx.clock.steady_now() + lifetime, "DPoP", nullptr,
               std::move(dpop)};
}

Refusal oauth_refusal(int status, std::string_view body) {
  return {is_transient_status(status), oauth_error_details(status, body)};
}

}  // namespace awaken::detail
