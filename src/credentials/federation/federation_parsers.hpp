// The federation flows' readers of untrusted bytes, without I/O: token files and URL answers,
// JWT expiry, RFC 3339 times, Google's impersonation answer and AWS STS's XML. Each is fuzzed
// (fuzz/federation_fuzz.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <awaken/credentials/federation.hpp>
#include <awaken/error.hpp>
#include <awaken/redacted_string.hpp>

namespace awaken::detail {

/// The largest token file or subject-token answer read.
inline constexpr std::size_t max_identity_token_bytes = 256 * 1024;

/// The token in `content` laid out as `format` (`json`: the string member `field`). On failure,
/// returns an empty string and sets `why` (a text without the content).
RedactedString token_from_content(std::string_view content, TokenFormat format, std::string_view field,
                                  std::string& why);

/// The `exp` of a compact JWT, in seconds since the epoch; nullopt for a token that is not a JWT
/// or has no numeric `exp` (an opaque token has no expiry of its own), or one past the year 2191;
/// an `exp` before 1970 reads as 0.
std::optional<std::int64_t> jwt_expiry(std::string_view token);

/// "2026-12-01T10:00:00Z", with optional fractional seconds and a `Z` or numeric offset;
/// nullopt when malformed or out of range (years 1970 to 2200 only).
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text);

/// Google's `generateAccessToken` answer: `accessToken` and `expireTime`.
struct ImpersonatedToken {
  RedactedString access_token;
  std::chrono::system_clock::time_point expire_time;
};
/// Throws nothing; on failure returns nullopt and sets `why`.
std::optional<ImpersonatedToken> parse_impersonation_response(std::string_view body, std::string& why);
/// A Google API error body ({"error":{"code","message","status"}}) as "STATUS: message"
/// (bounded), else a bounded excerpt.
std::string google_error_message(std::string_view body);

/// What AWS STS answered to `AssumeRoleWithWebIdentity`.
struct AwsStsAnswer {
  // Success:
  RedactedString access_key_id;
  RedactedString secret_access_key;
  RedactedString session_token;
  std::chrono::system_clock::time_point expiration{};
  // Failure (an ErrorResponse), bounded:
  std::string error_type;  ///< Sender or Receiver
  std::string error_code;
  std::string error_message;
  // Neither: a text saying what was wrong with the body.
  std::string malformed;

  bool ok() const noexcept { return !access_key_id.empty(); }
};
/// Reads STS's XML (at most 64 KiB; no DTD, no entities beyond XML's own).
AwsStsAnswer parse_aws_sts_response(std::string_view body);
/// Whether an STS error code may pass on a retry.
bool is_transient_aws_error(std::string_view code) noexcept;

}  // namespace awaken::detail
