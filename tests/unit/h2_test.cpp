// The sans-IO HTTP/2 gRPC session against an nghttp2 server session, bytes passed in memory: no
// socket, no io_context.
#include <nghttp2/nghttp2.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <awaken/error.hpp>

#include "http/grpc_framing.hpp"
#include "http/h2_lifecycle.hpp"
#include "http/h2_session.hpp"

using awaken::grpc_status;
using awaken::http::detail::H2Call;
using awaken::http::detail::H2Event;
using awaken::http::detail::H2GrpcSession;

namespace {

// A gRPC server of nghttp2's own: each request is answered as `respond` says once it ends.
class TestServer {
 public:
  struct Reply {
    std::vector<std::string> messages;
    std::string status = "0";
    std::string message;
    bool trailers_only = false;
    bool hold = false;  // no answer at all
    std::string content_type = "application/grpc";
    std::string raw_body;  // instead of the framed messages
  };
  std::function<Reply(const std::string& path)> respond;
  std::map<std::int32_t, std::string> paths;
  std::map<std::int32_t, std::uint32_t> resets;  // stream -> error code the client sent
  std::size_t data_received = 0;

  TestServer() {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(
        cbs, [](nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* n, std::size_t nl, const std::uint8_t* v,
                std::size_t vl, std::uint8_t, void* u) {
          if (std::string_view{reinterpret_cast<const char*>(n), nl} == ":path")
            static_cast<TestServer*>(u)->paths[f->hd.stream_id] = std::string{reinterpret_cast<const char*>(v), vl};
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, [](nghttp2_session*, std::uint8_t, std::int32_t, const std::uint8_t*, std::size_t len, void* u) {
          static_cast<TestServer*>(u)->data_received += len;
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, [](nghttp2_session*, const nghttp2_frame* f, void* u) {
      auto* self = static_cast<TestServer*>(u);
      if (f->hd.type == NGHTTP2_RST_STREAM) self->resets[f->hd.stream_id] = f->rst_stream.error_code;
      if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        self->answer(f->hd.stream_id);
      return 0;
    });
    nghttp2_session_server_new(&session_, cbs, this);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~TestServer() { nghttp2_session_del(session_); }

  std::string exchange(std::string_view in) {
    if (!in.empty())
      REQUIRE(nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(in.data()), in.size()) >= 0);
    std::string out;
    for (;;) {
      const std::uint8_t* d = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &d);
      if (n <= 0) break;
      out.append(reinterpret_cast<const char*>(d), static_cast<std::size_t>(n));
    }
    return out;
  }
  void goaway(std::int32_t last) {
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, nullptr, 0);
  }

 private:
  void answer(std::int32_t stream) {
    Reply r = respond(paths[stream]);
    if (r.hold) return;
    auto& body = bodies_[stream];
    for (const auto& m : r.messages) body += awaken::http::detail::grpc_frame(m);
    body += r.raw_body;
    trailers_[stream] = {{"grpc-status", r.status}, {"grpc-message", r.message}};
    std::vector<std::pair<std::string, std::string>> head{{":status", "200"}, {"content-type", r.content_type}};
    if (r.trailers_only) {
      head.insert(head.end(), trailers_[stream].begin(), trailers_[stream].end());
      auto nva = to_nv(head);
      nghttp2_submit_response(session_, stream, nva.data(), nva.size(), nullptr);
      return;
    }
    keep_[stream] = head;
    auto nva = to_nv(keep_[stream]);
    nghttp2_data_provider p{};
    p.read_callback = [](nghttp2_session* s, std::int32_t id, std::uint8_t* buf, std::size_t len, std::uint32_t* flags,
                         nghttp2_data_source*, void* u) -> ssize_t {
      auto* self = static_cast<TestServer*>(u);
      auto& b = self->bodies_[id];
      const std::size_t n = std::min(len, b.size());
      std::memcpy(buf, b.data(), n);
      b.erase(0, n);
      if (b.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        auto t = to_nv(self->trailers_[id]);
        nghttp2_submit_trailer(s, id, t.data(), t.size());
      }
      return static_cast<ssize_t>(n);
    };
    nghttp2_submit_response(session_, stream, nva.data(), nva.size(), &p);
  }
  static std::vector<nghttp2_nv> to_nv(std::vector<std::pair<std::string, std::string>>& h) {
    std::vector<nghttp2_nv> out;
    for (auto& [n, v] : h)
      out.push_back({reinterpret_cast<std::uint8_t*>(n.data()), reinterpret_cast<std::uint8_t*>(v.data()), n.size(),
                     v.size(), NGHTTP2_NV_FLAG_NONE});
    return out;
  }
  nghttp2_session* session_ = nullptr;
  std::map<std::int32_t, std::string> bodies_;
  std::map<std::int32_t, std::vector<std::pair<std::string, std::string>>> trailers_, keep_;
};

// Passes bytes both ways until neither side has anything to say; returns the client's events.
// `take` consumes each message as it arrives (the consumer keeping up).
std::vector<H2Event> pump(H2GrpcSession& client, TestServer& server, bool take = true) {
  std::vector<H2Event> events;
  for (int i = 0; i < 1000; ++i) {
    const std::string up = client.take_output();
    const std::string down = server.exchange(up);
    const std::size_t before = events.size();
    REQUIRE(!client.receive(down, events));
    client.take_events(events);
    if (take)
      for (std::size_t k = before; k < events.size(); ++k)
        if (events[k].kind == H2Event::Kind::message) client.taken(events[k].stream);
    if (up.empty() && down.empty() && events.size() == before) break;
  }
  return events;
}

H2Call call(std::string path) { return H2Call{"localhost", std::move(path), {{"workload.spiffe.io", "true"}}, {}}; }

const H2Event* finished(const std::vector<H2Event>& events, std::int32_t stream) {
  for (const auto& e : events)
    if (e.kind == H2Event::Kind::finished && e.stream == stream) return &e;
  return nullptr;
}

}  // namespace

TEST_CASE("gRPC calls share one HTTP/2 session: messages, trailers, trailers-only, missing status", "[h2]") {
  TestServer server;
  server.respond = [](const std::string& path) {
    TestServer::Reply r;
    if (path == "/S/Unary") r.messages = {"pong"};
    if (path == "/S/Stream") r.messages = {"a", "bb", std::string(100'000, 'c')};
    if (path == "/S/Denied") {
      r.trailers_only = true;
      r.status = "7";
      r.message = "no%20identity%20issued";
    }
    if (path == "/S/NoStatus") r.status = "";
    return r;
  };
  H2GrpcSession client{{}};
  const auto unary = client.start(call("/S/Unary"), "ping");
  const auto stream = client.start(call("/S/Stream"), "");
  const auto denied = client.start(call("/S/Denied"), "");
  const auto nostatus = client.start(call("/S/NoStatus"), "");
  const auto events = pump(client, server);
  CHECK(server.data_received > 0);

  std::map<std::int32_t, std::vector<std::string>> messages;
  for (const auto& e : events)
    if (e.kind == H2Event::Kind::message) messages[e.stream].push_back(e.message);
  CHECK(messages[unary] == std::vector<std::string>{"pong"});
  REQUIRE(messages[stream].size() == 3);
  CHECK(messages[stream][2].size() == 100'000);
  REQUIRE(finished(events, unary));
  CHECK(!finished(events, unary)->status.code);
  CHECK(!finished(events, stream)->status.code);
  REQUIRE(finished(events, denied));
  CHECK(finished(events, denied)->status.code == grpc_status::permission_denied);
  CHECK(finished(events, denied)->status.message == "no identity issued");
  REQUIRE(finished(events, nostatus));
  CHECK(finished(events, nostatus)->status.code);
  CHECK(client.open_calls() == 0);
  CHECK(client.usable());
}

TEST_CASE("a message over the bound ends its call with a reset; others go on", "[h2]") {
  TestServer server;
  server.respond = [](const std::string& path) {
    TestServer::Reply r;
    r.messages = {path == "/S/Big" ? std::string(10'000, 'x') : "small"};
    return r;
  };
  H2GrpcSession client{{.max_message_bytes = 4096}};
  const auto big = client.start(call("/S/Big"), "");
  const auto small = client.start(call("/S/Small"), "");
  const auto events = pump(client, server);
  REQUIRE(finished(events, big));
  CHECK(finished(events, big)->status.code == awaken::http_errc::message_too_large);
  CHECK(server.resets[big] == NGHTTP2_CANCEL);
  REQUIRE(finished(events, small));
  CHECK(!finished(events, small)->status.code);
}

TEST_CASE("cancel sends RST_STREAM(CANCEL); GOAWAY is reported; flow control follows the consumer", "[h2]") {
  TestServer server;
  server.respond = [](const std::string&) {
    TestServer::Reply r;
    for (int i = 0; i < 8; ++i) r.messages.push_back(std::string(60'000, 'm'));  // 480 KB
    return r;
  };
  H2GrpcSession client{{.max_message_bytes = 1 << 20, .initial_window = 100'000}};
  // A consumer that takes nothing: the peer stops at the window.
  const auto slow = client.start(call("/S/Slow"), "");
  auto events = pump(client, server, false);
  std::size_t wire = 0;
  int got = 0;
  for (const auto& e : events)
    if (e.kind == H2Event::Kind::message) {
      wire += e.wire_bytes;
      ++got;
    }
  CHECK(got >= 1);
  CHECK(got < 8);
  CHECK(!finished(events, slow));
  // Taking them releases the rest.
  for (int i = 0; i < got; ++i) client.taken(slow);
  CHECK(wire == static_cast<std::size_t>(got) * 60'005);
  for (int round = 0; round < 20 && !finished(events, slow); ++round) {
    auto more = pump(client, server);
    events.insert(events.end(), more.begin(), more.end());
  }
  got = 0;
  for (const auto& e : events) got += e.kind == H2Event::Kind::message ? 1 : 0;
  CHECK(got == 8);
  REQUIRE(finished(events, slow));

  const auto cancelled = client.start(call("/S/Slow"), "");
  std::vector<H2Event> early;
  REQUIRE(!client.receive(server.exchange(client.take_output()), early));  // the reply has begun
  client.cancel(cancelled);
  events = pump(client, server);
  REQUIRE(finished(events, cancelled));
  CHECK(finished(events, cancelled)->status.code == grpc_status::cancelled);
  CHECK(server.resets[cancelled] == NGHTTP2_CANCEL);

  server.goaway(cancelled);
  events = pump(client, server);
  bool saw = false;
  for (const auto& e : events) saw |= e.kind == H2Event::Kind::goaway && e.last_stream == cancelled;
  CHECK(saw);
  CHECK(!client.usable());
}

TEST_CASE("bytes that are not HTTP/2 kill the session", "[h2]") {
  H2GrpcSession client{{}};
  (void)client.take_output();
  std::vector<H2Event> events;
  CHECK(client.receive(std::string(64, '\xff'), events) == awaken::http_errc::protocol_error);
  CHECK(!client.usable());
  CHECK(!client.take_output().empty());  // the GOAWAY that tells the peer why
}

TEST_CASE("GOAWAY fails the calls above its last stream with its text; a lost connection fails the rest", "[h2]") {
  TestServer server;
  server.respond = [](const std::string& path) {
    TestServer::Reply r;
    if (path == "/S/Hold") r.hold = true;
    if (path == "/S/Html") {
      r.content_type = "text/html";
      r.raw_body = "<html>oops</html>";
    }
    return r;
  };
  H2GrpcSession client{{}};
  const auto kept = client.start(call("/S/Hold"), "");
  const auto dropped = client.start(call("/S/Hold"), "");
  const auto html = client.start(call("/S/Html"), "");
  auto events = pump(client, server);
  // A body that is not gRPC is not read as frames: the status comes from the headers.
  REQUIRE(finished(events, html));
  CHECK(finished(events, html)->status.code == grpc_status::unknown);
  CHECK(finished(events, html)->status.message == "response is not gRPC (content-type)");
  for (const auto& e : events) CHECK(e.kind != H2Event::Kind::message);
  CHECK(client.goaway_text().empty());

  server.goaway(kept);
  events = pump(client, server);
  REQUIRE(finished(events, dropped));
  CHECK(finished(events, dropped)->status.code == grpc_status::unavailable);
  CHECK(finished(events, dropped)->status.message == "peer closed the connection (GOAWAY, no error)");
  CHECK(client.goaway_text() == "peer closed the connection (GOAWAY, no error)");
  CHECK(!finished(events, kept));
  CHECK(client.open_calls() == 1);
  CHECK(!client.usable());

  client.fail_all("connection lost");
  events.clear();
  client.take_events(events);
  REQUIRE(finished(events, kept));
  CHECK(finished(events, kept)->status.code == grpc_status::unavailable);
  CHECK(finished(events, kept)->status.message == "connection lost");
  CHECK(client.open_calls() == 0);
}

TEST_CASE("readers that take nothing hold back their own calls only, never the connection", "[h2]") {
  TestServer server;
  server.respond = [](const std::string& path) {
    TestServer::Reply r;
    if (path == "/S/Slow")
      for (int i = 0; i < 8; ++i) r.messages.push_back(std::string(60'000, 's'));
    else
      r.messages = {std::string(50'000, 'f')};
    return r;
  };
  // Four calls whose messages nobody takes could fill four stream windows: the whole
  // connection window if that were held back too.
  H2GrpcSession client{{.max_message_bytes = 1 << 20, .initial_window = 100'000}};
  std::vector<std::int32_t> slow;
  for (int i = 0; i < 4; ++i) slow.push_back(client.start(call("/S/Slow"), ""));
  auto events = pump(client, server, false);
  const auto fast = client.start(call("/S/Fast"), "");
  auto more = pump(client, server, false);
  events.insert(events.end(), more.begin(), more.end());
  REQUIRE(finished(events, fast));
  CHECK(!finished(events, fast)->status.code);
  for (auto s : slow) CHECK(!finished(events, s));
}

TEST_CASE("a connection error nghttp2 answers with GOAWAY leaves the session broken", "[h2]") {
  H2GrpcSession client{{}};
  (void)client.start(call("/S/M"), "");
  (void)client.take_output();
  CHECK(!client.broken());
  const std::string settings("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);
  const std::string data_on_stream_0("\x00\x00\x01\x00\x00\x00\x00\x00\x00x", 10);  // forbidden
  std::vector<H2Event> events;
  (void)client.receive(settings + data_on_stream_0, events);
  const std::string out = client.take_output();
  CHECK(client.broken());
  CHECK(!client.usable());
  // Among the frames out is the GOAWAY (type 7) that says why.
  bool goaway = false;
  for (std::size_t at = 0; at + 9 <= out.size();) {
    const auto length = (std::size_t{static_cast<unsigned char>(out[at])} << 16) |
                        (std::size_t{static_cast<unsigned char>(out[at + 1])} << 8) |
                        std::size_t{static_cast<unsigned char>(out[at + 2])};
    goaway |= out[at + 3] == '\x07';
    at += 9 + length;
  }
  CHECK(goaway);
}

TEST_CASE("keepalive: ping, wait for any answer, give up on silence; 30 s over TCP by default", "[h2]") {
  using awaken::http::detail::KeepalivePolicy;
  using Act = KeepalivePolicy::Act;
  using std::chrono::milliseconds;
  CHECK(KeepalivePolicy{std::nullopt, milliseconds{10}, true}.interval() == milliseconds{30'000});
  CHECK_FALSE(KeepalivePolicy{std::nullopt, milliseconds{10}, false}.enabled());  // unix socket
  CHECK_FALSE(KeepalivePolicy{milliseconds{0}, milliseconds{10}, true}.enabled());

  KeepalivePolicy k{milliseconds{200}, milliseconds{50}, true};
  auto step = k.on_timer();
  CHECK(step.act == Act::ping);
  CHECK(step.wait == milliseconds{50});
  k.heard();  // the PING's ACK, or any frame
  step = k.on_timer();
  CHECK(step.act == Act::wait);
  CHECK(step.wait == milliseconds{200});
  k.heard();  // bytes before the next PING do not count for it
  CHECK(k.on_timer().act == Act::ping);
  CHECK(k.on_timer().act == Act::give_up);

  k.reset();  // the calls ended while a PING was out: a new round starts with a PING
  CHECK(k.on_timer().act == Act::ping);
}

TEST_CASE("a connection reads and pings only while calls are open, and closes once detached and idle", "[h2]") {
  using awaken::http::detail::H2Lifecycle;
  using State = H2Lifecycle::State;
  using After = H2Lifecycle::AfterRead;
  H2Lifecycle life;
  // Connecting: nothing to follow, nothing to probe, but calls may queue on it.
  CHECK(life.state() == State::connecting);
  auto steps = life.follow(false, true);
  CHECK_FALSE(steps.start_read);
  CHECK_FALSE(life.needs_probe());
  CHECK(life.accepting(true));
  REQUIRE(life.connected());
  CHECK_FALSE(life.connected());  // once

  // A call opens: read and arm the keepalive, once each.
  steps = life.follow(false, true);
  CHECK(steps.start_read);
  CHECK(steps.arm_keepalive);
  CHECK_FALSE(life.needs_probe());  // reading: what comes is seen
  steps = life.follow(false, true);
  CHECK_FALSE(steps.start_read);
  CHECK_FALSE(steps.arm_keepalive);
  CHECK(life.read_done(false, false) == After::receive);
  CHECK(life.follow(false, true).start_read);  // read on
  CHECK(life.keepalive_fired(false));          // a tick with calls open matters
  life.keepalive_rearmed();

  // Idle: the read is cancelled, the keepalive disarmed, the socket kept.
  steps = life.follow(true, true);
  CHECK(steps.cancel_read);
  CHECK(steps.disarm_keepalive);
  CHECK_FALSE(steps.close);
  CHECK(life.read_done(true, true) == After::follow);
  CHECK(life.needs_probe());  // nothing reads it now: probe before a new call
  CHECK_FALSE(life.follow(true, true).cancel_read);
  CHECK_FALSE(life.keepalive_fired(true));  // a late tick while idle is ignored

  // Without keepalive, nothing is armed.
  CHECK_FALSE(life.follow(false, false).arm_keepalive);
  CHECK(life.read_done(false, true) == After::fail);  // the server closed it
  REQUIRE(life.close());
  CHECK_FALSE(life.close());  // failing twice is one failure
  CHECK_FALSE(life.accepting(true));
  CHECK_FALSE(life.follow(false, true).start_read);

  // Detached: no new calls; it closes when its last call ends.
  H2Lifecycle d;
  d.connected();
  (void)d.follow(false, false);
  d.detach();
  CHECK_FALSE(d.accepting(true));
  CHECK_FALSE(d.follow(false, false).close);  // a call still open
  steps = d.follow(true, false);
  CHECK(steps.cancel_read);
  CHECK(steps.close);
  CHECK(d.state() == State::closed);
  CHECK(d.read_done(true, true) == After::ignore);

  // Spent stream ids, or a session that can start no stream: no new calls.
  H2Lifecycle e;
  e.connected();
  CHECK(e.accepting(true));
  CHECK_FALSE(e.accepting(false));
  e.exhaust();
  CHECK_FALSE(e.accepting(true));
}
