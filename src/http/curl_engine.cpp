// The libcurl multi handle driven by Asio: its sockets and timer on a strand, transfers started,
// abandoned and finished, and the clients that share one engine.
#include "http/curl_engine.hpp"

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

#include <spdlog/logger.h>
#include <asio/error.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>

#include <awaken/log.hpp>

namespace awaken::http::detail {

void ensure_curl_initialised() {
  static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  (void)rc;
}

bool curl_before_8() {
  static const bool old = curl_version_info(CURLVERSION_NOW)->version_num < 0x080000;
  return old;
}

namespace {

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
