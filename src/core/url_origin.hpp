// The part of a URL that may appear in texts: scheme and host:port, never user info, path or
// query, which may hold secrets.
#pragma once

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

}  // namespace awaken::detail
