// JWT-SVIDs (the JWT-SVID standard): parsing, and validation against JWT bundles.
#pragma once

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include <awaken/clock.hpp>
#include <awaken/jose/keys.hpp>
#include <awaken/redacted_string.hpp>
#include <awaken/spiffe/bundle.hpp>
#include <awaken/spiffe/spiffe_id.hpp>

namespace awaken::spiffe {

/// How tokens are checked.
struct JwtSvidOptions {
  /// The clock `exp`, `nbf` and `iat` are compared with; null: the system clock.
  const Clock* clock = nullptr;
  /// Slack allowed on `exp`, `nbf` and `iat`.
  std::chrono::seconds leeway{60};
  /// The longest token accepted, in bytes.
  std::size_t max_token_bytes = 64 * 1024;
  /// The most `aud` values accepted.
  std::size_t max_audiences = 32;
};

/// A JWT-SVID: the SPIFFE ID it asserts, its audiences and expiry, its claims, and the token
/// itself, kept as a secret (a JWT-SVID is a bearer credential: it is never printed).
///
/// Thread safety: an immutable value; copies share the claims.
class JwtSvid {
 public:
  /// An empty SVID (empty ID, audience and token, expiry at the epoch), which no parse returns;
  /// for containers and for results that Asio default-constructs.
  JwtSvid();

  /// Parses without checking the signature or the time: for tokens the Workload API hands
  /// this workload. Checks, in order: size (`token_too_large`), three non-empty parts
  /// (`malformed_token`), strict unpadded base64url (`invalid_base64`), a JSON-object header
  /// (`invalid_header`), `alg` in RS/PS/ES 256/384/512 (`unsupported_algorithm`), `typ`
  /// absent, `JWT` or `JOSE` (`invalid_typ`), `kid` a string when present (`invalid_header`),
  /// JSON-object claims (`invalid_claims`), `sub` a SPIFFE ID (`invalid_subject`), `exp` a
  /// number (`missing_expiration`, `invalid_claims`), `aud` a non-empty string or a
  /// non-empty array of strings (`missing_audience`, `invalid_claims`, `too_many_audiences`).
  /// Throws `awaken::Error` with a `spiffe_errc` code; no text contains the token.
  static JwtSvid parse_insecure(std::string_view token, const JwtSvidOptions& options = {});

  /// Parses and validates a token a peer presented. `expected_audiences` must not be empty
  /// (`no_expected_audience`: an empty list never means "any audience"). Checks, in order:
  /// those of `parse_insecure` up to `sub`, with `kid` required (`missing_key_id`); then the
  /// bundle of the subject's trust domain (`bundle_not_found`), its authority for `kid`
  /// (`authority_not_found`), the fit of `alg` and key (`algorithm_mismatch`), the signature
  /// (`invalid_signature`); then `exp` (`missing_expiration`, `expired` once it is more than
  /// the leeway past), `nbf` and `iat` when present (`not_yet_valid`, `issued_in_future`
  /// beyond the leeway), and `aud` (`missing_audience`, `too_many_audiences`, and
  /// `audience_mismatch` when no value is expected).
  static JwtSvid parse_and_validate(std::string_view token, const BundleSource& bundles,
                                    std::span<const std::string> expected_audiences,
                                    const JwtSvidOptions& options = {});
  static JwtSvid parse_and_validate(std::string_view token, const BundleSource& bundles,
                                    std::initializer_list<std::string_view> expected_audiences,
                                    const JwtSvidOptions& options = {});

  const SpiffeId& spiffe_id() const noexcept;
  const std::vector<std::string>& audience() const noexcept;
  std::chrono::system_clock::time_point expiry() const noexcept;
  /// The `kid` header; empty when a token parsed insecurely has none.
  const std::string& key_id() const noexcept;
  jose::Algorithm algorithm() const noexcept;
  /// The Workload API's hint for this SVID; empty unless set with `with_hint`.
  const std::string& hint() const noexcept { return hint_; }
  /// A copy carrying `hint`.
  JwtSvid with_hint(std::string hint) const {
    JwtSvid copy = *this;
    copy.hint_ = std::move(hint);
    return copy;
  }
  /// Every claim of the token.
  const nlohmann::json& claims() const noexcept;
  /// The original token.
  const RedactedString& token() const noexcept;

 private:
  struct State;
  explicit JwtSvid(std::shared_ptr<const State> state) noexcept : state_(std::move(state)) {}
  friend struct JwtSvidParser;
  std::shared_ptr<const State> state_;
  std::string hint_;
};

/// "JwtSvid{spiffe_id=spiffe://example.org/w, audience=[a, b], expiry=..., token=[redacted]}".
std::string to_string(const JwtSvid& svid);
inline std::ostream& operator<<(std::ostream& os, const JwtSvid& svid) { return os << to_string(svid); }

}  // namespace awaken::spiffe
