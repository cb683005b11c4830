// Secrets in memory: the one way awaken overwrites them before their memory is freed or reused.
// Every wipe goes through OPENSSL_cleanse, which the compiler may not elide.
#pragma once

#include <cstddef>
#include <string>

#include <openssl/crypto.h>
#include <nlohmann/json_fwd.hpp>

namespace awaken::detail {

/// Overwrites `size` bytes at `data`.
inline void wipe(void* data, std::size_t size) noexcept { OPENSSL_cleanse(data, size); }

/// Overwrites the characters of `s` (its size, not its spare capacity).
inline void wipe(std::string& s) noexcept { wipe(s.data(), s.size()); }

/// Overwrites every string of a JSON document, however deeply nested.
void wipe(nlohmann::json& document) noexcept;

/// Owns a string that holds a secret and wipes it when destroyed. Not on reallocation: reserve
/// first, or build it in one step. Movable, not copyable: a move leaves nothing behind.
struct Wiped {
  std::string text;
  Wiped() = default;
  // A copy, then the argument wiped whole: a move would leave a short string's bytes behind.
  explicit Wiped(std::string t) : text(t) { wipe(t.data(), t.capacity()); }
  // A short string is copied, not moved, out of its inline buffer: a move clears what stays
  // there.
  Wiped(Wiped&& other) noexcept : text(std::move(other.text)) { wipe(other.text.data(), other.text.capacity()); }
  Wiped(const Wiped&) = delete;
  Wiped& operator=(const Wiped&) = delete;
  Wiped& operator=(Wiped&&) = delete;
  ~Wiped() { wipe(text); }
};

/// Wipes what it refers to (a string, a JSON document) when it goes out of scope, however the
/// scope is left: a response body that holds a token, a request that holds an assertion.
template <class T>
class WipeOnExit {
 public:
  explicit WipeOnExit(T& target) noexcept : target_(target) {}
  WipeOnExit(const WipeOnExit&) = delete;
  WipeOnExit& operator=(const WipeOnExit&) = delete;
  ~WipeOnExit() { wipe(target_); }

 private:
  T& target_;
};

}  // namespace awaken::detail
