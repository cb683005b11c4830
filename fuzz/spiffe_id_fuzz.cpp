// Fuzzes SpiffeId and TrustDomain parsing: no crash, and every accepted ID is canonical (it
// parses again to itself, lowercase trust domain, within the length bounds).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <awaken/spiffe/spiffe_id.hpp>

using namespace awaken::spiffe;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text{reinterpret_cast<const char*>(data), size};
  std::error_code ec;
  if (auto id = SpiffeId::parse(text, ec)) {
    std::error_code again;
    auto reparsed = SpiffeId::parse(id->str(), again);
    if (!reparsed || *reparsed != *id || id->str().size() > max_spiffe_id_bytes ||
        id->trust_domain().name().size() > max_trust_domain_bytes)
      std::abort();
    for (char c : id->trust_domain().name())
      if (c >= 'A' && c <= 'Z') std::abort();
    if (!id->member_of(TrustDomain::parse(id->trust_domain().name()))) std::abort();
  } else if (!ec) {
    std::abort();
  }
  if (auto td = TrustDomain::parse(text, ec)) {
    if (TrustDomain::parse(td->name()) != *td) std::abort();
  }
  try {
    (void)SpiffeId::parse(text);  // the throwing form builds its message from the input
  } catch (const std::system_error&) {
  }
  return 0;
}
