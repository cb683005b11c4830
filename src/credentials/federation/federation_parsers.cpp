// Readers of what the federation flows receive: token files, subject-token answers, Google's
// impersonation answer, AWS STS's XML.
#include "credentials/federation/federation_parsers.hpp"
#include "core/bounded_json.hpp"
#include "core/wipe.hpp"

#include <time.h>

#include <array>
#include <cctype>
#include <charconv>

#include <nlohmann/json.hpp>
#include <pugixml.hpp>

#include <awaken/jose/base64url.hpp>

namespace awaken::detail {
namespace {

constexpr std::size_t max_sts_response_bytes = 64 * 1024;

bool printable_token(std::string_view token) {
  for (char c : token)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
  return true;
}

}  // namespace

RedactedString token_from_content(std::string_view content, TokenFormat format, std::string_view field,
                                  std::string& why) {
  if (content.size() > max_identity_token_bytes) {
    why = "is larger than " + std::to_string(max_identity_token_bytes / 1024) + " KiB";
    return {};
  }
  std::string_view token = content;
  Wiped member;
  if (format == TokenFormat::json) {
    const auto j = parse_bounded_json(content);
    if (!j.is_object()) {
      why = "is not a JSON object";
      return {};
    }
    const auto it = j.find(field);
    if (it == j.end() || !it->is_string()) {
      why = "has no string member '" + bounded_excerpt(field, 64) + "'";
      return {};
    }
    member.text = it->get<std::string>();
    token = member.text;
  }
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.remove_suffix(1);
  if (token.empty()) {
    why = "is empty";
    return {};
  }
  if (!printable_token(token)) {
    why = "holds a space or control byte in the token";
    return {};
  }
  return RedactedString{token};
}

std::optional<std::int64_t> jwt_expiry(std::string_view token) {
  const auto first = token.find('.');
  if (first == std::string_view::npos) return std::nullopt;
  const auto second = token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) return std::nullopt;
  std::error_code ec;
  const std::string payload = jose::base64url_decode(token.substr(first + 1, second - first - 1), ec);
  if (ec) return std::nullopt;
  const auto claims = parse_bounded_json(payload);
  if (!claims.is_object()) return std::nullopt;
  const auto exp = claims.find("exp");
  if (exp == claims.end() || !exp->is_number()) return std::nullopt;
  const double v = exp->get<double>();
  // Within what a nanosecond system_clock holds: before 1970 reads as expired at the epoch,
  // past 2191 as no expiry of its own (NaN too).
  if (!(v < 7e9)) return std::nullopt;
  return v < 0 ? 0 : static_cast<std::int64_t>(v);
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  if (text.size() < 20 || text.size() > 40) return std::nullopt;
  auto digits = [&](std::size_t at, std::size_t n, int& out) {
    out = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(text[i]))) return false;
      out = out * 10 + (text[i] - '0');
    }
    return true;
  };
  std::tm tm{};
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!digits(0, 4, year) || text[4] != '-' || !digits(5, 2, month) || text[7] != '-' || !digits(8, 2, day) ||
      (text[10] != 'T' && text[10] != 't') || !digits(11, 2, hour) || text[13] != ':' || !digits(14, 2, minute) ||
      text[16] != ':' || !digits(17, 2, second))
    return std::nullopt;
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return std::nullopt;
  // A nanosecond system_clock ends in 2262: later (and pre-1970) times are refused, not wrapped.
  if (year < 1970 || year > 2200) return std::nullopt;
  static constexpr int days_in[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (day > days_in[month - 1] + (month == 2 && leap ? 1 : 0)) return std::nullopt;
  std::size_t at = 19;
  if (at < text.size() && text[at] == '.') {
    ++at;
    const std::size_t start = at;
    while (at < text.size() && std::isdigit(static_cast<unsigned char>(text[at]))) ++at;
    if (at == start) return std::nullopt;
  }
  long offset = 0;
  const std::string_view zone = text.substr(at);
  if (zone == "Z" || zone == "z") {
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    int oh = 0, om = 0;
    if (!digits(at + 1, 2, oh) || !digits(at + 4, 2, om) || oh > 23 || om > 59) return std::nullopt;
    offset = (oh * 3600L + om * 60L) * (zone[0] == '+' ? 1 : -1);
  } else {
    return std::nullopt;
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const std::time_t t = ::timegm(&tm) - offset;
  return std::chrono::system_clock::from_time_t(t);
}

std::optional<ImpersonatedToken> parse_impersonation_response(std::string_view body, std::string& why) {
  auto j = parse_bounded_json(body);
  if (!j.is_object()) {
    why = "the answer is not a JSON object";
    return std::nullopt;
  }
  auto at = j.find("accessToken");
  if (at == j.end() || !at->is_string() || at->get_ref<const std::string&>().empty()) {
    why = "the answer has no accessToken";
    return std::nullopt;
  }
  if (at->get_ref<const std::string&>().size() > 16 * 1024) {
    why = "the accessToken is longer than 16384 bytes";
    return std::nullopt;
  }
  auto exp = j.find("expireTime");
  std::optional<std::chrono::system_clock::time_point> when;
  if (exp != j.end() && exp->is_string()) when = parse_rfc3339(exp->get_ref<const std::string&>());
  if (!when) {
    why = "the answer has no valid expireTime";
    return std::nullopt;
  }
  ImpersonatedToken out{RedactedString{std::move(at->get_ref<std::string&>())}, *when};
  return out;
}

std::string google_error_message(std::string_view body) {
  const auto j = parse_bounded_json(body);
  if (j.is_object()) {
    const auto e = j.find("error");
    if (e != j.end() && e->is_object()) {
      std::string out;
      if (auto s = e->find("status"); s != e->end() && s->is_string()) out = s->get<std::string>();
      if (auto m = e->find("message"); m != e->end() && m->is_string())
        out += (out.empty() ? "" : ": ") + m->get<std::string>();
      if (!out.empty()) return bounded_excerpt(out, 256);
    }
  }
  return bounded_excerpt(body, 256);
}

AwsStsAnswer parse_aws_sts_response(std::string_view body) {
  AwsStsAnswer out;
  if (body.size() > max_sts_response_bytes) {
    out.malformed = "the answer is larger than 64 KiB";
    return out;
  }
  // Parsed in place in a buffer of our own, wiped afterwards: the answer holds the secret key.
  Wiped buffer{std::string{body}};
  pugi::xml_document doc;
  const auto parsed = doc.load_buffer_inplace(buffer.text.data(), buffer.text.size(),
                                              pugi::parse_default & ~pugi::parse_doctype, pugi::encoding_utf8);
  if (!parsed) {
    out.malformed = std::string{"the answer is not XML ("} + parsed.description() + ")";
    return out;
  }
  const pugi::xml_node root = doc.document_element();
  const std::string_view name = root.name();
  auto text = [](pugi::xml_node n, std::size_t max) { return bounded_excerpt(n.child_value(), max); };
  if (name == "ErrorResponse") {
    const pugi::xml_node error = root.child("Error");
    out.error_type = text(error.child("Type"), 32);
    out.error_code = text(error.child("Code"), 128);
    out.error_message = text(error.child("Message"), 256);
    if (out.error_code.empty()) out.malformed = "the error answer has no Code";
    return out;
  }
  if (name != "AssumeRoleWithWebIdentityResponse") {
    out.malformed = "the answer is neither AssumeRoleWithWebIdentityResponse nor ErrorResponse";
    return out;
  }
  const pugi::xml_node credentials = root.child("AssumeRoleWithWebIdentityResult").child("Credentials");
  const std::string_view key_id = credentials.child("AccessKeyId").child_value();
  const std::string_view secret = credentials.child("SecretAccessKey").child_value();
  const std::string_view session = credentials.child("SessionToken").child_value();
  const auto expiration = parse_rfc3339(credentials.child("Expiration").child_value());
  if (key_id.empty() || secret.empty() || session.empty() || !expiration) {
    out.malformed = "the answer's Credentials lack AccessKeyId, SecretAccessKey, SessionToken or Expiration";
    return out;
  }
  if (key_id.size() > 128 || secret.size() > 1024 || session.size() > 16 * 1024 || !printable_token(key_id) ||
      !printable_token(secret) || !printable_token(session)) {
    out.malformed = "the answer's Credentials are too long or hold spaces or control bytes";
    return out;
  }
  out.access_key_id = RedactedString{key_id};
  out.secret_access_key = RedactedString{secret};
  out.session_token = RedactedString{session};
  out.expiration = *expiration;
  return out;
}

bool is_transient_aws_error(std::string_view code) noexcept {
  static constexpr std::array<std::string_view, 7> transient{
      "Throttling",         "ThrottlingException", "RequestLimitExceeded", "IDPCommunicationError",
      "ServiceUnavailable", "InternalFailure",     "RequestTimeout"};
  for (auto c : transient)
    if (code == c) return true;
  return false;
}

}  // namespace awaken::detail
