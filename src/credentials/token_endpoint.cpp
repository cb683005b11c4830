#include "credentials/token_endpoint.hpp"
#include "core/bounded_json.hpp"
#include "core/url_text.hpp"
#include "credentials/provider_context.hpp"

#include <arpa/inet.h>
#include <time.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <sstream>

#include <openssl/evp.h>
#include <nlohmann/json.hpp>

#include <awaken/error.hpp>
#include <awaken/jose/jws.hpp>

namespace awaken::detail {
namespace {

// `origin` is a bare origin ("https://host", a token endpoint) or one already named ("identity
// token url https://host").
std::string context(const MintContext& ctx, std::string_view origin) {
  return provider_context(ctx.provider_id) + (origin.rfind("http", 0) == 0 ? ": token endpoint " : ": ") +
         std::string{origin};
}

// An IPv4 literal in 127.0.0.0/8, [::1] or localhost; not a name that merely starts with 127.
bool is_loopback(const std::string& host) {
  unsigned char v4[4];
  if (::inet_pton(AF_INET, host.c_str(), v4) == 1) return v4[0] == 127;
  return host == "[::1]" || host == "localhost";
}

}  // namespace

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

std::string check_endpoint(std::string_view url, std::string_view what, bool allow_plain_http) {
  // Texts quote the origin only: user info, path and query may hold secrets.
  auto refuse = [&](const char* why) -> std::string {
    throw_error(credential_errc::invalid_material,
                std::string{what} + " '" + bounded_excerpt(url_origin(url), 200) + "' " + why);
  };
  for (char c : url)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) refuse("contains a space or control byte");
  std::string_view scheme;
  if (url.rfind("https://", 0) == 0)
    scheme = "https";
  else if (url.rfind("http://", 0) == 0)
    scheme = "http";
  else
    refuse("is not an http(s) URL");
  const std::string_view rest = url.substr(scheme.size() + 3);
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.empty()) refuse("has no host");
  if (authority.find('@') != std::string_view::npos) refuse("must not carry user info");
  if (url.find('#') != std::string_view::npos) refuse("must not carry a fragment");
  std::string_view host = authority;
  if (host.front() == '[') {
    host = host.substr(0, host.find(']') + 1);
  } else if (auto colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  std::string lower{host};
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme == "http" && !allow_plain_http && !is_loopback(lower))
    refuse("must use https (plain http only for loopback hosts)");
  return std::string{scheme} + "://" + std::string{authority};
}

bool is_absolute_uri(std::string_view uri) noexcept {
  const auto colon = uri.find(':');
  if (colon == std::string_view::npos || colon == 0 || !std::isalpha(static_cast<unsigned char>(uri[0])) ||
      uri.find('#') != std::string_view::npos)
    return false;
  for (char c : uri.substr(0, colon))
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.')) return false;
  for (char c : uri)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
  return true;
}

std::vector<std::string> split_words(std::string_view scope) {
  std::vector<std::string> out;
  std::istringstream words{std::string{scope}};
  for (std::string word; words >> word;) out.push_back(std::move(word));
  return out;
}

void form_encode_into(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += ch;
    } else if (c == ' ') {
      out += '+';
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 0xF];
    }
  }
}

std::string form_encode(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 3);
  form_encode_into(out, text);
  return out;
}

SecretForm::~SecretForm() { OPENSSL_cleanse(text_.data(), text_.size()); }

void SecretForm::add(std::string_view name, std::string_view value) {
  const std::size_t need = text_.size() + 2 + name.size() + 3 * value.size();
  if (need > text_.capacity()) {  // grow into a new buffer and wipe the old one
    std::string bigger;
    bigger.reserve(std::max(need, 2 * text_.capacity()));
    bigger = text_;
    OPENSSL_cleanse(text_.data(), text_.size());
    text_.swap(bigger);
  }
  if (!text_.empty()) text_ += '&';
  text_ += name;
  text_ += '=';
  form_encode_into(text_, value);
}

std::string basic_authorization(std::string_view client_id, std::string_view client_secret) {
  std::string pair = form_encode(client_id) + ":" + form_encode(client_secret);
  std::string encoded(4 * ((pair.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()),
                                reinterpret_cast<const unsigned char*>(pair.data()), static_cast<int>(pair.size()));
  OPENSSL_cleanse(pair.data(), pair.size());
  encoded.resize(static_cast<std::size_t>(n));
  std::string out = "Basic " + encoded;
  OPENSSL_cleanse(encoded.data(), encoded.size());
  return out;
}

std::string DpopBinding::nonce() const {
  const std::lock_guard lock{mutex_};
  return nonce_;
}

void DpopBinding::keep_nonce(std::string_view nonce) const {
  if (nonce.empty() || !is_dpop_nonce(nonce)) return;
  const std::lock_guard lock{mutex_};
  nonce_.assign(nonce);
}

Token parse_token_response(std::string_view body, const MintContext& ctx, std::string_view origin,
                           std::shared_ptr<const DpopKey> dpop) {
  auto fail = [&](const std::string& why) -> Token {
    throw_error(credential_errc::transient_upstream, context(ctx, origin) + ": " + why);
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
                context(ctx, origin) + ": a DPoP-bound token was asked for, '" + type + "' was issued");
  return Token{std::move(bearer), ctx.clock.system_now() + lifetime, ctx.clock.steady_now() + lifetime, "DPoP", nullptr,
               std::move(dpop)};
}

WipedBody::~WipedBody() { OPENSSL_cleanse(body.data(), body.size()); }

Refusal oauth_refusal(int status, std::string_view body) {
  return {is_transient_status(status), oauth_error_details(status, body)};
}

namespace {

// Sends `request`; a transport failure is thrown as `network` (retryable) or with its own code.
asio::awaitable<http::HttpResponse> send_request(http::HttpRequest request, const MintContext& ctx,
                                                 const std::string& origin) {
  try {
    co_return co_await ctx.http.send(std::move(request));
  } catch (const Error& e) {
    if (e.code() == http_errc::response_too_large)
      throw_error(credential_errc::transient_upstream, context(ctx, origin) + ": the response is larger than allowed");
    if ((e.code() == condition::transient))
      throw_error(credential_errc::network, context(ctx, origin) + ": " + e.code().message());
    throw_error(e.code(), context(ctx, origin));
  }
}

// Throws what a non-2xx `response` means; its body is wiped first.
[[noreturn]] void refuse(http::HttpResponse& response, const MintContext& ctx, const std::string& origin,
                         RefusalReader read_refusal) {
  Refusal refusal = read_refusal(response.status, response.body);
  OPENSSL_cleanse(response.body.data(), response.body.size());
  if (refusal.transient) {
    refusal.details.retry_after = retry_after(response, ctx.clock);
    throw_error(credential_errc::transient_upstream, context(ctx, origin), std::move(refusal.details));
  }
  throw_error(credential_errc::permanent_upstream, context(ctx, origin), std::move(refusal.details));
}

constexpr bool is_success(int status) noexcept { return status >= 200 && status < 300; }

// RFC 9449 section 8: 400 with error use_dpop_nonce and a DPoP-Nonce header.
bool is_nonce_challenge(const http::HttpResponse& response) {
  return response.status == 400 && response.header("dpop-nonce") &&
         oauth_error_details(response.status, response.body).oauth_error == "use_dpop_nonce";
}

}  // namespace

NonceChallengeAnswer answer_nonce_challenge(int attempt, std::string_view sent_nonce,
                                            std::string_view offered_nonce) noexcept {
  if (offered_nonce.empty() || !is_dpop_nonce(offered_nonce)) return NonceChallengeAnswer::invalid_nonce;
  return attempt == 0 && offered_nonce != sent_nonce ? NonceChallengeAnswer::retry : NonceChallengeAnswer::not_met;
}

asio::awaitable<http::HttpResponse> send_token_request(http::HttpRequest request, const MintContext& ctx,
                                                       const std::string& origin, RefusalReader read_refusal) {
  http::HttpResponse response = co_await send_request(std::move(request), ctx, origin);
  if (!is_success(response.status)) refuse(response, ctx, origin, read_refusal);
  co_return response;
}

asio::awaitable<Token> request_token(http::HttpRequest request, const MintContext& ctx, std::string origin) {
  http::HttpResponse response = co_await send_token_request(std::move(request), ctx, origin, oauth_refusal);
  const WipedBody wipe{response.body};  // the body holds a token: wipe it whatever happens next
  co_return parse_token_response(response.body, ctx, origin);
}

asio::awaitable<Token> request_token(RequestBuilder build, const MintContext& ctx, std::string origin,
                                     const DpopBinding& dpop) {
  for (int attempt = 0;; ++attempt) {
    // Built anew for each attempt: a client assertion is good for one request only.
    http::HttpRequest request = co_await build();
    const WipedBody wipe_request{request.body};  // it may hold assertions
    const std::string sent_nonce = dpop.nonce();
    std::string proof;
    try {
      proof = dpop.key()->proof(request.method, request.url, {}, sent_nonce, ctx.clock);
    } catch (const Error& e) {
      throw_error(jose_errc::signing_failed, context(ctx, origin) + ": DPoP proof: " + e.code().message());
    }
    request.headers.push_back({"dpop", std::move(proof)});
    http::HttpResponse response = co_await send_request(request, ctx, origin);
    const WipedBody wipe{response.body};
    if (const auto nonce = response.header("dpop-nonce")) dpop.keep_nonce(*nonce);
    if (is_success(response.status)) co_return parse_token_response(response.body, ctx, origin, dpop.key());
    if (is_nonce_challenge(response)) {
      const std::string_view offered = response.header("dpop-nonce").value_or(std::string_view{});
      switch (answer_nonce_challenge(attempt, sent_nonce, offered)) {
        case NonceChallengeAnswer::retry: continue;  // a request built anew, with the kept nonce
        case NonceChallengeAnswer::invalid_nonce:
          throw_error(credential_errc::permanent_upstream,
                      context(ctx, origin) + ": DPoP nonce challenge with a DPoP-Nonce that is not a nonce (" +
                          std::to_string(offered.size()) + " bytes; a nonce is 1 to " +
                          std::to_string(max_dpop_nonce_bytes) + " bytes of visible ASCII, no quote or backslash)");
        case NonceChallengeAnswer::not_met:
          throw_error(credential_errc::transient_upstream,
                      context(ctx, origin) +
                          ": DPoP nonce challenge not met, after a retry or with the nonce just sent (" +
                          oauth_error_details(response.status, response.body).server_message + ")");
      }
    }
    refuse(response, ctx, origin, oauth_refusal);
  }
}

http::HttpRequest form_request(std::string url, std::string form, std::string authorization) {
  http::HttpRequest request;
  request.method = "POST";
  request.url = std::move(url);
  request.headers.push_back({"content-type", "application/x-www-form-urlencoded"});
  request.headers.push_back({"accept", "application/json"});
  if (!authorization.empty()) request.headers.push_back({"authorization", std::move(authorization)});
  request.body = std::move(form);
  return request;
}

asio::awaitable<Token> post_form(std::string url, std::string form, std::string authorization, const MintContext& ctx,
                                 std::string origin) {
  http::HttpRequest request = form_request(std::move(url), std::move(form), std::move(authorization));
  co_return co_await request_token(std::move(request), ctx, std::move(origin));
}

std::int64_t unix_seconds(const MintContext& ctx) {
  return std::chrono::duration_cast<std::chrono::seconds>(ctx.clock.system_now().time_since_epoch()).count();
}

std::string sign_assertion(jose::Algorithm algorithm, std::string_view key_id, const nlohmann::json& claims,
                           const jose::PrivateKey& key, const MintContext& ctx, std::string_view what) {
  nlohmann::json header{{"typ", "JWT"}};
  if (!key_id.empty()) header["kid"] = std::string{key_id};
  try {
    return jose::sign_compact(algorithm, header, claims.dump(), key);
  } catch (const Error& e) {
    throw_error(jose_errc::signing_failed,
                provider_context(ctx.provider_id) + ": " + std::string{what} + ": " + e.code().message());
  }
}

}  // namespace awaken::detail
