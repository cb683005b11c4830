#include "core/wipe.hpp"

#include <nlohmann/json.hpp>

namespace awaken::detail {

void wipe(nlohmann::json& document) noexcept {
  if (document.is_string()) {
    wipe(document.get_ref<std::string&>());
  } else if (document.is_structured()) {
    for (auto& value : document) wipe(value);
  }
}

}  // namespace awaken::detail
