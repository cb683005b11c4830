// The libcurl multi handle driven by Asio. Private to the library.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>

#include <curl/curl.h>
#include <asio/any_io_executor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>

#include <awaken/error.hpp>
#include <awaken/http/http_client.hpp>

namespace awaken::http::detail {

class Engine;

/// One easy handle and what it does with the bytes it receives. Every virtual function runs on
/// the engine's strand.
class Transfer : public std::enable_shared_from_this<Transfer> {
 public:
  Transfer();
  virtual ~Transfer();
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;

  /// Sets the options shared by every transfer: URL, method, headers, body, timeouts, TLS.
  /// Returns false (and `ec`) when the request is refused before any I/O.
  bool configure(const HttpRequest& request, const HttpClientOptions& options, std::error_code& ec);

  CURL* easy() const noexcept { return easy_; }
  /// curl's diagnostic for the last failure, bounded.
  std::string diagnostic() const;

  /// A header line as curl delivers it (status line, fields, blank line, trailers), CRLF
  /// stripped. Return false to abort the transfer.
  virtual bool on_header(std::string_view line);
  /// Body bytes. Return `size` to accept them, 0 to abort.
  virtual std::size_t on_body(const char* data, std::size_t size) = 0;
  /// The transfer ended (`result` is CURLE_OK on success) or was abandoned (`aborted` holds the
  /// reason: operation_aborted or shut_down). Called exactly once.
  virtual void on_done(CURLcode result, std::error_code aborted) = 0;
  /// The execution context is shutting down: destroy any completion handler held, uninvoked.
  virtual void drop_handlers() noexcept {}

 protected:
  int status_ = 0;
  std::vector<Header> headers_;
  std::vector<Header> trailers_;
  std::size_t header_bytes_ = 0;
  std::size_t max_header_bytes_ = 0;
  bool too_large_ = false;  // a bound of ours, not curl's, ended the transfer

 private:
  friend class Engine;
  bool finished_ = false;      // on_done has been called
  std::error_code abandoned_;  // abandoned before the engine started it
  CURL* easy_ = nullptr;
  curl_slist* header_list_ = nullptr;
  std::string body_;
  std::string client_certificate_;  // PEM chain and key for mutual TLS, lent to curl (no copy)
  std::string client_key_;
  bool in_trailers_ = false;
  char error_buffer_[CURL_ERROR_SIZE] = {};
};

/// Maps a curl result to an `http_errc`.
std::error_code to_error_code(CURLcode result) noexcept;
/// curl_global_init, once per process.
void ensure_curl_initialised();
/// libcurl before 8.0: HTTP/2 prior-knowledge connections cannot be reused (curl issue 10634),
/// and the end of an HTTP/2 stream that arrives while the request is still being sent can be
/// missed (see Engine::schedule_kick).
bool curl_before_8();

/// The multi handle, its sockets and its timer. All state is touched only on `strand_`; the
/// public functions may be called from any thread.
class Engine : public std::enable_shared_from_this<Engine> {
 public:
  /// Creates an engine and registers it with the executor's execution context.
  static std::shared_ptr<Engine> create(const asio::any_io_executor& executor);
  explicit Engine(const asio::any_io_executor& executor);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Adds the transfer to the multi handle (on the strand).
  void start(std::shared_ptr<Transfer> transfer);
  /// Abandons the transfer if it is still running; it completes with `reason`.
  void abandon(const std::weak_ptr<Transfer>& transfer, std::error_code reason);
  /// Abandons every transfer with `awaken::errc::shut_down` and releases curl's sockets.
  void shutdown();
  /// Forgets every transfer without completing it and releases curl's sockets; for when the
  /// execution context shuts down.
  void drop_everything() noexcept;

  const asio::strand<asio::any_io_executor>& strand() const noexcept { return strand_; }

 private:
  struct Watch;

  static int on_socket(CURL* easy, curl_socket_t fd, int what, void* userp, void* socketp);
  static int on_timer(CURLM* multi, long timeout_ms, void* userp);
  static int on_close_socket(void* clientp, curl_socket_t fd);

  void arm(const std::shared_ptr<Watch>& watch);
  void socket_action(curl_socket_t fd, int flags);
  void finish_done_transfers();
  void remove(Transfer& transfer);
  void stop_watching(Watch& watch);
  void schedule_kick(bool restart);

  static constexpr std::chrono::milliseconds kick_min{50};
  static constexpr std::chrono::milliseconds kick_max{2000};

  asio::strand<asio::any_io_executor> strand_;
  asio::steady_timer timer_;
  asio::steady_timer kick_timer_;
  std::chrono::milliseconds kick_interval_{kick_min};
  bool kick_armed_ = false;
  bool saw_activity_ = false;
  CURLM* multi_ = nullptr;
  bool closed_ = false;
  std::unordered_map<CURL*, std::shared_ptr<Transfer>> active_;
  std::unordered_map<curl_socket_t, std::shared_ptr<Watch>> watches_;
};

/// The state behind every copy of an `HttpClient`.
class ClientState {
 public:
  ClientState(asio::any_io_executor executor, HttpClientOptions options);
  ~ClientState();
  Engine& engine() const noexcept { return *engine_; }
  const std::shared_ptr<Engine>& engine_ptr() const noexcept { return engine_; }
  const HttpClientOptions& options() const noexcept { return options_; }
  const asio::any_io_executor& executor() const noexcept { return executor_; }

 private:
  asio::any_io_executor executor_;
  HttpClientOptions options_;
  std::shared_ptr<Engine> engine_;
};

/// Installs a cancellation handler on `slot` (when connected) that abandons `transfer`.
void abandon_on_cancel(asio::cancellation_slot slot, const std::shared_ptr<Engine>& engine,
                       const std::shared_ptr<Transfer>& transfer);

}  // namespace awaken::http::detail
