// A string that holds secret bytes, wiped before it is freed.
#pragma once

#include <string>

#include <openssl/crypto.h>

namespace awaken::detail {

/// Holds `text` and wipes it on destruction (not on reallocation: reserve first, or build it in
/// one step).
struct Wiped {
  std::string text;
  ~Wiped() { OPENSSL_cleanse(text.data(), text.size()); }
};

}  // namespace awaken::detail
