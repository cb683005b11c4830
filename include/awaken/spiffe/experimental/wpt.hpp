// Workload proof tokens (IETF draft-ietf-wimse-wpt): a WIT-SVID's proof of possession for one
// HTTP request, made by the caller and verified by the service it calls.
//
// EXPERIMENTAL: the draft is not final. These names live in `awaken::spiffe::experimental` and
// may change in any release.
//
// Where the draft leaves a choice, awaken takes this one:
// - `typ` is written `wpt+jwt` and both `wpt+jwt` and `application/wpt+jwt` are accepted (the
//   draft's text and its example disagree).
// - `aud` is the target URI without query and fragment; the verifier builds the values it
//   accepts from the origins in its configuration and the request's path, never from `Host`.
// - A proof must carry `exp` and `jti`, and `exp` may lie at most `max_lifetime` ahead.
// - `oth` covers exactly the headers the caller names; an `oth` entry for a header the
//   request lacks, or that the verifier was not told about, is refused.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <awaken/clock.hpp>
#include <awaken/redacted_string.hpp>
#include <awaken/spiffe/experimental/wit_svid.hpp>

namespace awaken::spiffe::experimental {

/// The header names of the draft.
inline constexpr std::string_view workload_identity_token_header = "Workload-Identity-Token";
inline constexpr std::string_view workload_proof_token_header = "Workload-Proof-Token";

/// What a proof binds: the request's target and the tokens and headers it carries.
struct WptRequest {
  /// The absolute target URI, such as `https://api.example.org/orders?id=3`; its query and
  /// fragment are not part of `aud`.
  std::string_view target_uri{};
  /// The access token the request carries (the credentials of its `Authorization` header,
  /// without the scheme), for `ath`; empty when none.
  std::string_view access_token{};
  /// The transaction token the request carries (`Txn-Token`), for `tth`; empty when none.
  std::string_view transaction_token{};
  /// Other headers the proof covers (`oth`), by name (any case) and value.
  std::span<const std::pair<std::string_view, std::string_view>> other_headers{};
};

/// The two header values a request sends.
struct WptHeaders {
  RedactedString workload_identity_token;  ///< the WIT-SVID
  RedactedString workload_proof_token;     ///< the proof
};

struct WptOptions {
  /// The proof's lifetime (`exp` = now + lifetime).
  std::chrono::seconds lifetime{60};
  /// Null: the system clock.
  const Clock* clock = nullptr;
};

/// Makes the headers for one request with `svid`, which must hold its private key
/// (`missing_private_key` otherwise): `aud` the target URI without query and fragment, `exp`,
/// a random 128-bit `jti`, `wth`, and `ath`, `tth`, `oth` as the request needs. Throws
/// `awaken::Error{spiffe_errc::proof_mismatch}` for a target that is not an absolute http(s)
/// URI of visible ASCII without user info, a header name that is not an HTTP token or a value
/// with control bytes, a header named twice, or more than 32 headers. Takes no
/// lock: any number of threads may make proofs with one SVID at once.
WptHeaders make_workload_proof(const WitSvid& svid, const WptRequest& request, const WptOptions& options = {});

/// A request as the receiving service saw it.
struct WptPresented {
  /// Every `Workload-Identity-Token` header value (exactly one is accepted).
  std::span<const std::string_view> identity_tokens{};
  /// Every `Workload-Proof-Token` header value (exactly one is accepted).
  std::span<const std::string_view> proof_tokens{};
  /// The request target's path (origin form, such as `/orders?id=3`); query and fragment are
  /// dropped before it is joined to a configured origin.
  std::string_view path{};
  /// The access token the request carries, empty when none: `ath` is then required to match;
  /// when empty, an `ath` in the proof is refused.
  std::string_view access_token{};
  /// The transaction token, likewise for `tth`.
  std::string_view transaction_token{};
  /// Headers of the request the verifier may check against `oth`, by name (any case) and value.
  std::span<const std::pair<std::string_view, std::string_view>> headers{};
};

/// What a verified proof tells.
struct WptVerified {
  WitSvid wit;                               ///< the caller's validated WIT-SVID
  std::string jti;                           ///< the proof's `jti`
  std::vector<std::string> covered_headers;  ///< the `oth` names (lowercase): do not authorize on others
  const SpiffeId& caller() const noexcept { return wit.spiffe_id(); }
};

struct WptVerifierOptions {
  /// The origins this service answers as (`https://orders.example.org`,
  /// `http://127.0.0.1:8443`): `aud` must be one of them followed by the request's path.
  /// Required; from configuration, never from the request.
  std::vector<std::string> origins;
  /// The furthest a proof's `exp` may lie ahead.
  std::chrono::seconds max_lifetime{300};
  /// Slack on the proof's `exp`.
  std::chrono::seconds leeway{30};
  /// How many live `jti` the replay cache holds; when it is full of live entries, proofs are
  /// refused (`replay_cache_full`) rather than risk a replay.
  std::size_t replay_cache_capacity = 100'000;
  /// The longest proof accepted, in bytes.
  std::size_t max_proof_bytes = 16 * 1024;
  /// How many validated WIT-SVIDs are remembered, by their exact text, until they expire. A
  /// caller presents the same WIT-SVID with every proof for as long as it lives, so each is
  /// parsed and its signature checked once; a remembered one is checked again (time, and
  /// signature when the bundle of its trust domain has changed since) on every use. When full,
  /// the one that expires first makes room. Each entry keeps its token, so the memory bound is
  /// this times `wit.max_token_bytes`; only tokens that passed validation are kept. 0: none are
  /// remembered.
  std::size_t wit_cache_capacity = 1024;
  /// How the WIT-SVID is checked (its clock is used for the proof too).
  WitSvidOptions wit;
};

/// What a verifier has seen, for metrics.
struct WptVerifierStats {
  std::size_t replay_entries = 0;      ///< live `jti` in the replay cache
  std::size_t wit_cache_entries = 0;   ///< validated WIT-SVIDs remembered
  std::uint64_t wit_cache_hits = 0;    ///< WIT-SVIDs found remembered and still valid
  std::uint64_t wit_cache_misses = 0;  ///< WIT-SVIDs parsed and validated in full
};

/// Verifies workload proof tokens, in the draft's order: one header of each kind
/// (`missing_proof`, `multiple_proofs`); the WIT-SVID against the WIT bundles (as
/// `WitSvid::parse_and_validate`); the proof parsed (the JWT-SVID codes), `typ` (`invalid_typ`),
/// `alg` equal to `cnf.jwk.alg` (`algorithm_mismatch`), its signature under `cnf.jwk`
/// (`invalid_signature`); `aud` (`audience_mismatch`), `exp` (`missing_expiration`, `expired`,
/// `lifetime_too_long`), `jti` (`invalid_claims`), `wth`, `ath`, `tth` and `oth`
/// (`proof_mismatch`); last the replay cache (`replayed_proof`, `replay_cache_full`), so a
/// refused proof never uses up its `jti`. The `jti` is remembered per caller SPIFFE ID until
/// the proof's `exp` (plus leeway) passes. A WIT-SVID already validated is taken from a
/// bounded cache (`wit_cache_capacity`) when its text, its trust domain's bundle and the time
/// still allow it, so its signature is checked once per bundle rather than once per request.
///
/// Thread safety: `verify` may run on any number of threads at once; a lookup in the WIT-SVID
/// cache takes a shared lock, and only insertions into either cache take an exclusive one.
class WptVerifier {
 public:
  /// `wit_bundles` holds WIT bundles (a `WitSource`, or a `JwtBundleSet` of
  /// `parse_wit_bundle`). Throws `Error{spiffe_errc::invalid_endpoint}` when `origins` is empty
  /// or an origin is not `http(s)://authority` without a path.
  WptVerifier(std::shared_ptr<const BundleSource> wit_bundles, WptVerifierOptions options);
  ~WptVerifier();
  WptVerifier(const WptVerifier&) = delete;
  WptVerifier& operator=(const WptVerifier&) = delete;

  /// Throws `awaken::Error` with the code of the first check that fails; the text names the
  /// check, never a token.
  WptVerified verify(const WptPresented& request) const;

  /// Live entries in the replay cache.
  std::size_t replay_cache_size() const;
  /// The caches' sizes and the WIT-SVID cache's hits and misses so far.
  WptVerifierStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace awaken::spiffe::experimental
