// Text helpers for URLs and URIs: the part that may appear in texts (scheme and host:port, never
// user info, path or query, which may hold secrets), and a case-blind scheme test.
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

}  // namespace awaken::detail
