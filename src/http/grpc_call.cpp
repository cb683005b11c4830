// GrpcChannel's calls: one gRPC call on a connection, its readers, deadline and end, and the
// registry that drops every call when the execution context shuts down (see grpc_transport.hpp).
#include "core/wipe.hpp"
#include "http/grpc_transport.hpp"

#include <asio/execution/context.hpp>
#include <asio/post.hpp>
#include <asio/query.hpp>

namespace awaken::http::detail {
namespace {

std::string millis(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// CallRegistry

namespace {

// The context's service that holds its registry and empties it at shutdown.
class CallRegistryService final : public asio::execution_context::service {
 public:
  using key_type = CallRegistryService;
  static inline asio::execution_context::id id;  // NOLINT(readability-identifier-naming): Asio's name
  explicit CallRegistryService(asio::execution_context& context) : service(context) {}

  void shutdown() override {
    std::vector<std::shared_ptr<GrpcCall>> live;
    {
      std::lock_guard lock{registry->mutex};
      registry->shut_down = true;
      for (GrpcCall* call : registry->calls)
        if (auto c = call->weak_from_this().lock()) live.push_back(std::move(c));  // null: being destroyed
    }
    for (auto& call : live) call->drop_for_shutdown();
  }

  const std::shared_ptr<CallRegistry> registry = std::make_shared<CallRegistry>();
};

}  // namespace

std::shared_ptr<CallRegistry> CallRegistry::of(const asio::any_io_executor& executor) {
  return asio::use_service<CallRegistryService>(asio::query(executor, asio::execution::context)).registry;
}

// ---------------------------------------------------------------------------------------------
// GrpcCall

GrpcCall::GrpcCall(Strand strand, H2Call head, std::string request)
    : strand_(std::move(strand)), head_(std::move(head)), request_(std::move(request)) {}

GrpcCall::~GrpcCall() {
  if (registry_) {
    std::lock_guard lock{registry_->mutex};
    registry_->calls.erase(entry_);
  }
  release_request();
}

void GrpcCall::enrol(std::shared_ptr<CallRegistry> registry) {
  std::lock_guard lock{registry->mutex};
  if (registry->shut_down) return;
  entry_ = registry->calls.insert(registry->calls.end(), this);
  registry_ = std::move(registry);
}

void GrpcCall::drop_for_shutdown() noexcept {
  reader_.reset();
  messages_.clear();
  deadline_.reset();
  connection_.reset();
}

void GrpcCall::release_request() noexcept {
  // A request may carry a token (ValidateJWTSVID): wiped once the session has its own copy.
  awaken::detail::wipe(request_);
  std::string{}.swap(request_);
}

std::string GrpcCall::status_message() const {
  std::lock_guard lock{message_mutex_};
  return status_message_;
}

void GrpcCall::fail_now(std::error_code ec, std::string message) {
  ended_ = true;
  final_ = ec;
  std::lock_guard lock{message_mutex_};
  status_message_ = std::move(message);
}

std::uint64_t GrpcCall::add_reader(std::unique_ptr<ReadCompletion> reader) {
  if (reader_) {
    reader->complete(asio::error::already_started, std::nullopt);
    return 0;
  }
  reader_ = std::move(reader);
  const std::uint64_t ticket = ++reader_ticket_;
  deliver();
  return ticket;
}

void GrpcCall::detach_reader(std::uint64_t ticket) {
  if (reader_ && ticket == reader_ticket_)
    std::exchange(reader_, nullptr)->complete(asio::error::operation_aborted, std::nullopt);
}

void GrpcCall::abandon(std::error_code ec, std::string message) {
  if (ended_) return;
  if (auto connection = connection_) connection->drop(*this);
  end(ec, std::move(message));
}

void GrpcCall::arm_deadline() {
  if (!head_.timeout || ended_) return;
  deadline_ = std::make_unique<asio::steady_timer>(strand_, *head_.timeout);
  deadline_->async_wait([weak = weak_from_this(), d = *head_.timeout](std::error_code ec) {
    if (ec) return;
    if (auto call = weak.lock())
      call->abandon(make_error_code(grpc_status::deadline_exceeded), "deadline of " + millis(d) + " exceeded");
  });
}

void GrpcCall::on_message(std::string message) {
  if (ended_) return;
  messages_.push_back(std::move(message));
  deliver();
}

void GrpcCall::on_finished(const GrpcFinalStatus& status) { end(status.code, status.message); }

void GrpcCall::end(std::error_code ec, std::string message) {
  if (ended_) return;
  ended_ = true;
  final_ = ec;
  {
    std::lock_guard lock{message_mutex_};
    status_message_ = std::move(message);
  }
  if (deadline_) deadline_->cancel();
  connection_.reset();  // the call no longer holds its connection open
  deliver();
}

void GrpcCall::deliver() {
  if (!reader_) return;
  if (!messages_.empty()) {
    std::string message = std::move(messages_.front());
    messages_.pop_front();
    std::exchange(reader_, nullptr)->complete({}, std::move(message));
    if (auto connection = connection_) connection->taken(stream_);
    return;
  }
  if (ended_) std::exchange(reader_, nullptr)->complete(final_, std::nullopt);
}

}  // namespace awaken::http::detail
