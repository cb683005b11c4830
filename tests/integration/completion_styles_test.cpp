// Every public asynchronous operation, with every completion style a user may pick: a plain
// callback, a callback with diagnostics bound, use_future (the io_context on another thread),
// co_await with awaken's default token, as_tuple and redirect_error. Each style must reach the
// same outcome, a value or the same error code, against the real Workload API peer.
#include <array>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <catch2/catch.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/diagnostics.hpp>
#include <awaken/error.hpp>
#include <awaken/http/grpc.hpp>
#include <awaken/http/http_client.hpp>
#include <awaken/spiffe/experimental/wit_source.hpp>
#include <awaken/spiffe/jwt_source.hpp>
#include <awaken/spiffe/workload_api.hpp>
#include <awaken/spiffe/x509_source.hpp>

#include "support/workload_peer.hpp"

namespace spiffe = awaken::spiffe;
using awaken::test::WorkloadPeer;

namespace {

// An io_context running on a thread of its own, as use_future needs.
struct Loop {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::thread thread{[this] { io.run(); }};
  ~Loop() {
    work.reset();
    io.stop();
    thread.join();
  }
  asio::any_io_executor executor() { return io.get_executor(); }
};

// What one style saw: the code, and whether a value came with success.
struct Outcome {
  std::error_code ec;
  bool has_value = false;
  friend bool operator==(const Outcome&, const Outcome&) = default;
};

template <class F>
Outcome outcome_of_future(F&& get) {
  try {
    get();
    return {{}, true};
  } catch (const std::system_error& e) {
    return {e.code(), false};
  }
}

// The three coroutine styles, one after the other in one coroutine: awaken's default token (which
// throws awaken::Error), as_tuple and redirect_error.
template <class Op>
asio::awaitable<std::array<Outcome, 3>> coroutine_styles(Op& op) {
  std::array<Outcome, 3> seen;
  try {
    co_await op(awaken::use_awaitable);
    seen[0] = {{}, true};
  } catch (const awaken::Error& e) {
    seen[0] = {e.code(), false};
  }
  auto result = co_await op(asio::experimental::as_tuple(asio::use_awaitable));
  seen[1] = {std::get<0>(result), !std::get<0>(result)};
  std::error_code ec;
  co_await op(asio::redirect_error(asio::use_awaitable, ec));
  seen[2] = {ec, !ec};
  co_return seen;
}

// Runs `op(token)` (an operation completing with `void(std::error_code, T...)`) once per style and
// returns what each saw, in the order: callback, callback with diagnostics, use_future, co_await,
// as_tuple, redirect_error. Diagnostics of a failure reach the bound object.
template <class Op>
std::vector<Outcome> every_style(Loop& loop, Op op) {
  std::vector<Outcome> seen;
  const auto wait = [](auto& future) {
    REQUIRE(future.wait_for(std::chrono::seconds{20}) == std::future_status::ready);
  };
  {  // a plain callback
    std::promise<Outcome> p;
    auto f = p.get_future();
    op([&p](std::error_code ec, auto&&...) { p.set_value({ec, !ec}); });
    wait(f);
    seen.push_back(f.get());
  }
  {  // a callback with diagnostics bound
    awaken::Diagnostics diagnostics;
    std::promise<Outcome> p;
    auto f = p.get_future();
    op(awaken::bind_diagnostics(diagnostics, [&p](std::error_code ec, auto&&...) { p.set_value({ec, !ec}); }));
    wait(f);
    seen.push_back(f.get());
  }
  {  // use_future
    auto f = op(asio::use_future);
    wait(f);
    seen.push_back(outcome_of_future([&] { f.get(); }));
  }
  {  // the coroutine styles, spawned on the loop
    std::promise<std::array<Outcome, 3>> p;
    auto f = p.get_future();
    asio::co_spawn(loop.io, coroutine_styles(op), [&p](std::exception_ptr e, std::array<Outcome, 3> r) {
      if (e) {
        p.set_exception(e);
      } else {
        p.set_value(r);
      }
    });
    wait(f);
    for (const Outcome& o : f.get()) seen.push_back(o);
  }
  return seen;
}

// Every style saw `expected`.
void check_all(const std::vector<Outcome>& seen, Outcome expected) {
  REQUIRE(seen.size() == 6);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    INFO("style " << i << ": " << seen[i].ec.message());
    CHECK(seen[i] == expected);
  }
}

const Outcome success{{}, true};

}  // namespace

TEST_CASE("every operation completes alike with every completion style", "[styles][workload]") {
  WorkloadPeer peer;
  Loop loop;
  const spiffe::WorkloadApiClient client{loop.executor(), peer.endpoint()};

  SECTION("Workload API calls") {
    check_all(every_style(loop, [&](auto&& t) { return client.fetch_jwt_svid({"svc"}, std::move(t)); }), success);
    check_all(every_style(loop, [&](auto&& t) { return client.fetch_jwt_svids({"svc"}, std::nullopt, std::move(t)); }),
              success);
    check_all(every_style(loop, [&](auto&& t) { return client.fetch_jwt_bundles(std::move(t)); }), success);
    check_all(every_style(loop, [&](auto&& t) { return client.fetch_x509_context(std::move(t)); }), success);
    check_all(every_style(loop, [&](auto&& t) { return client.fetch_x509_svid(std::move(t)); }), success);
    check_all(every_style(loop, [&](auto&& t) { return client.fetch_x509_bundles(std::move(t)); }), success);
    check_all(every_style(loop, [&](auto&& t) { return client.fetch_wit_svids(std::nullopt, std::move(t)); }), success);
    check_all(every_style(loop, [&](auto&& t) { return client.fetch_wit_bundles(std::move(t)); }), success);
    // A failure reaches every style with its code: the agent refuses a token that is not one.
    check_all(every_style(loop, [&](auto&& t) { return client.validate_jwt_svid("svc", "not-a-token", std::move(t)); }),
              {awaken::grpc_status::invalid_argument, false});
  }

  SECTION("Workload API streams") {
    auto jwt = client.watch_jwt_bundles();
    auto x509 = client.watch_x509_context();
    auto x509_bundles = client.watch_x509_bundles();
    auto wit = client.watch_wit_svids();
    auto wit_bundles = client.watch_wit_bundles();
    // A stream's first message is read by the first style; the others wait for updates the peer
    // sends when told to rotate.
    const auto rotating = [&](auto& stream) {
      return [&](auto&& t) {
        peer.control("/rotate");
        peer.control("/x509/rotate?authority=1&keep_old=1");
        peer.control("/wit/rotate?keep_old=1");
        return stream.next(std::move(t));
      };
    };
    check_all(every_style(loop, rotating(jwt)), success);
    check_all(every_style(loop, rotating(x509)), success);
    check_all(every_style(loop, rotating(x509_bundles)), success);
    check_all(every_style(loop, rotating(wit)), success);
    check_all(every_style(loop, rotating(wit_bundles)), success);
  }

  SECTION("gRPC and HTTP") {
    const awaken::http::GrpcChannel channel{loop.executor(), awaken::http::GrpcTarget::unix_socket(peer.socket())};
    // An empty FetchJWTSVID request names no audience: the peer refuses it.
    check_all(
        every_style(loop, [&](auto&& t) { return channel.unary("/SpiffeWorkloadAPI/FetchJWTSVID", "", std::move(t)); }),
        {awaken::grpc_status::invalid_argument, false});
    const awaken::http::HttpClient http{loop.executor()};
    awaken::http::HttpRequest stats;
    stats.url = "http://127.0.0.1:" + std::to_string(peer.control_port()) + "/stats";
    check_all(every_style(loop, [&](auto&& t) { return http.send(stats, std::move(t)); }), success);
  }

  SECTION("the broker") {
    awaken::AwakenBroker broker{loop.executor()};
    broker.register_material("static", awaken::CredentialMaterial::static_bearer(awaken::RedactedString{"t-1"}));
    check_all(every_style(loop, [&](auto&& t) { return broker.token_for("static", "s", std::move(t)); }), success);
    check_all(every_style(loop, [&](auto&& t) { return broker.token_for("nobody", "s", std::move(t)); }),
              {awaken::credential_errc::not_configured, false});
  }

  SECTION("sources: build, reads that wait, fetch, shutdown") {
    auto jwt_builder = spiffe::JwtSource::builder();
    jwt_builder.endpoint(peer.endpoint()).initial_sync_timeout(std::chrono::seconds{10});
    check_all(every_style(loop, [&](auto&& t) { return jwt_builder.build(loop.executor(), std::move(t)); }), success);
    const spiffe::JwtSource jwt = jwt_builder.build(loop.executor(), asio::use_future).get();
    check_all(every_style(loop, [&](auto&& t) { return jwt.fetch_jwt_svid({"svc"}, std::nullopt, std::move(t)); }),
              success);
    auto updates = jwt.updates();
    check_all(every_style(loop,
                          [&](auto&& t) {
                            peer.control("/rotate");
                            return updates.changed(std::move(t));
                          }),
              success);
    check_all(
        every_style(loop, [&](auto&& t) { return updates.wait_for([](const auto&) { return true; }, std::move(t)); }),
        success);

    auto x509_builder = spiffe::X509Source::builder();
    x509_builder.endpoint(peer.endpoint()).initial_sync_timeout(std::chrono::seconds{10});
    check_all(every_style(loop, [&](auto&& t) { return x509_builder.build(loop.executor(), std::move(t)); }), success);
    const spiffe::X509Source x509 = x509_builder.build(loop.executor(), asio::use_future).get();
    auto x509_updates = x509.updates();
    check_all(every_style(loop,
                          [&](auto&& t) {
                            peer.control("/x509/rotate");
                            return x509_updates.changed(std::move(t));
                          }),
              success);

    check_all(every_style(loop,
                          [&](auto&& t) {
                            return x509_updates.wait_for(
                                [](const awaken::spiffe::X509Context& c) { return !c.svids.empty(); }, std::move(t));
                          }),
              success);

    auto wit_builder = spiffe::experimental::WitSource::builder();
    wit_builder.endpoint(peer.endpoint()).initial_sync_timeout(std::chrono::seconds{10});
    check_all(every_style(loop, [&](auto&& t) { return wit_builder.build(loop.executor(), std::move(t)); }), success);
    const auto wit = wit_builder.build(loop.executor(), asio::use_future).get();

    // Shutdown completes alike every time: it is idempotent.
    check_all(every_style(loop, [&](auto&& t) { return jwt.shutdown(std::move(t)); }), success);
    check_all(every_style(loop, [&](auto&& t) { return x509.shutdown(std::chrono::seconds{5}, std::move(t)); }),
              success);
    check_all(every_style(loop, [&](auto&& t) { return wit.shutdown(std::move(t)); }), success);
    check_all(every_style(loop, [&](auto&& t) { return wit.shutdown(std::chrono::seconds{5}, std::move(t)); }),
              success);
    // After it, the reads that wait fail alike.
    check_all(every_style(loop, [&](auto&& t) { return updates.changed(std::move(t)); }),
              {awaken::spiffe_errc::source_closed, false});
  }
}
