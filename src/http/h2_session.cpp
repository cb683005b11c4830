// gRPC calls over one HTTP/2 connection on nghttp2's memory interface (see h2_session.hpp).
#include "http/h2_session.hpp"
#include "core/wipe.hpp"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <deque>

namespace awaken::http::detail {

namespace {
// A request may carry a token (ValidateJWTSVID): wiped once sent or abandoned.
void wipe(std::string& request) noexcept {
  awaken::detail::wipe(request);
  std::string{}.swap(request);
}

H2Event make_event(H2Event::Kind kind, std::int32_t stream) {
  H2Event e;
  e.kind = kind;
  e.stream = stream;
  return e;
}
}  // namespace

struct H2Callbacks {
  static H2GrpcSession& self(void* user) { return *static_cast<H2GrpcSession*>(user); }

  static void emit(H2GrpcSession& s, H2Event e) {
    if (s.events_ != nullptr)
      s.events_->push_back(std::move(e));
    else
      s.later_.push_back(std::move(e));
  }

  static int on_header(nghttp2_session* /*session*/, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen, std::uint8_t /*flags*/,
                       void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    auto& s = self(user);
    auto it = s.calls_.find(frame->hd.stream_id);
    if (it == s.calls_.end()) return 0;
    H2GrpcSession::Call& call = it->second;
    std::string n{reinterpret_cast<const char*>(name), namelen};
    std::string v{reinterpret_cast<const char*>(value), valuelen};
    if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
      if (n == ":status") {
        call.http_status = 0;
        for (char c : v) call.http_status = call.http_status * 10 + (c - '0');  // nghttp2 checked it
      } else {
        call.headers.push_back({std::move(n), std::move(v)});
      }
    } else {
      call.trailers.push_back({std::move(n), std::move(v)});
    }
    return 0;
  }

  static bool is_grpc_response(const H2GrpcSession::Call& call) {
    if (call.http_status != 200) return false;
    for (const auto& h : call.headers)
      if (h.name == "content-type") return h.value.rfind("application/grpc", 0) == 0;
    return false;
  }

  static int on_data_chunk(nghttp2_session* session, std::uint8_t /*flags*/, std::int32_t stream,
                           const std::uint8_t* data, std::size_t len, void* user) {
    auto& s = self(user);
    auto it = s.calls_.find(stream);
    if (it == s.calls_.end() || it->second.failed) {  // nobody will take these bytes
      nghttp2_session_consume_connection(session, len);
      if (it != s.calls_.end()) nghttp2_session_consume(session, stream, 0);
      return 0;
    }
    H2GrpcSession::Call& call = it->second;
    if (!is_grpc_response(call)) {  // a proxy's error page, say: not frames; the status says what
      nghttp2_session_consume(session, stream, len);
      return 0;
    }
    std::deque<std::string> messages;
    const std::error_code ec = call.parser.feed({reinterpret_cast<const char*>(data), len}, messages);
    // Flow control follows the consumer: while a message of this call waits to be taken, no
    // stream credit is returned for the call's bytes; once the consumer has taken every message,
    // all of them are credited (so a message under way never waits for a credit the consumer
    // cannot give). The connection is credited at once: one slow reader must not stall the
    // other calls.
    nghttp2_session_consume_connection(session, len);
    call.withheld += len;
    for (auto& m : messages) {
      H2Event e = make_event(H2Event::Kind::message, stream);
      e.wire_bytes = m.size() + 5;
      e.message = std::move(m);
      ++call.untaken;
      emit(s, std::move(e));
    }
    if (call.untaken == 0) nghttp2_session_consume_stream(session, stream, std::exchange(call.withheld, 0));
    if (ec) {  // over the bound or not a gRPC frame: no more of this call is buffered
      call.failed = ec;
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream, NGHTTP2_CANCEL);
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session* /*session*/, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type != NGHTTP2_GOAWAY) return 0;
    auto& s = self(user);
    s.goaway_ = true;
    s.goaway_error_ = frame->goaway.error_code;
    H2Event e = make_event(H2Event::Kind::goaway, 0);
    e.last_stream = frame->goaway.last_stream_id;
    e.h2_error = frame->goaway.error_code;
    emit(s, std::move(e));
    return 0;
  }

  // nghttp2 reports a connection error here before it queues its GOAWAY.
  static int on_error(nghttp2_session* /*session*/, int lib_error_code, const char* /*msg*/, std::size_t /*len*/,
                      void* user) {
    if (lib_error_code == NGHTTP2_ERR_PROTO || lib_error_code == NGHTTP2_ERR_FRAME_SIZE_ERROR ||
        lib_error_code == NGHTTP2_ERR_FLOW_CONTROL || lib_error_code == NGHTTP2_ERR_BAD_CLIENT_MAGIC ||
        lib_error_code == NGHTTP2_ERR_SETTINGS_EXPECTED)
      self(user).connection_error_ = true;
    return 0;
  }

  static int on_stream_close(nghttp2_session* /*session*/, std::int32_t stream, std::uint32_t error_code, void* user) {
    self(user).finish(stream, error_code);
    return 0;
  }

  static ssize_t read_request(nghttp2_session* session, std::int32_t stream, std::uint8_t* buf, std::size_t length,
                              std::uint32_t* data_flags, nghttp2_data_source* /*source*/, void* user) {
    auto& s = self(user);
    auto it = s.calls_.find(stream);
    if (it == s.calls_.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    H2GrpcSession::Call& call = it->second;
    (void)session;
    const std::size_t n = std::min(length, call.request.size() - call.sent);
    std::memcpy(buf, call.request.data() + call.sent, n);
    call.sent += n;
    if (call.sent == call.request.size()) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      wipe(call.request);
      call.sent = 0;
    }
    return static_cast<ssize_t>(n);
  }
};

H2GrpcSession::H2GrpcSession(Options options) : options_(options) {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_option* opt = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0) throw std::bad_alloc{};
  nghttp2_session_callbacks_set_on_header_callback(cbs, H2Callbacks::on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, H2Callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, H2Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, H2Callbacks::on_stream_close);
  nghttp2_session_callbacks_set_error_callback2(cbs, H2Callbacks::on_error);
  nghttp2_option_set_no_auto_window_update(opt, 1);  // credit returns with consume()
  const int rv = nghttp2_session_client_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) throw std::bad_alloc{};
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.initial_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64u << 10},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(
      session_, NGHTTP2_FLAG_NONE, 0,
      static_cast<std::int32_t>(std::min<std::uint64_t>(std::uint64_t{options_.initial_window} * 4, INT32_MAX)));
}

H2GrpcSession::~H2GrpcSession() {
  for (auto& [stream, call] : calls_) wipe(call.request);
  nghttp2_session_del(session_);
}

std::int32_t H2GrpcSession::start(const H2Call& call, std::string_view message) {
  std::vector<Header> head{{":method", "POST"},
                           {":scheme", "http"},
                           {":path", call.path},
                           {":authority", call.authority},
                           {"content-type", "application/grpc"},
                           {"te", "trailers"}};
  if (call.timeout) head.push_back({"grpc-timeout", grpc_timeout_value(*call.timeout)});
  head.insert(head.end(), call.metadata.begin(), call.metadata.end());
  std::vector<nghttp2_nv> nva;
  nva.reserve(head.size());
  for (auto& h : head)
    nva.push_back({reinterpret_cast<std::uint8_t*>(h.name.data()), reinterpret_cast<std::uint8_t*>(h.value.data()),
                   h.name.size(), h.value.size(), NGHTTP2_NV_FLAG_NONE});  // nghttp2 copies them
  nghttp2_data_provider body{};
  body.read_callback = H2Callbacks::read_request;
  const std::int32_t stream = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), &body, nullptr);
  if (stream < 0)
    throw_error(http_errc::protocol_error, std::string{"HTTP/2: cannot start a call: "} + nghttp2_strerror(stream));
  auto [it, inserted] = calls_.try_emplace(stream, options_.max_message_bytes);
  it->second.request = grpc_frame(message);
  return stream;
}

std::error_code H2GrpcSession::receive(std::string_view bytes, std::vector<H2Event>& events) {
  for (auto& e : later_) events.push_back(std::move(e));
  later_.clear();
  if (dead_) return make_error_code(http_errc::protocol_error);
  events_ = &events;
  const ssize_t rv =
      nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  events_ = nullptr;
  // A fatal error makes nghttp2 either fail here or queue its GOAWAY and stop reading.
  if (rv < 0 || connection_error_ || (!goaway_ && nghttp2_session_want_read(session_) == 0)) {
    dead_ = true;
    return make_error_code(http_errc::protocol_error);
  }
  return {};
}

std::string H2GrpcSession::take_output() {
  std::string out;  // after a connection error, the GOAWAY that says so
  for (;;) {
    const std::uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      dead_ = true;
      break;
    }
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
  return out;
}

void H2GrpcSession::take_events(std::vector<H2Event>& events) {
  for (auto& e : later_) events.push_back(std::move(e));
  later_.clear();
}

void H2GrpcSession::fail_all(const std::string& why) {
  dead_ = true;
  for (auto& [stream, call] : calls_) {
    H2Event e = make_event(H2Event::Kind::finished, stream);
    e.status.code = call.failed ? call.failed : make_error_code(grpc_status::unavailable);
    e.status.message = why;
    later_.push_back(std::move(e));
  }
  for (auto& [stream, call] : calls_) wipe(call.request);
  calls_.clear();
}

std::string H2GrpcSession::goaway_text() const {
  if (!goaway_) return {};
  const std::string code = goaway_error_ == NGHTTP2_NO_ERROR ? "no error" : nghttp2_http2_strerror(goaway_error_);
  return "peer closed the connection (GOAWAY, " + code + ")";
}

void H2GrpcSession::taken(std::int32_t stream) {
  auto it = calls_.find(stream);
  if (it == calls_.end() || it->second.untaken == 0) return;  // finished: its bytes were credited
  Call& call = it->second;
  if (--call.untaken == 0 && call.withheld > 0)
    nghttp2_session_consume_stream(session_, stream, std::exchange(call.withheld, 0));
}

void H2GrpcSession::cancel(std::int32_t stream) {
  auto it = calls_.find(stream);
  if (it == calls_.end()) return;
  if (!it->second.failed) it->second.failed = make_error_code(grpc_status::cancelled);
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, NGHTTP2_CANCEL);
}

void H2GrpcSession::ping() { nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr); }

bool H2GrpcSession::broken() const noexcept {
  // nghttp2 reports most connection errors by queueing its GOAWAY and wanting no more input.
  return dead_ || connection_error_ || (!goaway_ && nghttp2_session_want_read(session_) == 0);
}

bool H2GrpcSession::usable() const noexcept {
  return !dead_ && !goaway_ && !connection_error_ && nghttp2_session_want_read(session_) != 0;
}

void H2GrpcSession::finish(std::int32_t stream, std::uint32_t h2_error) {
  auto it = calls_.find(stream);
  if (it == calls_.end()) return;
  Call& call = it->second;
  H2Event e = make_event(H2Event::Kind::finished, stream);
  e.h2_error = h2_error;
  if (call.failed) {
    e.status.code = call.failed;
    e.status.message = call.failed == grpc_status::cancelled ? "cancelled"
                       : call.failed == http_errc::message_too_large
                           ? "message larger than " + std::to_string(options_.max_message_bytes) + " bytes"
                           : "malformed or compressed message frame";
  } else if (h2_error == NGHTTP2_REFUSED_STREAM && goaway_) {  // above the GOAWAY's last stream
    e.status.code = make_error_code(grpc_status::unavailable);
    e.status.message = goaway_text();
  } else if (h2_error != NGHTTP2_NO_ERROR) {
    e.status.code = make_error_code(grpc_status::unavailable);
    e.status.message = std::string{"stream reset by the peer ("} + nghttp2_http2_strerror(h2_error) + ")";
  } else {
    e.status = grpc_final_status(call.http_status, call.headers, call.trailers);
    if (!e.status.code && call.parser.mid_message()) {
      e.status.code = make_error_code(grpc_status::internal);
      e.status.message = "stream ended inside a message";
    }
  }
  wipe(call.request);
  calls_.erase(it);
  H2Callbacks::emit(*this, std::move(e));
}

}  // namespace awaken::http::detail
