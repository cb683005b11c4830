// The protobuf wire codec of the Workload API's JWT, X.509 and WIT messages (field numbers from the SPIFFE
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

/// One X509SVID: spiffe_id = 1, x509_svid = 2 (DER chain), x509_svid_key = 3 (PKCS#8 DER),
/// bundle = 4 (DER authorities), hint = 5. The fields view the decoded message.
struct X509SvidEntry {
  std::string spiffe_id;
  std::string_view chain;
  std::string_view key;
  std::string_view bundle;
  std::string hint;
};
/// X509SVIDResponse: svids = 1, crl = 2 (ignored), federated_bundles = 3 (map<string, bytes>).
/// More than `max_svids` SVIDs throw `too_many_svids`, more than `max_bundles` federated
/// bundles `resource_limit_exceeded`; a federated key given twice is refused.
struct X509SvidResponse {
  std::vector<X509SvidEntry> svids;
  std::vector<std::pair<std::string, std::string_view>> federated;
};
X509SvidResponse decode_x509_svid_response(std::string_view message, std::size_t max_svids, std::size_t max_bundles);
/// X509BundlesResponse: crl = 1 (ignored), bundles = 2 (map<string, bytes>), as
/// `decode_jwt_bundles_response` with views into the message.
std::vector<std::pair<std::string, std::string_view>> decode_x509_bundles_response(std::string_view message,
                                                                                   std::size_t max_entries);

/// WITSVIDRequest: spiffe_id = 1 (left out when empty).
std::string encode_wit_svid_request(std::string_view spiffe_id);

/// One WITSVID: spiffe_id = 1, wit_svid = 2 (a compact JWS), wit_svid_key = 3 (the private key
/// as JWK JSON text; a view of the decoded message, which the caller wipes), hint = 4.
struct WitSvidEntry {
  std::string spiffe_id;
  std::string svid;
  std::string_view key;
  std::string hint;
};
/// WITSVIDResponse: svids = 1 (repeated WITSVID); more than `max_svids` throw `too_many_svids`.
std::vector<WitSvidEntry> decode_wit_svid_response(std::string_view message, std::size_t max_svids);

/// WITBundlesResponse: bundles = 1 (map<string, string>: trust domain to JWKS), as
/// `decode_jwt_bundles_response`.
std::vector<std::pair<std::string, std::string>> decode_wit_bundles_response(std::string_view message,
                                                                             std::size_t max_entries = SIZE_MAX);

}  // namespace awaken::spiffe::detail
