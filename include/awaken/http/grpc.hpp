// gRPC over HTTP/2 with prior knowledge: unary calls and server streams, on a unix socket or TCP.
// Messages are opaque bytes; encoding them (protobuf) is the caller's business.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/use_awaitable.hpp>

#include <awaken/completion.hpp>
#include <awaken/detail/spawn_operation.hpp>
#include <awaken/diagnostics.hpp>
#include <awaken/http/http_client.hpp>

namespace awaken::http {

/// Where a gRPC server listens.
struct GrpcTarget {
  /// A unix domain socket at `path`.
  static GrpcTarget unix_socket(std::string path);
  /// TCP to `host` (a name, an IPv4 address or a bracketed IPv6 address) and `port`. The
  /// connection is cleartext HTTP/2: meant for loopback and for agents on the same host, never
  /// for metadata that carries secrets across a network. Throws `awaken::Error`
  /// (`invalid_argument`) for a host with characters outside those forms.
  static GrpcTarget tcp(std::string host, std::uint16_t port);

  std::string unix_path;  ///< empty for TCP
  std::string authority;  ///< "host:port", or "localhost" for a unix socket
};

/// Per-channel settings.
struct GrpcChannelOptions {
  std::size_t max_message_bytes = 4u << 20;  ///< larger messages end the call: http_errc::message_too_large
  std::vector<Header> metadata;              ///< sent with every call
};

/// Per-call settings.
struct GrpcCallOptions {
  /// Time allowed for the whole call (sent as `grpc-timeout`); none when unset. Streams that
  /// live long should have none.
  std::optional<std::chrono::milliseconds> deadline;
  std::vector<Header> metadata;  ///< added to the channel's metadata
};

namespace detail {
class GrpcCall;
void start_grpc_read(const std::shared_ptr<GrpcCall>& call,
                     std::unique_ptr<awaken::Completion<std::error_code, std::optional<std::string>>> completion);
}  // namespace detail

/// A server-streaming call in progress. Move-only; destroying it (or `cancel()`) resets the
/// stream. A moved-from stream may only be assigned to or destroyed. When the client that
/// carries the call is destroyed, the call ends with `cancelled` after the messages already
/// received.
///
/// Thread safety: one read at a time; `cancel` may be called from any thread.
class GrpcStream {
 public:
  GrpcStream(GrpcStream&&) noexcept;
  GrpcStream& operator=(GrpcStream&&) noexcept;
  ~GrpcStream();

  /// Reads the next message (any completion token; the diagnostics carry `grpc-message`):
  /// completes with `void(std::error_code, std::optional<std::string>)`:
  /// a message; or no message and no error at the end of a call that ended OK; or an error:
  /// a `grpc_status` code (the server's status, `unavailable` for transport failures,
  /// `http_errc::message_too_large` for an oversized message, `internal` for framing faults or a missing
  /// status) or `operation_aborted`. Messages received before an error are all delivered first.
  ///
  /// Per-operation cancellation: terminal cancellation resets the whole stream (later reads
  /// report `operation_aborted`); partial and total cancellation end only this read, with
  /// `operation_aborted`, and the stream goes on: nothing is consumed while a read waits.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto read(CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, void(std::error_code, std::optional<std::string>)>(
        [call = call_, ex = executor_](auto handler) {
          detail::start_grpc_read(
              call, awaken::make_completion<std::error_code, std::optional<std::string>>(std::move(handler), ex));
        },
        token);
  }

  /// Resets the stream; a pending read completes with `operation_aborted`.
  void cancel() noexcept;

  /// The decoded `grpc-message` of the ended call; valid once a read has reported the end.
  std::string status_message() const;

  /// The executor that reads complete on when the handler has none of its own.
  const asio::any_io_executor& get_executor() const noexcept { return executor_; }

 private:
  friend class GrpcChannel;
  GrpcStream(std::shared_ptr<detail::GrpcCall> call, asio::any_io_executor executor) noexcept;

  std::shared_ptr<detail::GrpcCall> call_;
  asio::any_io_executor executor_;
};

/// A gRPC channel: a target, options and the `HttpClient` whose transport carries the calls.
/// Calls use a fresh HTTP/2 connection each while the runtime libcurl is older than 8.0, which
/// cannot reuse prior-knowledge connections.
///
/// Thread safety: a channel may be used from any number of threads at once.
class GrpcChannel {
 public:
  GrpcChannel(HttpClient client, GrpcTarget target, GrpcChannelOptions options = {});

  /// Calls `method_path` ("/package.Service/Method") with one request and one response message.
  /// Completes with `void(std::error_code, std::string)`: a `grpc_status` code (the
  /// diagnostics carry `grpc-message`), or `operation_aborted` when cancelled.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto unary(std::string method_path, std::string request, GrpcCallOptions options,
             CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<std::string>(
        client_.get_executor(),
        [channel = *this, p = std::move(method_path), r = std::move(request), o = std::move(options)]() mutable {
          return run_unary(std::move(channel), std::move(p), std::move(r), std::move(o));
        },
        std::forward<CompletionToken>(token));
  }
  /// As above, with default call options.
  template <class CompletionToken = awaken::use_awaitable_t>
  requires(!std::is_convertible_v<CompletionToken, GrpcCallOptions>) auto unary(std::string method_path,
                                                                                std::string request,
                                                                                CompletionToken&& token = {}) const {
    return unary(std::move(method_path), std::move(request), GrpcCallOptions{}, std::forward<CompletionToken>(token));
  }

  /// Starts a server-streaming call and returns at once; reads wait for the server.
  GrpcStream server_stream(std::string method_path, std::string request, GrpcCallOptions options = {}) const;

  const GrpcTarget& target() const noexcept { return target_; }
  /// The executor of the channel's HTTP transport.
  asio::any_io_executor get_executor() const noexcept { return client_.get_executor(); }

 private:
  static asio::awaitable<std::string> run_unary(GrpcChannel channel, std::string method_path, std::string request,
                                                GrpcCallOptions options);

  HttpClient client_;
  GrpcTarget target_;
  GrpcChannelOptions options_;
};

}  // namespace awaken::http
