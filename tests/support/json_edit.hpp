// Test support: a JSON object with one member changed, for table-driven validation tests.
#pragma once

#include <utility>

#include <nlohmann/json.hpp>

namespace awaken::test {

/// `object` with `name` set to `value`, or removed when `value` is null.
inline nlohmann::json with_member(nlohmann::json object, const char* name, nlohmann::json value) {
  if (value.is_null())
    object.erase(name);
  else
    object[name] = std::move(value);
  return object;
}

}  // namespace awaken::test
