// The interface through which services obtain credentials.
#pragma once

#include <string>
#include <string_view>

#include <asio/awaitable.hpp>

#include <awaken/credentials/material.hpp>
#include <awaken/credentials/token.hpp>

namespace awaken {

/// Hands out access tokens per (provider, scope).
///
/// Implementations are safe to use from any number of threads at once.
class CredentialBroker {
 public:
  virtual ~CredentialBroker() = default;

  /// Sets (or replaces) the material of `provider_id`. Tokens cached from earlier material are
  /// no longer handed out once this returns.
  virtual void register_material(std::string provider_id, CredentialMaterial material) = 0;

  /// Forgets `provider_id`: later requests fail with `credential_errc::not_configured`, and so
  /// do requests waiting for a token of it. Unknown ids are ignored.
  virtual void deregister(std::string_view provider_id) = 0;

  /// A token for `scope` of `provider_id`. Throws `awaken::Error` on failure (code
  /// `credential_errc::not_configured` for an unknown provider, otherwise the minter's error)
  /// and `std::system_error{asio::error::operation_aborted}` when cancelled.
  virtual asio::awaitable<IssuedToken> token_for(std::string_view provider_id, std::string_view scope) = 0;

  /// Tells the broker that a server rejected `rejected` (say, with HTTP 401), so that it is not
  /// handed out again. Returns whether a cached token was dropped. The default keeps no cache.
  virtual bool invalidate(std::string_view provider_id, std::string_view scope, const IssuedToken& rejected) {
    (void)provider_id, (void)scope, (void)rejected;
    return false;
  }
};

}  // namespace awaken
