// The rules a configured endpoint or resource must meet before anything is sent to it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace awaken::detail {

/// Checks that `url` is an absolute http(s) URL without user info, fragment or control bytes,
/// and https unless its host is loopback or `allow_plain_http`; returns its origin
/// ("https://host:port") for texts. Throws `Error{credential_errc::invalid_material}` naming `what`.
std::string check_endpoint(std::string_view url, std::string_view what, bool allow_plain_http = false);

/// Whether `uri` is an absolute URI (a scheme, then `:`) without a fragment, spaces or control
/// bytes: an RFC 8707 resource indicator.
bool is_absolute_uri(std::string_view uri) noexcept;

/// The space-separated words of a scope (audiences, OAuth scopes).
std::vector<std::string> split_words(std::string_view scope);

}  // namespace awaken::detail
