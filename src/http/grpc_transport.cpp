// GrpcChannel's transport: the HTTP/2 connection and the channel's shared core (see
// grpc_transport.hpp); the calls are grpc_call.cpp's.
#include "http/grpc_transport.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/error.hpp>
#include <asio/execution/context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/query.hpp>
#include <asio/write.hpp>

namespace awaken::http::detail {
namespace {

constexpr std::size_t read_chunk = 64 * 1024;

std::string millis(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

GrpcFinalStatus unavailable(std::string why) { return {make_error_code(grpc_status::unavailable), std::move(why)}; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// H2Connection

H2Connection::H2Connection(Strand strand, const GrpcTarget& target, const GrpcChannelOptions& options)
    : strand_(std::move(strand)),
      target_(target),
      server_name_(options.server_name),
      connect_timeout_(options.connect_timeout),
      keepalive_(options.keepalive_interval, options.keepalive_timeout, target.unix_path.empty()),
      socket_(strand_),
      timer_(strand_),
      session_(H2GrpcSession::Options{options.max_message_bytes}),
      in_(new char[read_chunk]) {}

std::string H2Connection::where() const {
  return server_name_ + " at " + (target_.unix_path.empty() ? target_.authority : target_.unix_path);
}

std::string H2Connection::connect_failure(std::error_code ec) const {
  // Asio's own system category: compared by value, as std::errc would not match it.
  const bool system = ec.category() == asio::system_category();
  if (!target_.unix_path.empty() && system && ec.value() == ENOENT)
    return "no " + server_name_ + " socket at " + target_.unix_path + " (" + ec.message() + ")";
  if (ec == asio::error::connection_refused) return where() + ": connection refused";
  return where() + ": cannot connect (" + ec.message() + ")";
}

void H2Connection::open() {
  auto self = shared_from_this();
  timer_.expires_after(connect_timeout_);
  timer_.async_wait([self](std::error_code ec) {
    if (ec || self->life_.state() != State::connecting) return;
    self->fail(self->where() + ": no connection within " + millis(self->connect_timeout_));
  });
  if (!target_.unix_path.empty()) {
    socket_.async_connect(asio::local::stream_protocol::endpoint{target_.unix_path},
                          [self](std::error_code ec) { self->on_connected(ec); });
    return;
  }
  // "host:port", the host maybe a bracketed IPv6 address or a name.
  const auto colon = target_.authority.rfind(':');
  std::string host = target_.authority.substr(0, colon);
  const std::string port = target_.authority.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  std::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (!ec) {
    std::uint16_t port_number = 0;
    std::from_chars(port.data(), port.data() + port.size(), port_number);
    socket_.async_connect(asio::ip::tcp::endpoint{address, port_number},
                          [self](std::error_code e) { self->on_connected(e); });
    return;
  }
  resolver_.emplace(strand_);
  resolver_->async_resolve(host, port, [self](std::error_code e, const asio::ip::tcp::resolver::results_type& found) {
    if (self->life_.state() != State::connecting) return;
    if (e || found.empty()) {
      self->fail(self->where() + ": cannot resolve the host (" + (e ? e.message() : std::string{"no address"}) + ")");
      return;
    }
    for (const auto& entry : found) self->candidates_.emplace_back(entry.endpoint());
    self->connect_next(0);
  });
}

void H2Connection::connect_next(std::size_t i) {
  socket_.async_connect(candidates_[i], [self = shared_from_this(), i](std::error_code ec) {
    if (ec && ec != asio::error::operation_aborted && i + 1 < self->candidates_.size() &&
        self->life_.state() == State::connecting) {
      std::error_code ignored;
      self->socket_.close(ignored);
      self->connect_next(i + 1);  // the next address the name resolved to
      return;
    }
    self->on_connected(ec);
  });
}

void H2Connection::on_connected(std::error_code ec) {
  if (life_.state() != State::connecting) return;  // failed meanwhile (the connect timeout)
  if (ec) {
    fail(connect_failure(ec));
    return;
  }
  std::error_code ignored;
  timer_.cancel();
  life_.connected();
  if (target_.unix_path.empty()) socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  socket_.non_blocking(true, ignored);  // for the idle probe's reads
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& weak : queued)
    if (auto call = weak.lock()) start_call(call);
  flush_session();
  follow_calls();
}

void H2Connection::start_call(const std::shared_ptr<GrpcCall>& call) {
  std::int32_t stream = 0;
  try {
    stream = session_.start(call->head(), call->request());
  } catch (const std::exception&) {  // stream ids exhausted: this connection takes no more calls
    life_.exhaust();
    call->on_finished(unavailable("the connection to " + server_name_ + " can start no more calls"));
    return;
  }
  call->release_request();
  calls_[stream] = call;
  call->on_started(stream);
}

void H2Connection::submit(const std::shared_ptr<GrpcCall>& call) {
  auto self = shared_from_this();
  call->on_queued(self);
  switch (life_.state()) {
    case State::connecting: queued_.push_back(call); return;
    case State::closed: call->on_finished(unavailable(failure_)); return;
    case State::open:
      start_call(call);
      flush_session();
      follow_calls();
      return;
  }
}

void H2Connection::drop(const GrpcCall& call) {
  auto self = shared_from_this();
  if (call.stream() == 0) {
    std::erase_if(queued_, [&](const std::weak_ptr<GrpcCall>& w) {
      auto c = w.lock();
      return !c || c.get() == &call;
    });
  } else if (calls_.erase(call.stream()) > 0 && life_.state() == State::open) {
    session_.cancel(call.stream());
    flush_session();
  }
  follow_calls();
}

void H2Connection::taken(std::int32_t stream) {
  if (life_.state() != State::open) return;
  session_.taken(stream);
  flush_session();
}

void H2Connection::probe() {
  if (!life_.needs_probe()) return;
  // Idle, so nothing has been read lately: did the server close or say GOAWAY meanwhile?
  while (life_.state() == State::open) {
    std::error_code ec;
    const std::size_t n = socket_.read_some(asio::buffer(in_.get(), read_chunk), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) return;
    if (ec) {
      fail(ec == asio::error::eof ? closed_text() : server_name_ + ": connection lost (" + ec.message() + ")");
      return;
    }
    receive(n);
  }
}

bool H2Connection::accepting() const { return life_.accepting(session_.usable()); }

void H2Connection::detach() {
  life_.detach();
  follow_calls();
}

std::string H2Connection::closed_text() const {
  std::string text = session_.goaway_text();
  return text.empty() ? server_name_ + " closed the connection" : text;
}

void H2Connection::start_read() {
  socket_.async_read_some(
      asio::buffer(in_.get(), read_chunk),
      asio::bind_cancellation_slot(read_cancel_.slot(), [self = shared_from_this()](std::error_code ec, std::size_t n) {
        self->on_read(ec, n);
      }));
}

void H2Connection::on_read(std::error_code ec, std::size_t n) {
  switch (life_.read_done(ec == asio::error::operation_aborted, bool(ec))) {
    case H2Lifecycle::AfterRead::ignore: return;
    case H2Lifecycle::AfterRead::follow: break;  // went idle; calls may have come since
    case H2Lifecycle::AfterRead::fail:
      fail(ec == asio::error::eof ? closed_text() : server_name_ + ": connection lost (" + ec.message() + ")");
      return;
    case H2Lifecycle::AfterRead::receive: receive(n); break;
  }
  follow_calls();
}

void H2Connection::receive(std::size_t n) {
  keepalive_.heard();
  (void)session_.receive({in_.get(), n}, events_);  // a broken session is failed by flush_session()
  flush_session();
}

void H2Connection::flush_session() {
  if (flushing_) {
    reflush_ = true;
    return;
  }
  auto self = shared_from_this();
  flushing_ = true;
  bool broken = false;
  do {
    reflush_ = false;
    if (life_.state() != State::closed) {
      out_ += session_.take_output();
      session_.take_events(events_);
      broken = session_.broken();
    }
    std::vector<H2Event> events = std::move(events_);
    events_.clear();
    dispatch(events);
  } while (reflush_ || !events_.empty());
  flushing_ = false;
  if (broken && life_.state() != State::closed) {
    fail(server_name_ + " broke the HTTP/2 protocol");
    return;
  }
  write();
}

void H2Connection::dispatch(std::vector<H2Event>& events) {
  for (auto& e : events) {
    if (e.kind == H2Event::Kind::goaway) continue;  // the session stops accepting; the channel moves on
    auto it = calls_.find(e.stream);
    std::shared_ptr<GrpcCall> call = it == calls_.end() ? nullptr : it->second.lock();
    if (e.kind == H2Event::Kind::message) {
      if (call)
        call->on_message(std::move(e.message));
      else if (life_.state() != State::closed)
        session_.taken(e.stream);  // nobody will read it
    } else {
      if (it != calls_.end()) calls_.erase(it);
      if (call) call->on_finished(e.status);
    }
  }
}

void H2Connection::write() {
  if (writing_in_flight_ || life_.state() != State::open || out_.empty()) return;
  writing_ = std::move(out_);
  out_.clear();
  writing_in_flight_ = true;
  asio::async_write(socket_, asio::buffer(writing_), [self = shared_from_this()](std::error_code ec, std::size_t) {
    self->writing_in_flight_ = false;
    self->writing_.clear();
    if (self->life_.state() == State::closed) return;
    if (ec) {
      self->fail(self->server_name_ + ": connection lost (" + ec.message() + ")");
      return;
    }
    self->write();
  });
}

void H2Connection::fail(const std::string& why) {
  if (!life_.close()) return;
  auto self = shared_from_this();
  failure_ = why;
  session_.fail_all(why);
  session_.take_events(events_);
  for (auto& weak : std::exchange(queued_, {}))
    if (auto call = weak.lock()) call->on_finished(unavailable(why));
  close_socket();
  flush_session();
}

void H2Connection::close_socket() {
  std::error_code ignored;
  if (!writing_in_flight_ && !out_.empty() && socket_.is_open())  // best effort: the GOAWAY saying why
    socket_.write_some(asio::buffer(out_), ignored);
  timer_.cancel();
  if (resolver_) resolver_->cancel();
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
  socket_.close(ignored);
}

void H2Connection::follow_calls() {
  const auto steps = life_.follow(idle(), keepalive_.enabled());
  if (steps.start_read) start_read();
  if (steps.arm_keepalive) arm_keepalive(keepalive_.interval());
  // Idle: nothing pending, so no CPU and no reason for run() to wait; or closed when no one
  // will call again.
  if (steps.cancel_read) read_cancel_.emit(asio::cancellation_type::terminal);
  if (steps.disarm_keepalive) {
    timer_.cancel();
    keepalive_.reset();
  }
  if (steps.close) close_socket();
}

void H2Connection::arm_keepalive(std::chrono::milliseconds after) {
  timer_.expires_after(after);
  timer_.async_wait([self = shared_from_this()](std::error_code ec) {
    if (!ec) self->keepalive_tick();
  });
}

void H2Connection::keepalive_tick() {
  if (!life_.keepalive_fired(idle())) return;
  const auto step = keepalive_.on_timer();
  switch (step.act) {
    case KeepalivePolicy::Act::give_up:
      fail(server_name_ + " did not answer a keepalive PING within " + millis(keepalive_.timeout()));
      return;
    case KeepalivePolicy::Act::ping:
      session_.ping();
      flush_session();
      break;
    case KeepalivePolicy::Act::wait: break;
  }
  life_.keepalive_rearmed();
  arm_keepalive(step.wait);
}

// ---------------------------------------------------------------------------------------------
// ChannelCore

ChannelCore::ChannelCore(const asio::any_io_executor& executor, GrpcTarget target, GrpcChannelOptions options)
    : strand_(asio::make_strand(executor)),
      target_(std::move(target)),
      options_(std::move(options)),
      registry_(CallRegistry::of(executor)) {}

ChannelCore::~ChannelCore() {
  if (!current_) return;
  try {
    asio::post(strand_, [connection = std::move(current_)] { connection->detach(); });
  } catch (...) {  // only without memory: the connection then closes with its last call
  }
}

void ChannelCore::start(std::shared_ptr<GrpcCall> call) {
  call->enrol(registry_);
  asio::post(strand_, [self = shared_from_this(), call = std::move(call)] {
    call->arm_deadline();
    if (self->current_ && self->current_->accepting()) self->current_->probe();
    if (!self->current_ || !self->current_->accepting()) {
      if (self->current_) self->current_->detach();
      self->current_ = std::make_shared<H2Connection>(self->strand_, self->target_, self->options_);
      self->current_->open();
    }
    self->current_->submit(call);
  });
}

}  // namespace awaken::http::detail
