// What a provider's credentials are made from: a `Minter` strategy wrapped as `CredentialMaterial`.
#pragma once

#include <chrono>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>

#include <asio/awaitable.hpp>
#include <nlohmann/json_fwd.hpp>

#include <awaken/clock.hpp>
#include <awaken/credentials/token.hpp>
#include <awaken/http/http_client.hpp>
#include <awaken/redacted_string.hpp>

namespace awaken {

/// What the broker lends a minter for one mint.
struct MintContext {
  std::string_view provider_id;  ///< the provider being minted for; for error texts and logs
  http::HttpClient& http;        ///< the broker's shared HTTP client
  const Clock& clock;            ///< the broker's clock; use it for `iat`/`exp` and expiry
};

/// Makes tokens for one provider: a strategy such as a static bearer, an OAuth grant or a
/// SPIFFE-backed exchange.
///
/// Thread safety: `mint` may be called concurrently, for different scopes and, briefly, for the
/// same one (a mint cancelled by `deregister` may still be ending when a new one starts), so
/// implementations must be safe for concurrent const use.
///
/// Failures are exceptions derived from `std::system_error`, preferably `awaken::Error` with a
/// `credential_errc` code: the broker retries those equal to `awaken::condition::transient` and
/// passes the others to its callers. Error texts must never contain a secret.
class Minter {
 public:
  virtual ~Minter() = default;
  /// A short, constant name of the kind of material (`bearer`, `google_service_account`, ...).
  virtual std::string_view kind_label() const noexcept = 0;
  /// Mints a token for `scope`. `scope` and `context` stay valid until the returned awaitable
  /// completes. Cancellation: should honour the coroutine's cancellation state (the broker
  /// cancels mints whose provider was deregistered or whose broker was destroyed).
  virtual asio::awaitable<Token> mint(std::string_view scope, const MintContext& context) const = 0;
};

/// A provider's credentials as registered with a broker: an immutable, cheaply copied handle on
/// a `Minter`.
///
/// Thread safety: immutable; copies may be used from any thread.
class CredentialMaterial {
 public:
  /// How long `static_bearer` tokens are cached before they are handed out anew.
  static constexpr std::chrono::seconds default_static_lifetime{std::chrono::hours{24 * 30}};

  /// A fixed bearer (an API key, a pre-issued token): no I/O, the scope is ignored, each mint
  /// returns the same secret valid for `lifetime`. Throws `Error{credential_errc::invalid_material}`
  /// when `bearer` is empty or `lifetime` is not positive.
  static CredentialMaterial static_bearer(RedactedString bearer,
                                          std::chrono::seconds lifetime = default_static_lifetime);

  /// Any minter. Throws `Error{credential_errc::invalid_material}` when `minter` is null.
  static CredentialMaterial from_minter(std::shared_ptr<const Minter> minter);

  /// Any built-in material from a JSON object whose `kind` picks it: `bearer`,
  /// `google_service_account`, `oauth_client_credentials`, `gce_metadata`, and the federated
  /// `jwt_bearer_grant`, `google_external_account`, `azure_workload_identity` and
  /// `aws_web_identity` with a token file or URL. The SPIFFE-backed kinds (`jwt_svid`,
  /// `spiffe_client_credentials`, `spiffe_token_exchange`, and a federated kind whose identity
  /// token is a `jwt_svid`) need `material_from_config` and its sources; here they are refused,
  /// naming the source they lack. The README's configuration section lists each kind's fields.
  ///
  /// A secret field (marked * in that table) may instead be given as `<field>_file` (a path whose contents,
  /// up to 1 MiB, are the value; one trailing newline is dropped) or `<field>_env` (the name of
  /// an environment variable), exactly one of the three. Unknown fields are refused, so a typo
  /// does not silently drop a setting.
  ///
  /// Throws `Error{credential_errc::invalid_material}` whose text names the bad field (never
  /// its value when it is a secret).
  static CredentialMaterial from_config(const nlohmann::json& config);

  std::string_view kind_label() const noexcept { return minter_->kind_label(); }
  const Minter& minter() const noexcept { return *minter_; }
  const std::shared_ptr<const Minter>& shared_minter() const noexcept { return minter_; }

 private:
  explicit CredentialMaterial(std::shared_ptr<const Minter> minter) noexcept : minter_(std::move(minter)) {}
  std::shared_ptr<const Minter> minter_;
};

/// "CredentialMaterial{kind=bearer}": never the secret.
inline std::ostream& operator<<(std::ostream& os, const CredentialMaterial& m) {
  return os << "CredentialMaterial{kind=" << m.kind_label() << '}';
}

}  // namespace awaken
