// Reading a credential config object: its fields checked against the names its kind accepts,
// strings, whole seconds, and secrets given inline, in a file or in the environment. Every error
// is `invalid_material` and names the field, never a secret's value.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <awaken/error.hpp>
#include <awaken/redacted_string.hpp>

#include "core/wipe.hpp"

namespace awaken::detail {

inline constexpr std::size_t max_secret_file_bytes = 1 << 20;

[[noreturn]] inline void bad(std::string_view field, const std::string& why) {
  throw_error(credential_errc::invalid_material, "credential config: '" + std::string{field} + "' " + why);
}

// The members of one config object, checked against the names its kind accepts.
class Fields {
 public:
  Fields(const nlohmann::json& config, std::string_view kind, std::initializer_list<std::string_view> allowed)
      : config_(config) {
    for (const auto& [name, value] : config.items()) {
      (void)value;
      if (name != "kind" && std::find(allowed.begin(), allowed.end(), name) == allowed.end())
        bad(name, "is not a field of kind " + std::string{kind});
    }
  }

  const nlohmann::json* find(std::string_view name) const {
    auto it = config_.find(name);
    return it == config_.end() ? nullptr : &*it;
  }

  std::string text(std::string_view name, std::string fallback = {}, bool required = false) const {
    const auto* v = find(name);
    if (v == nullptr) {
      if (required) bad(name, "is missing");
      return fallback;
    }
    if (!v->is_string()) bad(name, "is not a string");
    if (v->get_ref<const std::string&>().empty()) bad(name, "is empty");
    return v->get<std::string>();
  }

  // A URI or a non-empty array of them (RFC 8707 `resource`); empty when absent.
  std::vector<std::string> uris(std::string_view name) const {
    std::vector<std::string> out;
    const auto* v = find(name);
    if (v == nullptr) return out;
    if (v->is_string()) {
      out.push_back(text(name));
      return out;
    }
    if (!v->is_array() || v->empty()) bad(name, "is neither a string nor a non-empty array of strings");
    for (const auto& item : *v) {
      if (!item.is_string() || item.get_ref<const std::string&>().empty())
        bad(name, "holds something other than a URI");
      out.push_back(item.get<std::string>());
    }
    return out;
  }

  bool flag(std::string_view name) const {
    const auto* v = find(name);
    if (v == nullptr) return false;
    if (!v->is_boolean()) bad(name, "is not true or false");
    return v->get<bool>();
  }

  std::optional<long long> seconds(std::string_view name) const {
    const auto* v = find(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number_integer() || v->get<long long>() <= 0) bad(name, "is not a positive whole number of seconds");
    return v->get<long long>();
  }

  // A secret given inline, as `<name>_file` or as `<name>_env`; empty when none is given and it
  // is not required. `object_ok`: an inline JSON object stands for its own text.
  RedactedString secret(std::string_view name, bool required, bool object_ok = false) const {
    const std::string file_name = std::string{name} + "_file";
    const std::string env_name = std::string{name} + "_env";
    const auto* inline_value = find(name);
    const auto* file = find(file_name);
    const auto* env = find(env_name);
    const int given = (inline_value != nullptr) + (file != nullptr) + (env != nullptr);
    if (given > 1)
      bad(name,
          "is given more than once: use one of '" + std::string{name} + "', '" + file_name + "', '" + env_name + "'");
    if (given == 0) {
      if (required) bad(name, "is missing (or give '" + file_name + "' or '" + env_name + "')");
      return {};
    }
    if (inline_value != nullptr) {
      if (object_ok && inline_value->is_object()) return RedactedString{Wiped{inline_value->dump()}.text};
      if (!inline_value->is_string()) bad(name, object_ok ? "is neither a string nor an object" : "is not a string");
      if (inline_value->get_ref<const std::string&>().empty()) bad(name, "is empty");
      return RedactedString{std::string_view{inline_value->get_ref<const std::string&>()}};
    }
    if (file != nullptr) return read_file(file_name, text(file_name));
    const std::string variable = text(env_name);
    const char* value = std::getenv(variable.c_str());
    if (value == nullptr || *value == '\0')
      bad(env_name, "names the environment variable " + variable + ", which is not set or empty");
    return RedactedString{std::string_view{value}};
  }

 private:
  static RedactedString read_file(std::string_view field, const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    if (!in) bad(field, "cannot open '" + bounded_excerpt(path, 200) + "': " + std::strerror(errno));
    Wiped contents;
    contents.text.resize(max_secret_file_bytes + 1);
    in.read(contents.text.data(), static_cast<std::streamsize>(contents.text.size()));
    if (in.bad()) bad(field, "cannot read '" + bounded_excerpt(path, 200) + "'");
    const auto n = static_cast<std::size_t>(in.gcount());
    if (n > max_secret_file_bytes) bad(field, "names a file larger than 1 MiB");
    contents.text.resize(n);
    if (!contents.text.empty() && contents.text.back() == '\n') contents.text.pop_back();
    if (!contents.text.empty() && contents.text.back() == '\r') contents.text.pop_back();
    if (contents.text.empty()) bad(field, "names an empty file");
    return RedactedString{std::string_view{contents.text}};
  }

  const nlohmann::json& config_;
};

}  // namespace awaken::detail
