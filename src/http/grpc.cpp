#include <awaken/http/grpc.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>

#include <asio/error.hpp>
#include <asio/post.hpp>

#include "http/grpc_framing.hpp"
#include "http/grpc_transport.hpp"

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

namespace {
using ReadCompletionPtr = std::unique_ptr<ReadCompletion>;

// Puts the method and the call's status message in the diagnostics of a failed read.
class DiagnosedRead final : public ForwardingCompletion<ReadCompletion, std::error_code, std::optional<std::string>> {
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

void post_abandon(const std::shared_ptr<GrpcCall>& call) {
  asio::post(call->strand(), [call] { call->abandon(asio::error::operation_aborted, "cancelled"); });
}

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
        post_abandon(c);  // resets the stream
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
  // No "." or ".." segments: a proxy could normalise them into another method's path.
  return path.size() > 1 && path.front() == '/' && path.find("/.") == std::string_view::npos &&
         std::all_of(path.begin(), path.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' || c == '.' ||
                  c == '_' || c == '-';
         });
}

// Metadata names are lowercase tokens (no pseudo-headers, none of the call's own); values have
// no control bytes but tab.
bool valid_metadata(const std::vector<Header>& metadata) {
  static constexpr std::string_view reserved[] = {"content-type", "te", "grpc-timeout", "host", "connection"};
  return std::all_of(metadata.begin(), metadata.end(), [](const Header& h) {
    const bool name_ok = !h.name.empty() && std::all_of(h.name.begin(), h.name.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    });
    const bool value_ok = std::all_of(h.value.begin(), h.value.end(), [](char c) {
      const auto u = static_cast<unsigned char>(c);
      return u == '\t' || (u >= 0x20 && u != 0x7f);
    });
    return name_ok && value_ok && std::find(std::begin(reserved), std::end(reserved), h.name) == std::end(reserved);
  });
}

}  // namespace
}  // namespace detail

// -------------------------------------------------------------------------------------------------

GrpcTarget GrpcTarget::unix_socket(std::string path) { return GrpcTarget{std::move(path), "localhost"}; }

GrpcTarget GrpcTarget::tcp(std::string host, std::uint16_t port) {
  // Host names, IPv4 and bracketed IPv6 only: nothing that would change the authority around it.
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
    detail::post_abandon(call_);
  } catch (...) {  // posting fails only without memory; the call then ends with its connection
  }
}

std::string GrpcStream::status_message() const { return call_ ? call_->status_message() : std::string{}; }

GrpcChannel::GrpcChannel(asio::any_io_executor executor, GrpcTarget target, GrpcChannelOptions options)
    : executor_(std::move(executor)),
      core_(std::make_shared<detail::ChannelCore>(executor_, std::move(target), std::move(options))) {}

const GrpcTarget& GrpcChannel::target() const noexcept { return core_->target(); }

GrpcStream GrpcChannel::server_stream(std::string method_path, std::string request, GrpcCallOptions options) const {
  const GrpcChannelOptions& channel = core_->options();
  detail::H2Call head{core_->target().authority, method_path, channel.metadata, options.deadline};
  head.metadata.insert(head.metadata.end(), options.metadata.begin(), options.metadata.end());
  if (head.timeout) head.timeout = std::max(*head.timeout, std::chrono::milliseconds{1});
  const bool valid_path = detail::valid_method_path(method_path);
  const bool valid_metadata = detail::valid_metadata(head.metadata);
  const bool too_large = request.size() > channel.max_message_bytes;
  auto call = std::make_shared<detail::GrpcCall>(core_->strand(), std::move(head), std::move(request));
  if (!valid_path) {
    call->fail_now(grpc_status::invalid_argument, "invalid method path");
  } else if (!valid_metadata) {
    call->fail_now(grpc_status::invalid_argument, "invalid metadata (names are lowercase tokens, values text)");
  } else if (too_large) {
    call->fail_now(http_errc::message_too_large, "request message larger than allowed");
  } else {
    core_->start(call);
  }
  return GrpcStream{std::move(call), executor_};
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
