#include "http/curl_engine.hpp"
#include "core/url_text.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>
#include <vector>

#include <asio/execution/context.hpp>
#include <asio/execution_context.hpp>
#include <asio/query.hpp>

#include <openssl/crypto.h>
#include <spdlog/logger.h>
#include <asio/error.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>

#include <awaken/log.hpp>

namespace awaken::http::detail {
namespace {

void ensure_curl_initialised() {
  static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  (void)rc;
}

// libcurl before 8.0: HTTP/2 prior-knowledge connections cannot be reused (curl issue 10634),
// and the end of an HTTP/2 stream that arrives while the request is still being sent can be
// missed (see Engine::schedule_kick).
bool curl_before_8() {
  static const bool old = curl_version_info(CURLVERSION_NOW)->version_num < 0x080000;
  return old;
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool is_token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_token_char); }

bool has_forbidden_byte(std::string_view s) {
  return s.find_first_of(std::string_view{"\r\n\0", 3}) != std::string_view::npos;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

std::size_t header_callback(char* data, std::size_t size, std::size_t count, void* user) {
  const std::size_t n = size * count;
  // One line per call, except after a pause: curl then hands over what it held back, which may
  // be several lines at once.
  std::string_view rest{data, n};
  while (!rest.empty()) {
    const auto nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    try {
      if (!static_cast<Transfer*>(user)->on_header(line)) return 0;
    } catch (...) {  // never unwind through curl
      return 0;
    }
  }
  return n;
}

std::size_t write_callback(char* data, std::size_t size, std::size_t count, void* user) {
  try {
    return static_cast<Transfer*>(user)->on_body(data, size * count);
  } catch (...) {  // never unwind through curl
    return 0;
  }
}

// Header lines may carry secrets (authorization): wipe them before curl frees them.
void free_header_list(curl_slist* list) {
  for (curl_slist* item = list; item != nullptr; item = item->next)
    OPENSSL_cleanse(item->data, std::strlen(item->data));
  curl_slist_free_all(list);
}

// Drops what engines hold when their execution context shuts down, as Asio does with its own
// pending operations: handlers are destroyed, not invoked. Without this, a transfer whose handler
// owns a client (and so the engine) would keep itself alive after the context is gone.
class EngineRegistry final : public asio::execution_context::service {
 public:
  using key_type = EngineRegistry;
  static inline asio::execution_context::id id;

  explicit EngineRegistry(asio::execution_context& context) : service(context) {}

  void add(const std::shared_ptr<Engine>& engine) {
    std::lock_guard lock{mutex_};
    std::erase_if(engines_, [](const auto& w) { return w.expired(); });
    engines_.push_back(engine);
  }

  void shutdown() override {
    std::vector<std::weak_ptr<Engine>> engines;
    {
      std::lock_guard lock{mutex_};
      engines.swap(engines_);
    }
    for (auto& weak : engines)
      if (auto engine = weak.lock()) engine->drop_everything();
  }

 private:
  std::mutex mutex_;
  std::vector<std::weak_ptr<Engine>> engines_;
};

}  // namespace

std::error_code to_error_code(CURLcode result) noexcept {
  switch (result) {
    case CURLE_OK: return {};
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_BAD_FUNCTION_ARGUMENT: return http_errc::invalid_request;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return http_errc::resolve_failed;
    case CURLE_COULDNT_CONNECT: return http_errc::connect_failed;
    case CURLE_OPERATION_TIMEDOUT: return http_errc::timeout;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS: return http_errc::tls_failed;
    case CURLE_FILESIZE_EXCEEDED: return http_errc::response_too_large;
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY: return http_errc::protocol_error;
    default: return http_errc::transfer_failed;
  }
}

// ---------------------------------------------------------------------------------------------
// Transfer

Transfer::Transfer() {
  ensure_curl_initialised();
  easy_ = curl_easy_init();
}

Transfer::~Transfer() {
  if (easy_ != nullptr) curl_easy_cleanup(easy_);
  if (header_list_ != nullptr) free_header_list(header_list_);
  OPENSSL_cleanse(body_.data(), body_.size());  // a form may carry a secret or an assertion
  OPENSSL_cleanse(client_key_.data(), client_key_.size());
}

bool Transfer::configure(const HttpRequest& request, const HttpClientOptions& options, std::error_code& ec) {
  ec = {};
  if (easy_ == nullptr) {
    ec = http_errc::invalid_request;
    return false;
  }
  using awaken::detail::starts_with_nocase;
  if (!(starts_with_nocase(request.url, "http://") || starts_with_nocase(request.url, "https://")) ||
      has_forbidden_byte(request.url) || !is_token(request.method)) {
    ec = http_errc::invalid_request;
    return false;
  }
  for (const auto& h : request.headers) {
    if (!is_token(h.name) || has_forbidden_byte(h.value)) {
      ec = http_errc::invalid_request;
      return false;
    }
    // "Name;" is curl's spelling of a header with an empty value ("Name:" would remove it).
    std::string line = h.value.empty() ? h.name + ";" : h.name + ": " + h.value;
    header_list_ = curl_slist_append(header_list_, line.c_str());
    OPENSSL_cleanse(line.data(), line.size());
  }
  // No "Expect: 100-continue" round trip.
  header_list_ = curl_slist_append(header_list_, "Expect:");
  max_header_bytes_ = options.max_header_bytes;
  body_ = request.body;

  // Options whose silent refusal would weaken security fail the request instead.
  auto must = [&ec](CURLcode rc) {
    if (rc != CURLE_OK && !ec) ec = http_errc::invalid_request;
  };
  curl_easy_setopt(easy_, CURLOPT_PRIVATE, this);
  curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, error_buffer_);
  curl_easy_setopt(easy_, CURLOPT_URL, request.url.c_str());
  must(curl_easy_setopt(easy_, CURLOPT_PROTOCOLS_STR, "http,https"));
  // Proxies only when asked for: never from http_proxy and friends in the environment.
  must(curl_easy_setopt(easy_, CURLOPT_PROXY, options.proxy.c_str()));
  curl_easy_setopt(easy_, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, header_list_);
  curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, header_callback);
  curl_easy_setopt(easy_, CURLOPT_HEADERDATA, this);
  curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, write_callback);
  curl_easy_setopt(easy_, CURLOPT_WRITEDATA, this);
  curl_easy_setopt(easy_, CURLOPT_USERAGENT, options.user_agent.c_str());
  // curl reads 0 as "no limit": a zero or negative timeout means "expire at once" here.
  const auto timeout = std::max(request.timeout.value_or(options.timeout), std::chrono::milliseconds{1});
  curl_easy_setopt(easy_, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(easy_, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.connect_timeout.count()));
  if (request.method != "HEAD")
    curl_easy_setopt(easy_, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options.max_response_bytes));
  must(curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYPEER, 1L));
  must(curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYHOST, 2L));
  if (!options.ca_file.empty() || !options.ca_pem.empty()) {
    // Only these CAs: without this, curl would add the distribution's CA directory.
    must(curl_easy_setopt(easy_, CURLOPT_CAPATH, nullptr));
    if (!options.ca_file.empty())
      must(curl_easy_setopt(easy_, CURLOPT_CAINFO, options.ca_file.c_str()));
    else
      must(curl_easy_setopt(easy_, CURLOPT_CAINFO, nullptr));
    if (!options.ca_pem.empty()) {
      curl_blob blob{const_cast<char*>(options.ca_pem.data()), options.ca_pem.size(), CURL_BLOB_COPY};
      must(curl_easy_setopt(easy_, CURLOPT_CAINFO_BLOB, &blob));
    }
  }
  if (request.client_certificate_pem.empty() != request.client_key_pem.empty()) {
    ec = http_errc::invalid_request;  // a certificate without its key, or the reverse
    return false;
  }
  if (!request.client_certificate_pem.empty()) {
    // Lent to curl without a copy, so that the key is wiped with the transfer (curl frees its
    // copies without wiping them).
    client_certificate_ = request.client_certificate_pem;
    client_key_ = std::string{request.client_key_pem.reveal()};
    curl_blob cert{client_certificate_.data(), client_certificate_.size(), CURL_BLOB_NOCOPY};
    curl_blob key{client_key_.data(), client_key_.size(), CURL_BLOB_NOCOPY};
    must(curl_easy_setopt(easy_, CURLOPT_SSLCERT_BLOB, &cert));
    must(curl_easy_setopt(easy_, CURLOPT_SSLCERTTYPE, "PEM"));
    must(curl_easy_setopt(easy_, CURLOPT_SSLKEY_BLOB, &key));
    must(curl_easy_setopt(easy_, CURLOPT_SSLKEYTYPE, "PEM"));
  }
  if (!request.unix_socket_path.empty())
    curl_easy_setopt(easy_, CURLOPT_UNIX_SOCKET_PATH, request.unix_socket_path.c_str());
  switch (request.version) {
    case HttpVersion::automatic: break;
    case HttpVersion::http1_1:
      curl_easy_setopt(easy_, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
      break;
    case HttpVersion::http2_prior_knowledge:
      must(curl_easy_setopt(easy_, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE)));
      if (curl_before_8()) {
        curl_easy_setopt(easy_, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(easy_, CURLOPT_FORBID_REUSE, 1L);
      }
      break;
  }

  const bool sends_body =
      !body_.empty() || request.method == "POST" || request.method == "PUT" || request.method == "PATCH";
  if (request.method == "HEAD" && !sends_body) {
    curl_easy_setopt(easy_, CURLOPT_NOBODY, 1L);
  } else if (request.method == "POST") {
    curl_easy_setopt(easy_, CURLOPT_POST, 1L);
  } else if (request.method != "GET" || sends_body) {
    // POSTFIELDS alone would turn a GET with a body into a POST.
    curl_easy_setopt(easy_, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (sends_body) {
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, body_.data());
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_.size()));
  }
  return !ec;
}

std::string Transfer::diagnostic() const {
  return bounded_excerpt(std::string_view{error_buffer_, ::strnlen(error_buffer_, sizeof error_buffer_)});
}

bool Transfer::on_header(std::string_view line) {
  header_bytes_ += line.size() + 2;
  if (header_bytes_ > max_header_bytes_) {
    too_large_ = true;
    return false;
  }
  if (line.substr(0, 5) == "HTTP/") {
    // A new header block: an interim 1xx response is followed by the final one.
    headers_.clear();
    in_trailers_ = false;
    const auto sp = line.find(' ');
    status_ = 0;
    if (sp != std::string_view::npos) {
      for (char c : line.substr(sp + 1, 3)) {
        if (c < '0' || c > '9') break;
        status_ = status_ * 10 + (c - '0');
      }
    }
    return true;
  }
  if (line.empty()) {
    in_trailers_ = true;
    return true;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return true;  // tolerate folding remnants
  Header h{std::string{line.substr(0, colon)}, std::string{trim(line.substr(colon + 1))}};
  std::transform(h.name.begin(), h.name.end(), h.name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  (in_trailers_ ? trailers_ : headers_).push_back(std::move(h));
  return true;
}

// ---------------------------------------------------------------------------------------------
// Engine

struct Engine::Watch {
  Watch(const asio::strand<asio::any_io_executor>& strand, curl_socket_t socket) : descriptor(strand), fd(socket) {}
  asio::posix::stream_descriptor descriptor;
  curl_socket_t fd;
  int interest = 0;
  bool reading = false;
  bool writing = false;
  bool action_posted = false;
  bool removed = false;
};

Engine::Engine(const asio::any_io_executor& executor)
    : strand_(asio::make_strand(executor)), timer_(strand_), kick_timer_(strand_) {
  ensure_curl_initialised();
  multi_ = curl_multi_init();
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &Engine::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &Engine::on_timer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
}

std::shared_ptr<Engine> Engine::create(const asio::any_io_executor& executor) {
  auto engine = std::make_shared<Engine>(executor);
  asio::use_service<EngineRegistry>(asio::query(executor, asio::execution::context)).add(engine);
  return engine;
}

Engine::~Engine() {
  drop_everything();
  if (multi_ != nullptr) curl_multi_cleanup(multi_);
}

void Engine::drop_everything() noexcept {
  // No completion runs: the context is going away (or already has).
  closed_ = true;
  auto active = std::move(active_);
  active_.clear();
  for (auto& [easy, transfer] : active) {
    curl_multi_remove_handle(multi_, easy);
    transfer->drop_handlers();
  }
  active.clear();
  for (auto& [fd, watch] : watches_) stop_watching(*watch);
  watches_.clear();
}

void Engine::start(std::shared_ptr<Transfer> transfer) {
  asio::post(strand_, [self = shared_from_this(), t = std::move(transfer)]() mutable {
    if (t->abandoned_ || self->closed_) {
      t->finished_ = true;
      t->on_done(CURLE_OK, t->abandoned_ ? t->abandoned_ : make_error_code(awaken::errc::shut_down));
      return;
    }
    // curl does not always report CURL_POLL_REMOVE before closing a socket (an aborted HTTP/2
    // transfer, for one); a descriptor number it then reuses must not meet a stale watch.
    curl_easy_setopt(t->easy(), CURLOPT_CLOSESOCKETFUNCTION, &Engine::on_close_socket);
    curl_easy_setopt(t->easy(), CURLOPT_CLOSESOCKETDATA, self.get());
    if (curl_multi_add_handle(self->multi_, t->easy()) != CURLM_OK) {
      t->finished_ = true;
      t->on_done(CURLE_FAILED_INIT, {});
      return;
    }
    CURL* easy = t->easy();
    self->active_.emplace(easy, std::move(t));
    self->saw_activity_ = true;
    self->schedule_kick(true);
  });
}

void Engine::abandon(const std::weak_ptr<Transfer>& transfer, std::error_code reason) {
  asio::post(strand_, [self = shared_from_this(), transfer, reason] {
    auto t = transfer.lock();
    if (!t || t->finished_) return;
    if (self->active_.count(t->easy()) == 0) {
      t->abandoned_ = reason;  // not started yet: start() completes it
      return;
    }
    self->remove(*t);
    t->finished_ = true;
    t->on_done(CURLE_OK, reason);
  });
}

void Engine::shutdown() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->closed_) return;
    self->closed_ = true;
    auto active = std::move(self->active_);
    self->active_.clear();
    for (auto& [easy, t] : active) {
      curl_multi_remove_handle(self->multi_, easy);
      t->finished_ = true;
      t->on_done(CURLE_OK, awaken::errc::shut_down);
    }
    for (auto& [fd, watch] : self->watches_) self->stop_watching(*watch);
    self->watches_.clear();
    self->timer_.cancel();
    self->kick_timer_.cancel();
    self->kick_armed_ = false;
  });
}

void Engine::remove(Transfer& transfer) {
  active_.erase(transfer.easy());
  curl_multi_remove_handle(multi_, transfer.easy());
  // An idle engine holds no pending work, so io_context::run() returns once requests are done.
  if (active_.empty()) {
    kick_timer_.cancel();
    kick_armed_ = false;
  }
}

void Engine::stop_watching(Watch& watch) {
  watch.removed = true;
  std::error_code ignored;
  watch.descriptor.cancel(ignored);
  // curl owns the descriptor: never let Asio close it.
  (void)watch.descriptor.release();
}

int Engine::on_socket(CURL* easy, curl_socket_t fd, int what, void* userp, void*) {
  auto* self = static_cast<Engine*>(userp);
  auto it = self->watches_.find(fd);
  if (what == CURL_POLL_REMOVE) {
    if (it != self->watches_.end()) {
      self->stop_watching(*it->second);
      self->watches_.erase(it);
    }
    return 0;
  }
  if (self->closed_) return 0;
  std::shared_ptr<Watch> watch;
  if (it != self->watches_.end()) {
    watch = it->second;
  } else {
    watch = std::make_shared<Watch>(self->strand_, fd);
    std::error_code ec;
    watch->descriptor.assign(fd, ec);
    if (ec) {
      // Returning -1 would fail every transfer of the multi handle: fail only this one.
      logger()->warn("awaken.http: cannot watch socket {}: {}", fd, ec.message());
      if (auto t = self->active_.find(easy); t != self->active_.end())
        self->abandon(t->second, http_errc::transfer_failed);
      return 0;
    }
    self->watches_.emplace(fd, watch);
  }
  watch->interest = what;
  self->arm(watch);
  return 0;
}

int Engine::on_close_socket(void* clientp, curl_socket_t fd) {
  auto* self = static_cast<Engine*>(clientp);
  if (auto it = self->watches_.find(fd); it != self->watches_.end()) {
    self->stop_watching(*it->second);
    self->watches_.erase(it);
  }
  return ::close(fd);
}

int Engine::on_timer(CURLM*, long timeout_ms, void* userp) {
  auto* self = static_cast<Engine*>(userp);
  if (self->closed_) return 0;
  if (timeout_ms < 0) {
    self->timer_.cancel();
    return 0;
  }
  // Never call back into curl from here: the action runs from the timer's handler.
  self->timer_.expires_after(std::chrono::milliseconds{timeout_ms});
  self->timer_.async_wait([self = self->shared_from_this()](std::error_code ec) {
    if (ec || self->closed_) return;
    self->socket_action(CURL_SOCKET_TIMEOUT, 0);
  });
  return 0;
}

void Engine::arm(const std::shared_ptr<Watch>& watch) {
  if (watch->removed || closed_) return;
  const bool want_in = (watch->interest & CURL_POLL_IN) != 0;
  const bool want_out = (watch->interest & CURL_POLL_OUT) != 0;

  // Asio's reactor reports readiness edges: readiness that came before a wait was queued, or
  // bytes curl left unread, would never be reported again. Look at the descriptor first.
  pollfd p{watch->fd, static_cast<short>((want_in ? POLLIN : 0) | (want_out ? POLLOUT : 0)), 0};
  if (p.events != 0 && ::poll(&p, 1, 0) == 1 && p.revents != 0) {
    // (Asio 1.22 re-arms EPOLLOUT when a write wait is queued, but nothing does so for reads.)
    int flags = 0;
    if (want_in && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) flags |= CURL_CSELECT_IN;
    if (want_out && (p.revents & (POLLOUT | POLLERR)) != 0) flags |= CURL_CSELECT_OUT;
    if ((p.revents & (POLLERR | POLLNVAL)) != 0) flags |= CURL_CSELECT_ERR;
    if (!watch->action_posted) {
      watch->action_posted = true;
      asio::post(strand_, [self = shared_from_this(), watch, flags] {
        watch->action_posted = false;
        if (watch->removed || self->closed_) return;
        self->saw_activity_ = true;
        self->socket_action(watch->fd, flags);
        self->arm(watch);
      });
    }
    return;
  }

  auto on_ready = [self = shared_from_this(), watch](int flag, std::error_code ec) {
    if (flag == CURL_CSELECT_IN)
      watch->reading = false;
    else
      watch->writing = false;
    if (watch->removed || self->closed_ || ec == asio::error::operation_aborted) return;
    self->saw_activity_ = true;
    self->socket_action(watch->fd, ec ? CURL_CSELECT_ERR : flag);
    self->arm(watch);
  };
  if (want_in && !watch->reading) {
    watch->reading = true;
    watch->descriptor.async_wait(asio::posix::descriptor_base::wait_read,
                                 [on_ready](std::error_code ec) { on_ready(CURL_CSELECT_IN, ec); });
  }
  if (want_out && !watch->writing) {
    watch->writing = true;
    watch->descriptor.async_wait(asio::posix::descriptor_base::wait_write,
                                 [on_ready](std::error_code ec) { on_ready(CURL_CSELECT_OUT, ec); });
  }
}

void Engine::socket_action(curl_socket_t fd, int flags) {
  int running = 0;
  curl_multi_socket_action(multi_, fd, flags, &running);
  finish_done_transfers();
}

void Engine::schedule_kick(bool restart) {
  if (!curl_before_8() || closed_ || active_.empty()) return;
  if (restart) kick_interval_ = kick_min;
  if (kick_armed_ && !restart) return;
  kick_armed_ = true;
  kick_timer_.expires_after(kick_interval_);  // cancels a pending wait, whose handler then ignores it
  kick_timer_.async_wait([self = shared_from_this()](std::error_code ec) {
    if (ec == asio::error::operation_aborted) return;
    self->kick_armed_ = false;
    if (ec || self->closed_ || self->active_.empty()) return;
    // libcurl 7.x can miss the end of an HTTP/2 stream that arrives while it is still sending
    // (a response before the request is fully written, such as a trailers-only gRPC error):
    // it has read the bytes but waits for more that never come. Offer every socket it reads
    // from a read attempt: cheap, and such a transfer then completes. Often at first, rarely
    // once the engine has been quiet.
    self->kick_interval_ = self->saw_activity_ ? kick_min : std::min(self->kick_interval_ * 2, kick_max);
    self->saw_activity_ = false;
    std::vector<curl_socket_t> readers;
    for (auto& [fd, watch] : self->watches_)
      if ((watch->interest & CURL_POLL_IN) != 0) readers.push_back(fd);
    for (auto fd : readers)
      if (!self->closed_) self->socket_action(fd, CURL_CSELECT_IN);
    self->schedule_kick(false);
  });
}

void Engine::finish_done_transfers() {
  int queued = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    const CURLcode result = msg->data.result;
    auto it = active_.find(easy);
    if (it == active_.end()) {
      curl_multi_remove_handle(multi_, easy);
      continue;
    }
    auto t = std::move(it->second);
    remove(*t);
    t->finished_ = true;
    t->on_done(result, {});
  }
}

// ---------------------------------------------------------------------------------------------

ClientState::ClientState(asio::any_io_executor executor, HttpClientOptions options)
    : executor_(std::move(executor)), options_(std::move(options)), engine_(Engine::create(executor_)) {}

ClientState::~ClientState() {
  try {
    engine_->shutdown();
  } catch (...) {  // posting can only fail when memory is gone; the registry then cleans up
  }
}

void abandon_on_cancel(asio::cancellation_slot slot, const std::shared_ptr<Engine>& engine,
                       const std::shared_ptr<Transfer>& transfer) {
  if (!slot.is_connected()) return;
  // Weak references only: the slot belongs to the caller, who may be owned by the transfer.
  slot.assign([weak_engine = std::weak_ptr<Engine>(engine),
               weak = std::weak_ptr<Transfer>(transfer)](asio::cancellation_type type) {
    if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial)) ==
        asio::cancellation_type::none)
      return;
    if (auto e = weak_engine.lock()) e->abandon(weak, asio::error::operation_aborted);
  });
}

}  // namespace awaken::http::detail
