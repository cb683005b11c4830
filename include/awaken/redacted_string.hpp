// A string that holds a secret and refuses to print it.
#pragma once

#include <cstddef>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>

#include <spdlog/fmt/fmt.h>

namespace awaken {

/// Holds a secret (a bearer token, a client secret, a private key PEM).
///
/// - Printing it through `operator<<`, fmt or spdlog writes `[redacted]`; `reveal()` is the only
///   way to the plaintext, so every use of the secret is greppable.
/// - The bytes live in a heap buffer of their own (never in a small-string buffer that a move
///   would leave behind) and are wiped with `OPENSSL_cleanse` on destruction, reassignment and
///   when moved from.
/// - `==` compares in constant time for equal lengths (lengths are not secret).
///
/// Thread safety: as a `std::string`: concurrent const access is safe.
class RedactedString {
 public:
  RedactedString() noexcept = default;
  explicit RedactedString(std::string_view plaintext);
  /// Takes the secret and wipes the caller's string.
  explicit RedactedString(std::string&& plaintext);
  explicit RedactedString(const char* plaintext) : RedactedString(std::string_view{plaintext}) {}

  RedactedString(const RedactedString& other) : RedactedString(other.reveal()) {}
  RedactedString(RedactedString&& other) noexcept : data_(std::move(other.data_)), size_(other.size_) {
    other.size_ = 0;
  }
  RedactedString& operator=(const RedactedString& other);
  RedactedString& operator=(RedactedString&& other) noexcept;
  ~RedactedString() { wipe(); }

  /// The plaintext. Valid until this object is modified or destroyed.
  std::string_view reveal() const noexcept { return {data_.get(), size_}; }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }

  friend bool operator==(const RedactedString& a, const RedactedString& b) noexcept;

 private:
  void wipe() noexcept;

  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, const RedactedString&) { return os << "[redacted]"; }

}  // namespace awaken

template <>
struct fmt::formatter<awaken::RedactedString> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(const awaken::RedactedString&, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format("[redacted]", ctx);
  }
};
