// The SPIFFE Workload API client: the endpoint, JWT-SVIDs, JWT bundles (one-shot and as a
// stream), the agent's own validation, X.509 contexts and bundles (one-shot and as streams), and
// (experimental) WIT-SVIDs and WIT bundles. gRPC over HTTP/2, on a unix socket or loopback TCP.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include <awaken/detail/spawn_operation.hpp>
#include <awaken/diagnostics.hpp>
#include <awaken/http/grpc.hpp>
#include <awaken/http/http_client.hpp>
#include <awaken/spiffe/bundle.hpp>
#include <awaken/spiffe/experimental/wit_svid.hpp>
#include <awaken/spiffe/jwt_svid.hpp>
#include <awaken/spiffe/spiffe_id.hpp>
#include <awaken/spiffe/x509_bundle.hpp>
#include <awaken/spiffe/x509_svid.hpp>

namespace awaken::spiffe {

/// Where the Workload API listens: `unix:///absolute/path` or `tcp://IP:port`, and nothing
/// else (no authority for unix, no host name, path, user info, query, fragment or
/// percent-encoding; no `unix:/path` or `tcp:IP:port` shorthands).
///
/// Thread safety: an immutable value.
class WorkloadEndpoint {
 public:
  /// Throws `Error{spiffe_errc::invalid_endpoint}` whose text names the broken rule.
  static WorkloadEndpoint parse(std::string_view uri);
  /// From `SPIFFE_ENDPOINT_SOCKET`; `endpoint_not_configured` when it is unset or empty.
  /// POSIX `getenv` is not safe against a `setenv` on another thread: awaken calls this only
  /// on threads that call into it (`JwtSourceBuilder::build`), never on its own.
  static WorkloadEndpoint from_environment();

  const std::string& uri() const noexcept { return uri_; }
  bool is_unix() const noexcept { return !unix_path_.empty(); }
  const std::string& unix_path() const noexcept { return unix_path_; }
  /// The IP literal (IPv6 in brackets) for TCP.
  const std::string& host() const noexcept { return host_; }
  std::uint16_t port() const noexcept { return port_; }
  http::GrpcTarget grpc_target() const;

 private:
  std::string uri_, unix_path_, host_;
  std::uint16_t port_ = 0;
};

/// Bounds on what one bundle or X.509 message may hold.
struct ResourceLimits {
  /// Trust domains per message; over it: `resource_limit_exceeded`, before any bundle is parsed.
  std::size_t max_bundles = 200;
  /// JWKS bytes per trust domain; over it: `bundle_too_large`.
  std::size_t max_bundle_jwks_bytes = JwtBundle::default_max_bytes;
  /// X.509-SVIDs per message; over it: `too_many_svids`.
  std::size_t max_svids = 100;
  /// DER bytes of one trust domain's X.509 authorities; over it: `bundle_too_large`.
  std::size_t max_bundle_der_bytes = X509Bundle::default_max_bytes;

  /// No bound at all (the message size bound of the client still holds).
  static constexpr ResourceLimits unlimited() noexcept { return {SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX}; }
};

/// What a `FetchX509SVID` message carries: this workload's X.509-SVIDs (at least one, in the
/// agent's order; the first is the default) and the X.509 bundles of its own trust domain and
/// of every federated one.
struct X509Context {
  std::vector<X509Svid> svids;
  X509BundleSet bundles;

  /// The SVID whose hint is `hint`, or null.
  const X509Svid* svid_by_hint(std::string_view hint) const noexcept;
  /// The first SVID of `id`, or null.
  const X509Svid* svid_by_id(const SpiffeId& id) const noexcept;

  friend bool operator==(const X509Context&, const X509Context&) noexcept = default;
};

/// Settings of a `WorkloadApiClient`.
struct WorkloadApiOptions {
  /// The largest Workload API message accepted (a bundle message carries every trust domain's
  /// JWKS).
  std::size_t max_message_bytes = 16u << 20;
  /// Bounds on bundle messages.
  ResourceLimits bundle_limits;
  /// Deadline of unary calls (`fetch_jwt_svid`, `validate_jwt_svid`).
  std::chrono::milliseconds call_timeout{std::chrono::seconds{30}};
  /// HTTP/2 PING keepalive of the connection while streams are open (see
  /// `http::GrpcChannelOptions`): unset pings every 30 s over TCP and never on a unix socket;
  /// zero turns it off.
  std::optional<std::chrono::milliseconds> keepalive_interval;
  std::chrono::milliseconds keepalive_timeout{std::chrono::seconds{10}};
};

/// The agent's verdict on a token: the SPIFFE ID and the claims it returned.
struct AgentValidation {
  SpiffeId spiffe_id;
  nlohmann::json claims;
};

/// Whether a failure is the agent's "no identity issued" (`permission_denied` with that text).
bool is_no_identity_issued(std::error_code ec, const Diagnostics& diagnostics) noexcept;
bool is_no_identity_issued(const Error& e) noexcept;

/// The Workload API's server streams, and what each message of one decodes to.
enum class StreamKind {
  /// `FetchJWTBundles`: a `JwtBundleSet`, complete, per message.
  jwt_bundles,
  /// `FetchX509SVID`: an `X509Context` per message. A message without SVIDs is `empty_response`;
  /// an SVID or bundle that breaks the X509-SVID standard fails with that rule's `spiffe_errc`.
  /// The decoded message, private keys included, is wiped once parsed (the HTTP/2 transport's
  /// own buffers are not).
  x509_context,
  /// `FetchX509Bundles`: an `X509BundleSet`, complete, per message.
  x509_bundles,
  /// Experimental, as `experimental::WitSvid` is. `FetchWITSVID`: every WIT-SVID, in the agent's
  /// order (the first is the default; of SVIDs sharing a non-empty hint, the first), each with
  /// its private key. A message without SVIDs is `empty_response`; a token that breaks the
  /// WIT-SVID standard, a key that is not a private JWK of its `cnf.jwk`, or an SVID of another
  /// SPIFFE ID than its entry's is `malformed_message` (or the rule's own `spiffe_errc`). The
  /// decoded message is wiped once parsed.
  wit_svids,
  /// Experimental. `FetchWITBundles`: a `JwtBundleSet` per message, each trust domain's keys
  /// those of `use` `wit-svid` (`experimental::parse_wit_bundle`).
  wit_bundles,
};

namespace detail {
template <StreamKind Kind>
struct stream_value;
template <>
struct stream_value<StreamKind::jwt_bundles> {
  using type = JwtBundleSet;
};
template <>
struct stream_value<StreamKind::x509_context> {
  using type = X509Context;
};
template <>
struct stream_value<StreamKind::x509_bundles> {
  using type = X509BundleSet;
};
template <>
struct stream_value<StreamKind::wit_svids> {
  using type = std::vector<experimental::WitSvid>;
};
template <>
struct stream_value<StreamKind::wit_bundles> {
  using type = JwtBundleSet;
};
}  // namespace detail

/// One Workload API server stream (see `StreamKind`), opened by a `WorkloadApiClient::watch_*`
/// call. The WIT profile is optional: an agent without it answers `Unimplemented` (some answer
/// `FailedPrecondition`), which the WIT streams fail with as `spiffe_errc::not_offered`; a source
/// gives up on it and does not retry.
///
/// Thread safety: one `next` at a time; `cancel` from any thread.
template <StreamKind Kind>
class WorkloadStream {
 public:
  using value_type = typename detail::stream_value<Kind>::type;

  /// The next message, decoded; nullopt when the server ended the stream cleanly. Completes
  /// with `void(std::error_code, std::optional<value_type>)`: a `grpc_status` for a failed call
  /// (transport failures are `unavailable`; the diagnostics carry `grpc-message`); for a message
  /// that cannot be used, `malformed_message`, `empty_response`, `resource_limit_exceeded` or a
  /// rule's own `spiffe_errc` (such as `bundle_too_large`), and then the stream goes on: read
  /// again. The stream must outlive the operation.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto next(CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, void(std::error_code, std::optional<value_type>)>(
        [this](auto handler) {
          start_next(
              make_completion<std::error_code, std::optional<value_type>>(std::move(handler), stream_.get_executor()));
        },
        token);
  }
  /// Resets the stream; a pending `next` fails with `operation_aborted`.
  void cancel() noexcept { stream_.cancel(); }

 private:
  friend class WorkloadApiClient;
  WorkloadStream(http::GrpcStream stream, ResourceLimits limits) noexcept
      : stream_(std::move(stream)), limits_(limits) {}
  // Reads the next message and decodes it as it arrives: no coroutine, nothing thrown.
  void start_next(std::unique_ptr<Completion<std::error_code, std::optional<value_type>>> completion);
  http::GrpcStream stream_;
  ResourceLimits limits_;
};

// Compiled once, in the library.
extern template class WorkloadStream<StreamKind::jwt_bundles>;
extern template class WorkloadStream<StreamKind::x509_context>;
extern template class WorkloadStream<StreamKind::x509_bundles>;
extern template class WorkloadStream<StreamKind::wit_svids>;
extern template class WorkloadStream<StreamKind::wit_bundles>;

using JwtBundleStream = WorkloadStream<StreamKind::jwt_bundles>;
using X509ContextStream = WorkloadStream<StreamKind::x509_context>;
using X509BundleStream = WorkloadStream<StreamKind::x509_bundles>;
using WitSvidStream = WorkloadStream<StreamKind::wit_svids>;
using WitBundleStream = WorkloadStream<StreamKind::wit_bundles>;

/// A client of one Workload API endpoint. Every call carries `workload.spiffe.io: true`. Calls
/// fail with a `grpc_status` code, the server's `grpc-message` in the diagnostics'
/// `details.server_message` (compare with `awaken::condition::workload_transient`), or a `spiffe_errc` for a
/// response that breaks the Workload API's rules; `co_await` throws them as `awaken::Error`.
///
/// Thread safety: copies share one HTTP/2 connection to the agent (see `http::GrpcChannel`),
/// opened on first use and shared by every call and stream; any number of calls may run at
/// once, from any thread. Every call completes with `void(std::error_code, T)` for any completion token;
/// cancellation through the handler's slot reaches the call.
class WorkloadApiClient {
 public:
  WorkloadApiClient(asio::any_io_executor executor, WorkloadEndpoint endpoint, WorkloadApiOptions options = {});
  /// On `client`'s executor (the Workload API has its own HTTP/2 connection, not the client's).
  WorkloadApiClient(const http::HttpClient& client, WorkloadEndpoint endpoint, WorkloadApiOptions options = {});

  const WorkloadEndpoint& endpoint() const noexcept { return endpoint_; }

  /// The first JWT-SVID the agent returns for `audiences` (at least one), for `spiffe_id` when
  /// given: `void(std::error_code, JwtSvid)`. The token is parsed, not validated: it comes from
  /// this workload's own agent. `empty_response` when none comes back; `malformed_message`
  /// when one does not parse or names another SPIFFE ID than the token's `sub` (or than
  /// `spiffe_id`).
  template <class CompletionToken = awaken::use_awaitable_t>
  auto fetch_jwt_svid(std::vector<std::string> audiences, std::optional<SpiffeId> spiffe_id,
                      CompletionToken&& token = {}) const {
    return fetch<JwtSvid>(std::move(audiences), std::move(spiffe_id), std::forward<CompletionToken>(token));
  }
  template <class CompletionToken = awaken::use_awaitable_t>
  requires(!std::is_convertible_v<CompletionToken, std::optional<SpiffeId>>) auto fetch_jwt_svid(
      std::vector<std::string> audiences, CompletionToken&& token = {}) const {
    return fetch<JwtSvid>(std::move(audiences), std::nullopt, std::forward<CompletionToken>(token));
  }
  /// Every JWT-SVID returned, with its hint; of SVIDs sharing a non-empty hint, the first:
  /// `void(std::error_code, std::vector<JwtSvid>)`.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto fetch_jwt_svids(std::vector<std::string> audiences, std::optional<SpiffeId> spiffe_id,
                       CompletionToken&& token = {}) const {
    return fetch<std::vector<JwtSvid>>(std::move(audiences), std::move(spiffe_id),
                                       std::forward<CompletionToken>(token));
  }
  template <class CompletionToken = awaken::use_awaitable_t>
  requires(!std::is_convertible_v<CompletionToken, std::optional<SpiffeId>>) auto fetch_jwt_svids(
      std::vector<std::string> audiences, CompletionToken&& token = {}) const {
    return fetch<std::vector<JwtSvid>>(std::move(audiences), std::nullopt, std::forward<CompletionToken>(token));
  }
  /// The first message of a `FetchJWTBundles` stream: `void(std::error_code, JwtBundleSet)`.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto fetch_jwt_bundles(CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<JwtBundleSet>(
        executor(), [self = *this]() mutable { return run_fetch_jwt_bundles(std::move(self)); },
        std::forward<CompletionToken>(token));
  }
  /// Opens a `FetchJWTBundles` stream (reads wait for the server), with the options' limits or
  /// the given ones.
  JwtBundleStream watch_jwt_bundles() const { return watch_jwt_bundles(options_.bundle_limits); }
  JwtBundleStream watch_jwt_bundles(const ResourceLimits& limits) const;
  /// Asks the agent to validate `token` for `audience` (`ValidateJWTSVID`):
  /// `void(std::error_code, AgentValidation)`.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto validate_jwt_svid(std::string audience, std::string token, CompletionToken&& completion = {}) const {
    return awaken::detail::async_spawn<AgentValidation>(
        executor(),
        [self = *this, a = std::move(audience), t = std::move(token)]() mutable {
          return run_validate(std::move(self), std::move(a), std::move(t));
        },
        std::forward<CompletionToken>(completion));
  }

  /// The first message of a `FetchX509SVID` stream: `void(std::error_code, X509Context)`.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto fetch_x509_context(CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<X509Context>(
        executor(), [self = *this]() mutable { return run_fetch_x509_context(std::move(self)); },
        std::forward<CompletionToken>(token));
  }
  /// The default (first) X.509-SVID: `void(std::error_code, X509Svid)`.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto fetch_x509_svid(CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<X509Svid>(
        executor(), [self = *this]() mutable { return run_fetch_x509_svid(std::move(self)); },
        std::forward<CompletionToken>(token));
  }
  /// The first message of a `FetchX509Bundles` stream: `void(std::error_code, X509BundleSet)`.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto fetch_x509_bundles(CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<X509BundleSet>(
        executor(), [self = *this]() mutable { return run_fetch_x509_bundles(std::move(self)); },
        std::forward<CompletionToken>(token));
  }
  /// Opens a `FetchX509SVID` stream.
  X509ContextStream watch_x509_context() const { return watch_x509_context(options_.bundle_limits); }
  X509ContextStream watch_x509_context(const ResourceLimits& limits) const;
  /// Opens a `FetchX509Bundles` stream.
  X509BundleStream watch_x509_bundles() const { return watch_x509_bundles(options_.bundle_limits); }
  X509BundleStream watch_x509_bundles(const ResourceLimits& limits) const;

  /// Experimental: the first message of a `FetchWITSVID` stream, for `spiffe_id` when given
  /// (else every identity the workload has): `void(std::error_code,
  /// std::vector<experimental::WitSvid>)`, as `WitSvidStream::next`.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto fetch_wit_svids(std::optional<SpiffeId> spiffe_id = std::nullopt, CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<std::vector<experimental::WitSvid>>(
        executor(), [self = *this, id = std::move(spiffe_id)]() mutable { return run_fetch_wit(std::move(self), id); },
        std::forward<CompletionToken>(token));
  }
  /// Experimental: the first message of a `FetchWITBundles` stream: `void(std::error_code,
  /// JwtBundleSet)`.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto fetch_wit_bundles(CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<JwtBundleSet>(
        executor(), [self = *this]() mutable { return run_fetch_wit_bundles(std::move(self)); },
        std::forward<CompletionToken>(token));
  }
  /// Experimental: opens a `FetchWITSVID` stream (for `spiffe_id` when given).
  WitSvidStream watch_wit_svids(std::optional<SpiffeId> spiffe_id = std::nullopt) const {
    return watch_wit_svids(std::move(spiffe_id), options_.bundle_limits);
  }
  WitSvidStream watch_wit_svids(std::optional<SpiffeId> spiffe_id, const ResourceLimits& limits) const;
  /// Experimental: opens a `FetchWITBundles` stream.
  WitBundleStream watch_wit_bundles() const { return watch_wit_bundles(options_.bundle_limits); }
  WitBundleStream watch_wit_bundles(const ResourceLimits& limits) const;

  /// The executor that operations complete on when their handlers have none of their own.
  asio::any_io_executor executor() const noexcept;

 private:
  // FetchJWTSVID as an operation: the first SVID (`T` = JwtSvid) or all of them.
  template <class T, class CompletionToken>
  auto fetch(std::vector<std::string> audiences, std::optional<SpiffeId> id, CompletionToken&& token) const {
    return awaken::detail::async_spawn<T>(
        executor(),
        [self = *this, a = std::move(audiences), id = std::move(id)]() mutable {
          if constexpr (std::is_same_v<T, JwtSvid>)
            return run_fetch_one(std::move(self), std::move(a), std::move(id));
          else
            return run_fetch(std::move(self), std::move(a), std::move(id), true);
        },
        std::forward<CompletionToken>(token));
  }

  // The operations' coroutines take the client by value: it lives in their frames.
  static asio::awaitable<std::vector<JwtSvid>> run_fetch(WorkloadApiClient self, std::vector<std::string> audiences,
                                                         std::optional<SpiffeId> id, bool all);
  static asio::awaitable<JwtSvid> run_fetch_one(WorkloadApiClient self, std::vector<std::string> audiences,
                                                std::optional<SpiffeId> id);
  static asio::awaitable<JwtBundleSet> run_fetch_jwt_bundles(WorkloadApiClient self);
  static asio::awaitable<X509Context> run_fetch_x509_context(WorkloadApiClient self);
  static asio::awaitable<X509Svid> run_fetch_x509_svid(WorkloadApiClient self);
  static asio::awaitable<X509BundleSet> run_fetch_x509_bundles(WorkloadApiClient self);
  static asio::awaitable<std::vector<experimental::WitSvid>> run_fetch_wit(WorkloadApiClient self,
                                                                           std::optional<SpiffeId> id);
  static asio::awaitable<JwtBundleSet> run_fetch_wit_bundles(WorkloadApiClient self);
  static asio::awaitable<AgentValidation> run_validate(WorkloadApiClient self, std::string audience, std::string token);
  WorkloadEndpoint endpoint_;
  WorkloadApiOptions options_;
  http::GrpcChannel channel_;
};

}  // namespace awaken::spiffe
