// How every credential error text and log line names a provider.
#pragma once

#include <string>
#include <string_view>

#include <awaken/error.hpp>

namespace awaken::detail {

/// "provider '<id>'", the id bounded and stripped of control bytes.
inline std::string provider_context(std::string_view provider) {
  return "provider '" + bounded_excerpt(provider, 128) + "'";
}

}  // namespace awaken::detail
