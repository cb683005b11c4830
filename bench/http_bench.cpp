// HttpClient round trips against a loopback HTTP/1.1 server in the same process, with a blocking
// libcurl easy handle (connection reused) as the baseline measured in the same run.
#include <atomic>
#include <string>
#include <thread>

#include <benchmark/benchmark.h>
#include <curl/curl.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>

#include <awaken/http/http_client.hpp>

#include "bench_report.hpp"

namespace {

// Answers every request on a kept-alive connection with a fixed 5-byte body.
class LoopbackServer {
 public:
  LoopbackServer() : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread{[this] { io_.run(); }};
  }
  ~LoopbackServer() {
    io_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/hello"; }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto socket = co_await acceptor_.async_accept(asio::use_awaitable);
      asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
    }
  }
  static asio::awaitable<void> serve(asio::ip::tcp::socket socket) {
    static const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";
    asio::streambuf buffer;
    for (;;) {
      const auto n = co_await asio::async_read_until(socket, buffer, "\r\n\r\n", asio::use_awaitable);
      buffer.consume(n);
      co_await asio::async_write(socket, asio::buffer(response), asio::use_awaitable);
    }
  }

  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
};

LoopbackServer& server() {
  static LoopbackServer s;
  return s;
}

std::size_t discard(char*, std::size_t size, std::size_t count, void*) { return size * count; }

void curl_easy_baseline(benchmark::State& state) {
  CURL* easy = curl_easy_init();
  const std::string url = server().url();
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  for (auto _ : state) {
    if (curl_easy_perform(easy) != CURLE_OK) state.SkipWithError("curl failed");
  }
  curl_easy_cleanup(easy);
}

void awaken_send(benchmark::State& state) {
  asio::io_context io;
  awaken::http::HttpClient client{io.get_executor()};
  awaken::http::HttpRequest request;
  request.url = server().url();
  for (auto _ : state) {
    bool ok = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto response = co_await client.send(request);
          ok = response.status == 200 && response.body == "hello";
        },
        asio::detached);
    io.restart();
    io.run();
    if (!ok) state.SkipWithError("request failed");
  }
}

BENCHMARK(curl_easy_baseline)
    ->Name("HTTP/curl_easy_get")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime()
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK(awaken_send)
    ->Name("HTTP/awaken_get")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime()
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);

}  // namespace
