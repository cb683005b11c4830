// Text helpers for URLs and URIs, and JSON string literals for claims written as text: the part that may appear in
// texts (scheme and host:port, never user info, path or query, which may hold secrets), and a case-blind scheme test.
#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

namespace awaken::detail {

/// "https://host:port" of `url` (user info dropped); "<invalid URL>" without "://". Control
/// bytes are not filtered: pass the result through `bounded_excerpt` when `url` is untrusted.
inline std::string url_origin(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return "<invalid URL>";
  const auto rest = url.substr(scheme + 3);
  auto authority = rest.substr(0, rest.find_first_of("/?#"));
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  return std::string{url.substr(0, scheme + 3)} + std::string{authority};
}

/// Whether `s` starts with `prefix`, ignoring ASCII case on both sides (URI schemes are
/// case-insensitive).
inline bool starts_with_nocase(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), s.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
         });
}

/// An RFC 9110 `tchar`: a byte of an HTTP token (a header name, a method).
inline bool is_tchar(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view{"!#$%&'*+-.^_`|~"}.find(c) != std::string_view::npos;
}

/// Whether `s` holds a control byte other than a tab, or DEL.
inline bool has_control(std::string_view s) noexcept {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

/// Whether `uri` is an absolute http(s) URI: a non-empty authority without user info, and
/// visible ASCII only (RFC 3986: no space, control or non-ASCII byte).
inline bool is_absolute_http(std::string_view uri) noexcept {
  const std::string_view rest = uri.starts_with("https://")  ? uri.substr(8)
                                : uri.starts_with("http://") ? uri.substr(7)
                                                             : std::string_view{};
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  return !authority.empty() && authority.find('@') == std::string_view::npos &&
         std::all_of(uri.begin(), uri.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

/// `uri` without its query and fragment: a DPoP proof's `htu`, a workload proof's `aud`.
inline std::string_view without_query(std::string_view uri) noexcept { return uri.substr(0, uri.find_first_of("?#")); }

/// Appends `s` to `out` as a JSON string literal (quotes, backslashes and control bytes
/// escaped), for claims built as text rather than through a JSON document.
inline void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\u00";
      out += hex[u >> 4];
      out += hex[u & 0xf];
    } else {
      out += c;
    }
  }
  out += '"';
}

}  // namespace awaken::detail
