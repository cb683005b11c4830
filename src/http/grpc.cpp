#include <awaken/http/grpc.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include <asio/error.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>

#include "http/curl_engine.hpp"
#include "http/grpc_framing.hpp"

namespace awaken::http {
namespace detail {

// ---------------------------------------------------------------------------------------------
// Framing and status

std::error_code GrpcFrameParser::feed(std::string_view bytes, std::deque<std::string>& out) {
  if (failed_) return failed_;
  while (!bytes.empty()) {
    if (!in_payload_) {
      const std::size_t take = std::min(sizeof header_ - header_fill_, bytes.size());
      std::memcpy(header_ + header_fill_, bytes.data(), take);
      header_fill_ += take;
      bytes.remove_prefix(take);
      if (header_fill_ < sizeof header_) break;
      header_fill_ = 0;
      const std::size_t length = (std::size_t{header_[1]} << 24) | (std::size_t{header_[2]} << 16) |
                                 (std::size_t{header_[3]} << 8) | std::size_t{header_[4]};
      if (header_[0] == 1) return failed_ = grpc_status::internal;  // compressed: never negotiated
      if (header_[0] != 0) return failed_ = grpc_status::internal;
      if (length > max_) return failed_ = http_errc::message_too_large;
      expected_ = length;
      payload_.clear();
      payload_.reserve(std::min<std::size_t>(length, 64 * 1024));  // grows with the data, not the claim
      in_payload_ = true;
    }
    const std::size_t take = std::min(expected_ - payload_.size(), bytes.size());
    payload_.append(bytes.data(), take);
    bytes.remove_prefix(take);
    if (payload_.size() == expected_) {
      out.push_back(std::move(payload_));
      payload_ = std::string{};
      in_payload_ = false;
    }
  }
  return {};
}

std::string grpc_frame(std::string_view message) {
  std::string out(5, '\0');
  const auto n = static_cast<std::uint32_t>(message.size());
  out[1] = static_cast<char>(n >> 24);
  out[2] = static_cast<char>(n >> 16);
  out[3] = static_cast<char>(n >> 8);
  out[4] = static_cast<char>(n);
  out.append(message);
  return out;
}

std::string grpc_timeout_value(std::chrono::milliseconds deadline) {
  // At most eight digits (gRPC's rule): the largest unit that keeps the value that short.
  const long long ms = std::max<long long>(deadline.count(), 1);
  if (ms < 100'000'000) return std::to_string(ms) + "m";
  if (ms / 1000 < 100'000'000) return std::to_string(ms / 1000) + "S";
  if (ms / 60'000 < 100'000'000) return std::to_string(ms / 60'000) + "M";
  return std::to_string(std::min<long long>(ms / 3'600'000, 99'999'999)) + "H";
}

std::string percent_decode(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      const int hi = hex(text[i + 1]);
      const int lo = hex(text[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

namespace {

const Header* find_header(const std::vector<Header>& fields, std::string_view name) {
  for (const auto& h : fields)
    if (h.name == name) return &h;
  return nullptr;
}

grpc_status from_http_status(int status) {
  switch (status) {
    case 400: return grpc_status::internal;
    case 401: return grpc_status::unauthenticated;
    case 403: return grpc_status::permission_denied;
    case 404: return grpc_status::unimplemented;
    case 429:
    case 502:
    case 503:
    case 504: return grpc_status::unavailable;
    default: return grpc_status::unknown;
  }
}

constexpr std::size_t max_status_message = 1024;

}  // namespace

GrpcFinalStatus grpc_final_status(int http_status, const std::vector<Header>& headers,
                                  const std::vector<Header>& trailers) {
  if (http_status != 200) return {from_http_status(http_status), "HTTP status " + std::to_string(http_status)};
  const Header* content_type = find_header(headers, "content-type");
  if (content_type == nullptr || content_type->value.rfind("application/grpc", 0) != 0)
    return {grpc_status::unknown, "response is not gRPC (content-type)"};
  // Trailers normally; the headers of a trailers-only response otherwise.
  const std::vector<Header>* block = &trailers;
  const Header* status = find_header(trailers, "grpc-status");
  if (status == nullptr) {
    block = &headers;
    status = find_header(headers, "grpc-status");
  }
  if (status == nullptr) return {grpc_status::internal, "server sent no grpc-status"};
  const std::string& v = status->value;
  if (v.empty() || v.size() > 2 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return {grpc_status::unknown, "malformed grpc-status"};
  const int code = std::stoi(v);
  GrpcFinalStatus out;
  if (const Header* message = find_header(*block, "grpc-message"))
    out.message = bounded_excerpt(percent_decode(message->value), max_status_message);
  if (code > static_cast<int>(grpc_status::unauthenticated)) {
    out.code = grpc_status::unknown;
  } else if (code != 0) {
    out.code = static_cast<grpc_status>(code);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// One call

class GrpcCall final : public Transfer {
 public:
  using ReadCompletion = awaken::Completion<std::error_code, std::optional<std::string>>;

  GrpcCall(std::shared_ptr<Engine> engine, std::string path, std::size_t max_message)
      : engine_(engine),
        strand_(engine->strand()),
        path_(std::move(path)),
        parser_(max_message),
        high_water_bytes_(std::max<std::size_t>(max_message, 64 * 1024)) {}

  // The strand outlives the engine, so reads can always be queued on it.
  const asio::strand<asio::any_io_executor>& strand() const noexcept { return strand_; }

  // The engine, or null once the client that ran the call is gone.
  std::shared_ptr<Engine> engine() const noexcept { return engine_.lock(); }
  const std::string& path() const noexcept { return path_; }

  // Ends the call before it starts (the request was refused locally).
  void fail_now(std::error_code ec, std::string message) {
    ended_ = true;
    final_ = ec;
    set_status_message(std::move(message));
  }

  std::string status_message() const {
    std::lock_guard lock{message_mutex_};
    return status_message_;
  }

  // On the strand. Returns the reader's ticket, for detach_reader.
  std::uint64_t add_reader(std::unique_ptr<ReadCompletion> reader) {
    if (reader_) {
      reader->complete(asio::error::already_started, std::nullopt);
      return 0;
    }
    reader_ = std::move(reader);
    const std::uint64_t ticket = ++reader_ticket_;
    deliver();
    return ticket;
  }

  // On the strand: a read cancelled without ending the stream (nothing was consumed).
  void detach_reader(std::uint64_t ticket) {
    if (reader_ && ticket == reader_ticket_)
      std::exchange(reader_, nullptr)->complete(asio::error::operation_aborted, std::nullopt);
  }

  void drop_handlers() noexcept override { reader_.reset(); }

  std::size_t on_body(const char* data, std::size_t size) override {
    if (ended_) return 0;
    // Not a gRPC response (a proxy's error page, say): its body is not frames; the status is
    // decided from the headers when the transfer ends.
    if (!is_grpc_response()) return size;
    if (queued_bytes_ >= high_water_bytes_ || messages_.size() >= high_water_messages) {
      paused_ = true;
      return CURL_WRITEFUNC_PAUSE;  // curl keeps the bytes and offers them again on resume
    }
    const std::size_t before = messages_.size();
    const auto ec = parser_.feed({data, size}, messages_);
    for (std::size_t i = before; i < messages_.size(); ++i) queued_bytes_ += messages_[i].size();
    if (ec) {
      framing_error_ = ec;
      return 0;
    }
    deliver();
    return size;
  }

  void on_done(CURLcode result, std::error_code aborted) override {
    std::string message;
    if (aborted) {
      final_ = aborted == asio::error::operation_aborted ? aborted : make_error_code(grpc_status::cancelled);
      if (aborted == http_errc::shut_down) message = "HTTP client shut down";
    } else if (framing_error_) {
      final_ = framing_error_;
      message = framing_error_ == http_errc::message_too_large ? "message larger than allowed"
                                                               : "malformed or compressed message frame";
    } else if (result != CURLE_OK && !has_grpc_status()) {
      // A transport failure after the server's status was received (a reset after trailers, a
      // send error after an early reply) keeps the server's word below.
      const std::error_code ec = too_large_ ? make_error_code(http_errc::response_too_large) : to_error_code(result);
      final_ = ec == http_errc::timeout              ? grpc_status::deadline_exceeded
               : ec == http_errc::response_too_large ? make_error_code(http_errc::message_too_large)
                                                     : grpc_status::unavailable;
      message = "transport: " + ec.message();
      if (auto d = diagnostic(); !d.empty()) message += " (" + d + ")";
    } else {
      auto status = grpc_final_status(status_, headers_, trailers_);
      final_ = status.code;
      message = std::move(status.message);
      if (!final_ && parser_.mid_message()) {
        final_ = grpc_status::internal;
        message = "stream ended inside a message";
      }
    }
    set_status_message(std::move(message));
    ended_ = true;
    deliver();
  }

 private:
  bool has_grpc_status() const {
    return find_header(trailers_, "grpc-status") != nullptr || find_header(headers_, "grpc-status") != nullptr;
  }

  bool is_grpc_response() const {
    const Header* content_type = find_header(headers_, "content-type");
    return status_ == 200 && content_type != nullptr && content_type->value.rfind("application/grpc", 0) == 0;
  }

  static constexpr std::size_t high_water_messages = 64;

  void set_status_message(std::string message) {
    std::lock_guard lock{message_mutex_};
    status_message_ = std::move(message);
  }

  void deliver() {
    if (!reader_) return;
    if (!messages_.empty()) {
      std::string message = std::move(messages_.front());
      messages_.pop_front();
      queued_bytes_ -= message.size();
      std::exchange(reader_, nullptr)->complete({}, std::move(message));
      if (paused_ && !ended_ && queued_bytes_ <= high_water_bytes_ / 4 && messages_.size() <= high_water_messages / 4) {
        paused_ = false;
        if (auto engine = engine_.lock()) engine->resume(shared_from_this());
      }
      return;
    }
    if (ended_) std::exchange(reader_, nullptr)->complete(final_, std::nullopt);
  }

  std::weak_ptr<Engine> engine_;  // weak: the engine owns running calls
  asio::strand<asio::any_io_executor> strand_;
  std::string path_;
  GrpcFrameParser parser_;
  std::size_t high_water_bytes_;
  std::size_t queued_bytes_ = 0;
  std::deque<std::string> messages_;
  std::unique_ptr<ReadCompletion> reader_;
  std::uint64_t reader_ticket_ = 0;
  bool paused_ = false;
  bool ended_ = false;
  std::error_code final_;
  std::error_code framing_error_;
  mutable std::mutex message_mutex_;
  std::string status_message_;
};

namespace {
using ReadCompletionPtr = std::unique_ptr<awaken::Completion<std::error_code, std::optional<std::string>>>;

// Puts the method and the server's `grpc-message` in the diagnostics of a failed read.
class DiagnosedRead final : public ForwardingCompletion<awaken::Completion<std::error_code, std::optional<std::string>>,
                                                        std::error_code, std::optional<std::string>> {
 public:
  // The call is held weakly: this may die on the handler's executor after the call's own
  // execution context is gone.
  DiagnosedRead(const std::shared_ptr<GrpcCall>& call, ReadCompletionPtr inner)
      : ForwardingCompletion(std::move(inner)), call_(call) {}
  void complete(std::error_code ec, std::optional<std::string> message) override {
    diagnose(ec);
    inner_->complete(ec, std::move(message));
  }
  void invoke(std::error_code ec, std::optional<std::string> message) override {
    diagnose(ec);
    inner_->invoke(ec, std::move(message));
  }

 private:
  void diagnose(std::error_code ec) {
    if (!ec) return;
    if (auto call = call_.lock())
      inner_->set_diagnostics(Diagnostics{"gRPC " + call->path(), {0, call->status_message()}});
    else
      inner_->set_diagnostics(Diagnostics{"gRPC call", {}});
  }
  std::weak_ptr<GrpcCall> call_;
};
}  // namespace

void start_grpc_read(const std::shared_ptr<GrpcCall>& call, ReadCompletionPtr completion) {
  if (completion->diagnostics() != nullptr) completion = std::make_unique<DiagnosedRead>(call, std::move(completion));
  auto slot = completion->cancellation_slot();
  auto ticket = std::make_shared<std::atomic<std::uint64_t>>(0);
  if (slot.is_connected()) {
    slot.assign([weak = std::weak_ptr<GrpcCall>(call), ticket](asio::cancellation_type type) {
      auto c = weak.lock();
      if (!c) return;
      if ((type & asio::cancellation_type::terminal) != asio::cancellation_type::none) {
        if (auto engine = c->engine()) engine->abandon(c, asio::error::operation_aborted);  // resets the stream
      } else if (type != asio::cancellation_type::none) {
        // Partial or total: only this read ends; the stream and its queued messages stay.
        asio::post(c->strand(), [c, ticket] { c->detach_reader(ticket->load()); });
      }
    });
  }
  asio::post(call->strand(),
             [call, ticket, c = std::move(completion)]() mutable { ticket->store(call->add_reader(std::move(c))); });
}

namespace {

bool valid_method_path(std::string_view path) {
  // No "." or ".." segments: curl would normalise them into another method's path.
  return path.size() > 1 && path.front() == '/' && path.find("/.") == std::string_view::npos &&
         std::all_of(path.begin(), path.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' || c == '.' ||
                  c == '_' || c == '-';
         });
}

}  // namespace
}  // namespace detail

// -------------------------------------------------------------------------------------------------

GrpcTarget GrpcTarget::unix_socket(std::string path) { return GrpcTarget{std::move(path), "localhost"}; }

GrpcTarget GrpcTarget::tcp(std::string host, std::uint16_t port) {
  // Host names, IPv4 and bracketed IPv6 only: nothing that would change the URL around it.
  const bool valid = !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
           c == ':' || c == '[' || c == ']';
  });
  if (!valid) throw_error(grpc_status::invalid_argument, "gRPC target", {0, "invalid host", {}});
  return GrpcTarget{{}, std::move(host) + ":" + std::to_string(port)};
}

GrpcStream::GrpcStream(std::shared_ptr<detail::GrpcCall> call, asio::any_io_executor executor) noexcept
    : call_(std::move(call)), executor_(std::move(executor)) {}

GrpcStream::GrpcStream(GrpcStream&&) noexcept = default;

GrpcStream& GrpcStream::operator=(GrpcStream&& other) noexcept {
  if (this != &other) {
    cancel();
    call_ = std::move(other.call_);
    executor_ = std::move(other.executor_);
  }
  return *this;
}

GrpcStream::~GrpcStream() { cancel(); }

void GrpcStream::cancel() noexcept {
  if (!call_) return;
  try {
    if (auto engine = call_->engine()) engine->abandon(call_, asio::error::operation_aborted);
  } catch (...) {  // posting fails only without memory; the call then ends with its context
  }
}

std::string GrpcStream::status_message() const { return call_ ? call_->status_message() : std::string{}; }

GrpcChannel::GrpcChannel(HttpClient client, GrpcTarget target, GrpcChannelOptions options)
    : client_(std::move(client)), target_(std::move(target)), options_(std::move(options)) {}

GrpcStream GrpcChannel::server_stream(std::string method_path, std::string request, GrpcCallOptions options) const {
  const auto& state = client_.state();
  auto call = std::make_shared<detail::GrpcCall>(state->engine_ptr(), method_path, options_.max_message_bytes);
  if (!detail::valid_method_path(method_path)) {
    call->fail_now(grpc_status::invalid_argument, "invalid method path");
    return GrpcStream{std::move(call), client_.get_executor()};
  }
  if (request.size() > options_.max_message_bytes) {
    call->fail_now(http_errc::message_too_large, "request message larger than allowed");
    return GrpcStream{std::move(call), client_.get_executor()};
  }
  HttpRequest req;
  req.method = "POST";
  req.url = "http://" + target_.authority + method_path;
  req.unix_socket_path = target_.unix_path;
  req.version = HttpVersion::http2_prior_knowledge;
  req.headers = {{"content-type", "application/grpc"}, {"te", "trailers"}};
  if (options.deadline) {
    req.headers.push_back({"grpc-timeout", detail::grpc_timeout_value(*options.deadline)});
    req.timeout = std::max(*options.deadline, std::chrono::milliseconds{1});
  }
  req.headers.insert(req.headers.end(), options_.metadata.begin(), options_.metadata.end());
  req.headers.insert(req.headers.end(), options.metadata.begin(), options.metadata.end());
  req.body = detail::grpc_frame(request);
  std::error_code ec;
  if (!call->configure(req, state->options(), ec)) {
    call->fail_now(grpc_status::invalid_argument, "invalid request: " + ec.message());
  } else {
    // Streams may live for days: no total time unless a deadline was given, and no total size
    // (each message is bounded instead).
    if (!options.deadline) curl_easy_setopt(call->easy(), CURLOPT_TIMEOUT_MS, 0L);
    curl_easy_setopt(call->easy(), CURLOPT_MAXFILESIZE_LARGE, curl_off_t{0});
    state->engine().start(call);
  }
  return GrpcStream{std::move(call), client_.get_executor()};
}

asio::awaitable<std::string> GrpcChannel::run_unary(GrpcChannel channel, std::string method_path, std::string request,
                                                    GrpcCallOptions options) {
  auto stream = channel.server_stream(method_path, std::move(request), std::move(options));
  std::optional<std::string> reply;
  while (auto message = co_await stream.read()) {
    if (reply) throw_error(grpc_status::internal, "gRPC " + method_path, {0, "more than one response message", {}});
    reply = std::move(message);
  }
  if (!reply) throw_error(grpc_status::internal, "gRPC " + method_path, {0, "no response message", {}});
  co_return std::move(*reply);
}

}  // namespace awaken::http
