// Access tokens as minted (`Token`) and as handed to callers (`IssuedToken`).
#pragma once

#include <chrono>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

#include <spdlog/fmt/fmt.h>

#include <awaken/clock.hpp>
#include <awaken/redacted_string.hpp>

namespace awaken {

class DpopKey;

/// The headers that present a token on one request: `authorization` ("Bearer ..." or
/// "DPoP ...") and, for a DPoP-bound token, `dpop` (the proof; empty otherwise).
struct AuthorizationHeaders {
  RedactedString authorization;
  std::string dpop;
};

/// Temporary AWS credentials, as AWS STS issues them (`AssumeRoleWithWebIdentity`): every field
/// is redacted when printed and wiped when the last copy goes.
///
/// To hand them to the AWS SDK for C++ without awaken depending on it, wrap a broker call in an
/// `Aws::Auth::AWSCredentialsProvider` whose `GetAWSCredentials()` returns
/// `Aws::Auth::AWSCredentials(c.access_key_id().reveal(), c.secret_access_key().reveal(),
/// c.session_token().reveal(), Aws::Utils::DateTime(c.expiration()))` (all `std::string`s of the
/// revealed views).
///
/// Thread safety: immutable.
class AwsCredentials {
 public:
  AwsCredentials(RedactedString access_key_id, RedactedString secret_access_key, RedactedString session_token,
                 std::chrono::system_clock::time_point expiration)
      : access_key_id_(std::move(access_key_id)),
        secret_access_key_(std::move(secret_access_key)),
        session_token_(std::move(session_token)),
        expiration_(expiration) {}

  /// The key id (`ASIA...`). Not a secret on its own, but it names the session: redacted too.
  const RedactedString& access_key_id() const noexcept { return access_key_id_; }
  const RedactedString& secret_access_key() const noexcept { return secret_access_key_; }
  const RedactedString& session_token() const noexcept { return session_token_; }
  /// When AWS stops honouring them (STS's `Expiration`).
  std::chrono::system_clock::time_point expiration() const noexcept { return expiration_; }

 private:
  RedactedString access_key_id_;
  RedactedString secret_access_key_;
  RedactedString session_token_;
  std::chrono::system_clock::time_point expiration_;
};

/// A bearer credential and when it stops being valid.
///
/// The expiry is kept on both clocks: `steady_expires_at` for every decision (immune to
/// wall-clock jumps) and `expires_at` for display and logs. Build one with `expiring_in`, which
/// reads both clocks at the same moment.
///
/// A token may also carry structured secrets that a bearer string cannot hold: AWS credentials
/// (`aws_credentials()`), whose `bearer()` is then the session token.
///
/// A DPoP-bound token (RFC 9449; `token_type()` "DPoP", `dpop_key()` not null) is worth nothing
/// without a proof made with its key on each request: present it with `authorization(method,
/// url)`, which makes that proof, rather than with `bearer()` alone.
///
/// Thread safety: immutable after construction.
class Token {
 public:
  Token(RedactedString bearer, std::chrono::system_clock::time_point expires_at,
        std::chrono::steady_clock::time_point steady_expires_at, std::string token_type = "Bearer",
        std::shared_ptr<const AwsCredentials> aws = nullptr, std::shared_ptr<const DpopKey> dpop = nullptr)
      : bearer_(std::move(bearer)),
        token_type_(std::move(token_type)),
        expires_at_(expires_at),
        steady_expires_at_(steady_expires_at),
        aws_(std::move(aws)),
        dpop_(std::move(dpop)) {}

  /// A token that expires `lifetime` after the present moment of `clock`.
  static Token expiring_in(RedactedString bearer, std::chrono::seconds lifetime, const Clock& clock = system_clock(),
                           std::string token_type = "Bearer") {
    return Token(std::move(bearer), clock.system_now() + lifetime, clock.steady_now() + lifetime,
                 std::move(token_type));
  }

  /// The secret. Use `bearer().reveal()` where the plaintext is needed.
  const RedactedString& bearer() const noexcept { return bearer_; }
  /// The scheme to send it with, as the issuer named it (`Bearer` unless it said otherwise).
  const std::string& token_type() const noexcept { return token_type_; }
  std::chrono::system_clock::time_point expires_at() const noexcept { return expires_at_; }
  std::chrono::steady_clock::time_point steady_expires_at() const noexcept { return steady_expires_at_; }
  /// The AWS credentials this token carries, or null (a plain bearer).
  const AwsCredentials* aws_credentials() const noexcept { return aws_.get(); }
  /// The key this token is bound to (DPoP), or null: a bearer token.
  const DpopKey* dpop_key() const noexcept { return dpop_.get(); }

  /// The DPoP proof of one request that presents this token (`ath` its hash; see
  /// `DpopKey::proof`), with the resource server's last `DPoP-Nonce` when it sent one. Takes no
  /// lock. Throws `Error{credential_errc::invalid_material}` when the token is not DPoP-bound or
  /// the method, URL or nonce is malformed.
  std::string dpop_proof(std::string_view method, std::string_view url, std::string_view nonce = {},
                         const Clock& clock = system_clock()) const;

  /// The headers of one request that presents this token: "Bearer <token>" for a bearer token
  /// (`method`, `url` and `nonce` unused), "DPoP <token>" and its proof for a bound one. Throws
  /// as `dpop_proof` does.
  AuthorizationHeaders authorization(std::string_view method, std::string_view url, std::string_view nonce = {},
                                     const Clock& clock = system_clock()) const;

  /// True when at most `window` of validity is left, or none.
  bool is_near_expiry(std::chrono::steady_clock::duration window, const Clock& clock = system_clock()) const noexcept {
    return steady_expires_at_ - clock.steady_now() <= window;
  }

 private:
  RedactedString bearer_;
  std::string token_type_;
  std::chrono::system_clock::time_point expires_at_;
  std::chrono::steady_clock::time_point steady_expires_at_;
  std::shared_ptr<const AwsCredentials> aws_;
  std::shared_ptr<const DpopKey> dpop_;
};

/// "Token{type=Bearer, expires_at=2026-11-22T10:00:00Z, bearer=[redacted]}" (and the key's
/// thumbprint, `dpop_jkt=`, for a DPoP-bound one): never the bearer.
std::string to_string(const Token& token);
inline std::ostream& operator<<(std::ostream& os, const Token& token) { return os << to_string(token); }

/// A token as the broker hands it out: a shared reference to the immutable `Token` it caches,
/// so that handing it out copies no secret and allocates nothing.
///
/// A default-constructed `IssuedToken` is empty (`!token`); every other one holds a token.
///
/// Thread safety: copies may be used and destroyed on any thread; the token is immutable.
class IssuedToken {
 public:
  IssuedToken() noexcept = default;
  explicit IssuedToken(std::shared_ptr<const Token> token) noexcept : token_(std::move(token)) {}

  /// The secret; `bearer().reveal()` is the plaintext. Precondition: not empty.
  const RedactedString& bearer() const noexcept { return token_->bearer(); }
  /// Precondition: not empty.
  const std::string& token_type() const noexcept { return token_->token_type(); }
  /// Precondition: not empty.
  std::chrono::system_clock::time_point expires_at() const noexcept { return token_->expires_at(); }
  /// Precondition: not empty.
  std::chrono::steady_clock::time_point steady_expires_at() const noexcept { return token_->steady_expires_at(); }
  /// The AWS credentials, or null. Precondition: not empty.
  const AwsCredentials* aws_credentials() const noexcept { return token_->aws_credentials(); }
  /// The DPoP key, or null (a bearer token). Precondition: not empty.
  const DpopKey* dpop_key() const noexcept { return token_->dpop_key(); }
  /// As `Token::dpop_proof`. Precondition: not empty.
  std::string dpop_proof(std::string_view method, std::string_view url, std::string_view nonce = {},
                         const Clock& clock = system_clock()) const {
    return token_->dpop_proof(method, url, nonce, clock);
  }
  /// As `Token::authorization`. Precondition: not empty.
  AuthorizationHeaders authorization(std::string_view method, std::string_view url, std::string_view nonce = {},
                                     const Clock& clock = system_clock()) const {
    return token_->authorization(method, url, nonce, clock);
  }

  bool empty() const noexcept { return token_ == nullptr; }
  explicit operator bool() const noexcept { return token_ != nullptr; }

  /// Whether both hand out the very same minted token (not merely equal text). This is what
  /// `AwakenBroker::invalidate` compares.
  bool same_token(const IssuedToken& other) const noexcept { return token_ == other.token_; }

  /// The shared token itself.
  const std::shared_ptr<const Token>& token() const noexcept { return token_; }

 private:
  std::shared_ptr<const Token> token_;
};

/// As `to_string(const Token&)`, or "IssuedToken{empty}".
std::string to_string(const IssuedToken& token);
inline std::ostream& operator<<(std::ostream& os, const IssuedToken& token) { return os << to_string(token); }

}  // namespace awaken

template <>
struct fmt::formatter<awaken::Token> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(const awaken::Token& t, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format(awaken::to_string(t), ctx);
  }
};

template <>
struct fmt::formatter<awaken::IssuedToken> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(const awaken::IssuedToken& t, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format(awaken::to_string(t), ctx);
  }
};
