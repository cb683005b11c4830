// Test support: the error code an expression throws.
#pragma once

#include <system_error>
#include <utility>

#include <awaken/error.hpp>

namespace awaken::test {

/// The code of the `awaken::Error` that `f()` throws, or an empty code when it throws nothing.
template <class F>
std::error_code code_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const Error& e) {
    return e.code();
  }
  return {};
}

}  // namespace awaken::test
