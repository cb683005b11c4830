// An asynchronous HTTP client: libcurl's multi interface driven by an Asio executor.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/use_awaitable.hpp>

#include <awaken/completion.hpp>
#include <awaken/redacted_string.hpp>

namespace awaken::http {

/// One header field. Response names are lower-cased; values are kept as sent, without the
/// surrounding whitespace.
struct Header {
  std::string name;
  std::string value;
};

/// Which HTTP version to speak.
enum class HttpVersion {
  automatic,             ///< HTTP/2 over TLS when the server offers it, else HTTP/1.1
  http1_1,               ///< HTTP/1.1 only
  http2_prior_knowledge  ///< HTTP/2 without upgrade, as gRPC needs on cleartext and unix sockets
};

/// A request. Header names and values must not contain CR, LF or NUL.
struct HttpRequest {
  std::string method = "GET";
  std::string url;  ///< http:// or https:// only
  std::vector<Header> headers;
  std::string body;  ///< sent when non-empty or when the method is POST, PUT or PATCH
  /// Total time allowed for this request; the client's default when unset.
  std::optional<std::chrono::milliseconds> timeout;
  /// Connect to this unix socket instead of the URL's host (the URL still names the authority).
  std::string unix_socket_path;
  HttpVersion version = HttpVersion::automatic;
  /// Mutual TLS: the client certificate chain (PEM, leaf first) and its private key (PEM) to
  /// present to an https server; both or neither. Connections are reused only by requests that
  /// present the same certificate. The key is wiped with the request's transfer.
  std::string client_certificate_pem;
  RedactedString client_key_pem;
};

/// A response. Any HTTP status is a response, not an error: callers decide what 4xx/5xx mean.
struct HttpResponse {
  int status = 0;
  std::vector<Header> headers;   ///< the final header block
  std::vector<Header> trailers;  ///< fields after the body (HTTP/2 trailers, chunked trailers)
  std::string body;

  /// The first header named `name` (case-insensitive), or nullopt.
  std::optional<std::string_view> header(std::string_view name) const noexcept;
};

/// Client-wide settings.
struct HttpClientOptions {
  std::chrono::milliseconds timeout{15'000};         ///< default total time per request
  std::chrono::milliseconds connect_timeout{5'000};  ///< time to connect, TLS included
  std::size_t max_response_bytes = 4u << 20;         ///< larger bodies fail with response_too_large
  std::size_t max_header_bytes = 64u << 10;          ///< larger header blocks fail likewise
  /// Trusted CAs for HTTPS: a PEM file, PEM text in memory, or (both empty) the system store.
  /// When either is given, it replaces the system store. Peer and host name verification are
  /// always on.
  std::string ca_file;
  std::string ca_pem;
  std::string user_agent = "awaken/0.1";
  /// Proxy URL for every request; empty means none. Proxy environment variables
  /// (`http_proxy`, `https_proxy`, ...) are never consulted.
  std::string proxy;
};

namespace detail {
class ClientState;
}

/// An HTTP client. Copies share one connection pool and one libcurl multi handle, which runs
/// on a strand of the executor given at construction.
///
/// Thread safety: a client and its copies may be used from any number of threads at once.
///
/// Lifetime: in-flight requests keep the transport alive; when the last copy of the client is
/// destroyed, requests still pending complete with `awaken::errc::shut_down`.
///
/// Per-operation cancellation: `send` honours terminal and partial cancellation by
/// abandoning the request and completing with `asio::error::operation_aborted`; the client stays
/// usable, but the server may already have received the request, so total cancellation (no side
/// effects) is not offered.
///
/// A moved-from client may only be assigned to or destroyed. As with any Asio I/O object, a
/// client must not outlive the execution context of its executor.
class HttpClient {
 public:
  using executor_type = asio::any_io_executor;

  explicit HttpClient(executor_type executor, HttpClientOptions options = {});
  HttpClient(const HttpClient&) = default;
  HttpClient(HttpClient&&) noexcept = default;
  HttpClient& operator=(const HttpClient&) = default;
  HttpClient& operator=(HttpClient&&) noexcept = default;
  ~HttpClient();

  executor_type get_executor() const noexcept;
  const HttpClientOptions& options() const noexcept;

  /// Sends `request`; completes with `void(std::error_code, HttpResponse)` on the handler's
  /// associated executor. Errors are `http_errc` codes (or `operation_aborted`); the
  /// diagnostics name the method and origin of the request, never its path, query or user
  /// info. Any completion token: `co_await client.send(request)` throws `awaken::Error`. The
  /// request's body and header values are wiped once the transfer has its own copies.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto send(HttpRequest request, CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, void(std::error_code, HttpResponse)>(
        [state = state_, ex = executor_](auto handler, HttpRequest req) {
          start_send(state, std::move(req),
                     awaken::make_completion<std::error_code, HttpResponse>(std::move(handler), ex));
        },
        token, std::move(request));
  }

  const std::shared_ptr<detail::ClientState>& state() const noexcept { return state_; }

 private:
  static void start_send(const std::shared_ptr<detail::ClientState>& state, HttpRequest request,
                         std::unique_ptr<awaken::Completion<std::error_code, HttpResponse>> completion);

  executor_type executor_;
  std::shared_ptr<detail::ClientState> state_;
};

}  // namespace awaken::http
