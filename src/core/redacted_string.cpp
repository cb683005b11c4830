#include "core/wipe.hpp"

#include <awaken/redacted_string.hpp>

#include <cstring>

#include <openssl/crypto.h>

namespace awaken {

RedactedString::RedactedString(std::string_view plaintext)
    : data_(plaintext.empty() ? nullptr : new char[plaintext.size()]), size_(plaintext.size()) {
  if (size_ != 0) std::memcpy(data_.get(), plaintext.data(), size_);
}

RedactedString::RedactedString(std::string&& plaintext) : RedactedString(std::string_view{plaintext}) {
  detail::wipe(plaintext);
  plaintext.clear();
}

RedactedString& RedactedString::operator=(const RedactedString& other) {
  if (this != &other) *this = RedactedString{other.reveal()};
  return *this;
}

RedactedString& RedactedString::operator=(RedactedString&& other) noexcept {
  if (this != &other) {
    wipe();
    data_ = std::move(other.data_);
    size_ = other.size_;
    other.size_ = 0;
  }
  return *this;
}

void RedactedString::wipe() noexcept {
  if (data_ != nullptr) detail::wipe(data_.get(), size_);
  data_.reset();
  size_ = 0;
}

bool operator==(const RedactedString& a, const RedactedString& b) noexcept {
  if (a.size_ != b.size_) return false;
  if (a.size_ == 0) return true;
  return CRYPTO_memcmp(a.data_.get(), b.data_.get(), a.size_) == 0;
}

}  // namespace awaken
