#include "credentials/minters/endpoint_rules.hpp"
#include "core/bounded_json.hpp"
#include "core/url_text.hpp"

#include <arpa/inet.h>

#include <cctype>
#include <sstream>

#include <awaken/error.hpp>

namespace awaken::detail {
namespace {

// An IPv4 literal in 127.0.0.0/8, [::1] or localhost; not a name that merely starts with 127.
bool is_loopback(const std::string& host) {
  unsigned char v4[4];
  if (::inet_pton(AF_INET, host.c_str(), v4) == 1) return v4[0] == 127;
  return host == "[::1]" || host == "localhost";
}

}  // namespace

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

}  // namespace awaken::detail
