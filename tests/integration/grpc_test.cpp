// gRPC over HTTP/2: the framing and status rules on their own, then calls against a real
// @grpc/grpc-js server and a raw HTTP/2 peer for the faults a conforming server never sends.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <future>
#include <thread>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/error.hpp>
#include <awaken/http/grpc.hpp>

#include "http/grpc_framing.hpp"
#include "support/names.hpp"
#include "support/peer.hpp"

using awaken::http::GrpcCallOptions;
using awaken::http::GrpcChannel;
using awaken::http::GrpcChannelOptions;
using awaken::http::GrpcTarget;
using awaken::http::detail::grpc_frame;
using awaken::http::detail::GrpcFrameParser;

namespace {

const std::string unary_method = "/awaken.test.Test/Unary";
const std::string stream_method = "/awaken.test.Test/Stream";

struct GrpcPeer {
  awaken::test::TempDir dir;
  awaken::test::PeerProcess process{"grpc_server.mjs", {dir.path()}};

  GrpcTarget unix_target() const { return GrpcTarget::unix_socket(process.info()["unix"]); }
  GrpcTarget tcp_target() const {
    return GrpcTarget::tcp("127.0.0.1", static_cast<std::uint16_t>(process.info()["tcp_port"].get<int>()));
  }
  GrpcTarget raw_target() const { return GrpcTarget::unix_socket(process.info()["raw_unix"]); }
};

std::string knobs(const nlohmann::json& j) { return j.dump(); }

// Reads a whole stream; returns the messages and the error that ended it (empty when OK).
struct Drained {
  std::vector<std::string> messages;
  std::error_code error;
  std::string status_message;
};

asio::awaitable<Drained> drain(awaken::http::GrpcStream stream) {
  Drained out;
  for (;;) {
    auto [ec, message] = co_await stream.read(asio::experimental::as_tuple(asio::use_awaitable));
    if (ec) {
      out.error = ec;
      break;
    }
    if (!message) break;
    out.messages.push_back(std::move(*message));
  }
  out.status_message = stream.status_message();
  co_return out;
}

// Starts a read, cancels it at once with `type`, and returns how the read ended.
std::error_code cancelled_read(asio::io_context& io, awaken::http::GrpcStream& stream, asio::cancellation_type type) {
  asio::cancellation_signal signal;
  std::optional<std::error_code> result;
  stream.read(asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec, std::optional<std::string>) {
    result = ec;
    io.stop();
  }));
  asio::post(io, [&] { signal.emit(type); });  // runs after the read is queued on the stream
  io.restart();
  io.run_for(5s);
  if (!result) throw std::runtime_error("test deadline passed");
  return *result;
}

template <class Awaitable>
awaken::Error expect_error(asio::io_context& io, Awaitable aw) {
  try {
    run(io, std::move(aw));
  } catch (const awaken::Error& e) {
    return e;
  }
  FAIL("expected an awaken::Error");
  throw std::logic_error("unreachable");
}

// Reads a stream to its end; `token` lives in the coroutine's frame.
asio::awaitable<void> read_all(GrpcChannel channel, std::string knobs_text, std::shared_ptr<int> token) {
  auto stream = channel.server_stream(stream_method, std::move(knobs_text));
  while (co_await stream.read()) {
  }
  (void)token;
}

}  // namespace

TEST_CASE("frame parser: any split and any packing give the same messages", "[grpc][framing]") {
  const std::vector<std::string> messages{"", "a", std::string(300, 'x'), "hello", std::string(70000, 'z')};
  std::string wire;
  for (const auto& m : messages) wire += grpc_frame(m);

  SECTION("all at once") {
    GrpcFrameParser parser{1 << 20};
    std::deque<std::string> out;
    REQUIRE_FALSE(parser.feed(wire, out));
    CHECK(std::vector<std::string>(out.begin(), out.end()) == messages);
    CHECK_FALSE(parser.mid_message());
  }
  SECTION("byte by byte") {
    GrpcFrameParser parser{1 << 20};
    std::deque<std::string> out;
    for (char c : wire) REQUIRE_FALSE(parser.feed(std::string_view{&c, 1}, out));
    CHECK(std::vector<std::string>(out.begin(), out.end()) == messages);
  }
  SECTION("split in two at every position of the first frames") {
    for (std::size_t cut = 0; cut <= 320; ++cut) {
      GrpcFrameParser parser{1 << 20};
      std::deque<std::string> out;
      REQUIRE_FALSE(parser.feed(std::string_view{wire}.substr(0, cut), out));
      REQUIRE_FALSE(parser.feed(std::string_view{wire}.substr(cut), out));
      REQUIRE(out.size() == messages.size());
      CHECK(out[2] == messages[2]);
    }
  }
  SECTION("a partial frame is reported as mid-message") {
    GrpcFrameParser parser{1 << 20};
    std::deque<std::string> out;
    REQUIRE_FALSE(parser.feed(grpc_frame("abcdef").substr(0, 7), out));
    CHECK(out.empty());
    CHECK(parser.mid_message());
  }
}

TEST_CASE("frame parser: compressed, unknown flags and oversized messages are refused", "[grpc][framing]") {
  std::deque<std::string> out;
  std::string compressed = grpc_frame("zz");
  compressed[0] = 1;
  CHECK(GrpcFrameParser{100}.feed(compressed, out) == grpc_status::internal);
  std::string flagged = grpc_frame("zz");
  flagged[0] = 2;
  CHECK(GrpcFrameParser{100}.feed(flagged, out) == grpc_status::internal);
  CHECK(GrpcFrameParser{100}.feed(grpc_frame(std::string(101, 'x')), out) == awaken::http_errc::message_too_large);
  GrpcFrameParser exact{100};
  CHECK_FALSE(exact.feed(grpc_frame(std::string(100, 'x')), out));
  // Only the length prefix is needed to refuse: nothing of the payload is buffered.
  GrpcFrameParser early{100};
  CHECK(early.feed(std::string("\0\xff\xff\xff\xff", 5), out) == awaken::http_errc::message_too_large);
  CHECK(early.feed(grpc_frame("ok"), out) == awaken::http_errc::message_too_large);  // stays failed
  CHECK(out.size() == 1);
}

TEST_CASE("status comes from trailers or a trailers-only response, and must be there", "[grpc][framing]") {
  using awaken::http::Header;
  using awaken::http::detail::grpc_final_status;
  const std::vector<Header> grpc_headers{{"content-type", "application/grpc"}};
  CHECK_FALSE(grpc_final_status(200, grpc_headers, {{"grpc-status", "0"}}).code);
  auto denied =
      grpc_final_status(200, grpc_headers, {{"grpc-status", "7"}, {"grpc-message", "no%20identity%20issued"}});
  CHECK(denied.code == grpc_status::permission_denied);
  CHECK(denied.message == "no identity issued");
  auto trailers_only = grpc_final_status(
      200, {{"content-type", "application/grpc+proto"}, {"grpc-status", "5"}, {"grpc-message", "gone%"}}, {});
  CHECK(trailers_only.code == grpc_status::not_found);
  CHECK(trailers_only.message == "gone%");
  CHECK(grpc_final_status(200, grpc_headers, {}).code == grpc_status::internal);
  CHECK(grpc_final_status(200, grpc_headers, {{"grpc-status", "x"}}).code == grpc_status::unknown);
  CHECK(grpc_final_status(200, grpc_headers, {{"grpc-status", "99"}}).code == grpc_status::unknown);
  CHECK(grpc_final_status(200, {{"content-type", "text/html"}}, {{"grpc-status", "0"}}).code == grpc_status::unknown);
  CHECK(grpc_final_status(503, {}, {}).code == grpc_status::unavailable);
  CHECK(grpc_final_status(401, {}, {}).code == grpc_status::unauthenticated);
  CHECK(grpc_final_status(404, {}, {}).code == grpc_status::unimplemented);
  using awaken::http::detail::grpc_timeout_value;
  CHECK(grpc_timeout_value(std::chrono::milliseconds{250}) == "250m");
  CHECK(grpc_timeout_value(std::chrono::milliseconds{0}) == "1m");
  CHECK(grpc_timeout_value(std::chrono::hours{30}) == "108000S");
  CHECK(grpc_timeout_value(std::chrono::hours{24 * 100}) == "8640000S");
  CHECK(grpc_timeout_value(std::chrono::hours{24 * 365 * 5}) == "2628000M");
  CHECK(grpc_timeout_value(std::chrono::hours{24 * 365 * 5000}) == "43800000H");
  CHECK(awaken::http::detail::percent_decode("a%20b%zz%e2%9c%93%") == "a b%zz\xe2\x9c\x93%");
}

TEST_CASE("unary calls over a unix socket and over TCP", "[grpc]") {
  GrpcPeer peer;
  asio::io_context io;
  const auto client = io.get_executor();
  for (const auto& target : {peer.unix_target(), peer.tcp_target()}) {
    GrpcChannel channel{client, target};
    CHECK(run(io, channel.unary(unary_method, knobs({{"reply", "hi there"}}))) == "hi there");
    CHECK(run(io, channel.unary(unary_method, knobs({{"size", 0}}))).empty());
    CHECK(run(io, channel.unary(unary_method, knobs({{"size", 3 << 20}}))).size() == 3u << 20);
  }
}

TEST_CASE("channel metadata reaches the server", "[grpc]") {
  GrpcPeer peer;
  asio::io_context io;
  const auto client = io.get_executor();
  const auto request = knobs({{"require_header", "workload.spiffe.io"}});

  GrpcChannel bare{client, peer.unix_target()};
  auto e = expect_error(io, bare.unary(unary_method, request));
  CHECK(e.code() == grpc_status::invalid_argument);
  CHECK(e.details().server_message == "missing workload.spiffe.io");

  GrpcChannelOptions options;
  options.metadata = {{"workload.spiffe.io", "true"}};
  GrpcChannel workload{client, peer.unix_target(), options};
  CHECK(run(io, workload.unary(unary_method, request)) == "pong");
}

TEST_CASE("a server status ends a unary call with that code and its message", "[grpc]") {
  GrpcPeer peer;
  asio::io_context io;
  GrpcChannel channel{io.get_executor(), peer.unix_target()};
  auto e = expect_error(
      io, channel.unary(unary_method, knobs({{"status", 7}, {"message", "no identity issued: 100% sure"}})));
  CHECK(e.code() == grpc_status::permission_denied);
  CHECK(e.details().server_message == "no identity issued: 100% sure");
  CHECK(std::string{e.what()}.find("/awaken.test.Test/Unary") != std::string::npos);
  // The server answers an unknown method before reading the request, then resets the stream.
  // With libcurl 7.88 that reset sometimes (about 1 run in 50 on a loaded machine) arrives
  // before curl hands over the reply, and the call can only end as a transport failure.
  const auto unknown = expect_error(io, channel.unary("/awaken.test.Test/Nope", ""));
  INFO(unknown.what());
  const bool lost_reply = unknown.code() == grpc_status::unavailable &&
                          std::string{unknown.what()}.find("transport: HTTP protocol error") != std::string::npos;
  CHECK((unknown.code() == grpc_status::unimplemented || lost_reply));
  CHECK(expect_error(io, channel.unary("no slash", "")).code() == grpc_status::invalid_argument);
  CHECK(expect_error(io, channel.unary("/awaken.test.Test/../Other/Unary", "")).code() ==
        grpc_status::invalid_argument);
  CHECK_THROWS_AS(GrpcTarget::tcp("evil.example/x?", 1), awaken::Error);
}

TEST_CASE("a unary deadline ends a slow call with deadline_exceeded", "[grpc]") {
  GrpcPeer peer;
  asio::io_context io;
  GrpcChannel channel{io.get_executor(), peer.unix_target()};
  GrpcCallOptions options;
  options.deadline = 300ms;
  const auto start = std::chrono::steady_clock::now();
  auto e = expect_error(io, channel.unary(unary_method, knobs({{"delay_ms", 5000}}), options));
  CHECK(e.code() == grpc_status::deadline_exceeded);
  CHECK(std::chrono::steady_clock::now() - start < 4s);
}

TEST_CASE("a server stream delivers every message in order, then its end", "[grpc]") {
  GrpcPeer peer;
  asio::io_context io;
  GrpcChannel channel{io.get_executor(), peer.unix_target()};
  auto result = run(io, drain(channel.server_stream(stream_method, knobs({{"count", 5}}))));
  CHECK_FALSE(result.error);
  CHECK(result.messages == std::vector<std::string>{"m0", "m1", "m2", "m3", "m4"});

  auto empty = run(io, drain(channel.server_stream(stream_method, knobs({{"count", 0}}))));
  CHECK_FALSE(empty.error);
  CHECK(empty.messages.empty());

  // co_await read(): nullopt at the end.
  auto first_two = run(io, [&]() -> asio::awaitable<std::vector<std::string>> {
    auto stream = channel.server_stream(stream_method, knobs({{"count", 2}}));
    std::vector<std::string> got;
    while (auto m = co_await stream.read()) got.push_back(*m);
    co_return got;
  }());
  CHECK(first_two == std::vector<std::string>{"m0", "m1"});
}

TEST_CASE("a stream that fails after messages delivers them, then the status", "[grpc]") {
  GrpcPeer peer;
  asio::io_context io;
  GrpcChannel channel{io.get_executor(), peer.unix_target()};
  auto result = run(io, drain(channel.server_stream(
                            stream_method, knobs({{"count", 2}, {"status", 14}, {"message", "agent going away"}}))));
  CHECK(result.messages == std::vector<std::string>{"m0", "m1"});
  CHECK(result.error == grpc_status::unavailable);
  CHECK(result.status_message == "agent going away");
}

TEST_CASE("a reset stream ends with unavailable after the messages before it", "[grpc]") {
  GrpcPeer peer;
  asio::io_context io;
  GrpcChannel channel{io.get_executor(), peer.unix_target()};
  auto result = run(
      io, drain(channel.server_stream(stream_method, knobs({{"count", 5}, {"reset_after", 2}, {"interval_ms", 20}}))));
  CHECK(result.messages == std::vector<std::string>{"m0", "m1"});
  CHECK(result.error == grpc_status::unavailable);
  CHECK((result.error == awaken::condition::transient));
}

TEST_CASE("a server killed mid-stream ends the stream with unavailable", "[grpc]") {
  GrpcPeer peer;
  asio::io_context io;
  GrpcChannel channel{io.get_executor(), peer.unix_target()};
  auto result = run(
      io, drain(channel.server_stream(stream_method, knobs({{"count", 5}, {"kill_after", 2}, {"interval_ms", 20}}))));
  CHECK(result.messages == std::vector<std::string>{"m0", "m1"});
  CHECK(result.error == grpc_status::unavailable);
  // The socket closes a moment before the process becomes reapable.
  for (int i = 0; i < 200 && peer.process.running(); ++i) std::this_thread::sleep_for(10ms);
  CHECK_FALSE(peer.process.running());
}

TEST_CASE("no server at the socket: unavailable", "[grpc]") {
  awaken::test::TempDir dir;
  asio::io_context io;
  GrpcChannel channel{io.get_executor(), GrpcTarget::unix_socket(dir.path() + "/absent.sock")};
  auto e = expect_error(io, channel.unary(unary_method, ""));
  CHECK(e.code() == grpc_status::unavailable);
  CHECK(e.details().server_message ==
        "no gRPC server socket at " + dir.path() + "/absent.sock (No such file or directory)");
}

TEST_CASE("cancelling a read: terminal resets the stream, partial ends only the read", "[grpc]") {
  GrpcPeer peer;
  asio::io_context io;
  GrpcChannel channel{io.get_executor(), peer.unix_target()};
  auto stream = channel.server_stream(stream_method, knobs({{"count", 5}, {"hang_after", 1}}));
  CHECK(run(io, stream.read()) == std::optional<std::string>{"m0"});

  CHECK(cancelled_read(io, stream, asio::cancellation_type::terminal) == asio::error::operation_aborted);
  // Later reads see the same end.
  auto [ec, message] = run(io, stream.read(asio::experimental::as_tuple(asio::use_awaitable)));
  CHECK(ec == asio::error::operation_aborted);
  CHECK_FALSE(message);

  { auto doomed = channel.server_stream(stream_method, knobs({{"count", 5}, {"hang_after", 0}})); }

  // Partial cancellation ends the read only; the stream goes on.
  auto patient = channel.server_stream(stream_method, knobs({{"count", 2}, {"interval_ms", 400}}));
  CHECK(run(io, patient.read()) == std::optional<std::string>{"m0"});
  CHECK(cancelled_read(io, patient, asio::cancellation_type::partial) == asio::error::operation_aborted);
  CHECK(run(io, patient.read()) == std::optional<std::string>{"m1"});
  CHECK(run(io, patient.read()) == std::nullopt);
  // The channel still works after both.
  CHECK(run(io, channel.unary(unary_method, knobs({{"reply", "still here"}}))) == "still here");
}

TEST_CASE("big messages split across reads and many small ones packed together arrive intact", "[grpc]") {
  GrpcPeer peer;
  asio::io_context io;
  GrpcChannel channel{io.get_executor(), peer.unix_target()};
  auto big = run(io, drain(channel.server_stream(stream_method, knobs({{"count", 3}, {"size", 1 << 20}}))));
  REQUIRE_FALSE(big.error);
  REQUIRE(big.messages.size() == 3);
  CHECK(big.messages[2] == std::string(1 << 20, '2'));

  GrpcChannel raw{io.get_executor(), peer.raw_target()};
  auto chunks = run(io, drain(raw.server_stream("/raw/split", "")));
  REQUIRE_FALSE(chunks.error);
  REQUIRE(chunks.messages.size() == 6);
  CHECK(chunks.messages[0] == std::string(100000, 'b'));
  CHECK(chunks.messages[5] == "t4");
}

TEST_CASE("a slow reader pauses the transfer and loses nothing", "[grpc]") {
  GrpcPeer peer;
  asio::io_context io;
  GrpcChannel channel{io.get_executor(), peer.unix_target()};
  auto got = run(io, [&]() -> asio::awaitable<std::vector<std::string>> {
    auto stream = channel.server_stream(stream_method, knobs({{"count", 400}}));
    std::vector<std::string> out;
    asio::steady_timer timer{co_await asio::this_coro::executor};
    while (auto m = co_await stream.read()) {
      out.push_back(*m);
      if (out.size() % 50 == 1) {  // let the queue fill far past its bound now and then
        timer.expires_after(50ms);
        co_await timer.async_wait(asio::use_awaitable);
      }
    }
    co_return out;
  }());
  REQUIRE(got.size() == 400);
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == "m" + std::to_string(i));
}

TEST_CASE("messages over the bound end the call with message_too_large", "[grpc]") {
  GrpcPeer peer;
  asio::io_context io;
  GrpcChannelOptions options;
  options.max_message_bytes = 1000;
  GrpcChannel channel{io.get_executor(), peer.unix_target(), options};
  CHECK(run(io, channel.unary(unary_method, knobs({{"size", 1000}}))).size() == 1000);
  CHECK(expect_error(io, channel.unary(unary_method, knobs({{"size", 1001}}))).code() ==
        awaken::http_errc::message_too_large);
  GrpcChannel raw{io.get_executor(), peer.raw_target()};
  CHECK(expect_error(io, raw.unary("/raw/oversized", "")).code() == awaken::http_errc::message_too_large);
}

TEST_CASE("framing and status faults from a raw HTTP/2 peer", "[grpc]") {
  GrpcPeer peer;
  asio::io_context io;
  GrpcChannel raw{io.get_executor(), peer.raw_target()};
  CHECK(expect_error(io, raw.unary("/raw/compressed", "")).code() == grpc_status::internal);
  CHECK(expect_error(io, raw.unary("/raw/truncated", "")).code() == grpc_status::internal);
  auto no_status = expect_error(io, raw.unary("/raw/no_status", ""));
  CHECK(no_status.code() == grpc_status::internal);
  CHECK(no_status.details().server_message == "server sent no grpc-status");
  CHECK(expect_error(io, raw.unary("/raw/http_503", "")).code() == grpc_status::unavailable);
  CHECK(expect_error(io, raw.unary("/raw/bad_content_type", "")).code() == grpc_status::unknown);
  auto trailers_only = expect_error(io, raw.unary("/raw/trailers_only", ""));
  CHECK(trailers_only.code() == grpc_status::not_found);
  CHECK(trailers_only.details().server_message == "not here \xe2\x9c\x93");
}

TEST_CASE("one connection carries every call of a channel and its copies, at once", "[grpc][h2]") {
  GrpcPeer peer;
  asio::io_context io;
  const GrpcChannel channel{io.get_executor(), peer.unix_target()};
  CHECK(run(io, channel.unary(unary_method, knobs({{"reply", "warm"}}))) == "warm");
  const std::size_t fds = open_fds();
  // 20 unary calls from copies of the channel and two streams, all in flight together.
  std::vector<std::string> replies;
  int pending = 20;
  for (int i = 0; i < 20; ++i) {
    const GrpcChannel copy = channel;
    copy.unary(unary_method, knobs({{"reply", "r" + std::to_string(i)}, {"delay_ms", 50}}),
               [&](std::error_code ec, std::string reply) {
                 replies.push_back(ec ? ec.message() : reply);
                 if (--pending == 0) io.stop();
               });
  }
  auto first = run(io, drain(channel.server_stream(stream_method, knobs({{"count", 3}}))));
  io.restart();
  io.run_for(10s);
  REQUIRE(pending == 0);
  std::sort(replies.begin(), replies.end());
  CHECK(replies.size() == 20);
  CHECK(replies.front() == "r0");
  CHECK(replies.back() == "r9");
  CHECK(first.messages.size() == 3);
  CHECK(open_fds() == fds);  // no second socket

  // Idle, the connection holds no pending operation: run() returns at once.
  io.restart();
  const auto before = std::chrono::steady_clock::now();
  io.run_for(5s);
  CHECK(std::chrono::steady_clock::now() - before < 4s);
  CHECK(run(io, channel.unary(unary_method, knobs({{"reply", "again"}}))) == "again");
  CHECK(open_fds() == fds);  // the same connection, reused
}

TEST_CASE("connection failures name what happened, once", "[grpc][h2]") {
  awaken::test::TempDir dir;
  asio::io_context io;
  GrpcChannelOptions options;
  options.server_name = "Workload API";
  GrpcChannel missing{io.get_executor(), GrpcTarget::unix_socket(dir.path() + "/agent.sock"), options};
  auto e = expect_error(io, missing.unary(unary_method, ""));
  CHECK(e.code() == grpc_status::unavailable);
  CHECK(e.details().server_message ==
        "no Workload API socket at " + dir.path() + "/agent.sock (No such file or directory)");
  const std::string what = e.what();
  CHECK(what.find("No such file or directory") == what.rfind("No such file or directory"));  // said once

  // A socket file that nobody listens on: refused.
  const std::string dead = dir.path() + "/dead.sock";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", dead.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  GrpcChannel refused{io.get_executor(), GrpcTarget::unix_socket(dead), options};
  auto r = expect_error(io, refused.unary(unary_method, ""));
  ::close(fd);
  CHECK(r.code() == grpc_status::unavailable);
  CHECK(r.details().server_message == "Workload API at " + dead + ": connection refused");
  CHECK((r.code() == awaken::condition::transient));
}

TEST_CASE("GOAWAY: the calls the server kept finish, the others fail as transient, new calls reconnect", "[grpc][h2]") {
  GrpcPeer peer;
  asio::io_context io;
  GrpcChannel raw{io.get_executor(), peer.raw_target()};
  auto held = raw.server_stream("/raw/hold", "");
  CHECK(run(io, held.read()) == std::optional<std::string>{"held"});
  auto refused = expect_error(io, raw.unary("/raw/goaway", ""));
  CHECK(refused.code() == grpc_status::unavailable);
  CHECK(refused.details().server_message == "peer closed the connection (GOAWAY, no error)");
  // The held stream was below the GOAWAY's last stream: it goes on to its clean end.
  auto rest = run(io, drain(std::move(held)));
  CHECK_FALSE(rest.error);
  CHECK(rest.messages == std::vector<std::string>{"after goaway"});
  // A new call opens a new connection.
  auto trailers_only = expect_error(io, raw.unary("/raw/trailers_only", ""));
  CHECK(trailers_only.code() == grpc_status::not_found);
}

TEST_CASE("keepalive PINGs find a server that stopped answering", "[grpc][h2]") {
  GrpcPeer peer;
  asio::io_context io;
  GrpcChannelOptions options;
  options.keepalive_interval = 200ms;
  options.keepalive_timeout = 300ms;
  GrpcChannel channel{io.get_executor(), peer.tcp_target(), options};
  auto stream = channel.server_stream(stream_method, knobs({{"count", 5}, {"hang_after", 1}}));
  CHECK(run(io, stream.read()) == std::optional<std::string>{"m0"});
  // A quiet stream on a live server stays up across several pings.
  asio::steady_timer wait{io, 700ms};
  run(io, wait.async_wait(asio::use_awaitable));
  peer.process.signal(SIGSTOP);  // alive, connected, silent
  auto result = run(io, drain(std::move(stream)));
  peer.process.signal(SIGCONT);
  CHECK(result.error == grpc_status::unavailable);
  CHECK(result.status_message == "gRPC server did not answer a keepalive PING within 300 ms");
  // Over a unix socket, no pings by default: the same quiet stream is not disturbed.
  GrpcChannel local{io.get_executor(), peer.unix_target()};
  auto quiet = local.server_stream(stream_method, knobs({{"count", 2}, {"interval_ms", 600}}));
  CHECK(run(io, drain(std::move(quiet))).messages == std::vector<std::string>{"m0", "m1"});
}

TEST_CASE("a server restarted between calls is reconnected to without a failed call", "[grpc][h2]") {
  awaken::test::TempDir dir;
  asio::io_context io;
  std::optional<awaken::test::PeerProcess> process;
  process.emplace(std::string{"grpc_server.mjs"}, std::vector<std::string>{dir.path()});
  const GrpcChannel channel{io.get_executor(), GrpcTarget::unix_socket(process->info()["unix"])};
  CHECK(run(io, channel.unary(unary_method, knobs({{"reply", "one"}}))) == "one");
  process.reset();  // killed: the idle connection's socket is closed under it
  process.emplace(std::string{"grpc_server.mjs"}, std::vector<std::string>{dir.path()});
  CHECK(run(io, channel.unary(unary_method, knobs({{"reply", "two"}}))) == "two");
}

TEST_CASE("a channel used from several threads at once, on an io_context run by two", "[grpc][h2]") {
  GrpcPeer peer;
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::thread runner_a{[&] { io.run(); }};
  std::thread runner_b{[&] { io.run(); }};
  const GrpcChannel channel{io.get_executor(), peer.unix_target()};
  using Read = std::pair<std::error_code, std::optional<std::string>>;
  const auto read = [](awaken::http::GrpcStream& stream) {
    auto done = std::make_shared<std::promise<Read>>();
    auto result = done->get_future();
    stream.read([done](std::error_code ec, std::optional<std::string> m) { done->set_value({ec, std::move(m)}); });
    return result;
  };
  std::atomic<int> good{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const std::string expected = "t" + std::to_string(t) + "-" + std::to_string(i);
        std::promise<std::string> reply;
        channel.unary(unary_method, knobs({{"reply", expected}}),
                      [&reply](std::error_code ec, std::string r) { reply.set_value(ec ? ec.message() : r); });
        if (reply.get_future().get() == expected) ++good;
        // A stream started here and cancelled from another thread while its read waits.
        auto stream = channel.server_stream(stream_method, knobs({{"count", 2}, {"hang_after", 1}}));
        if (read(stream).get().second == std::optional<std::string>{"m0"}) ++good;
        auto pending = read(stream);
        std::thread{[&stream] { stream.cancel(); }}.join();
        if (pending.get().first == asio::error::operation_aborted) ++good;
      }
    });
  for (auto& c : callers) c.join();
  guard.reset();
  runner_a.join();
  runner_b.join();
  CHECK(good == 4 * 25 * 3);
}

TEST_CASE("destroying the io_context while a read waits frees the reader, the call and the socket", "[grpc][h2]") {
  GrpcPeer peer;
  const std::size_t fds = open_fds();
  std::weak_ptr<int> frame;
  {
    asio::io_context io;
    auto token = std::make_shared<int>(0);
    frame = token;
    const GrpcChannel channel{io.get_executor(), peer.unix_target()};
    asio::co_spawn(io, read_all(channel, knobs({{"count", 5}, {"hang_after", 1}}), std::move(token)), asio::detached);
    io.run_for(1s);  // the first message, then the read waits for ever
    CHECK_FALSE(frame.expired());
  }
  CHECK(frame.expired());    // the coroutine's frame is gone with its pending read
  CHECK(open_fds() == fds);  // and so is the connection
}
