// Error codes and the exception type shared by every awaken layer.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace awaken {

/// Errors any layer may report, each defined once.
enum class errc {
  shut_down = 1,  ///< the object (a client, a broker) was destroyed or shut down while the operation was pending
};

/// Errors of the JOSE layer (base64url, JWK, JWS).
enum class jose_errc {
  malformed_base64url = 1,      ///< padding, a foreign character or non-canonical trailing bits
  input_too_large,              ///< an encoded input is larger than the configured bound
  malformed_json,               ///< a JOSE header, payload or JWK is not the JSON it must be
  invalid_jwk,                  ///< a JWK member is missing, of the wrong type or out of range
  unsupported_key_type,         ///< `kty` or `crv` is not one awaken handles
  weak_key,                     ///< an RSA modulus under 2048 bits
  point_not_on_curve,           ///< EC coordinates that are not a point of the named curve
  invalid_private_key,          ///< bytes that are not a usable private key (PKCS#8 or PKCS#1, PEM or DER)
  unsupported_algorithm,        ///< `alg` is not in RS/PS/ES 256/384/512
  algorithm_key_mismatch,       ///< `alg` does not fit the key type or curve
  malformed_jws,                ///< not three base64url segments of a compact JWS
  invalid_signature,            ///< the signature does not verify
  signing_failed,               ///< the crypto library failed to sign (a JWS, an assertion, a proof)
  unsupported_critical_header,  ///< a `crit` header names extensions, and awaken understands none
};

/// Errors of the HTTP transport.
enum class http_errc {
  invalid_request = 1,  ///< a URL, header or option the transport refuses
  resolve_failed,       ///< the host name did not resolve
  connect_failed,       ///< the TCP or unix socket connection was refused or unreachable
  timeout,              ///< the per-request timeout elapsed
  tls_failed,           ///< TLS handshake or peer verification failed
  response_too_large,   ///< the response exceeded the configured bound
  transfer_failed,      ///< the connection broke during the transfer
  protocol_error,       ///< the peer spoke malformed HTTP or HTTP/2 (including a stream reset)
  message_too_large,    ///< a gRPC message (sent or received) over awaken's own size bound
};

/// Errors of the credential broker and its minters. Messages name the provider, never a secret.
enum class credential_errc {
  not_configured = 1,  ///< no material registered for the provider (or it was deregistered)
  invalid_material,    ///< the material is unusable as given (bad key, disallowed URL, bad config)
  permanent_upstream,  ///< the token endpoint refused the request (4xx other than 408 and 429)
  transient_upstream,  ///< the token endpoint failed in a way that may pass (5xx, 408, 429, bad 2xx)
  network,             ///< the token endpoint could not be reached or the connection broke
};

/// Errors of the SPIFFE layer: SPIFFE IDs and trust domains, JWT bundles, JWT-SVIDs. A token's
/// algorithm outside RS/PS/ES 256/384/512, a signature that does not verify and a key that does
/// not parse are `jose_errc::unsupported_algorithm`, `invalid_signature` and `invalid_private_key`.
enum class spiffe_errc {
  // SPIFFE IDs and trust domains
  empty = 1,              ///< the text is empty
  wrong_scheme,           ///< not `spiffe://`
  missing_trust_domain,   ///< nothing between `spiffe://` and the path
  trust_domain_too_long,  ///< a trust domain over 255 bytes
  bad_trust_domain_char,  ///< a trust domain byte outside [a-z0-9.-_] (so no port, user info, percent)
  id_too_long,            ///< a SPIFFE ID over 2048 bytes
  empty_segment,          ///< `//` in the path
  dot_segment,            ///< a `.` or `..` path segment
  trailing_slash,         ///< the path ends with `/`
  bad_path_char,          ///< a path byte outside [a-zA-Z0-9.-_] (so no percent, query or fragment)
  // JWT bundles
  bundle_too_large,   ///< a JWKS over the size bound
  invalid_bundle,     ///< not a JWK set: not a JSON object, `keys` missing, a member of the wrong type
  missing_key_id,     ///< a JWT authority (or a JWT-SVID header) without `kid`
  duplicate_key_id,   ///< two JWT authorities share a `kid`
  invalid_authority,  ///< a JWT authority's key is unusable (malformed, weak, off the curve, private)
  // JWT-SVIDs
  token_too_large,       ///< a token over the size bound
  malformed_token,       ///< not three non-empty dot-separated parts
  invalid_base64,        ///< a part is not strict unpadded base64url
  invalid_header,        ///< the header is not a JSON object of the expected shape
  invalid_typ,           ///< `typ` not one the token's kind allows (for a JWT-SVID: absent, `JWT` or `JOSE`)
  invalid_claims,        ///< the claims are not a JSON object of the expected shape
  invalid_subject,       ///< `sub` missing or not a SPIFFE ID
  bundle_not_found,      ///< no bundle for the subject's trust domain
  authority_not_found,   ///< no authority with the token's `kid` in that bundle
  algorithm_mismatch,    ///< `alg` does not fit the verifying key (a JWT authority's, a WIT-SVID's `cnf.jwk`)
  missing_expiration,    ///< no `exp`
  expired,               ///< `exp` is past, beyond the leeway
  not_yet_valid,         ///< `nbf` is ahead, beyond the leeway
  issued_in_future,      ///< `iat` is ahead, beyond the leeway
  missing_audience,      ///< `aud` missing or empty
  too_many_audiences,    ///< more `aud` values than the bound
  audience_mismatch,     ///< no `aud` value is an expected audience
  no_expected_audience,  ///< the caller passed no expected audience (never "accept all")
  // The Workload API and JwtSource
  endpoint_not_configured,  ///< no endpoint given and SPIFFE_ENDPOINT_SOCKET unset or empty
  invalid_endpoint,         ///< an endpoint other than unix:///absolute/path or tcp://IP:port
  malformed_message,        ///< a Workload API message that does not decode or breaks a rule
  empty_response,           ///< a Workload API response without the SVID or bundles it must carry
  resource_limit_exceeded,  ///< a bundle update over a JwtSource's resource limits
  source_closed,            ///< the JwtSource was shut down
  initial_sync_timeout,     ///< no valid bundle set arrived within the initial-sync timeout
  shutdown_timeout,         ///< the supervisor did not stop within the shutdown timeout
  // X.509-SVIDs and X.509 bundles (X509-SVID standard, sections 4 and 5)
  invalid_certificate,           ///< bytes that are not a DER or PEM X.509 certificate
  invalid_chain,                 ///< an empty certificate chain, or one longer than the bound
  unsupported_key,               ///< a key other than EC P-256/P-384, RSA of 2048 bits or more, Ed25519
  missing_uri_san,               ///< the leaf has no URI SAN
  multiple_uri_sans,             ///< the leaf has more than one URI SAN
  invalid_uri_san,               ///< the leaf's URI SAN is not a SPIFFE ID
  root_path_id,                  ///< the leaf's SPIFFE ID has no path (the trust domain itself)
  leaf_is_ca,                    ///< the leaf's basic constraints make it a CA
  missing_key_usage,             ///< a certificate without the key usage extension
  key_usage_not_critical,        ///< key usage present but not marked critical
  missing_digital_signature,     ///< the leaf's key usage lacks digitalSignature
  leaf_has_key_cert_sign,        ///< the leaf's key usage has keyCertSign
  leaf_has_crl_sign,             ///< the leaf's key usage has cRLSign
  signer_not_ca,                 ///< a certificate that signs another is not a CA
  signer_missing_key_cert_sign,  ///< a certificate that signs another lacks keyCertSign
  key_mismatch,                  ///< the private key does not match the leaf's public key
  certificate_expired,           ///< a certificate of the chain is past its notAfter
  certificate_not_yet_valid,     ///< a certificate's notBefore is ahead, beyond the leeway
  no_authorities,                ///< the trust domain's bundle holds no authority (fails closed)
  leaf_is_authority,             ///< the leaf is itself one of its trust domain's authorities
  untrusted_chain,               ///< no path from the leaf to an authority of its own trust domain
  peer_not_authorized,           ///< a verified peer whose SPIFFE ID the authorizer refuses
  no_svid,                       ///< no SVID to present (none received, or none picked)
  svid_expired,                  ///< a source's update whose picked SVID (X.509 or WIT) has expired
  too_many_svids,                ///< an X.509 update with more SVIDs than a source's resource limits
  // WIT-SVIDs and workload proof tokens (experimental)
  invalid_confirmation,  ///< a WIT-SVID's `cnf.jwk` missing or unusable, or its `alg` missing, not allowed or unfit
  audience_present,      ///< a WIT-SVID carries `aud`, which its standard forbids
  lifetime_too_long,     ///< a token lives (or is valid for) longer than the configured maximum
  missing_proof,         ///< no Workload-Identity-Token or Workload-Proof-Token header
  multiple_proofs,       ///< more than one Workload-Identity-Token or Workload-Proof-Token header
  proof_mismatch,        ///< a proof's `wth`, `ath`, `tth` or `oth` does not match the request
  replayed_proof,        ///< a proof's `jti` was already accepted within its lifetime
  replay_cache_full,     ///< the replay cache holds only live entries (the proof is refused: fails closed)
  not_offered,           ///< the Workload API does not offer this profile (Unimplemented, FailedPrecondition)
  missing_private_key,   ///< a WIT-SVID without its private key cannot make proofs
};

/// gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). `ok` is 0 and
/// is never used as an error.
enum class grpc_status {
  ok = 0,
  cancelled = 1,
  unknown = 2,
  invalid_argument = 3,
  deadline_exceeded = 4,
  not_found = 5,
  already_exists = 6,
  permission_denied = 7,
  resource_exhausted = 8,
  failed_precondition = 9,
  aborted = 10,
  out_of_range = 11,
  unimplemented = 12,
  internal = 13,
  unavailable = 14,
  data_loss = 15,
  unauthenticated = 16,
};

const std::error_category& core_category() noexcept;
const std::error_category& jose_category() noexcept;
const std::error_category& http_category() noexcept;
const std::error_category& grpc_category() noexcept;
const std::error_category& credential_category() noexcept;
const std::error_category& spiffe_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), core_category()}; }
inline std::error_code make_error_code(jose_errc e) noexcept { return {static_cast<int>(e), jose_category()}; }
inline std::error_code make_error_code(http_errc e) noexcept { return {static_cast<int>(e), http_category()}; }
inline std::error_code make_error_code(grpc_status e) noexcept { return {static_cast<int>(e), grpc_category()}; }
inline std::error_code make_error_code(credential_errc e) noexcept {
  return {static_cast<int>(e), credential_category()};
}
inline std::error_code make_error_code(spiffe_errc e) noexcept { return {static_cast<int>(e), spiffe_category()}; }

/// What a failure means to its caller, whatever the category of its code. Compare a code with
/// one: `if (ec == awaken::condition::transient) ...`.
enum class condition {
  /// May succeed if tried again unchanged, after a wait: transport failures (resolve, connect,
  /// timeout, broken transfer, stream reset), the gRPC codes `unavailable`, `deadline_exceeded`
  /// and `aborted`, and `credential_errc::transient_upstream` and `network`. A size bound of
  /// awaken's own (`response_too_large`, `message_too_large`) is not: a retry meets it again.
  transient = 1,
  /// What the Workload API's clients retry (the SPIFFE Workload API standard): `transient`,
  /// and the gRPC codes `permission_denied` (no identity issued yet) and `cancelled`.
  workload_transient,
  /// Nothing to use is configured: no material for a provider, no Workload API endpoint, a
  /// profile the agent does not offer.
  not_configured,
  /// The object was shut down or destroyed: `errc::shut_down`, `spiffe_errc::source_closed`.
  shut_down,
  /// Fails again as it stands: any other code of awaken's categories (bad input, a refused
  /// request, a verification failure, a bound exceeded). Cancellation is none of these.
  permanent,
};
const std::error_category& condition_category() noexcept;
inline std::error_condition make_error_condition(condition c) noexcept {
  return {static_cast<int>(c), condition_category()};
}

/// What a server said about a failure, kept apart from the code so that callers can branch on
/// the code and still show the server's words. Texts are bounded and stripped of control bytes.
struct ErrorDetails {
  ErrorDetails() = default;
  ErrorDetails(int status, std::string message, std::optional<std::chrono::milliseconds> retry = std::nullopt)
      : http_status(status), server_message(std::move(message)), retry_after(retry) {}

  int http_status = 0;                                   ///< 0 when there was no HTTP response
  std::string server_message;                            ///< bounded excerpt of body or grpc-message
  std::optional<std::chrono::milliseconds> retry_after;  ///< a server's retry hint, if any
  std::string oauth_error;                               ///< an OAuth token endpoint's `error` (RFC 6749 5.2), bounded
  std::string oauth_error_description;                   ///< and its `error_description`, bounded
};

/// The exception awaken's coroutines throw: a `std::system_error` whose code is one of the
/// categories above (or an Asio/system code such as `operation_aborted`), plus details.
/// `what()` reads "<context>: <code message> (HTTP 503: <server text>)". Never carries secrets:
/// callers build `context` from names and ids only.
class Error : public std::system_error {
 public:
  Error(std::error_code ec, std::string_view context, ErrorDetails details = {});
  const ErrorDetails& details() const noexcept { return state_->details; }
  /// What awaken was doing, as given to the constructor (names and ids only).
  const std::string& context() const noexcept { return state_->context; }
  const char* what() const noexcept override { return state_->what.c_str(); }

 private:
  struct State {
    ErrorDetails details;
    std::string context;
    std::string what;
  };
  std::shared_ptr<const State> state_;  // shared, so that copying an exception cannot throw
};

/// Throws `Error{ec, context, details}`.
[[noreturn]] void throw_error(std::error_code ec, std::string_view context, ErrorDetails details = {});

/// A printable excerpt of untrusted text: at most `max_bytes` bytes (never half a UTF-8
/// sequence), control bytes replaced by '?', an ellipsis and the full length appended when cut.
std::string bounded_excerpt(std::string_view text, std::size_t max_bytes = 256);

}  // namespace awaken

template <>
struct std::is_error_code_enum<awaken::errc> : std::true_type {};
template <>
struct std::is_error_condition_enum<awaken::condition> : std::true_type {};
template <>
struct std::is_error_code_enum<awaken::jose_errc> : std::true_type {};
template <>
struct std::is_error_code_enum<awaken::http_errc> : std::true_type {};
template <>
struct std::is_error_code_enum<awaken::grpc_status> : std::true_type {};
template <>
struct std::is_error_code_enum<awaken::credential_errc> : std::true_type {};
template <>
struct std::is_error_code_enum<awaken::spiffe_errc> : std::true_type {};
