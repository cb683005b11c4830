// Fuzzes what the federation flows read from others: AWS STS's XML answers, Google's
// impersonation answers and error bodies, token files and subject-token answers (text and
// json), JWT expiry, RFC 3339 times, and Google external_account files. No crash; what is
// accepted keeps its invariants (credentials non-empty and printable, bounded error texts).
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <system_error>

#include <nlohmann/json.hpp>

#include <awaken/credentials/cloud_federation.hpp>

#include "credentials/federation/federation_parsers.hpp"

using namespace awaken;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input{reinterpret_cast<const char*>(data), size};
  const detail::AwsStsAnswer sts = detail::parse_aws_sts_response(input);
  if (sts.ok() && (sts.secret_access_key.empty() || sts.session_token.empty() || !sts.malformed.empty())) std::abort();
  if (sts.error_code.size() > 512 || sts.error_message.size() > 1024) std::abort();

  std::string why;
  if (auto t = detail::parse_impersonation_response(input, why); t && t->access_token.empty()) std::abort();
  if (detail::google_error_message(input).size() > 1024) std::abort();

  for (const auto format : {TokenFormat::text, TokenFormat::json}) {
    const RedactedString token = detail::token_from_content(input, format, "id_token", why);
    for (char c : token.reveal())
      if (static_cast<unsigned char>(c) <= 0x20) std::abort();
  }
  (void)detail::jwt_expiry(input);
  (void)detail::parse_rfc3339(input.substr(0, 48));

  try {
    (void)GoogleExternalAccount::from_json(input);
  } catch (const std::system_error&) {
  } catch (const nlohmann::json::exception&) {
  }
  return 0;
}
