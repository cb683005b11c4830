// Fuzzes the X.509 parsers and the X509-SVID rules: concatenated DER, PEM, SPIFFE bundle JWKS,
// an SVID from a DER chain and key (split where the first two bytes say), and verification of any
// chain that parses against a bundle made of its own last certificate. No crash, no leak; an
// accepted chain always names a SPIFFE ID with a path.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>
#include <system_error>

#include <awaken/spiffe/x509_bundle.hpp>
#include <awaken/spiffe/x509_svid.hpp>

using namespace awaken::spiffe;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes{data, size};
  const std::string_view text{reinterpret_cast<const char*>(data), size};
  static const TrustDomain td = TrustDomain::parse("example.org");
  std::vector<Certificate> chain;
  try {
    chain = Certificate::parse_der_sequence(bytes, max_x509_chain_length);
  } catch (const std::system_error&) {
  }
  try {
    if (chain.empty()) chain = Certificate::parse_pem(text, max_x509_chain_length);
  } catch (const std::system_error&) {
  }
  if (!chain.empty()) {
    try {
      const SpiffeId id = check_x509_svid_chain(chain);
      if (id.path().empty()) std::abort();
    } catch (const std::system_error&) {
    }
    try {
      const X509BundleSet set{std::vector<X509Bundle>{X509Bundle{td, {chain.back()}}}};
      (void)verify_x509_svid(chain, set);
    } catch (const std::system_error&) {
    }
    for (const auto& c : chain) (void)c.subject();
  }
  try {
    (void)X509Bundle::parse_jwks(td, text);
  } catch (const std::system_error&) {
  }
  if (size > 2) {  // the first two bytes (big-endian) give the chain's length
    const std::size_t n = std::min<std::size_t>((std::size_t{data[0]} << 8) | data[1], size - 2);
    try {
      (void)X509Svid::from_der(bytes.subspan(2, n), bytes.subspan(2 + n));
    } catch (const std::system_error&) {
    }
  }
  return 0;
}
