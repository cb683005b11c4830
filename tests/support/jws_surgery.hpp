// Token surgery for the JWS tests: a compact token's segments, re-encoded after a change, and the
// tampered variants every verifier must refuse.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <awaken/jose/base64url.hpp>

namespace awaken::test {

inline std::vector<std::string> split(const std::string& token) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const auto dot = token.find('.', start);
    parts.push_back(token.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

inline std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i != 0) out += '.';
    out += parts[i];
  }
  return out;
}

inline std::string with_segment(const std::string& token, std::size_t index, const std::string& bytes) {
  auto parts = split(token);
  parts.at(index) = jose::base64url_encode(bytes);
  return join(parts);
}

inline std::string decoded_segment(const std::string& token, std::size_t index) {
  return jose::base64url_decode(split(token).at(index));
}

// Flips one bit of the decoded segment and re-encodes it, so the token stays valid base64url.
inline std::string flip_bit(const std::string& token, std::size_t segment, std::size_t byte, int bit) {
  std::string bytes = decoded_segment(token, segment);
  bytes.at(byte) = static_cast<char>(bytes.at(byte) ^ (1 << bit));
  return with_segment(token, segment, bytes);
}

struct Tampered {
  std::string token;
  std::string what;
};

// Header, payload and signature, each flipped at its start, middle and end.
inline std::vector<Tampered> tampered_variants(const std::string& token) {
  static const char* const segment_names[] = {"header", "payload", "signature"};
  std::vector<Tampered> out;
  for (std::size_t segment = 0; segment < 3; ++segment) {
    const std::size_t size = decoded_segment(token, segment).size();
    REQUIRE(size > 0);
    const std::size_t positions[] = {0, size / 2, size - 1};
    const int bits[] = {0, 3, 7};
    for (int i = 0; i < 3; ++i) {
      out.push_back({flip_bit(token, segment, positions[i], bits[i]), std::string{segment_names[segment]} + " byte " +
                                                                          std::to_string(positions[i]) + " bit " +
                                                                          std::to_string(bits[i])});
    }
  }
  return out;
}

}  // namespace awaken::test
