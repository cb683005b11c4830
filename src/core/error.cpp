#include <awaken/diagnostics.hpp>
#include <awaken/error.hpp>

#include <new>
#include <typeinfo>

#include <asio/error.hpp>

namespace awaken {
namespace {

class CoreCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "awaken"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::shut_down: return "shut down while the operation was pending";
    }
    return "unknown awaken error";
  }
};

class JoseCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "awaken.jose"; }
  std::string message(int ev) const override {
    switch (static_cast<jose_errc>(ev)) {
      case jose_errc::malformed_base64url: return "malformed base64url";
      case jose_errc::input_too_large: return "input larger than allowed";
      case jose_errc::malformed_json: return "malformed JSON";
      case jose_errc::invalid_jwk: return "invalid JWK";
      case jose_errc::unsupported_key_type: return "unsupported key type or curve";
      case jose_errc::weak_key: return "RSA key shorter than 2048 bits";
      case jose_errc::point_not_on_curve: return "EC point not on the curve";
      case jose_errc::invalid_private_key: return "invalid private key";
      case jose_errc::unsupported_algorithm: return "unsupported JWS algorithm";
      case jose_errc::algorithm_key_mismatch: return "JWS algorithm does not match the key";
      case jose_errc::malformed_jws: return "malformed compact JWS";
      case jose_errc::invalid_signature: return "invalid signature";
      case jose_errc::signing_failed: return "signing failed";
      case jose_errc::unsupported_critical_header: return "unsupported critical header parameter";
    }
    return "unknown JOSE error";
  }
};

class HttpCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "awaken.http"; }
  std::string message(int ev) const override {
    switch (static_cast<http_errc>(ev)) {
      case http_errc::invalid_request: return "invalid request";
      case http_errc::resolve_failed: return "could not resolve host";
      case http_errc::connect_failed: return "could not connect";
      case http_errc::timeout: return "request timed out";
      case http_errc::tls_failed: return "TLS handshake or peer verification failed";
      case http_errc::response_too_large: return "response larger than allowed";
      case http_errc::transfer_failed: return "connection broken during transfer";
      case http_errc::protocol_error: return "HTTP protocol error";
      case http_errc::message_too_large: return "message larger than allowed";
    }
    return "unknown HTTP error";
  }
};

class GrpcCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "awaken.grpc"; }
  std::string message(int ev) const override {
    static constexpr const char* names[] = {
        "ok",        "cancelled",      "unknown",           "invalid argument",   "deadline exceeded",
        "not found", "already exists", "permission denied", "resource exhausted", "failed precondition",
        "aborted",   "out of range",   "unimplemented",     "internal",           "unavailable",
        "data loss", "unauthenticated"};
    if (ev >= 0 && ev < static_cast<int>(std::size(names))) return std::string{"gRPC "} + names[ev];
    return "gRPC status " + std::to_string(ev);
  }
};

class CredentialCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "awaken.credentials"; }
  std::string message(int ev) const override {
    switch (static_cast<credential_errc>(ev)) {
      case credential_errc::not_configured: return "no credentials registered";
      case credential_errc::invalid_material: return "invalid credential material";
      case credential_errc::permanent_upstream: return "token endpoint rejected the request";
      case credential_errc::transient_upstream: return "token endpoint failed transiently";
      case credential_errc::network: return "token endpoint unreachable";
    }
    return "unknown credential error";
  }
};

class SpiffeCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "awaken.spiffe"; }
  std::string message(int ev) const override {
    switch (static_cast<spiffe_errc>(ev)) {
      case spiffe_errc::empty: return "empty";
      case spiffe_errc::wrong_scheme: return "scheme is not spiffe://";
      case spiffe_errc::missing_trust_domain: return "trust domain is missing";
      case spiffe_errc::trust_domain_too_long: return "trust domain longer than 255 bytes";
      case spiffe_errc::bad_trust_domain_char: return "trust domain has a character outside [a-z0-9.-_]";
      case spiffe_errc::id_too_long: return "SPIFFE ID longer than 2048 bytes";
      case spiffe_errc::empty_segment: return "path has an empty segment";
      case spiffe_errc::dot_segment: return "path has a '.' or '..' segment";
      case spiffe_errc::trailing_slash: return "path has a trailing slash";
      case spiffe_errc::bad_path_char: return "path has a character outside [a-zA-Z0-9.-_]";
      case spiffe_errc::bundle_too_large: return "bundle larger than allowed";
      case spiffe_errc::invalid_bundle: return "invalid bundle";
      case spiffe_errc::missing_key_id: return "key id (kid) is missing";
      case spiffe_errc::duplicate_key_id: return "duplicate key id (kid)";
      case spiffe_errc::invalid_authority: return "unusable JWT authority key";
      case spiffe_errc::token_too_large: return "token larger than allowed";
      case spiffe_errc::malformed_token: return "not a compact JWS (three non-empty parts)";
      case spiffe_errc::invalid_base64: return "part is not strict base64url";
      case spiffe_errc::invalid_header: return "invalid JOSE header";
      case spiffe_errc::invalid_typ: return "typ is not one this kind of token allows";
      case spiffe_errc::invalid_claims: return "invalid claims";
      case spiffe_errc::invalid_subject: return "sub is not a SPIFFE ID";
      case spiffe_errc::bundle_not_found: return "no bundle for the trust domain";
      case spiffe_errc::authority_not_found: return "no JWT authority for the key id";
      case spiffe_errc::algorithm_mismatch: return "algorithm does not fit the verifying key";
      case spiffe_errc::missing_expiration: return "exp is missing";
      case spiffe_errc::expired: return "token has expired";
      case spiffe_errc::not_yet_valid: return "token is not valid yet (nbf)";
      case spiffe_errc::issued_in_future: return "token is issued in the future (iat)";
      case spiffe_errc::missing_audience: return "aud is missing or empty";
      case spiffe_errc::too_many_audiences: return "too many aud values";
      case spiffe_errc::audience_mismatch: return "no expected audience in aud";
      case spiffe_errc::no_expected_audience: return "no expected audience given";
      case spiffe_errc::endpoint_not_configured: return "no endpoint given and SPIFFE_ENDPOINT_SOCKET unset";
      case spiffe_errc::invalid_endpoint: return "invalid Workload API endpoint";
      case spiffe_errc::malformed_message: return "malformed Workload API message";
      case spiffe_errc::empty_response: return "empty Workload API response";
      case spiffe_errc::resource_limit_exceeded: return "resource limit exceeded";
      case spiffe_errc::source_closed: return "source is closed";
      case spiffe_errc::initial_sync_timeout: return "initial sync timed out";
      case spiffe_errc::shutdown_timeout: return "shutdown timed out";
      case spiffe_errc::invalid_certificate: return "not an X.509 certificate";
      case spiffe_errc::invalid_chain: return "invalid certificate chain";
      case spiffe_errc::unsupported_key: return "unsupported key type or size";
      case spiffe_errc::missing_uri_san: return "leaf certificate has no URI SAN";
      case spiffe_errc::multiple_uri_sans: return "leaf certificate has more than one URI SAN";
      case spiffe_errc::invalid_uri_san: return "leaf certificate's URI SAN is not a SPIFFE ID";
      case spiffe_errc::root_path_id: return "leaf certificate's SPIFFE ID has no path";
      case spiffe_errc::leaf_is_ca: return "leaf certificate is a CA";
      case spiffe_errc::missing_key_usage: return "certificate has no key usage extension";
      case spiffe_errc::key_usage_not_critical: return "certificate's key usage is not critical";
      case spiffe_errc::missing_digital_signature: return "leaf certificate's key usage lacks digitalSignature";
      case spiffe_errc::leaf_has_key_cert_sign: return "leaf certificate's key usage has keyCertSign";
      case spiffe_errc::leaf_has_crl_sign: return "leaf certificate's key usage has cRLSign";
      case spiffe_errc::signer_not_ca: return "signing certificate is not a CA";
      case spiffe_errc::signer_missing_key_cert_sign: return "signing certificate's key usage lacks keyCertSign";
      case spiffe_errc::key_mismatch: return "private key does not match the leaf certificate";
      case spiffe_errc::certificate_expired: return "certificate has expired";
      case spiffe_errc::certificate_not_yet_valid: return "certificate is not valid yet";
      case spiffe_errc::no_authorities: return "trust domain has no X.509 authorities";
      case spiffe_errc::leaf_is_authority: return "leaf certificate is an authority of its trust domain";
      case spiffe_errc::untrusted_chain: return "certificate chain does not lead to an authority of its trust domain";
      case spiffe_errc::peer_not_authorized: return "peer SPIFFE ID is not authorized";
      case spiffe_errc::no_svid: return "no SVID";
      case spiffe_errc::svid_expired: return "the picked SVID has expired";
      case spiffe_errc::too_many_svids: return "more X.509-SVIDs than allowed";
      case spiffe_errc::invalid_confirmation: return "cnf.jwk is missing, unusable, or its alg is missing or unfit";
      case spiffe_errc::audience_present: return "a WIT-SVID must not carry aud";
      case spiffe_errc::lifetime_too_long: return "token lifetime longer than allowed";
      case spiffe_errc::missing_proof: return "workload identity or proof token header missing";
      case spiffe_errc::multiple_proofs: return "more than one workload identity or proof token header";
      case spiffe_errc::proof_mismatch: return "proof does not match the request";
      case spiffe_errc::replayed_proof: return "proof replayed (jti already seen)";
      case spiffe_errc::replay_cache_full: return "replay cache full";
      case spiffe_errc::not_offered: return "the Workload API does not offer this profile";
      case spiffe_errc::missing_private_key: return "WIT-SVID has no private key";
    }
    return "unknown SPIFFE error";
  }
};

}  // namespace

const std::error_category& spiffe_category() noexcept {
  static const SpiffeCategory c;
  return c;
}

const std::error_category& jose_category() noexcept {
  static const JoseCategory c;
  return c;
}
const std::error_category& http_category() noexcept {
  static const HttpCategory c;
  return c;
}
const std::error_category& grpc_category() noexcept {
  static const GrpcCategory c;
  return c;
}
const std::error_category& credential_category() noexcept {
  static const CredentialCategory c;
  return c;
}

namespace {

bool is_transient(const std::error_code& ec) noexcept {
  if (ec.category() == http_category()) {
    switch (static_cast<http_errc>(ec.value())) {
      case http_errc::resolve_failed:
      case http_errc::connect_failed:
      case http_errc::timeout:
      case http_errc::transfer_failed:
      case http_errc::protocol_error: return true;
      default: return false;
    }
  }
  if (ec.category() == credential_category()) {
    const auto e = static_cast<credential_errc>(ec.value());
    return e == credential_errc::transient_upstream || e == credential_errc::network;
  }
  if (ec.category() == grpc_category()) {
    switch (static_cast<grpc_status>(ec.value())) {
      case grpc_status::unavailable:
      case grpc_status::deadline_exceeded:
      case grpc_status::aborted: return true;
      default: return false;
    }
  }
  return false;
}

bool is_workload_transient(const std::error_code& ec) noexcept {
  if (ec.category() == grpc_category())
    return is_transient(ec) || ec == grpc_status::permission_denied || ec == grpc_status::cancelled;
  return ec.category() == http_category() && is_transient(ec);
}

bool is_not_configured(const std::error_code& ec) noexcept {
  return ec == credential_errc::not_configured || ec == spiffe_errc::endpoint_not_configured ||
         ec == spiffe_errc::not_offered;
}

bool is_shut_down(const std::error_code& ec) noexcept {
  return ec == errc::shut_down || ec == spiffe_errc::source_closed;
}

bool is_awakens(const std::error_code& ec) noexcept {
  const auto& c = ec.category();
  return c == core_category() || c == jose_category() || c == http_category() || c == grpc_category() ||
         c == credential_category() || c == spiffe_category();
}

class ConditionCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "awaken.condition"; }
  std::string message(int ev) const override {
    switch (static_cast<condition>(ev)) {
      case condition::transient: return "transient failure";
      case condition::workload_transient: return "transient Workload API failure";
      case condition::not_configured: return "not configured";
      case condition::shut_down: return "shut down";
      case condition::permanent: return "permanent failure";
    }
    return "unknown condition";
  }
  bool equivalent(const std::error_code& ec, int cond) const noexcept override {
    switch (static_cast<condition>(cond)) {
      case condition::transient: return is_transient(ec);
      case condition::workload_transient: return is_workload_transient(ec);
      case condition::not_configured: return is_not_configured(ec);
      case condition::shut_down: return is_shut_down(ec);
      case condition::permanent:
        return ec && ec != grpc_status::cancelled && is_awakens(ec) && !is_transient(ec) && !is_not_configured(ec) &&
               !is_shut_down(ec);
    }
    return false;
  }
};

}  // namespace

const std::error_category& core_category() noexcept {
  static const CoreCategory c;
  return c;
}
const std::error_category& condition_category() noexcept {
  static const ConditionCategory c;
  return c;
}

namespace {
std::string describe(std::error_code ec, std::string_view context, const ErrorDetails& d) {
  std::string out{context};
  if (!out.empty()) out += ": ";
  out += ec.message();
  if (d.http_status != 0 || !d.server_message.empty()) {
    out += " (";
    if (d.http_status != 0) {
      out += "HTTP " + std::to_string(d.http_status);
      if (!d.server_message.empty()) out += ": ";
    }
    out += d.server_message;
    out += ')';
  }
  return out;
}
}  // namespace

Error::Error(std::error_code ec, std::string_view context, ErrorDetails details)
    : std::system_error(ec),
      state_(std::make_shared<const State>(State{details, std::string{context}, describe(ec, context, details)})) {}

std::pair<std::error_code, Diagnostics> classify_exception(const std::exception_ptr& e) noexcept {
  try {
    try {
      std::rethrow_exception(e);
    } catch (const Error& ae) {
      return {ae.code(), Diagnostics{ae.context(), ae.details()}};
    } catch (const std::system_error& se) {  // a foreign one may quote a response body: its code only
      return {se.code(), Diagnostics{}};
    } catch (const std::bad_alloc&) {
      return {std::make_error_code(std::errc::not_enough_memory), Diagnostics{}};
    } catch (const std::exception& other) {
      return {std::make_error_code(std::errc::state_not_recoverable),
              Diagnostics{std::string{"an exception of type "} + typeid(other).name(), {}}};
    } catch (...) {
      return {std::make_error_code(std::errc::state_not_recoverable), Diagnostics{"an unknown exception", {}}};
    }
  } catch (...) {  // copying a text failed: the code alone
    return {std::make_error_code(std::errc::not_enough_memory), Diagnostics{}};
  }
}

void throw_error(std::error_code ec, std::string_view context, ErrorDetails details) {
  throw Error(ec, context, std::move(details));
}

std::string bounded_excerpt(std::string_view text, std::size_t max_bytes) {
  const bool cut = text.size() > max_bytes;
  std::size_t keep = std::min(text.size(), max_bytes);
  // Never cut a UTF-8 sequence in two.
  while (cut && keep > 0 && (static_cast<unsigned char>(text[keep]) & 0xC0) == 0x80) --keep;
  std::string out;
  out.reserve(keep + 32);
  for (char c : text.substr(0, keep)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  if (cut) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

}  // namespace awaken
