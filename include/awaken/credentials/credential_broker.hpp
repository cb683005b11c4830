// The interface through which services obtain credentials.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include <awaken/completion.hpp>
#include <awaken/credentials/material.hpp>
#include <awaken/credentials/token.hpp>
#include <awaken/diagnostics.hpp>

namespace awaken {

/// Hands out access tokens per (provider, scope).
///
/// Implementations are safe to use from any number of threads at once. They implement
/// `start_token_for` (and may implement `try_hit` for an allocation-free hit path); callers use
/// the one operation `token_for`.
class CredentialBroker {
 public:
  using executor_type = asio::any_io_executor;

  virtual ~CredentialBroker() = default;

  /// Sets (or replaces) the material of `provider_id`. Tokens cached from earlier material are
  /// no longer handed out once this returns.
  virtual void register_material(std::string provider_id, CredentialMaterial material) = 0;

  /// Forgets `provider_id`: later requests fail with `credential_errc::not_configured`, and so
  /// do requests waiting for a token of it. Unknown ids are ignored.
  virtual void deregister(std::string_view provider_id) = 0;

  /// A token for `scope` of `provider_id`. Completes with `void(std::error_code, IssuedToken)`:
  /// `credential_errc::not_configured` for an unknown provider, `shut_down` when the broker is
  /// destroyed first, `asio::error::operation_aborted` when cancelled, otherwise the minter's
  /// error, whose server words (HTTP status, OAuth `error` and `error_description`) go to the
  /// diagnostics (see `awaken/diagnostics.hpp`).
  ///
  /// Any completion token: the default, `awaken::use_awaitable`, makes `co_await` return the
  /// token or throw `awaken::Error`; callbacks, `asio::use_future`, `asio::use_awaitable`,
  /// `as_tuple` and `deferred` work as with any Asio operation. The handler runs on its
  /// associated executor (else the broker's), never inside this call.
  ///
  /// The cache is consulted when this is called, whatever the token: a hit costs no copy of
  /// the strings, a miss copies them, so temporaries may be passed. As with any Asio I/O
  /// object, the broker must outlive the operation.
  template <class CompletionToken = use_awaitable_t>
  auto token_for(std::string_view provider_id, std::string_view scope, CompletionToken&& token = {}) {
    std::optional<IssuedToken> hit = try_hit(provider_id, scope);
    if constexpr (std::is_same_v<std::decay_t<CompletionToken>, use_awaitable_t>) {
      // The default token's own path: a hit resumes the awaiting coroutine at once, with no
      // round trip through its executor (what any other token must make).
      if (hit) return ready(std::move(*hit));
      return awaited(this, std::string{provider_id}, std::string{scope});
    } else {
      std::string provider, scope_copy;  // a hit needs no copy
      if (!hit) provider.assign(provider_id), scope_copy.assign(scope);
      return initiate(std::move(hit), std::move(provider), std::move(scope_copy), std::forward<CompletionToken>(token));
    }
  }

  /// Tells the broker that a server rejected `rejected` (say, with HTTP 401), so that it is not
  /// handed out again. Returns whether a cached token was dropped. The default keeps no cache.
  virtual bool invalidate(std::string_view provider_id, std::string_view scope, const IssuedToken& rejected) {
    (void)provider_id, (void)scope, (void)rejected;
    return false;
  }

  /// The executor handlers without one of their own complete on.
  virtual executor_type get_executor() const noexcept = 0;

 protected:
  /// Starts `token_for`: completes `completion` (once, from any thread; never inside this
  /// call) with the token or an error, writing what is known of an error to
  /// `completion->diagnostics()` first. Honours the completion's cancellation slot if it can.
  virtual void start_token_for(std::string_view provider_id, std::string_view scope,
                               std::unique_ptr<Completion<std::error_code, IssuedToken>> completion) = 0;

  /// A token that can be handed out at once, without waiting, or nothing. Must not block or
  /// throw. The default has none.
  virtual std::optional<IssuedToken> try_hit(std::string_view provider_id, std::string_view scope) noexcept {
    (void)provider_id, (void)scope;
    return std::nullopt;
  }

 private:
  template <class CompletionToken>
  auto initiate(std::optional<IssuedToken> hit, std::string provider, std::string scope_copy, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(std::error_code, IssuedToken)>(
        [this](auto handler, std::optional<IssuedToken> hit, const std::string& provider, const std::string& scope) {
          if (hit) {
            const auto ex = asio::get_associated_executor(handler, get_executor());
            asio::post(ex, [h = std::move(handler), t = std::move(*hit)]() mutable {
              std::move(h)(std::error_code{}, std::move(t));
            });
            return;
          }
          start_token_for(provider, scope,
                          make_completion<std::error_code, IssuedToken>(std::move(handler), get_executor()));
        },
        token, std::move(hit), std::move(provider), std::move(scope_copy));
  }

  static asio::awaitable<IssuedToken> ready(IssuedToken t) { co_return t; }

  static asio::awaitable<IssuedToken> awaited(CredentialBroker* self, std::string provider, std::string scope) {
    Diagnostics diagnostics;
    auto [ec, t] =
        co_await self->initiate(std::nullopt, std::move(provider), std::move(scope),
                                bind_diagnostics(diagnostics, asio::experimental::as_tuple(asio::use_awaitable)));
    if (ec) throw to_error(ec, diagnostics);
    co_return t;
  }
};

}  // namespace awaken
