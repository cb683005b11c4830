#include <awaken/http/http_client.hpp>

#include <algorithm>
#include <cctype>

#include <asio/experimental/as_tuple.hpp>

#include "core/url_text.hpp"
#include "http/curl_engine.hpp"

namespace awaken::http {
namespace detail {
namespace {

// Collects the whole response, up to the client's bound.
class BufferedTransfer final : public Transfer {
 public:
  BufferedTransfer(std::unique_ptr<awaken::Completion<std::error_code, HttpResponse>> completion, std::size_t max_body)
      : completion_(std::move(completion)), max_body_(max_body) {}

  std::size_t on_body(const char* data, std::size_t size) override {
    if (body_.size() + size > max_body_) {
      too_large_ = true;
      return 0;
    }
    body_.append(data, size);
    return size;
  }

  void on_done(CURLcode result, std::error_code aborted) override {
    std::error_code ec = aborted;
    if (!ec && too_large_) ec = http_errc::response_too_large;
    if (!ec) ec = to_error_code(result);
    HttpResponse response;
    if (!ec) {
      response.status = status_;
      response.headers = std::move(headers_);
      response.trailers = std::move(trailers_);
      response.body = std::move(body_);
    }
    if (completion_) completion_->complete(ec, std::move(response));
  }

  void drop_handlers() noexcept override { completion_.reset(); }

  awaken::Completion<std::error_code, HttpResponse>& completion() { return *completion_; }

 private:
  std::unique_ptr<awaken::Completion<std::error_code, HttpResponse>> completion_;
  std::size_t max_body_;
  std::string body_;
};

// "POST https://host:port", with no user info, path or query: those may hold secrets.
std::string describe(const HttpRequest& request) {
  return request.method + " " + awaken::detail::url_origin(request.url);
}

}  // namespace
}  // namespace detail

std::optional<std::string_view> HttpResponse::header(std::string_view name) const noexcept {
  for (const auto& h : headers) {
    if (h.name.size() == name.size() && std::equal(h.name.begin(), h.name.end(), name.begin(), [](char a, char b) {
          return a == std::tolower(static_cast<unsigned char>(b));
        }))
      return h.value;
  }
  return std::nullopt;
}

HttpClient::HttpClient(executor_type executor, HttpClientOptions options)
    : executor_(executor), state_(std::make_shared<detail::ClientState>(std::move(executor), std::move(options))) {}

HttpClient::~HttpClient() = default;

HttpClient::executor_type HttpClient::get_executor() const noexcept { return executor_; }

const HttpClientOptions& HttpClient::options() const noexcept { return state_->options(); }

void HttpClient::start_send(const std::shared_ptr<detail::ClientState>& state, HttpRequest request,
                            std::unique_ptr<awaken::Completion<std::error_code, HttpResponse>> completion) {
  auto transfer =
      std::make_shared<detail::BufferedTransfer>(std::move(completion), state->options().max_response_bytes);
  std::error_code ec;
  if (!transfer->configure(request, state->options(), ec)) {
    transfer->completion().complete(ec, HttpResponse{});
    return;
  }
  detail::abandon_on_cancel(transfer->completion().cancellation_slot(), state->engine_ptr(), transfer);
  state->engine().start(std::move(transfer));
}

namespace {
// A free coroutine holding its own copy of the client, so that the awaitable stays valid even if
// the client it came from is gone before it is awaited.
asio::awaitable<HttpResponse> send_with(HttpClient client, HttpRequest request) {
  const std::string context = detail::describe(request);
  auto [ec, response] =
      co_await client.async_send(std::move(request), asio::experimental::as_tuple(asio::use_awaitable));
  if (ec) throw_error(ec, context);
  co_return std::move(response);
}
}  // namespace

asio::awaitable<HttpResponse> HttpClient::send(HttpRequest request) const {
  return send_with(*this, std::move(request));
}

}  // namespace awaken::http
