// Runs one of awaken's internal coroutines as an asynchronous operation that completes with
// `void(std::error_code, T)`: the coroutine throws, the operation reports a code and diagnostics.
#pragma once

#include <exception>
#include <memory>
#include <system_error>
#include <type_traits>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>

#include <awaken/completion.hpp>
#include <awaken/diagnostics.hpp>

namespace awaken::detail {

template <class T>
struct operation_signature {
  using type = void(std::error_code, T);
};
template <>
struct operation_signature<void> {
  using type = void(std::error_code);
};

// Completes `c` with the outcome of `aw`, run on `executor`. The completion's cancellation slot
// reaches the coroutine (so emit it from the executor the coroutine runs on, as with any Asio
// operation on a shared object).
template <class T>
void spawn_operation(
    const asio::any_io_executor& executor, asio::awaitable<T> aw,
    std::unique_ptr<std::conditional_t<std::is_void_v<T>, Completion<std::error_code>, Completion<std::error_code, T>>>
        c) {
  // Asio hands a result out beside every error code, so one must exist without a value.
  static_assert(std::is_void_v<T> || std::is_default_constructible_v<T>,
                "an operation's result type needs a default (empty) state");
  auto slot = c->cancellation_slot();
  std::shared_ptr shared = std::move(c);
  auto fail = [](auto& completion, const std::exception_ptr& e) {
    auto [ec, diagnostics] = classify_exception(e);
    completion->set_diagnostics(diagnostics);
    return ec;
  };
  if constexpr (std::is_void_v<T>) {
    auto done = [shared, fail](std::exception_ptr e) { shared->complete(e ? fail(shared, e) : std::error_code{}); };
    if (slot.is_connected())
      asio::co_spawn(executor, std::move(aw), asio::bind_cancellation_slot(slot, std::move(done)));
    else
      asio::co_spawn(executor, std::move(aw), std::move(done));
  } else {
    auto done = [shared, fail](std::exception_ptr e, T value) {
      if (e) return shared->complete(fail(shared, e), T{});
      shared->complete(std::error_code{}, std::move(value));
    };
    if (slot.is_connected())
      asio::co_spawn(executor, std::move(aw), asio::bind_cancellation_slot(slot, std::move(done)));
    else
      asio::co_spawn(executor, std::move(aw), std::move(done));
  }
}

// The operation: `make()` (called at initiation, on the initiating thread) returns the
// `asio::awaitable<T>` to run. It runs on `object_executor`, the executor of the I/O objects it
// uses, so that its frame lives and dies in their execution context whatever the handler's
// executor is (`use_future` handlers run on Asio's system pool); the handler then runs on its
// own associated executor, `object_executor` when it has none. With `OnHandlerExecutor` the
// coroutine runs on the handler's executor instead (for an operation that makes its objects
// there).
template <class T, bool OnHandlerExecutor = false, class CompletionToken, class Make>
auto async_spawn(asio::any_io_executor object_executor, Make make, CompletionToken&& token) {
  using Signature = typename operation_signature<T>::type;
  return asio::async_initiate<CompletionToken, Signature>(
      [fallback = std::move(object_executor)](auto handler, Make make) {
        // A compile-time choice: a handler's associated executor (use_future's, say) need not
        // convert to any_io_executor when the operation runs on `fallback` anyway.
        asio::any_io_executor executor = fallback;
        if constexpr (OnHandlerExecutor) executor = asio::get_associated_executor(handler, fallback);
        if constexpr (std::is_void_v<T>) {
          spawn_operation<T>(executor, make(), make_completion<std::error_code>(std::move(handler), fallback));
        } else {
          spawn_operation<T>(executor, make(), make_completion<std::error_code, T>(std::move(handler), fallback));
        }
      },
      token, std::move(make));
}

}  // namespace awaken::detail
