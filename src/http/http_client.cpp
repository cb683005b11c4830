#include <awaken/http/http_client.hpp>

#include <algorithm>
#include <cctype>

#include "core/url_text.hpp"
#include "core/wipe.hpp"
#include "http/curl_engine.hpp"

namespace awaken::http {
namespace detail {
namespace {

// Collects the whole response, up to the client's bound.
class BufferedTransfer final : public Transfer {
 public:
  BufferedTransfer(std::unique_ptr<awaken::Completion<std::error_code, HttpResponse>> completion, std::size_t max_body,
                   std::string context)
      : completion_(std::move(completion)), max_body_(max_body), context_(std::move(context)) {}

  // Fails the request: the code, and what it was (method and origin) in the diagnostics.
  void fail(std::error_code ec) {
    if (!completion_) return;
    completion_->set_diagnostics(Diagnostics{context_, {}});
    completion_->complete(ec, HttpResponse{});
  }

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
    if (ec) return fail(ec);
    HttpResponse response;
    response.status = status_;
    response.headers = std::move(headers_);
    response.trailers = std::move(trailers_);
    response.body = std::move(body_);
    if (completion_) completion_->complete(ec, std::move(response));
  }

  void drop_handlers() noexcept override { completion_.reset(); }

  awaken::Completion<std::error_code, HttpResponse>& completion() { return *completion_; }

 private:
  std::unique_ptr<awaken::Completion<std::error_code, HttpResponse>> completion_;
  std::size_t max_body_;
  std::string context_;
  std::string body_;
};

// Wipes what a request may carry of secrets (an authorization header, a form with a client
// secret or an assertion) once the transfer holds its own copies.
void wipe(HttpRequest& request) noexcept {
  awaken::detail::wipe(request.body);
  for (auto& h : request.headers) awaken::detail::wipe(h.value);
}

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
  auto transfer = std::make_shared<detail::BufferedTransfer>(std::move(completion), state->options().max_response_bytes,
                                                             detail::describe(request));
  std::error_code ec;
  const bool ok = transfer->configure(request, state->options(), ec);
  detail::wipe(request);
  if (!ok) return transfer->fail(ec);
  detail::abandon_on_cancel(transfer->completion().cancellation_slot(), state->engine_ptr(), transfer);
  state->engine().start(std::move(transfer));
}

}  // namespace awaken::http
