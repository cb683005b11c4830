// Every completion style a user may pick, run against one operation: a plain callback, a callback
// with diagnostics bound, use_future (the io_context on another thread), co_await with awaken's
// default token, as_tuple and redirect_error. The completion_styles_*_test.cpp files run every
// public asynchronous operation through it; each style must reach the same outcome, a value or
// the same error code.
#pragma once

#include <array>
#include <chrono>
#include <future>
#include <string>
#include <system_error>
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

#include <awaken/diagnostics.hpp>
#include <awaken/error.hpp>

#include "support/workload_peer.hpp"

namespace awaken::test::styles {

namespace spiffe = awaken::spiffe;
using awaken::test::WorkloadPeer;

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
inline void check_all(const std::vector<Outcome>& seen, Outcome expected) {
  REQUIRE(seen.size() == 6);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    INFO("style " << i << ": " << seen[i].ec.message());
    CHECK(seen[i] == expected);
  }
}

inline const Outcome success{{}, true};

}  // namespace awaken::test::styles
