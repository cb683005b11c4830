// WIT-SVIDs (the SPIFFE WIT-SVID standard, Incubating): parsing and validation against WIT
// bundles, and the key that proves possession.
//
// EXPERIMENTAL: the standard and the IETF WIMSE drafts it follows are not final. This header's
// names live in `awaken::spiffe::experimental` and may change in any release.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include <awaken/clock.hpp>
#include <awaken/jose/keys.hpp>
#include <awaken/redacted_string.hpp>
#include <awaken/spiffe/bundle.hpp>
#include <awaken/spiffe/spiffe_id.hpp>

namespace awaken::jose {
class JwsSigner;
}

namespace awaken::spiffe::experimental {

/// How WIT-SVIDs are checked.
struct WitSvidOptions {
  /// The clock `exp` and `nbf` are compared with; null: the system clock.
  const Clock* clock = nullptr;
  /// Slack allowed on `exp` and `nbf`.
  std::chrono::seconds leeway{60};
  /// The longest token accepted, in bytes.
  std::size_t max_token_bytes = 64 * 1024;
  /// When set, a token whose validity (`exp` minus `nbf`, else minus `iat`, else minus now)
  /// exceeds it is refused with `lifetime_too_long`. The standard sets no cap; this is policy.
  std::optional<std::chrono::seconds> max_lifetime;
};

/// Parses the WIT bundle of `td`: a JWK set whose keys with `"use": "wit-svid"` are the
/// authorities (every other key is ignored). Errors as `JwtBundle::parse`.
JwtBundle parse_wit_bundle(TrustDomain td, std::string_view jwks, std::size_t max_bytes = JwtBundle::default_max_bytes);

/// A WIT-SVID: a workload identity token bound to a key the workload holds (`cnf.jwk`). It
/// is never a bearer credential: a relying party accepts it only with a proof of possession
/// (a workload proof token, `wpt.hpp`). The token is kept as a secret all the same and never
/// printed, and so is the private key.
///
/// Thread safety: an immutable value; copies share the parsed state.
class WitSvid {
 public:
  /// An empty SVID, which no parse returns; for containers and default-constructed results.
  WitSvid();

  /// Parses without checking the signature or the time: for tokens the Workload API hands
  /// this workload. Checks, in order: size (`token_too_large`), three non-empty parts
  /// (`malformed_token`), strict base64url (`invalid_base64`), a JSON-object header without
  /// `crit` (`invalid_header`), `alg` one of RS/PS/ES 256/384/512 (`unsupported_algorithm`),
  /// `typ` exactly `wit+jwt` (`invalid_typ`), `kid` a non-empty string (`missing_key_id`,
  /// `invalid_header`), JSON-object claims (`invalid_claims`), `sub` a SPIFFE ID
  /// (`invalid_subject`), `exp` a number (`missing_expiration`), no `aud`
  /// (`audience_present`), `cnf.jwk` a public RSA or EC key whose `alg` is one of the nine and
  /// fits the key type and curve (`invalid_confirmation`). Throws `awaken::Error`.
  static WitSvid parse_insecure(std::string_view token, const WitSvidOptions& options = {});

  /// Parses and validates a token a peer presented: the checks of `parse_insecure`, then the
  /// bundle of the subject's trust domain (`bundle_not_found`), the authority for `kid`
  /// (`authority_not_found`), `alg` against its key (`algorithm_mismatch`), the signature
  /// (`invalid_signature`), `exp` (`expired` beyond the leeway), `nbf` (`not_yet_valid`) and
  /// the policy's `max_lifetime` (`lifetime_too_long`). `iat` and `jti` are for audit only and
  /// are not checked, as the standard says. `bundles` holds WIT bundles (`parse_wit_bundle`).
  static WitSvid parse_and_validate(std::string_view token, const BundleSource& bundles,
                                    const WitSvidOptions& options = {});

  /// A copy that holds `key`, the private half of `cnf.jwk`; `key_mismatch` when it is not.
  WitSvid with_private_key(jose::PrivateKey key) const;
  /// A copy carrying `hint`.
  WitSvid with_hint(std::string hint) const;

  const SpiffeId& spiffe_id() const noexcept;
  std::chrono::system_clock::time_point expiry() const noexcept;
  const std::string& key_id() const noexcept;
  jose::Algorithm algorithm() const noexcept;
  /// The confirmation key (`cnf.jwk`) and the algorithm its proofs must use (`cnf.jwk.alg`).
  const jose::PublicKey& confirmation_key() const noexcept;
  jose::Algorithm confirmation_algorithm() const noexcept;
  /// Whether `with_private_key` gave this SVID its key, so it can make proofs.
  bool has_private_key() const noexcept;
  /// The Workload API's hint; empty unless set.
  const std::string& hint() const noexcept { return hint_; }
  /// Every claim of the token.
  const nlohmann::json& claims() const noexcept;
  /// The original token.
  const RedactedString& token() const noexcept;
  /// `base64url(SHA-256(token))`: a proof's `wth`, computed once.
  const std::string& token_hash() const noexcept;
  /// Signs proofs with the private key under `cnf.jwk.alg`, the header `{"typ":"wpt+jwt"}`
  /// encoded once; null without a private key. For `wpt.hpp`.
  const jose::JwsSigner* proof_signer() const noexcept;

 private:
  struct State;
  explicit WitSvid(std::shared_ptr<const State> state) noexcept : state_(std::move(state)) {}
  friend struct WitSvidParser;
  std::shared_ptr<const State> state_;
  std::string hint_;
};

/// "WitSvid{spiffe_id=..., expiry=..., kid=..., cnf_alg=ES256, token=[redacted], key=[redacted]}".
std::string to_string(const WitSvid& svid);
inline std::ostream& operator<<(std::ostream& os, const WitSvid& svid) { return os << to_string(svid); }

}  // namespace awaken::spiffe::experimental
