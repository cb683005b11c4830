// JSON from untrusted text with a bound on nesting. nlohmann's parser does not recurse, but its
// dump() and comparison do, once per level: a document nested a million deep would overflow the
// stack of whoever prints it later.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

namespace awaken::detail {

/// The deepest nesting accepted in JOSE headers, claims, JWKs and bundles.
inline constexpr int max_json_depth = 32;

/// Parses `text`; a discarded value (`is_discarded()`) when it is not JSON or nests deeper than
/// `max_depth`.
inline nlohmann::json parse_bounded_json(std::string_view text, int max_depth = max_json_depth) {
  bool too_deep = false;
  auto result = nlohmann::json::parse(
      text,
      [&too_deep, max_depth](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
        if (depth > max_depth && (event == nlohmann::json::parse_event_t::object_start ||
                                  event == nlohmann::json::parse_event_t::array_start))
          too_deep = true;
        return !too_deep;
      },
      /*allow_exceptions=*/false);
  if (too_deep) return nlohmann::json(nlohmann::json::value_t::discarded);
  return result;
}

}  // namespace awaken::detail
