// Fuzzes JWT-SVID parsing: parse_insecure, then parse_and_validate against a bundle of one
// P-256 key. No crash; nothing the fuzzer makes can pass validation (it cannot sign), except a
// token from the seed corpus, which was signed by that key.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <awaken/spiffe/jwt_svid.hpp>

using namespace awaken::spiffe;

namespace {

// The public half of the key that signed the seed tokens in fuzz/corpus/jwt_svid.
constexpr std::string_view jwks = R"({"keys":[{"kty":"EC","crv":"P-256","use":"jwt-svid","kid":"fuzz-1",
  "x":"L11PkluNZwlyf2bu7MpZva_c4ORrCc9hbzbG47rOAKQ","y":"1VxHpg54tXA3TOpRqKPXDjI_JPTuw13hilnTEx5Zjn4"}]})";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const JwtBundleSet set{std::vector<JwtBundle>{JwtBundle::parse(TrustDomain::parse("example.org"), jwks)}};
  static const JwtSvidOptions options = [] {
    JwtSvidOptions o;
    o.leeway = std::chrono::hours{24 * 365 * 100};  // let time checks pass, so later checks run
    return o;
  }();
  const std::string_view token{reinterpret_cast<const char*>(data), size};
  try {
    const auto svid = JwtSvid::parse_insecure(token, options);
    if (svid.audience().empty() || svid.token().reveal() != token) std::abort();
  } catch (const std::system_error&) {
  }
  try {
    (void)JwtSvid::parse_and_validate(token, set, {"svc-a"}, options);
  } catch (const std::system_error&) {
  }
  return 0;
}
