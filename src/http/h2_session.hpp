// gRPC calls over one HTTP/2 connection, without I/O: bytes from the peer in, events and bytes
// for the peer out (nghttp2's session in memory mode). Many calls share the connection; each
// call's messages are cut by the gRPC framer and bounded before they are buffered; flow control
// follows the consumer (window credit is returned only for what it has taken); cancelling a call
// sends RST_STREAM(CANCEL); GOAWAY is reported with the last stream the peer will process.
//
// The core of GrpcChannel's transport: unit tests drive it without sockets, and the Asio driver
// (grpc_transport.cpp) only moves bytes between it and a socket.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <awaken/http/http_client.hpp>

#include "http/grpc_framing.hpp"

struct nghttp2_session;

namespace awaken::http::detail {

/// What happened on the connection, for the driver to act on.
struct H2Event {
  enum class Kind {
    message,   ///< a whole gRPC message of `stream`, in `message`
    finished,  ///< `stream` ended: `status` (code empty for OK)
    goaway,    ///< the peer is going away; streams above `last_stream` were not processed
  };
  Kind kind = Kind::message;
  std::int32_t stream = 0;
  std::string message;
  GrpcFinalStatus status;
  std::size_t wire_bytes = 0;  ///< the message's bytes on the wire, framing included
  std::int32_t last_stream = 0;
  std::uint32_t h2_error = 0;  ///< the HTTP/2 error code of a reset or GOAWAY
};

/// One gRPC call's request head.
struct H2Call {
  std::string authority;
  std::string path;              ///< "/Service/Method"
  std::vector<Header> metadata;  ///< extra headers, lowercase names
  std::optional<std::chrono::milliseconds> timeout;
};

/// When to PING a connection with open calls and when to give up on a silent peer. Events in
/// (the timer fired, bytes arrived), what to do out; the driver owns the one timer.
class KeepalivePolicy {
 public:
  enum class Act {
    ping,    ///< send a PING, then wait `wait` for any answer
    wait,    ///< the peer answered: wait `wait` before the next PING
    give_up  ///< nothing came back within the timeout: the connection is dead
  };
  struct Step {
    Act act;
    std::chrono::milliseconds wait{0};
  };
  /// `interval` unset: every 30 s over TCP, never on a unix socket; zero: never.
  KeepalivePolicy(std::optional<std::chrono::milliseconds> interval, std::chrono::milliseconds timeout, bool tcp)
      : interval_(interval.value_or(tcp ? std::chrono::milliseconds{30'000} : std::chrono::milliseconds{0})),
        timeout_(timeout) {}

  bool enabled() const noexcept { return interval_.count() > 0; }
  std::chrono::milliseconds interval() const noexcept { return interval_; }
  std::chrono::milliseconds timeout() const noexcept { return timeout_; }
  /// Bytes came from the peer.
  void heard() noexcept { heard_ = true; }
  /// No call is open any more: the next round starts afresh.
  void reset() noexcept { ping_out_ = false; }
  /// The wait ended.
  Step on_timer() noexcept {
    if (!ping_out_) {
      heard_ = false;
      ping_out_ = true;
      return {Act::ping, timeout_};
    }
    ping_out_ = false;
    return heard_ ? Step{Act::wait, interval_} : Step{Act::give_up};
  }

 private:
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds timeout_;
  bool ping_out_ = false;
  bool heard_ = false;
};

/// The client side of one HTTP/2 connection carrying gRPC calls.
///
/// Thread safety: none; one driver owns it.
class H2GrpcSession {
 public:
  struct Options {
    std::size_t max_message_bytes = 4u << 20;
    std::uint32_t initial_window = 1u << 20;  ///< per stream; the connection gets 4 times it
  };
  explicit H2GrpcSession(Options options);
  ~H2GrpcSession();
  H2GrpcSession(const H2GrpcSession&) = delete;
  H2GrpcSession& operator=(const H2GrpcSession&) = delete;

  /// Starts a call whose request is `message` (framed here); returns its stream id.
  std::int32_t start(const H2Call& call, std::string_view message);
  /// Bytes from the peer. Appends what they caused to `events`; a connection error (the peer
  /// broke HTTP/2) is returned, after which the session is dead.
  std::error_code receive(std::string_view bytes, std::vector<H2Event>& events);
  /// Bytes to send to the peer now (preface, settings, requests, window updates, resets);
  /// empty when there is nothing. Sending may end calls (a reset stream closes once its
  /// RST_STREAM is out): `take_events` collects what that raised.
  std::string take_output();
  /// Appends the events raised outside `receive` (by `take_output`, `cancel` or `fail_all`).
  void take_events(std::vector<H2Event>& events);
  /// The connection is gone (`why` says how, for the calls' status messages): every open call
  /// finishes with `unavailable`, and the session is dead.
  void fail_all(const std::string& why);
  /// How the peer's GOAWAY reads in a status ("peer closed the connection (GOAWAY, no error)"),
  /// or empty when none came.
  std::string goaway_text() const;
  /// The consumer took a message of `stream`. While any message of a call waits to be taken,
  /// the peer gets no stream window credit for that call: a slow consumer slows its sender (the
  /// connection's credit is returned at once, so the other calls go on).
  void taken(std::int32_t stream);
  /// Cancels `stream` (RST_STREAM CANCEL); its `finished` event follows with `cancelled`.
  void cancel(std::int32_t stream);
  /// A PING, to find a silently dead peer.
  void ping();
  /// Whether the session can still carry calls (no GOAWAY, no connection error).
  bool usable() const noexcept;
  /// Whether the connection is broken: the peer broke HTTP/2 (nghttp2 may have queued its
  /// GOAWAY, to be sent by `take_output`, and then wants no more input) or the session failed.
  bool broken() const noexcept;
  std::size_t open_calls() const noexcept { return calls_.size(); }

 private:
  struct Call {
    explicit Call(std::size_t max) : parser(max) {}
    GrpcFrameParser parser;
    int http_status = 0;
    std::vector<Header> headers;
    std::vector<Header> trailers;
    std::string request;  // framed, sent as DATA
    std::size_t sent = 0;
    std::error_code failed;    // a framing violation: the call ends with it
    std::size_t untaken = 0;   // messages emitted and not yet taken
    std::size_t withheld = 0;  // DATA bytes not yet credited
  };
  friend struct H2Callbacks;
  void finish(std::int32_t stream, std::uint32_t h2_error);

  Options options_;
  nghttp2_session* session_ = nullptr;
  std::map<std::int32_t, Call> calls_;
  std::vector<H2Event>* events_ = nullptr;  // during receive()
  std::vector<H2Event> later_;              // events raised outside receive()
  bool goaway_ = false;
  std::uint32_t goaway_error_ = 0;
  bool connection_error_ = false;  // nghttp2 found the peer breaking HTTP/2
  bool dead_ = false;
};

}  // namespace awaken::http::detail
