// Fuzzes JWKS parsing into a JWT bundle: no crash, and an accepted bundle survives a round trip
// through to_jwks unchanged.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <awaken/spiffe/bundle.hpp>

using namespace awaken::spiffe;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const TrustDomain td = TrustDomain::parse("example.org");
  const std::string_view jwks{reinterpret_cast<const char*>(data), size};
  try {
    const auto bundle = JwtBundle::parse(td, jwks);
    const auto again = JwtBundle::parse(td, bundle.to_jwks());
    if (!(again == bundle)) std::abort();
    for (const auto& a : bundle.authorities())
      if (bundle.find_authority(a.key_id()) != &a) std::abort();
  } catch (const std::system_error&) {
  }
  return 0;
}
