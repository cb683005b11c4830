// The protobuf wire codec of the Workload API's JWT messages (field numbers from the SPIFFE
// standard's workloadapi.proto). Decoders skip unknown fields, refuse groups, overlong varints,
// truncated fields, invalid UTF-8 in strings and nesting deeper than 64, and throw
// `Error{spiffe_errc::malformed_message}` naming the message and the fault.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace awaken::spiffe::detail {

/// JWTSVIDRequest: audience = 1 (repeated), spiffe_id = 2 (left out when empty).
std::string encode_jwt_svid_request(std::span<const std::string> audiences, std::string_view spiffe_id);
/// ValidateJWTSVIDRequest: audience = 1, svid = 2.
std::string encode_validate_jwt_svid_request(std::string_view audience, std::string_view svid);

/// One JWTSVID: spiffe_id = 1, svid = 2, hint = 3.
struct JwtSvidEntry {
  std::string spiffe_id;
  std::string svid;
  std::string hint;
};
/// JWTSVIDResponse: svids = 1 (repeated JWTSVID); the first `max_entries` only.
std::vector<JwtSvidEntry> decode_jwt_svid_response(std::string_view message, std::size_t max_entries = SIZE_MAX);

/// JWTBundlesResponse: bundles = 1 (map<string, bytes>: trust domain to JWKS). A key given
/// twice is refused; more than `max_entries` entries throw `resource_limit_exceeded` as soon as
/// the next one is met, before anything more is copied.
std::vector<std::pair<std::string, std::string>> decode_jwt_bundles_response(std::string_view message,
                                                                             std::size_t max_entries = SIZE_MAX);

/// ValidateJWTSVIDResponse: spiffe_id = 1, claims = 2 (google.protobuf.Struct, as a JSON
/// object; numbers that are whole and fit 64 bits become integers).
struct ValidateResponse {
  std::string spiffe_id;
  nlohmann::json claims = nlohmann::json::object();
};
ValidateResponse decode_validate_jwt_svid_response(std::string_view message);

}  // namespace awaken::spiffe::detail
