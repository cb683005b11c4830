// JSON from untrusted text with a bound on nesting. nlohmann's parser does not recurse, but its
// dump() and comparison do, once per level: a document nested a million deep would overflow the
// stack of whoever prints it later.
#pragma once

#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

namespace awaken::detail {

/// The deepest nesting accepted in JOSE headers, claims, JWKs and bundles.
inline constexpr int max_json_depth = 32;

/// Whether no array or object in `text` opens deeper than `max_depth`, strings skipped. Exact
/// for valid JSON; text that is not JSON fails to parse anyway.
inline bool nesting_within(std::string_view text, int max_depth) noexcept {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

/// Whether `text` begins with a UTF-8 byte-order mark, which nlohmann's parser skips silently.
/// JOSE headers and claims are refused with one: RFC 8259 forbids adding it, and a signed text
/// that parses the same with and without leading bytes is a text two parsers can disagree on.
inline bool starts_with_bom(std::string_view text) noexcept { return text.substr(0, 3) == "\xEF\xBB\xBF"; }

/// Parses `text`; a discarded value (`is_discarded()`) when it is not JSON or nests deeper than
/// `max_depth`.
inline nlohmann::json parse_bounded_json(std::string_view text, int max_depth = max_json_depth) {
  if (!nesting_within(text, max_depth)) return nlohmann::json(nlohmann::json::value_t::discarded);
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

}  // namespace awaken::detail
