// Test support: a coroutine run to its end on an io_context, under a deadline.
#pragma once

#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <type_traits>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

namespace awaken::test {

/// Runs `io` until `aw` finishes (then stops it, leaving other work for later runs) or
/// `deadline` passes; rethrows its exception; throws on the deadline, so no test can hang.
template <class T>
T run(asio::io_context& io, asio::awaitable<T> aw, std::chrono::milliseconds deadline = std::chrono::seconds{20}) {
  std::optional<std::conditional_t<std::is_void_v<T>, int, T>> result;
  std::exception_ptr error;
  bool done = false;
  asio::co_spawn(io, std::move(aw), [&](std::exception_ptr e, auto... value) {
    done = true;
    io.stop();  // other work (a stream still open) waits for the next run
    error = e;
    if constexpr (sizeof...(value) > 0) {
      if (!e) result.emplace(std::move(value)...);
    }
  });
  io.restart();
  io.run_for(deadline);
  if (!done) throw std::runtime_error("test deadline passed");
  if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

}  // namespace awaken::test
