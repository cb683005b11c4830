// The Asio side of GrpcChannel: one HTTP/2 connection per channel (shared by its copies), on a
// unix socket or TCP, carrying every call; the decisions are H2GrpcSession's (h2_session.hpp),
// this part only moves bytes, keeps the calls' queues and timers, and opens a new connection
// when the last one failed or was told to go away.
//
// Everything here runs on the channel's strand, except where a comment says otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>

#include <awaken/completion.hpp>
#include <awaken/http/grpc.hpp>

#include "http/h2_lifecycle.hpp"
#include "http/h2_session.hpp"

namespace awaken::http::detail {

class H2Connection;
class GrpcCall;
using ReadCompletion = awaken::Completion<std::error_code, std::optional<std::string>>;
using Strand = asio::strand<asio::any_io_executor>;

/// The calls started on one execution context. When the context shuts down, their waiting
/// readers (a coroutine waiting in `read()` owns the stream that owns the call) and their
/// connections are dropped: otherwise such a cycle would outlive the context.
struct CallRegistry {
  std::mutex mutex;
  std::list<GrpcCall*> calls;
  bool shut_down = false;
  /// The registry of `executor`'s execution context.
  static std::shared_ptr<CallRegistry> of(const asio::any_io_executor& executor);
};

/// One call: its request, the messages received and not yet read, its reader and its end.
class GrpcCall : public std::enable_shared_from_this<GrpcCall> {
 public:
  GrpcCall(Strand strand, H2Call head, std::string request);
  ~GrpcCall();
  GrpcCall(const GrpcCall&) = delete;
  GrpcCall& operator=(const GrpcCall&) = delete;

  const Strand& strand() const noexcept { return strand_; }
  const std::string& path() const noexcept { return head_.path; }
  const H2Call& head() const noexcept { return head_; }
  const std::string& request() const noexcept { return request_; }
  void release_request() noexcept;

  /// Any thread: the decoded `grpc-message` (or awaken's own reason) of the ended call.
  std::string status_message() const;
  /// Before the call is shared: ends it at once (a request refused locally).
  void fail_now(std::error_code ec, std::string message);

  /// Returns the reader's ticket (for detach_reader), 0 when a read was already waiting.
  std::uint64_t add_reader(std::unique_ptr<ReadCompletion> reader);
  /// A read cancelled without ending the call.
  void detach_reader(std::uint64_t ticket);
  /// Ends the call now with `ec` (resetting its stream when it is under way).
  void abandon(std::error_code ec, std::string message);
  /// Starts the deadline, if the call has one.
  void arm_deadline();
  /// Any thread: joins `registry` until the call is destroyed.
  void enrol(std::shared_ptr<CallRegistry> registry);
  /// The execution context is shutting down: drops the reader, unrun, and the connection.
  void drop_for_shutdown() noexcept;

  // From the connection.
  void on_queued(std::shared_ptr<H2Connection> connection) { connection_ = std::move(connection); }
  void on_started(std::int32_t stream) noexcept { stream_ = stream; }
  void on_message(std::string message);
  void on_finished(const GrpcFinalStatus& status);
  std::int32_t stream() const noexcept { return stream_; }

 private:
  void end(std::error_code ec, std::string message);
  void deliver();

  Strand strand_;
  H2Call head_;
  std::string request_;
  std::shared_ptr<H2Connection> connection_;  // set once queued on one
  std::int32_t stream_ = 0;                   // 0 until the session started it
  std::deque<std::string> messages_;
  std::unique_ptr<ReadCompletion> reader_;
  std::uint64_t reader_ticket_ = 0;
  std::unique_ptr<asio::steady_timer> deadline_;
  bool ended_ = false;
  std::error_code final_;
  mutable std::mutex message_mutex_;
  std::string status_message_;
  std::shared_ptr<CallRegistry> registry_;
  std::list<GrpcCall*>::iterator entry_;
};

/// One connection and its HTTP/2 session. It reads only while calls are open: an idle
/// connection has no operation pending (no CPU, and `io_context::run` may return), and is
/// probed for a close or a GOAWAY when a call wants it again.
class H2Connection : public std::enable_shared_from_this<H2Connection> {
 public:
  H2Connection(Strand strand, const GrpcTarget& target, const GrpcChannelOptions& options);
  H2Connection(const H2Connection&) = delete;
  H2Connection& operator=(const H2Connection&) = delete;

  /// Opens the socket (once, right after construction).
  void open();
  /// Queues `call` until connected, or starts it now.
  void submit(const std::shared_ptr<GrpcCall>& call);
  /// Forgets `call` (abandoned by its owner): resets its stream or drops it from the queue.
  void drop(const GrpcCall& call);
  /// The reader took a message of `stream`: the peer may send more.
  void taken(std::int32_t stream);
  /// An idle open connection reads what its socket holds (a close, a GOAWAY), failing if it
  /// is gone: call before `accepting`.
  void probe();
  /// Whether new calls may use this connection.
  bool accepting() const;
  /// No new calls will come: the connection closes once its calls have ended.
  void detach();

 private:
  using State = H2Lifecycle::State;

  void connect_next(std::size_t i);
  void on_connected(std::error_code ec);
  void start_call(const std::shared_ptr<GrpcCall>& call);
  void start_read();
  void on_read(std::error_code ec, std::size_t n);
  // Feeds `n` bytes of in_ to the session.
  void receive(std::size_t n);
  // Moves the session's output to the socket and its events to the calls, until both are quiet.
  void flush_session();
  void dispatch(std::vector<H2Event>& events);
  void write();
  // Ends the connection and every call on it with `unavailable` and `why`.
  void fail(const std::string& why);
  void close_socket();
  // Reads and pings while calls are open; nothing (or closes, once detached) when idle.
  void follow_calls();
  void arm_keepalive(std::chrono::milliseconds after);
  void keepalive_tick();
  bool idle() const noexcept { return calls_.empty() && queued_.empty(); }
  std::string connect_failure(std::error_code ec) const;
  std::string where() const;  // "Workload API at /run/agent.sock"
  std::string closed_text() const;

  Strand strand_;
  GrpcTarget target_;
  std::string server_name_;
  std::chrono::milliseconds connect_timeout_;
  KeepalivePolicy keepalive_;
  asio::generic::stream_protocol::socket socket_;
  std::optional<asio::ip::tcp::resolver> resolver_;
  std::vector<asio::generic::stream_protocol::endpoint> candidates_;  // resolved addresses
  asio::cancellation_signal read_cancel_;                             // cancels the read alone
  asio::steady_timer timer_;                                          // the connect timeout, then the keepalive
  H2GrpcSession session_;
  H2Lifecycle life_;
  std::map<std::int32_t, std::weak_ptr<GrpcCall>> calls_;  // weak: a call's owner keeps it
  std::vector<std::weak_ptr<GrpcCall>> queued_;            // waiting for the connection
  std::vector<H2Event> events_;                            // raised and not yet dispatched
  std::string out_, writing_;
  std::unique_ptr<char[]> in_;
  bool writing_in_flight_ = false;
  bool flushing_ = false, reflush_ = false;  // flush_session is running; run it once more
  std::string failure_;                      // why the connection ended, for calls that come too late
};

/// What copies of one GrpcChannel share: the strand, the settings and the current connection.
class ChannelCore : public std::enable_shared_from_this<ChannelCore> {
 public:
  ChannelCore(const asio::any_io_executor& executor, GrpcTarget target, GrpcChannelOptions options);
  ~ChannelCore();
  ChannelCore(const ChannelCore&) = delete;
  ChannelCore& operator=(const ChannelCore&) = delete;

  /// Any thread: starts `call` on the current connection, or on a new one.
  void start(std::shared_ptr<GrpcCall> call);

  const Strand& strand() const noexcept { return strand_; }
  const GrpcTarget& target() const noexcept { return target_; }
  const GrpcChannelOptions& options() const noexcept { return options_; }

 private:
  Strand strand_;
  GrpcTarget target_;
  GrpcChannelOptions options_;
  std::shared_ptr<CallRegistry> registry_;
  std::shared_ptr<H2Connection> current_;  // on the strand
};

}  // namespace awaken::http::detail
