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
  std::vector<Header> metadata;              ///< sent with every call (lowercase names)
  /// How error texts name the server ("no Workload API socket at /run/agent.sock (...)").
  std::string server_name = "gRPC server";
  /// Time to open the connection; calls waiting for it fail with `unavailable` after it.
  std::chrono::milliseconds connect_timeout{5'000};
  /// HTTP/2 PING interval while calls are open, to find a server that vanished without closing
  /// the connection (a host gone, a cable cut): with no answer within `keepalive_timeout`, the
  /// connection's calls fail with `unavailable`. Unset: every 30 s over TCP, never on a unix
  /// socket (the kernel reports a dead peer there); zero: never.
  std::optional<std::chrono::milliseconds> keepalive_interval;
  std::chrono::milliseconds keepalive_timeout{10'000};
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
class ChannelCore;
void start_grpc_read(const std::shared_ptr<GrpcCall>& call,
                     std::unique_ptr<awaken::Completion<std::error_code, std::optional<std::string>>> completion);
}  // namespace detail

/// A server-streaming call in progress. Move-only; destroying it (or `cancel()`) resets the
/// stream. A moved-from stream may only be assigned to or destroyed. The call keeps its
/// connection open, even when every copy of the channel is gone.
///
/// Thread safety: one read at a time; `cancel` may be called from any thread.
class GrpcStream {
 public:
  GrpcStream(GrpcStream&&) noexcept;
  GrpcStream& operator=(GrpcStream&&) noexcept;
  ~GrpcStream();

  /// Reads the next message (any completion token; the diagnostics carry `grpc-message`, or
  /// awaken's own reason for a transport failure): completes with
  /// `void(std::error_code, std::optional<std::string>)`: a message; or no message and no error
  /// at the end of a call that ended OK; or an error: a `grpc_status` code (the server's
  /// status; `unavailable` for transport failures, a GOAWAY that left the call out included;
  /// `deadline_exceeded` past the call's deadline; `internal` for framing faults or a missing
  /// status), `http_errc::message_too_large` for an oversized message, or `operation_aborted`.
  /// Messages received before an error are all delivered first. While a message waits to be
  /// read, the server gets no flow-control credit for the call: a slow reader slows the
  /// sender and nothing piles up.
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

  /// `read` with an erased completion (for operations that stand in front of a read).
  void start_read(std::unique_ptr<awaken::Completion<std::error_code, std::optional<std::string>>> completion) {
    detail::start_grpc_read(call_, std::move(completion));
  }

  /// Resets the stream (RST_STREAM CANCEL); a pending read completes with `operation_aborted`.
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

/// A gRPC channel: a target and options. Copies share one HTTP/2 connection (nghttp2), opened
/// on first use and carrying every call at once. A connection that fails fails its calls with
/// `unavailable` (the caller's retry or the sources' backoff decides when to try again); the
/// next call opens a new one. After a GOAWAY, the calls the server kept go on, the others fail
/// with `unavailable`, and new calls open a new connection. The transport is event-driven: an
/// open stream without traffic costs no CPU, and an idle connection holds no pending operation
/// (`io_context::run` returns when nothing else is pending).
///
/// Thread safety: a channel may be used from any number of threads at once. As with any Asio
/// I/O object, it must not outlive the execution context of its executor.
class GrpcChannel {
 public:
  GrpcChannel(asio::any_io_executor executor, GrpcTarget target, GrpcChannelOptions options = {});

  /// Calls `method_path` ("/package.Service/Method") with one request and one response message.
  /// Completes with `void(std::error_code, std::string)`: a `grpc_status` code (the
  /// diagnostics carry `grpc-message`), or `operation_aborted` when cancelled.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto unary(std::string method_path, std::string request, GrpcCallOptions options,
             CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<std::string>(
        executor_,
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

  const GrpcTarget& target() const noexcept;
  /// The executor that calls complete on when their handlers have none of their own.
  asio::any_io_executor get_executor() const noexcept { return executor_; }

 private:
  static asio::awaitable<std::string> run_unary(GrpcChannel channel, std::string method_path, std::string request,
                                                GrpcCallOptions options);

  asio::any_io_executor executor_;
  std::shared_ptr<detail::ChannelCore> core_;
};

}  // namespace awaken::http
