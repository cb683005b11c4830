// Fuzzes the Workload API protobuf decoders: JWTSVIDResponse, JWTBundlesResponse,
// X509SVIDResponse, X509BundlesResponse, WITSVIDResponse, WITBundlesResponse and ValidateJWTSVIDResponse (with its
// google.protobuf.Struct claims). No crash; decoded strings are valid UTF-8 where the wire format says string (checked
// by re-encoding the claims as JSON).
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <system_error>

#include "spiffe/workload/workload_proto.hpp"

using namespace awaken::spiffe::detail;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view message{reinterpret_cast<const char*>(data), size};
  try {
    for (const auto& svid : decode_jwt_svid_response(message))
      if (svid.svid.size() > size) std::abort();
  } catch (const std::system_error&) {
  }
  try {
    const auto bundles = decode_jwt_bundles_response(message);
    for (std::size_t i = 1; i < bundles.size(); ++i)
      if (bundles[i].first == bundles[i - 1].first) std::abort();
  } catch (const std::system_error&) {
  }
  try {
    const auto x509 = decode_x509_svid_response(message, 100, 200);
    for (const auto& svid : x509.svids)
      if (svid.chain.size() + svid.key.size() + svid.bundle.size() > size) std::abort();
  } catch (const std::system_error&) {
  }
  try {
    (void)decode_x509_bundles_response(message, 200);
  } catch (const std::system_error&) {
  }
  try {
    for (const auto& svid : decode_wit_svid_response(message, 100))
      if (svid.svid.size() + svid.key.size() > size) std::abort();
  } catch (const std::system_error&) {
  }
  try {
    const auto bundles = decode_wit_bundles_response(message, 200);
    for (std::size_t i = 1; i < bundles.size(); ++i)
      if (bundles[i].first == bundles[i - 1].first) std::abort();
  } catch (const std::system_error&) {
  }
  try {
    const auto validated = decode_validate_jwt_svid_response(message);
    (void)validated.claims.dump();  // throws on invalid UTF-8, which must never get this far
  } catch (const std::system_error&) {
  }
  return 0;
}
