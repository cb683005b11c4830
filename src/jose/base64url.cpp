#include <awaken/jose/base64url.hpp>

#include <array>
#include <cstdint>

#include <awaken/error.hpp>

namespace awaken::jose {
namespace {

constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::array<std::int8_t, 256> make_decode_table() {
  std::array<std::int8_t, 256> table{};
  for (auto& v : table) v = -1;
  for (int i = 0; i < 64; ++i) {
    table[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
  }
  return table;
}

constexpr auto decode_table = make_decode_table();

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  out.resize((bytes.size() / 3) * 4 + (bytes.size() % 3 == 0 ? 0 : bytes.size() % 3 + 1));
  const auto* in = reinterpret_cast<const unsigned char*>(bytes.data());
  std::size_t i = 0;
  std::size_t o = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | std::uint32_t{in[i + 2]};
    out[o++] = alphabet[(v >> 18) & 0x3f];
    out[o++] = alphabet[(v >> 12) & 0x3f];
    out[o++] = alphabet[(v >> 6) & 0x3f];
    out[o++] = alphabet[v & 0x3f];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t v = std::uint32_t{in[i]} << 16;
    out[o++] = alphabet[(v >> 18) & 0x3f];
    out[o++] = alphabet[(v >> 12) & 0x3f];
  } else if (rest == 2) {
    const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8);
    out[o++] = alphabet[(v >> 18) & 0x3f];
    out[o++] = alphabet[(v >> 12) & 0x3f];
    out[o++] = alphabet[(v >> 6) & 0x3f];
  }
  return out;
}

std::string base64url_decode(std::string_view text, std::error_code& ec, std::size_t max_encoded_bytes) noexcept {
  ec.clear();
  if (text.size() > max_encoded_bytes) {
    ec = jose_errc::input_too_large;
    return {};
  }
  if (text.size() % 4 == 1) {
    ec = jose_errc::malformed_base64url;
    return {};
  }
  std::string out;
  try {
    out.resize(text.size() / 4 * 3 + (text.size() % 4 == 0 ? 0 : text.size() % 4 - 1));
  } catch (...) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return {};
  }
  std::uint32_t acc = 0;
  int held = 0;  // number of 6-bit groups in acc
  std::size_t o = 0;
  for (const char c : text) {
    const int v = decode_table[static_cast<unsigned char>(c)];
    if (v < 0) {
      ec = jose_errc::malformed_base64url;
      return {};
    }
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    if (++held == 4) {
      out[o++] = static_cast<char>((acc >> 16) & 0xff);
      out[o++] = static_cast<char>((acc >> 8) & 0xff);
      out[o++] = static_cast<char>(acc & 0xff);
      acc = 0;
      held = 0;
    }
  }
  // The bits past the last whole byte must be zero, or several texts would decode to one value.
  if (held == 2) {
    if ((acc & 0x0f) != 0) {
      ec = jose_errc::malformed_base64url;
      return {};
    }
    out[o++] = static_cast<char>((acc >> 4) & 0xff);
  } else if (held == 3) {
    if ((acc & 0x03) != 0) {
      ec = jose_errc::malformed_base64url;
      return {};
    }
    out[o++] = static_cast<char>((acc >> 10) & 0xff);
    out[o++] = static_cast<char>((acc >> 2) & 0xff);
  }
  return out;
}

std::string base64url_decode(std::string_view text, std::size_t max_encoded_bytes) {
  std::error_code ec;
  std::string out = base64url_decode(text, ec, max_encoded_bytes);
  if (ec) throw_error(ec, "base64url_decode (" + std::to_string(text.size()) + " bytes)");
  return out;
}

}  // namespace awaken::jose
