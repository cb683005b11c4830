#include "credentials/minters/form.hpp"
#include "core/wipe.hpp"

#include <algorithm>
#include <cctype>

#include <openssl/evp.h>

namespace awaken::detail {

void form_encode_into(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += ch;
    } else if (c == ' ') {
      out += '+';
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 0xF];
    }
  }
}

std::string form_encode(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 3);
  form_encode_into(out, text);
  return out;
}

SecretForm::~SecretForm() { wipe(text_); }

void SecretForm::add(std::string_view name, std::string_view value) {
  const std::size_t need = text_.size() + 2 + name.size() + 3 * value.size();
  if (need > text_.capacity()) {  // grow into a new buffer and wipe the old one
    std::string bigger;
    bigger.reserve(std::max(need, 2 * text_.capacity()));
    bigger = text_;
    wipe(text_);
    text_.swap(bigger);
  }
  if (!text_.empty()) text_ += '&';
  text_ += name;
  text_ += '=';
  form_encode_into(text_, value);
}

std::string basic_authorization(std::string_view client_id, std::string_view client_secret) {
  std::string pair = form_encode(client_id) + ":" + form_encode(client_secret);
  std::string encoded(4 * ((pair.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()),
                                reinterpret_cast<const unsigned char*>(pair.data()), static_cast<int>(pair.size()));
  wipe(pair);
  encoded.resize(static_cast<std::size_t>(n));
  std::string out = "Basic " + encoded;
  wipe(encoded);
  return out;
}

}  // namespace awaken::detail
