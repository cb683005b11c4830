// application/x-www-form-urlencoded bodies, which may carry secrets, and HTTP Basic client
// authentication.
#pragma once

#include <string>
#include <string_view>

namespace awaken::detail {

/// application/x-www-form-urlencoded: unreserved bytes kept, space as '+', the rest %XX.
std::string form_encode(std::string_view text);

/// Appends `form_encode(text)` to `out` without a temporary copy.
void form_encode_into(std::string& out, std::string_view text);

/// A form body that may hold secrets (assertions, subject tokens): parameters are encoded into
/// it in place, it grows into a fresh buffer with the old one wiped, and it is wiped when
/// destroyed, so no copy of a secret is freed unwiped.
class SecretForm {
 public:
  SecretForm() = default;
  SecretForm(const SecretForm&) = delete;
  SecretForm& operator=(const SecretForm&) = delete;
  ~SecretForm();
  /// Appends "&name=value" ("name=value" first), form-encoded.
  void add(std::string_view name, std::string_view value);
  const std::string& text() const noexcept { return text_; }

 private:
  std::string text_;
};

/// `Basic base64(form(id):form(secret))` (RFC 6749 section 2.3.1).
std::string basic_authorization(std::string_view client_id, std::string_view client_secret);

}  // namespace awaken::detail
