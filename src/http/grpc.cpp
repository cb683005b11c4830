#include <awaken/http/grpc.hpp>

#include <algorithm>
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
      if (length > max_) return failed_ = grpc_status::resource_exhausted;
      expected_ = length;
      payload_.clear();
      payload_.reserve(length);
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
  if (http_status != 200)
    return {from_http_status(http_status), "HTTP status " + std::to_string(http_status)};
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
  using ReadCompletion = awaken::detail::Completion<std::error_code, std::optional<std::string>>;

  GrpcCall(std::shared_ptr<Engine> engine, std::string path, std::size_t max_message)
      : engine_(std::move(engine)), path_(std::move(path)), parser_(max_message) {}

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

  // On the strand.
  void add_reader(std::unique_ptr<ReadCompletion> reader) {
    if (reader_) {
      reader->complete(asio::error::already_started, std::nullopt);
      return;
    }
    reader_ = std::move(reader);
    deliver();
  }

  void drop_handlers() noexcept override { reader_.reset(); }

  std::size_t on_body(const char* data, std::size_t size) override {
    if (ended_) return 0;
    // Not a gRPC response (a proxy's error page, say): its body is not frames; the status is
    // decided from the headers when the transfer ends.
    if (!is_grpc_response()) return size;
    if (messages_.size() >= high_water) {
      paused_ = true;
      return CURL_WRITEFUNC_PAUSE;  // curl keeps the bytes and offers them again on resume
    }
    if (auto ec = parser_.feed({data, size}, messages_)) {
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
      message = framing_error_ == grpc_status::resource_exhausted ? "message larger than allowed"
                                                                  : "malformed or compressed message frame";
    } else if (result != CURLE_OK) {
      const std::error_code ec = too_large_ ? make_error_code(http_errc::response_too_large) : to_error_code(result);
      final_ = ec == http_errc::timeout              ? grpc_status::deadline_exceeded
               : ec == http_errc::response_too_large ? grpc_status::resource_exhausted
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
  bool is_grpc_response() const {
    if (status_ != 200) return false;
    for (const auto& h : headers_)
      if (h.name == "content-type") return h.value.rfind("application/grpc", 0) == 0;
    return false;
  }

  static constexpr std::size_t high_water = 16;
  static constexpr std::size_t low_water = 4;

  void set_status_message(std::string message) {
    std::lock_guard lock{message_mutex_};
    status_message_ = std::move(message);
  }

  void deliver() {
    if (!reader_) return;
    if (!messages_.empty()) {
      std::string message = std::move(messages_.front());
      messages_.pop_front();
      std::exchange(reader_, nullptr)->complete({}, std::move(message));
      if (paused_ && messages_.size() <= low_water && !ended_) {
        paused_ = false;
        if (auto engine = engine_.lock()) engine->resume(shared_from_this());
      }
      return;
    }
    if (ended_) std::exchange(reader_, nullptr)->complete(final_, std::nullopt);
  }

  std::weak_ptr<Engine> engine_;  // weak: the engine owns running calls
  std::string path_;
  GrpcFrameParser parser_;
  std::deque<std::string> messages_;
  std::unique_ptr<ReadCompletion> reader_;
  bool paused_ = false;
  bool ended_ = false;
  std::error_code final_;
  std::error_code framing_error_;
  mutable std::mutex message_mutex_;
  std::string status_message_;
};

void start_grpc_read(const std::shared_ptr<GrpcCall>& call,
                     std::unique_ptr<awaken::detail::Completion<std::error_code, std::optional<std::string>>> completion) {
  auto engine = call->engine();
  if (!engine) {  // the client is gone, and with it every call it ran
    completion->complete(make_error_code(grpc_status::cancelled), std::nullopt);
    return;
  }
  abandon_on_cancel(completion->cancellation_slot(), engine, call);
  asio::post(engine->strand(), [call, c = std::move(completion)]() mutable { call->add_reader(std::move(c)); });
}

namespace {

bool valid_method_path(std::string_view path) {
  return path.size() > 1 && path.front() == '/' &&
         std::all_of(path.begin(), path.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '/' || c == '.' || c == '_' || c == '-';
         });
}

asio::awaitable<std::optional<std::string>> read_from(std::shared_ptr<GrpcCall> call, asio::any_io_executor ex) {
  auto token = asio::experimental::as_tuple(asio::use_awaitable);
  auto [ec, message] = co_await asio::async_initiate<decltype(token), void(std::error_code, std::optional<std::string>)>(
      [&call, &ex](auto handler) {
        start_grpc_read(call, awaken::detail::make_completion<std::error_code, std::optional<std::string>>(
                                  std::move(handler), ex));
      },
      token);
  if (ec) {
    ErrorDetails details;
    details.server_message = call->status_message();
    throw_error(ec, "gRPC " + call->path(), std::move(details));
  }
  co_return std::move(message);
}

}  // namespace
}  // namespace detail

// -------------------------------------------------------------------------------------------------

GrpcTarget GrpcTarget::unix_socket(std::string path) { return GrpcTarget{std::move(path), "localhost"}; }

GrpcTarget GrpcTarget::tcp(std::string host, std::uint16_t port) {
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
  if (auto engine = call_->engine()) engine->abandon(call_, asio::error::operation_aborted);
}

std::string GrpcStream::status_message() const { return call_ ? call_->status_message() : std::string{}; }

asio::awaitable<std::optional<std::string>> GrpcStream::read() { return detail::read_from(call_, executor_); }

GrpcChannel::GrpcChannel(HttpClient client, GrpcTarget target, GrpcChannelOptions options)
    : client_(std::move(client)), target_(std::move(target)), options_(std::move(options)) {}

GrpcStream GrpcChannel::server_stream(std::string method_path, std::string request, GrpcCallOptions options) const {
  const auto& state = client_.state();
  auto call = std::make_shared<detail::GrpcCall>(state->engine_ptr(), method_path, options_.max_message_bytes);
  if (!detail::valid_method_path(method_path)) {
    call->fail_now(grpc_status::invalid_argument, "invalid method path");
    return GrpcStream{std::move(call), client_.get_executor()};
  }
  HttpRequest req;
  req.method = "POST";
  req.url = "http://" + target_.authority + method_path;
  req.unix_socket_path = target_.unix_path;
  req.version = HttpVersion::http2_prior_knowledge;
  req.headers = {{"content-type", "application/grpc"}, {"te", "trailers"}};
  if (options.deadline) {
    req.headers.push_back({"grpc-timeout", std::to_string(std::max<long long>(options.deadline->count(), 1)) + "m"});
    req.timeout = *options.deadline;
  } else {
    req.timeout = std::chrono::milliseconds{0};  // no limit: streams may live for days
  }
  req.headers.insert(req.headers.end(), options_.metadata.begin(), options_.metadata.end());
  req.headers.insert(req.headers.end(), options.metadata.begin(), options.metadata.end());
  req.body = detail::grpc_frame(request);
  std::error_code ec;
  if (!call->configure(req, state->options(), ec)) {
    call->fail_now(grpc_status::invalid_argument, "invalid request: " + ec.message());
  } else {
    state->engine().start(call);
  }
  return GrpcStream{std::move(call), client_.get_executor()};
}

namespace {
asio::awaitable<std::string> unary_call(GrpcChannel channel, std::string method_path, std::string request,
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
}  // namespace

asio::awaitable<std::string> GrpcChannel::unary(std::string method_path, std::string request,
                                                GrpcCallOptions options) const {
  return unary_call(*this, std::move(method_path), std::move(request), std::move(options));
}

}  // namespace awaken::http
