// HttpClient against a real Node HTTPS/HTTP peer with a CA made at test time.
#include <atomic>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/error.hpp>
#include <awaken/http/http_client.hpp>

#include "support/names.hpp"
#include "support/peer.hpp"

using awaken::http::HttpClient;
using awaken::http::HttpClientOptions;
using awaken::http::HttpRequest;
using awaken::http::HttpResponse;

namespace {

struct HttpsPeer {
  awaken::test::TempDir dir;
  awaken::test::PeerProcess process{"https_server.mjs", {dir.path()}};

  std::string https(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(process.info()["https_port"].get<int>()) + path;
  }
  std::string http(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(process.info()["http_port"].get<int>()) + path;
  }
  std::string ca_file() const { return process.info()["ca_file"]; }
  std::string ca_pem() const {
    std::ifstream in{ca_file()};
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  HttpClientOptions trusting() const {
    HttpClientOptions o;
    o.ca_file = ca_file();
    return o;
  }
};

HttpRequest get(std::string url) {
  HttpRequest r;
  r.url = std::move(url);
  return r;
}

std::error_code send_error(asio::io_context& io, HttpClient& client, HttpRequest request) {
  auto [ec, response] = run(io, client.send(std::move(request), asio::experimental::as_tuple(asio::use_awaitable)));
  return ec;
}

}  // namespace

TEST_CASE("https GET verifies the peer against a CA file and speaks HTTP/2", "[http]") {
  HttpsPeer peer;
  asio::io_context io;
  HttpClient client{io.get_executor(), peer.trusting()};
  auto hello = run(io, client.send(get(peer.https("/hello"))));
  CHECK(hello.status == 200);
  CHECK(hello.body == "hello");
  CHECK(hello.header("Content-Type") == std::optional<std::string_view>{"text/plain"});
  auto echo = run(io, client.send(get(peer.https("/echo"))));
  CHECK(nlohmann::json::parse(echo.body)["http_version"] == "2.0");
}

TEST_CASE("https trusts a CA given as PEM in memory", "[http]") {
  HttpsPeer peer;
  asio::io_context io;
  HttpClientOptions options;
  options.ca_pem = peer.ca_pem();
  HttpClient client{io.get_executor(), options};
  CHECK(run(io, client.send(get(peer.https("/hello")))).body == "hello");
}

TEST_CASE("https refuses a peer the trust store does not vouch for", "[http]") {
  HttpsPeer peer;
  asio::io_context io;
  HttpClient system_store{io.get_executor()};
  auto ec = send_error(io, system_store, get(peer.https("/hello")));
  CHECK(ec == awaken::http_errc::tls_failed);
  CHECK_FALSE((ec == awaken::condition::transient));
}

TEST_CASE("https refuses a certificate issued for another host name", "[http]") {
  HttpsPeer peer;
  asio::io_context io;
  HttpClient client{io.get_executor(), peer.trusting()};
  const auto port = peer.process.info()["wrong_name_port"].get<int>();
  auto ec = send_error(io, client, get("https://127.0.0.2:" + std::to_string(port) + "/hello"));
  CHECK(ec == awaken::http_errc::tls_failed);
}

TEST_CASE("POST sends body and headers, and statuses are responses rather than errors", "[http]") {
  HttpsPeer peer;
  asio::io_context io;
  HttpClient client{io.get_executor(), peer.trusting()};
  HttpRequest post;
  post.method = "POST";
  post.url = peer.https("/echo");
  post.headers = {{"content-type", "application/x-www-form-urlencoded"}, {"X-Custom", "v1"}};
  post.body = "grant_type=client_credentials&scope=a%20b";
  auto echo = nlohmann::json::parse(run(io, client.send(post)).body);
  CHECK(echo["method"] == "POST");
  CHECK(echo["body"] == "grant_type=client_credentials&scope=a%20b");
  CHECK(echo["headers"]["x-custom"] == "v1");
  CHECK(echo["headers"]["content-type"] == "application/x-www-form-urlencoded");
  CHECK_FALSE(echo["headers"].contains("expect"));

  // A body on a GET stays a GET; an empty header value is sent, not dropped.
  HttpRequest get_with_body = get(peer.https("/echo"));
  get_with_body.body = "query";
  get_with_body.headers = {{"x-empty", ""}};
  auto echoed = nlohmann::json::parse(run(io, client.send(get_with_body)).body);
  CHECK(echoed["method"] == "GET");
  CHECK(echoed["body"] == "query");
  CHECK(echoed["headers"]["x-empty"] == "");

  auto busy = run(io, client.send(get(peer.https("/status/503?retry_after=7"))));
  CHECK(busy.status == 503);
  CHECK(busy.body == "status 503");
  CHECK(busy.header("retry-after") == std::optional<std::string_view>{"7"});
}

TEST_CASE("plain HTTP/1.1 with chunked trailers", "[http]") {
  HttpsPeer peer;
  asio::io_context io;
  HttpClient client{io.get_executor()};
  auto request = get(peer.http("/trailers"));
  request.version = awaken::http::HttpVersion::http1_1;
  auto response = run(io, client.send(request));
  CHECK(response.status == 200);
  CHECK(response.body == "abc");
  REQUIRE(response.trailers.size() == 1);
  CHECK(response.trailers[0].name == "x-check");
  CHECK(response.trailers[0].value == "done");
}

TEST_CASE("a request past its timeout fails with timeout, promptly", "[http]") {
  HttpsPeer peer;
  asio::io_context io;
  HttpClient client{io.get_executor(), peer.trusting()};
  auto request = get(peer.https("/delay/10000"));
  request.timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  auto ec = send_error(io, client, request);
  CHECK(ec == awaken::http_errc::timeout);
  CHECK((ec == awaken::condition::transient));
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("responses over the bounds fail with response_too_large", "[http]") {
  HttpsPeer peer;
  asio::io_context io;
  HttpClientOptions options = peer.trusting();
  options.max_response_bytes = 1000;
  options.max_header_bytes = 8 * 1024;
  HttpClient client{io.get_executor(), options};
  CHECK(run(io, client.send(get(peer.https("/bytes/1000")))).body.size() == 1000);
  CHECK(send_error(io, client, get(peer.https("/bytes/1001"))) == awaken::http_errc::response_too_large);
  CHECK(send_error(io, client, get(peer.https("/bytes/5000000"))) == awaken::http_errc::response_too_large);
  CHECK(send_error(io, client, get(peer.https("/headers/16"))) == awaken::http_errc::response_too_large);
  CHECK(run(io, client.send(get(peer.https("/hello")))).body == "hello");  // the client still works
}

TEST_CASE("nothing listening fails with connect_failed, which is retryable", "[http]") {
  asio::io_context io;
  HttpClient client{io.get_executor()};
  // Port 1 on loopback: privileged, never served in the test environment.
  auto ec = send_error(io, client, get("http://127.0.0.1:1/"));
  CHECK(ec == awaken::http_errc::connect_failed);
  CHECK((ec == awaken::condition::transient));
  try {
    run(io, client.send(get("http://user:pw@127.0.0.1:1/path?key=secret")));
    FAIL("no error");
  } catch (const awaken::Error& e) {
    const std::string what = e.what();
    CHECK(what.find("GET http://127.0.0.1:1") != std::string::npos);
    CHECK(what.find("secret") == std::string::npos);
    CHECK(what.find("pw") == std::string::npos);
  }
}

TEST_CASE("requests the client must not send are refused before any I/O", "[http]") {
  asio::io_context io;
  HttpClient client{io.get_executor()};
  auto bad_header = get("http://127.0.0.1:1/");
  bad_header.headers = {{"x-evil", "a\r\nx-injected: 1"}};
  CHECK(send_error(io, client, bad_header) == awaken::http_errc::invalid_request);
  CHECK(send_error(io, client, get("ftp://127.0.0.1/")) == awaken::http_errc::invalid_request);
  CHECK(send_error(io, client, get("file:///etc/passwd")) == awaken::http_errc::invalid_request);
  auto bad_method = get("http://127.0.0.1:1/");
  bad_method.method = "GET /x";
  CHECK(send_error(io, client, bad_method) == awaken::http_errc::invalid_request);
}

TEST_CASE("per-operation cancellation abandons the request at once", "[http]") {
  HttpsPeer peer;
  asio::io_context io;
  HttpClient client{io.get_executor(), peer.trusting()};
  asio::cancellation_signal signal;
  std::error_code result;
  bool done = false;
  client.send(get(peer.https("/delay/10000")),
              asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec, HttpResponse) {
                result = ec;
                done = true;
              }));
  asio::steady_timer timer{io, 100ms};
  timer.async_wait([&](std::error_code) { signal.emit(asio::cancellation_type::terminal); });
  const auto start = std::chrono::steady_clock::now();
  io.run_for(5s);
  REQUIRE(done);
  CHECK(result == asio::error::operation_aborted);
  CHECK(std::chrono::steady_clock::now() - start < 3s);
  // The client is still usable afterwards.
  CHECK(run(io, client.send(get(peer.https("/hello")))).status == 200);
}

TEST_CASE("a coroutine resumes on its own executor, with use_future and from many threads", "[http]") {
  HttpsPeer peer;
  // Declared first: it must outlive the transport thread, which may still hold its executor.
  asio::io_context caller_io;
  asio::io_context transport_io;
  auto transport_work = asio::make_work_guard(transport_io);
  std::thread transport_thread{[&] { transport_io.run(); }};
  HttpClient client{transport_io.get_executor(), peer.trusting()};

  SECTION("coroutine on another context") {
    auto same_executor = run(caller_io, [&]() -> asio::awaitable<bool> {
      auto response = co_await client.send(get(peer.https("/hello")));
      co_return response.status == 200 && caller_io.get_executor().running_in_this_thread();
    }());
    CHECK(same_executor);
  }
  SECTION("use_future") {
    auto future = client.send(get(peer.https("/hello")), asio::use_future);
    REQUIRE(future.wait_for(10s) == std::future_status::ready);
    CHECK(future.get().body == "hello");
  }
  SECTION("fifty concurrent requests from a thread pool") {
    asio::thread_pool pool{2};
    std::atomic<int> ok{0};
    std::atomic<int> finished{0};
    std::promise<void> all_done;
    for (int i = 0; i < 50; ++i) {
      asio::post(pool, [&, i] {
        HttpRequest r;
        r.method = "POST";
        r.url = peer.https("/echo");
        r.body = std::to_string(i);
        client.send(r, [&, i](std::error_code ec, HttpResponse response) {
          if (!ec && nlohmann::json::parse(response.body)["body"] == std::to_string(i)) ++ok;
          if (++finished == 50) all_done.set_value();
        });
      });
    }
    REQUIRE(all_done.get_future().wait_for(20s) == std::future_status::ready);
    pool.join();
    CHECK(ok == 50);
  }
  transport_work.reset();
  transport_io.stop();
  transport_thread.join();
}

TEST_CASE("destroying the last client fails pending requests with shut_down", "[http]") {
  HttpsPeer peer;
  asio::io_context io;
  std::error_code result;
  bool done = false;
  {
    HttpClient client{io.get_executor(), peer.trusting()};
    client.send(get(peer.https("/delay/10000")), [&](std::error_code ec, HttpResponse) {
      result = ec;
      done = true;
    });
    io.run_for(200ms);
  }
  io.restart();
  io.run_for(5s);
  REQUIRE(done);
  CHECK(result == awaken::errc::shut_down);
}
