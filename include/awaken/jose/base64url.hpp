// Strict base64url (RFC 4648 section 5, no padding), as JOSE uses it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <system_error>

namespace awaken::jose {

/// Default bound on an encoded input: 1 MiB.
inline constexpr std::size_t default_max_base64url_bytes = std::size_t{1} << 20;

/// Encodes bytes as unpadded base64url.
std::string base64url_encode(std::string_view bytes);

/// Decodes unpadded base64url. Refuses padding, characters outside `A-Z a-z 0-9 - _`, a length
/// of 1 modulo 4, non-zero trailing bits (so every byte string has exactly one encoding) and
/// inputs longer than `max_encoded_bytes`. Throws `awaken::Error` with `jose_errc`.
std::string base64url_decode(std::string_view text, std::size_t max_encoded_bytes = default_max_base64url_bytes);

/// As above; reports failure through `ec` and returns an empty string.
std::string base64url_decode(std::string_view text, std::error_code& ec,
                             std::size_t max_encoded_bytes = default_max_base64url_bytes) noexcept;

}  // namespace awaken::jose
